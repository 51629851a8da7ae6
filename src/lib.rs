//! schoolgate: the outbound mail gateway of a school.
//!
//! Data flows one way: a shell (the SMTP relay, `check`, the milter) reads a message,
//! [`policy::evaluate`] decides what happens to it without doing any I/O, the shell acts on the
//! decision (deliver to the next hop, later quarantine or alert), and [`store`] records it in the
//! hash-chained audit trail.

pub mod alerts;
pub mod cli;
pub mod config;
pub mod directory;
pub mod display;
pub mod dkim;
pub mod envelope;
pub mod milter;
pub mod mime;
pub mod policy;
pub mod review;
pub mod smtp;
pub mod store;
pub mod web;
