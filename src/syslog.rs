//! A line in the system log: what the detached rollback timer has to say goes to /dev/log
//! (journald and syslog daemons listen there), as `<PRI>egress-guard[PID]: message`. Best
//! effort: with no log daemon, the line is lost, and nothing else depends on it.

use std::os::unix::net::UnixDatagram;

const DEV_LOG: &str = "/dev/log";
/// Facility daemon (3).
const DAEMON: u8 = 3 << 3;

#[derive(Debug, Clone, Copy)]
pub enum Severity {
    Warning = 4,
    Notice = 5,
}

/// The datagram for `message` (pure, for tests).
pub fn line(severity: Severity, message: &str) -> String {
    // A message cannot start a new record: newlines become spaces.
    let message: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    format!("<{}>egress-guard[{}]: {message}", DAEMON | severity as u8, std::process::id())
}

/// Sends one line to the system log; true when it was handed over.
pub fn log(severity: Severity, message: &str) -> bool {
    let Ok(socket) = UnixDatagram::unbound() else { return false };
    socket.send_to(line(severity, message).as_bytes(), DEV_LOG).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_daemon_facility_with_our_name_and_pid() {
        let l = line(Severity::Notice, "rolled back\nnow");
        assert_eq!(l, format!("<29>egress-guard[{}]: rolled back now", std::process::id()));
        assert!(line(Severity::Warning, "x").starts_with("<28>"));
    }
}
