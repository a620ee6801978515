//! `cargo xtask bench` runs this in a fresh network namespace: how long decoding one NFLOG
//! message into an attempt takes, and what flood rate the reader keeps up with. The flood is
//! UDP to 127.0.0.1 (loopback only), logged and dropped on the output hook, bounded in count
//! and time.

use std::net::UdpSocket;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use egress_guard::audit::events::Event;
use egress_guard::audit::packet::Attempt;
use egress_guard::audit::reader::{NflogReader, Options};
use egress_guard::nft::msg;
use egress_guard::nft::nflog::NflogPacket;

const GROUP: u16 = 7200;
const PORT: u16 = 9;
const PACKETS: u32 = 200_000;
const BOUND: Duration = Duration::from_secs(10);
/// A batch of three messages the kernel really sent (see the file's comments).
const CAPTURE: &str = include_str!("../src/nft/testdata/nflog-forward-tcpdump.hex");

#[path = "shared/shell.rs"]
mod shell;
use shell::shell;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nflog_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    decode()?;
    shell("ip", &["link", "set", "lo", "up"], "")?;
    let table = format!(
        "table inet eg_bench {{\n chain out {{\n  type filter hook output priority 0;\n  \
         udp dport {PORT} counter log group {GROUP} prefix \"egress-guard: \" drop\n }}\n}}\n"
    );
    shell("nft", &["-f", "-"], &table)?;
    let rows = [
        ("one message a datagram (qthresh 1)", Options { qthresh: 1, ..Options::default() }),
        ("default batching (qthresh 64)", Options::default()),
    ];
    for (label, options) in rows {
        flood(label, &options)?;
    }
    Ok(())
}

/// Decodes the captured batch over and over: parse, decode each message, read its attempt.
fn decode() -> Result<(), String> {
    let batch: Vec<u8> = CAPTURE
        .lines()
        .skip_while(|l| !l.starts_with("## "))
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .flat_map(|l| l.split('#').next().unwrap_or("").split_whitespace())
        .map(|b| u8::from_str_radix(b, 16).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let (mut messages, start) = (0u64, Instant::now());
    while start.elapsed() < Duration::from_secs(1) {
        for m in msg::parse(&batch).map_err(|e| e.to_string())? {
            if let Ok(packet) = NflogPacket::decode(&m) {
                std::hint::black_box(Attempt::of(&packet).map_err(|e| e.to_string())?);
                messages += 1;
            }
        }
    }
    let per = start.elapsed() / u32::try_from(messages).unwrap_or(u32::MAX).max(1);
    println!("nflog decode: {:.2} µs per message (parse, NflogPacket::decode, Attempt::of)", per.as_secs_f64() * 1e6);
    Ok(())
}

/// Floods while a reader reads, and prints the rates and what was lost.
fn flood(label: &str, options: &Options) -> Result<(), String> {
    let mut reader = NflogReader::open_with(GROUP, options).map_err(|e| e.to_string())?;
    let before = counted()?;
    let sender = std::thread::spawn(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let start = Instant::now();
        let mut sent = 0u32;
        while sent < PACKETS && start.elapsed() < BOUND {
            // The rule drops it on the way out, so send() says EPERM: the packet was logged.
            let _ = socket.send_to(&sent.to_be_bytes(), ("127.0.0.1", PORT));
            sent += 1;
        }
        Ok::<_, String>((sent, start.elapsed()))
    });
    let start = Instant::now();
    let mut last = start;
    // Reads until the sender is done and nothing more came for a few flush timeouts.
    while start.elapsed() < 2 * BOUND && (!sender.is_finished() || last.elapsed() < Duration::from_millis(500)) {
        let events = reader.recv(Some(Duration::from_millis(100))).map_err(|e| e.to_string())?;
        if events.iter().any(|e| matches!(e, Event::Packet(_))) {
            last = Instant::now();
        }
    }
    let (sent, send_time) = sender.join().map_err(|_| "the sender panicked".to_owned())??;
    let logged = counted()? - before;
    let s = reader.stats();
    let read_time = last.duration_since(start).as_secs_f64().max(1e-9);
    println!(
        "nflog flood, {label}: sent {sent} at {:.0}k/s, logged {logged}, read {} at {:.0}k/s in {} datagrams, \
         lost {} ({} ENOBUFS)",
        f64::from(sent) / send_time.as_secs_f64().max(1e-9) / 1e3,
        s.packets,
        s.packets as f64 / read_time / 1e3,
        s.datagrams,
        logged.saturating_sub(s.packets),
        s.overruns
    );
    Ok(())
}

/// Packets the log rule has counted so far.
fn counted() -> Result<u64, String> {
    let listing = shell("nft", &["list", "chain", "inet", "eg_bench", "out"], "")?;
    let after = listing.split("counter packets ").nth(1).ok_or("no counter in the chain")?;
    after.split_whitespace().next().and_then(|n| n.parse().ok()).ok_or_else(|| "unreadable counter".to_owned())
}
