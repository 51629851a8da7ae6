//! The SMTP shell: the relay server the school's mail server talks to, and the next hops it
//! hands messages on to.
//!
//! `server` accepts connections and enforces who may connect and how many; `session` speaks the
//! protocol with one client; `data` reads a message after DATA; `handoff` turns a received
//! message into a decision, a delivery and an audit record; `next_hop` delivers.

pub mod alert_sender;
pub mod data;
pub mod handoff;
pub mod next_hop;
pub mod quarantine_digest;
pub mod retry;
pub mod scheduled;
pub mod server;
pub mod session;
pub mod weekly_report;
