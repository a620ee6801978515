//! `cargo xtask bench` runs this in a fresh network namespace that holds DOCKER-USER: how fast
//! `egress-guard watch` heals after `iptables -F DOCKER-USER`, measured from the kernel's own
//! event stream — the time from the flush's commit to watch's, as both are announced on the
//! nf_tables multicast group (each NEWGEN names the process that committed). 200 flushes,
//! bounded in time.
//!
//! Usage: heal_bench /path/to/egress-guard

use std::os::fd::AsRawFd;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use egress_guard::nft::attr::Attrs;
use egress_guard::nft::msg::{self, nft_type, NFGENMSG_LEN};
use egress_guard::nft::sys::{NFNLGRP_NFTABLES, NFTA_GEN_PROC_PID, NFT_MSG_NEWGEN};
use nix::sys::socket::{
    bind, recv, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

const FLUSHES: usize = 200;
const BOUND: Duration = Duration::from_secs(60);
/// Time between flushes, so each heal is measured on its own (and watch does not take the
/// flushes for a fight: that is 20 rewrites within a second).
const SPACING: Duration = Duration::from_millis(60);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heal_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The pids of the processes whose commits a datagram announces, in order.
fn committers(datagram: &[u8]) -> Vec<u32> {
    let Ok(msgs) = msg::parse(datagram) else { return Vec::new() };
    msgs.iter()
        .filter(|m| m.ty == nft_type(NFT_MSG_NEWGEN))
        .filter_map(|m| {
            let attrs = Attrs::new(m.body.get(NFGENMSG_LEN..).unwrap_or(&[]));
            attrs.filter_map(Result::ok).find(|a| a.ty == NFTA_GEN_PROC_PID).and_then(|a| a.be32().ok())
        })
        .collect()
}

/// watch, killed however the bench ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run() -> Result<(), String> {
    let binary = std::env::args().nth(1).ok_or("usage: heal_bench EGRESS_GUARD")?;
    let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)
        .map_err(|e| format!("socket: {e}"))?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1 << (NFNLGRP_NFTABLES - 1))).map_err(|e| format!("bind: {e}"))?;
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(2, 0)).map_err(|e| format!("timeout: {e}"))?;
    setsockopt(&fd, sockopt::RcvBuf, &(4 << 20)).map_err(|e| format!("rcvbuf: {e}"))?;
    let watch = Command::new(&binary)
        .args(["watch", "--target", "docker-user"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("start watch: {e}"))?;
    let watch = Killed(watch);
    let watch_pid = watch.0.id();
    let mut buf = vec![0u8; 1 << 20];
    // Wait until watch's first apply is announced.
    let wait_for = |buf: &mut [u8], pid: u32| -> Result<Instant, String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if Instant::now() > deadline {
                return Err(format!("no commit of pid {pid} within 5 s"));
            }
            let n = recv(fd.as_raw_fd(), buf, MsgFlags::empty()).map_err(|e| format!("recv: {e}"))?;
            if committers(&buf[..n]).contains(&pid) {
                return Ok(Instant::now());
            }
        }
    };
    wait_for(&mut buf, watch_pid)?;
    let mut samples = Vec::with_capacity(FLUSHES);
    let started = Instant::now();
    while samples.len() < FLUSHES && started.elapsed() < BOUND {
        std::thread::sleep(SPACING);
        let flush =
            Command::new("iptables").args(["-F", "DOCKER-USER"]).spawn().map_err(|e| format!("iptables: {e}"))?;
        let flush_pid = flush.id();
        let flushed = wait_for(&mut buf, flush_pid)?;
        let healed = wait_for(&mut buf, watch_pid)?;
        let _ = flush.wait_with_output();
        samples.push(healed - flushed);
    }
    drop(watch);
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    println!("heal after `iptables -F DOCKER-USER` ({} flushes, from the flush's commit to watch's, as the kernel announces them):", samples.len());
    println!(
        "  median {}   p90 {}   p99 {}   max {}   (aims: median < 10 ms, p99 < 30 ms)",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(samples[samples.len() - 1])
    );
    Ok(())
}
