//! From the datagrams an NFLOG socket receives to events, counting what the kernel dropped
//! two ways: ENOBUFS from recv (our receive buffer was full) and gaps in the per-group
//! sequence numbers (NFULA_SEQ), which also say how many. Pure: the reader feeds it.

use crate::nft::msg;
use crate::nft::nflog::{ulog_type, NflogPacket, NFULNL_MSG_PACKET};
use crate::nft::sys::NLMSG_ERROR;
use crate::nft::NlError;

/// What one receive brought, in the order it happened.
#[derive(Debug)]
pub enum Event {
    /// One logged packet.
    Packet(NflogPacket),
    /// The sequence numbers skipped this many messages before the packet that follows: the
    /// kernel dropped them (our buffer was full, or it could not allocate one to send).
    Lost(u64),
    /// recv said ENOBUFS: the kernel dropped at least one message because our receive buffer
    /// was full. A [`Event::Lost`] before the next packet says how many.
    Overrun,
    /// A message we could not decode; it is counted and the stream goes on.
    Malformed(NlError),
}

/// Running totals for one reader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams: u64,
    pub packets: u64,
    /// Messages missing from the sequence numbers.
    pub lost: u64,
    /// ENOBUFS reports: times our receive buffer overflowed.
    pub overruns: u64,
    pub malformed: u64,
}

/// Follows one group's messages. The first sequence number expected is 0: the kernel numbers
/// the messages of a group instance from 0, and our BIND created the instance, so messages
/// dropped before the first one we see are counted too.
#[derive(Debug, Default)]
pub struct Tracker {
    next_seq: u32,
    stats: Stats,
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Records an ENOBUFS from recv.
    pub fn overrun(&mut self, out: &mut Vec<Event>) {
        self.stats.overruns += 1;
        out.push(Event::Overrun);
    }

    /// Decodes one datagram into `out`; returns the (seq, errno) of the ACKs and errors in it,
    /// which answer our config requests.
    pub fn datagram(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Vec<(u32, i32)> {
        self.stats.datagrams += 1;
        let mut answers = Vec::new();
        let msgs = match msg::parse(bytes) {
            Ok(msgs) => msgs,
            Err(e) => {
                self.malformed(e, out);
                return answers;
            }
        };
        for m in &msgs {
            match m.ty {
                ty if ty == ulog_type(NFULNL_MSG_PACKET) => match NflogPacket::decode(m) {
                    Ok(packet) => self.packet(packet, out),
                    Err(e) => self.malformed(e, out),
                },
                NLMSG_ERROR => match m.error() {
                    Ok((errno, seq)) => answers.push((seq, errno)),
                    Err(e) => self.malformed(e, out),
                },
                // NLMSG_DONE closes a batch of several messages; nothing else is sent to us.
                _ => {}
            }
        }
        answers
    }

    fn packet(&mut self, packet: NflogPacket, out: &mut Vec<Event>) {
        if let Some(seq) = packet.seq {
            let gap = seq.wrapping_sub(self.next_seq);
            // A number behind the expected one cannot come from the instance we hold; take
            // it as the new start rather than as four billion lost messages.
            if gap != 0 && gap < 1 << 31 {
                self.stats.lost += u64::from(gap);
                out.push(Event::Lost(u64::from(gap)));
            }
            self.next_seq = seq.wrapping_add(1);
        }
        self.stats.packets += 1;
        out.push(Event::Packet(packet));
    }

    /// Records a message that could not be decoded.
    pub fn malformed(&mut self, e: NlError, out: &mut Vec<Event>) {
        self.stats.malformed += 1;
        out.push(Event::Malformed(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::nflog::tests::datagrams;

    const FORWARD_ULOGD: &str = include_str!("../nft/testdata/nflog-forward-ulogd.hex");
    const FORWARD_TCPDUMP: &str = include_str!("../nft/testdata/nflog-forward-tcpdump.hex");
    const CONFIG_ULOGD: &str = include_str!("../nft/testdata/nflog-config-ulogd.hex");

    /// Event kinds as short words, for comparing sequences.
    fn kinds(events: &[Event]) -> Vec<String> {
        let kind = |e: &Event| match e {
            Event::Packet(p) => format!("packet {}", p.seq.map_or("-".to_owned(), |s| s.to_string())),
            Event::Lost(n) => format!("lost {n}"),
            Event::Overrun => "overrun".to_owned(),
            Event::Malformed(_) => "malformed".to_owned(),
        };
        events.iter().map(kind).collect()
    }

    #[test]
    fn gaps_in_the_kernels_sequence_numbers_are_counted() {
        // The six datagrams ulogd received carry seq 0..=5; feed 1, 2 and 5 only, with an
        // ENOBUFS where the buffer overflowed.
        let all = datagrams(FORWARD_ULOGD);
        let mut t = Tracker::new();
        let mut out = Vec::new();
        t.datagram(&all[1].1, &mut out);
        t.datagram(&all[2].1, &mut out);
        t.overrun(&mut out);
        t.datagram(&all[5].1, &mut out);
        assert_eq!(kinds(&out), ["lost 1", "packet 1", "packet 2", "overrun", "lost 2", "packet 5"]);
        assert_eq!(t.stats(), Stats { datagrams: 3, packets: 3, lost: 3, overruns: 1, malformed: 0 });
    }

    #[test]
    fn a_whole_sequence_loses_nothing_and_batches_split_into_packets() {
        let mut t = Tracker::new();
        let mut out = Vec::new();
        for (_, d) in datagrams(FORWARD_ULOGD).iter().chain(&datagrams(FORWARD_TCPDUMP)) {
            t.datagram(d, &mut out);
        }
        // tcpdump's captures carry no sequence numbers: they count as packets, never as gaps.
        assert_eq!(t.stats(), Stats { datagrams: 8, packets: 12, lost: 0, overruns: 0, malformed: 0 });
    }

    #[test]
    fn acks_are_handed_back_and_garbage_is_counted() {
        let mut t = Tracker::new();
        let mut out = Vec::new();
        let ack = &datagrams(CONFIG_ULOGD)[1].1;
        assert_eq!(t.datagram(ack, &mut out), [(0, 0)]);
        assert!(out.is_empty());
        // A length field pointing past the datagram, then a packet message without its header.
        t.datagram(&[0xff, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut out);
        t.datagram(&msg::build(ulog_type(NFULNL_MSG_PACKET), 0, 0, 2, 7, |_| {}), &mut out);
        assert_eq!(kinds(&out), ["malformed", "malformed"]);
        assert_eq!(t.stats().malformed, 2);
    }

    #[test]
    fn a_sequence_that_restarts_is_followed_not_counted_as_loss() {
        let all = datagrams(FORWARD_ULOGD);
        let mut t = Tracker::new();
        let mut out = Vec::new();
        for i in [0, 1, 2, 3, 0, 1] {
            t.datagram(&all[i].1, &mut out);
        }
        assert_eq!(t.stats().lost, 0);
    }
}
