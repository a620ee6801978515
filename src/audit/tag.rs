//! What the guard did with a logged packet, carried in the NFLOG rule's prefix: the user's
//! prefix, a space, and the `--reject-with` word (`egress-guard: port-unreachable`). NFLOG
//! gives a rule nothing else of its own to send along (the mark is the packet's, and watch's
//! shield uses it), and the prefix shows in ulogd and `tcpdump -i nflog:N` too. The log rule
//! comes just before the refusal, so the word is what happens next. Pure.

use crate::audit::packet::Proto;
use crate::policy::Refusal;

/// The longest word: `port-unreachable` and `admin-prohibited` are 16 bytes.
pub const WORD_MAX: usize = 16;

/// The prefix of the NFLOG rule ahead of the refusal `refusal`.
pub fn compose(user: &str, refusal: Refusal) -> String {
    let sep = if user.ends_with(' ') { "" } else { " " };
    format!("{user}{sep}{}", refusal.word())
}

/// The refusal a prefix written by [`compose`] names; `None` for another rule's prefix.
pub fn parse(prefix: &str) -> Option<Refusal> {
    let (_, word) = prefix.rsplit_once(' ')?;
    Refusal::from_word(word)
}

/// What the guard did with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Answered: ICMP port unreachable or administratively prohibited, or a TCP reset.
    Rejected(Refusal),
    Dropped,
    /// Logged by a rule whose prefix names no refusal (not ours, or from an older version).
    Unknown,
}

impl Action {
    /// What a packet of `proto` met after a log rule with `prefix`: with `tcp-reset` only TCP
    /// gets the reset, the rest port-unreachable (see `rules::steps`).
    pub fn of(prefix: Option<&str>, proto: Proto) -> Action {
        match prefix.and_then(parse) {
            Some(Refusal::Drop) => Action::Dropped,
            Some(Refusal::TcpReset) if proto != Proto::Tcp => Action::Rejected(Refusal::PortUnreachable),
            Some(r) => Action::Rejected(r),
            None => Action::Unknown,
        }
    }

    /// `rejected`, `dropped` or `unknown`.
    pub fn word(self) -> &'static str {
        match self {
            Action::Rejected(_) => "rejected",
            Action::Dropped => "dropped",
            Action::Unknown => "unknown",
        }
    }

    /// How a rejection was answered.
    pub fn answer(self) -> Option<Refusal> {
        match self {
            Action::Rejected(r) => Some(r),
            Action::Dropped | Action::Unknown => None,
        }
    }

    pub fn from_words(action: &str, answer: Option<&str>) -> Action {
        match (action, answer.and_then(Refusal::from_word)) {
            ("rejected", Some(r)) => Action::Rejected(r),
            ("dropped", _) => Action::Dropped,
            _ => Action::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{DEFAULT_LOG_PREFIX, NFLOG_PREFIX_MAX, NFLOG_USER_PREFIX_MAX};

    #[test]
    fn every_refusal_round_trips_and_fits_nflog() {
        assert_eq!(Refusal::ALL.iter().map(|r| r.word().len()).max(), Some(WORD_MAX));
        let longest = "p".repeat(NFLOG_USER_PREFIX_MAX);
        for r in Refusal::ALL {
            for user in [DEFAULT_LOG_PREFIX, "blocked", "a b: c ", longest.as_str()] {
                let prefix = compose(user, r);
                assert!(prefix.len() <= NFLOG_PREFIX_MAX, "{prefix:?}");
                assert_eq!(parse(&prefix), Some(r), "{prefix:?}");
            }
        }
        assert_eq!(compose(DEFAULT_LOG_PREFIX, Refusal::PortUnreachable), "egress-guard: port-unreachable");
        assert_eq!(compose("blocked", Refusal::Drop), "blocked drop");
    }

    #[test]
    fn other_prefixes_name_no_action() {
        for other in ["", "egress-guard: ", "drop", "ulogd: ", "x reject"] {
            assert_eq!(parse(other), None, "{other:?}");
            assert_eq!(Action::of(Some(other), Proto::Tcp), Action::Unknown);
        }
        assert_eq!(Action::of(None, Proto::Udp), Action::Unknown);
    }

    #[test]
    fn tcp_reset_answers_only_tcp_by_reset() {
        let prefix = compose(DEFAULT_LOG_PREFIX, Refusal::TcpReset);
        assert_eq!(Action::of(Some(&prefix), Proto::Tcp), Action::Rejected(Refusal::TcpReset));
        assert_eq!(Action::of(Some(&prefix), Proto::Udp), Action::Rejected(Refusal::PortUnreachable));
        assert_eq!(Action::of(Some(&prefix), Proto::Icmpv6), Action::Rejected(Refusal::PortUnreachable));
        let drop = compose(DEFAULT_LOG_PREFIX, Refusal::Drop);
        assert_eq!(Action::of(Some(&drop), Proto::Tcp), Action::Dropped);
        for a in [Action::Rejected(Refusal::AdminProhibited), Action::Dropped, Action::Unknown] {
            assert_eq!(Action::from_words(a.word(), a.answer().map(Refusal::word)), a);
        }
    }
}
