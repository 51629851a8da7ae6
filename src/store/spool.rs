//! Files that must survive a crash beside the database: the evidence (the delivered copy of each
//! flagged message, for the DSL) and the alerts waiting to be sent.
//!
//! Each file is written to a temporary name, fsynced, renamed into place and its directory
//! fsynced, so a file is either whole or absent.
//!
//! With `[storage] database` the alert and notice queues are rows in PostgreSQL, claimed by one
//! gateway at a time for [`CLAIM_FOR`] (see [`super::postgres::shared::claim`]), and the
//! evidence copies are rows too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::place::Place;
use super::postgres::{Pg, shared};
use crate::alerts::{Flagged, Notice};
use crate::config::Storage;

/// The spool, where [`Place`] says (see [`Spool::open`]).
#[derive(Debug, Clone)]
pub struct Spool {
    place: Place,
    /// How long a node's claim on queued items lasts (a shared database).
    claim_for: Duration,
}

/// How long a claim on queued alerts and notices lasts before another node may take them:
/// longer than sending one takes (the next hop's timeouts), short enough that an alert held by
/// a node that died goes out within minutes.
pub const CLAIM_FOR: Duration = Duration::from_secs(120);

impl Spool {
    /// The queues and evidence in `[storage]`'s place: how the gateway and the CLI open it.
    pub fn open(storage: &Storage) -> Self {
        Self::at(Place::of(storage))
    }

    /// The queues and evidence in `place`.
    pub fn at(place: Place) -> Self {
        Spool {
            place,
            claim_for: CLAIM_FOR,
        }
    }

    /// The same spool with claims lasting `claim_for` (tests of a node that dies).
    pub fn with_claim_for(mut self, claim_for: Duration) -> Self {
        self.claim_for = claim_for;
        self
    }

    /// Claims the queued items of `kind` for this node and parses them; an item that does not
    /// parse is reported and left queued (for a person to look at), never dropped.
    fn claim<T: serde::de::DeserializeOwned>(
        &self,
        pg: &Pg,
        kind: &str,
    ) -> io::Result<Vec<(QueueKey, T, SystemTime)>> {
        let rows = shared::claim(pg, kind, &self.place.node(), self.claim_for)
            .map_err(io::Error::other)?;
        let mut out = Vec::new();
        for (id, json, queued) in rows {
            match serde_json::from_str::<T>(&json) {
                Ok(item) => out.push((QueueKey::Row(id), item, queued)),
                Err(e) => tracing::error!(kind, row = id, error = %e, "unreadable queued item"),
            }
        }
        Ok(out)
    }

    fn forget(&self, pg: &Pg, keys: &[QueueKey]) -> io::Result<()> {
        let ids: Vec<i64> = keys
            .iter()
            .filter_map(|k| match k {
                QueueKey::Row(id) => Some(*id),
                QueueKey::File(_) => None,
            })
            .collect();
        shared::sent(pg, &ids).map_err(io::Error::other)
    }

    /// The spool under `state_dir` (folders are made on first use).
    pub fn new(state_dir: &Path) -> Self {
        Self::at(Place::Local(state_dir.to_path_buf()))
    }

    fn evidence_dir(&self) -> PathBuf {
        self.place.state_dir().join("evidence")
    }

    fn alerts_dir(&self) -> PathBuf {
        self.place.state_dir().join("alerts")
    }

    /// Keeps `bytes` (a message as delivered) as `evidence/NAME.eml`, readable by schoolgate
    /// only (on a shared store: in the database, so the DSL reads it through either gateway);
    /// returns the path relative to the state directory, as the audit record names it.
    pub fn keep_evidence(&self, name: &str, bytes: &[u8]) -> io::Result<String> {
        let file = format!("{}.eml", safe_name(name));
        if let Some(pg) = self.place.pg() {
            shared::evidence_keep(&pg.map_err(io::Error::other)?, &file, bytes)
                .map_err(io::Error::other)?;
        } else {
            write_durably(&self.evidence_dir(), &file, bytes)?;
        }
        Ok(format!("evidence/{file}"))
    }

    /// The evidence copy `rel` (`evidence/NAME.eml`, as an audit record names it); `None` when
    /// none is kept (never was, past retention, or `rel` is not an evidence name).
    pub fn read_evidence(&self, rel: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(file) = evidence_name(rel) else {
            return Ok(None);
        };
        if let Some(pg) = self.place.pg() {
            return shared::evidence_read(&pg.map_err(io::Error::other)?, file)
                .map_err(io::Error::other);
        }
        match fs::read(self.evidence_dir().join(file)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the evidence copy `rel` is kept.
    pub fn evidence_kept(&self, rel: &str) -> io::Result<bool> {
        let Some(file) = evidence_name(rel) else {
            return Ok(false);
        };
        if let Some(pg) = self.place.pg() {
            return shared::evidence_kept(&pg.map_err(io::Error::other)?, file)
                .map_err(io::Error::other);
        }
        Ok(self.evidence_dir().join(file).is_file())
    }

    /// Queues an alert about one flagged message.
    pub fn queue_alert(&self, item: &Flagged) -> io::Result<()> {
        let json = serde_json::to_vec(item).map_err(io::Error::other)?;
        if let Some(pg) = self.place.pg() {
            let json = String::from_utf8(json).map_err(io::Error::other)?;
            // An alert's sender: its alerts go to one gateway at a time (see `shared::claim`).
            let grouping = item.sender.trim().to_lowercase();
            return shared::enqueue(
                &pg.map_err(io::Error::other)?,
                "alert",
                item.audit_seq,
                &grouping,
                json,
            )
            .map_err(io::Error::other);
        }
        write_durably(
            &self.alerts_dir(),
            &format!("{:020}.json", item.audit_seq),
            &json,
        )
    }

    /// The alerts waiting to be sent, oldest first. A file that does not parse is reported and
    /// left where it is. On a shared database they are claimed for this node for
    /// [`CLAIM_FOR`] (the other node does not see them meanwhile).
    pub fn pending_alerts(&self) -> io::Result<Vec<(QueueKey, Flagged)>> {
        if let Some(pg) = self.place.pg() {
            let claimed = self.claim::<Flagged>(&pg.map_err(io::Error::other)?, "alert")?;
            return Ok(claimed.into_iter().map(|(k, i, _)| (k, i)).collect());
        }
        Ok(pending(&self.alerts_dir(), |i: &Flagged| i.audit_seq)?
            .into_iter()
            .map(|(path, item, _)| (QueueKey::File(path), item))
            .collect())
    }

    /// Forgets alerts that were sent.
    pub fn alerts_sent(&self, keys: &[QueueKey]) -> io::Result<()> {
        if let Some(pg) = self.place.pg() {
            return self.forget(&pg.map_err(io::Error::other)?, keys);
        }
        remove_sent(&self.alerts_dir(), keys)
    }

    /// When any gateway last sent a DSL alert about `sender` (lower case), so the alert window
    /// holds across gateways on a shared store. `None` on one machine: the alert sender keeps
    /// that in its memory.
    pub fn last_alert(&self, sender: &str) -> io::Result<Option<jiff::Timestamp>> {
        let Some(pg) = self.place.pg() else {
            return Ok(None);
        };
        let ms =
            shared::last_alert(&pg.map_err(io::Error::other)?, sender).map_err(io::Error::other)?;
        Ok(ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok()))
    }

    /// Records that an alert about `sender` (lower case) was sent at `at` (a shared store;
    /// nothing on one machine).
    pub fn alert_sent_about(&self, sender: &str, at: jiff::Timestamp) -> io::Result<()> {
        let Some(pg) = self.place.pg() else {
            return Ok(());
        };
        shared::alert_sent_about(&pg.map_err(io::Error::other)?, sender, at.as_millisecond())
            .map_err(io::Error::other)
    }

    fn notices_dir(&self) -> PathBuf {
        self.place.state_dir().join("notices")
    }

    /// Queues a notice to the sender of a held message.
    pub fn queue_notice(&self, notice: &Notice) -> io::Result<()> {
        let json = serde_json::to_vec(notice).map_err(io::Error::other)?;
        if let Some(pg) = self.place.pg() {
            let json = String::from_utf8(json).map_err(io::Error::other)?;
            return shared::enqueue(
                &pg.map_err(io::Error::other)?,
                "notice",
                notice.audit_seq,
                "",
                json,
            )
            .map_err(io::Error::other);
        }
        write_durably(
            &self.notices_dir(),
            &format!("{:020}.json", notice.audit_seq),
            &json,
        )
    }

    /// The notices waiting to be sent, oldest first, each with when it was queued.
    pub fn pending_notices(&self) -> io::Result<Vec<(QueueKey, Notice, SystemTime)>> {
        if let Some(pg) = self.place.pg() {
            return self.claim(&pg.map_err(io::Error::other)?, "notice");
        }
        Ok(pending(&self.notices_dir(), |n: &Notice| n.audit_seq)?
            .into_iter()
            .map(|(path, item, queued)| (QueueKey::File(path), item, queued))
            .collect())
    }

    /// Forgets notices that were sent.
    pub fn notices_sent(&self, keys: &[QueueKey]) -> io::Result<()> {
        if let Some(pg) = self.place.pg() {
            return self.forget(&pg.map_err(io::Error::other)?, keys);
        }
        remove_sent(&self.notices_dir(), keys)
    }

    /// Removes evidence older than `cutoff`; returns how many files went.
    pub fn purge_evidence(&self, cutoff: SystemTime) -> io::Result<usize> {
        if let Some(pg) = self.place.pg() {
            let secs = cutoff
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            return shared::evidence_purge(&pg.map_err(io::Error::other)?, secs)
                .map_err(io::Error::other);
        }
        let dir = self.evidence_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut n = 0;
        for entry in entries {
            let entry = entry?;
            if entry.metadata()?.modified()? < cutoff {
                fs::remove_file(entry.path())?;
                n += 1;
            }
        }
        if n > 0 {
            sync_dir(&dir)?;
        }
        Ok(n)
    }
}

/// One queued alert or notice, to forget once it is sent: its file under `state_dir`, or its
/// row in the shared database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueKey {
    File(PathBuf),
    Row(i64),
}

impl std::fmt::Display for QueueKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueKey::File(path) => write!(f, "{}", path.display()),
            QueueKey::Row(id) => write!(f, "queue row {id}"),
        }
    }
}

/// The JSON items queued in `dir`, in the order `seq` gives, each with when it was queued (its
/// file's time). A file that does not parse is reported and left where it is (for a person to
/// look at), never dropped.
fn pending<T: serde::de::DeserializeOwned>(
    dir: &Path,
    seq: impl Fn(&T) -> u64,
) -> io::Result<Vec<(PathBuf, T, SystemTime)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match fs::read(&path).map(|b| serde_json::from_slice::<T>(&b)) {
            Ok(Ok(item)) => {
                let queued = fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .unwrap_or_else(|_| SystemTime::now());
                out.push((path, item, queued))
            }
            Ok(Err(e)) => {
                tracing::error!(path = %path.display(), error = %e, "unreadable queued item")
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read queued item")
            }
        }
    }
    out.sort_by_key(|(_, i, _)| seq(i));
    Ok(out)
}

fn remove_sent(dir: &Path, keys: &[QueueKey]) -> io::Result<()> {
    for key in keys {
        let QueueKey::File(p) = key else { continue };
        match fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    sync_dir(dir)
}

/// The file name in `evidence/NAME.eml` when it is one schoolgate could have written (no path,
/// nothing hidden).
fn evidence_name(rel: &str) -> Option<&str> {
    let name = rel.strip_prefix("evidence/")?;
    let safe = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
    safe.then_some(name)
}

pub(crate) fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(crate) fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    super::private::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u64) -> Flagged {
        Flagged {
            audit_seq: seq,
            queue_id: format!("Q{seq}"),
            time: "2026-11-23T18:30:00Z".into(),
            sender: "a@x".into(),
            recipients: vec!["b@y".into()],
            subject: None,
            flags: Vec::new(),
            outcome: "delivered".into(),
            evidence: None,
        }
    }

    #[test]
    fn evidence_and_alerts_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::new(dir.path());
        let rel = s.keep_evidence("ABC/../x", b"bytes").unwrap();
        assert_eq!(rel, "evidence/ABC____x.eml");
        assert_eq!(fs::read(dir.path().join(&rel)).unwrap(), b"bytes");
        s.queue_alert(&item(2)).unwrap();
        s.queue_alert(&item(1)).unwrap();
        let pending = s.pending_alerts().unwrap();
        assert_eq!(
            pending.iter().map(|(_, i)| i.audit_seq).collect::<Vec<_>>(),
            vec![1, 2]
        );
        s.alerts_sent(&[pending[0].0.clone()]).unwrap();
        assert_eq!(s.pending_alerts().unwrap().len(), 1);
        assert_eq!(
            s.purge_evidence(SystemTime::now() + std::time::Duration::from_secs(1))
                .unwrap(),
            1
        );
    }
}
