//! `schoolgate quarantine …`: the review of held messages.
//!
//! Every action (show, release, delete, export) is audited with the acting account: `--as NAME`
//! must name an existing account holding the role the action needs ([`crate::policy::holds`]):
//! a message held by a safeguarding rule is the DSL's (a `dsl` account reads, exports, releases
//! with `--reason`, deletes), the others the network manager's. Every release and delete gives a
//! `--reason` (up to 1,000 characters). `list` needs no `--as` and then
//! shows what a network manager sees: a safeguarding hold only as a line saying it exists.
//! Audit records go through an [`AuditLog`] over its own SQLite connection, which chains inside
//! the write transaction, so this can run while the gateway does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::Config;
use crate::display;
use crate::policy::holds::{self, Act, Hold};
use crate::review::quarantine::{self as review, ReviewError, Reviewer};
use crate::store::AuditLog;
use crate::store::quarantine::{Held, Quarantine};
use crate::store::users::{Account, Role};

#[derive(Debug, Args)]
pub struct QuarantineArgs {
    /// The account acting, for the audit trail: an existing account (schoolgate user list)
    /// with the role the action needs. Required except for list.
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
    Release {
        id: String,
        /// Why (kept in the audit trail; up to 1,000 characters); required.
        #[arg(long)]
        reason: Option<String>,
        /// Release it as its sender's override (what the link in the sender notice does),
        /// with the sender's one-line reason: only for a message held by exposed-recipients,
        /// wrong-recipient or password-in-message. Needs no --as.
        #[arg(long, value_name = "TEXT", conflicts_with = "reason")]
        justification: Option<String>,
    },
    /// Delete a held message.
    Delete {
        id: String,
        /// Why (kept in the audit trail; up to 1,000 characters).
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
    let q = Quarantine::open(&config.storage);
    let named = args.actor.as_deref();
    // Who acts: an existing account with a quarantine role; the rule of each entry then says
    // what that account may do to it.
    let who = |command: &str| -> anyhow::Result<Reviewer> {
        ensure_state_dir(&config)?;
        let account = super::account::named(&config, named, command)?;
        super::account::require_any(&account, command)?;
        Ok(reviewer(account))
    };
    match args.command {
        QuarantineCommand::List { json } => {
            // Without --as: what a network manager sees.
            let roles = match named {
                Some(_) => who("quarantine list")?.roles,
                None => vec![Role::NetworkManager],
            };
            list(&q, &roles, json)
        }
        QuarantineCommand::Show { id } => show(&config, &q, &id, &who("quarantine show")?),
        QuarantineCommand::Release {
            id,
            justification: Some(justification),
            ..
        } => sender_release(&config, &q, &id, &justification, named),
        QuarantineCommand::Release { id, reason, .. } => release(
            &config,
            &q,
            &id,
            &who("quarantine release")?,
            reason.as_deref(),
        ),
        QuarantineCommand::Delete { id, reason } => {
            delete(&config, &q, &id, &who("quarantine delete")?, &reason)
        }
        QuarantineCommand::Export { id, out } => {
            export(&config, &q, &id, &who("quarantine export")?, &out)
        }
    }
}

fn reviewer(account: Account) -> Reviewer {
    Reviewer {
        name: account.name,
        roles: account.roles,
    }
}

/// The one line a person who may not read a safeguarding hold is shown of it.
fn existence_line(h: &Held) -> String {
    format!(
        "{}  {}  {} octets  held by a safeguarding rule (the DSL decides; only a dsl account sees more)",
        h.id, h.time, h.size
    )
}

fn ensure_state_dir(config: &Config) -> anyhow::Result<()> {
    crate::store::private::create_dir_all(&config.storage.state_dir).with_context(|| {
        format!(
            "{}: storage.state_dir: cannot create {}",
            config.source.display(),
            config.storage.state_dir.display()
        )
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs one shared review action (see [`crate::review::quarantine`]) with its own audit writer.
fn act<T>(
    config: &Config,
    action: impl AsyncFnOnce(&AuditLog) -> Result<T, ReviewError>,
) -> anyhow::Result<T> {
    act_on(&runtime()?, config, action)
}

/// As [`act`], on a runtime the caller has already set up (and set other things up on).
fn act_on<T>(
    runtime: &tokio::runtime::Runtime,
    config: &Config,
    action: impl AsyncFnOnce(&AuditLog) -> Result<T, ReviewError>,
) -> anyhow::Result<T> {
    ensure_state_dir(config)?;
    let log = AuditLog::start(crate::store::open_audit(&config.storage)?)?;
    Ok(runtime.block_on(action(&log))?)
}

/// The reasons a message is held, escaped for the terminal (details carry file names).
fn reasons(h: &Held) -> String {
    let reasons = match h.reason.as_array() {
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
    };
    display::text(&reasons).into_owned()
}

fn list(q: &Quarantine, roles: &[Role], json: bool) -> anyhow::Result<ExitCode> {
    let held = q.list("held")?;
    let reads = |h: &Held| holds::may(holds::kind(&h.reason), roles, Act::Read);
    if json {
        // Every entry says what kind of hold it is; one the account may not read says only
        // that it exists, when, and its size.
        let items: Vec<serde_json::Value> = held
            .iter()
            .map(|h| {
                let hold = holds::kind(&h.reason).as_str();
                if reads(h) {
                    let mut v = serde_json::to_value(h).unwrap_or_default();
                    v["hold"] = hold.into();
                    v
                } else {
                    serde_json::json!({
                        "id": h.id,
                        "time": h.time,
                        "size": h.size,
                        "state": h.state,
                        "hold": hold,
                        "restricted": true,
                    })
                }
            })
            .collect();
        println!("{}", display::json(&serde_json::to_string_pretty(&items)?));
        return Ok(ExitCode::SUCCESS);
    }
    if held.is_empty() {
        println!("no messages held");
    }
    for h in &held {
        if !reads(h) {
            println!("{}", existence_line(h));
            continue;
        }
        println!(
            "{}  {}  from {}  to {}  subject \"{}\"  reasons: {}",
            h.id,
            h.time,
            display::text(&h.mail_from),
            display::text(&h.rcpt_to.join(", ")),
            display::text(h.subject.as_deref().unwrap_or("")),
            reasons(h)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(config: &Config, q: &Quarantine, id: &str, who: &Reviewer) -> anyhow::Result<ExitCode> {
    let h = review::find(q, id)?;
    let hold = match review::authorize(&h, who, Act::Read) {
        Ok(hold) => hold,
        Err(_) => {
            println!("{}", existence_line(&h));
            return Ok(ExitCode::SUCCESS);
        }
    };
    let actor = who.name.as_str();
    println!("id:       {}", h.id);
    println!("state:    {}", h.state);
    println!("held at:  {}", h.time);
    // Everything from the message is escaped: a Subject may carry terminal escape sequences.
    println!("from:     {}", display::text(&h.mail_from));
    println!("to:       {}", display::text(&h.rcpt_to.join(", ")));
    println!(
        "subject:  {}",
        display::text(h.subject.as_deref().unwrap_or(""))
    );
    println!("size:     {} octets, sha256 {}", h.size, h.sha256);
    println!("reasons:  {}", reasons(&h));
    if hold == Hold::Safeguarding {
        println!(
            "hold:     held by a safeguarding rule: the DSL's decision (release needs --reason)"
        );
    }
    if let Some(by) = &h.acted_by {
        println!(
            "{}:  by {} at {}{}",
            h.state,
            display::text(by),
            h.acted_at.as_deref().unwrap_or("?"),
            h.action_reason
                .as_deref()
                .map(|r| format!(": {}", display::text(r)))
                .unwrap_or_default()
        );
    }
    if let Ok(bytes) = q.read(id) {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .or_else(|| bytes.windows(2).position(|w| w == b"\n\n"))
            .unwrap_or(bytes.len());
        println!(
            "\n{}",
            display::lines(String::from_utf8_lossy(&bytes[..end]).trim_end())
        );
    }
    act(
        config,
        async |log| Ok(review::viewed(log, id, actor).await?),
    )?;
    Ok(ExitCode::SUCCESS)
}

fn release(
    config: &Config,
    q: &Quarantine,
    id: &str,
    who: &Reviewer,
    reason: Option<&str>,
) -> anyhow::Result<ExitCode> {
    // Said before anything is set up, in the command line's words (the release checks again).
    let h = review::find(q, id)?;
    let hold = review::authorize(&h, who, Act::Release)?;
    match review::reason_for(hold, Act::Release, reason) {
        Err(ReviewError::NoReason(_)) => anyhow::bail!(
            "quarantine release {id} needs --reason TEXT (up to 1,000 characters): every release says why, and the reason is kept in the audit trail; nothing done"
        ),
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    // An SMTP next hop keeps its connections on the runtime it is set up in, so it is set up
    // inside the one the release runs on (outside any, it refuses to start).
    let runtime = runtime()?;
    let hop = runtime.block_on(async { super::serve::next_hop_for(config) })?;
    let timeout = config.relay.next_hop_timeout.0;
    let done = act_on(&runtime, config, async |log| {
        review::release(q, id, who, reason, &hop, timeout, log).await
    })?;
    println!(
        "released {id} to {}: {}",
        done.hop,
        display::text(&done.reply)
    );
    Ok(ExitCode::SUCCESS)
}

/// `quarantine release ID --justification TEXT`: the sender's override, as through the link
/// in the sender notice ([`crate::review::sender_release`]), audited as the sender's with who
/// ran the command.
fn sender_release(
    config: &Config,
    q: &Quarantine,
    id: &str,
    justification: &str,
    named: Option<&str>,
) -> anyhow::Result<ExitCode> {
    use crate::review::sender_release::{self as sender, Target, Via};
    // Said before anything is set up (the release checks again).
    crate::policy::release::justification(justification)
        .map_err(|e| anyhow::anyhow!("quarantine release {id} --justification: {e}"))?;
    let h = review::find(q, id)?;
    crate::policy::release::sender_may_release(&h.reason, |r| {
        config.allow_sender_release().allows(r)
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "quarantine release {id} --justification: its sender cannot release it: {e}; release it with --as NAME instead if you decide it"
        )
    })?;
    // --as is optional here (the sender is not an account); when given, it must exist.
    let os_user = match named {
        Some(_) => {
            ensure_state_dir(config)?;
            let account = super::account::named(config, named, "quarantine release")?;
            format!("{} (as {})", os_user(), account.name)
        }
        None => os_user(),
    };
    let runtime = runtime()?;
    let hop = runtime.block_on(async { super::serve::next_hop_for(config) })?;
    let timeout = config.relay.next_hop_timeout.0;
    ensure_state_dir(config)?;
    let log = AuditLog::start(crate::store::open_audit(&config.storage)?)?;
    let links = crate::store::release::ReleaseLinks::open(&config.storage);
    let done = runtime.block_on(sender::release(
        q,
        &links,
        Target::Id(id.to_string()),
        Via::CommandLine { os_user },
        justification,
        config.allow_sender_release(),
        &hop,
        timeout,
        &log,
    ))?;
    println!(
        "released {} for its sender {} to {}: {}",
        done.id,
        display::text(&done.sender),
        done.hop,
        display::text(&done.reply)
    );
    Ok(ExitCode::SUCCESS)
}

fn delete(
    config: &Config,
    q: &Quarantine,
    id: &str,
    who: &Reviewer,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    if reason.trim().is_empty() {
        anyhow::bail!(
            "quarantine delete needs --reason TEXT (up to 1,000 characters, kept in the audit trail); nothing done"
        );
    }
    act(config, async |log| {
        review::delete(q, id, who, reason, log).await
    })?;
    println!("deleted {id}");
    Ok(ExitCode::SUCCESS)
}

fn export(
    config: &Config,
    q: &Quarantine,
    id: &str,
    who: &Reviewer,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let target = out.display().to_string();
    let bytes = act(config, async |log| {
        review::export(q, id, who, &target, log).await
    })?;
    // Readable by whoever runs this only (0600), whatever the umask: it is a pupil's mail.
    crate::store::private::write_file(out, &bytes).with_context(|| {
        format!(
            "cannot write {}: check that the folder exists and is writable",
            out.display()
        )
    })?;
    println!("exported {id} to {}", out.display());
    Ok(ExitCode::SUCCESS)
}
