//! The DNS client the benchmarks share (dns_bench, dns_watch_bench): one question per UDP
//! query, timed lookups in sequence, answers per second from several threads, percentiles.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted.get((sorted.len().saturating_sub(1)) * p / 100).copied().unwrap_or_default()
}

pub fn query(id: u16, name: &str, qtype: RecordType) -> Result<Vec<u8>, String> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(format!("{name}.")).map_err(|e| e.to_string())?, qtype));
    msg.to_vec().map_err(|e| e.to_string())
}

/// A UDP socket on the unspecified address of `server`'s family, connected to it.
fn socket_for(server: SocketAddr, timeout: Duration) -> std::io::Result<UdpSocket> {
    let any: IpAddr = if server.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let socket = UdpSocket::bind((any, 0))?;
    socket.set_read_timeout(Some(timeout))?;
    socket.connect(server)?;
    Ok(socket)
}

/// `n` sequential lookups of `name(i)` at `server`, each timed; sorted. A lookup that fails
/// (no answer in 2 s, another id, an rcode other than NOERROR) ends it with an error.
pub fn timed(
    server: SocketAddr,
    n: usize,
    name: impl Fn(usize) -> String,
    qtype: RecordType,
) -> Result<Vec<Duration>, String> {
    let socket = socket_for(server, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 2048];
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let q = query(i as u16, &name(i), qtype)?;
        let t0 = Instant::now();
        socket.send(&q).map_err(|e| e.to_string())?;
        let len = socket.recv(&mut buf).map_err(|e| format!("{server}: no answer: {e}"))?;
        times.push(t0.elapsed());
        if len < 12 || buf[..2] != q[..2] || buf[3] & 0x0f != 0 {
            return Err(format!("{server}: a wrong or failed answer to {}", name(i)));
        }
    }
    times.sort();
    Ok(times)
}

/// Answers per second from `clients` threads asking `name` at `server` for `during`; each
/// thread first runs `setup` (to enter a namespace, or to pin itself to a CPU).
pub fn throughput(
    server: SocketAddr,
    name: &str,
    clients: usize,
    during: Duration,
    setup: impl Fn() + Send + Sync + 'static,
) -> Result<f64, String> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let setup = Arc::new(setup);
    let q = query(7, name, RecordType::A)?;
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (done, stop, q, setup) = (Arc::clone(&done), Arc::clone(&stop), q.clone(), Arc::clone(&setup));
            std::thread::spawn(move || {
                setup();
                let Ok(socket) = socket_for(server, Duration::from_millis(500)) else { return };
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if socket.send(&q).is_ok() && socket.recv(&mut buf).is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(during);
    stop.store(true, Ordering::Relaxed);
    let elapsed = t0.elapsed();
    for t in threads {
        let _ = t.join();
    }
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64())
}

/// Every thread of process `pid` (0: this one) on `cpu`.
pub fn pin(pid: u32, cpu: usize) -> Result<(), String> {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    set.set(cpu).map_err(|e| e.to_string())?;
    let dir = if pid == 0 { "/proc/self/task".to_owned() } else { format!("/proc/{pid}/task") };
    let tasks = std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))?;
    for task in tasks.flatten() {
        if let Some(tid) = task.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
            sched_setaffinity(Pid::from_raw(tid), &set).map_err(|e| format!("sched_setaffinity: {e}"))?;
        }
    }
    Ok(())
}
