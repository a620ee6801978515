//! Property tests of everything egress-guard parses or decodes: admin input (flag values, the
//! config file) and kernel bytes (netlink replies, rule, set and chain dumps) never panic, every
//! encoder/decoder pair round-trips, the docker-user diff turns any chain into the plan without
//! touching a foreign rule, `reach` never calls an escape safe, pipapo's disjoint boxes cover
//! exactly what was asked, and the element diff turns any content of the table's sets into any
//! other. The NFLOG decoders have their own properties (src/nft/nflog/tests.rs,
//! src/audit/packet/tests.rs).
//!
//! Cases per property are few so `cargo test` stays fast; `PROPTEST_CASES=20000 cargo test --lib
//! proptests` hunts longer. What the properties found is written down as plain unit tests at
//! the end.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use ipnet::IpNet;
use proptest::prelude::*;
use proptest::sample::select;

use crate::backend::docker_user::ipt::{Action, AddrMatch, IfaceMatch, IptRule, RejectWith};
use crate::backend::docker_user::reach::{self, Chains};
use crate::backend::docker_user::{self, codec, ChainDiff, CHAIN};
use crate::backend::table::ranges::{self, Range};
use crate::backend::table::{self, TablePlan, TableState, GUARD};
use crate::config;
use crate::net::{Family, Limit, Proto};
use crate::nft::attr::{AttrWriter, Attrs};
use crate::nft::chain::ChainDef;
use crate::nft::expr::Expr;
use crate::nft::msg::{self, nft_type};
use crate::nft::rule::{comment_udata, NftRule, Position};
use crate::nft::set::{NftSet, SetElem};
use crate::nft::sys::*;
use crate::nft::xt::{self, Conntrack};
use crate::nft::{monitor, text};
use crate::policy::{self, Iface, Policy, PolicySpec, Refusal, Sourced};
use crate::rules::COMMENT;

/// `cases` per property unless `PROPTEST_CASES` says otherwise; failures are not written to
/// proptest-regressions files (the ones worth keeping are unit tests below).
fn cases(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

// ============================================================================================
// 1. Admin input: the parsers never panic and accept exactly what they print back
// ============================================================================================

/// Text of every kind: arbitrary Unicode, the alphabet of addresses and ports (to get past the
/// first checks), control characters, and long strings.
fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        r"[0-9a-fA-F:./\[\]+udpctm -]{0,48}",
        r"[\x00-\x1f\x7f !-~\u{80}-\u{10ffff}]{0,24}",
        r".{100,400}",
        (arb_net(), r"[0-9+-]{0,7}", select(vec!["tcp", "udp", "icmp", "", "UDP"])).prop_map(|(n, port, proto)| {
            match n {
                IpNet::V4(n) => format!("{}:{port}/{proto}", n.addr()),
                IpNet::V6(n) => format!("[{}]:{port}/{proto}", n.addr()),
            }
        }),
    ]
}

/// A network of either family, prefix 1..=max, host bits cleared.
fn arb_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 1u8..=32).prop_map(|(a, len)| IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), len).unwrap().trunc()),
        (any::<u128>(), 1u8..=128).prop_map(|(a, len)| IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), len).unwrap().trunc()),
    ]
}

/// A network of one family, any prefix length 0..=max (the codec takes /0 too).
fn arb_net_of(family: Family) -> BoxedStrategy<IpNet> {
    match family {
        Family::V4 => (any::<u32>(), 0u8..=32)
            .prop_map(|(a, len)| IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), len).unwrap().trunc())
            .boxed(),
        Family::V6 => (any::<u128>(), 0u8..=128)
            .prop_map(|(a, len)| IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), len).unwrap().trunc())
            .boxed(),
    }
}

/// Interface names `parse_iface` takes: printable ASCII without `"`, `'`, `\`, `/`, `:`, `+`,
/// at most 15 bytes with the optional trailing wildcard, never `.` or `..`.
fn arb_iface_name() -> impl Strategy<Value = String> {
    let stem = r"[!#-&(-*,-.0-9;-\[\]-~]{1,15}";
    prop_oneof![
        2 => select(vec!["docker0", "br-+", "veth+", "eth0", "br-0123456789ab"]).prop_map(str::to_string),
        3 => (stem, any::<bool>()).prop_map(|(stem, wild): (String, bool)| {
            if wild {
                format!("{}+", &stem[..stem.len().min(14)])
            } else {
                stem
            }
        }),
    ]
    .prop_filter("not . or ..", |n| n != "." && n != "..")
}

fn arb_proto() -> impl Strategy<Value = Proto> {
    prop_oneof![Just(Proto::Tcp), Just(Proto::Udp)]
}

fn arb_allow() -> impl Strategy<Value = policy::Allow> {
    (arb_net(), prop::option::of((1u16..=u16::MAX, arb_proto()))).prop_map(|(net, port)| policy::Allow { net, port })
}

/// What the kernel's `dev_valid_name` demands of a name (`+` is iptables' wildcard, not part of
/// the name the kernel sees).
fn kernel_takes(name: &str) -> bool {
    let stem = name.strip_suffix('+').unwrap_or(name);
    !stem.is_empty()
        && name.len() <= policy::IFNAME_MAX
        && name != "."
        && name != ".."
        && !stem.contains('+')
        && !stem.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}

/// The port an accepted `--allow` was written with, exactly as its number prints.
fn canonical_port(text: &str, port: u16, proto: Proto) -> bool {
    text.ends_with(&format!("]:{port}/{}", proto.name()))
        || (!text.starts_with('[') && text.ends_with(&format!(":{port}/{}", proto.name())))
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn admin_text_never_panics_and_what_is_accepted_is_sane(s in arb_text()) {
        if let Ok(i) = policy::parse_iface(&s) {
            prop_assert_eq!(i.as_str(), s.as_str());
            prop_assert!(kernel_takes(&s), "{s:?} is not a name the kernel takes");
            prop_assert_eq!(policy::parse_iface(&i.to_string()), Ok(i));
        }
        if let Ok(n) = policy::parse_subnet(&s) {
            prop_assert_eq!(n, n.trunc(), "host bits in {}", s);
            prop_assert!(n.prefix_len() > 0);
            prop_assert_eq!(policy::parse_subnet(&n.to_string()), Ok(n));
        }
        if let Ok(a) = policy::parse_allow(&s) {
            prop_assert_eq!(a.net, a.net.trunc(), "host bits in {}", s);
            prop_assert!(a.net.prefix_len() > 0);
            if let Some((port, proto)) = a.port {
                prop_assert!(port >= 1);
                prop_assert!(canonical_port(&s, port, proto), "{s:?}: port {port} not written canonically");
            }
            prop_assert_eq!(policy::parse_allow(&a.to_string()), Ok(a));
        }
        if let Ok(l) = policy::parse_rate(&s) {
            prop_assert!((1..=10_000).contains(&l.rate));
            prop_assert!([1, 60, 3600, 86400].contains(&l.unit));
            prop_assert_eq!(policy::parse_rate(&format!("{}/{}", l.rate, l.unit_word())), Ok(l));
        }
        if let Ok(p) = policy::parse_prefix(&s) {
            prop_assert_eq!(&p, &s);
            prop_assert!(!p.is_empty() && !p.chars().any(char::is_control));
        }
    }

    #[test]
    fn valid_values_print_as_they_parse(
        name in arb_iface_name(),
        net in arb_net(),
        allow in arb_allow(),
        rate in 1u64..=10_000,
        unit in select(vec![1u64, 60, 3600, 86400]),
    ) {
        let iface = policy::parse_iface(&name);
        prop_assert!(iface.is_ok(), "{name:?}: {iface:?}");
        let iface = iface.unwrap();
        prop_assert_eq!(policy::parse_iface(&iface.to_string()), Ok(iface));
        prop_assert_eq!(policy::parse_subnet(&net.to_string()), Ok(net));
        prop_assert_eq!(policy::parse_allow(&allow.to_string()), Ok(allow));
        let limit = Limit { rate, unit, burst: policy::DEFAULT_LOG_RATE.burst };
        prop_assert_eq!(policy::parse_rate(&format!("{rate}/{}", limit.unit_word())), Ok(limit));
    }
}

// ---- the config file ----

const PATH: &str = "/etc/egress-guard/config.toml";

/// A config that sets every key, and the documented examples: the bases for mutation.
fn valid_configs() -> Vec<String> {
    let full = r#"# egress-guard settings
iface = ['docker0', "br-+"]   # an inline comment
subnet = [
  "172.17.0.0/16",
  "fd00::/8",
]
allow = ["198.51.100.53:53/udp", "[2001:db8::53]:53/udp", "203.0.113.0/24"]
reject_with = "tcp-reset"
log = "egress # blocked: "
log_rate = "5/minute"
nflog_group = 7
block_host = true
target = "docker-user"
"#;
    let mut out = vec![full.to_string()];
    let doc = include_str!("../docs/configuration.md");
    let mut block: Option<String> = None;
    for line in doc.lines() {
        match (&mut block, line.trim_start()) {
            (None, l) if l.starts_with("```toml") => block = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => out.extend(block.take()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, char),
    Delete(usize, usize),
    Replace(usize, char),
    DupLine(usize),
    DropLine(usize),
}

fn arb_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => select(r#"=[]{}"',.#\/:+-_ 0123456789abtfx"#.chars().collect::<Vec<_>>()),
        1 => select(vec!['\n', '\r', '\t', '\0', 'ä', '€', '𝄞', '\u{feff}', '\u{7f}']),
        1 => any::<char>(),
    ]
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), arb_char()).prop_map(|(at, c)| Edit::Insert(at, c)),
        (any::<usize>(), 1usize..6).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), arb_char()).prop_map(|(at, c)| Edit::Replace(at, c)),
        any::<usize>().prop_map(Edit::DupLine),
        any::<usize>().prop_map(Edit::DropLine),
    ]
}

fn apply_edits(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let n = chars.len().max(1);
        match *e {
            Edit::Insert(at, c) => chars.insert(at % (chars.len() + 1), c),
            Edit::Delete(at, len) => {
                let at = at % n;
                chars.drain(at.min(chars.len())..(at + len).min(chars.len()));
            }
            Edit::Replace(at, c) => {
                if !chars.is_empty() {
                    chars[at % n] = c;
                }
            }
            Edit::DupLine(at) | Edit::DropLine(at) => {
                let s: String = chars.iter().collect();
                let mut lines: Vec<&str> = s.split('\n').collect();
                let i = at % lines.len();
                if matches!(e, Edit::DupLine(_)) {
                    lines.insert(i, lines[i]);
                } else {
                    lines.remove(i);
                }
                chars = lines.join("\n").chars().collect();
            }
        }
    }
    chars.into_iter().collect()
}

/// The message starts with `PATH:LINE:COL: `, LINE and COL within the text.
fn names_a_place(text: &str, msg: &str) -> Result<(), String> {
    let rest = msg.strip_prefix(&format!("{PATH}:")).ok_or("no path")?;
    let (line, rest) = rest.split_once(':').ok_or("no line")?;
    let (col, rest) = rest.split_once(':').ok_or("no column")?;
    if !rest.starts_with(' ') {
        return Err("no space after the column".into());
    }
    let (line, col): (usize, usize) = (line.parse().map_err(|_| "line")?, col.parse().map_err(|_| "column")?);
    let lines: Vec<&str> = text.split('\n').collect();
    if line == 0 || line > lines.len() {
        return Err(format!("line {line} of {}", lines.len()));
    }
    let width = lines[line - 1].chars().count();
    if col == 0 || col > width + 1 {
        return Err(format!("column {col} of a line of {width} characters"));
    }
    Ok(())
}

fn check_config(text: &str) -> Result<(), TestCaseError> {
    if let Err(e) = config::parse(PATH, text) {
        let msg = e.to_string();
        if let Err(why) = names_a_place(text, &msg) {
            return Err(TestCaseError::fail(format!("{why}: {msg:?}\nfor {text:?}")));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_config_text_is_parsed_or_named(text in arb_text()) {
        check_config(&text)?;
    }

    #[test]
    fn mutated_configs_are_parsed_or_named(
        base in select(valid_configs()),
        edits in prop::collection::vec(arb_edit(), 1..6),
    ) {
        check_config(&apply_edits(&base, &edits))?;
    }
}

#[test]
fn the_mutation_bases_are_valid() {
    for text in valid_configs() {
        config::parse(PATH, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
    assert!(valid_configs().len() > 1, "the documented examples were found");
}

// ============================================================================================
// 2. Kernel bytes: no decoder panics, on random bytes nor on mutated real messages
// ============================================================================================

/// Captured messages (each file's comments say which command produced them).
const CAPTURES: [&str; 9] = [
    include_str!("backend/docker_user/testdata/ip-docker0-newrule.hex"),
    include_str!("backend/docker_user/testdata/ip6-docker0-newrule.hex"),
    include_str!("backend/table/testdata/nft-rules.hex"),
    include_str!("nft/testdata/nflog-config-tcpdump.hex"),
    include_str!("nft/testdata/nflog-config-ulogd.hex"),
    include_str!("nft/testdata/nflog-forward-tcpdump.hex"),
    include_str!("nft/testdata/nflog-forward-ulogd.hex"),
    include_str!("nft/testdata/nflog-output-ulogd.hex"),
    include_str!("nft/testdata/nflog-forward-bridge.hex"),
];

/// The hex bytes of a capture file (`#` starts a comment).
fn capture_bytes(text: &str) -> Vec<u8> {
    text.lines().flat_map(|l| crate::nft::hex(l.split('#').next().unwrap_or(""))).collect()
}

/// Netlink messages, each with its header, as long as the lengths hold.
fn split_messages(mut buf: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while buf.len() >= msg::NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < msg::NLMSG_HDRLEN || len > buf.len() {
            break;
        }
        out.push(buf[..len].to_vec());
        buf = &buf[crate::nft::attr::align4(len).min(buf.len())..];
    }
    out
}

fn interval_set() -> NftSet {
    NftSet {
        family: NFPROTO_INET,
        table: "egress_guard".into(),
        name: "dst4p".into(),
        flags: NFT_SET_INTERVAL | NFT_SET_CONCAT,
        key_type: 0x730d,
        key_len: 12,
        fields: vec![4, 1, 2],
    }
}

/// Seeds: every captured message, and one of each kind we decode built by our encoders.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out: Vec<Vec<u8>> = CAPTURES.iter().flat_map(|c| split_messages(&capture_bytes(c))).collect();
        let set = interval_set();
        out.push(set.new_msg(3, 1));
        let key = vec![198, 51, 100, 53, 17, 0, 0, 0, 0, 53, 0, 0];
        let elems = [
            SetElem { key: key.clone(), key_end: Some(key), flags: 0 },
            SetElem { key: vec![10, 0, 0, 0], key_end: None, flags: NFT_SET_ELEM_INTERVAL_END },
        ];
        out.extend(set.elems_msgs(&elems).into_iter().map(|m| m(4)));
        out.push(msg::build(nft_type(NFT_MSG_NEWCHAIN), 0, 5, NFPROTO_IPV4, 0, |w| {
            w.put_strz(NFTA_CHAIN_TABLE, "filter").put_strz(NFTA_CHAIN_NAME, "FORWARD");
            w.put_strz(NFTA_CHAIN_TYPE, "filter").put_be32(NFTA_CHAIN_POLICY, 1);
            w.nest(NFTA_CHAIN_HOOK, |w| {
                w.put_be32(NFTA_HOOK_HOOKNUM, NF_INET_FORWARD).put_be32(NFTA_HOOK_PRIORITY, 0);
            });
        }));
        out.push(msg::build(nft_type(NFT_MSG_NEWGEN), 0, 6, AF_UNSPEC, 0, |w| {
            w.put_be32(NFTA_GEN_ID, 9).put_be32(NFTA_GEN_PROC_PID, 42).put_strz(3, "iptables");
        }));
        let mut err = msg::build(NLMSG_ERROR, 0, 7, 0, 0, |_| {});
        err.truncate(msg::NLMSG_HDRLEN);
        err.extend_from_slice(&(-2i32).to_ne_bytes());
        err.extend_from_slice(&msg::getgen(7));
        let len = err.len() as u32;
        err[..4].copy_from_slice(&len.to_ne_bytes());
        out.push(err);
        let policy = crate::policy::testing::spec()
            .allow(&["198.51.100.53:53/udp", "203.0.113.0/25"])
            .log(Some("egress: "))
            .refusal(Refusal::TcpReset)
            .policy();
        for family in Family::ALL {
            let planned = docker_user::encode(family, &docker_user::plan(&policy, family));
            out.extend(planned.iter().map(|r| r.new_msg(8, Position::End)));
        }
        out
    })
}

#[test]
fn the_seeds_are_real_messages() {
    let seeds = seeds();
    assert!(seeds.len() > 20, "{} seeds", seeds.len());
    let rules = seeds
        .iter()
        .filter(|s| msg::parse(s).unwrap()[0].ty == nft_type(NFT_MSG_NEWRULE))
        .map(|s| NftRule::decode(&msg::parse(s).unwrap()[0]).unwrap())
        .collect::<Vec<_>>();
    assert!(rules.len() >= 5, "the NEWRULE captures split into messages");
    assert!(rules.iter().all(|r| !r.exprs.is_empty()));
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Set(at, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(at, b)| Mutation::Insert(at, b)),
        1 => (any::<usize>(), 1usize..16).prop_map(|(at, n)| Mutation::Remove(at, n)),
    ]
}

fn mutate(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for m in mutations {
        let n = b.len().max(1);
        match m {
            Mutation::Flip(at, bit) if !b.is_empty() => b[at % n] ^= 1 << bit,
            Mutation::Set(at, v) if !b.is_empty() => b[at % n] = *v,
            Mutation::Truncate(at) => b.truncate(at % n),
            Mutation::Insert(at, bytes) => {
                let at = at % (b.len() + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove(at, len) => {
                let at = (at % n).min(b.len());
                b.drain(at..(at + len).min(b.len()));
            }
            _ => {}
        }
    }
    b
}

/// Every reader of an attribute on every attribute, nested or not.
fn walk(attrs: Attrs<'_>, depth: usize) {
    for attr in attrs {
        let Ok(a) = attr else { break };
        let _ = (a.be16(), a.be32(), a.be64(), a.string());
        decode_xt(a.payload);
        if depth < 4 {
            walk(a.nested(), depth + 1);
        }
    }
}

fn decode_xt(bytes: &[u8]) {
    let _ = Conntrack::decode(bytes);
    let _ = xt::Comment::decode(bytes);
    let _ = xt::Reject::decode(bytes);
    let _ = xt::Log::decode(bytes);
}

fn default_ifaces() -> Vec<Iface> {
    policy::DEFAULT_IFACES.iter().map(|i| policy::parse_iface(i).unwrap()).collect()
}

fn jump_to_docker_user(family: Family) -> NftRule {
    let (exprs, _) = codec::encode(family, &IptRule::new(Action::Jump(CHAIN.into())));
    NftRule { chain: "FORWARD".into(), handle: Some(1), ..nft_rule(family.nfproto(), exprs) }
}

fn our_rule(family: Family) -> NftRule {
    docker_user::encode(family, &docker_user::plan(&Policy::default(), family)).remove(0)
}

/// Everything that reads a rule: the printers, the codec, `reach` (in FORWARD and ahead of ours
/// in DOCKER-USER, also as the chain it jumps to), ownership, shape and counters.
fn read_rule_every_way(rule: &NftRule) {
    let _ = text::rule(rule);
    for family in Family::ALL {
        for fam in [NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_INET, 0] {
            let _ = text::exprs(fam, &rule.exprs);
        }
        if let Some(r) = codec::decode(family, &rule.exprs) {
            let _ = r.to_iptables(family, CHAIN);
        }
        let mut chains = Chains::new();
        for target in reach::jump_targets(std::slice::from_ref(rule)) {
            chains.insert(target, vec![rule.clone()]);
        }
        for ifaces in [default_ifaces(), Vec::new()] {
            let _ = reach::forward(family, &[rule.clone(), jump_to_docker_user(family)], &chains, &ifaces);
            let _ = reach::ahead_of_ours(family, &[rule.clone(), our_rule(family)], 1, &chains, &ifaces);
            let _ = reach::ahead_of_ours(family, &[rule.clone(), rule.clone()], 2, &Chains::new(), &ifaces);
        }
    }
    let _ = (docker_user::is_ours(rule), rule.shape(), rule.packets());
}

/// Every decoder on every message the bytes split into; what decodes as a rule is read every
/// way, and must write back as itself.
fn decode_every_way(bytes: &[u8]) -> Result<(), TestCaseError> {
    walk(Attrs::new(bytes), 0);
    decode_xt(bytes);
    let _ = monitor::classify(bytes, &|pid| pid == 42);
    let Ok(replies) = msg::parse(bytes) else { return Ok(()) };
    for r in &replies {
        let _ = (r.error(), msg::parse_genid(r));
        walk(r.attrs(), 0);
        let _ = (NftSet::decode(r), SetElem::decode_all(r), ChainDef::decode(r));
        if let Ok(rule) = NftRule::decode(r) {
            read_rule_every_way(&rule);
            let again = rule.new_msg(1, Position::End);
            let back = NftRule::decode(&msg::parse(&again).unwrap()[0]);
            prop_assert_eq!(
                back.ok(),
                Some(NftRule { handle: None, compat: None, ..rule }),
                "what we read writes back"
            );
        }
    }
    Ok(())
}

/// A tree of attributes, to build expression data the decoders get deep into.
#[derive(Debug, Clone)]
enum Tree {
    Leaf(u16, Vec<u8>),
    Nest(u16, Vec<Tree>),
}

fn arb_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..24),
        (0u32..20).prop_map(|v| v.to_be_bytes().to_vec()),
        any::<u64>().prop_map(|v| v.to_be_bytes().to_vec()),
        select(vec!["docker0\0", "br-", "DOCKER-USER\0", "conntrack\0", "comment\0", "REJECT\0", "\0", ""])
            .prop_map(|s| s.as_bytes().to_vec()),
        Just(Conntrack { states: 6, invert: true }.encode()),
        Just(xt::Comment::encode(COMMENT)),
    ]
}

fn arb_tree() -> impl Strategy<Value = Tree> {
    let leaf = (0u16..12, arb_payload()).prop_map(|(ty, p)| Tree::Leaf(ty, p));
    leaf.prop_recursive(3, 32, 6, |inner| {
        (0u16..12, prop::collection::vec(inner, 0..6)).prop_map(|(ty, kids)| Tree::Nest(ty, kids))
    })
}

fn write_tree(w: &mut AttrWriter, t: &Tree) {
    match t {
        Tree::Leaf(ty, p) => {
            w.put_bytes(*ty, p);
        }
        Tree::Nest(ty, kids) => {
            w.nest(*ty, |w| kids.iter().for_each(|k| write_tree(w, k)));
        }
    }
}

const EXPR_NAMES: [&str; 16] = [
    "meta",
    "cmp",
    "payload",
    "bitwise",
    "counter",
    "immediate",
    "limit",
    "log",
    "ct",
    "reject",
    "lookup",
    "match",
    "target",
    "quota",
    "",
    "lo\u{e4}g",
];

/// A NEWRULE whose expressions are named like ours and hold random attribute trees.
fn arb_rule_msg() -> impl Strategy<Value = Vec<u8>> {
    let expr = (select(EXPR_NAMES.to_vec()), prop::collection::vec(arb_tree(), 0..6));
    (
        select(vec![NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_INET]),
        prop::collection::vec(expr, 0..6),
        prop::option::of(arb_payload()),
    )
        .prop_map(|(family, exprs, udata)| {
            msg::build(nft_type(NFT_MSG_NEWRULE), 0, 1, family, 0, |w| {
                w.put_strz(NFTA_RULE_TABLE, "filter").put_strz(NFTA_RULE_CHAIN, CHAIN).put_be64(NFTA_RULE_HANDLE, 3);
                w.nest(NFTA_RULE_EXPRESSIONS, |w| {
                    for (name, data) in &exprs {
                        w.nest(NFTA_LIST_ELEM, |w| {
                            w.put_strz(NFTA_EXPR_NAME, name);
                            w.nest(NFTA_EXPR_DATA, |w| data.iter().for_each(|t| write_tree(w, t)));
                        });
                    }
                });
                if let Some(u) = &udata {
                    w.put_bytes(NFTA_RULE_USERDATA, u);
                }
            })
        })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_every_way(&bytes)?;
    }

    #[test]
    fn mutated_real_messages_never_panic(
        seed in select(seeds().to_vec()),
        mutations in prop::collection::vec(arb_mutation(), 1..8),
    ) {
        decode_every_way(&mutate(&seed, &mutations))?;
    }

    #[test]
    fn truncated_real_messages_never_panic(seed in select(seeds().to_vec()), at in any::<usize>()) {
        let cut = &seed[..at % (seed.len() + 1)];
        decode_every_way(cut)?;
    }

    #[test]
    fn random_expressions_in_a_rule_never_panic(m in arb_rule_msg()) {
        decode_every_way(&m)?;
    }

    #[test]
    fn xt_structs_of_any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        decode_xt(&bytes);
        let mut ct = Conntrack { states: 0, invert: false }.encode();
        let n = ct.len();
        for (i, b) in bytes.iter().enumerate() {
            ct[(i * 7) % n] ^= b;
        }
        decode_xt(&ct);
    }
}

// ============================================================================================
// 3. Round trips: what we encode decodes to the same value
// ============================================================================================

/// A string without NUL (the kernel's strings end at the first one).
fn arb_str(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec!["", "egress-guard", "DOCKER-USER", "egress: ", "\u{e4}\u{20ac}"]).prop_map(str::to_string),
        proptest::string::string_regex(&format!("[^\0]{{0,{max}}}")).unwrap(),
    ]
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

fn arb_u32() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..20, any::<u32>()]
}

/// Every expression variant we write, with any values.
fn arb_expr() -> impl Strategy<Value = Expr> {
    prop_oneof![
        (arb_u32(), arb_u32()).prop_map(|(key, dreg)| Expr::Meta { key, dreg }),
        (arb_u32(), arb_u32(), arb_bytes(16)).prop_map(|(sreg, op, data)| Expr::Cmp { sreg, op, data }),
        (arb_u32(), arb_u32(), arb_u32(), arb_u32()).prop_map(|(dreg, base, offset, len)| Expr::Payload {
            dreg,
            base,
            offset,
            len
        }),
        (arb_u32(), arb_u32(), arb_u32(), arb_bytes(16), arb_bytes(16))
            .prop_map(|(sreg, dreg, len, mask, xor)| Expr::Bitwise { sreg, dreg, len, mask, xor }),
        (any::<u64>(), any::<u64>()).prop_map(|(bytes, packets)| Expr::Counter { bytes, packets }),
        (
            prop_oneof![select(vec![NF_ACCEPT, NF_DROP, NFT_RETURN, NFT_JUMP, NFT_GOTO, NFT_CONTINUE]), any::<i32>()],
            prop::option::of(arb_str(40))
        )
            .prop_map(|(code, chain)| Expr::Verdict { code, chain }),
        (any::<u64>(), any::<u64>(), any::<u32>(), arb_u32(), arb_u32())
            .prop_map(|(rate, unit, burst, ty, flags)| Expr::Limit { rate, unit, burst, ty, flags }),
        (any::<u16>(), prop::option::of(arb_str(63))).prop_map(|(group, prefix)| Expr::Log { group, prefix }),
        (prop::option::of(arb_str(63)), arb_u32()).prop_map(|(prefix, level)| Expr::LogKernel { prefix, level }),
        (arb_u32(), arb_u32()).prop_map(|(key, dreg)| Expr::Ct { key, dreg }),
        (arb_u32(), any::<u8>()).prop_map(|(ty, code)| Expr::Reject { ty, code }),
        (arb_str(32), arb_u32(), any::<bool>()).prop_map(|(set, sreg, inv)| Expr::Lookup { set, sreg, inv }),
        (select(vec!["conntrack", "comment", "tcp", "x"]), arb_u32(), arb_bytes(300))
            .prop_map(|(name, rev, info)| Expr::Match { name: name.into(), rev, info }),
        (select(vec!["REJECT", "LOG", "MARK", "x"]), arb_u32(), arb_bytes(64))
            .prop_map(|(name, rev, info)| Expr::Target { name: name.into(), rev, info }),
    ]
}

/// Any expression, also one we keep raw, for the readers that must take anything.
fn arb_expr_any() -> impl Strategy<Value = Expr> {
    prop_oneof![
        8 => arb_expr(),
        1 => (select(vec!["quota", "meta", "nat", "fib"]), arb_bytes(24))
            .prop_map(|(name, data)| Expr::Other { name: name.into(), data }),
        // The values the printer and `reach` give a meaning to.
        2 => select(vec![NFT_META_IIFNAME, NFT_META_OIFNAME, NFT_META_L4PROTO, NFT_META_NFPROTO])
            .prop_map(|key| Expr::Meta { key, dreg: NFT_REG_1 }),
        2 => (select(vec![NFT_CMP_EQ, NFT_CMP_NEQ, NFT_CMP_GTE, NFT_CMP_LTE]), arb_bytes(17))
            .prop_map(|(op, data)| Expr::Cmp { sreg: NFT_REG_1, op, data }),
        2 => (0u32..3, select(vec![0u32, 2, 8, 12, 16, 24, u32::MAX]), 0u32..18)
            .prop_map(|(base, offset, len)| Expr::Payload { dreg: NFT_REG_1, base, offset, len }),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(states, invert)| Expr::Match {
            name: Conntrack::NAME.into(),
            rev: 3,
            info: Conntrack { states, invert }.encode()
        }),
        1 => Just(Expr::Ct { key: NFT_CT_STATE, dreg: NFT_REG_1 }),
    ]
}

/// A rule of `ip filter DOCKER-USER` (or of another family) holding `exprs`.
fn nft_rule(family: u8, exprs: Vec<Expr>) -> NftRule {
    NftRule { family, table: "filter".into(), chain: CHAIN.into(), handle: None, exprs, compat: None, userdata: None }
}

fn encode_one(e: &Expr) -> Vec<u8> {
    let mut w = AttrWriter::new();
    e.encode(&mut w);
    w.into_bytes()
}

fn arb_nft_rule() -> impl Strategy<Value = NftRule> {
    (
        select(vec![NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_INET]),
        arb_str(32),
        arb_str(32),
        prop::collection::vec(arb_expr(), 0..10),
        prop::option::of(prop_oneof![arb_bytes(64), arb_str(60).prop_map(|c| comment_udata(&c))]),
    )
        .prop_map(|(family, table, chain, exprs, userdata)| NftRule {
            family,
            table,
            chain,
            handle: None,
            exprs,
            compat: None,
            userdata,
        })
}

fn arb_elem() -> impl Strategy<Value = SetElem> {
    (
        arb_bytes(16),
        prop::option::of(arb_bytes(16)),
        prop_oneof![Just(0u32), Just(NFT_SET_ELEM_INTERVAL_END), any::<u32>()],
    )
        .prop_map(|(key, key_end, flags)| SetElem { key, key_end, flags })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn expressions_round_trip(e in arb_expr()) {
        let bytes = encode_one(&e);
        let elem = Attrs::new(&bytes).next().unwrap().unwrap();
        prop_assert_eq!(Expr::decode(&elem).unwrap(), e);
    }

    #[test]
    fn rules_round_trip(rule in arb_nft_rule(), seq in any::<u32>(), at in 0u8..4, handle in any::<u64>()) {
        let at = [Position::Top, Position::Before(handle), Position::After(handle), Position::End][at as usize];
        let bytes = rule.new_msg(seq, at);
        let replies = msg::parse(&bytes).unwrap();
        prop_assert_eq!(replies.len(), 1);
        prop_assert_eq!(replies[0].seq, seq);
        prop_assert_eq!(NftRule::decode(&replies[0]).unwrap(), rule);
    }

    #[test]
    fn sets_round_trip(
        family in select(vec![NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_INET]),
        table in arb_str(32),
        name in arb_str(32),
        (flags, key_type, key_len) in (any::<u32>(), any::<u32>(), any::<u32>()),
        fields in prop::collection::vec(any::<u32>(), 0..6),
        id in any::<u32>(),
    ) {
        let set = NftSet { family, table, name, flags, key_type, key_len, fields };
        let bytes = set.new_msg(1, id);
        prop_assert_eq!(NftSet::decode(&msg::parse(&bytes).unwrap()[0]).unwrap(), set);
    }

    #[test]
    fn printers_take_any_expressions(
        exprs in prop::collection::vec(arb_expr_any(), 0..12),
        family in select(vec![NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_INET, 0, 7]),
        udata in prop::option::of(arb_bytes(20)),
    ) {
        let _ = text::exprs(family, &exprs);
        let rule = NftRule { handle: Some(1), userdata: udata, ..nft_rule(family, exprs) };
        read_rule_every_way(&rule);
    }
}

/// `n` elements of 0 to 16 byte keys, some with a range end, some flagged, from `seed` (a list
/// of thousands is quicker made so than as proptest values, and shrinks no better).
fn many_elems(n: usize, mut seed: u64) -> Vec<SetElem> {
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    let mut bytes = move || -> Vec<u8> {
        let len = next() % 17;
        (0..len).map(|_| next() as u8).collect()
    };
    (0..n)
        .map(|i| {
            let key = bytes();
            let end = bytes();
            // Every other element a range; flags 0, INTERVAL_END or anything.
            let key_end = (i % 2 == 0).then_some(end.clone());
            let flags = match end.first() {
                None => 0,
                Some(b) if b % 2 == 0 => NFT_SET_ELEM_INTERVAL_END,
                Some(b) => u32::from(*b) << 8 | 1,
            };
            SetElem { key, key_end, flags }
        })
        .collect()
}

proptest! {
    // Element lists of thousands: fewer cases.
    #![proptest_config(cases(48))]

    #[test]
    fn element_lists_split_and_come_back_whole(
        elems in prop_oneof![
            prop::collection::vec(arb_elem(), 0..20),
            (2000usize..4000, any::<u64>()).prop_map(|(n, seed)| many_elems(n, seed)),
        ],
    ) {
        let set = interval_set();
        let msgs: Vec<Vec<u8>> = set.elems_msgs(&elems).into_iter().enumerate().map(|(i, m)| m(i as u32)).collect();
        let mut back = Vec::new();
        for m in &msgs {
            let replies = msg::parse(m).unwrap();
            prop_assert_eq!(replies.len(), 1);
            for a in replies[0].attrs() {
                prop_assert!(a.unwrap().payload.len() < usize::from(u16::MAX), "an attribute overflows nla_len");
            }
            back.extend(SetElem::decode_all(&replies[0]).unwrap());
        }
        prop_assert_eq!(&back, &elems);
        // LIST_ELEM { [FLAGS] KEY { VALUE } [KEY_END { VALUE }] }, as `SetElem::encode` lays it out.
        let a4 = crate::nft::attr::align4;
        let size = |e: &SetElem| {
            4 + usize::from(e.flags != 0) * 8 + 8 + a4(e.key.len()) + e.key_end.as_ref().map_or(0, |k| 8 + a4(k.len()))
        };
        let total: usize = elems.iter().map(size).sum();
        if total > u16::MAX as usize {
            prop_assert!(msgs.len() > 1, "{} bytes of elements in one message", total);
        }
        prop_assert_eq!(msgs.is_empty(), elems.is_empty());
        prop_assert!(elems.len() < 2000 || msgs.len() > 1, "thousands of elements take several messages");
    }
}

// ---- xt structs and the iptables codec ----

fn arb_limit() -> impl Strategy<Value = Limit> {
    (1u64..=10_000, select(vec![1u64, 60, 3600, 86400]), prop_oneof![Just(5u32), any::<u32>()])
        .prop_map(|(rate, unit, burst)| Limit { rate, unit, burst })
}

fn arb_iface_match() -> impl Strategy<Value = IfaceMatch> {
    (arb_iface_name(), any::<bool>()).prop_map(|(name, negate)| IfaceMatch { name, negate })
}

fn arb_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Drop),
        Just(Action::Return),
        Just(Action::Accept),
        Just(Action::Reject(RejectWith::PortUnreachable)),
        Just(Action::Reject(RejectWith::AdminProhibited)),
        Just(Action::Reject(RejectWith::TcpReset)),
        r"[A-Za-z0-9_-]{1,28}".prop_map(Action::Jump),
        prefix_bytes(policy::LOG_PREFIX_MAX).prop_map(|prefix| Action::Log { prefix }),
        (any::<u16>(), prop::option::of(prefix_bytes(policy::NFLOG_PREFIX_MAX)))
            .prop_map(|(group, prefix)| Action::Nflog { group, prefix }),
    ]
}

/// A log prefix `parse_prefix` takes, at most `max` bytes long.
fn prefix_bytes(max: usize) -> impl Strategy<Value = String> {
    r"[^\x00-\x1f\x7f]{1,40}".prop_map(move |s: String| {
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_string()
    })
}

/// Rules of the shapes our plan emits (and a little more: any interface, prefix, port, state,
/// limit, comment and action), with the addresses of `family`.
fn arb_ipt_rule(family: Family) -> impl Strategy<Value = IptRule> {
    let addr = move || {
        prop::option::of((arb_net_of(family), any::<bool>()).prop_map(|(net, negate)| AddrMatch { net, negate }))
    };
    (
        (prop::option::of(arb_iface_match()), prop::option::of(arb_iface_match())),
        prop::option::of((arb_proto(), prop::option::of(1u16..=u16::MAX))),
        (addr(), addr()),
        prop::option::of((any::<u16>(), any::<bool>()).prop_map(|(states, invert)| Conntrack { states, invert })),
        prop::option::of(arb_limit()),
        prop::option::of(prop_oneof![
            Just(COMMENT.to_string()),
            r"[^\x00]{0,60}".prop_filter("fits", |c: &String| c.len() <= xt::Comment::MAX_LEN)
        ]),
        (arb_action(), prop::option::of(any::<u8>().prop_map(|b| 1u32 << (b % 32)))),
    )
        .prop_map(|((in_iface, out_iface), proto, (src, dst), ctstate, limit, comment, (action, mark))| IptRule {
            in_iface,
            out_iface,
            proto: proto.map(|(p, _)| p),
            src,
            dst,
            dport: proto.and_then(|(_, port)| port),
            mark,
            ctstate,
            limit,
            comment,
            action,
        })
}

fn arb_family() -> impl Strategy<Value = Family> {
    prop_oneof![Just(Family::V4), Just(Family::V6)]
}

fn arb_family_rule() -> impl Strategy<Value = (Family, IptRule)> {
    arb_family().prop_flat_map(|f| (Just(f), arb_ipt_rule(f)))
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn xt_structs_round_trip(
        states in any::<u16>(),
        invert in any::<bool>(),
        comment in r"[^\x00]{0,80}".prop_filter("fits", |c: &String| c.len() <= xt::Comment::MAX_LEN),
        with in any::<u32>(),
        level in any::<u8>(),
        prefix in prefix_bytes(xt::Log::MAX_PREFIX),
    ) {
        let ct = Conntrack { states, invert };
        prop_assert_eq!(Conntrack::decode(&ct.encode()), Some(ct));
        prop_assert_eq!(xt::Comment::decode(&xt::Comment::encode(&comment)), Some(comment));
        prop_assert_eq!(xt::Reject::decode(&xt::Reject::encode(with)), Some(with));
        let log = xt::Log { level, prefix };
        prop_assert_eq!(xt::Log::decode(&log.encode()), Some(log));
    }

    #[test]
    fn iptables_rules_round_trip_through_the_codec((family, rule) in arb_family_rule()) {
        let (exprs, compat) = codec::encode(family, &rule);
        prop_assert_eq!(compat.proto, rule.proto.map_or(0, |p| u32::from(p.number())));
        prop_assert_eq!(codec::decode(family, &exprs), Some(rule.clone()));
        // And through the kernel's bytes.
        let nft = NftRule { compat: Some(compat), ..nft_rule(family.nfproto(), exprs) };
        let bytes = nft.new_msg(1, Position::Top);
        let back = NftRule::decode(&msg::parse(&bytes).unwrap()[0]).unwrap();
        prop_assert_eq!(codec::decode(family, &back.exprs), Some(rule.clone()));
        let line = rule.to_iptables(family, CHAIN);
        prop_assert!(line.starts_with("-A DOCKER-USER"));
    }

    #[test]
    fn the_codec_reads_any_expressions(exprs in prop::collection::vec(arb_expr_any(), 0..12), family in arb_family()) {
        if let Some(r) = codec::decode(family, &exprs) {
            let _ = r.to_iptables(family, CHAIN);
        }
    }

    #[test]
    fn the_codec_reads_edited_rules(
        (family, rule) in arb_family_rule(),
        edits in prop::collection::vec((any::<usize>(), 0u8..3, arb_expr_any()), 1..4),
    ) {
        let (mut exprs, _) = codec::encode(family, &rule);
        for (at, how, e) in edits {
            let at = at % (exprs.len() + 1);
            match how {
                0 => exprs.insert(at, e),
                1 if at < exprs.len() => exprs[at] = e,
                _ if at < exprs.len() => { exprs.remove(at); }
                _ => {}
            }
        }
        if let Some(r) = codec::decode(family, &exprs) {
            // Whatever decodes means exactly what the kernel holds.
            let (again, _) = codec::encode(family, &r);
            let zero = |v: &[Expr]| nft_rule(0, v.to_vec()).shape();
            prop_assert_eq!(zero(&again), zero(&exprs));
        }
    }

    #[test]
    fn any_iptables_rule_prints(
        (family, rule) in arb_family_rule(),
        name in ".{0,20}",
        chain in ".{0,20}",
    ) {
        let mut odd = rule;
        odd.in_iface = Some(IfaceMatch { name: name.clone(), negate: true });
        odd.comment = Some(name.clone());
        odd.action = Action::Log { prefix: name };
        let _ = odd.to_iptables(family, &chain);
        let _ = codec::encode(family, &odd);
    }
}

// ============================================================================================
// 4. The docker-user diff: any chain becomes the plan, foreign rules untouched
// ============================================================================================

/// Flag values that parse.
fn flags<T>(
    flag: &'static str,
    values: Vec<&str>,
    parse: fn(&str) -> Result<T, policy::ValueError>,
) -> Option<Vec<Sourced<T>>> {
    Some(values.iter().map(|v| Sourced::flag(flag, parse(v).unwrap())).collect())
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (
        prop::sample::subsequence(vec!["docker0", "br-+", "veth+"], 0..=3),
        prop::sample::subsequence(vec!["172.17.0.0/16", "172.18.0.0/15", "fd00::/8", "fd01::/16"], 0..=2),
        prop::sample::subsequence(
            vec!["198.51.100.53:53/udp", "203.0.113.0/24", "[2001:db8::53]:53/tcp", "2001:db8::/33"],
            0..=3,
        ),
        select(vec![Refusal::PortUnreachable, Refusal::AdminProhibited, Refusal::TcpReset, Refusal::Drop]),
        prop::option::of(prop_oneof![Just(None), Just(Some(3u16))]),
    )
        .prop_filter_map("a policy that resolves", |(ifaces, subnets, allow, refusal, log)| {
            let spec = PolicySpec {
                ifaces: if ifaces.is_empty() { None } else { flags("--iface", ifaces, policy::parse_iface) },
                subnets: flags("--subnet", subnets, policy::parse_subnet),
                allow: flags("--allow", allow, policy::parse_allow),
                refusal: Some(refusal),
                log: log.map(|_| Sourced::flag("--log", Some("egress: ".to_string()))),
                nflog_group: log.flatten(),
                ..PolicySpec::default()
            };
            spec.resolve().ok()
        })
}

/// A rule someone else wrote: interfaces, a state, and what it does (a jump to a chain we did
/// not read counts as letting traffic through).
fn arb_foreign(family: Family) -> impl Strategy<Value = NftRule> {
    let name = select(vec!["docker0", "br-+", "br-abc", "eth0", "veth+"]);
    (
        prop::option::of((name.clone(), any::<bool>())),
        prop::option::of((name, any::<bool>())),
        prop::option::of(select(vec![
            Conntrack { states: Conntrack::RELATED | Conntrack::ESTABLISHED, invert: false },
            Conntrack { states: Conntrack::NEW, invert: false },
        ])),
        prop_oneof![
            Just(Action::Accept),
            Just(Action::Drop),
            Just(Action::Return),
            Just(Action::Jump("ELSEWHERE".into())),
            Just(Action::Reject(RejectWith::PortUnreachable)),
            Just(Action::Log { prefix: "theirs ".into() }),
        ],
        prop::option::of(Just("not-ours".to_string())),
    )
        .prop_map(move |(i, o, ctstate, action, comment)| {
            let m = |x: Option<(&str, bool)>| x.map(|(n, negate)| IfaceMatch { name: n.to_string(), negate });
            let r = IptRule { in_iface: m(i), out_iface: m(o), ctstate, comment, ..IptRule::new(action) };
            docker_user::encode(family, &[r]).remove(0)
        })
}

/// How one of our rules was changed by hand (or by an older policy).
#[derive(Debug, Clone, Copy)]
enum Change {
    Action,
    Negation,
    Counter,
    Extra,
}

/// One entry of a chain as we find it.
#[derive(Debug, Clone)]
enum Entry {
    Foreign(NftRule),
    /// The planned rule with this index (mod the plan's length).
    Planned(usize),
    Changed(usize, Change),
    /// A rule of ours from some other policy.
    Stale,
}

fn arb_entry(family: Family) -> impl Strategy<Value = Entry> {
    prop_oneof![
        3 => arb_foreign(family).prop_map(Entry::Foreign),
        4 => any::<usize>().prop_map(Entry::Planned),
        2 => (any::<usize>(), select(vec![Change::Action, Change::Negation, Change::Counter, Change::Extra]))
            .prop_map(|(i, c)| Entry::Changed(i, c)),
        1 => Just(Entry::Stale),
    ]
}

fn changed(family: Family, planned: &IptRule, how: Change) -> NftRule {
    let mut r = planned.clone();
    match how {
        Change::Action => r.action = if r.action == Action::Drop { Action::Accept } else { Action::Drop },
        Change::Negation => r.in_iface = Some(IfaceMatch { name: "docker0".into(), negate: true }),
        Change::Counter | Change::Extra => {}
    }
    let mut nft = docker_user::encode(family, &[r]).remove(0);
    for e in &mut nft.exprs {
        if let (Change::Counter, Expr::Counter { bytes, packets }) = (how, e) {
            (*bytes, *packets) = (1500, 1);
        }
    }
    if let Change::Extra = how {
        nft.exprs.insert(0, Expr::Other { name: "quota".into(), data: vec![] });
    }
    nft
}

/// A chain in which the plan is found in order, with foreign rules between, then edited:
/// entries moved, duplicated, changed, dropped.
fn arb_case() -> impl Strategy<Value = (Family, Policy, Vec<NftRule>)> {
    (arb_family(), arb_policy())
        .prop_flat_map(|(family, policy)| {
            let n = docker_user::plan(&policy, family).len();
            let base = prop::collection::vec(any::<bool>(), n).prop_map(|keep| {
                keep.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| Entry::Planned(i)).collect::<Vec<_>>()
            });
            let inserted = prop::collection::vec((any::<usize>(), arb_entry(family)), 0..6);
            let moves = prop::collection::vec((any::<usize>(), any::<usize>()), 0..3);
            (Just(family), Just(policy), base, inserted, moves)
        })
        .prop_map(|(family, policy, mut entries, inserted, moves)| {
            for (at, e) in inserted {
                entries.insert(at % (entries.len() + 1), e);
            }
            for (a, b) in moves {
                if !entries.is_empty() {
                    let len = entries.len();
                    entries.swap(a % len, b % len);
                }
            }
            let plan = docker_user::plan(&policy, family);
            let planned = docker_user::encode(family, &plan);
            let stale = IptRule {
                in_iface: Some(IfaceMatch { name: "old0".into(), negate: false }),
                comment: Some(COMMENT.into()),
                ..IptRule::new(Action::Drop)
            };
            let rules: Vec<NftRule> = entries
                .into_iter()
                .filter_map(|e| match e {
                    Entry::Foreign(r) => Some(r),
                    Entry::Planned(i) => planned.get(i % planned.len().max(1)).cloned(),
                    Entry::Changed(i, how) => plan.get(i % plan.len().max(1)).map(|p| changed(family, p, how)),
                    Entry::Stale => Some(docker_user::encode(family, std::slice::from_ref(&stale)).remove(0)),
                })
                .collect();
            (family, policy, rules)
        })
        .prop_flat_map(|(family, policy, rules)| {
            // Kernel handles: unique, in no particular order.
            let handles = Just((1..=rules.len() as u64).map(|h| h * 10).collect::<Vec<_>>()).prop_shuffle();
            (Just(family), Just(policy), Just(rules), handles)
        })
        .prop_map(|(family, policy, mut rules, handles)| {
            for (r, h) in rules.iter_mut().zip(handles) {
                r.handle = Some(h);
            }
            (family, policy, rules)
        })
}

/// What `ChainState::ahead` hands the diff: foreign rules before our last one that let
/// guarded traffic past.
fn bypass_of(family: Family, rules: &[NftRule], ifaces: &[Iface]) -> Vec<String> {
    let last = rules.iter().rposition(docker_user::is_ours).unwrap_or(0);
    reach::ahead_of_ours(family, rules, last, &Chains::new(), ifaces)
}

/// The chain after the kernel ran the diff's batch: inserts in order (new rules get handles
/// from 1000 up, which no position names), then the deletes; a position or delete naming a
/// handle that is not there is an error, as it is in the kernel (ENOENT), and so is deleting a
/// rule that is not ours.
fn run_diff(rules: &[NftRule], planned: &[NftRule], d: &ChainDiff) -> Result<Vec<NftRule>, String> {
    let mut chain = rules.to_vec();
    let at = |chain: &[NftRule], h: u64| chain.iter().position(|r| r.handle == Some(h)).ok_or(format!("no rule {h}"));
    let mut inserted = HashSet::new();
    for (n, (i, pos)) in d.inserts.iter().enumerate() {
        if !inserted.insert(*i) {
            return Err(format!("planned rule {i} inserted twice"));
        }
        let mut rule = planned.get(*i).ok_or(format!("no planned rule {i}"))?.clone();
        let index = match *pos {
            Position::Top => 0,
            Position::End => chain.len(),
            Position::Before(h) => at(&chain, h)?,
            Position::After(h) => at(&chain, h)? + 1,
        };
        if let Position::Before(h) | Position::After(h) = *pos {
            if h >= 1000 {
                return Err(format!("position names a rule of this batch ({h})"));
            }
        }
        rule.handle = Some(1000 + n as u64);
        chain.insert(index, rule);
    }
    for h in &d.deletes {
        let i = at(&chain, *h)?;
        if !docker_user::is_ours(&chain[i]) {
            return Err(format!("deletes foreign rule {h}"));
        }
        chain.remove(i);
    }
    Ok(chain)
}

/// The length of the longest common subsequence of two lists.
fn lcs<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut prev = 0;
        for (j, y) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = if x == y { prev + 1 } else { row[j + 1].max(row[j]) };
            prev = here;
        }
    }
    row[b.len()]
}

/// The contract of `diff`, checked on one chain.
fn check_diff(family: Family, policy: &Policy, rules: &[NftRule]) -> Result<(), TestCaseError> {
    let planned = docker_user::encode(family, &docker_user::plan(policy, family));
    let bypass = bypass_of(family, rules, &policy.ifaces);
    let d = docker_user::diff(rules, &planned, &bypass);
    let after = run_diff(rules, &planned, &d).map_err(TestCaseError::fail)?;
    let shapes = |rs: &[&NftRule]| rs.iter().map(|r| r.shape()).collect::<Vec<_>>();
    let ours: Vec<&NftRule> = after.iter().filter(|r| docker_user::is_ours(r)).collect();
    prop_assert_eq!(shapes(&ours), shapes(&planned.iter().collect::<Vec<_>>()), "ours are the plan, in order");
    let foreign = |rs: &[NftRule]| rs.iter().filter(|r| !docker_user::is_ours(r)).map(|r| r.handle).collect::<Vec<_>>();
    prop_assert_eq!(foreign(&after), foreign(rules), "foreign rules stay, in order");
    let old: Vec<&NftRule> = rules.iter().filter(|r| docker_user::is_ours(r)).collect();
    let kept: Vec<&&NftRule> = ours.iter().filter(|r| r.handle < Some(1000)).collect();
    if !bypass.is_empty() {
        prop_assert!(kept.is_empty(), "with a bypass ahead, every rule of ours moves");
        prop_assert!(after.iter().take(planned.len()).all(docker_user::is_ours), "…to the top");
    } else {
        // Ours that already stand as planned, in order (skipping what the plan does not hold),
        // all stay.
        let plan_shapes = shapes(&planned.iter().collect::<Vec<_>>());
        let old_planned: Vec<Vec<Expr>> = shapes(&old).into_iter().filter(|s| plan_shapes.contains(s)).collect();
        if lcs(&old_planned, &plan_shapes) == old_planned.len() {
            prop_assert_eq!(kept.len(), old_planned.len(), "a rule of ours already in place was moved");
        }
    }
    // Done in one step: the chain is now as planned, and nothing lets traffic past ours.
    prop_assert_eq!(bypass_of(family, &after, &policy.ifaces), Vec::<String>::new());
    let again = docker_user::diff(&after, &planned, &[]);
    prop_assert!(again.is_empty(), "a second diff changes nothing: {:?}", again);
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn the_diff_turns_any_chain_into_the_plan((family, policy, rules) in arb_case()) {
        check_diff(family, &policy, &rules)?;
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// The diff keeps as many of ours as can stay: a longest run of them in plan order.
    #[test]
    fn the_diff_keeps_as_many_as_can_stay((family, policy, rules) in arb_case()) {
        let planned = docker_user::encode(family, &docker_user::plan(&policy, family));
        let bypass = bypass_of(family, &rules, &policy.ifaces);
        prop_assume!(bypass.is_empty());
        let d = docker_user::diff(&rules, &planned, &bypass);
        let after = run_diff(&rules, &planned, &d).map_err(TestCaseError::fail)?;
        let kept = after.iter().filter(|r| docker_user::is_ours(r) && r.handle < Some(1000)).count();
        let old: Vec<Vec<Expr>> = rules.iter().filter(|r| docker_user::is_ours(r)).map(NftRule::shape).collect();
        let plan: Vec<Vec<Expr>> = planned.iter().map(NftRule::shape).collect();
        prop_assert_eq!(kept, lcs(&old, &plan));
    }
}

// ============================================================================================
// 5. reach: whatever lets a guarded packet out is reported
// ============================================================================================
//
// A small model of nf_tables evaluates rules on concrete packets: registers, `cmp` on
// interface names (16 bytes, NUL padded, as `meta iifname` loads them), the conntrack match,
// verdicts ending the rule where they stand, jump and goto. What the model cannot know it
// takes in the way that lets the packet through (an unknown expression matches, a chain we did
// not read or a target we do not know accepts), so every escape it finds is one the kernel
// can really give, and `reach` must report it.

/// Interface names packets come in and go out by.
const NAMES: [&str; 10] = ["docker0", "docker1", "docker", "br-", "br-a", "br-ab", "eth0", "veth0", "d", "vethbr-"];

#[derive(Debug, Clone, Copy)]
struct Pkt {
    iif: &'static str,
    oif: &'static str,
    /// NEW, INVALID or UNTRACKED, as xt_conntrack numbers them.
    state: u16,
    proto: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Accept,
    Block,
    Return,
    /// The end of the chain, or of the rule without a verdict.
    Next,
    /// Our DOCKER-USER rules got the packet.
    Reached,
}

fn matches_pattern(iface: &Iface, name: &str) -> bool {
    match iface.stem() {
        (stem, true) => name.starts_with(stem),
        (stem, false) => name == stem,
    }
}

/// Packets a guard of `ifaces` must refuse: in by a guarded bridge, out by another interface.
fn guarded(ifaces: &[Iface]) -> Vec<Pkt> {
    let mut out = Vec::new();
    for iif in NAMES {
        for oif in NAMES {
            let egress =
                ifaces.is_empty() || ifaces.iter().any(|p| matches_pattern(p, iif) && !matches_pattern(p, oif));
            if !egress {
                continue;
            }
            for state in [Conntrack::NEW, Conntrack::INVALID, Conntrack::UNTRACKED] {
                for proto in [6, 17] {
                    out.push(Pkt { iif, oif, state, proto });
                }
            }
        }
    }
    out
}

fn call(chain: &str, pkt: &Pkt, chains: &Chains, depth: usize) -> Out {
    if chain == CHAIN {
        return Out::Reached;
    }
    match chains.get(chain) {
        Some(rules) if depth < 8 => eval_chain(rules, pkt, chains, depth + 1),
        _ => Out::Accept,
    }
}

fn eval_chain(rules: &[NftRule], pkt: &Pkt, chains: &Chains, depth: usize) -> Out {
    for r in rules {
        match eval_rule(r, pkt, chains, depth) {
            Out::Next => continue,
            other => return other,
        }
    }
    Out::Next
}

fn eval_rule(rule: &NftRule, pkt: &Pkt, chains: &Chains, depth: usize) -> Out {
    let name = |n: &str| {
        let mut r = n.as_bytes().to_vec();
        r.resize(16, 0);
        Some(r)
    };
    // `None`: a value the model does not know (any comparison may hold).
    let mut regs: HashMap<u32, Option<Vec<u8>>> = HashMap::new();
    for e in &rule.exprs {
        match e {
            Expr::Meta { key, dreg } => {
                let v = match *key {
                    NFT_META_IIFNAME => name(pkt.iif),
                    NFT_META_OIFNAME => name(pkt.oif),
                    NFT_META_L4PROTO => Some(vec![pkt.proto]),
                    _ => None,
                };
                regs.insert(*dreg, v);
            }
            Expr::Cmp { sreg, op, data } => {
                let Some(v) = regs.get(sreg).cloned().unwrap_or(Some(vec![0; 16])) else { continue };
                let mut v = v;
                v.resize(v.len().max(data.len()), 0);
                let eq = v[..data.len()] == data[..];
                let holds = match *op {
                    NFT_CMP_EQ => eq,
                    NFT_CMP_NEQ => !eq,
                    _ => true,
                };
                if !holds {
                    return Out::Next;
                }
            }
            Expr::Match { name, info, .. } if name == Conntrack::NAME => {
                if let Some(ct) = Conntrack::decode(info) {
                    if (ct.states & pkt.state != 0) == ct.invert {
                        return Out::Next;
                    }
                }
            }
            Expr::Verdict { code, chain } => match (*code, chain) {
                (NF_ACCEPT, _) => return Out::Accept,
                (NF_DROP, _) => return Out::Block,
                (NFT_RETURN, _) => return Out::Return,
                (NFT_CONTINUE, _) => {}
                (NFT_BREAK, _) => return Out::Next,
                (NFT_JUMP, Some(c)) => {
                    return match call(c, pkt, chains, depth) {
                        Out::Next | Out::Return => Out::Next,
                        o => o,
                    }
                }
                (NFT_GOTO, Some(c)) => {
                    return match call(c, pkt, chains, depth) {
                        Out::Next | Out::Return => Out::Return,
                        o => o,
                    }
                }
                _ => return Out::Accept,
            },
            Expr::Reject { .. } => return Out::Block,
            Expr::Target { name, .. } => match name.as_str() {
                "REJECT" | "DROP" => return Out::Block,
                "LOG" | "NFLOG" | "MARK" => {}
                _ => return Out::Accept,
            },
            _ => {}
        }
    }
    Out::Next
}

/// A rule as iptables writes it (verdict last, register 1), to or in the chains of the model.
fn arb_ipt_shaped(jumps: Vec<&'static str>) -> impl Strategy<Value = NftRule> {
    let name = select(vec!["docker0", "br-+", "br-a", "eth0", "veth+", "d+", "docker+"]);
    let mut actions: Vec<BoxedStrategy<Action>> = vec![
        Just(Action::Accept).boxed(),
        Just(Action::Drop).boxed(),
        Just(Action::Return).boxed(),
        Just(Action::Reject(RejectWith::PortUnreachable)).boxed(),
        Just(Action::Log { prefix: "x".into() }).boxed(),
    ];
    if !jumps.is_empty() {
        actions.push(select(jumps).prop_map(|c| Action::Jump(c.to_string())).boxed());
    }
    (
        prop::option::of((name.clone(), any::<bool>())),
        prop::option::of((name, any::<bool>())),
        prop::option::of(arb_proto()),
        prop::option::of((select(vec![Conntrack::NEW, 6, Conntrack::NEW | Conntrack::INVALID, 0x10f]), any::<bool>())),
        proptest::strategy::Union::new(actions),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(|(i, o, proto, ct, action, (other, foo))| {
            let m = |x: Option<(&str, bool)>| x.map(|(n, negate)| IfaceMatch { name: n.to_string(), negate });
            let ctstate = ct.map(|(states, invert)| Conntrack { states, invert });
            let r = IptRule { in_iface: m(i), out_iface: m(o), proto, ctstate, ..IptRule::new(action) };
            let mut nft = docker_user::encode(Family::V4, &[r]).remove(0);
            if other {
                // Something we cannot read: it may match.
                nft.exprs.insert(0, Expr::Other { name: "quota".into(), data: vec![] });
            }
            if foo {
                // A target we do not know: it may accept.
                *nft.exprs.last_mut().unwrap() = Expr::Target { name: "FOO".into(), rev: 0, info: vec![] };
            }
            nft
        })
}

/// FORWARD (rules, then maybe the unconditional jump, then more), and two chains to jump to.
fn arb_forward(
    jumps: Vec<&'static str>,
    rule: impl Fn(Vec<&'static str>) -> BoxedStrategy<NftRule>,
) -> impl Strategy<Value = (Vec<NftRule>, Chains, Vec<Iface>)> {
    (
        prop::collection::vec(rule(jumps.clone()), 0..4),
        any::<bool>(),
        prop::collection::vec(rule(jumps), 0..2),
        prop::collection::vec(rule(vec!["Y", "UNREAD"]), 0..3),
        prop::collection::vec(rule(vec![]), 0..3),
        prop::sample::subsequence(vec!["docker0", "br-+", "d+"], 0..=2),
    )
        .prop_map(|(before, jump, after, x, y, ifaces)| {
            let mut forward = before;
            if jump {
                forward.push(jump_to_docker_user(Family::V4));
            }
            forward.extend(after);
            let chains: Chains = [("X".to_string(), x), ("Y".to_string(), y)].into_iter().collect();
            (forward, chains, ifaces.iter().map(|i| policy::parse_iface(i).unwrap()).collect())
        })
}

/// Whether `reach` reports every escape from FORWARD the model finds.
fn check_forward(forward: &[NftRule], chains: &Chains, ifaces: &[Iface]) -> Result<(), TestCaseError> {
    let r = reach::forward(Family::V4, forward, chains, ifaces);
    for pkt in guarded(ifaces) {
        match eval_chain(forward, &pkt, chains, 0) {
            Out::Accept => {
                prop_assert!(!r.jumps || !r.bypass.is_empty(), "{pkt:?} is accepted before DOCKER-USER: {r:?}")
            }
            Out::Return | Out::Next => prop_assert!(
                !r.jumps || !r.bypass.is_empty() || !r.returns.is_empty(),
                "{pkt:?} goes to FORWARD's policy before DOCKER-USER: {r:?}"
            ),
            Out::Block | Out::Reached => {}
        }
    }
    Ok(())
}

/// Whether `reach` reports every escape the model finds from foreign rules ahead of ours in
/// DOCKER-USER (a return goes back to FORWARD, where Docker accepts).
fn check_docker_user(foreign: &[NftRule], chains: &Chains, ifaces: &[Iface]) -> Result<(), TestCaseError> {
    let mut rules = foreign.to_vec();
    rules.push(our_rule(Family::V4));
    let bypass = reach::ahead_of_ours(Family::V4, &rules, foreign.len(), chains, ifaces);
    for pkt in guarded(ifaces) {
        let out = eval_chain(foreign, &pkt, chains, 0);
        prop_assert!(
            !matches!(out, Out::Accept | Out::Return) || !bypass.is_empty(),
            "{pkt:?} leaves DOCKER-USER before our rules ({out:?}), no bypass reported"
        );
    }
    Ok(())
}

fn ipt_shaped(jumps: Vec<&'static str>) -> BoxedStrategy<NftRule> {
    arb_ipt_shaped(jumps).boxed()
}

/// What hand-made rules may do beyond iptables' shapes.
#[derive(Debug, Clone, Copy)]
struct Freedom {
    /// A verdict anywhere in the rule, not only last.
    verdict_anywhere: bool,
    /// Registers 1 and 2, not only 1.
    registers: bool,
    /// `goto` besides `jump`.
    goto: bool,
}

/// Rules of the model's expressions in any order, odd interface data included, with the
/// `Freedom`s given.
fn hand_made(free: Freedom) -> impl Fn(Vec<&'static str>) -> BoxedStrategy<NftRule> {
    move |jumps| {
        let mut verdicts: Vec<BoxedStrategy<Expr>> = vec![
            select(vec![NF_ACCEPT, NF_DROP, NFT_RETURN, NFT_BREAK, NFT_CONTINUE])
                .prop_map(|code| Expr::Verdict { code, chain: None })
                .boxed(),
            Just(Expr::Target { name: "REJECT".into(), rev: 0, info: xt::Reject::encode(3) }).boxed(),
            Just(Expr::Target { name: "LOG".into(), rev: 0, info: vec![] }).boxed(),
        ];
        if !jumps.is_empty() {
            let codes = if free.goto { vec![NFT_JUMP, NFT_GOTO] } else { vec![NFT_JUMP] };
            verdicts.push(
                (select(codes), select(jumps))
                    .prop_map(|(code, c)| Expr::Verdict { code, chain: Some(c.to_string()) })
                    .boxed(),
            );
        }
        let verdict = proptest::strategy::Union::new(verdicts);
        let data = prop_oneof![
            select(vec!["docker0", "br-a", "eth0", "d", "docker"]).prop_map(|n| format!("{n}\0").into_bytes()),
            select(vec!["br-", "d", "docker", "veth", "e"]).prop_map(|n| n.as_bytes().to_vec()),
            select(vec!["doc\0ker", "docker0\0\0\0", "br-a\0x"]).prop_map(|n| n.as_bytes().to_vec()),
            select(vec![6u8, 17]).prop_map(|p| vec![p]),
        ];
        let regs = if free.registers { 1u32..=2 } else { 1u32..=1 };
        let mut exprs: Vec<BoxedStrategy<Expr>> = vec![
            (select(vec![NFT_META_IIFNAME, NFT_META_OIFNAME, NFT_META_L4PROTO]), regs.clone())
                .prop_map(|(key, dreg)| Expr::Meta { key, dreg })
                .boxed(),
            (regs, select(vec![NFT_CMP_EQ, NFT_CMP_NEQ]), data)
                .prop_map(|(sreg, op, data)| Expr::Cmp { sreg, op, data })
                .boxed(),
            (select(vec![Conntrack::NEW, 6, 0x10f]), any::<bool>())
                .prop_map(|(states, invert)| Expr::Match {
                    name: Conntrack::NAME.into(),
                    rev: 3,
                    info: Conntrack { states, invert }.encode(),
                })
                .boxed(),
            Just(Expr::Counter { bytes: 0, packets: 0 }).boxed(),
            Just(Expr::Other { name: "quota".into(), data: vec![] }).boxed(),
        ];
        if free.verdict_anywhere {
            exprs.push(verdict.clone().boxed());
        }
        (prop::collection::vec(proptest::strategy::Union::new(exprs), 0..6), verdict)
            .prop_map(move |(mut exprs, last)| {
                if !free.verdict_anywhere || exprs.is_empty() {
                    exprs.push(last);
                }
                nft_rule(NFPROTO_IPV4, exprs)
            })
            .boxed()
    }
}

const TIED: Freedom = Freedom { verdict_anywhere: false, registers: false, goto: false };
const VERDICT_ANYWHERE: Freedom = Freedom { verdict_anywhere: true, ..TIED };
const REGISTERS: Freedom = Freedom { registers: true, ..TIED };
const GOTO: Freedom = Freedom { goto: true, ..TIED };

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn reach_reports_every_escape_from_iptables_rules(
        (forward, chains, ifaces) in arb_forward(vec!["X", "Y", "UNREAD", CHAIN], ipt_shaped),
    ) {
        check_forward(&forward, &chains, &ifaces)?;
        // In DOCKER-USER itself, without the jumps to it (a loop the kernel refuses).
        let into_docker_user =
            |r: &NftRule| r.exprs.iter().any(|e| matches!(e, Expr::Verdict { chain: Some(c), .. } if c == CHAIN));
        let foreign: Vec<NftRule> = forward.into_iter().filter(|r| !into_docker_user(r)).collect();
        check_docker_user(&foreign, &chains, &ifaces)?;
    }

    /// Hand-made rules with iptables' discipline (register 1, verdict last, no goto) but any
    /// expressions in any order and odd interface data.
    #[test]
    fn reach_reports_every_escape_from_hand_made_rules(
        (forward, chains, ifaces) in arb_forward(vec!["X", "Y", "UNREAD"], hand_made(TIED)),
    ) {
        check_forward(&forward, &chains, &ifaces)?;
        check_docker_user(&forward, &chains, &ifaces)?;
    }

    #[test]
    fn reach_reports_escapes_by_a_verdict_anywhere(
        (forward, chains, ifaces) in arb_forward(vec!["X", "Y", "UNREAD"], hand_made(VERDICT_ANYWHERE)),
    ) {
        check_forward(&forward, &chains, &ifaces)?;
        check_docker_user(&forward, &chains, &ifaces)?;
    }

    #[test]
    fn reach_reports_escapes_through_other_registers(
        (forward, chains, ifaces) in arb_forward(vec!["X", "Y", "UNREAD"], hand_made(REGISTERS)),
    ) {
        check_forward(&forward, &chains, &ifaces)?;
        check_docker_user(&forward, &chains, &ifaces)?;
    }

    #[test]
    fn reach_reports_escapes_by_goto(
        (forward, chains, ifaces) in arb_forward(vec!["X", "Y", "UNREAD"], hand_made(GOTO)),
    ) {
        check_forward(&forward, &chains, &ifaces)?;
        check_docker_user(&forward, &chains, &ifaces)?;
    }
}

// ============================================================================================
// 6. Allow-list sets: pipapo's boxes cover exactly what was asked, and the element diff turns
//    any content of the table's sets into any other
// ============================================================================================

/// Ranges in a window of 64 addresses, at the bottom of the space or at its very top (where
/// `hi + 1` overflows), so that ranges overlap, touch and nest often.
fn arb_window_ranges() -> impl Strategy<Value = (u128, Vec<(Range, Range)>)> {
    let range = || (0u128..64, 0u128..64).prop_map(|(a, b)| Range { lo: a.min(b), hi: a.max(b) });
    (select(vec![0, u128::MAX - 63]), prop::collection::vec((range(), range()), 0..8)).prop_map(|(base, boxes)| {
        let at = |r: Range| Range { lo: base + r.lo, hi: base + r.hi };
        (base, boxes.into_iter().map(|(s, d)| (at(s), at(d))).collect())
    })
}

fn inside(r: &Range, v: u128) -> bool {
    r.lo <= v && v <= r.hi
}

/// One allowance in a small corner of each family (so entries overlap, nest and touch), with a
/// port or without.
fn arb_small_allow() -> impl Strategy<Value = policy::Allow> {
    let net = prop_oneof![
        (any::<u8>(), 24u8..=32)
            .prop_map(|(a, len)| IpNet::new(Ipv4Addr::new(10, 0, 0, a).into(), len).unwrap().trunc()),
        (any::<u8>(), 120u8..=128).prop_map(|(a, len)| {
            IpNet::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, a.into()).into(), len).unwrap().trunc()
        }),
    ];
    let port = prop::option::of((select(vec![53u16, 80]), select(vec![Proto::Tcp, Proto::Udp])));
    (net, port).prop_map(|(net, port)| policy::Allow { net, port })
}

/// A policy with every kind of allow-list set: the policy's four (each seeded with an entry
/// outside the corners, so none is ever empty and the table's shape never changes) and the
/// per-source ones, filled from a picture of Docker.
fn arb_sets_policy() -> impl Strategy<Value = Policy> {
    let source =
        (0u8..16, 28u8..=32).prop_map(|(a, len)| IpNet::new(Ipv4Addr::new(172, 17, 0, a).into(), len).unwrap().trunc());
    let grant = (prop::collection::vec(arb_small_allow(), 0..4), any::<bool>())
        .prop_map(|(allow, open)| crate::grants::Grant { allow, open, ..Default::default() });
    let sources = prop::collection::vec((source, grant), 0..4);
    (prop::collection::vec(arb_small_allow(), 0..12), sources).prop_map(|(mut allow, sources)| {
        for seed in ["198.51.100.0/24", "198.51.100.53:53/udp", "2001:db8:1::/64", "[2001:db8:1::53]:53/tcp"] {
            allow.push(policy::parse_allow(seed).unwrap());
        }
        let sources = sources.into_iter().map(|(source, grant)| crate::grants::SourceGrant { source, grant }).collect();
        let live = crate::grants::Live { sources, ..Default::default() };
        Policy { allow, per_source: true, live: Some(std::sync::Arc::new(live)), ..Policy::default() }
    })
}

/// What the kernel dumps after `plan` was written: the planned rules with handles, every set
/// with its elements (sorted, as `load_elems` keeps them).
fn table_holding(plan: &TablePlan) -> TableState {
    let mut handle = 3;
    let chains = plan
        .chains
        .iter()
        .map(|c| {
            let def = ChainDef {
                name: c.name.into(),
                hook: Some((c.hook, plan.spec.priority)),
                ty: Some("filter".into()),
                policy: Some(NF_ACCEPT as u32),
            };
            let rules = c
                .rules
                .iter()
                .map(|r| {
                    handle += 1;
                    NftRule { handle: Some(handle), ..r.to_rule(c.name) }
                })
                .collect();
            (def, rules)
        })
        .collect();
    let sets = plan.sets.iter().map(|s| (s.set.clone(), Some(s.elems.clone()))).collect();
    TableState { spec: plan.spec, exists: true, userdata: Some(comment_udata(COMMENT)), owner: None, chains, sets }
}

/// The set a NEWSETELEM/DELSETELEM message names.
fn elem_list_set(m: &msg::Reply<'_>) -> String {
    let attrs = m.attrs().filter_map(Result::ok);
    attrs.filter(|a| a.ty == NFTA_SET_ELEM_LIST_SET).find_map(|a| a.string().ok()).unwrap_or_default()
}

/// Whether sorted rbtree elements pair up: each opening element followed by its closing one,
/// only the last range without one (it runs to the end of the space).
fn intervals_pair_up(elems: &BTreeSet<SetElem>) -> bool {
    let mut open = false;
    for e in elems {
        let end = e.flags & NFT_SET_ELEM_INTERVAL_END != 0;
        if end != open {
            return false;
        }
        open = !end;
    }
    true
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn disjoint_pairs_are_disjoint_and_cover_exactly_the_union((base, boxes) in arb_window_ranges()) {
        let pieces = ranges::disjoint_pairs(&boxes);
        let meet = |a: &Range, b: &Range| a.lo <= b.hi && b.lo <= a.hi;
        for (i, (s1, d1)) in pieces.iter().enumerate() {
            prop_assert!(s1.lo <= s1.hi && d1.lo <= d1.hi, "an empty piece {s1:?} {d1:?}");
            for (s2, d2) in &pieces[i + 1..] {
                prop_assert!(!(meet(s1, s2) && meet(d1, d2)), "{s1:?} . {d1:?} overlaps {s2:?} . {d2:?}");
            }
        }
        // Every point of the window (and the address past it, where there is one).
        let points: Vec<u128> = (0..=64u128).filter_map(|v| base.checked_add(v)).collect();
        for &s in &points {
            for &d in &points {
                let asked = boxes.iter().any(|(bs, bd)| inside(bs, s) && inside(bd, d));
                let given = pieces.iter().filter(|(ps, pd)| inside(ps, s) && inside(pd, d)).count();
                prop_assert_eq!(usize::from(asked), given, "point {} . {}", s - base, d - base);
            }
        }
    }

    #[test]
    fn the_element_diff_turns_any_content_into_any_other(old in arb_sets_policy(), new in arb_sets_policy()) {
        let (was, wanted) = (table::plan(&old, &Family::ALL, GUARD), table::plan(&new, &Family::ALL, GUARD));
        let names = |p: &TablePlan| p.sets.iter().map(|s| s.set.name.clone()).collect::<Vec<_>>();
        prop_assert_eq!(names(&was), names(&wanted), "the seeds keep the shape");
        let state = table_holding(&was);
        let mut batch = msg::BatchBuilder::new(1, 1);
        table::sync(&mut batch, &state, &wanted).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let batch = batch.finish();
        let mut kernel: HashMap<String, BTreeSet<SetElem>> =
            was.sets.iter().map(|s| (s.set.name.clone(), s.elems.iter().cloned().collect())).collect();
        let mut deleted = 0;
        for m in msg::parse(&batch.bytes).map_err(|e| TestCaseError::fail(e.to_string()))? {
            let ty = m.ty & 0xff;
            prop_assert!(![NFT_MSG_NEWSET, NFT_MSG_DELSET, NFT_MSG_DELTABLE, NFT_MSG_NEWTABLE].contains(&ty),
                "the table was rebuilt: {:?}", batch.msgs);
            if ty != NFT_MSG_NEWSETELEM && ty != NFT_MSG_DELSETELEM {
                continue;
            }
            let name = elem_list_set(&m);
            let elems = SetElem::decode_all(&m).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let held = kernel.get_mut(&name).ok_or_else(|| TestCaseError::fail(format!("no set {name}")))?;
            for e in elems {
                if ty == NFT_MSG_DELSETELEM {
                    // Deletions come first: nothing added yet is taken away again.
                    prop_assert!(held.remove(&e), "{name}: deleting {e:?}, which it does not hold");
                    deleted += 1;
                } else {
                    prop_assert!(held.insert(e.clone()), "{name}: adding {e:?}, which it holds");
                }
            }
            let set = &wanted.sets.iter().find(|s| s.set.name == name).unwrap().set;
            if set.flags & NFT_SET_INTERVAL != 0 && set.fields.is_empty() {
                // Whole intervals only: half of one would leave the kernel an overlap to refuse.
                prop_assert!(intervals_pair_up(held), "{name}: an interval left half after {:?}", held);
            }
        }
        for s in &wanted.sets {
            let want: BTreeSet<SetElem> = s.elems.iter().cloned().collect();
            prop_assert_eq!(&kernel[&s.set.name], &want, "set {}", s.set.name);
        }
        let unchanged = was.sets.iter().zip(&wanted.sets).all(|(a, b)| a.elems == b.elems);
        prop_assert_eq!(batch.msgs.is_empty(), unchanged && was.chains == wanted.chains);
        if unchanged {
            prop_assert_eq!(deleted, 0);
        }
    }
}

// ============================================================================================
// What the properties found, as plain tests
// ============================================================================================

/// What the model does with each guarded packet on one foreign rule, and what `reach` says of
/// that rule ahead of ours in DOCKER-USER and before FORWARD's jump.
fn judge_one(rule: NftRule, chains: &Chains, ifaces: &[Iface]) -> (Vec<Out>, Vec<String>, reach::Reach) {
    let outs: Vec<Out> =
        guarded(ifaces).iter().map(|p| eval_chain(std::slice::from_ref(&rule), p, chains, 0)).collect();
    let in_docker_user = reach::ahead_of_ours(Family::V4, &[rule.clone(), our_rule(Family::V4)], 1, chains, ifaces);
    let in_forward = reach::forward(Family::V4, &[rule, jump_to_docker_user(Family::V4)], chains, ifaces);
    (outs, in_docker_user, in_forward)
}

fn raw_rule(exprs: Vec<Expr>) -> NftRule {
    NftRule { handle: Some(2), ..nft_rule(NFPROTO_IPV4, exprs) }
}

// Panics found in decoders (fixed where they were: bounds on kernel-given numbers).

#[test]
fn a_huge_payload_length_prints_and_does_not_decode() {
    // payload load 2^29 bytes: `len * 8` overflowed u32 in the printer and in the codec.
    let e = vec![
        Expr::Payload { dreg: 1, base: NFT_PAYLOAD_NETWORK_HEADER, offset: 12, len: 1 << 29 },
        Expr::Cmp { sreg: 1, op: NFT_CMP_EQ, data: vec![10] },
        Expr::Counter { bytes: 0, packets: 0 },
        Expr::Verdict { code: NF_DROP, chain: None },
    ];
    assert_eq!(text::exprs(NFPROTO_IPV6, &e[..1]), "@nh,96,4294967296");
    assert_eq!(codec::decode(Family::V4, &e), None);
}

#[test]
fn an_errno_of_i32_min_is_malformed() {
    // -i32::MIN overflowed in `Reply::error`.
    let mut m = msg::getgen(1);
    m[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
    let mut err = m[..msg::NLMSG_HDRLEN].to_vec();
    err.extend_from_slice(&i32::MIN.to_ne_bytes());
    err.extend_from_slice(&m);
    let len = err.len() as u32;
    err[..4].copy_from_slice(&len.to_ne_bytes());
    let replies = msg::parse(&err).unwrap();
    assert!(replies[0].error().is_err());
}

// `reach` takes for safe what lets packets out (open; the model's outcome shows the escape).

#[test]
fn reach_misses_a_verdict_before_the_last_expression() {
    // `accept` then any expression: the kernel accepts at the `accept`, `exit` sees the last
    // expression and reads "continue".
    let rule = raw_rule(vec![
        Expr::Verdict { code: NF_ACCEPT, chain: None },
        Expr::Other { name: "quota".into(), data: vec![] },
    ]);
    let (outs, in_docker_user, in_forward) = judge_one(rule, &Chains::new(), &default_ifaces());
    assert!(outs.iter().all(|o| *o == Out::Accept), "every guarded packet is accepted");
    assert!(!in_docker_user.is_empty(), "ahead of ours in DOCKER-USER: no bypass reported");
    assert!(!in_forward.bypass.is_empty(), "before the jump in FORWARD: no bypass reported");
}

#[test]
fn reach_misreads_a_comparison_of_another_register() {
    // reg 1 = l4proto, reg 2 = iifname, `cmp reg 1 == tcp`, accept: every TCP packet passes;
    // `conditions` reads `iifname "\x06*"` and rules the bridges out.
    let rule = raw_rule(vec![
        Expr::Meta { key: NFT_META_L4PROTO, dreg: 1 },
        Expr::Meta { key: NFT_META_IIFNAME, dreg: 2 },
        Expr::Cmp { sreg: 1, op: NFT_CMP_EQ, data: vec![6] },
        Expr::Verdict { code: NF_ACCEPT, chain: None },
    ]);
    let (outs, in_docker_user, in_forward) = judge_one(rule, &Chains::new(), &default_ifaces());
    assert!(outs.contains(&Out::Accept), "guarded TCP is accepted");
    assert!(!in_docker_user.is_empty(), "ahead of ours in DOCKER-USER: no bypass reported");
    assert!(!in_forward.bypass.is_empty(), "before the jump in FORWARD: no bypass reported");
}

#[test]
fn reach_misses_a_goto_that_falls_through() {
    // `iptables -N MINE; iptables -I DOCKER-USER -g MINE` with MINE empty (or only logging):
    // at MINE's end the packet returns to FORWARD, past our rules, where Docker accepts it.
    // Before FORWARD's jump, the same goto ends at FORWARD's policy.
    let rule = raw_rule(vec![
        Expr::Counter { bytes: 0, packets: 0 },
        Expr::Verdict { code: NFT_GOTO, chain: Some("MINE".into()) },
    ]);
    let chains: Chains = [("MINE".to_string(), Vec::new())].into_iter().collect();
    let (outs, in_docker_user, in_forward) = judge_one(rule, &chains, &default_ifaces());
    assert!(outs.iter().all(|o| *o == Out::Return), "every guarded packet leaves the chain");
    assert!(!in_docker_user.is_empty(), "ahead of ours in DOCKER-USER: no bypass reported");
    assert!(!in_forward.returns.is_empty(), "before the jump in FORWARD: no return to the policy reported");
}

// The diff moved more than it must (it kept a greedy run, not a longest one).

#[test]
fn diff_keeps_the_longest_run_in_place() {
    // Plan A B C (docker0, br-+, veth+); the chain holds C A B. Keeping A and B and moving C
    // takes one insert and one delete; the diff keeps C and moves A and B (two of each).
    let policy = crate::policy::testing::spec().iface(&["docker0", "br-+", "veth+"]).policy();
    let planned = docker_user::encode(Family::V4, &docker_user::plan(&policy, Family::V4));
    let [a, b, c]: [NftRule; 3] = planned.clone().try_into().unwrap();
    let held = |r: NftRule, h| NftRule { handle: Some(h), ..r };
    let chain = [held(c, 1), held(a, 2), held(b, 3)];
    let d = docker_user::diff(&chain, &planned, &[]);
    let after = run_diff(&chain, &planned, &d).unwrap();
    let ours: Vec<_> = after.iter().map(NftRule::shape).collect();
    assert_eq!(ours, planned.iter().map(NftRule::shape).collect::<Vec<_>>(), "the result is right");
    assert_eq!((d.inserts.len(), d.deletes.as_slice()), (1, &[1][..]), "{d:?}");
}

// An encoder that cut a string cut it inside a character.

#[test]
fn a_long_comment_is_cut_at_a_character() {
    let long = "\u{e4}".repeat(200);
    let back = xt::Comment::decode(&xt::Comment::encode(&long));
    assert_eq!(back.as_deref(), Some(&long[..254]));
}
