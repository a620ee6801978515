//! HTTP/1.1 as dockerd speaks it on its socket: the request bytes we write, and the response
//! framing we read (head by `httparse`, then a Content-Length, chunked or read-to-close body),
//! incrementally, so a long-lived chunked stream can be read one event at a time and a read
//! timeout in the middle of a chunk loses nothing.

use std::io::{ErrorKind, Read};
use std::path::PathBuf;

use super::DockerError;

/// More headers than dockerd ever sends (it sends about ten).
const MAX_HEADERS: usize = 64;
/// A head or a chunk-size/trailer line longer than this is not dockerd talking.
const MAX_HEAD: usize = 64 * 1024;
const MAX_LINE: usize = 4096;
/// A single read; dockerd writes an event per chunk, a list in a few 4 KiB pieces.
const READ_SIZE: usize = 16 * 1024;

/// The bytes of a GET request for `path` (which must be a valid request target). `close` asks
/// the daemon to close after answering, for one-shot requests.
pub fn get(path: &str, close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    // dockerd ignores Host, but HTTP/1.1 requires one.
    format!(
        "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: egress-guard/{}\r\nAccept: application/json\r\n{connection}\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

/// How the body after a head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// Neither length nor chunking: the body ends when the daemon closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    /// Bytes of the head, including the blank line that ends it.
    pub len: usize,
}

/// Parses a response head from the start of `buf`; `None` while it is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err("response head too long".into()),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad response head: {e}")),
    };
    let status = response.code.ok_or("response without status")?;
    let mut chunked = false;
    let mut length = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked is always the last coding when present (RFC 9112 §6.1).
            let value = String::from_utf8_lossy(header.value);
            chunked = value.rsplit(',').next().is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value).ok().and_then(|v| v.trim().parse::<u64>().ok());
            length = Some(value.ok_or("bad content-length")?);
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Some(Head { status, framing, len }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    UntilClose,
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes to go.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, up to the blank line.
    Trailer,
    Done,
}

/// Turns the framed body bytes into payload, fed in pieces of any size.
#[derive(Debug, Clone)]
pub struct Body {
    state: State,
}

impl Body {
    pub fn new(framing: Framing) -> Body {
        let state = match framing {
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Size,
            Framing::UntilClose => State::UntilClose,
        };
        Body { state }
    }

    /// The whole body has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the connection closing now ends the body properly.
    pub fn may_end_at_close(&self) -> bool {
        matches!(self.state, State::Done | State::UntilClose)
    }

    /// Consumes what it can of `input`, appending payload to `out`, and returns how many bytes
    /// it used. An incomplete framing line is left unused: pass it again with more bytes.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match self.state {
                State::Done => return Ok(used),
                State::UntilClose => {
                    out.extend_from_slice(rest);
                    return Ok(input.len());
                }
                State::Length(0) => self.state = State::Done,
                State::Data(0) => self.state = State::DataEnd,
                State::Length(n) | State::Data(n) => {
                    if rest.is_empty() {
                        return Ok(used);
                    }
                    let take = rest.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                    out.extend_from_slice(&rest[..take]);
                    used += take;
                    let left = n - take as u64;
                    self.state =
                        if matches!(self.state, State::Length(_)) { State::Length(left) } else { State::Data(left) };
                }
                State::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((n, 0))) => {
                        used += n;
                        self.state = State::Trailer;
                    }
                    Ok(httparse::Status::Complete((n, size))) => {
                        used += n;
                        self.state = State::Data(size);
                    }
                    Ok(httparse::Status::Partial) if rest.len() > MAX_LINE => {
                        return Err("chunk size line too long".into())
                    }
                    Ok(httparse::Status::Partial) => return Ok(used),
                    Err(_) => return Err("invalid chunk size".into()),
                },
                State::DataEnd => {
                    if rest.len() < 2 {
                        // A lone byte that is not the CR cannot become a CRLF.
                        if rest.first().is_some_and(|&b| b != b'\r') {
                            return Err("chunk data longer than its size".into());
                        }
                        return Ok(used);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err("chunk data longer than its size".into());
                    }
                    used += 2;
                    self.state = State::Size;
                }
                State::Trailer => match rest.windows(2).position(|w| w == b"\r\n") {
                    Some(0) => {
                        used += 2;
                        self.state = State::Done;
                    }
                    Some(end) => used += end + 2,
                    None if rest.len() > MAX_LINE => return Err("trailer line too long".into()),
                    None => return Ok(used),
                },
            }
        }
    }
}

/// What one read brought.
enum Fill {
    Data,
    Eof,
    /// The socket's read timeout expired.
    Timeout,
}

/// A response read from a connection: status and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A connection's read side with the bytes read but not yet used.
pub struct Conn<R> {
    reader: R,
    buf: Vec<u8>,
    /// For error messages.
    socket: PathBuf,
}

impl<R: Read> Conn<R> {
    pub fn new(reader: R, socket: PathBuf) -> Conn<R> {
        Conn { reader, buf: Vec::new(), socket }
    }

    fn malformed(what: &str, why: String) -> DockerError {
        DockerError::Malformed { what: what.to_string(), why }
    }

    fn fill(&mut self) -> Result<Fill, DockerError> {
        let start = self.buf.len();
        self.buf.resize(start + READ_SIZE, 0);
        let read = loop {
            match self.reader.read(&mut self.buf[start..]) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = *read.as_ref().unwrap_or(&0);
        self.buf.truncate(start + n);
        match read {
            Ok(0) => Ok(Fill::Eof),
            Ok(_) => Ok(Fill::Data),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(Fill::Timeout),
            Err(source) => Err(DockerError::Io { op: "read", path: self.socket.clone(), source }),
        }
    }

    /// Reads a response head; `Ok(None)` when the read timeout expired first (call again).
    pub fn poll_head(&mut self, what: &str) -> Result<Option<Head>, DockerError> {
        loop {
            if let Some(head) = parse_head(&self.buf).map_err(|why| Self::malformed(what, why))? {
                self.buf.drain(..head.len);
                return Ok(Some(head));
            }
            match self.fill()? {
                Fill::Data => {}
                Fill::Eof => return Err(DockerError::Closed(what.to_string())),
                Fill::Timeout => return Ok(None),
            }
        }
    }

    /// Reads a whole response, failing if any read waits longer than the socket's timeout or
    /// the payload grows beyond `limit`.
    pub fn response(&mut self, what: &str, limit: usize) -> Result<Response, DockerError> {
        let head = self.poll_head(what)?.ok_or_else(|| DockerError::Timeout(what.to_string()))?;
        self.body(&head, what, limit)
    }

    /// Reads the body that follows `head`, as [`Conn::response`] does.
    pub fn body(&mut self, head: &Head, what: &str, limit: usize) -> Result<Response, DockerError> {
        let mut body = Body::new(head.framing);
        let mut payload = Vec::new();
        loop {
            let used = body.feed(&self.buf, &mut payload).map_err(|why| Self::malformed(what, why))?;
            self.buf.drain(..used);
            if payload.len() > limit {
                return Err(Self::malformed(what, format!("body larger than {limit} bytes")));
            }
            if body.is_done() {
                return Ok(Response { status: head.status, body: payload });
            }
            match self.fill()? {
                Fill::Data => {}
                Fill::Eof if body.may_end_at_close() => return Ok(Response { status: head.status, body: payload }),
                Fill::Eof => return Err(DockerError::Closed(what.to_string())),
                Fill::Timeout => return Err(DockerError::Timeout(what.to_string())),
            }
        }
    }
}

/// The payload of a streamed body cut into newline-terminated lines (dockerd's `/events`
/// writes one JSON object and a newline per event, and JSON escapes newlines in strings).
pub struct Lines<R> {
    conn: Conn<R>,
    body: Body,
    payload: Vec<u8>,
    what: String,
    max_line: usize,
}

impl<R: Read> Lines<R> {
    /// Reads the body that follows `head` on `conn`.
    pub fn new(conn: Conn<R>, head: &Head, what: &str, max_line: usize) -> Lines<R> {
        Lines { conn, body: Body::new(head.framing), payload: Vec::new(), what: what.to_string(), max_line }
    }

    /// The next complete line, without its newline; `Ok(None)` when the read timeout expired
    /// before one was complete (what arrived so far is kept). The body ending, or the
    /// connection closing, is `DockerError::Closed`.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, DockerError> {
        loop {
            if let Some(end) = self.payload.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.payload.drain(..=end).collect();
                line.pop();
                return Ok(Some(line));
            }
            if self.payload.len() > self.max_line {
                return Err(Conn::<R>::malformed(&self.what, format!("line longer than {} bytes", self.max_line)));
            }
            if self.body.is_done() {
                return Err(DockerError::Closed(self.what.clone()));
            }
            let used = self
                .body
                .feed(&self.conn.buf, &mut self.payload)
                .map_err(|why| Conn::<R>::malformed(&self.what, why))?;
            self.conn.buf.drain(..used);
            if self.body.is_done() || self.payload.contains(&b'\n') {
                continue;
            }
            match self.conn.fill()? {
                Fill::Data => {}
                Fill::Eof => return Err(DockerError::Closed(self.what.clone())),
                Fill::Timeout => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::thread;
    use std::time::Duration;

    use super::super::testdata;
    use super::*;

    /// Sends `bytes` to a real socket in pieces of the given sizes (cycling), pausing between
    /// pieces when asked, and closes it.
    fn serve(mut peer: UnixStream, bytes: Vec<u8>, pieces: Vec<usize>, pause: Duration) -> thread::JoinHandle<()> {
        thread::spawn(move || {
            let mut rest = &bytes[..];
            for size in pieces.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let n = (*size).min(rest.len());
                peer.write_all(&rest[..n]).unwrap();
                rest = &rest[n..];
                if !pause.is_zero() {
                    thread::sleep(pause);
                }
            }
        })
    }

    /// The JSON text of a captured body, taken from the file independently of our decoder:
    /// dockerd's JSON lines are the lines that start with `{` or `[`.
    fn json_lines(bytes: &[u8]) -> Vec<String> {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        text.lines().filter(|l| l.starts_with('{') || l.starts_with('[')).map(str::to_string).collect()
    }

    fn read_over_pair(name: &str, pieces: &[usize]) -> Response {
        let (ours, peer) = UnixStream::pair().unwrap();
        let server = serve(peer, testdata(name), pieces.to_vec(), Duration::ZERO);
        ours.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let response = Conn::new(ours, "pair".into()).response(name, 1 << 20).unwrap();
        server.join().unwrap();
        response
    }

    #[test]
    fn request_bytes() {
        let expected = format!(
            "GET /containers/json HTTP/1.1\r\nHost: docker\r\nUser-Agent: egress-guard/{}\r\n\
             Accept: application/json\r\nConnection: close\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(String::from_utf8(get("/containers/json", true)).unwrap(), expected);
        assert!(!String::from_utf8(get("/events", false)).unwrap().contains("Connection"));
    }

    #[test]
    fn head_framing_of_captured_responses() {
        let head = |name| parse_head(&testdata(name)).unwrap().unwrap();
        assert_eq!(head("containers-v4.http").framing, Framing::Chunked);
        assert_eq!(head("containers-v6.http").framing, Framing::Length(1636));
        let error = head("error-404.http");
        assert_eq!((error.status, error.framing), (404, Framing::Length(40)));
        // Any prefix of a head is incomplete, never an error.
        let bytes = testdata("events-v4.http");
        let len = head("events-v4.http").len;
        for cut in 0..len {
            assert_eq!(parse_head(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn chunked_list_over_a_socket_in_small_pieces() {
        // 1..7-byte writes cut every chunk-size line, CRLF and JSON token somewhere.
        for pieces in [&[1usize][..], &[2, 3, 5, 7], &[4096]] {
            let response = read_over_pair("containers-v4.http", pieces);
            assert_eq!(response.status, 200);
            // dockerd sent the list as one 2251-byte chunk holding one JSON line.
            let body = String::from_utf8(response.body).unwrap();
            assert_eq!(body, format!("{}\n", json_lines(&testdata("containers-v4.http"))[0]));
            assert_eq!(body.len(), 2251);
        }
    }

    #[test]
    fn content_length_bodies_and_daemon_errors() {
        let v6 = read_over_pair("containers-v6.http", &[3, 1000]);
        assert_eq!((v6.status, v6.body.len()), (200, 1636));
        let error = read_over_pair("error-404.http", &[1]);
        assert_eq!(error.status, 404);
        assert_eq!(error.body, b"{\"message\":\"No such container: nosuch\"}\n");
    }

    #[test]
    fn a_body_cut_short_is_an_error() {
        let mut bytes = testdata("containers-v6.http");
        bytes.truncate(bytes.len() - 10);
        let (ours, peer) = UnixStream::pair().unwrap();
        serve(peer, bytes, vec![512], Duration::ZERO).join().unwrap();
        let err = Conn::new(ours, "pair".into()).response("GET /containers/json", 1 << 20).unwrap_err();
        assert!(matches!(err, DockerError::Closed(_)), "{err:?}");
    }

    #[test]
    fn chunk_framing_errors() {
        let feed = |framing, bytes: &[u8]| {
            let mut out = Vec::new();
            Body::new(framing).feed(bytes, &mut out).map(|_| out)
        };
        assert_eq!(feed(Framing::Chunked, b"3\r\nabc\r\n0\r\n\r\n").unwrap(), b"abc");
        assert!(feed(Framing::Chunked, b"3\r\nabcd\r\n").is_err());
        assert!(feed(Framing::Chunked, b"zz\r\n").is_err());
        // Trailers are skipped; the body ends at the blank line.
        let mut body = Body::new(Framing::Chunked);
        let mut out = Vec::new();
        assert_eq!(body.feed(b"1\r\nx\r\n0\r\nX-T: 1\r\n\r\nNEXT", &mut out).unwrap(), 19);
        assert!(body.is_done());
    }

    #[test]
    fn event_stream_split_at_awkward_places_with_timeouts_between() {
        let bytes = testdata("events-v4.http");
        let expected = json_lines(&bytes);
        assert_eq!(expected.len(), 23);
        let head = parse_head(&bytes).unwrap().unwrap();
        // Cut inside the chunk-size line, between its CR and LF, and one byte into the JSON,
        // then go on in uneven pieces: every framing element is split somewhere.
        let (ours, peer) = UnixStream::pair().unwrap();
        let pieces = vec![head.len + 1, 1, 1, 1, 17, 250, 3, 1, 64, 1500];
        let server = serve(peer, bytes.clone(), pieces, Duration::from_millis(25));
        // Shorter than the writer's pauses (the kernel rounds it up to a jiffy), so reads
        // time out in mid-chunk.
        ours.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let mut conn = Conn::new(ours, "pair".into());
        let head = loop {
            if let Some(head) = conn.poll_head("GET /events").unwrap() {
                break head;
            }
        };
        assert_eq!((head.status, head.framing), (200, Framing::Chunked));
        let mut lines = Lines::new(conn, &head, "GET /events", 1 << 20);
        let (mut got, mut timeouts) = (Vec::new(), 0);
        let end = loop {
            match lines.next_line() {
                Ok(Some(line)) => got.push(String::from_utf8(line).unwrap()),
                Ok(None) => timeouts += 1,
                Err(e) => break e,
            }
        };
        server.join().unwrap();
        assert_eq!(got, expected);
        assert!(timeouts > 0, "the reads never timed out, so the test proved less than it claims");
        // The capture stopped mid-stream (no last chunk): the close is reported as such.
        assert!(matches!(end, DockerError::Closed(_)), "{end:?}");
    }
}
