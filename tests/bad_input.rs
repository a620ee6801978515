//! Bad input is harmless: every mistake, in flags or in the config file, exits 2 with one line
//! that names the bad value, and the namespace's ruleset is byte for byte what it was.

use std::process::Command;

use crate::harness::{docker_user_namespace, egress_guard, egress_guard_ok};
use crate::harness::{require_kernel, Netns};

/// (flags, what the one line must mention)
const BAD_FLAGS: &[(&[&str], &str)] = &[
    (&["--iface", ""], "empty interface name"),
    (&["--iface", "a+b"], "wildcard at the end"),
    (&["--iface", "sixteen-bytes-xx"], "longer than 15 bytes"),
    (&["--iface", "br 0"], "cannot hold spaces"),
    (&["--iface", "docker0", "--iface", "docker0"], "--iface docker0 is given twice"),
    (&["--subnet", "172.17.0.0/12"], "the network is 172.16.0.0/12"),
    (&["--subnet", "10.0.0.1"], "needs a prefix length"),
    (&["--subnet", "bogus"], "not an IPv4 or IPv6 CIDR"),
    (&["--subnet", "0.0.0.0/0"], "matches every address"),
    (&["--subnet", "172.17.0.0/16", "--subnet", "172.17.0.0/16"], "172.17.0.0/16 is given twice"),
    (&["--allow", "198.51.100.53:53"], "give the protocol too"),
    (&["--allow", "198.51.100.53:0/udp"], "from 1 to 65535"),
    (&["--allow", "198.51.100.53:70000/udp"], "from 1 to 65535"),
    (&["--allow", "198.51.100.53:53/icmp"], "must be tcp or udp"),
    (&["--allow", "[2001:db8::1:53/udp"], "missing ']'"),
    (&["--allow", "198.51.100.9/24"], "the network is 198.51.100.0/24"),
    (&["--subnet", "172.17.0.0/16", "--allow", "2001:db8::53"], "no IPv6 --subnet is guarded"),
    (&["--reject-with", "reset"], "invalid value 'reset'"),
    (&["--log", "--log-rate", "5/fortnight"], "expected RATE/UNIT"),
    (&["--log-rate", "5/minute"], "--log-rate needs --log"),
    (&["--nflog-group", "70000"], "from 0 to 65535"),
    (&["--log="], "the prefix is empty"),
    (&["--log=a-prefix-that-is-far-too-long-for-LOG", "--log-to", "kernel"], "longer than 29 bytes"),
    (&["--log=a-prefix-of-forty-seven-bytes-one-too-many-for-"], "longer than 46 bytes"),
    (&["--log-to", "syslog"], "invalid value 'syslog'"),
    (&["--log-to", "kernel"], "--log-to needs --log"),
    (&["--log", "--log-to", "kernel", "--nflog-group", "5"], "--nflog-group is for --log-to nflog"),
    (&["--target", "sideways"], "invalid value 'sideways'"),
    (&["--netns", "eg-no-such-namespace"], "ip netns list"),
    (&["--config", "/nonexistent/egress-guard.toml"], "cannot read config /nonexistent/egress-guard.toml"),
    // Issue 8, item 7: inputs that used to be accepted.
    (&["--iface", "."], "\".\" and \"..\" are not interface names"),
    (&["--iface", ".."], "\".\" and \"..\" are not interface names"),
    (&["--iface", "br\"x"], "printable ASCII"),
    (&["--iface", "br\u{e4}"], "printable ASCII"),
    (&["--allow", "198.51.100.53:+53/udp"], "port \"+53\""),
    (&["--allow", "198.51.100.53:053/udp"], "port \"053\""),
    (&["--allow", "[198.51.100.53]:53/udp"], "brackets are for IPv6"),
    (&["--allow", "2001:db8::53:53/udp"], "[2001:db8::53]:53/udp"),
    (&["--config", "/dev/null"], "not a regular file"),
    (&["--netns", "/etc/hostname"], "is not a network namespace"),
    (&["--block-host", "--target", "docker-user"], "--block-host keeps its rules in our own table"),
    // Issue 10: --confirm.
    (&["--confirm", "0"], "invalid value '0' for '--confirm <SECS>'"),
    (&["--confirm", "soon"], "invalid value 'soon' for '--confirm <SECS>'"),
    (&["--confirm", "86401"], "invalid value '86401' for '--confirm <SECS>'"),
    (&["--confirm", "60", "--dry-run"], "cannot be used with"),
    // Issue 14: --allow-domain and the forwarder's settings.
    (&["--allow-domain", "198.51.100.1"], "198.51.100.1 is an address, not a name: use --allow"),
    (&["--allow-domain", "2001:db8::1"], "is an address, not a name"),
    (&["--allow-domain", "*"], "'*' alone matches every name"),
    (&["--allow-domain", "*.*.test"], "'*' is only a whole first label"),
    (&["--allow-domain", "a..test"], "an empty label"),
    (&["--allow-domain", "pypi.test:53"], "give the protocol too"),
    (&["--allow-domain", "pypi.test", "--allow-domain", "pypi.test"], "--allow-domain pypi.test is given twice"),
    (&["--allow-domain", "pypi.test", "--dns-upstream", "nowhere"], "not an upstream address"),
    (&["--allow-domain", "pypi.test", "--dns-min-ttl", "10", "--dns-max-ttl", "5"], "--dns-min-ttl is longer"),
    (&["--allow-domain", "pypi.test", "--dns-max-ttl", "604801"], "from 0 to 604800 (a week)"),
    (&["--allow-domain", "pypi.test", "--dns-port", "0"], "0 is not in 1..=65535"),
    (&["--allow-domain", "pypi.test", "--dns-refuse-with", "maybe"], "invalid value 'maybe'"),
];

/// `log` and `watch` options: (subcommand, flags, what the one line must mention). None of them
/// may get as far as binding the NFLOG group or writing a rule.
const BAD_OTHERS: &[(&str, &[&str], &str)] = &[
    ("log", &["--max-size", "10X", "--output", "/tmp/eg-never-written.jsonl"], "\"10X\" is not a size"),
    ("log", &["--max-size", "100", "--output", "/tmp/eg-never-written.jsonl"], "at least 4K"),
    ("log", &["--max-size", "1M"], "--max-size is for --output FILE"),
    ("log", &["--summary"], "--summary reads a file"),
    ("log", &["--from", "/tmp/eg-never-read.jsonl"], "--summary"),
    ("log", &["--summary", "--from", "/nonexistent/attempts.jsonl"], "cannot read /nonexistent/attempts.jsonl"),
    ("log", &["--output", "/nonexistent/dir/attempts.jsonl"], "cannot open /nonexistent/dir/attempts.jsonl"),
    ("log", &["--output", "/tmp"], "cannot open /tmp: Is a directory"),
    ("log", &["--output", "/dev/null"], "cannot open /dev/null: not a regular file"),
    ("log", &["--docker-host", "tcp://127.0.0.1:2375"], "only unix sockets are supported"),
    ("log", &["--docker-host", "docker.sock"], "only unix sockets are supported"),
    ("log", &["--nflog-group", "70000"], "from 0 to 65535"),
    ("log", &["--config", "/nonexistent/egress-guard.toml"], "cannot read config"),
    ("log", &["--json=yes"], "unexpected value 'yes'"),
    ("watch", &["--docker-host", "ssh://me@host"], "only unix sockets are supported"),
    ("watch", &["--log-to", "syslog"], "invalid value 'syslog'"),
    ("watch", &["--log-to", "kernel"], "--log-to needs --log"),
    ("watch", &["--allow-domain", "*"], "'*' alone matches every name"),
    ("watch", &["--allow-domain", "pypi.test", "--dns-port", "0"], "0 is not in 1..=65535"),
];

/// (config file text, the line:column the message must name, what else it must mention)
const BAD_CONFIGS: &[(&str, &str, &str)] = &[
    ("ifac = [\"docker0\"]", "1:1", "unknown field `ifac`, expected one of `iface`"),
    ("nflog_group = \"5\"", "1:15", "invalid type: string \"5\", expected u16"),
    ("iface = \"docker0\"", "1:9", "expected a sequence"),
    ("# subnets\nsubnet = [\"172.17.0.0/12\"]", "2:11", "the network is 172.16.0.0/12"),
    ("allow = [\"198.51.100.53:53/udp\"", "1:", "expected"),
    ("[policy]\niface = [\"docker0\"]", "1:2", "unknown field `policy`"),
    ("reject_with = \"sometimes\"", "1:15", "unknown variant `sometimes`"),
    ("log = 3", "1:7", "expected true, false or a prefix string"),
    ("target = \"sideways\"", "1:10", "unknown variant `sideways`"),
    ("log_to = \"syslog\"", "1:10", "unknown variant `syslog`"),
    ("log = true\nlog_to = \"kernel\"\nnflog_group = 5", "", "--nflog-group is for --log-to nflog"),
    // Issue 8, item 7: a value error names the file, line and column, not a flag.
    ("allow = [\n  \"198.51.100.53:+53/udp\",\n]", "2:3", "port \"+53\""),
    ("iface = [\"..\"]", "1:10", "are not interface names"),
    ("block_host = true\ntarget = \"docker-user\"", "", "--block-host keeps its rules in our own table"),
    // Issue 14.
    ("allow_domain = [\"*\"]", "1:17", "'*' alone matches every name"),
    ("allow_domain = [\"198.51.100.1\"]", "1:17", "is an address, not a name"),
    ("[container.web]\nallow_domain = [\"198.51.100.1\"]", "2:17", "is an address, not a name"),
    ("[network.ci]\nallow_domain = [\"*\"]", "2:17", "'*' alone matches every name"),
    ("allow_domain = [\"pypi.test\"]\ndns_upstream = [\"nowhere\"]", "2:17", "not an upstream address"),
    ("allow_domain = [\"pypi.test\"]\ndns_refuse_with = \"maybe\"", "2:19", "unknown variant `maybe`"),
    ("allow_domain = [\"pypi.test\"]\ndns_min_ttl = 10\ndns_max_ttl = 5", "", "--dns-min-ttl is longer"),
];

/// Runs `apply ARGS --netns NS` and checks: exit 2, one stderr line mentioning `needle`.
fn assert_refused(ns: &Netns, args: &[&str], needle: &str) {
    assert_refused_by(ns, "apply", args, None, needle);
}

/// Runs `SUBCOMMAND ARGS --netns NS` (with DOCKER_HOST set to `docker_host`, if given) under a
/// time limit, so that one accepted by mistake ends anyway, and checks as `assert_refused`.
fn assert_refused_by(ns: &Netns, subcommand: &str, args: &[&str], docker_host: Option<&str>, needle: &str) {
    let mut command = Command::new("timeout");
    command.args(["10", env!("CARGO_BIN_EXE_egress-guard"), subcommand]).args(args);
    match docker_host {
        Some(value) => command.env("DOCKER_HOST", value),
        None => command.env_remove("DOCKER_HOST"),
    };
    if !args.contains(&"--netns") {
        command.args(["--netns", ns.name()]);
    }
    let out = command.output().expect("run egress-guard");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{subcommand} {args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
    assert!(err.starts_with("egress-guard: "), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err:?} does not mention {needle:?}");
}

#[test]
fn bad_flags_and_configs_exit_2_and_change_nothing() {
    require_kernel!();
    let ns = docker_user_namespace("badinput");
    egress_guard_ok(&ns, &["apply"]);
    let before = ns.run(&["nft", "--stateless", "--handle", "list", "ruleset"]);
    assert!(BAD_FLAGS.len() + BAD_CONFIGS.len() + BAD_OTHERS.len() >= 25);
    for (args, needle) in BAD_FLAGS {
        assert_refused(&ns, args, needle);
    }
    for (subcommand, args, needle) in BAD_OTHERS {
        assert_refused_by(&ns, subcommand, args, None, needle);
    }
    assert_refused_by(
        &ns,
        "log",
        &[],
        Some("tcp://127.0.0.1:2375"),
        "unsupported docker host \"tcp://127.0.0.1:2375\"",
    );
    let dir = std::env::temp_dir().join(format!("eg-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (text, at, needle)) in BAD_CONFIGS.iter().enumerate() {
        let path = dir.join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let path = path.to_str().unwrap();
        if !at.is_empty() {
            assert_refused(&ns, &["--config", path], &format!("{path}:{at}"));
        }
        assert_refused(&ns, &["--config", path], needle);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        ns.run(&["nft", "--stateless", "--handle", "list", "ruleset"]),
        before,
        "a refused command changed the ruleset"
    );
}

#[test]
fn config_file_sets_the_policy_and_flags_override_it() {
    require_kernel!();
    let ns = docker_user_namespace("config");
    let path = std::env::temp_dir().join(format!("eg-config-ok-{}.toml", std::process::id()));
    std::fs::write(&path, "iface = [\"docker0\"]\nreject_with = \"drop\"\n").unwrap();
    let config = path.to_str().unwrap();
    egress_guard_ok(&ns, &["apply", "--config", config]);
    let rules = ns.run(&["iptables", "-S", "DOCKER-USER"]);
    assert!(rules.contains("-i docker0") && !rules.contains("br-+") && rules.contains("-j DROP"), "{rules}");
    egress_guard_ok(&ns, &["apply", "--config", config, "--reject-with", "admin-prohibited"]);
    let rules = ns.run(&["iptables", "-S", "DOCKER-USER"]);
    assert!(rules.contains("-i docker0") && rules.contains("icmp-admin-prohibited"), "{rules}");
    std::fs::remove_file(&path).unwrap();
}

/// `dns_port = 0` in the config is refused as `--dns-port 0` is. Today the config's value is
/// taken unchecked and apply writes `redirect to :0`.
#[test]
fn a_config_dns_port_of_zero_is_refused() {
    require_kernel!();
    let ns = docker_user_namespace("badport");
    let path = std::env::temp_dir().join(format!("eg-config-port0-{}.toml", std::process::id()));
    std::fs::write(&path, "allow_domain = [\"pypi.test\"]\ndns_port = 0\n").unwrap();
    let config = path.to_str().unwrap().to_owned();
    let out = egress_guard(&ns, &["apply", "--config", &config, "--dry-run"]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
}
