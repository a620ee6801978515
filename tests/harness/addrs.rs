//! The address plan of the emulated Docker host: every address a test may send to, and its ports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Host's uplink address, where published ports are reached (`HOST_V4:PUBLISHED_PORT`).
pub const HOST_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const HOST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// The "internet" server, beyond the host's uplink (TEST-NET-2, RFC 5737 / 3849).
pub const INTERNET_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const INTERNET_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// A LAN client's source address inside 172.16.0.0/12 (on the internet namespace). It is only
/// ever a source: the naive `-s 172.16.0.0/12 -j REJECT` recipe would block its replies.
pub const LAN_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(172, 16, 99, 2);

/// Gateways: the bridges' own addresses in the host namespace.
pub const DOCKER0_V4: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 1);
pub const DOCKER0_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 1);
pub const BR_EG1_V4: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);
pub const BR_EG1_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 1);

/// Container c1 on docker0: its TCP port 80 is published as host port 8080.
pub const C1_V4: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
pub const C1_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 2);
/// Container c2 on docker0 (same network as c1).
pub const C2_V4: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 3);
pub const C2_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 3);
/// Container c3 on br-eg1 (a user-defined network).
pub const C3_V4: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
pub const C3_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 2);

/// Host port DNATed to `C1:SERVICE_PORT` (TCP), as `docker run -p 8080:80` does.
pub const PUBLISHED_PORT: u16 = 8080;
/// TCP and UDP echo in every container and on the internet server.
pub const SERVICE_PORT: u16 = 80;
/// TCP and UDP echo on the internet server too: a "DNS resolver" for `--allow` tests.
pub const DNS_PORT: u16 = 53;

/// Networks the harness owns. Probes refuse any other destination, so a typo cannot aim test
/// traffic at a real network (the namespaces have no way out, but say so in code too).
const OWN_V4: [(Ipv4Addr, u8); 3] =
    [(Ipv4Addr::new(198, 51, 100, 0), 24), (Ipv4Addr::new(172, 17, 0, 0), 16), (Ipv4Addr::new(172, 18, 0, 0), 16)];
const OWN_V6: [(Ipv6Addr, u8); 3] = [
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 64),
    (Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 0), 64),
    (Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 0), 64),
];

/// True if `ip` is in the harness's networks (or loopback), i.e. a probe may aim at it.
pub fn is_test_destination(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let ours = |&(net, len): &(Ipv4Addr, u8)| same_prefix(u32::from(v4).into(), u32::from(net).into(), 32, len);
            v4.is_loopback() || OWN_V4.iter().any(ours)
        }
        IpAddr::V6(v6) => {
            let ours = |&(net, len): &(Ipv6Addr, u8)| same_prefix(v6.into(), net.into(), 128, len);
            v6.is_loopback() || OWN_V6.iter().any(ours)
        }
    }
}

/// Compares the first `len` of `width` bits of two addresses held in a u128.
fn same_prefix(a: u128, b: u128, width: u32, len: u8) -> bool {
    let shift = width - u32::from(len);
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}
