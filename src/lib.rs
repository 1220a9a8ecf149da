//! mailpulse keeps a client-initiated mail session alive through NAT gateways and firewalls,
//! and turns what the server pushes over it into events (printed, or shown as desktop toasts).
//!
//! Data flow: [`config`] → [`engine`] (with a [`protocol`] per account) → [`event::Event`]s →
//! the shell ([`cli`] today; the tray later). See `docs/ARCHITECTURE.md`.

pub mod autostart;
pub mod cli;
pub mod config;
pub mod credentials;
#[cfg(feature = "desktop")]
pub mod desktop;
pub mod engine;
pub mod event;
pub mod hooks;
pub mod icons;
pub mod logging;
pub mod netid;
pub mod protocol;
pub mod secret;
pub mod toasts;
pub mod tray_model;
pub mod wake;
