//! Policy → what `table inet egress_guard` holds (pure: no I/O). The sections of `rules`,
//! rendered in native expressions, with the lists in interval sets:
//!
//! - chain `forward` (hook forward, priority filter - 1, policy accept); with `--block-host`
//!   also chain `input` (hook input, same priority), which first lets IPv6 neighbour discovery
//!   through (conntrack leaves it untracked, and without it the host cannot reach containers);
//! - per source selector (each bridge pattern; sources narrowed by the family's subnets):
//!   allowed destinations `accept`, then the rate-limited `log`, then the `reject`, the last two
//!   only for packets of no connection someone else opened (`ct state & (established | related)
//!   == 0`, a mask test: nft's `ct state != established,related` would also match replies);
//! - sets: `subnets4/6` (guarded source networks), `same_subnet4/6` (source region . its own
//!   subnet: "from a subnet to outside it", as iptables' `-s S ! -d S`, nested subnets included),
//!   `allow4/6` (allowed networks) and `allow4/6_port` (network . protocol . port).

use super::ranges::{self, Range};
use crate::net::{Family, Limit, Proto};
use crate::nft::expr::Expr;
use crate::nft::rule::{comment_udata, NftRule};
use crate::nft::set::{NftSet, SetElem};
use crate::nft::sys::*;
use crate::nft::text;
use crate::policy::{Allow, Iface, LogSink, Policy, Refusal};
use crate::rules::{self, Scope, Section, Step, COMMENT};

pub const TABLE: &str = "egress_guard";
pub const FORWARD: &str = "forward";
pub const INPUT: &str = "input";
/// The chains we may make.
pub const CHAINS: [&str; 2] = [FORWARD, INPUT];
/// `filter - 1`: before Docker's filter chains (iptables' FORWARD, nftables' filter-FORWARD).
pub const PRIORITY: i32 = NF_IP_PRI_FILTER - 1;

/// Which of our tables: its name, its base chains' priority, and whether it is owned by the
/// netlink socket that writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub name: &'static str,
    pub priority: i32,
    pub owner: bool,
}

/// The guard that `apply` writes, and that stays when egress-guard exits.
pub const GUARD: Spec = Spec { name: TABLE, priority: PRIORITY, owner: false };

/// `watch`'s shield: the same policy in a table owned by watch's socket (`flags owner`, kernel
/// 5.12+), so no other program can delete it — not even `nft flush ruleset`, which leaves owned
/// tables alone — and it goes away when watch does. Its chains run after every filter chain
/// (`filter + 10`): they only see what got past the guard, which is nothing while the guard is
/// there, and everything while a flush has taken the guard away and watch is rewriting it.
pub const SHIELD: Spec = Spec { name: "egress_guard_watch", priority: NF_IP_PRI_FILTER + 10, owner: true };
/// Elements shown per set in text meant for people; the rest are counted.
const SHOWN_ELEMENTS: usize = 16;

/// Everything one of our tables should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePlan {
    pub spec: Spec,
    pub sets: Vec<SetPlan>,
    pub chains: Vec<ChainPlan>,
}

/// A base chain and its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPlan {
    pub name: &'static str,
    pub hook: u32,
    pub rules: Vec<RulePlan>,
}

/// A rule: its table, its expressions and how nft syntax reads it (`add rule inet egress_guard …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePlan {
    pub table: &'static str,
    pub exprs: Vec<Expr>,
    pub text: String,
}

/// A set with its elements, and the `add set` line that reads as it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetPlan {
    pub set: NftSet,
    pub elems: Vec<SetElem>,
    pub text: String,
}

impl RulePlan {
    /// The rule as it goes on the wire (and as the kernel dumps it back, counters aside).
    pub fn to_rule(&self, chain: &str) -> NftRule {
        NftRule {
            family: NFPROTO_INET,
            table: self.table.into(),
            chain: chain.into(),
            handle: None,
            exprs: self.exprs.clone(),
            compat: None,
            userdata: Some(comment_udata(COMMENT)),
        }
    }

    /// Whether a rule read back from the kernel is this one: same expressions, counters aside
    /// (ours are planned at zero), and our comment.
    pub fn matches(&self, found: &NftRule) -> bool {
        found.shape() == self.exprs && found.userdata.as_deref() == Some(comment_udata(COMMENT).as_slice())
    }
}

/// The plan for `policy`, the forward chain guarding `families` (the others are guarded
/// elsewhere, or not at all). With `--block-host`, the input chain guards both families: no
/// DOCKER-USER sees traffic to the host.
pub fn plan(policy: &Policy, families: &[Family], spec: Spec) -> TablePlan {
    let mut chains = Vec::new();
    if !families.is_empty() {
        let rules = chain_rules(policy, Hook::Forward, families, spec.name);
        chains.push(ChainPlan { name: FORWARD, hook: NF_INET_FORWARD, rules });
    }
    if policy.block_host {
        let rules = chain_rules(policy, Hook::Input, &Family::ALL, spec.name);
        chains.push(ChainPlan { name: INPUT, hook: NF_INET_LOCAL_IN, rules });
    }
    let used = |name: &str| chains.iter().flat_map(|c| &c.rules).flat_map(|r| &r.exprs).any(|e| uses_set(e, name));
    let sets = all_sets(policy, spec.name).into_iter().filter(|s| used(&s.set.name)).collect();
    TablePlan { spec, sets, chains }
}

fn uses_set(e: &Expr, name: &str) -> bool {
    matches!(e, Expr::Lookup { set, .. } if set == name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    Forward,
    Input,
}

impl Hook {
    fn chain(self) -> &'static str {
        match self {
            Hook::Forward => FORWARD,
            Hook::Input => INPUT,
        }
    }
}

/// A section's scope narrowed to the families this chain guards (`None`: none of them).
fn narrowed(scope: &Scope, families: &[Family]) -> Option<Scope> {
    match scope {
        Scope::Any if families.len() == Family::ALL.len() => Some(Scope::Any),
        Scope::Any => families.first().map(|f| Scope::Family(*f)),
        Scope::Family(f) | Scope::Subnets(f, _) if !families.contains(f) => None,
        other => Some(other.clone()),
    }
}

fn chain_rules(policy: &Policy, hook: Hook, families: &[Family], table: &'static str) -> Vec<RulePlan> {
    let mut rules = Vec::new();
    if hook == Hook::Input {
        rules.push(rule(table, hook, vec![Cond::neighbour_discovery()], Action::Accept));
    }
    for section in rules::sections(policy) {
        if let Some(scope) = narrowed(&section.scope, families) {
            rules.extend(section_rules(table, hook, &section, &scope));
        }
    }
    rules
}

/// The conditions every rule of a section shares: from the bridge (and, forwarded, out by
/// another interface, so same-bridge frames seen with br_netfilter pass), from the scope's
/// sources (and, forwarded, to outside their own subnet).
fn base(hook: Hook, iface: Option<&Iface>, scope: &Scope) -> Vec<Cond> {
    let mut conds = Vec::new();
    if let Some(i) = iface {
        conds.push(Cond::iface(NFT_META_IIFNAME, i, false));
        if hook == Hook::Forward {
            conds.push(Cond::iface(NFT_META_OIFNAME, i, true));
        }
    }
    match scope {
        Scope::Any => {}
        Scope::Family(f) => conds.push(Cond::nfproto(*f)),
        Scope::Subnets(f, _) => {
            conds.push(Cond::saddr_in(*f, &subnets_set(*f)));
            if hook == Hook::Forward {
                conds.push(Cond::pair_not_in(*f, &same_subnet_set(*f)));
            }
        }
    }
    conds
}

fn families(scope: &Scope) -> Vec<Family> {
    match scope {
        Scope::Any => Family::ALL.to_vec(),
        Scope::Subnets(f, _) | Scope::Family(f) => vec![*f],
    }
}

fn section_rules(table: &'static str, hook: Hook, section: &Section, scope: &Scope) -> Vec<RulePlan> {
    let base = base(hook, section.iface.as_ref(), scope);
    let with = |more: Vec<Cond>| base.iter().cloned().chain(more).collect::<Vec<_>>();
    let mut rules = Vec::new();
    for step in &section.steps {
        match step {
            Step::PassMulticast => {
                for f in families(scope) {
                    rules.push(rule(table, hook, with(vec![Cond::multicast(f)]), Action::Accept));
                }
            }
            Step::Allow(list) => {
                for f in families(scope) {
                    let mine: Vec<&Allow> = list.iter().filter(|a| Family::of(&a.net) == f).collect();
                    if mine.iter().any(|a| a.port.is_none()) {
                        rules.push(rule(table, hook, with(vec![Cond::daddr_in(f, &allow_set(f))]), Action::Accept));
                    }
                    if mine.iter().any(|a| a.port.is_some()) {
                        rules.push(rule(
                            table,
                            hook,
                            with(vec![Cond::daddr_port_in(f, &allow_port_set(f))]),
                            Action::Accept,
                        ));
                    }
                }
            }
            Step::Log(log) => rules.push(rule(
                table,
                hook,
                with(vec![Cond::new_connection(), Cond::limit(log.rate)]),
                Action::Log(log.sink.clone()),
            )),
            Step::Refuse { answer, tcp_only } => {
                let mut conds = vec![Cond::new_connection()];
                if *tcp_only {
                    conds.push(Cond::l4proto(Proto::Tcp));
                }
                rules.push(rule(table, hook, with(conds), Action::Refuse(*answer)));
            }
        }
    }
    rules
}

fn subnets_set(f: Family) -> String {
    format!("subnets{}", digit(f))
}
fn same_subnet_set(f: Family) -> String {
    format!("same_subnet{}", digit(f))
}
fn allow_set(f: Family) -> String {
    format!("allow{}", digit(f))
}
fn allow_port_set(f: Family) -> String {
    format!("allow{}_port", digit(f))
}
fn digit(f: Family) -> char {
    match f {
        Family::V4 => '4',
        Family::V6 => '6',
    }
}

// ---- sets ----

/// nft datatype ids (`enum datatypes`): what `nft list` shows as the set's type.
const TYPE_IPV4_ADDR: u32 = 7;
const TYPE_IPV6_ADDR: u32 = 8;
const TYPE_INET_PROTO: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
/// nft combines the datatypes of a concatenation this many bits apart.
const TYPE_BITS: u32 = 6;

fn addr_type(f: Family) -> (u32, &'static str) {
    match f {
        Family::V4 => (TYPE_IPV4_ADDR, "ipv4_addr"),
        Family::V6 => (TYPE_IPV6_ADDR, "ipv6_addr"),
    }
}

fn addr_len(f: Family) -> u32 {
    ranges::bits(f) / 8
}

/// Every set the policy could need; `plan` keeps those a rule looks up.
fn all_sets(policy: &Policy, table: &'static str) -> Vec<SetPlan> {
    let mut sets = Vec::new();
    for f in Family::ALL {
        let subnets: Vec<Range> = policy.subnets_of(f).iter().map(Range::of).collect();
        if !subnets.is_empty() {
            sets.push(interval_set(table, f, subnets_set(f), ranges::merge(subnets.clone())));
            sets.push(same_subnet(table, f, &subnets));
        }
        let allow = policy.allow_of(f);
        let plain: Vec<Range> = allow.iter().filter(|a| a.port.is_none()).map(|a| Range::of(&a.net)).collect();
        if !plain.is_empty() {
            sets.push(interval_set(table, f, allow_set(f), ranges::merge(plain)));
        }
        if allow.iter().any(|a| a.port.is_some()) {
            sets.push(allow_ports(table, f, &allow));
        }
    }
    sets
}

fn new_set(table: &str, name: String, flags: u32, key_type: u32, key_len: u32, fields: Vec<u32>) -> NftSet {
    NftSet { family: NFPROTO_INET, table: table.into(), name, flags, key_type, key_len, fields }
}

/// The `add set` line; only the first elements are formatted (a list can be 10,000 long).
fn set_text(table: &str, name: &str, ty: &str, count: usize, shown: impl Iterator<Item = String>) -> String {
    let more = count.saturating_sub(SHOWN_ELEMENTS);
    let mut list: Vec<String> = shown.take(SHOWN_ELEMENTS).collect();
    if more > 0 {
        list.push(format!("… ({more} more)"));
    }
    format!("add set inet {table} {name} {{ type {ty}; flags interval; elements = {{ {} }} }}", list.join(", "))
}

/// An rbtree interval set of addresses.
fn interval_set(table: &str, f: Family, name: String, merged: Vec<Range>) -> SetPlan {
    let (ty, ty_name) = addr_type(f);
    let text = set_text(table, &name, ty_name, merged.len(), merged.iter().map(|r| ranges::show(f, r)));
    SetPlan {
        set: new_set(table, name, NFT_SET_INTERVAL, ty, addr_len(f), Vec::new()),
        elems: ranges::interval_elems(f, &merged),
        text,
    }
}

/// `source region . subnet`: for each subnet, the part of it not inside a smaller subnet given
/// too, paired with the subnet. A packet is within its own subnet when its `saddr . daddr`
/// falls in one, exactly when iptables' `-s S ! -d S` rules would all let it be.
fn same_subnet(table: &str, f: Family, subnets: &[Range]) -> SetPlan {
    let (ty, ty_name) = addr_type(f);
    let len = addr_len(f);
    let pairs: Vec<(Range, &Range)> = subnets
        .iter()
        .flat_map(|s| {
            let inner: Vec<Range> = subnets.iter().filter(|o| *o != s && s.contains(o)).copied().collect();
            ranges::subtract(*s, &inner).into_iter().map(move |region| (region, s))
        })
        .collect();
    let elems = pairs
        .iter()
        .map(|(region, s)| SetElem {
            key: [ranges::key(f, region.lo), ranges::key(f, s.lo)].concat(),
            key_end: Some([ranges::key(f, region.hi), ranges::key(f, s.hi)].concat()),
            flags: 0,
        })
        .collect();
    let name = same_subnet_set(f);
    let shown = pairs.iter().map(|(region, s)| format!("{} . {}", ranges::show(f, region), ranges::show(f, s)));
    let text = set_text(table, &name, &format!("{ty_name} . {ty_name}"), pairs.len(), shown);
    SetPlan {
        set: new_set(table, name, NFT_SET_INTERVAL | NFT_SET_CONCAT, ty << TYPE_BITS | ty, 2 * len, vec![len, len]),
        elems,
        text,
    }
}

/// `network . protocol . port`, networks merged per protocol and port.
fn allow_ports(table: &str, f: Family, allow: &[Allow]) -> SetPlan {
    let (ty, ty_name) = addr_type(f);
    let mut keys: Vec<(Proto, u16)> = allow.iter().filter_map(|a| a.port.map(|(p, proto)| (proto, p))).collect();
    keys.sort_by_key(|(proto, port)| (proto.number(), *port));
    keys.dedup();
    let entries: Vec<(Range, Proto, u16)> = keys
        .into_iter()
        .flat_map(|(proto, port)| {
            let nets = allow.iter().filter(|a| a.port == Some((port, proto))).map(|a| Range::of(&a.net)).collect();
            ranges::merge(nets).into_iter().map(move |r| (r, proto, port))
        })
        .collect();
    let elems = entries
        .iter()
        .map(|(r, proto, port)| {
            // Each field padded to 4 bytes, as the kernel's registers hold them.
            let tail = [[proto.number(), 0, 0, 0], [port.to_be_bytes()[0], port.to_be_bytes()[1], 0, 0]].concat();
            SetElem {
                key: [ranges::key(f, r.lo), tail.clone()].concat(),
                key_end: Some([ranges::key(f, r.hi), tail].concat()),
                flags: 0,
            }
        })
        .collect();
    let name = allow_port_set(f);
    let key_type = (ty << TYPE_BITS | TYPE_INET_PROTO) << TYPE_BITS | TYPE_INET_SERVICE;
    let shown = entries.iter().map(|(r, proto, port)| format!("{} . {} . {port}", ranges::show(f, r), proto.name()));
    let text = set_text(table, &name, &format!("{ty_name} . inet_proto . inet_service"), entries.len(), shown);
    SetPlan {
        set: new_set(
            table,
            name,
            NFT_SET_INTERVAL | NFT_SET_CONCAT,
            key_type,
            addr_len(f) + 8,
            vec![addr_len(f), 1, 2],
        ),
        elems,
        text,
    }
}

// ---- rules ----

/// One condition: its expressions, the family whose headers it reads (a rule in an inet table
/// checks `meta nfproto` before the first such read, as nft does) and the family it checks
/// itself.
#[derive(Debug, Clone, Default)]
struct Cond {
    exprs: Vec<Expr>,
    reads: Option<Family>,
    checks: Option<Family>,
}

/// The register a value loaded at this byte offset of a concatenation goes to, numbered as
/// the kernel dumps it back (16-byte NFT_REG_n where one starts, 32-bit NFT_REG32_nn else).
fn reg_at(offset: u32) -> u32 {
    let word = offset / 4;
    if word.is_multiple_of(4) {
        NFT_REG_1 + word / 4
    } else {
        NFT_REG32_00 + word
    }
}

fn load(f: Family, daddr: bool, reg: u32, len: u32) -> Expr {
    let offset = match (f, daddr) {
        (Family::V4, false) => 12,
        (Family::V4, true) => 16,
        (Family::V6, false) => 8,
        (Family::V6, true) => 24,
    };
    Expr::Payload { dreg: reg, base: NFT_PAYLOAD_NETWORK_HEADER, offset, len }
}

fn cmp(op: u32, data: Vec<u8>) -> Expr {
    Expr::Cmp { sreg: NFT_REG_1, op, data }
}

fn lookup(set: &str, inv: bool) -> Expr {
    Expr::Lookup { set: set.into(), sreg: NFT_REG_1, inv }
}

impl Cond {
    /// `iifname "docker0"` or `oifname != "br-*"`: an exact name compares all 16 bytes
    /// (IFNAMSIZ, as nft does), a `+` wildcard only the prefix, without NUL.
    fn iface(key: u32, iface: &Iface, negate: bool) -> Cond {
        let data = match iface.stem() {
            (prefix, true) => prefix.as_bytes().to_vec(),
            (name, false) => {
                let mut d = name.as_bytes().to_vec();
                d.resize(16, 0);
                d
            }
        };
        let op = if negate { NFT_CMP_NEQ } else { NFT_CMP_EQ };
        Cond { exprs: vec![Expr::Meta { key, dreg: NFT_REG_1 }, cmp(op, data)], ..Cond::default() }
    }

    fn nfproto(f: Family) -> Cond {
        Cond {
            exprs: vec![Expr::Meta { key: NFT_META_NFPROTO, dreg: NFT_REG_1 }, cmp(NFT_CMP_EQ, vec![f.nfproto()])],
            checks: Some(f),
            ..Cond::default()
        }
    }

    fn saddr_in(f: Family, set: &str) -> Cond {
        Cond {
            exprs: vec![load(f, false, NFT_REG_1, addr_len(f)), lookup(set, false)],
            reads: Some(f),
            ..Cond::default()
        }
    }

    fn daddr_in(f: Family, set: &str) -> Cond {
        Cond {
            exprs: vec![load(f, true, NFT_REG_1, addr_len(f)), lookup(set, false)],
            reads: Some(f),
            ..Cond::default()
        }
    }

    fn pair_not_in(f: Family, set: &str) -> Cond {
        let len = addr_len(f);
        Cond {
            exprs: vec![load(f, false, NFT_REG_1, len), load(f, true, reg_at(len), len), lookup(set, true)],
            reads: Some(f),
            ..Cond::default()
        }
    }

    fn daddr_port_in(f: Family, set: &str) -> Cond {
        let len = addr_len(f);
        Cond {
            exprs: vec![
                load(f, true, NFT_REG_1, len),
                Expr::Meta { key: NFT_META_L4PROTO, dreg: reg_at(len) },
                Expr::Payload { dreg: reg_at(len + 4), base: NFT_PAYLOAD_TRANSPORT_HEADER, offset: 2, len: 2 },
                lookup(set, false),
            ],
            reads: Some(f),
            ..Cond::default()
        }
    }

    fn multicast(f: Family) -> Cond {
        // 224.0.0.0/4: the first byte's high nibble; ff00::/8: the first byte.
        let exprs = match f {
            Family::V4 => vec![
                load(f, true, NFT_REG_1, 1),
                Expr::Bitwise { sreg: NFT_REG_1, dreg: NFT_REG_1, len: 1, mask: vec![0xf0], xor: vec![0] },
                cmp(NFT_CMP_EQ, vec![0xe0]),
            ],
            Family::V6 => vec![load(f, true, NFT_REG_1, 1), cmp(NFT_CMP_EQ, vec![0xff])],
        };
        Cond { exprs, reads: Some(f), ..Cond::default() }
    }

    /// The mask test: neither established nor related (new, invalid or untracked).
    fn new_connection() -> Cond {
        let mask = NF_CT_STATE_ESTABLISHED_BIT | NF_CT_STATE_RELATED_BIT;
        Cond {
            exprs: vec![
                Expr::Ct { key: NFT_CT_STATE, dreg: NFT_REG_1 },
                // conntrack state is a host-endian u32 in the register
                Expr::Bitwise {
                    sreg: NFT_REG_1,
                    dreg: NFT_REG_1,
                    len: 4,
                    mask: mask.to_ne_bytes().to_vec(),
                    xor: vec![0; 4],
                },
                cmp(NFT_CMP_EQ, vec![0; 4]),
            ],
            ..Cond::default()
        }
    }

    fn l4proto(p: Proto) -> Cond {
        Cond { exprs: Cond::l4proto_number(p.number()), ..Cond::default() }
    }

    fn limit(l: Limit) -> Cond {
        Cond {
            exprs: vec![Expr::Limit { rate: l.rate, unit: l.unit, burst: l.burst, ty: 0, flags: 0 }],
            ..Cond::default()
        }
    }

    /// ICMPv6 router/neighbour solicitation and advertisement, and redirect (types 133–137).
    fn neighbour_discovery() -> Cond {
        const ICMPV6: u8 = 58;
        let mut exprs = Cond::nfproto(Family::V6).exprs;
        exprs.extend(Cond::l4proto_number(ICMPV6));
        exprs.extend([
            Expr::Payload { dreg: NFT_REG_1, base: NFT_PAYLOAD_TRANSPORT_HEADER, offset: 0, len: 1 },
            cmp(NFT_CMP_GTE, vec![133]),
            cmp(NFT_CMP_LTE, vec![137]),
        ]);
        Cond { exprs, ..Cond::default() }
    }

    fn l4proto_number(n: u8) -> Vec<Expr> {
        vec![Expr::Meta { key: NFT_META_L4PROTO, dreg: NFT_REG_1 }, cmp(NFT_CMP_EQ, vec![n])]
    }
}

/// What a rule does.
#[derive(Debug, Clone)]
enum Action {
    Accept,
    Refuse(Refusal),
    Log(LogSink),
}

impl Action {
    fn expr(&self) -> Expr {
        let icmpx = |code| Expr::Reject { ty: NFT_REJECT_ICMPX_UNREACH, code };
        match self {
            Action::Accept => Expr::Verdict { code: NF_ACCEPT, chain: None },
            Action::Refuse(Refusal::Drop) => Expr::Verdict { code: NF_DROP, chain: None },
            Action::Refuse(Refusal::TcpReset) => Expr::Reject { ty: NFT_REJECT_TCP_RST, code: 0 },
            Action::Refuse(Refusal::PortUnreachable) => icmpx(NFT_REJECT_ICMPX_PORT_UNREACH),
            Action::Refuse(Refusal::AdminProhibited) => icmpx(NFT_REJECT_ICMPX_ADMIN_PROHIBITED),
            Action::Log(LogSink::Kernel { prefix }) => {
                Expr::LogKernel { prefix: Some(prefix.clone()), level: NFT_LOGLEVEL_WARNING }
            }
            Action::Log(LogSink::Nflog { group, prefix }) => Expr::Log { group: *group, prefix: prefix.clone() },
        }
    }
}

/// Conditions, a counter, the action; `meta nfproto` goes before the first read of an
/// IPv4/IPv6 header (as nft adds it, and leaves it out of the text).
fn rule(table: &'static str, hook: Hook, conds: Vec<Cond>, action: Action) -> RulePlan {
    let mut exprs = Vec::new();
    let mut checked: Option<Family> = None;
    for c in conds {
        if let Some(f) = c.reads.filter(|f| checked != Some(*f)) {
            exprs.extend(Cond::nfproto(f).exprs);
            checked = Some(f);
        }
        checked = c.checks.or(checked);
        exprs.extend(c.exprs);
    }
    exprs.push(Expr::Counter { bytes: 0, packets: 0 });
    exprs.push(action.expr());
    let mut plan = RulePlan { table, exprs, text: String::new() };
    plan.text = text::rule(&plan.to_rule(hook.chain()));
    plan
}
