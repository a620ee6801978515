//! Policy → what `table inet egress_guard` holds (pure: no I/O). The sections of `rules`,
//! rendered in native expressions, with every list in a set:
//!
//! - chain `forward` (hook forward, priority filter - 1, policy accept); with `--block-host`
//!   also chain `input` (hook input, same priority), which first lets IPv6 neighbour discovery
//!   through (conntrack leaves it untracked, and without it the host cannot reach containers);
//! - when anything may get out (`--allow`, per-container or per-network allowances), each chain
//!   first clears the mark bit (`--mark-bit`: a packet arrives with none of ours) and then sets
//!   it on what an allow-list lets out: `allow4/6` (networks), `allow4/6_port` (network .
//!   protocol . port), `from4/6` (source . destination, from containers' and networks' labels
//!   and the config's tables), `from4/6_port`, `open4/6` (sources that may go anywhere). The
//!   refusing rules, ours here and in DOCKER-USER alike, let marked packets pass, so however
//!   long the lists the rules stay a fixed handful;
//! - per source selector (each bridge pattern; sources narrowed by the family's subnets):
//!   marked packets `accept`, then the rate-limited `log`, then the `reject`, the last two only
//!   for packets of no connection someone else opened (`ct state & (established | related) ==
//!   0`, a mask test: nft's `ct state != established,related` would also match replies);
//! - sets `subnets4/6` (guarded source networks) and `same_subnet4/6` (source region . its own
//!   subnet: "from a subnet to outside it", as iptables' `-s S ! -d S`, nested subnets included);
//! - a last rule `continue comment "egress-guard sets DIGEST"`: a digest of what the policy's
//!   own sets hold, so a steady `apply` compares 16 hex digits instead of dumping 100,000
//!   elements. The per-container sets are not in it: `watch` keeps them, element by element.

use super::ranges::{self, Range};
use crate::grants::Live;
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
/// Containers' DNS redirected to watch's forwarder (`--allow-domain`).
pub const DNS: &str = "dns";
/// The chains we may make.
pub const CHAINS: [&str; 3] = [FORWARD, INPUT, DNS];
/// `dstnat - 1`: before Docker's own DNAT (published ports, its embedded DNS's rules).
pub const DNS_PRIORITY: i32 = NF_IP_PRI_NAT_DST - 1;
/// `filter - 1`: before Docker's filter chains (iptables' FORWARD, nftables' filter-FORWARD).
pub const PRIORITY: i32 = NF_IP_PRI_FILTER - 1;
/// How the digest rule's comment begins.
pub const DIGEST_PREFIX: &str = "egress-guard sets ";

/// Which of our tables: its name, its base chains' priority, and whether it is owned by the
/// netlink socket that writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub name: &'static str,
    pub priority: i32,
    pub owner: bool,
}

/// The guard that `apply` writes, and that stays when egress-guard exits. It holds the sets
/// and sets the mark.
pub const GUARD: Spec = Spec { name: TABLE, priority: PRIORITY, owner: false };

/// `watch`'s shield: the same policy in a table owned by watch's socket (`flags owner`, kernel
/// 5.12+), so no other program can delete it — not even `nft flush ruleset`, which leaves owned
/// tables alone — and it goes away when watch does. Its chains run after every filter chain
/// (`filter + 10`): they only see what got past the guard, which is nothing while the guard is
/// there, and everything while a flush has taken the guard away and watch is rewriting it. It
/// has no sets: it lets through what the guard marked, so while the guard is gone nothing is
/// marked and nothing gets out.
pub const SHIELD: Spec = Spec { name: "egress_guard_watch", priority: NF_IP_PRI_FILTER + 10, owner: true };
/// Elements shown per set in text meant for people; the rest are counted.
const SHOWN_ELEMENTS: usize = 16;

impl Spec {
    fn marks(&self) -> bool {
        *self == GUARD
    }
}

/// Everything one of our tables should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePlan {
    pub spec: Spec,
    pub sets: Vec<SetPlan>,
    pub chains: Vec<ChainPlan>,
    /// Whether the Docker sets' elements are what Docker runs (`Policy::live`), to be made so;
    /// else their content is left as the kernel has it.
    pub live: bool,
}

/// A base chain and its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainPlan {
    pub name: &'static str,
    pub hook: u32,
    /// `filter` or `nat`.
    pub kind: &'static str,
    pub priority: i32,
    pub rules: Vec<RulePlan>,
}

impl ChainPlan {
    /// The kind and priority a chain by this name has in `spec`'s table.
    pub fn shape(name: &str, spec: Spec) -> (&'static str, i32) {
        if name == DNS {
            ("nat", DNS_PRIORITY)
        } else {
            ("filter", spec.priority)
        }
    }
}

/// A rule: its table, its expressions, its comment (as rule userdata) and how nft syntax reads
/// it (`add rule inet egress_guard …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePlan {
    pub table: &'static str,
    pub exprs: Vec<Expr>,
    pub userdata: Vec<u8>,
    pub text: String,
}

/// Who fills a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filler {
    /// The policy: its content is in the digest.
    Policy,
    /// `watch`, from what Docker runs: `apply` leaves the content alone.
    Docker,
    /// watch's DNS forwarder, element by element with timeouts: never compared, never diffed.
    Dns,
}

/// A set with its elements, and the `add set` line that reads as it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetPlan {
    pub set: NftSet,
    /// Sorted. For a Docker set without a picture of Docker (`Policy::live` is `None`): empty,
    /// and not to be compared.
    pub elems: Vec<SetElem>,
    pub text: String,
    pub filler: Filler,
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
            userdata: Some(self.userdata.clone()),
        }
    }

    /// Whether a rule read back from the kernel is this one: same expressions, counters aside
    /// (ours are planned at zero), and the same comment (for the digest rule: the same digest,
    /// whatever generation it was stamped with).
    pub fn matches(&self, found: &NftRule) -> bool {
        let same_comment = match DigestNote::read(&self.userdata) {
            Some(mine) => found.userdata.as_deref().and_then(DigestNote::read).is_some_and(|n| n.digest == mine.digest),
            None => found.userdata.as_deref() == Some(self.userdata.as_slice()),
        };
        found.shape() == self.exprs && same_comment
    }

    /// The digest rule as a batch that commits against generation `genid` writes it: stamped
    /// with the generation that batch makes, `genid + 1`. While the ruleset stays at that
    /// generation nobody else has changed anything, the sets included, and a steady apply need
    /// not read them; once it moved, an apply reads the elements, so one added by hand goes.
    pub fn stamped(&self, genid: u32) -> RulePlan {
        let Some(note) = DigestNote::read(&self.userdata) else { return self.clone() };
        let userdata = comment_udata(&DigestNote { generation: Some(genid.wrapping_add(1)), ..note }.text());
        let mut r = RulePlan { userdata, ..self.clone() };
        r.text = text::rule(&r.to_rule(FORWARD));
        r
    }
}

/// What the digest rule's comment says: `egress-guard sets DIGEST[ for INPUT][ at GEN]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestNote {
    /// Of what the policy's sets hold.
    pub digest: u64,
    /// Of the input `apply` was given (flags, config file, version), when it said.
    pub input: Option<u64>,
    /// The generation the batch that wrote the rule made.
    pub generation: Option<u32>,
}

impl DigestNote {
    pub fn read(udata: &[u8]) -> Option<DigestNote> {
        let rest = comment_of(udata)?.strip_prefix(DIGEST_PREFIX)?;
        let mut words = rest.split(' ');
        let digest = u64::from_str_radix(words.next()?, 16).ok()?;
        let mut note = DigestNote { digest, input: None, generation: None };
        while let (Some(key), Some(value)) = (words.next(), words.next()) {
            match key {
                "for" => note.input = u64::from_str_radix(value, 16).ok(),
                "at" => note.generation = value.parse().ok(),
                _ => return None,
            }
        }
        Some(note)
    }

    pub fn text(&self) -> String {
        let mut t = format!("{DIGEST_PREFIX}{:016x}", self.digest);
        if let Some(i) = self.input {
            t.push_str(&format!(" for {i:016x}"));
        }
        if let Some(g) = self.generation {
            t.push_str(&format!(" at {g}"));
        }
        t
    }
}

impl TablePlan {
    /// The digest the last rule carries, if the plan has one.
    pub fn digest(&self) -> Option<&RulePlan> {
        self.chains
            .first()?
            .rules
            .last()
            .filter(|r| comment_of(&r.userdata).is_some_and(|c| c.starts_with(DIGEST_PREFIX)))
    }
}

/// The comment in a rule's userdata (nft's TLV: type 0, length, text with its NUL).
pub fn comment_of(udata: &[u8]) -> Option<&str> {
    let (&ty, rest) = udata.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let text = rest.get(..usize::from(len))?.strip_suffix(&[0])?;
    (ty == 0).then(|| std::str::from_utf8(text).ok()).flatten()
}

/// The plan for `policy`, the forward chain guarding `families` (the others are guarded
/// elsewhere, or not at all). With `--block-host`, the input chain guards both families: no
/// DOCKER-USER sees traffic to the host. The guard's table also marks what the allow-lists let
/// out, for every family, whoever guards it.
pub fn plan(policy: &Policy, families: &[Family], spec: Spec) -> TablePlan {
    let marking = spec.marks() && policy.marks();
    let sets: Vec<SetPlan> = if marking { allow_sets(policy, spec.name) } else { Vec::new() };
    let mut chains = Vec::new();
    if !families.is_empty() || marking {
        let mut rules = if marking { mark_rules(policy, &sets, spec.name, Hook::Forward) } else { Vec::new() };
        rules.extend(chain_rules(policy, Hook::Forward, families, spec.name));
        chains.push(ChainPlan { name: FORWARD, hook: NF_INET_FORWARD, kind: "filter", priority: spec.priority, rules });
    }
    let forwarder = marking && policy.answers_dns();
    if policy.block_host || forwarder {
        let mut rules = Vec::new();
        if forwarder {
            // The forwarder answers containers only: a query that reaches its port without
            // our redirect (from the LAN, from the internet, from the host) is dropped.
            for p in [Proto::Udp, Proto::Tcp] {
                let conds = vec![Cond::dport(p, policy.dns.port), Cond::not_redirected()];
                rules.push(rule(spec.name, Hook::Input, conds, Action::Refuse(Refusal::Drop)));
            }
        }
        if policy.block_host {
            rules.push(rule(spec.name, Hook::Input, vec![Cond::neighbour_discovery()], Action::Accept));
            if policy.answers_dns() {
                // The redirected queries arrive here, for the host: the forwarder must get them
                // (in watch's shield too, whose input chain runs after ours).
                for p in [Proto::Udp, Proto::Tcp] {
                    rules.push(rule(spec.name, Hook::Input, vec![Cond::dport(p, policy.dns.port)], Action::Accept));
                }
            }
            if marking {
                rules.extend(mark_rules(policy, &sets, spec.name, Hook::Input));
            }
            rules.extend(chain_rules(policy, Hook::Input, &Family::ALL, spec.name));
        }
        chains.push(ChainPlan { name: INPUT, hook: NF_INET_LOCAL_IN, kind: "filter", priority: spec.priority, rules });
    }
    if marking && policy.answers_dns() {
        let rules = dns_rules(policy, spec.name);
        chains.push(ChainPlan { name: DNS, hook: NF_INET_PRE_ROUTING, kind: "nat", priority: DNS_PRIORITY, rules });
    }
    let mut all = sets;
    all.extend(subnet_sets(policy, spec.name));
    let used = |name: &str| chains.iter().flat_map(|c| &c.rules).flat_map(|r| &r.exprs).any(|e| uses_set(e, name));
    let sets: Vec<SetPlan> = all.into_iter().filter(|s| used(&s.set.name)).collect();
    let mut plan = TablePlan { spec, sets, chains, live: policy.live.is_some() };
    if plan.sets.iter().any(|s| s.filler == Filler::Policy) {
        let digest = digest_rule(spec.name, &plan.sets, policy.input);
        plan.chains[0].rules.push(digest);
    }
    plan
}

fn uses_set(e: &Expr, name: &str) -> bool {
    matches!(e, Expr::Lookup { set, .. } if set == name)
}

/// `continue comment "egress-guard sets DIGEST"`: matches every packet and does nothing.
fn digest_rule(table: &'static str, sets: &[SetPlan], input: Option<u64>) -> RulePlan {
    let note =
        DigestNote { digest: digest(sets.iter().filter(|s| s.filler == Filler::Policy)), input, generation: None };
    let comment = note.text();
    let exprs = vec![Expr::Verdict { code: NFT_CONTINUE, chain: None }];
    let mut plan = RulePlan { table, exprs, userdata: comment_udata(&comment), text: String::new() };
    plan.text = text::rule(&plan.to_rule(FORWARD));
    plan
}

/// FNV-1a over each set's definition and sorted elements: stable across builds and versions
/// (std's hasher promises neither), and a change anywhere changes it. Not a defence against
/// anyone: `status` and `check` compare every element.
pub fn digest<'a>(sets: impl Iterator<Item = &'a SetPlan>) -> u64 {
    let mut h = crate::fnv::Fnv::default();
    for s in sets {
        h.eat(s.set.name.as_bytes());
        for n in [s.set.flags, s.set.key_type, s.set.key_len].iter().chain(&s.set.fields) {
            h.eat(&n.to_be_bytes());
        }
        for e in &s.elems {
            h.eat(&e.key).eat(e.key_end.as_deref().unwrap_or(&[])).eat(&e.flags.to_be_bytes());
        }
    }
    h.finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    Forward,
    Input,
    /// Prerouting, for the DNS redirect.
    Dns,
}

impl Hook {
    fn chain(self) -> &'static str {
        match self {
            Hook::Forward => FORWARD,
            Hook::Input => INPUT,
            Hook::Dns => DNS,
        }
    }
}

/// Per source selector, UDP and TCP port 53 to anywhere but the source's own bridge (or
/// subnet) redirected to the forwarder: every resolver a container asks, Docker's embedded
/// one's upstream queries included, is answered by watch. A DNS server on the container's own
/// network is left alone, as the guard leaves all same-network traffic. Containers whose
/// egress is open keep their own resolvers; with names allowed only per container, only the
/// containers allowed some (`dnsclients4`, `dnsclients6`) are redirected.
fn dns_rules(policy: &Policy, table: &'static str) -> Vec<RulePlan> {
    let mut rules = Vec::new();
    if policy.per_source {
        for f in Family::ALL {
            let open = Cond::lookup(f, Key::Saddr, &set_name("open", f));
            rules.push(rule(table, Hook::Dns, vec![open], Action::Accept));
        }
    }
    for section in rules::sections(policy) {
        let mut base = Vec::new();
        if let Some(i) = &section.iface {
            base.push(Cond::iface(NFT_META_IIFNAME, i, false));
            base.push(Cond::fib_oifname_not(i));
        }
        match &section.scope {
            Scope::Any => {}
            Scope::Family(f) => base.push(Cond::nfproto(*f)),
            Scope::Subnets(f, _) => {
                base.push(Cond::saddr_in(*f, &set_name("subnets", *f)));
                base.push(Cond::pair_not_in(*f, &set_name("same_subnet", *f)));
            }
        }
        // Everyone, or per family only those a container's or network's grant names.
        let who: Vec<Option<Cond>> = if policy.dns.is_on() {
            vec![None]
        } else {
            families(&section.scope).into_iter().map(|f| Some(Cond::saddr_in(f, &set_name("dnsclients", f)))).collect()
        };
        for client in who {
            for p in [Proto::Udp, Proto::Tcp] {
                let port = Cond::dport(p, crate::dns::upstream::PORT);
                let conds = base.iter().cloned().chain(client.clone()).chain([port]).collect();
                rules.push(rule(table, Hook::Dns, conds, Action::Redirect(policy.dns.port)));
            }
        }
    }
    rules
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
    for section in rules::sections(policy) {
        if let Some(scope) = narrowed(&section.scope, families) {
            rules.extend(section_rules(table, hook, &section, &scope));
        }
    }
    rules
}

/// Clear the bit, then set it where an allow-list's set holds the packet.
fn mark_rules(policy: &Policy, sets: &[SetPlan], table: &'static str, hook: Hook) -> Vec<RulePlan> {
    let bit = policy.mark_bit;
    let mut rules = vec![rule(table, hook, Vec::new(), Action::SetMark { clear: bit, set: 0 })];
    for s in sets {
        let Some((f, key)) = set_key(&s.set.name) else { continue };
        rules.push(rule(
            table,
            hook,
            vec![Cond::lookup(f, key, &s.set.name)],
            Action::SetMark { clear: bit, set: bit },
        ));
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
            conds.push(Cond::saddr_in(*f, &set_name("subnets", *f)));
            if hook == Hook::Forward {
                conds.push(Cond::pair_not_in(*f, &set_name("same_subnet", *f)));
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
            Step::Marked { bit } => rules.push(rule(table, hook, with(vec![Cond::marked(*bit)]), Action::Accept)),
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

fn set_name(stem: &str, f: Family) -> String {
    let digit = match f {
        Family::V4 => '4',
        Family::V6 => '6',
    };
    match stem.split_once('_') {
        Some((head, tail)) if matches!(head, "allow" | "from" | "dns" | "dnsfrom") => format!("{head}{digit}_{tail}"),
        _ => format!("{stem}{digit}"),
    }
}

/// What a set of allowances is keyed by, from its name: `allow4` → (V4, daddr), …
fn set_key(name: &str) -> Option<(Family, Key)> {
    let family = |d: &str| match d {
        "4" => Some(Family::V4),
        "6" => Some(Family::V6),
        _ => None,
    };
    let (stem, rest) = name.split_at(name.find(|c: char| c.is_ascii_digit())?);
    let (digit, port) = match rest.split_once('_') {
        Some((d, "port")) => (d, true),
        Some(_) => return None,
        None => (rest, false),
    };
    let key = match (stem, port) {
        ("allow", false) => Key::Daddr,
        ("allow", true) => Key::DaddrPort,
        ("from", false) => Key::Pair,
        ("from", true) => Key::PairPort,
        ("open", false) => Key::Saddr,
        ("dns", false) => Key::Daddr,
        ("dns", true) => Key::DaddrPort,
        ("dnsfrom", false) => Key::Pair,
        ("dnsfrom", true) => Key::PairPort,
        _ => return None,
    };
    Some((family(digit)?, key))
}

/// Whether a set by this name is one of the per-source sets that `watch` fills from Docker.
pub fn is_docker_set(name: &str) -> bool {
    let allowance = !is_dns_set(name) && matches!(set_key(name), Some((_, Key::Pair | Key::PairPort | Key::Saddr)));
    allowance || is_dns_client_set(name)
}

/// Whether a set by this name lists the containers allowed names of their own.
pub fn is_dns_client_set(name: &str) -> bool {
    matches!(name, "dnsclients4" | "dnsclients6")
}

/// Whether a set by this name holds the DNS forwarder's timed grants.
pub fn is_dns_set(name: &str) -> bool {
    name.starts_with("dns") && set_key(name).is_some()
}

/// What an allowance set's lookup reads from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Daddr,
    DaddrPort,
    Pair,
    PairPort,
    Saddr,
}

// ---- sets ----

/// One element (or interval: its opening element and the one closing it) as nft prints it.
pub fn show_unit(set: &NftSet, first: &SetElem, close: Option<&SetElem>) -> String {
    let family = |len: u32| if len == 16 { Family::V6 } else { Family::V4 };
    let num = |b: &[u8]| b.iter().fold(0u128, |n, x| n << 8 | u128::from(*x));
    if set.fields.is_empty() {
        let f = family(set.key_len);
        // An interval without a closing element runs to the end of the address space.
        let hi = close.map_or(u128::MAX >> (128 - ranges::bits(f)), |c| num(&c.key).saturating_sub(1));
        let lo = num(&first.key);
        // Read from the kernel, an interval may be anything: an empty one is said, not shown.
        return if hi < lo {
            format!("(empty at {})", ranges::show(f, &Range { lo, hi: lo }))
        } else {
            ranges::show(f, &Range { lo, hi })
        };
    }
    let end = first.key_end.as_deref().unwrap_or(&first.key);
    let mut at = 0usize;
    let mut parts = Vec::new();
    for &len in &set.fields {
        let padded = (len as usize).div_ceil(4) * 4;
        let (lo, hi) = (first.key.get(at..at + len as usize), end.get(at..at + len as usize));
        let (Some(lo), Some(hi)) = (lo, hi) else { return "?".into() };
        parts.push(match len {
            4 | 16 if num(lo) <= num(hi) => ranges::show(family(len), &Range { lo: num(lo), hi: num(hi) }),
            4 | 16 => "?".into(),
            1 => Proto::from_number(lo[0]).map_or_else(|| lo[0].to_string(), |p| p.name().to_string()),
            _ => num(lo).to_string(),
        });
        at += padded;
    }
    parts.join(" . ")
}

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

/// The guarded subnets' sets (those a rule looks up are kept).
fn subnet_sets(policy: &Policy, table: &'static str) -> Vec<SetPlan> {
    let mut sets = Vec::new();
    for f in Family::ALL {
        let subnets: Vec<Range> = policy.subnets_of(f).iter().map(Range::of).collect();
        if !subnets.is_empty() {
            sets.push(interval_set(table, f, set_name("subnets", f), ranges::merge(subnets.clone())));
            sets.push(same_subnet(table, f, &subnets));
        }
    }
    sets
}

/// The allow-lists' sets: the policy's (only those with entries), and, where the guard keeps
/// per-source allowances, the Docker ones (always, empty or not, so a container coming or
/// going changes elements and never the table's shape).
fn allow_sets(policy: &Policy, table: &'static str) -> Vec<SetPlan> {
    let mut sets = Vec::new();
    for f in Family::ALL {
        let allow = policy.allow_of(f);
        let plain: Vec<Range> = allow.iter().filter(|a| a.port.is_none()).map(|a| Range::of(&a.net)).collect();
        if !plain.is_empty() {
            sets.push(interval_set(table, f, set_name("allow", f), ranges::merge(plain)));
        }
        if allow.iter().any(|a| a.port.is_some()) {
            sets.push(port_set(table, f, set_name("allow_port", f), None, &ported(None, &allow)));
        }
    }
    if policy.per_source {
        let live = policy.live.as_deref();
        for f in Family::ALL {
            sets.extend(docker_sets(table, f, live));
        }
    }
    if policy.answers_dns() {
        for f in Family::ALL {
            sets.extend(dns_sets(table, f));
        }
    }
    if policy.per_source_dns() {
        let live = policy.live.as_deref();
        for f in Family::ALL {
            sets.extend(dns_client_sets(table, f, live));
        }
    }
    sets
}

/// `dns4` and `dns4_port` (and v6): the addresses watch's forwarder granted, each expiring
/// with its answer's TTL (clamped). Only the forwarder adds to them; a rebuild leaves them
/// empty, and the forwarder then grants again at the next lookup.
fn dns_sets(table: &'static str, f: Family) -> Vec<SetPlan> {
    let (ty, ty_name) = addr_type(f);
    let len = addr_len(f);
    let plain = set_name("dns", f);
    let port = set_name("dns_port", f);
    let port_type = (ty << TYPE_BITS | TYPE_INET_PROTO) << TYPE_BITS | TYPE_INET_SERVICE;
    vec![
        timed_set(table, plain, ty, len, ty_name.to_string()),
        timed_set(table, port, port_type, len + 8, format!("{ty_name} . inet_proto . inet_service")),
    ]
}

/// A set of the forwarder's grants: empty as planned, each element added with its timeout.
fn timed_set(table: &str, name: String, key_type: u32, key_len: u32, ty_text: String) -> SetPlan {
    SetPlan {
        text: format!("add set inet {table} {name} {{ type {ty_text}; flags timeout; }}"),
        set: new_set(table, name, NFT_SET_TIMEOUT, key_type, key_len, Vec::new()),
        elems: Vec::new(),
        filler: Filler::Dns,
    }
}

/// `dnsclients4`: the sources allowed names of their own (from `live`, by watch), whose DNS is
/// redirected; `dnsfrom4` and `dnsfrom4_port`: what the forwarder granted each of them, as
/// `source . destination [. protocol . port]`, timed like `dns4`.
fn dns_client_sets(table: &'static str, f: Family, live: Option<&Live>) -> Vec<SetPlan> {
    let clients: Vec<Range> = live
        .map(|l| {
            let named = l.sources.iter().filter(|s| !s.grant.domains.is_empty() && !s.grant.open);
            named.filter(|s| Family::of(&s.source) == f).map(|s| Range::of(&s.source)).collect()
        })
        .unwrap_or_default();
    let mut clients = interval_set(table, f, set_name("dnsclients", f), ranges::merge(clients));
    clients.filler = Filler::Docker;
    let (ty, ty_name) = addr_type(f);
    let len = addr_len(f);
    let pair_type = ty << TYPE_BITS | ty;
    let port_type = (pair_type << TYPE_BITS | TYPE_INET_PROTO) << TYPE_BITS | TYPE_INET_SERVICE;
    vec![
        clients,
        timed_set(table, set_name("dnsfrom", f), pair_type, 2 * len, format!("{ty_name} . {ty_name}")),
        timed_set(
            table,
            set_name("dnsfrom_port", f),
            port_type,
            2 * len + 8,
            format!("{ty_name} . {ty_name} . inet_proto . inet_service"),
        ),
    ]
}

/// `from`, `from_port` and `open` of one family, filled from `live` (empty without it).
fn docker_sets(table: &'static str, f: Family, live: Option<&Live>) -> Vec<SetPlan> {
    let sources: Vec<(Range, &crate::grants::Grant)> = live
        .map(|l| {
            l.sources.iter().filter(|s| Family::of(&s.source) == f).map(|s| (Range::of(&s.source), &s.grant)).collect()
        })
        .unwrap_or_default();
    let mut pairs = Vec::new();
    let mut with_ports = Vec::new();
    for (src, grant) in &sources {
        for a in grant.allow.iter().filter(|a| Family::of(&a.net) == f) {
            match a.port {
                None => pairs.push((*src, Range::of(&a.net))),
                Some(_) => with_ports.extend(ported(Some(*src), std::slice::from_ref(a))),
            }
        }
    }
    let open: Vec<Range> = sources.iter().filter(|(_, g)| g.open).map(|(r, _)| *r).collect();
    let mut sets = vec![
        pair_set(table, f, &ranges::disjoint_pairs(&pairs)),
        port_set(table, f, set_name("from_port", f), Some(()), &with_ports),
        interval_set(table, f, set_name("open", f), ranges::merge(open)),
    ];
    for s in &mut sets {
        s.filler = Filler::Docker;
    }
    sets
}

/// `(source, destination network, protocol, port)` entries, disjoint per protocol and port
/// (sources cut as `disjoint_pairs` cuts them; without a source, destinations merged).
fn ported(source: Option<Range>, allow: &[Allow]) -> Vec<(Option<Range>, Range, Proto, u16)> {
    let mut keys: Vec<(Proto, u16)> = allow.iter().filter_map(|a| a.port.map(|(p, proto)| (proto, p))).collect();
    keys.sort_by_key(|(proto, port)| (proto.number(), *port));
    keys.dedup();
    let mut out = Vec::new();
    for (proto, port) in keys {
        let nets: Vec<Range> =
            allow.iter().filter(|a| a.port == Some((port, proto))).map(|a| Range::of(&a.net)).collect();
        out.extend(ranges::merge(nets).into_iter().map(|r| (source, r, proto, port)));
    }
    out
}

fn new_set(table: &str, name: String, flags: u32, key_type: u32, key_len: u32, fields: Vec<u32>) -> NftSet {
    NftSet { family: NFPROTO_INET, table: table.into(), name, flags, key_type, key_len, fields }
}

/// The `add set` line; only the first elements are formatted (a list can be 100,000 long).
fn set_text(table: &str, name: &str, ty: &str, count: usize, shown: impl Iterator<Item = String>) -> String {
    let more = count.saturating_sub(SHOWN_ELEMENTS);
    let mut list: Vec<String> = shown.take(SHOWN_ELEMENTS).collect();
    if more > 0 {
        list.push(format!("… ({more} more)"));
    }
    let elements = if list.is_empty() { String::new() } else { format!(" elements = {{ {} }}", list.join(", ")) };
    format!("add set inet {table} {name} {{ type {ty}; flags interval;{elements} }}")
}

fn sorted(mut elems: Vec<SetElem>) -> Vec<SetElem> {
    elems.sort();
    elems
}

/// An rbtree interval set of addresses.
fn interval_set(table: &str, f: Family, name: String, merged: Vec<Range>) -> SetPlan {
    let (ty, ty_name) = addr_type(f);
    let text = set_text(table, &name, ty_name, merged.len(), merged.iter().map(|r| ranges::show(f, r)));
    SetPlan {
        set: new_set(table, name, NFT_SET_INTERVAL, ty, addr_len(f), Vec::new()),
        elems: sorted(ranges::interval_elems(f, &merged)),
        text,
        filler: Filler::Policy,
    }
}

/// A pipapo set of address pairs (`ipv4_addr . ipv4_addr`), each field a range.
fn pair_elems(f: Family, pairs: &[(Range, Range)]) -> Vec<SetElem> {
    pairs
        .iter()
        .map(|(a, b)| SetElem {
            key: [ranges::key(f, a.lo), ranges::key(f, b.lo)].concat(),
            key_end: Some([ranges::key(f, a.hi), ranges::key(f, b.hi)].concat()),
            flags: 0,
        })
        .collect()
}

fn pair_set_of(table: &str, f: Family, name: String, pairs: &[(Range, Range)]) -> SetPlan {
    let (ty, ty_name) = addr_type(f);
    let len = addr_len(f);
    let shown = pairs.iter().map(|(a, b)| format!("{} . {}", ranges::show(f, a), ranges::show(f, b)));
    let text = set_text(table, &name, &format!("{ty_name} . {ty_name}"), pairs.len(), shown);
    SetPlan {
        set: new_set(table, name, NFT_SET_INTERVAL | NFT_SET_CONCAT, ty << TYPE_BITS | ty, 2 * len, vec![len, len]),
        elems: sorted(pair_elems(f, pairs)),
        text,
        filler: Filler::Policy,
    }
}

/// `from4`: (source . destination) pairs from the per-source allowances.
fn pair_set(table: &str, f: Family, pairs: &[(Range, Range)]) -> SetPlan {
    pair_set_of(table, f, set_name("from", f), pairs)
}

/// `source region . subnet`: for each subnet, the part of it not inside a smaller subnet given
/// too, paired with the subnet. A packet is within its own subnet when its `saddr . daddr`
/// falls in one, exactly when iptables' `-s S ! -d S` rules would all let it be.
fn same_subnet(table: &str, f: Family, subnets: &[Range]) -> SetPlan {
    let pairs: Vec<(Range, Range)> = subnets
        .iter()
        .flat_map(|s| {
            let inner: Vec<Range> = subnets.iter().filter(|o| *o != s && s.contains(o)).copied().collect();
            ranges::subtract(*s, &inner).into_iter().map(move |region| (region, *s))
        })
        .collect();
    pair_set_of(table, f, set_name("same_subnet", f), &pairs)
}

/// `[source .] network . protocol . port` (the source field only when `source` is `Some`):
/// `allow4_port` from the policy, `from4_port` from the per-source allowances, whose sources
/// are cut per protocol and port so no two elements overlap.
fn port_set(
    table: &str,
    f: Family,
    name: String,
    source: Option<()>,
    entries: &[(Option<Range>, Range, Proto, u16)],
) -> SetPlan {
    let (ty, ty_name) = addr_type(f);
    let len = addr_len(f);
    let entries: Vec<(Option<Range>, Range, Proto, u16)> = match source {
        None => entries.to_vec(),
        Some(()) => {
            let mut keys: Vec<(Proto, u16)> = entries.iter().map(|(_, _, p, port)| (*p, *port)).collect();
            keys.sort_by_key(|(p, port)| (p.number(), *port));
            keys.dedup();
            keys.into_iter()
                .flat_map(|(proto, port)| {
                    let pairs: Vec<(Range, Range)> = entries
                        .iter()
                        .filter(|e| e.2 == proto && e.3 == port)
                        .filter_map(|(s, d, _, _)| Some((((*s)?), *d)))
                        .collect();
                    ranges::disjoint_pairs(&pairs).into_iter().map(move |(s, d)| (Some(s), d, proto, port))
                })
                .collect()
        }
    };
    let elems = entries
        .iter()
        .map(|(src, r, proto, port)| {
            // Each field padded to 4 bytes, as the kernel's registers hold them.
            let tail = [[proto.number(), 0, 0, 0], [port.to_be_bytes()[0], port.to_be_bytes()[1], 0, 0]].concat();
            let (lo, hi) = match src {
                Some(s) => (ranges::key(f, s.lo), ranges::key(f, s.hi)),
                None => (Vec::new(), Vec::new()),
            };
            SetElem {
                key: [lo, ranges::key(f, r.lo), tail.clone()].concat(),
                key_end: Some([hi, ranges::key(f, r.hi), tail].concat()),
                flags: 0,
            }
        })
        .collect();
    let shown = entries.iter().map(|(src, r, proto, port)| {
        let src = src.map(|s| format!("{} . ", ranges::show(f, &s))).unwrap_or_default();
        format!("{src}{} . {} . {port}", ranges::show(f, r), proto.name())
    });
    let src_type = if source.is_some() { format!("{ty_name} . ") } else { String::new() };
    let text =
        set_text(table, &name, &format!("{src_type}{ty_name} . inet_proto . inet_service"), entries.len(), shown);
    let (key_type, key_len, mut fields) =
        ((ty << TYPE_BITS | TYPE_INET_PROTO) << TYPE_BITS | TYPE_INET_SERVICE, len + 8, vec![len, 1, 2]);
    let (key_type, key_len) = match source {
        Some(()) => {
            fields.insert(0, len);
            (ty << (3 * TYPE_BITS) | key_type, key_len + len)
        }
        None => (key_type, key_len),
    };
    SetPlan {
        set: new_set(table, name, NFT_SET_INTERVAL | NFT_SET_CONCAT, key_type, key_len, fields),
        elems: sorted(elems),
        text,
        filler: Filler::Policy,
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

    fn pair_not_in(f: Family, set: &str) -> Cond {
        let len = addr_len(f);
        Cond {
            exprs: vec![load(f, false, NFT_REG_1, len), load(f, true, reg_at(len), len), lookup(set, true)],
            reads: Some(f),
            ..Cond::default()
        }
    }

    /// The packet's `key` (registers laid out as the kernel dumps them) looked up in `set`.
    fn lookup(f: Family, key: Key, set: &str) -> Cond {
        let len = addr_len(f);
        let proto_port = |at: u32| {
            [
                Expr::Meta { key: NFT_META_L4PROTO, dreg: reg_at(at) },
                Expr::Payload { dreg: reg_at(at + 4), base: NFT_PAYLOAD_TRANSPORT_HEADER, offset: 2, len: 2 },
            ]
        };
        let mut exprs = match key {
            Key::Daddr => vec![load(f, true, NFT_REG_1, len)],
            Key::Saddr => vec![load(f, false, NFT_REG_1, len)],
            Key::DaddrPort => [vec![load(f, true, NFT_REG_1, len)], proto_port(len).to_vec()].concat(),
            Key::Pair => vec![load(f, false, NFT_REG_1, len), load(f, true, reg_at(len), len)],
            Key::PairPort => {
                [vec![load(f, false, NFT_REG_1, len), load(f, true, reg_at(len), len)], proto_port(2 * len).to_vec()]
                    .concat()
            }
        };
        exprs.push(lookup(set, false));
        Cond { exprs, reads: Some(f), ..Cond::default() }
    }

    /// `udp dport PORT` / `tcp dport PORT`.
    fn dport(p: Proto, port: u16) -> Cond {
        let mut exprs = Cond::l4proto_number(p.number());
        exprs.push(Expr::Payload { dreg: NFT_REG_1, base: NFT_PAYLOAD_TRANSPORT_HEADER, offset: 2, len: 2 });
        exprs.push(cmp(NFT_CMP_EQ, port.to_be_bytes().to_vec()));
        Cond { exprs, ..Cond::default() }
    }

    /// `ct status & dnat == 0`: no redirect (a form of DNAT) brought the packet here.
    fn not_redirected() -> Cond {
        Cond::mask_test(Expr::Ct { key: NFT_CT_STATUS, dreg: NFT_REG_1 }, IPS_DST_NAT, 0)
    }

    /// `fib daddr oifname != IFACE`: the destination is not on the source's own bridge(s).
    fn fib_oifname_not(iface: &Iface) -> Cond {
        let mut c = Cond::iface(NFT_META_OIFNAME, iface, true);
        c.exprs[0] = Expr::Fib { flags: NFTA_FIB_F_DADDR, result: NFT_FIB_RESULT_OIFNAME, dreg: NFT_REG_1 };
        c
    }

    /// `meta mark & BIT == BIT`: our table marked the packet.
    fn marked(bit: u32) -> Cond {
        Cond::mask_test(Expr::Meta { key: NFT_META_MARK, dreg: NFT_REG_1 }, bit, bit)
    }

    /// `KEY & MASK == VALUE` for a 32-bit key the kernel loads host-endian (the mark, the
    /// conntrack state and status).
    fn mask_test(load: Expr, mask: u32, value: u32) -> Cond {
        let bitwise = Expr::Bitwise {
            sreg: NFT_REG_1,
            dreg: NFT_REG_1,
            len: 4,
            mask: mask.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        };
        Cond { exprs: vec![load, bitwise, cmp(NFT_CMP_EQ, value.to_ne_bytes().to_vec())], ..Cond::default() }
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
        Cond::mask_test(Expr::Ct { key: NFT_CT_STATE, dreg: NFT_REG_1 }, mask, 0)
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
    /// `meta mark set meta mark & ~CLEAR | SET`.
    SetMark {
        clear: u32,
        set: u32,
    },
    /// `redirect to :PORT`.
    Redirect(u16),
}

impl Action {
    fn exprs(&self) -> Vec<Expr> {
        if let Action::SetMark { clear, set } = self {
            return vec![
                Expr::Meta { key: NFT_META_MARK, dreg: NFT_REG_1 },
                Expr::Bitwise {
                    sreg: NFT_REG_1,
                    dreg: NFT_REG_1,
                    len: 4,
                    mask: (!clear).to_ne_bytes().to_vec(),
                    xor: set.to_ne_bytes().to_vec(),
                },
                Expr::MetaSet { key: NFT_META_MARK, sreg: NFT_REG_1 },
            ];
        }
        if let Action::Redirect(port) = self {
            return vec![
                Expr::Immediate { dreg: NFT_REG_1, data: port.to_be_bytes().to_vec() },
                Expr::Redir { reg_proto_min: NFT_REG_1, flags: NF_NAT_RANGE_PROTO_SPECIFIED },
            ];
        }
        vec![self.expr()]
    }

    fn expr(&self) -> Expr {
        let icmpx = |code| Expr::Reject { ty: NFT_REJECT_ICMPX_UNREACH, code };
        match self {
            Action::SetMark { .. } | Action::Redirect(_) => unreachable!("several expressions, see exprs"),
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
    exprs.extend(action.exprs());
    let mut plan = RulePlan { table, exprs, userdata: comment_udata(COMMENT), text: String::new() };
    plan.text = text::rule(&plan.to_rule(hook.chain()));
    plan
}
