//! Integration tests: one binary, one module per area (see `harness` for the emulated Docker host).

mod harness;

mod baseline;
mod iptables_compat;
mod guard_traffic;
mod status_check;
mod policy_options;
mod bad_input;
mod atomic_switch;
mod table_target;
mod concurrency;
