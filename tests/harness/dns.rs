//! A `.test` zone for the DNS tests, shared by the emulated host and the real-Docker suite:
//! dnsmasq on 198.51.100.53 and 2001:db8::53 in the "internet" namespace (pypi.test, evil.test,
//! files.pypi.test → cdn.example.test, short.test with TTL 1, 500 race-N.test names, big.test
//! with 30 AAAA), a line echo on port 81 of every address there, and a client that asks one
//! question over UDP or TCP and reads the rcode and addresses with hickory-proto.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::addrs::INTERNET_V6;
use super::netns::Netns;
use super::probe::Probe;

/// dnsmasq's addresses in the internet namespace (port 53).
pub const DNS_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
pub const DNS_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53);
/// The line-echo port every internet address of these tests serves.
pub const ECHO_PORT: u16 = 81;
/// pypi.test (allowed) and evil.test (not allowed) resolve here.
pub const PYPI_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 80);
pub const PYPI_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x80);
pub const EVIL_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);
/// cdn.example.test, which files.pypi.test CNAMEs to.
pub const CDN_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 81);
/// short.test, TTL 1.
pub const SHORT_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 82);
/// race-N.test resolves to 2001:db8::1:N, all local to the internet namespace by one route.
pub const RACE_NAMES: u16 = 500;

/// The zone's servers in `internet`: its addresses, dnsmasq and the line echo; `host` gets the
/// route to the race names (2001:db8::1:0/112, local to `internet`, which answers no neighbour
/// solicitation for them). Both servers stop on drop.
pub struct Zone {
    pub dnsmasq: Dnsmasq,
    _echo: LineEcho,
}

impl Zone {
    pub fn start(internet: &Netns, host: &Netns) -> Zone {
        internet.ip_batch(&format!(
            "addr add {DNS_V4}/24 dev eth0\naddr add {DNS_V6}/64 dev eth0 nodad\n\
             addr add {PYPI_V4}/24 dev eth0\naddr add {PYPI_V6}/64 dev eth0 nodad\n\
             addr add {EVIL_V4}/24 dev eth0\naddr add 2001:db8::66/64 dev eth0 nodad\n\
             addr add {CDN_V4}/24 dev eth0\naddr add {SHORT_V4}/24 dev eth0\n\
             route add local 2001:db8::1:0/112 dev lo\n"
        ));
        host.ip_batch(&format!("route replace 2001:db8::1:0/112 via {INTERNET_V6}\n"));
        let echo = LineEcho::start(internet, ECHO_PORT);
        let dnsmasq = Dnsmasq::start(internet);
        Zone { dnsmasq, _echo: echo }
    }
}

// ---- dnsmasq ----

/// dnsmasq in the foreground in a namespace, its query log in a temp file; killed on drop.
pub struct Dnsmasq {
    child: Child,
    dir: PathBuf,
}

impl Dnsmasq {
    /// On 198.51.100.53 and 2001:db8::53 (which `ns` must have).
    pub fn start(ns: &Netns) -> Dnsmasq {
        Dnsmasq::start_on(ns, &[DNS_V4.into(), DNS_V6.into()])
    }

    /// On port 53 of `listen` (addresses `ns` has); ready when the first one answers.
    pub fn start_on(ns: &Netns, listen: &[IpAddr]) -> Dnsmasq {
        let first = *listen.first().expect("an address to listen on");
        let listen: Vec<String> = listen.iter().map(IpAddr::to_string).collect();
        let dir = std::env::temp_dir().join(format!("eg-dnsmasq-{}-{first}", ns.name()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut hosts: String = (1..=RACE_NAMES).map(|i| format!("{} race-{i}.test\n", race_addr(i))).collect();
        hosts.extend((0..BIG_RECORDS).map(|i| format!("{} big.test\n", big_addr(i))));
        std::fs::write(dir.join("race.hosts"), hosts).unwrap();
        let log = dir.join("queries.log");
        let args = [
            "--keep-in-foreground".to_string(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--pid-file=".into(),
            "--user=root".into(),
            "--bind-interfaces".into(),
            format!("--listen-address={}", listen.join(",")),
            "--port=53".into(),
            "--local=/test/".into(),
            "--log-queries".into(),
            format!("--log-facility={}", log.display()),
            format!("--addn-hosts={}", dir.join("race.hosts").display()),
            "--local-ttl=60".into(),
            format!("--host-record=pypi.test,{PYPI_V4},{PYPI_V6},60"),
            format!("--host-record=evil.test,{EVIL_V4},2001:db8::66,60"),
            format!("--host-record=cdn.example.test,{CDN_V4},60"),
            format!("--host-record=short.test,{SHORT_V4},1"),
            "--cname=files.pypi.test,cdn.example.test,300".into(),
            "--cname=alias.evil.test,pypi.test,300".into(),
        ];
        let child = ns
            .command("dnsmasq")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dnsmasq (apt-get install -y dnsmasq-base): {e}"));
        let dnsmasq = Dnsmasq { child, dir };
        // Ready when it answers.
        let server = SocketAddr::new(first, 53);
        let deadline = Instant::now() + Duration::from_secs(5);
        while ns.enter(|| lookup_here(server, "pypi.test", RecordType::A, false)).is_err() {
            assert!(Instant::now() < deadline, "dnsmasq did not answer within 5 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        dnsmasq
    }

    /// Every query dnsmasq has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("queries.log")).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// big.test has this many AAAA records: more than 512 bytes, so UDP without EDNS truncates.
pub const BIG_RECORDS: u16 = 30;

pub fn big_addr(i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, 0xf000 + i)
}

pub fn race_addr(i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, i)
}

// ---- a line echo on every address ----

/// TCP line echo on one port (81 for the zone) of every address of a namespace (a dual-stack socket on `::`,
/// which also takes the AnyIP range): echoes each line until the client closes, so one
/// connection can be kept open across a grant's expiry.
pub struct LineEcho {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LineEcho {
    pub fn start(ns: &Netns, port: u16) -> LineEcho {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let listener = ns
            .enter(|| TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)))
            .unwrap_or_else(|e| panic!("bind [::]:{port}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        std::thread::spawn(move || echo_lines(stream));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        LineEcho { stop, thread: Some(thread) }
    }
}

fn echo_lines(stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
        if (&stream).write_all(line.as_bytes()).is_err() {
            return;
        }
        line.clear();
    }
}

impl Drop for LineEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- a client inside a container ----

/// The rcode and the addresses of an answer.
pub type Looked = (ResponseCode, Vec<IpAddr>);

/// One query from the calling thread's namespace, over UDP or TCP, with a 2 s timeout.
pub fn lookup_here(server: SocketAddr, name: &str, qtype: RecordType, tcp: bool) -> Result<Looked, String> {
    let id = (std::process::id() as u16) ^ (Instant::now().elapsed().subsec_nanos() as u16) ^ 0x5a5a;
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    let fqdn = Name::from_ascii(format!("{name}.")).map_err(|e| e.to_string())?;
    msg.add_query(Query::query(fqdn, qtype));
    let query = msg.to_vec().map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(2);
    let bytes = if tcp {
        let mut stream = TcpStream::connect_timeout(&server, timeout).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(timeout)).unwrap();
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        stream.write_all(&framed).map_err(|e| e.to_string())?;
        let mut len = [0u8; 2];
        std::io::Read::read_exact(&mut stream, &mut len).map_err(|e| format!("read: {e}"))?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        std::io::Read::read_exact(&mut stream, &mut answer).map_err(|e| format!("read: {e}"))?;
        answer
    } else {
        let local: SocketAddr = if server.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
        let socket = UdpSocket::bind(local).map_err(|e| e.to_string())?;
        socket.set_read_timeout(Some(timeout)).unwrap();
        socket.connect(server).map_err(|e| e.to_string())?;
        socket.send(&query).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        let len = socket.recv(&mut buf).map_err(|e| format!("recv: {e}"))?;
        buf[..len].to_vec()
    };
    let answer = Message::from_vec(&bytes).map_err(|e| e.to_string())?;
    if answer.metadata.id != id || answer.queries.len() != 1 || answer.queries[0].name() != msg.queries[0].name() {
        return Err(format!("an answer to another query: {answer}"));
    }
    let addrs = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    Ok((answer.metadata.response_code, addrs))
}

pub fn lookup(ns: &Netns, server: IpAddr, name: &str, qtype: RecordType, tcp: bool) -> Looked {
    let server = SocketAddr::new(server, 53);
    ns.enter(|| lookup_here(server, name, qtype, tcp))
        .unwrap_or_else(|e| panic!("{ns}: {name} {qtype} via {server}: {e}"))
}

pub fn echo_probe(to: IpAddr) -> Probe {
    Probe::tcp((to, ECHO_PORT)).timeout(Duration::from_millis(500))
}

pub fn noerror(addrs: &[IpAddr]) -> Looked {
    (ResponseCode::NoError, addrs.to_vec())
}

/// A TCP connection to the line echo kept open, to show that an established flow outlives the
/// grant that let it start.
pub struct Kept(TcpStream);

impl Kept {
    /// Connects from `ns` to `to`'s echo; None if the connection does not open within 1 s.
    pub fn open(ns: &Netns, to: IpAddr) -> Option<Kept> {
        let stream = ns.enter(|| TcpStream::connect_timeout(&SocketAddr::new(to, ECHO_PORT), Duration::from_secs(1)));
        let stream = stream.ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        Some(Kept(stream))
    }

    /// Sends one line; true if it came back.
    pub fn exchange(&self, line: &str) -> bool {
        let line = format!("{line}\n");
        (&self.0).write_all(line.as_bytes()).is_ok() && {
            let mut back = String::new();
            BufReader::new(&self.0).read_line(&mut back).is_ok() && back == line
        }
    }
}

/// The race: from the calling thread's namespace, `race-1.test` … `race-N.test` (AAAA, UDP, to
/// dnsmasq's v4 and v6 address in turn), each followed at once by a TCP connection to the
/// address it got. Returns what failed; panics past `limit`.
pub fn resolve_then_connect(names: u16, limit: Duration) -> Vec<String> {
    let started = Instant::now();
    let mut failures = Vec::new();
    for i in 1..=names {
        assert!(started.elapsed() < limit, "{names} lookups and connections within {limit:?}");
        let server = if i % 2 == 0 { SocketAddr::new(DNS_V4.into(), 53) } else { SocketAddr::new(DNS_V6.into(), 53) };
        let name = format!("race-{i}.test");
        let addr = match lookup_here(server, &name, RecordType::AAAA, false) {
            Ok((ResponseCode::NoError, addrs)) if addrs == [IpAddr::V6(race_addr(i))] => addrs[0],
            other => {
                failures.push(format!("{name}: {other:?}"));
                continue;
            }
        };
        let connected = TcpStream::connect_timeout(&SocketAddr::new(addr, ECHO_PORT), Duration::from_secs(1));
        if let Err(e) = connected {
            failures.push(format!("{name} {addr}: {e}"));
        }
    }
    failures
}
