//! Running under systemd: the unit file `install-service` writes (`unit`) and the readiness,
//! status and watchdog messages `watch` sends to the service manager (`notify`).

pub mod notify;
pub mod unit;
