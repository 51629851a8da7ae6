//! `schoolgate quarantine …`: the network manager's review of held messages.
//!
//! Every action (show, release, delete, export) is audited with the acting user (`--as NAME`,
//! default the OS user). Audit records go through an [`AuditLog`] over its own SQLite
//! connection, which chains inside the write transaction, so this can run while the gateway does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::Config;
use crate::envelope::Envelope;
use crate::store::quarantine::{Held, Quarantine};
use crate::store::sqlite::SqliteBackend;
use crate::store::{ActionRecord, AuditLog, AuditRecord, RecordKind};

#[derive(Debug, Args)]
pub struct QuarantineArgs {
    /// Who is acting, for the audit trail (default: the OS user).
    #[arg(long = "as", value_name = "NAME", global = true)]
    pub actor: Option<String>,
    #[command(subcommand)]
    pub command: QuarantineCommand,
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// The messages held for review.
    List {
        /// One JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// One held message: envelope, reasons and headers.
    Show { id: String },
    /// Deliver a held message to the next hop, exactly as it would have gone.
    Release { id: String },
    /// Delete a held message.
    Delete {
        id: String,
        /// Why (kept in the audit trail).
        #[arg(long, required = true)]
        reason: String,
    },
    /// Write a held message to a file.
    Export {
        id: String,
        #[arg(long, value_name = "FILE.eml")]
        out: PathBuf,
    },
}

/// The OS user: `$USER`, else `$LOGNAME`, else "unknown".
pub(crate) fn os_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "unknown".into())
}

pub fn run(config_path: &Path, args: QuarantineArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let actor = args
        .actor
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(os_user);
    let q = Quarantine::new(&config.storage.state_dir);
    match args.command {
        QuarantineCommand::List { json } => list(&q, json),
        QuarantineCommand::Show { id } => show(&config, &q, &id, &actor),
        QuarantineCommand::Release { id } => release(&config, &q, &id, &actor),
        QuarantineCommand::Delete { id, reason } => delete(&config, &q, &id, &actor, &reason),
        QuarantineCommand::Export { id, out } => export(&config, &q, &id, &actor, &out),
    }
}

fn ensure_state_dir(config: &Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.storage.state_dir).with_context(|| {
        format!(
            "{}: storage.state_dir: cannot create {}",
            config.source.display(),
            config.storage.state_dir.display()
        )
    })
}

/// The entry `id`, which must exist.
fn find(q: &Quarantine, id: &str) -> anyhow::Result<Held> {
    q.get(id)?.ok_or_else(|| {
        anyhow::anyhow!("no quarantined message {id}; see schoolgate quarantine list")
    })
}

/// The entry `id`, which must still be held.
fn find_held(q: &Quarantine, id: &str) -> anyhow::Result<Held> {
    let h = find(q, id)?;
    if h.state != "held" {
        anyhow::bail!(
            "quarantined message {id} was already {} by {} at {}; nothing done",
            h.state,
            h.acted_by.as_deref().unwrap_or("?"),
            h.acted_at.as_deref().unwrap_or("?")
        );
    }
    Ok(h)
}

fn audit(config: &Config, actor: &str, detail: String) -> anyhow::Result<()> {
    let log = AuditLog::start(Box::new(SqliteBackend::open(&config.storage.state_dir)?))?;
    log.append_blocking(AuditRecord::action(
        RecordKind::Action,
        ActionRecord {
            actor: actor.into(),
            detail,
        },
    ))
    .context("the audit record could not be written")?;
    Ok(())
}

fn reasons(h: &Held) -> String {
    match h.reason.as_array() {
        Some(items) if !items.is_empty() => items
            .iter()
            .map(|i| {
                let rule = i["rule"].as_str().unwrap_or("?");
                match i["detail"].as_str() {
                    Some(d) if !d.is_empty() => format!("{rule} ({d})"),
                    _ => rule.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => "-".into(),
    }
}

fn list(q: &Quarantine, json: bool) -> anyhow::Result<ExitCode> {
    let held = q.list("held")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&held)?);
        return Ok(ExitCode::SUCCESS);
    }
    if held.is_empty() {
        println!("no messages held");
    }
    for h in &held {
        println!(
            "{}  {}  from {}  to {}  subject {:?}  reasons: {}",
            h.id,
            h.time,
            h.mail_from,
            h.rcpt_to.join(", "),
            h.subject.as_deref().unwrap_or(""),
            reasons(h)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(config: &Config, q: &Quarantine, id: &str, actor: &str) -> anyhow::Result<ExitCode> {
    let h = find(q, id)?;
    println!("id:       {}", h.id);
    println!("state:    {}", h.state);
    println!("held at:  {}", h.time);
    println!("from:     {}", h.mail_from);
    println!("to:       {}", h.rcpt_to.join(", "));
    println!("subject:  {}", h.subject.as_deref().unwrap_or(""));
    println!("size:     {} octets, sha256 {}", h.size, h.sha256);
    println!("reasons:  {}", reasons(&h));
    if let Some(by) = &h.acted_by {
        println!(
            "{}:  by {by} at {}{}",
            h.state,
            h.acted_at.as_deref().unwrap_or("?"),
            h.action_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    if let Ok(bytes) = q.read(id) {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .or_else(|| bytes.windows(2).position(|w| w == b"\n\n"))
            .unwrap_or(bytes.len());
        println!("\n{}", String::from_utf8_lossy(&bytes[..end]).trim_end());
    }
    audit(config, actor, format!("quarantine show {id} by {actor}"))?;
    Ok(ExitCode::SUCCESS)
}

fn release(config: &Config, q: &Quarantine, id: &str, actor: &str) -> anyhow::Result<ExitCode> {
    ensure_state_dir(config)?;
    let h = find_held(q, id)?;
    let bytes = q
        .read(id)
        .with_context(|| format!("cannot read {}", q.path(id).display()))?;
    if crate::store::audit::sha256_hex(&bytes) != h.sha256 {
        anyhow::bail!(
            "{} does not match its recorded SHA-256; not released",
            q.path(id).display()
        );
    }
    let envelope = Envelope {
        mail_from: h.mail_from.clone(),
        rcpt_to: h.rcpt_to.clone(),
        smtputf8: h.smtputf8,
        body_8bit: h.body_8bit,
    };
    // Claimed before delivery: of two people releasing at once, one delivers and the other is
    // told; a failed delivery puts the message back.
    if !q.mark(id, "releasing", actor, None)? {
        anyhow::bail!(
            "quarantined message {id} is being released or was acted on by someone else meanwhile"
        );
    }
    let delivered = deliver_held(config, id, &envelope, &bytes, &h.sha256);
    let (reply, hop) = match delivered {
        Ok(r) => r,
        Err(e) => {
            if let Err(undo) = q.unmark(id) {
                tracing::error!(error = %undo, "{id} could not be put back to held");
            }
            return Err(e);
        }
    };
    if !q.advance(id, "releasing", "released", actor)? {
        anyhow::bail!("quarantined message {id} changed state while it was being released");
    }
    audit(
        config,
        actor,
        format!(
            "quarantine release {id} by {actor}: {} to {}; next hop {hop}: {reply}",
            h.mail_from,
            h.rcpt_to.join(", "),
        ),
    )?;
    println!("released {id} to {hop}: {reply}");
    Ok(ExitCode::SUCCESS)
}

/// Hands the held bytes to the next hop; returns its reply and the hop's description.
fn deliver_held(
    config: &Config,
    id: &str,
    envelope: &Envelope,
    bytes: &[u8],
    sha256: &str,
) -> anyhow::Result<(String, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let hop = super::serve::next_hop_for(config)?;
    let timeout = config.relay.next_hop_timeout.0;
    // The key is the held bytes' hash: the outbox stores a repeated release once.
    let reply = runtime
        .block_on(async {
            tokio::time::timeout(timeout, hop.deliver(envelope, bytes, sha256)).await
        })
        .map_err(|_| {
            anyhow::anyhow!(
                "next hop {} did not answer within {} s; {id} is still held",
                hop.describe(),
                timeout.as_secs()
            )
        })?
        .map_err(|e| anyhow::anyhow!("{e}; {id} is still held"))?;
    Ok((reply, hop.describe()))
}

fn delete(
    config: &Config,
    q: &Quarantine,
    id: &str,
    actor: &str,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    if reason.trim().is_empty() {
        anyhow::bail!("quarantine delete needs --reason TEXT (kept in the audit trail)");
    }
    find_held(q, id)?;
    if !q.mark(id, "deleted", actor, Some(reason))? {
        anyhow::bail!("quarantined message {id} was released or deleted by someone else meanwhile");
    }
    if let Err(e) = audit(
        config,
        actor,
        format!("quarantine delete {id} by {actor}: {reason}"),
    ) {
        // Not recorded, so not done.
        let _ = q.unmark(id);
        return Err(e.context(format!("{id} is still held")));
    }
    q.remove_file(id)
        .with_context(|| format!("{id} is marked deleted but its file could not be removed"))?;
    println!("deleted {id}");
    Ok(ExitCode::SUCCESS)
}

fn export(
    config: &Config,
    q: &Quarantine,
    id: &str,
    actor: &str,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    find(q, id)?;
    let bytes = q.read(id).with_context(|| {
        format!(
            "the bytes of {id} are no longer kept ({})",
            q.path(id).display()
        )
    })?;
    std::fs::write(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
    audit(
        config,
        actor,
        format!("quarantine export {id} by {actor} to {}", out.display()),
    )?;
    println!("exported {id} to {}", out.display());
    Ok(ExitCode::SUCCESS)
}
