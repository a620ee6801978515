//! TCP line-echo and UDP echo servers on threads inside namespaces, stopped and joined on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};

use super::netns::Netns;
use super::probe::timeval;

/// How often a server looks at its stop flag while no client comes (its accept/recv timeout).
const POLL: Duration = Duration::from_millis(50);

/// How long a TCP connection may take to send its line before the server gives up on it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest line a TCP echo handler reads; probes send far less.
const MAX_LINE: u64 = 4096;

/// A set of echo servers sharing one stop flag: dropping it stops all, then joins all, so
/// teardown costs one poll interval, not one per server.
#[derive(Default)]
pub struct EchoServers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServers {
    pub fn new() -> EchoServers {
        EchoServers::default()
    }

    /// Serves TCP on `addr` inside `ns`: reads one line per connection, writes it back, closes.
    /// Panics if the address cannot be bound.
    pub fn tcp(&mut self, ns: &Netns, addr: SocketAddr) {
        let stop = Arc::clone(&self.stop);
        self.start(ns, addr, move |ready| {
            let listener = bind_tcp(addr);
            ready.send(listener.as_ref().map(|_| ()).map_err(|e| e.to_string())).ok();
            if let Ok(listener) = listener {
                serve_tcp(&listener, &stop);
            }
        });
    }

    /// Serves UDP on `addr` inside `ns`: sends every datagram back to its sender.
    pub fn udp(&mut self, ns: &Netns, addr: SocketAddr) {
        let stop = Arc::clone(&self.stop);
        self.start(ns, addr, move |ready| {
            let socket = bind_udp(addr);
            ready.send(socket.as_ref().map(|_| ()).map_err(|e| e.to_string())).ok();
            if let Ok(socket) = socket {
                serve_udp(&socket, &stop);
            }
        });
    }

    /// TCP and UDP on each of `addrs`.
    pub fn tcp_and_udp(&mut self, ns: &Netns, addrs: &[SocketAddr]) {
        for &addr in addrs {
            self.tcp(ns, addr);
            self.udp(ns, addr);
        }
    }

    /// Runs `serve` on a thread in `ns` and waits until it has bound (or failed to).
    fn start(
        &mut self,
        ns: &Netns,
        addr: SocketAddr,
        serve: impl FnOnce(mpsc::Sender<Result<(), String>>) + Send + 'static,
    ) {
        let (ready, bound) = mpsc::channel();
        self.threads.push(ns.spawn(move || serve(ready)));
        match bound.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{ns}: echo server on {addr}: {e}"),
            Err(_) => panic!("{ns}: echo server on {addr} died before binding"),
        }
    }
}

impl Drop for EchoServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    // Linux honours SO_RCVTIMEO in accept(): the loop wakes up to check its stop flag.
    setsockopt(&listener.as_fd(), ReceiveTimeout, &timeval(POLL))?;
    Ok(listener)
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket)
}

/// Accepts until stopped; each connection gets its own short-lived thread so that a silent
/// client (or a flood) never holds up the next one.
fn serve_tcp(listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let spawned = std::thread::Builder::new().stack_size(64 * 1024).spawn(move || echo_line(stream));
                if let Err(e) = spawned {
                    eprintln!("echo server: cannot spawn a handler: {e}");
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => eprintln!("echo server: accept: {e}"),
        }
    }
}

fn echo_line(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    let mut line = Vec::new();
    let mut reader = BufReader::new((&stream).take(MAX_LINE));
    if reader.read_until(b'\n', &mut line).is_ok() {
        let _ = (&stream).write_all(&line);
    }
}

fn serve_udp(socket: &UdpSocket, stop: &AtomicBool) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((len, peer)) => {
                let _ = socket.send_to(&buf[..len], peer);
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) => eprintln!("echo server: recv: {e}"),
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}
