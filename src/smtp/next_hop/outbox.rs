//! The built-in local next hop: a Maildir, so that a school can run the gateway (or try it out)
//! before it points it at its smarthost, and so that every accepted message can be looked at
//! with ordinary mail tools.
//!
//! Layout under `DIR`: the Maildir's `tmp/`, `new/` and `cur/`, plus `envelopes/NAME.json` with
//! the envelope of `new/NAME`, since a Maildir file keeps only the message. The message file
//! holds exactly the bytes the relay handed over: nothing is added, not even a `Return-Path`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::DeliveryError;
use crate::envelope::Envelope;

/// Makes temporary names unique within the process, so that two deliveries of the same key
/// running at once each write their own temporary file.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A Maildir that takes the place of a next hop.
pub struct Outbox {
    dir: PathBuf,
    /// `outbox:DIR`, as errors name it.
    hop: String,
}

/// What `envelopes/NAME.json` holds.
#[derive(Serialize)]
struct EnvelopeRecord<'a> {
    mail_from: &'a str,
    rcpt_to: &'a [String],
    smtputf8: bool,
    body_8bit: bool,
    /// When the outbox stored it, UTC, RFC 3339.
    received: String,
    /// Of the message file, in bytes.
    size: usize,
    /// Of the message file, lower-case hex: lets anyone check the file is what was accepted.
    sha256: String,
    /// The relay's key for the message as received, which the file name is made from.
    key: &'a str,
}

impl Outbox {
    /// Creates the folders if needed, so that a missing or unwritable outbox shows at start-up
    /// rather than when the first message is waiting for its 250.
    pub fn open(dir: &Path) -> Result<Self, DeliveryError> {
        let outbox = Outbox {
            dir: dir.to_path_buf(),
            hop: format!("outbox:{}", dir.display()),
        };
        for sub in ["tmp", "new", "cur", "envelopes"] {
            let path = dir.join(sub);
            create_dir(&path)
                .map_err(|e| outbox.error(format!("cannot create {}: {e}", path.display())))?;
        }
        remove_orphans(&dir.join("tmp"));
        Ok(outbox)
    }

    /// Stores the message and its envelope; `Ok` only once both are on disk for good, as the
    /// client hears 250 on it and forgets the message.
    ///
    /// `key` names the file, which makes a repeated delivery of the same message (a client that
    /// lost our 250 when the gateway crashed, and sent again) find the first copy instead of
    /// storing a second one.
    pub async fn deliver(
        &self,
        envelope: &Envelope,
        message: &[u8],
        key: &str,
    ) -> Result<String, DeliveryError> {
        // The key becomes a file name: anything but plain letters and digits could leave the
        // outbox (`../`) or clash with the Maildir's `:` flags.
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(self.error(format!(
                "refusing message key {key:?}: expected letters and digits only (hex)"
            )));
        }
        let name = format!("{key}.schoolgate");
        let dir = self.dir.clone();
        let envelope = envelope.clone();
        let message = message.to_vec();
        let key = key.to_string();
        let stored =
            tokio::task::spawn_blocking(move || store(&dir, &name, &envelope, &message, &key))
                .await
                .map_err(|e| self.error(format!("the storing task failed: {e}")))?;
        stored.map_err(|detail| self.error(detail))
    }

    fn error(&self, detail: String) -> DeliveryError {
        DeliveryError::Local {
            hop: self.hop.clone(),
            detail,
        }
    }
}

/// The blocking half of [`Outbox::deliver`]; `Err` is the detail for `DeliveryError::Local`.
fn store(
    dir: &Path,
    name: &str,
    envelope: &Envelope,
    message: &[u8],
    key: &str,
) -> Result<String, String> {
    if already_stored(dir, name)? {
        return Ok(format!("250 2.0.0 already stored in outbox as {name}"));
    }

    let record = EnvelopeRecord {
        mail_from: &envelope.mail_from,
        rcpt_to: &envelope.rcpt_to,
        smtputf8: envelope.smtputf8,
        body_8bit: envelope.body_8bit,
        received: now_rfc3339(),
        size: message.len(),
        sha256: hex::encode(Sha256::digest(message)),
        key,
    };
    let mut json = serde_json::to_vec_pretty(&record)
        .map_err(|e| format!("cannot write the envelope of {name} as JSON: {e}"))?;
    json.push(b'\n');

    let unique = format!(
        "{}.{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = dir.join("tmp");
    let envelopes = dir.join("envelopes");
    let new = dir.join("new");

    // The envelope goes first and is durable before the message shows in new/: whoever picks
    // up new/NAME must find its envelope beside it, even after a crash in between. The price
    // is that a failure between the two leaves an envelope without a message, which is
    // harmless: the client is told to try again, and its retry rewrites the same envelope.
    put_durably(
        &json,
        &tmp.join(format!("{name}.{unique}.envelope.json")),
        &envelopes.join(format!("{name}.json")),
    )?;
    put_durably(
        message,
        &tmp.join(format!("{name}.{unique}")),
        &new.join(name),
    )?;
    Ok(format!("250 2.0.0 stored in outbox as {name}"))
}

/// Whether the message is in `new/`, or in `cur/` (with or without the Maildir flags a mail
/// program adds when it reads it).
fn already_stored(dir: &Path, name: &str) -> Result<bool, String> {
    let in_new = dir.join("new").join(name);
    if in_new
        .try_exists()
        .map_err(|e| format!("cannot look for {}: {e}", in_new.display()))?
    {
        return Ok(true);
    }
    let cur = dir.join("cur");
    let flagged = format!("{name}:");
    let entries = fs::read_dir(&cur).map_err(|e| format!("cannot read {}: {e}", cur.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", cur.display()))?;
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if file_name == name || file_name.starts_with(&flagged) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Writes `bytes` to the temporary path, makes it durable, renames it to `dest` and makes the
/// rename durable. The rename is atomic, so `dest` is either absent or complete, never half
/// written; of two racing writers of the same `dest`, one complete copy remains.
fn put_durably(bytes: &[u8], temp: &Path, dest: &Path) -> Result<(), String> {
    let guard = TempFile(temp);
    let mut file = new_file(temp).map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
    file.write_all(bytes)
        .map_err(|e| format!("cannot write {}: {e}", temp.display()))?;
    file.sync_all()
        .map_err(|e| format!("cannot flush {} to disk: {e}", temp.display()))?;
    drop(file);
    fs::rename(temp, dest)
        .map_err(|e| format!("cannot move {} to {}: {e}", temp.display(), dest.display()))?;
    std::mem::forget(guard);
    if let Some(parent) = dest.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// A rename is only durable once the directory holding the new name is flushed.
fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot flush directory {} to disk: {e}", dir.display()))
}

/// Removes the temporary files of writers that died mid-write (a gateway killed, the power
/// lost): nothing else cleans them up, and they are only ever half of a message the client
/// was never told was taken. A file of a process still running (another gateway process or
/// a `quarantine release` on this outbox) is left alone: the process id is in its name. Best
/// effort; what cannot be removed is logged and left.
fn remove_orphans(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    let mut removed = 0usize;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = writer_of(&name.to_string_lossy()) else {
            continue;
        };
        if pid == std::process::id() || writer_alive(pid) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(file = %entry.path().display(), error = %e,
                "a half-written outbox file could not be removed"),
        }
    }
    if removed > 0 {
        tracing::info!(removed, outbox = %tmp.display(),
            "removed half-written outbox files left by a gateway that stopped mid-write");
    }
}

/// The process id in a temporary file's name (`KEY.schoolgate.PID.N`, with `.envelope.json`
/// after it for the envelope), if it is one of ours.
fn writer_of(name: &str) -> Option<u32> {
    let (_, rest) = name.split_once(".schoolgate.")?;
    rest.split('.').next()?.parse().ok()
}

/// Whether process `pid` exists (signal 0: "permission denied" means it does, as another
/// user's).
fn writer_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Removes a temporary file that was not renamed into place, so failures leave no litter.
struct TempFile<'a>(&'a Path);

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0);
    }
}

/// Mail for and about pupils: readable by the owner and its group (a pick-up job), no one else.
fn new_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o640);
    }
    options.open(path)
}

fn create_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o750);
    }
    builder.create(path)?;
    // create_dir_all succeeds on an existing directory but also says nothing about a file
    // standing where the directory should be until the first message fails.
    if fs::metadata(path)?.is_dir() {
        Ok(())
    } else {
        Err(io::Error::other("not a directory"))
    }
}

fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    now.round(jiff::Unit::Microsecond)
        .unwrap_or(now)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            mail_from: "head@school.test".into(),
            rcpt_to: vec!["parent@example.test".into(), "governor@example.test".into()],
            smtputf8: false,
            body_8bit: true,
        }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn open_removes_the_half_written_files_of_a_writer_that_died() {
        let root = tempfile::tempdir().unwrap();
        let tmp = root.path().join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        // A process that has exited: its files are orphans.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        let dead = child.id();
        let mine = std::process::id();
        let orphan = format!("{KEY}.schoolgate.{dead}.0");
        let orphan_envelope = format!("{KEY}.schoolgate.{dead}.1.envelope.json");
        let live = format!("{KEY}.schoolgate.{mine}.7");
        let not_ours = "someone-elses-file".to_string();
        for name in [&orphan, &orphan_envelope, &live, &not_ours] {
            fs::write(tmp.join(name), b"half").unwrap();
        }
        Outbox::open(root.path()).unwrap();
        assert_eq!(files(&tmp), {
            let mut keep = vec![live, not_ours];
            keep.sort();
            keep
        });
        assert_eq!(writer_of(&orphan), Some(dead));
        assert_eq!(writer_of(&orphan_envelope), Some(dead));
        assert_eq!(writer_of("x.schoolgate.notapid.1"), None);
    }

    #[test]
    fn open_creates_the_maildir() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("var/outbox");
        Outbox::open(&dir).unwrap();
        for sub in ["tmp", "new", "cur", "envelopes"] {
            assert!(dir.join(sub).is_dir(), "{sub}");
        }
        // Opening again is fine.
        Outbox::open(&dir).unwrap();
    }

    #[tokio::test]
    async fn stores_the_bytes_unchanged_and_the_envelope_beside_them() {
        let root = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(root.path()).unwrap();
        let message: &[u8] = b".dot first\r\nSubject: caf\xc3\xa9\r\n\r\n..\r\nno final CRLF";
        let reply = outbox.deliver(&envelope(), message, KEY).await.unwrap();
        let name = format!("{KEY}.schoolgate");
        assert_eq!(reply, format!("250 2.0.0 stored in outbox as {name}"));
        assert_eq!(
            fs::read(root.path().join("new").join(&name)).unwrap(),
            message
        );
        assert!(files(&root.path().join("tmp")).is_empty());

        let json = fs::read(root.path().join("envelopes").join(format!("{name}.json"))).unwrap();
        let record: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(record["mail_from"], "head@school.test");
        assert_eq!(
            record["rcpt_to"],
            serde_json::json!(["parent@example.test", "governor@example.test"])
        );
        assert_eq!(record["size"], message.len());
        assert_eq!(record["sha256"], hex::encode(Sha256::digest(message)));
        assert_eq!(record["key"], KEY);
        assert_eq!(record["body_8bit"], true);
        let received = record["received"].as_str().unwrap();
        assert!(received.ends_with('Z'), "{received}");
        received.parse::<jiff::Timestamp>().unwrap();
    }

    #[tokio::test]
    async fn the_same_key_twice_is_stored_once() {
        let root = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(root.path()).unwrap();
        outbox.deliver(&envelope(), b"once\r\n", KEY).await.unwrap();
        let again = outbox.deliver(&envelope(), b"once\r\n", KEY).await.unwrap();
        assert!(again.contains("already stored"), "{again}");
        assert_eq!(files(&root.path().join("new")).len(), 1);
        assert_eq!(files(&root.path().join("envelopes")).len(), 1);

        // Also once a mail program has moved it to cur/ and flagged it as read.
        let name = format!("{KEY}.schoolgate");
        fs::rename(
            root.path().join("new").join(&name),
            root.path().join("cur").join(format!("{name}:2,S")),
        )
        .unwrap();
        let again = outbox.deliver(&envelope(), b"once\r\n", KEY).await.unwrap();
        assert!(again.contains("already stored"), "{again}");
        assert!(files(&root.path().join("new")).is_empty());
    }

    #[tokio::test]
    async fn concurrent_deliveries_of_one_key_leave_one_file() {
        let root = tempfile::tempdir().unwrap();
        let outbox = std::sync::Arc::new(Outbox::open(root.path()).unwrap());
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let outbox = std::sync::Arc::clone(&outbox);
            tasks.push(tokio::spawn(async move {
                outbox.deliver(&envelope(), b"racing\r\n", KEY).await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let name = format!("{KEY}.schoolgate");
        assert_eq!(files(&root.path().join("new")), [name.as_str()]);
        assert_eq!(
            fs::read(root.path().join("new").join(&name)).unwrap(),
            b"racing\r\n"
        );
        assert_eq!(
            files(&root.path().join("envelopes")),
            [format!("{name}.json")]
        );
        assert!(files(&root.path().join("tmp")).is_empty());
    }

    #[tokio::test]
    async fn different_keys_are_different_files() {
        let root = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(root.path()).unwrap();
        outbox
            .deliver(&envelope(), b"one\r\n", "aa11")
            .await
            .unwrap();
        outbox
            .deliver(&envelope(), b"two\r\n", "bb22")
            .await
            .unwrap();
        assert_eq!(
            files(&root.path().join("new")),
            ["aa11.schoolgate", "bb22.schoolgate"]
        );
        assert_eq!(files(&root.path().join("envelopes")).len(), 2);
    }

    #[tokio::test]
    async fn keys_that_are_not_plain_hex_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(root.path()).unwrap();
        for key in ["", "../../etc/x", "ab:2,S", "a/b"] {
            let err = outbox
                .deliver(&envelope(), b"x\r\n", key)
                .await
                .unwrap_err();
            assert!(matches!(err, DeliveryError::Local { .. }), "{err:?}");
        }
        assert!(files(&root.path().join("new")).is_empty());
    }

    /// Whether chmod keeps us out of a directory (it does not for root).
    fn permissions_bite(dir: &Path) -> bool {
        let probe = dir.join("probe");
        let bites = File::create(&probe).is_err();
        let _ = fs::remove_file(&probe);
        bites
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn an_unwritable_outbox_is_a_local_error() {
        use std::os::unix::fs::PermissionsExt;

        let root = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(root.path()).unwrap();
        let new = root.path().join("new");
        fs::set_permissions(&new, fs::Permissions::from_mode(0o500)).unwrap();
        let chmod_bites = permissions_bite(&new);
        if !chmod_bites {
            // Running as root: put a regular file where new/ should be instead.
            fs::set_permissions(&new, fs::Permissions::from_mode(0o750)).unwrap();
            fs::remove_dir(&new).unwrap();
            fs::write(&new, b"not a directory").unwrap();
        }
        let err = outbox
            .deliver(&envelope(), b"x\r\n", KEY)
            .await
            .unwrap_err();
        if chmod_bites {
            fs::set_permissions(&new, fs::Permissions::from_mode(0o750)).unwrap();
        }
        let DeliveryError::Local { hop, detail } = err else {
            panic!("expected Local, got {err:?}");
        };
        assert_eq!(hop, format!("outbox:{}", root.path().display()));
        assert!(detail.contains(&new.display().to_string()), "{detail}");
        assert!(
            files(&root.path().join("tmp")).is_empty(),
            "temporary files left behind"
        );
    }

    #[test]
    fn open_names_the_directory_it_cannot_create() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("tmp"), b"a file, not a directory").unwrap();
        let err = Outbox::open(root.path()).err().expect("tmp/ is a file");
        let DeliveryError::Local { detail, .. } = err else {
            panic!("expected Local, got {err:?}");
        };
        assert!(
            detail.contains(&root.path().join("tmp").display().to_string()),
            "{detail}"
        );
    }
}
