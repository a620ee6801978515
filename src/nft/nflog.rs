//! nfnetlink_log (NFLOG): the config requests that bind a log group and shape what the kernel
//! sends us, and the packet messages it sends, each as an encoder/decoder pair. Pure: the
//! socket that carries them is `audit::reader`.

use super::attr::{AttrWriter, Attrs};
use super::msg::{self, Reply, NFGENMSG_LEN};
use super::sys::{AF_UNSPEC, NLM_F_ACK, NLM_F_REQUEST};
use super::NlError;

// linux/netfilter/nfnetlink.h, nfnetlink_log.h
pub const NFNL_SUBSYS_ULOG: u16 = 4;
pub const NFULNL_MSG_PACKET: u16 = 0;
pub const NFULNL_MSG_CONFIG: u16 = 1;

pub const NFULA_PACKET_HDR: u16 = 1;
pub const NFULA_MARK: u16 = 2;
pub const NFULA_TIMESTAMP: u16 = 3;
pub const NFULA_IFINDEX_INDEV: u16 = 4;
pub const NFULA_IFINDEX_OUTDEV: u16 = 5;
pub const NFULA_IFINDEX_PHYSINDEV: u16 = 6;
pub const NFULA_IFINDEX_PHYSOUTDEV: u16 = 7;
pub const NFULA_HWADDR: u16 = 8;
pub const NFULA_PAYLOAD: u16 = 9;
pub const NFULA_PREFIX: u16 = 10;
pub const NFULA_UID: u16 = 11;
pub const NFULA_SEQ: u16 = 12;
pub const NFULA_SEQ_GLOBAL: u16 = 13;
pub const NFULA_GID: u16 = 14;
pub const NFULA_HWTYPE: u16 = 15;
pub const NFULA_HWHEADER: u16 = 16;
pub const NFULA_HWLEN: u16 = 17;
pub const NFULA_CT: u16 = 18;
pub const NFULA_CT_INFO: u16 = 19;
pub const NFULA_VLAN: u16 = 20;
pub const NFULA_L2HDR: u16 = 21;

pub const NFULA_CFG_CMD: u16 = 1;
pub const NFULA_CFG_MODE: u16 = 2;
pub const NFULA_CFG_NLBUFSIZ: u16 = 3;
pub const NFULA_CFG_TIMEOUT: u16 = 4;
pub const NFULA_CFG_QTHRESH: u16 = 5;
pub const NFULA_CFG_FLAGS: u16 = 6;

pub const NFULNL_CFG_CMD_BIND: u8 = 1;
pub const NFULNL_CFG_CMD_UNBIND: u8 = 2;
pub const NFULNL_CFG_CMD_PF_BIND: u8 = 3;
pub const NFULNL_CFG_CMD_PF_UNBIND: u8 = 4;

pub const NFULNL_COPY_NONE: u8 = 0;
pub const NFULNL_COPY_META: u8 = 1;
pub const NFULNL_COPY_PACKET: u8 = 2;

/// Per-instance sequence numbers in NFULA_SEQ: a gap counts the messages the kernel dropped.
pub const NFULNL_CFG_F_SEQ: u16 = 0x0001;
pub const NFULNL_CFG_F_SEQ_GLOBAL: u16 = 0x0002;
pub const NFULNL_CFG_F_CONNTRACK: u16 = 0x0004;

/// The largest `nlbufsiz` the kernel accepts (it ignores larger values, and ones below a page).
pub const NFULNL_NLBUFSIZ_MAX: u32 = 131_072;

/// The `nlmsg_type` of an nfnetlink_log message: subsystem in the high byte.
pub const fn ulog_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_ULOG << 8) | msg
}

/// The command of a config request (`struct nfulnl_msg_config_cmd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Take the group: its packets come to this socket. The kernel answers EPERM when another
    /// socket holds it, EBUSY when this one already does.
    Bind,
    Unbind,
    /// Legacy per-family logger (re)binding that tcpdump and old libnetfilter_log send.
    PfBind,
    PfUnbind,
    Other(u8),
}

impl Cmd {
    fn code(self) -> u8 {
        match self {
            Cmd::Bind => NFULNL_CFG_CMD_BIND,
            Cmd::Unbind => NFULNL_CFG_CMD_UNBIND,
            Cmd::PfBind => NFULNL_CFG_CMD_PF_BIND,
            Cmd::PfUnbind => NFULNL_CFG_CMD_PF_UNBIND,
            Cmd::Other(code) => code,
        }
    }

    fn from_code(code: u8) -> Cmd {
        match code {
            NFULNL_CFG_CMD_BIND => Cmd::Bind,
            NFULNL_CFG_CMD_UNBIND => Cmd::Unbind,
            NFULNL_CFG_CMD_PF_BIND => Cmd::PfBind,
            NFULNL_CFG_CMD_PF_UNBIND => Cmd::PfUnbind,
            code => Cmd::Other(code),
        }
    }
}

/// What the kernel copies of each packet (`struct nfulnl_msg_config_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// NFULNL_COPY_NONE, _META or _PACKET.
    pub copy_mode: u8,
    /// Bytes of the packet to copy, from the network header on (0: the kernel's maximum).
    pub copy_range: u32,
}

/// One NFULNL_MSG_CONFIG request for a group. Every setting is optional; the kernel applies
/// the command first, then the rest, all in one go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// `nfgenmsg` family: AF_UNSPEC except for the PF_(UN)BIND commands.
    pub family: u8,
    pub group: u16,
    pub cmd: Option<Cmd>,
    pub mode: Option<Mode>,
    /// Bytes the kernel gathers into one datagram before sending it.
    pub nlbufsiz: Option<u32>,
    /// How long the kernel holds a part-filled datagram, in 1/100 s.
    pub timeout: Option<u32>,
    /// How many messages the kernel gathers into one datagram at most.
    pub qthresh: Option<u32>,
    /// NFULNL_CFG_F_* bits (they replace the previous ones).
    pub flags: Option<u16>,
}

impl Config {
    /// A request for `group` that changes nothing yet.
    pub fn group(group: u16) -> Config {
        Config { family: AF_UNSPEC, group, ..Config::default() }
    }

    pub fn bind(group: u16) -> Config {
        Config { cmd: Some(Cmd::Bind), ..Config::group(group) }
    }

    pub fn unbind(group: u16) -> Config {
        Config { cmd: Some(Cmd::Unbind), ..Config::group(group) }
    }

    /// The request with NLM_F_ACK, so every one is answered (an error, or an ACK).
    pub fn encode(&self, seq: u32) -> Vec<u8> {
        msg::build(ulog_type(NFULNL_MSG_CONFIG), NLM_F_REQUEST | NLM_F_ACK, seq, self.family, self.group, |w| {
            if let Some(cmd) = self.cmd {
                w.put_bytes(NFULA_CFG_CMD, &[cmd.code()]);
            }
            if let Some(mode) = self.mode {
                let mut params = [0u8; 6];
                params[..4].copy_from_slice(&mode.copy_range.to_be_bytes());
                params[4] = mode.copy_mode;
                w.put_bytes(NFULA_CFG_MODE, &params);
            }
            let be32s = [(NFULA_CFG_NLBUFSIZ, self.nlbufsiz), (NFULA_CFG_TIMEOUT, self.timeout)];
            for (ty, value) in be32s.into_iter().chain([(NFULA_CFG_QTHRESH, self.qthresh)]) {
                if let Some(value) = value {
                    w.put_be32(ty, value);
                }
            }
            if let Some(flags) = self.flags {
                w.put_be16(NFULA_CFG_FLAGS, flags);
            }
        })
    }

    /// Reads a config request back (what tcpdump, ulogd or we sent).
    pub fn decode(msg: &Reply<'_>) -> Result<Config, NlError> {
        if msg.ty != ulog_type(NFULNL_MSG_CONFIG) {
            return Err(NlError::Malformed("not an NFULNL_MSG_CONFIG message"));
        }
        let mut config = Config { family: msg.family, group: res_id(msg)?, ..Config::default() };
        for attr in attrs(msg) {
            let attr = attr?;
            match attr.ty {
                NFULA_CFG_CMD => match attr.payload {
                    [code] => config.cmd = Some(Cmd::from_code(*code)),
                    _ => return Err(NlError::Malformed("NFULA_CFG_CMD is not one byte")),
                },
                NFULA_CFG_MODE => match attr.payload {
                    // The trailing byte is padding (ulogd leaves garbage in it).
                    [a, b, c, d, copy_mode, _pad] => {
                        let copy_range = u32::from_be_bytes([*a, *b, *c, *d]);
                        config.mode = Some(Mode { copy_mode: *copy_mode, copy_range });
                    }
                    _ => return Err(NlError::Malformed("NFULA_CFG_MODE is not six bytes")),
                },
                NFULA_CFG_NLBUFSIZ => config.nlbufsiz = Some(attr.be32()?),
                NFULA_CFG_TIMEOUT => config.timeout = Some(attr.be32()?),
                NFULA_CFG_QTHRESH => config.qthresh = Some(attr.be32()?),
                NFULA_CFG_FLAGS => config.flags = Some(attr.be16()?),
                _ => {}
            }
        }
        Ok(config)
    }
}

/// `struct nfulnl_msg_packet_timestamp`: when the packet arrived, as the kernel stamped it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timestamp {
    pub sec: u64,
    pub usec: u64,
}

impl Timestamp {
    /// The wall-clock time; `None` for a value no `SystemTime` holds.
    pub fn to_system_time(self) -> Option<std::time::SystemTime> {
        let since_epoch =
            std::time::Duration::from_secs(self.sec).checked_add(std::time::Duration::from_micros(self.usec))?;
        std::time::UNIX_EPOCH.checked_add(since_epoch)
    }
}

/// An attribute this decoder does not interpret, kept as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAttr {
    pub ty: u16,
    pub payload: Vec<u8>,
}

/// One NFULNL_MSG_PACKET: a logged packet and what the kernel knew about it. Attributes the
/// kernel left out (a packet with no mark, a forwarded packet with no socket) are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NflogPacket {
    /// `nfgenmsg` family of the hook that logged: NFPROTO_IPV4 or NFPROTO_IPV6 for ip/ip6/inet.
    pub family: u8,
    /// The log group (`res_id`).
    pub group: u16,
    /// Ethertype of the payload, network order decoded: 0x0800 IPv4, 0x86dd IPv6.
    pub hw_protocol: u16,
    /// Netfilter hook number (NF_INET_FORWARD = 2, NF_INET_LOCAL_OUT = 3, …).
    pub hook: u8,
    /// The rule's prefix (the kernel sends it even when empty).
    pub prefix: Option<String>,
    pub indev: Option<u32>,
    pub physindev: Option<u32>,
    pub outdev: Option<u32>,
    pub physoutdev: Option<u32>,
    pub mark: Option<u32>,
    /// Absent when the packet carried no timestamp (locally sent packets, say): then the
    /// reader's own clock is the best there is.
    pub timestamp: Option<Timestamp>,
    /// Owner of the local socket that sent it, if any.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Per-group sequence number (only with NFULNL_CFG_F_SEQ).
    pub seq: Option<u32>,
    /// The packet from its network header on, cut at the copy range.
    pub payload: Vec<u8>,
    /// Hardware address and header, global sequence number, conntrack, and anything newer.
    pub other: Vec<RawAttr>,
}

/// Attributes the kernel writes between the mark and the timestamp (`__build_packet_message`):
/// where `encode` puts them back so a decoded message re-encodes to the kernel's bytes.
const LINK_LAYER: [u16; 6] = [NFULA_HWADDR, NFULA_HWTYPE, NFULA_HWLEN, NFULA_HWHEADER, NFULA_VLAN, NFULA_L2HDR];

impl NflogPacket {
    pub fn decode(msg: &Reply<'_>) -> Result<NflogPacket, NlError> {
        if msg.ty != ulog_type(NFULNL_MSG_PACKET) {
            return Err(NlError::Malformed("not an NFULNL_MSG_PACKET message"));
        }
        let mut p = NflogPacket { family: msg.family, group: res_id(msg)?, ..NflogPacket::default() };
        let mut have_header = false;
        for attr in attrs(msg) {
            let attr = attr?;
            match attr.ty {
                NFULA_PACKET_HDR => match attr.payload {
                    [hi, lo, hook, _pad] => {
                        p.hw_protocol = u16::from_be_bytes([*hi, *lo]);
                        p.hook = *hook;
                        have_header = true;
                    }
                    _ => return Err(NlError::Malformed("NFULA_PACKET_HDR is not four bytes")),
                },
                NFULA_PREFIX => {
                    // A prefix is the rule author's text: shown as well as it can be, not refused.
                    let end = attr.payload.iter().position(|&b| b == 0).unwrap_or(attr.payload.len());
                    p.prefix = Some(String::from_utf8_lossy(&attr.payload[..end]).into_owned());
                }
                NFULA_IFINDEX_INDEV => p.indev = Some(attr.be32()?),
                NFULA_IFINDEX_OUTDEV => p.outdev = Some(attr.be32()?),
                NFULA_IFINDEX_PHYSINDEV => p.physindev = Some(attr.be32()?),
                NFULA_IFINDEX_PHYSOUTDEV => p.physoutdev = Some(attr.be32()?),
                NFULA_MARK => p.mark = Some(attr.be32()?),
                NFULA_TIMESTAMP => match attr.payload.split_at_checked(8) {
                    Some((sec, usec)) if usec.len() == 8 => {
                        let be64 = |b: &[u8]| b.try_into().map(u64::from_be_bytes).unwrap_or(0);
                        p.timestamp = Some(Timestamp { sec: be64(sec), usec: be64(usec) });
                    }
                    _ => return Err(NlError::Malformed("NFULA_TIMESTAMP is not sixteen bytes")),
                },
                NFULA_UID => p.uid = Some(attr.be32()?),
                NFULA_GID => p.gid = Some(attr.be32()?),
                NFULA_SEQ => p.seq = Some(attr.be32()?),
                NFULA_PAYLOAD => p.payload = attr.payload.to_vec(),
                ty => p.other.push(RawAttr { ty, payload: attr.payload.to_vec() }),
            }
        }
        if !have_header {
            return Err(NlError::Malformed("NFULNL_MSG_PACKET without NFULA_PACKET_HDR"));
        }
        Ok(p)
    }

    /// The message as the kernel lays it out (attribute order of `__build_packet_message`).
    pub fn encode(&self) -> Vec<u8> {
        msg::build(ulog_type(NFULNL_MSG_PACKET), 0, 0, self.family, self.group, |w| {
            let [hi, lo] = self.hw_protocol.to_be_bytes();
            w.put_bytes(NFULA_PACKET_HDR, &[hi, lo, self.hook, 0]);
            if let Some(prefix) = &self.prefix {
                w.put_strz(NFULA_PREFIX, prefix);
            }
            put_be32s(
                w,
                &[
                    (NFULA_IFINDEX_INDEV, self.indev),
                    (NFULA_IFINDEX_PHYSINDEV, self.physindev),
                    (NFULA_IFINDEX_OUTDEV, self.outdev),
                    (NFULA_IFINDEX_PHYSOUTDEV, self.physoutdev),
                    (NFULA_MARK, self.mark),
                ],
            );
            let (link, rest): (Vec<&RawAttr>, Vec<&RawAttr>) =
                self.other.iter().partition(|a| LINK_LAYER.contains(&a.ty));
            for attr in link {
                w.put_bytes(attr.ty, &attr.payload);
            }
            if let Some(ts) = self.timestamp {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&ts.sec.to_be_bytes());
                b[8..].copy_from_slice(&ts.usec.to_be_bytes());
                w.put_bytes(NFULA_TIMESTAMP, &b);
            }
            put_be32s(w, &[(NFULA_UID, self.uid), (NFULA_GID, self.gid), (NFULA_SEQ, self.seq)]);
            for attr in rest {
                w.put_bytes(attr.ty, &attr.payload);
            }
            if !self.payload.is_empty() {
                w.put_bytes(NFULA_PAYLOAD, &self.payload);
            }
        })
    }
}

fn put_be32s(w: &mut AttrWriter, values: &[(u16, Option<u32>)]) {
    for &(ty, value) in values {
        if let Some(value) = value {
            w.put_be32(ty, value);
        }
    }
}

/// The group a message is about: `res_id` in `nfgenmsg`, big-endian.
fn res_id(msg: &Reply<'_>) -> Result<u16, NlError> {
    match msg.body.get(2..NFGENMSG_LEN) {
        Some([hi, lo]) => Ok(u16::from_be_bytes([*hi, *lo])),
        _ => Err(NlError::Malformed("nfnetlink message without nfgenmsg")),
    }
}

fn attrs<'a>(msg: &Reply<'a>) -> Attrs<'a> {
    Attrs::new(msg.body.get(NFGENMSG_LEN..).unwrap_or(&[]))
}

#[cfg(test)]
pub(crate) mod tests;
