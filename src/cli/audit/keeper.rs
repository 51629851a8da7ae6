//! What `serve` does for the audit trail in the background: a checkpoint of the head every
//! `[audit] checkpoint_interval` (to the journal and, with `checkpoint_mail`, to the DSL), and
//! the retention purge once a day when `[audit] retention_days` is set.
//!
//! A checkpoint is the head's sequence number and hash. Kept in the database it lets `verify`
//! notice a tail cut off the trail; copied to the journal and the DSL's mailbox it survives
//! someone who rewrites the whole database, and `verify --checkpoint SEQ:HASH` checks it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::smtp::server::Relay;
use crate::store::{Backend, ChainHead, StoreError};

/// How often the retention purge runs.
const PURGE_EVERY: Duration = Duration::from_secs(24 * 3600);

/// The line a checkpoint is logged (and mailed) as; `verify --checkpoint` takes its `SEQ:HASH`.
pub fn checkpoint_line(head: &ChainHead) -> String {
    format!(
        "audit checkpoint: {} records, head {}:{}",
        head.seq, head.seq, head.hash
    )
}

/// Purges records older than `days` through `backend`; returns what was done, in words.
pub fn purge_now(
    backend: &mut dyn Backend,
    days: u32,
    actor: &str,
) -> Result<Option<String>, StoreError> {
    let before = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(i64::from(days) * 24);
    let before = before
        .round(jiff::Unit::Second)
        .unwrap_or(before)
        .to_string();
    let Some(entry) = backend.purge(&before, days, actor)? else {
        return Ok(None);
    };
    let purge = entry.record()?.purge.unwrap_or_default();
    Ok(Some(format!(
        "audit retention purge: records {} to {} ({} records, {} to {}) older than {days} days removed; purge record {} keeps the hash of record {}",
        purge.first_seq,
        purge.last_seq,
        purge.records,
        purge.oldest,
        purge.newest,
        entry.seq,
        purge.last_seq
    )))
}

/// Records a checkpoint at once (at start and after the stop record) and logs it.
pub fn checkpoint_now(storage: &crate::config::Storage) -> Result<Option<ChainHead>, StoreError> {
    let head = crate::store::open_audit(storage)?.checkpoint()?;
    if let Some(h) = &head {
        tracing::info!("{}", checkpoint_line(h));
    }
    Ok(head)
}

/// The checkpoint mail waiting to be sent, and its retries.
struct MailDue {
    head: ChainHead,
    /// When it was first tried.
    since: jiff::Timestamp,
    failures: u32,
    next: tokio::time::Instant,
}

/// Where the time of the last checkpoint mail is kept, so a restart does not reset the interval.
fn mailed_path(state_dir: &Path) -> PathBuf {
    state_dir.join("checkpoint-mail-sent")
}

/// When the last checkpoint mail went; at the first start, now (the first mail goes one
/// interval later).
fn last_mailed(state_dir: &Path) -> jiff::Timestamp {
    let path = mailed_path(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse() {
            Ok(t) => return t,
            Err(e) => tracing::warn!(path = %path.display(), error = %e,
                "unreadable time of the last checkpoint mail; counting from now"),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e,
            "unreadable time of the last checkpoint mail; counting from now"),
    }
    let now = jiff::Timestamp::now();
    mark_mailed(state_dir, now);
    now
}

fn mark_mailed(state_dir: &Path, when: jiff::Timestamp) {
    let path = mailed_path(state_dir);
    if let Err(e) = crate::store::private::write_file(&path, format!("{when}\n").as_bytes()) {
        tracing::warn!(path = %path.display(), error = %e,
            "the time of the checkpoint mail could not be kept; a restart mails again sooner");
    }
}

/// Runs until `stop` turns true: checkpoints (logged every `checkpoint_interval`, mailed every
/// `checkpoint_mail_interval`, retried with a backoff when the next hop does not take the mail)
/// and purges.
pub async fn run(
    relay: Arc<Relay>,
    storage: crate::config::Storage,
    mut stop: watch::Receiver<bool>,
) {
    let state_dir = storage.state_dir.clone();
    let backend = match crate::store::open_audit(&storage) {
        Ok(b) => Arc::new(Mutex::new(b)),
        Err(e) => {
            tracing::error!(error = %e, "audit checkpoints and retention purge are off");
            return;
        }
    };
    let mut last: Option<ChainHead> = None;
    let mut last_purge: Option<tokio::time::Instant> = None;
    let mut next_log = tokio::time::Instant::now();
    let mut mailed_at = last_mailed(&state_dir);
    let mut mailed: Option<ChainHead> = None;
    let mut due: Option<MailDue> = None;
    loop {
        let config = relay.config();
        if let Some(days) = config.audit.retention_days
            && last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY)
        {
            last_purge = Some(tokio::time::Instant::now());
            let b = Arc::clone(&backend);
            let done = tokio::task::spawn_blocking(move || {
                let mut b = b.lock().map_err(|_| StoreError::WriterGone)?;
                purge_now(&mut **b, days, crate::store::GATEWAY)
            })
            .await;
            match done {
                Ok(Ok(Some(line))) => tracing::info!("{line}"),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "audit retention purge failed; will retry tomorrow")
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit retention purge failed; will retry tomorrow")
                }
            }
        }
        let mail_interval = jiff::SignedDuration::try_from(config.audit.checkpoint_mail_interval.0)
            .unwrap_or(jiff::SignedDuration::MAX);
        let mail_time = config.audit.checkpoint_mail
            && due.is_none()
            && jiff::Timestamp::now().duration_since(mailed_at) >= mail_interval;
        if tokio::time::Instant::now() >= next_log || mail_time {
            let b = Arc::clone(&backend);
            let head = tokio::task::spawn_blocking(move || {
                let mut b = b.lock().map_err(|_| StoreError::WriterGone)?;
                b.checkpoint()
            })
            .await;
            match head {
                Ok(Ok(Some(h))) => {
                    if last.as_ref() != Some(&h) {
                        tracing::info!("{}", checkpoint_line(&h));
                        last = Some(h.clone());
                    }
                    if mail_time && mailed.as_ref() != Some(&h) {
                        due = Some(MailDue {
                            head: h,
                            since: jiff::Timestamp::now(),
                            failures: 0,
                            next: tokio::time::Instant::now(),
                        });
                    }
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "audit checkpoint failed"),
                Err(e) => tracing::error!(error = %e, "audit checkpoint failed"),
            }
            if tokio::time::Instant::now() >= next_log {
                next_log = tokio::time::Instant::now() + config.audit.checkpoint_interval.0;
            }
        }
        if let Some(d) = &mut due
            && tokio::time::Instant::now() >= d.next
        {
            match mail_checkpoint(&relay, &d.head).await {
                MailOutcome::Done => {
                    mailed = Some(d.head.clone());
                    mailed_at = jiff::Timestamp::now();
                    mark_mailed(&state_dir, mailed_at);
                    due = None;
                }
                MailOutcome::Later(why) => {
                    let age = jiff::Timestamp::now()
                        .duration_since(d.since)
                        .unsigned_abs();
                    if age >= crate::alerts::GIVE_UP_AFTER {
                        give_up(
                            &relay,
                            &d.head,
                            &format!("not taken for two days; last: {why}"),
                        )
                        .await;
                        mailed_at = jiff::Timestamp::now();
                        mark_mailed(&state_dir, mailed_at);
                        due = None;
                    } else {
                        d.failures += 1;
                        let wait = crate::alerts::retry_after(d.failures);
                        d.next = tokio::time::Instant::now() + wait;
                        tracing::warn!(error = %why,
                            "the audit checkpoint mail was not sent; trying again in {} s", wait.as_secs());
                    }
                }
                MailOutcome::Refused(why) => {
                    give_up(&relay, &d.head, &why).await;
                    mailed_at = jiff::Timestamp::now();
                    mark_mailed(&state_dir, mailed_at);
                    due = None;
                }
            }
        }
        // Wake for the next log checkpoint, the next retry, or the next mail.
        let mut wake = next_log;
        if let Some(d) = &due {
            wake = wake.min(d.next);
        } else if config.audit.checkpoint_mail {
            let left = mail_interval - jiff::Timestamp::now().duration_since(mailed_at);
            let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
            wake = wake.min(tokio::time::Instant::now() + left.max(Duration::from_millis(200)));
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

enum MailOutcome {
    Done,
    Later(String),
    Refused(String),
}

/// Records that a checkpoint mail was given up.
async fn give_up(relay: &Relay, head: &ChainHead, why: &str) {
    let to: Vec<String> = relay
        .config()
        .safeguarding
        .dsl
        .iter()
        .map(|a| a.0.clone())
        .collect();
    let detail = crate::alerts::undelivered_detail("checkpoint", &[head.seq], &to, why);
    tracing::error!("{detail}");
    let record = crate::store::AuditRecord::action(
        crate::store::RecordKind::Action,
        crate::store::GATEWAY,
        detail,
    );
    if let Err(e) = relay.audit.append(record).await {
        tracing::error!(error = %e, "the undelivered checkpoint mail could not be recorded");
    }
}

/// The checkpoint mail to the DSLs, as RFC 5322 bytes.
pub fn compose_checkpoint(
    head: &ChainHead,
    school: &str,
    from: &str,
    to: &[String],
    now: jiff::Timestamp,
) -> std::io::Result<Vec<u8>> {
    let school = crate::alerts::one_line(school);
    let seq_hash = format!("{}:{}", head.seq, crate::alerts::one_line(&head.hash));
    // Short lines, so the checkpoint reads (and copies) as it is, not quoted-printable.
    let body = format!(
        "Audit checkpoint of {school}: {} records at {now}.\r\n\r\n{seq_hash}\r\n\r\nKeep this mail: it is a copy of the state of the audit trail\r\noutside the gateway. To check that nothing has since been\r\nchanged or removed, run\r\n\r\n  schoolgate audit verify --checkpoint \\\r\n    {seq_hash}\r\n",
        head.seq,
    );
    mail_builder::MessageBuilder::new()
        .from(("schoolgate", from))
        .to(to
            .iter()
            .map(|d| mail_builder::headers::address::Address::from(crate::alerts::one_line(d)))
            .collect::<Vec<_>>())
        .subject(format!("Audit checkpoint: {school}"))
        .date(now.as_second())
        .message_id(format!("{}.checkpoint@schoolgate", now.as_millisecond()))
        .header(
            "Auto-Submitted",
            mail_builder::headers::raw::Raw::new("auto-generated"),
        )
        .text_body(body)
        .write_to_vec()
}

/// Mails the checkpoint to the DSL through the next hop.
async fn mail_checkpoint(relay: &Relay, head: &ChainHead) -> MailOutcome {
    let config = relay.config();
    let dsl: Vec<String> = config
        .safeguarding
        .dsl
        .iter()
        .map(|a| a.0.clone())
        .collect();
    if dsl.is_empty() {
        tracing::warn!("[audit] checkpoint_mail is on but [safeguarding] dsl is empty");
        return MailOutcome::Done;
    }
    let now = jiff::Timestamp::now();
    let bytes = match compose_checkpoint(head, &config.school.name, &config.alert_from(), &dsl, now)
    {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "the checkpoint mail could not be composed");
            return MailOutcome::Done;
        }
    };
    use crate::smtp::alert_sender::NotSent;
    match crate::smtp::alert_sender::send_own_mail(relay, dsl, &bytes).await {
        Ok(reply) => {
            tracing::info!("audit checkpoint mailed to the DSL; next hop: {reply}");
            MailOutcome::Done
        }
        Err(NotSent::Later(why)) => MailOutcome::Later(why),
        Err(NotSent::Refused(why)) => MailOutcome::Refused(format!("refused: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_mail_carries_seq_hash_and_nothing_a_school_name_adds() {
        let head = ChainHead {
            seq: 42,
            hash: "ab".repeat(32),
        };
        let now = "2026-11-23T18:31:00Z".parse().unwrap();
        let bytes = compose_checkpoint(
            &head,
            "X\r\nBcc: a@evil.example",
            "schoolgate@x.sch.uk",
            &["dsl@x.sch.uk".into()],
            now,
        )
        .unwrap();
        let msg = mail_parser::MessageParser::new().parse(&bytes).unwrap();
        let names: Vec<String> = msg
            .headers()
            .iter()
            .map(|h| h.name().to_ascii_lowercase())
            .collect();
        assert!(!names.iter().any(|n| n == "bcc"), "{names:?}");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains(&format!("\r\n\r\n42:{}\r\n", head.hash)),
            "{text}"
        );
    }

    #[test]
    fn the_time_of_the_last_checkpoint_mail_survives_a_restart() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        // The first start counts from now: the first mail goes one interval later.
        let first = last_mailed(dir.path());
        assert!(jiff::Timestamp::now().duration_since(first) < jiff::SignedDuration::from_secs(5));
        let then: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        mark_mailed(dir.path(), then);
        assert_eq!(last_mailed(dir.path()), then);
    }
}
