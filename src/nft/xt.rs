//! The C structs of the xtables extensions iptables-nft sends through nft_compat
//! (`NFTA_MATCH_INFO` / `NFTA_TARGET_INFO`): host byte order, zero padded to `XT_ALIGN` (8).
//! Each has a writer and a reader so kernel dumps decode back to the same values.

/// `XT_ALIGN`: the kernel accepts sizes between the struct's size and this.
pub fn xt_align(len: usize) -> usize {
    (len + 7) & !7
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// `xt_conntrack_mtinfo3` (`-m conntrack --ctstate …`, also `-m state`), revision 3.
/// Only the state fields are ours; every other byte is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conntrack {
    /// `XT_CONNTRACK_STATE_BIT` flags: INVALID 0x1, ESTABLISHED 0x2, RELATED 0x4, NEW 0x8, UNTRACKED 0x100.
    pub states: u16,
    /// `! --ctstate`
    pub invert: bool,
}

impl Conntrack {
    pub const NAME: &'static str = "conntrack";
    pub const REV: u32 = 3;
    /// `sizeof(struct xt_conntrack_mtinfo3)`
    const SIZE: usize = 164;
    const MATCH_FLAGS: usize = 146;
    const INVERT_FLAGS: usize = 148;
    const STATE_MASK: usize = 150;
    /// `XT_CONNTRACK_STATE`
    const F_STATE: u16 = 0x0001;
    /// `XT_CONNTRACK_STATE_ALIAS`: written by `-m state`; we never write it, but must read it.
    const F_STATE_ALIAS: u16 = 0x2000;

    pub const INVALID: u16 = 0x1;
    pub const ESTABLISHED: u16 = 0x2;
    pub const RELATED: u16 = 0x4;
    pub const NEW: u16 = 0x8;
    pub const UNTRACKED: u16 = 0x100;

    pub fn encode(&self) -> Vec<u8> {
        let mut info = vec![0u8; xt_align(Self::SIZE)];
        let invert = if self.invert { Self::F_STATE } else { 0 };
        info[Self::MATCH_FLAGS..][..2].copy_from_slice(&Self::F_STATE.to_ne_bytes());
        info[Self::INVERT_FLAGS..][..2].copy_from_slice(&invert.to_ne_bytes());
        info[Self::STATE_MASK..][..2].copy_from_slice(&self.states.to_ne_bytes());
        info
    }

    /// Only a pure `--ctstate` match decodes: the blob is re-encoded and compared, so any field
    /// we do not write (ports, addresses, status…) makes it `None`.
    pub fn decode(info: &[u8]) -> Option<Self> {
        let flags = u16_at(info, Self::MATCH_FLAGS)?;
        if flags & !Self::F_STATE_ALIAS != Self::F_STATE {
            return None;
        }
        let ct = Conntrack {
            states: u16_at(info, Self::STATE_MASK)?,
            invert: u16_at(info, Self::INVERT_FLAGS)? == Self::F_STATE,
        };
        let mut expect = ct.encode();
        expect[Self::MATCH_FLAGS..][..2].copy_from_slice(&flags.to_ne_bytes());
        (expect == info).then_some(ct)
    }

    /// As `iptables -S` prints a state set, in the kernel's bit order.
    pub fn state_names(states: u16) -> String {
        const NAMES: [(u16, &str); 5] = [
            (Conntrack::INVALID, "INVALID"),
            (Conntrack::NEW, "NEW"),
            (Conntrack::RELATED, "RELATED"),
            (Conntrack::ESTABLISHED, "ESTABLISHED"),
            (Conntrack::UNTRACKED, "UNTRACKED"),
        ];
        NAMES.iter().filter(|(bit, _)| states & bit != 0).map(|(_, n)| *n).collect::<Vec<_>>().join(",")
    }
}

/// `xt_comment_info { char comment[256]; }`, revision 0.
pub struct Comment;

impl Comment {
    pub const NAME: &'static str = "comment";
    pub const REV: u32 = 0;
    const SIZE: usize = 256;
    /// Longest comment that still leaves room for the NUL.
    pub const MAX_LEN: usize = Self::SIZE - 1;

    /// A comment longer than the struct holds is cut at the last whole character that fits.
    pub fn encode(text: &str) -> Vec<u8> {
        let mut info = vec![0u8; Self::SIZE];
        let mut end = text.len().min(Self::MAX_LEN);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        info[..end].copy_from_slice(&text.as_bytes()[..end]);
        info
    }

    pub fn decode(info: &[u8]) -> Option<String> {
        let end = info.iter().position(|&b| b == 0)?;
        String::from_utf8(info[..end].to_vec()).ok()
    }
}

/// `ipt_reject_info` / `ip6t_reject_info { u32 with; }`, revision 0, sent as 8 bytes.
pub struct Reject;

impl Reject {
    pub const NAME: &'static str = "REJECT";
    pub const REV: u32 = 0;

    pub fn encode(with: u32) -> Vec<u8> {
        let mut info = vec![0u8; xt_align(4)];
        info[..4].copy_from_slice(&with.to_ne_bytes());
        info
    }

    pub fn decode(info: &[u8]) -> Option<u32> {
        (info.len() == 8 && info[4..] == [0; 4]).then(|| u32::from_ne_bytes([info[0], info[1], info[2], info[3]]))
    }
}

/// `xt_log_info { u8 level; u8 logflags; char prefix[30]; }`, revision 0, 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub level: u8,
    pub prefix: String,
}

impl Log {
    pub const NAME: &'static str = "LOG";
    pub const REV: u32 = 0;
    const SIZE: usize = 32;
    pub const MAX_PREFIX: usize = 29;

    pub fn encode(&self) -> Vec<u8> {
        let mut info = vec![0u8; Self::SIZE];
        info[0] = self.level;
        let p = &self.prefix.as_bytes()[..self.prefix.len().min(Self::MAX_PREFIX)];
        info[2..2 + p.len()].copy_from_slice(p);
        info
    }

    pub fn decode(info: &[u8]) -> Option<Log> {
        if info.len() != Self::SIZE || info[1] != 0 {
            return None;
        }
        let prefix = Comment::decode(&info[2..])?;
        Some(Log { level: info[0], prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctstate_not_related_established_matches_iptables() {
        // `iptables -I DOCKER-USER … -m conntrack ! --ctstate RELATED,ESTABLISHED …` (1.8.9):
        // 168 bytes, all zero but @146 01 00 (flags), @148 01 00 (invert), @150 06 00 (mask)
        let info = Conntrack { states: Conntrack::RELATED | Conntrack::ESTABLISHED, invert: true }.encode();
        assert_eq!(info.len(), 168);
        let mut want = vec![0u8; 168];
        want[146..152].copy_from_slice(&[0x01, 0x00, 0x01, 0x00, 0x06, 0x00]);
        assert_eq!(info, want);
        assert_eq!(Conntrack::decode(&info), Some(Conntrack { states: 6, invert: true }));
    }

    #[test]
    fn state_alias_decodes_and_foreign_fields_do_not() {
        // `-m state --state RELATED,ESTABLISHED`: @146 01 20, @150 06 00 (reference §4a)
        let mut info = vec![0u8; 168];
        info[146..152].copy_from_slice(&[0x01, 0x20, 0, 0, 0x06, 0x00]);
        assert_eq!(Conntrack::decode(&info), Some(Conntrack { states: 6, invert: false }));
        info[136] = 6; // an l4proto we do not write
        assert_eq!(Conntrack::decode(&info), None);
    }

    #[test]
    fn comment_is_256_nul_padded_bytes() {
        let info = Comment::encode("egress-guard");
        assert_eq!(info.len(), 256);
        assert_eq!(&info[..13], b"egress-guard\0");
        assert!(info[13..].iter().all(|&b| b == 0));
        assert_eq!(Comment::decode(&info).as_deref(), Some("egress-guard"));
    }

    #[test]
    fn reject_with_is_host_order_padded_to_8() {
        // `-j REJECT` (ip, icmp-port-unreachable) → 03 00 00 00 00 00 00 00
        assert_eq!(Reject::encode(3), [3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Reject::decode(&[4, 0, 0, 0, 0, 0, 0, 0]), Some(4));
    }

    #[test]
    fn log_prefix_matches_iptables() {
        // `-j LOG --log-prefix "egress: "` → 04 00 65 67 72 65 73 73 3a 20 00 … (32 bytes)
        let info = Log { level: 4, prefix: "egress: ".into() }.encode();
        let mut want = vec![0u8; 32];
        want[0] = 4;
        want[2..10].copy_from_slice(b"egress: ");
        assert_eq!(info, want);
        assert_eq!(Log::decode(&info), Some(Log { level: 4, prefix: "egress: ".into() }));
    }
}
