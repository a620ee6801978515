//! What the user wants, validated and normalised before anything touches the kernel.

use crate::ipt::RejectWith;

/// The bridges Docker creates: the default bridge and every user-defined network.
pub const DEFAULT_IFACES: [&str; 2] = ["docker0", "br-+"];
/// Linux interface names are at most IFNAMSIZ - 1 bytes.
pub const IFNAME_MAX: usize = 15;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Bridge patterns whose traffic is guarded; `+` at the end is a prefix wildcard.
    pub ifaces: Vec<String>,
    pub reject: RejectWith,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { ifaces: DEFAULT_IFACES.iter().map(|s| s.to_string()).collect(), reject: RejectWith::PortUnreachable }
    }
}

/// A value the user gave that cannot work; the message names it and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// Checks an interface pattern as the kernel and iptables will see it.
pub fn check_iface(name: &str) -> Result<(), PolicyError> {
    let bad = |why: &str| Err(PolicyError(format!("--iface {name:?}: {why}")));
    let stem = name.strip_suffix('+').unwrap_or(name);
    if stem.is_empty() {
        return bad("empty interface name (use e.g. docker0 or br-+)");
    }
    if name.len() > IFNAME_MAX {
        return bad("longer than 15 bytes, the kernel's limit for interface names");
    }
    if stem.contains('+') {
        return bad("'+' is only a wildcard at the end (e.g. br-+)");
    }
    if stem.chars().any(|c| c.is_whitespace() || c == '/' || c == ':' || c.is_control()) {
        return bad("interface names cannot hold spaces, '/' or ':'");
    }
    Ok(())
}

impl Policy {
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.ifaces.is_empty() {
            return Err(PolicyError("no interfaces to guard (give --iface NAME, e.g. --iface docker0)".into()));
        }
        for (i, name) in self.ifaces.iter().enumerate() {
            check_iface(name)?;
            if self.ifaces[..i].contains(name) {
                return Err(PolicyError(format!("--iface {name:?} is given twice")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_valid() {
        assert_eq!(Policy::default().validate(), Ok(()));
    }

    #[test]
    fn bad_interface_names_are_refused() {
        for bad in ["", "+", "a+b", "sixteen-bytes-xx", "br 0", "eth0:1"] {
            assert!(check_iface(bad).is_err(), "{bad:?}");
        }
        for good in ["docker0", "br-+", "fifteen-bytes-x", "veth+"] {
            assert_eq!(check_iface(good), Ok(()), "{good:?}");
        }
    }
}
