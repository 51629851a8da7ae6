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
use crate::store::sqlite::SqliteBackend;
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
pub fn checkpoint_now(state_dir: &Path) -> Result<Option<ChainHead>, StoreError> {
    let head = SqliteBackend::open(state_dir)?.checkpoint()?;
    if let Some(h) = &head {
        tracing::info!("{}", checkpoint_line(h));
    }
    Ok(head)
}

/// Runs until `stop` turns true: checkpoints and purges.
pub async fn run(relay: Arc<Relay>, state_dir: PathBuf, mut stop: watch::Receiver<bool>) {
    let backend = match SqliteBackend::open(&state_dir) {
        Ok(b) => Arc::new(Mutex::new(b)),
        Err(e) => {
            tracing::error!(error = %e, "audit checkpoints and retention purge are off");
            return;
        }
    };
    let mut last: Option<ChainHead> = None;
    let mut last_purge: Option<tokio::time::Instant> = None;
    loop {
        let config = relay.config();
        if let Some(days) = config.audit.retention_days
            && last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY)
        {
            last_purge = Some(tokio::time::Instant::now());
            let b = Arc::clone(&backend);
            let done = tokio::task::spawn_blocking(move || {
                let mut b = b.lock().map_err(|_| StoreError::WriterGone)?;
                purge_now(&mut *b, days, crate::store::GATEWAY)
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
        let b = Arc::clone(&backend);
        let head = tokio::task::spawn_blocking(move || {
            let mut b = b.lock().map_err(|_| StoreError::WriterGone)?;
            b.checkpoint()
        })
        .await;
        match head {
            Ok(Ok(Some(h))) if last.as_ref() != Some(&h) => {
                let line = checkpoint_line(&h);
                tracing::info!("{line}");
                if config.audit.checkpoint_mail {
                    mail_checkpoint(&relay, &line).await;
                }
                last = Some(h);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "audit checkpoint failed"),
            Err(e) => tracing::error!(error = %e, "audit checkpoint failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(config.audit.checkpoint_interval.0) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Mails the checkpoint to the DSL through the next hop (best effort: the journal has it too).
async fn mail_checkpoint(relay: &Relay, line: &str) {
    let config = relay.config();
    let dsl: Vec<String> = config
        .safeguarding
        .dsl
        .iter()
        .map(|a| a.0.clone())
        .collect();
    if dsl.is_empty() {
        tracing::warn!("[audit] checkpoint_mail is on but [safeguarding] dsl is empty");
        return;
    }
    let now = jiff::Timestamp::now();
    let (count, seq_hash) = line
        .strip_prefix("audit checkpoint: ")
        .and_then(|l| l.split_once(", head "))
        .unwrap_or((line, ""));
    // Short lines, so the checkpoint reads (and copies) as it is, not quoted-printable.
    let body = format!(
        "Audit checkpoint of {}: {count} at {now}.\r\n\r\n{seq_hash}\r\n\r\nKeep this mail: it is a copy of the state of the audit trail\r\noutside the gateway. To check that nothing has since been\r\nchanged or removed, run\r\n\r\n  schoolgate audit verify --checkpoint \\\r\n    {seq_hash}\r\n",
        config.school.name,
    );
    let bytes = match mail_builder::MessageBuilder::new()
        .from(("schoolgate", config.alert_from().as_str()))
        .to(dsl
            .iter()
            .map(|d| mail_builder::headers::address::Address::from(d.as_str()))
            .collect::<Vec<_>>())
        .subject(format!("Audit checkpoint: {}", config.school.name))
        .date(now.as_second())
        .message_id(format!("{}.checkpoint@schoolgate", now.as_millisecond()))
        .header(
            "Auto-Submitted",
            mail_builder::headers::raw::Raw::new("auto-generated"),
        )
        .text_body(body)
        .write_to_vec()
    {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "the checkpoint mail could not be composed");
            return;
        }
    };
    match crate::smtp::alert_sender::send_own_mail(relay, dsl, &bytes).await {
        Ok(reply) => tracing::info!("audit checkpoint mailed to the DSL; next hop: {reply}"),
        Err(e) => tracing::warn!(error = %e, "the audit checkpoint could not be mailed"),
    }
}
