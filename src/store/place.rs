//! Where the stores shared by every node live, chosen once from `[storage]`.
//!
//! [`Place::of`] is the one place that reads `[storage]` to choose: every store (the quarantine,
//! the accounts, the failed logins, the release links, the alert and notice queues and the web
//! sessions) is opened from a [`Place`], never from `state_dir` directly, so a config that names
//! a shared database moves all of them together.
//!
//! With `[storage] database` set they live in PostgreSQL ([`super::postgres::shared`]), and so
//! do the evidence copies of flagged messages (the DSL reads them through either gateway);
//! `state_dir` keeps only the node's own outbox.

use std::path::{Path, PathBuf};

use super::StoreError;
use super::postgres::Pg;
use crate::config::Storage;

/// Where the stores live.
#[derive(Debug, Clone)]
pub enum Place {
    /// One school on one machine (the default): SQLite in `state_dir`, the held bytes and the
    /// queues as files under it, web sessions in the gateway's memory.
    Local(PathBuf),
    /// A trust's gateways sharing one PostgreSQL database (`[storage] database`); `state_dir`
    /// keeps only what is this node's own (the outbox).
    Shared {
        state_dir: PathBuf,
        database: String,
    },
}

impl Place {
    /// The place `[storage]` names.
    pub fn of(storage: &Storage) -> Place {
        match &storage.database {
            Some(url) => Place::Shared {
                state_dir: storage.state_dir.clone(),
                database: url.clone(),
            },
            None => Place::Local(storage.state_dir.clone()),
        }
    }

    /// The node's own folder (spools, evidence, the outbox): `storage.state_dir`.
    pub fn state_dir(&self) -> &Path {
        match self {
            Place::Local(dir) | Place::Shared { state_dir: dir, .. } => dir,
        }
    }

    /// The shared database, connected (once per process and URL; later calls share the pool),
    /// or `None` on one machine.
    pub fn pg(&self) -> Option<Result<Pg, StoreError>> {
        match self {
            Place::Local(_) => None,
            Place::Shared { database, .. } => Some(shared_pg(database)),
        }
    }

    /// This node's name in the shared store (who claimed a queued alert, who is holding a
    /// message): the host's name and the state directory, so two gateways on one machine
    /// (the tests) are two nodes too.
    pub fn node(&self) -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "gateway".into());
        format!("{host}:{}", self.state_dir().display())
    }
}

/// The pool for `url` ([`Pg::shared`]: one per process, connected and migrated once).
fn shared_pg(url: &str) -> Result<Pg, StoreError> {
    blocking(|| Pg::shared(url))
}

/// Runs `f`, which waits on the database, from any thread: on a worker of the gateway's
/// runtime (the web page's session checks) it tells tokio first, so other tasks move off it.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
