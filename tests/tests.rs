//! Integration tests: one binary, one module per area (see `harness` for the emulated Docker host).

mod harness;

mod allow_sets;
mod atomic_switch;
mod audit_log;
mod bad_input;
mod baseline;
mod concurrency;
mod confirm;
mod daemon;
mod defects;
mod dns_forwarder;
mod dns_guard;
mod docker_follow;
mod guard_traffic;
mod iptables_compat;
mod log_trail;
mod policy_options;
mod service;
mod status_check;
mod table_target;
mod watch;
