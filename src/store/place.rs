//! Where the stores shared by every node live, chosen once from `[storage]`.
//!
//! [`Place::of`] is the one place that reads `[storage]` to choose: every store (the quarantine,
//! the accounts, the failed logins, the release links, the alert and notice queues and the web
//! sessions) is opened from a [`Place`], never from `state_dir` directly, so a config that names
//! a shared database moves all of them together.

use std::path::{Path, PathBuf};

use crate::config::Storage;

/// Where the stores live.
#[derive(Debug, Clone)]
pub enum Place {
    /// One school on one machine (the default): SQLite in `state_dir`, the held bytes and the
    /// queues as files under it, web sessions in the gateway's memory.
    Local(PathBuf),
}

impl Place {
    /// The place `[storage]` names.
    pub fn of(storage: &Storage) -> Place {
        Place::Local(storage.state_dir.clone())
    }

    /// The node's own folder (spools, evidence, the outbox): `storage.state_dir`.
    pub fn state_dir(&self) -> &Path {
        match self {
            Place::Local(dir) => dir,
        }
    }
}
