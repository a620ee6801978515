//! Unit tests of the docker-user backend: the plan against iptables' own bytes and `-S` lines,
//! and the diff that turns a chain into the plan.

use super::*;
use crate::policy::testing::spec;
use crate::policy::LogTo;

fn docker_user_rules(policy: &Policy, family: Family) -> Vec<IptRule> {
    plan(policy, family)
}

/// Parses a hex capture: `#` lines are comments, the rest hex byte pairs.
fn capture(text: &str) -> Vec<u8> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// Compares two messages 4 bytes a row, so a failure shows where they part.
fn assert_same_bytes(ours: &[u8], theirs: &[u8]) {
    if ours == theirs {
        return;
    }
    let rows = ours.len().max(theirs.len()).div_ceil(4);
    let mut diff = String::new();
    for row in 0..rows {
        let a = ours.get(row * 4..(row * 4 + 4).min(ours.len())).unwrap_or(&[]);
        let b = theirs.get(row * 4..(row * 4 + 4).min(theirs.len())).unwrap_or(&[]);
        let mark = if a == b { "  " } else { "!!" };
        diff += &format!("{mark} {:04x}  ours {a:02x?}  iptables {b:02x?}\n", row * 4);
    }
    panic!("messages differ ({} vs {} bytes):\n{diff}", ours.len(), theirs.len());
}

fn docker0_rule(family: Family) -> NftRule {
    let rules = docker_user_rules(&Policy::default(), family);
    encode(family, &rules[..1]).remove(0)
}

/// Our NEWRULE equals iptables-nft's byte for byte, nlmsghdr flags (REQUEST|CREATE) and
/// sequence number included.
fn check_against_iptables(family: Family, capture_text: &str) {
    let theirs = capture(capture_text);
    let ours = docker0_rule(family).new_msg(2, Position::Top);
    assert_same_bytes(&ours, &theirs);
}

#[test]
fn ip_rule_is_byte_identical_to_iptables() {
    check_against_iptables(Family::V4, include_str!("testdata/ip-docker0-newrule.hex"));
}

#[test]
fn ip6_rule_is_byte_identical_to_ip6tables() {
    check_against_iptables(Family::V6, include_str!("testdata/ip6-docker0-newrule.hex"));
}

fn with_handle(mut r: NftRule, h: u64) -> NftRule {
    r.handle = Some(h);
    r
}

fn foreign(h: u64) -> NftRule {
    let mut r = docker0_rule(Family::V4);
    r.exprs.retain(|e| !matches!(e, Expr::Match { name, .. } if name == "comment"));
    with_handle(r, h)
}

fn planned() -> Vec<NftRule> {
    encode(Family::V4, &docker_user_rules(&Policy::default(), Family::V4))
}

/// The planned rules as the kernel would hold them, with handles from `first`.
fn held(first: u64) -> Vec<NftRule> {
    planned().into_iter().enumerate().map(|(i, r)| with_handle(r, first + i as u64)).collect()
}

#[test]
fn ownership_is_the_comment() {
    assert!(is_ours(&docker0_rule(Family::V4)));
    assert!(!is_ours(&foreign(1)));
}

#[test]
fn a_changed_policy_goes_where_our_first_old_rule_stood() {
    let old = with_handle(
        encode(Family::V4, &docker_user_rules(&spec().refusal(Refusal::Drop).policy(), Family::V4))[0].clone(),
        7,
    );
    let d = diff(&[foreign(1), old, foreign(3)], &planned(), &[]);
    assert_eq!(d.inserts, [(0, Position::Before(7)), (1, Position::Before(7))]);
    assert_eq!(d.deletes, [7]);
    assert_eq!(d.why.as_deref(), Some("2 of 2 rules differ from the policy"));
}

#[test]
fn healing_adds_only_the_missing_rule_where_it_belongs() {
    let [first, second]: [NftRule; 2] = held(5).try_into().unwrap();
    let d = diff(&[first.clone(), foreign(9)], &planned(), &[]);
    assert_eq!(
        (d.inserts, d.deletes, d.why.as_deref()),
        (vec![(1, Position::After(5))], vec![], Some("1 of 2 rules missing"))
    );
    let d = diff(&[second, foreign(9)], &planned(), &[]);
    assert_eq!(d.inserts, [(0, Position::Before(6))]);
    let d = diff(&[foreign(9)], &planned(), &[]);
    assert_eq!(d.inserts, [(0, Position::Before(9)), (1, Position::Before(9))], "flushed: back at the top");
    assert_eq!(diff(&[], &planned(), &[]).inserts, [(0, Position::End), (1, Position::End)]);
}

#[test]
fn several_missing_after_the_last_kept_rule_keep_their_order() {
    let p = spec().allow(&["198.51.100.1"]).iface(&["docker0"]).refusal(Refusal::TcpReset).policy();
    let planned = encode(Family::V4, &docker_user_rules(&p, Family::V4));
    let first = with_handle(planned[0].clone(), 4);
    let d = diff(&[first], &planned, &[]);
    // Sent in reverse, each right after handle 4: they land as planned[1], planned[2].
    assert_eq!(d.inserts, [(2, Position::After(4)), (1, Position::After(4))]);
}

#[test]
fn a_foreign_rule_letting_traffic_past_ours_moves_ours_to_the_top() {
    let mut rules = vec![foreign(1)];
    rules.extend(held(5));
    let d = diff(&rules, &planned(), &["-A DOCKER-USER -j ACCEPT".into()]);
    assert_eq!(d.inserts, [(0, Position::Before(1)), (1, Position::Before(1))]);
    assert_eq!(d.deletes, [5, 6]);
    assert!(d.why.unwrap().contains("-A DOCKER-USER -j ACCEPT"));
}

#[test]
fn counters_do_not_count_as_drift() {
    let mut busy = held(2);
    for e in &mut busy[0].exprs {
        if let Expr::Counter { packets, .. } = e {
            *packets = 12;
        }
    }
    busy.insert(0, foreign(1));
    assert!(diff(&busy, &planned(), &[]).is_empty());
}

fn lines(policy: &Policy, family: Family) -> Vec<String> {
    docker_user_rules(policy, family).iter().map(|r| r.to_iptables(family, "DOCKER-USER")).collect()
}

#[test]
fn default_plan_is_the_design_rules() {
    assert_eq!(
        lines(&Policy::default(), Family::V4),
        [
            "-A DOCKER-USER -i docker0 ! -o docker0 -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment egress-guard -j REJECT --reject-with icmp-port-unreachable",
            "-A DOCKER-USER -i br-+ ! -o br-+ -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment egress-guard -j REJECT --reject-with icmp-port-unreachable",
        ]
    );
}

#[test]
fn allow_log_and_tcp_reset_in_order() {
    let p = spec()
        .iface(&["docker0"])
        .allow(&["198.51.100.53:53/udp", "[2001:db8::53]:53/udp"])
        .refusal(Refusal::TcpReset)
        .log(Some("egress: "))
        .log_to(LogTo::Kernel)
        .policy();
    assert_eq!(
        lines(&p, Family::V4),
        [
            // However long the allow-list: one rule, for what our table marked.
            "-A DOCKER-USER -i docker0 ! -o docker0 -m mark --mark 0x1000000/0x1000000 -m comment --comment egress-guard -j RETURN",
            "-A DOCKER-USER -i docker0 ! -o docker0 -m conntrack ! --ctstate RELATED,ESTABLISHED -m limit --limit 10/min -m comment --comment egress-guard -j LOG --log-prefix \"egress: \"",
            "-A DOCKER-USER -i docker0 ! -o docker0 -p tcp -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment egress-guard -j REJECT --reject-with tcp-reset",
            "-A DOCKER-USER -i docker0 ! -o docker0 -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment egress-guard -j REJECT --reject-with icmp-port-unreachable",
        ]
    );
    assert_eq!(lines(&p, Family::V6)[0], lines(&p, Family::V4)[0], "the same in ip6: the marks know the family");
}

#[test]
fn subnets_match_source_and_spare_their_own_network() {
    let p = spec().subnet(&["172.17.0.0/16"]).refusal(Refusal::Drop).policy();
    assert_eq!(
        lines(&p, Family::V4),
        [
            "-A DOCKER-USER -s 172.17.0.0/16 -d 224.0.0.0/4 -m comment --comment egress-guard -j RETURN",
            "-A DOCKER-USER -s 172.17.0.0/16 ! -d 172.17.0.0/16 -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment egress-guard -j DROP"
        ]
    );
    assert!(lines(&p, Family::V6).is_empty(), "no IPv6 subnet: IPv6 not guarded");
}

#[test]
fn bridges_times_subnets() {
    let p = spec().iface(&["docker0", "br-+"]).subnet(&["172.17.0.0/16", "fd00::/8"]).policy();
    assert_eq!(docker_user_rules(&p, Family::V4).len(), 2);
    assert!(lines(&p, Family::V6)[1].starts_with("-A DOCKER-USER -s fd00::/8 ! -d fd00::/8 -i br-+ ! -o br-+"));
}
