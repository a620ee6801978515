//! Unit tests of the table target: the plan a policy makes, its expressions against nft's
//! bytes, the comparison with what the kernel holds, and the batches sync and remove write.

use super::*;
use crate::nft::expr::Expr;
use crate::nft::msg::parse;
use crate::policy::testing::spec;
use crate::policy::{parse_allow, Refusal, Sourced};

/// The plan with the forward chain guarding both families, as `--target table` writes it.
fn plan(p: &Policy) -> TablePlan {
    super::plan(p, &Family::ALL, GUARD)
}

/// Our table holding `plan` (what sync and judge compare with), both families guarded.
fn sync(batch: &mut BatchBuilder, state: &TableState, p: &Policy) -> Result<Step, BackendError> {
    super::sync(batch, state, &plan(p))
}

fn judge(state: &TableState, p: &Policy) -> PlaceReport {
    super::judge(state, &plan(p), &Family::ALL)
}

/// The chain's rules in nft syntax, without the digest rule (see `the_digest_follows_the_elements`).
fn texts<'a>(plan: &'a TablePlan, chain: &str) -> Vec<&'a str> {
    let rules = plan.chains.iter().filter(|c| c.name == chain).flat_map(|c| &c.rules);
    rules.filter(|r| !is_digest(Some(&r.userdata))).map(|r| r.text.as_str()).collect()
}

fn set<'a>(plan: &'a TablePlan, name: &str) -> &'a layout::SetPlan {
    plan.sets.iter().find(|s| s.set.name == name).unwrap_or_else(|| panic!("no set {name}"))
}

#[test]
fn default_plan_is_the_design_rules() {
    let plan = plan(&Policy::default());
    assert!(plan.sets.is_empty());
    assert_eq!(plan.chains.len(), 1, "no input chain without --block-host");
    assert_eq!(
        texts(&plan, FORWARD),
        [
            "add rule inet egress_guard forward iifname \"docker0\" oifname != \"docker0\" \
             ct state & (established | related) == 0 counter reject with icmpx port-unreachable comment \"egress-guard\"",
            "add rule inet egress_guard forward iifname \"br-*\" oifname != \"br-*\" \
             ct state & (established | related) == 0 counter reject with icmpx port-unreachable comment \"egress-guard\"",
        ]
    );
}

#[test]
fn allow_log_tcp_reset_and_block_host() {
    let p = spec()
        .iface(&["docker0"])
        .allow(&["198.51.100.53:53/udp", "[2001:db8::53]:53/udp", "10.0.0.0/8", "10.1.0.0/16"])
        .refusal(Refusal::TcpReset)
        .nflog(5)
        .block_host()
        .policy();
    let plan = plan(&p);
    let head = "add rule inet egress_guard forward iifname \"docker0\" oifname != \"docker0\"";
    let new = "ct state & (established | related) == 0";
    let tail = "comment \"egress-guard\"";
    let mark = "counter meta mark set meta mark | 0x01000000 comment \"egress-guard\"";
    assert_eq!(
        texts(&plan, FORWARD),
        [
            format!("add rule inet egress_guard forward counter meta mark set meta mark & 0xfeffffff {tail}"),
            format!("add rule inet egress_guard forward ip daddr @allow4 {mark}"),
            format!("add rule inet egress_guard forward ip daddr . meta l4proto . th dport @allow4_port {mark}"),
            format!("add rule inet egress_guard forward ip6 daddr . meta l4proto . th dport @allow6_port {mark}"),
            format!("{head} meta mark & 0x01000000 == 0x01000000 counter accept {tail}"),
            format!("{head} {new} limit rate 10/minute burst 5 packets counter log prefix \"egress-guard: tcp-reset\" group 5 {tail}"),
            format!("{head} {new} meta l4proto tcp counter reject with tcp reset {tail}"),
            format!("{head} {new} counter reject with icmpx port-unreachable {tail}"),
        ]
    );
    // Input: neighbour discovery first, then the marks, then the same selector without the
    // output interface.
    let input = texts(&plan, INPUT);
    assert_eq!(input[0], format!("add rule inet egress_guard input icmpv6 type 133-137 counter accept {tail}"));
    assert_eq!(input[2], format!("add rule inet egress_guard input ip daddr @allow4 {mark}"));
    assert_eq!(
        input[5],
        format!("add rule inet egress_guard input iifname \"docker0\" meta mark & 0x01000000 == 0x01000000 counter accept {tail}")
    );
    assert_eq!(input.len(), 9);
    // Overlapping networks are merged: the kernel refuses overlapping intervals.
    assert_eq!(
        set(&plan, "allow4").text,
        "add set inet egress_guard allow4 { type ipv4_addr; flags interval; elements = { 10.0.0.0/8 } }"
    );
    assert_eq!(set(&plan, "allow4").elems.len(), 2);
    let ports = set(&plan, "allow6_port");
    assert_eq!(
        ports.text,
        "add set inet egress_guard allow6_port { type ipv6_addr . inet_proto . inet_service; flags interval; \
         elements = { 2001:db8::53 . udp . 53 } }"
    );
    assert_eq!((ports.set.key_len, &ports.set.fields), (24, &vec![16, 1, 2]));
    assert_eq!(plan.sets.len(), 3, "only sets a rule looks up");
}

#[test]
fn subnet_only_policy_lets_multicast_through_and_guards_one_family() {
    let p = spec().subnet(&["172.17.0.0/16"]).refusal(Refusal::Drop).policy();
    let plan = plan(&p);
    let head = "add rule inet egress_guard forward ip saddr @subnets4 ip saddr . ip daddr != @same_subnet4";
    assert_eq!(
        texts(&plan, FORWARD),
        [
            format!("{head} ip daddr 224.0.0.0/4 counter accept comment \"egress-guard\""),
            format!("{head} ct state & (established | related) == 0 counter drop comment \"egress-guard\""),
        ]
    );
}

#[test]
fn a_bridge_with_subnets_of_one_family_guards_the_other_family_whole() {
    let p = spec().iface(&["docker0"]).subnet(&["172.17.0.0/16"]).policy();
    let planned = plan(&p);
    let rules = texts(&planned, FORWARD);
    assert_eq!(rules.len(), 2);
    assert!(planned.digest().is_some(), "the subnet sets are the policy's");
    assert!(
        rules[0].contains("oifname != \"docker0\" ip saddr @subnets4 ip saddr . ip daddr != @same_subnet4 ct state")
    );
    assert!(rules[1].contains("oifname != \"docker0\" meta nfproto ipv6 ct state"), "{}", rules[1]);
}

#[test]
fn nested_subnets_pair_each_source_with_its_innermost_subnet() {
    let p = spec().subnet(&["10.0.0.0/8", "10.1.0.0/16"]).policy();
    let plan = plan(&p);
    assert_eq!(
        set(&plan, "same_subnet4").text,
        "add set inet egress_guard same_subnet4 { type ipv4_addr . ipv4_addr; flags interval; elements = { \
         10.0.0.0/16 . 10.0.0.0/8, 10.2.0.0-10.255.255.255 . 10.0.0.0/8, 10.1.0.0/16 . 10.1.0.0/16 } }"
    );
    let pair = set(&plan, "same_subnet4").elems.iter().find(|e| e.key == [10, 1, 0, 0, 10, 1, 0, 0]).unwrap();
    assert_eq!(pair.key_end.as_deref(), Some(&[10, 1, 255, 255, 10, 1, 255, 255][..]));
    assert_eq!(set(&plan, "subnets4").text.matches("10.0.0.0/8").count(), 1, "merged");
}

/// The capture's rules, decoded, with what nft writes differently but means the same made
/// equal: nft sends a counter without attributes, and for `meta l4proto` in a concatenation a
/// `byteorder` that swaps nothing (one byte); we send zeroed counters and no byteorder.
fn nft_rules() -> Vec<NftRule> {
    let text = include_str!("testdata/nft-rules.hex");
    let mut rules = Vec::new();
    for chunk in text.split("# rule:").skip(1) {
        let bytes = crate::nft::hex(&chunk.lines().skip(1).collect::<Vec<_>>().join("\n"));
        let mut rule = NftRule::decode(&parse(&bytes).unwrap()[0]).unwrap();
        rule.exprs.retain(|e| e.name() != "byteorder");
        for e in &mut rule.exprs {
            if matches!(e, Expr::Other { name, .. } if name == "counter") {
                *e = Expr::Counter { bytes: 0, packets: 0 };
            }
        }
        rules.push(rule);
    }
    rules
}

#[test]
fn rules_are_the_expressions_nft_writes() {
    let nft = nft_rules();
    let policies = [
        Policy::default(),
        spec().iface(&["docker0"]).subnet(&["172.17.0.0/16"]).refusal(Refusal::Drop).policy(),
        Policy { per_source: true, ..spec().iface(&["docker0"]).allow(&["[2001:db8::53]:53/udp"]).policy() },
    ];
    let plans: Vec<TablePlan> = policies.iter().map(plan).collect();
    let ours: Vec<NftRule> =
        plans.iter().flat_map(|p| &p.chains).flat_map(|c| c.rules.iter().map(|r| r.to_rule(c.name))).collect();
    assert_eq!(nft.len(), 9);
    for theirs in &nft {
        // The digest rule's comment holds another digest: the same form, 16 hex digits.
        let digest = |r: &NftRule| r.userdata.as_deref().and_then(layout::comment_of).map(|c| c.len());
        let same_comment = |r: &NftRule| {
            r.userdata == theirs.userdata || (is_digest(r.userdata.as_deref()) && digest(r) == digest(theirs))
        };
        let found = ours.iter().find(|r| r.exprs == theirs.exprs && same_comment(r));
        let found = found.unwrap_or_else(|| panic!("nft's rule is none of ours: {}", text::rule(theirs)));
        assert_eq!((found.family, found.table.as_str(), found.chain.as_str()), (theirs.family, TABLE, FORWARD));
    }
}

/// What the kernel would dump after applying `plan`: same rules with handles and traffic.
fn kernel_state(plan: &TablePlan) -> TableState {
    let chain = |c: &layout::ChainPlan| {
        let def = ChainDef {
            name: c.name.into(),
            hook: Some((c.hook, c.priority)),
            ty: Some(c.kind.into()),
            policy: Some(NF_ACCEPT as u32),
        };
        let rules = c
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut rule = r.to_rule(c.name);
                rule.handle = Some(i as u64 + 4);
                for e in &mut rule.exprs {
                    if let Expr::Counter { packets, bytes } = e {
                        (*packets, *bytes) = (3, 180);
                    }
                }
                rule
            })
            .collect();
        (def, rules)
    };
    let sets = plan
        .sets
        .iter()
        .map(|s| {
            let mut elems = s.elems.clone();
            elems.sort();
            (s.set.clone(), Some(elems))
        })
        .collect();
    TableState {
        spec: GUARD,
        exists: true,
        userdata: Some(comment_udata(COMMENT)),
        owner: None,
        chains: plan.chains.iter().map(chain).collect(),
        sets,
    }
}

fn rich() -> Policy {
    spec()
        .allow(&["198.51.100.53:53/udp", "10.0.0.0/8"])
        .subnet(&["172.17.0.0/16", "fd00:17::/64"])
        .log(None)
        .block_host()
        .policy()
}

fn described(batch: BatchBuilder) -> Vec<String> {
    batch.finish().msgs.into_iter().map(|(_, what)| what).collect()
}

#[test]
fn what_the_kernel_holds_as_planned_is_in_place_and_sends_nothing() {
    let p = rich();
    let state = kernel_state(&plan(&p));
    assert_eq!(differences(&state, &plan(&p)), Vec::<String>::new());
    let mut batch = BatchBuilder::new(1, 1);
    let step = sync(&mut batch, &state, &p).unwrap();
    assert_eq!(step.change, Change::Unchanged, "{step:?}");
    assert!(batch.is_empty());
    let status = judge(&state, &p);
    assert_eq!((status.verdict, status.reached, status.foreign_rules), (Verdict::InPlace, true, 0));
    assert!(status.rules.iter().all(|r| r.rule.starts_with("add rule inet egress_guard ") && r.packets == 3));
}

#[test]
fn drift_is_named() {
    let p = rich();
    let planned = plan(&p);
    let mut state = kernel_state(&planned);
    state.chains[0].1.remove(1);
    state.sets[0].1.as_mut().unwrap().pop();
    let mut foreign = state.chains[1].1[0].clone();
    foreign.userdata = None;
    state.chains[1].1.push(foreign);
    let diffs = differences(&state, &planned);
    let rules = planned.chains[0].rules.len();
    assert_eq!(
        diffs,
        [
            format!("chain forward holds {} rules where the policy has {rules}", rules - 1),
            format!(
                "chain input holds {} rules where the policy has {}",
                planned.chains[1].rules.len() + 1,
                planned.chains[1].rules.len()
            ),
            format!("set {} differs from the policy (1 missing, 1 not planned)", planned.sets[0].set.name),
        ]
    );
    let status = judge(&state, &p);
    assert_eq!((status.verdict, status.foreign_rules), (Verdict::Drifted, 1));
    assert!(status.reason.unwrap().starts_with("chain forward holds"));
    // Without --block-host the input chain is extra.
    let plain = Policy { block_host: false, ..p };
    assert!(
        differences(&kernel_state(&planned), &plan(&plain)).contains(&"chain input is not in the policy".to_string())
    );
}

#[test]
fn a_change_rebuilds_the_table_in_one_batch() {
    let p = rich();
    let state = kernel_state(&plan(&Policy::default()));
    let mut batch = BatchBuilder::new(1, 1);
    let step = sync(&mut batch, &state, &p).unwrap();
    assert_eq!(step.change, Change::Written);
    assert_eq!(step.removed.len(), 2);
    let what = described(batch);
    let planned = plan(&p);
    let rules: usize = planned.chains.iter().map(|c| c.rules.len()).sum();
    assert_eq!(
        what[..4],
        [
            "DELTABLE inet egress_guard",
            "NEWTABLE inet egress_guard",
            "NEWCHAIN inet egress_guard forward",
            "NEWCHAIN inet egress_guard input"
        ]
    );
    assert_eq!(what.iter().filter(|w| w.starts_with("NEWSET ")).count(), planned.sets.len());
    assert_eq!(what.iter().filter(|w| w.starts_with("NEWRULE ")).count(), rules);
    assert!(what.last().unwrap().starts_with("NEWRULE inet egress_guard input"));
    assert_eq!(step.added.len(), planned.sets.len() + rules);
}

#[test]
fn a_missing_table_is_created_and_remove_deletes_only_the_table() {
    let mut batch = BatchBuilder::new(1, 1);
    sync(&mut batch, &TableState::absent(GUARD), &Policy::default()).unwrap();
    let what = described(batch);
    assert_eq!(what[0], "NEWTABLE inet egress_guard");
    assert!(!what.iter().any(|w| w.starts_with("DEL")));

    let mut batch = BatchBuilder::new(1, 1);
    let step = remove(&mut batch, &TableState::absent(GUARD)).unwrap();
    assert_eq!((step.change, batch.is_empty()), (Change::Unchanged, true));
    let state = kernel_state(&plan(&Policy::default()));
    let mut batch = BatchBuilder::new(1, 1);
    let step = remove(&mut batch, &state).unwrap();
    assert_eq!(described(batch), ["DELTABLE inet egress_guard"]);
    assert_eq!(step.removed.len(), 2);
}

#[test]
fn ten_thousand_destinations_are_one_batch() {
    let allow = (0..10_000u32)
        .map(|i| Sourced::flag("--allow", parse_allow(&format!("10.{}.{}.1", i / 250, i % 250)).unwrap()));
    let p = crate::policy::PolicySpec { allow: Some(allow.collect()), ..Default::default() }.resolve().unwrap();
    let planned = plan(&p);
    assert_eq!(set(&planned, "allow4").elems.len(), 20_000);
    let mut batch = BatchBuilder::new(1, 1);
    sync(&mut batch, &TableState::absent(GUARD), &p).unwrap();
    let batch = batch.finish();
    let elem_msgs = batch.msgs.iter().filter(|(_, w)| w.starts_with("NEWSETELEM")).count();
    assert!((2..40).contains(&elem_msgs), "{elem_msgs} NEWSETELEM messages");
    assert!(batch.bytes.len() < 1 << 20, "{} bytes", batch.bytes.len());
}

/// The rules a batch adds, decoded from its bytes.
fn new_rules(batch: BatchBuilder) -> Vec<NftRule> {
    let batch = batch.finish();
    let msgs = parse(&batch.bytes).unwrap();
    let newrule = crate::nft::msg::nft_type(NFT_MSG_NEWRULE);
    msgs.iter().filter(|m| m.ty == newrule).map(|m| NftRule::decode(m).unwrap()).collect()
}

#[test]
fn the_policys_sets_are_read_unless_the_stamp_says_nobody_changed_anything() {
    let p = spec().allow(&["198.51.100.53"]).policy();
    let planned = plan(&p);
    let mut state = kernel_state(&planned);
    // As the kernel holds it after our batch at generation 6: stamped 7.
    let stamped = planned.digest().unwrap().stamped(6);
    *state.chains[0].1.last_mut().unwrap() = NftRule { handle: Some(99), ..stamped.to_rule(FORWARD) };
    assert_eq!(elems_needed(&state, &planned, false, 7), Vec::<String>::new(), "nobody committed since");
    assert_eq!(elems_needed(&state, &planned, false, 8), ["allow4"], "someone did: an element may be theirs");
    assert!(differences(&state, &planned).is_empty(), "the stamp is no drift");
    // An element added by hand is taken out by the next sync that reads the sets.
    state.sets[0].1.as_mut().unwrap().push(SetElem { key: vec![198, 51, 100, 2], key_end: None, flags: 0 });
    state.sets[0].1.as_mut().unwrap().push(SetElem {
        key: vec![198, 51, 100, 3],
        key_end: None,
        flags: NFT_SET_ELEM_INTERVAL_END,
    });
    state.sets[0].1.as_mut().unwrap().sort();
    let mut batch = BatchBuilder::new(1, 8);
    let step = super::sync(&mut batch, &state, &planned).unwrap();
    assert_eq!(step.removed, ["delete element inet egress_guard allow4 { 198.51.100.2 }"]);
}

#[test]
fn a_range_added_by_hand_touching_ours_is_told_apart_and_taken_out() {
    // Ours: 198.51.100.2 (opens at .2, closed at .3). By hand: 198.51.100.3, opening at .3
    // where ours closes. Sorted naively, .3's opening came before our closing: the units
    // paired wrongly and printing one panicked.
    let p = spec().allow(&["198.51.100.2"]).policy();
    let planned = plan(&p);
    let mut state = kernel_state(&planned);
    let elems = state.sets[0].1.as_mut().unwrap();
    elems.push(SetElem { key: vec![198, 51, 100, 3], key_end: None, flags: 0 });
    elems.push(SetElem { key: vec![198, 51, 100, 4], key_end: None, flags: NFT_SET_ELEM_INTERVAL_END });
    elems.sort();
    let mut batch = BatchBuilder::new(1, 8);
    let step = super::sync(&mut batch, &state, &planned).unwrap();
    assert_eq!(step.removed, ["delete element inet egress_guard allow4 { 198.51.100.3 }"]);
    assert!(step.added.iter().all(|a| !a.nft.contains("add element")), "{:?}", step.added);
}

#[test]
fn the_digest_moves_with_the_elements_when_only_another_chain_is_refilled() {
    // With DOCKER-USER guarding forwarding, our forward chain only marks (and holds the
    // digest); --block-host's input chain refuses. A new refusal refills the input chain
    // alone, and a new allow-list changes elements alone: the digest must still follow them,
    // or the next apply dumps every element, finds them as planned and writes again.
    let old = spec().allow(&["198.51.100.53"]).block_host().policy();
    let new = spec().allow(&["198.51.100.54"]).block_host().refusal(Refusal::Drop).policy();
    let (was, wanted) = (super::plan(&old, &[], GUARD), super::plan(&new, &[], GUARD));
    assert_eq!(was.chains.len(), 2);
    let state = kernel_state(&was);
    let mut batch = BatchBuilder::new(1, 1);
    super::sync(&mut batch, &state, &wanted).unwrap();
    // Stamped with the generation the batch makes (planned against 1: 2).
    let digest = wanted.digest().unwrap().stamped(1).userdata;
    let added = new_rules(batch);
    assert!(
        added.iter().any(|r| r.chain == FORWARD && r.userdata.as_deref() == Some(digest.as_slice())),
        "no rule carries the new digest: {:?}",
        added.iter().map(text::rule).collect::<Vec<_>>()
    );
}

/// Names allowed per container: only the containers in `dnsclients4` (and 6) have their DNS
/// redirected, open ones never, and what the forwarder grants them (`dnsfrom4`, source first)
/// sets the mark like every allowance.
#[test]
fn names_allowed_per_container_redirect_only_those_containers() {
    use crate::grants::{Grant, Live, SourceGrant};
    let domains = vec![crate::dns::names::parse_allow_domain("pypi.test").unwrap()];
    let web = SourceGrant { source: "172.18.0.2/32".parse().unwrap(), grant: Grant { domains, ..Grant::default() } };
    let open =
        SourceGrant { source: "172.18.0.3/32".parse().unwrap(), grant: Grant { open: true, ..Grant::default() } };
    let live = Live { sources: vec![web, open], ..Live::default() };
    let mut p = spec().iface(&["docker0"]).policy();
    p.per_source = true;
    p.dns.for_containers = true;
    p.live = Some(std::sync::Arc::new(live));
    let planned = plan(&p);
    let elems = |name: &str| set(&planned, name).elems.len();
    assert_eq!((elems("dnsclients4"), elems("dnsclients6")), (2, 0), "one /32: its opening and closing element");
    assert_eq!(set(&planned, "dnsfrom6_port").text, "add set inet egress_guard dnsfrom6_port { type ipv6_addr . ipv6_addr . inet_proto . inet_service; flags timeout; }");
    let nat = texts(&planned, layout::DNS);
    let head = "add rule inet egress_guard dns iifname \"docker0\" fib daddr oifname != \"docker0\"";
    assert_eq!(nat[0], "add rule inet egress_guard dns ip saddr @open4 counter accept comment \"egress-guard\"");
    assert_eq!(
        nat[2],
        format!("{head} ip saddr @dnsclients4 udp dport 53 counter redirect to :53053 comment \"egress-guard\"")
    );
    assert_eq!(nat.len(), 2 + 4, "open accepts, then udp and tcp per family");
    let marks = texts(&planned, FORWARD);
    assert!(marks.iter().any(|r| r.contains("ip saddr . ip daddr @dnsfrom4 counter meta mark set")), "{marks:#?}");
    assert!(marks.iter().any(|r| r.contains("@dnsfrom6_port")), "{marks:#?}");
    // A name allowed to everyone: every container's DNS goes to the forwarder (but open ones').
    p.dns.domains = vec![crate::dns::names::parse_allow_domain("pypi.test").unwrap()];
    let everyone = plan(&p);
    let nat = texts(&everyone, layout::DNS);
    assert!(!nat.iter().any(|r| r.contains("dnsclients")), "{nat:#?}");
    assert_eq!(nat.len(), 2 + 2);
}
