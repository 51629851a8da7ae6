//! `schoolgate audit …`: the DSL's view of the audit trail.
//!
//! `verify` walks the chain ([`crate::store::verify`]); `export` writes it out for an
//! investigation ([`export`]); `purge` applies `[audit] retention_days` by hand (the gateway
//! does it daily); `checkpoint` records and prints the head, for keeping somewhere else.
//! [`keeper`] is what `serve` runs in the background: checkpoints and the retention purge.
//!
//! `export` and `purge` act as a person, named by `--as`: an existing account with the `dsl`
//! role (the audit trail is the DSL's evidence; a purge removes records, so it is the DSL's
//! too, never that of someone whose own actions it records). `verify` and `checkpoint` read or
//! record the chain's head and need no account.

pub use crate::review::csv;
pub mod export;
pub mod keeper;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::Config;
use crate::store::sqlite::DATABASE_FILE;
use crate::store::{Checkpoint, StoreError, verify};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The account acting, for the audit trail: an existing account with the dsl role.
    /// Required for export and purge.
    #[arg(long = "as", value_name = "NAME", global = true)]
    pub actor: Option<String>,
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the whole hash chain: exit 0 with the count and head hash, or 1 naming the first
    /// broken record.
    Verify {
        /// A checkpoint kept elsewhere (the journal's "audit checkpoint" line, the DSL's
        /// checkpoint mail): the record SEQ must still have hash HASH. May be repeated.
        #[arg(long, value_name = "SEQ:HASH", value_parser = parse_checkpoint)]
        checkpoint: Vec<Checkpoint>,
    },
    /// Export records for an investigation (CSV for Excel, JSON or JSONL with every field).
    Export(export::ExportArgs),
    /// Remove records older than [audit] retention_days now (the gateway does this daily).
    Purge,
    /// Record the head of the chain as a checkpoint and print it, to keep somewhere else.
    Checkpoint,
}

fn parse_checkpoint(s: &str) -> Result<Checkpoint, String> {
    let bad = || {
        format!("\"{s}\" is not SEQ:HASH (e.g. 1042:3fa9…, as the audit checkpoint line prints it)")
    };
    let (seq, hash) = s.split_once(':').ok_or_else(bad)?;
    let seq: u64 = seq.trim().parse().map_err(|_| bad())?;
    let hash = hash.trim().to_ascii_lowercase();
    if seq == 0 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(Checkpoint {
        seq,
        hash,
        time: "on the command line".into(),
    })
}

pub fn run(config_path: &Path, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let named = args.actor.as_deref();
    let dsl = |command: &str| {
        super::account::with_role(&config, named, command, crate::store::users::Role::Dsl)
            .map(|a| a.name)
    };
    // verify and checkpoint need no account; one named anyway must exist.
    if matches!(
        args.command,
        AuditCommand::Verify { .. } | AuditCommand::Checkpoint
    ) && named.is_some()
    {
        require_database(&config)?;
        super::account::named(&config, named, "audit")?;
    }
    match args.command {
        AuditCommand::Verify { checkpoint } => run_verify(&config, &checkpoint),
        AuditCommand::Export(a) => {
            require_database(&config)?;
            export::run(&config, &dsl("audit export")?, a)
        }
        AuditCommand::Purge => {
            require_database(&config)?;
            purge(&config, &dsl("audit purge")?)
        }
        AuditCommand::Checkpoint => checkpoint(&config),
    }
}

/// The database must exist: a reader never creates one. (PostgreSQL's is made by the
/// network manager and migrated by whichever schoolgate connects first.)
fn require_database(config: &Config) -> anyhow::Result<()> {
    if config.storage.database.is_some() {
        return Ok(());
    }
    let path = config.storage.state_dir.join(DATABASE_FILE);
    if !path.exists() {
        anyhow::bail!(
            "no audit trail at {}: storage.state_dir in {} points at a directory schoolgate has not used",
            path.display(),
            config.source.display()
        );
    }
    Ok(())
}

/// `audit verify`: exit 0 with the count and head hash, or 1 naming the first broken record.
fn run_verify(config: &Config, expected: &[Checkpoint]) -> anyhow::Result<ExitCode> {
    require_database(config)?;
    let mut backend = crate::store::open_audit_read_only(&config.storage)?;
    match verify(&mut *backend, expected) {
        Ok(v) => {
            match &v.head {
                Some(head) if v.first_seq > 1 => println!(
                    "audit trail intact: {} records ({} to {}), head {}",
                    v.records, v.first_seq, head.seq, head.hash
                ),
                Some(head) => println!(
                    "audit trail intact: {} records, head {}",
                    v.records, head.hash
                ),
                None => println!("audit trail intact: 0 records"),
            }
            if let Some(p) = &v.purged {
                println!(
                    "records 1 to {} were purged under retention (the last purge removed {} to {}, written {} to {})",
                    v.first_seq.saturating_sub(1),
                    p.first_seq,
                    p.last_seq,
                    p.oldest,
                    p.newest,
                );
            }
            if v.checkpoints > 0 {
                println!("{} checkpoints match", v.checkpoints);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(StoreError::ChainBroken { seq, reason }) => {
            println!("audit trail BROKEN at record {seq}: {reason}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

/// `audit purge`: the retention purge, now.
fn purge(config: &Config, actor: &str) -> anyhow::Result<ExitCode> {
    let Some(days) = config.audit.retention_days else {
        anyhow::bail!(
            "{}: [audit] retention_days is not set, so the audit trail is kept for ever; set it to purge old records",
            config.source.display()
        );
    };
    require_database(config)?;
    let mut backend = crate::store::open_audit(&config.storage)?;
    match keeper::purge_now(&mut *backend, days, actor)? {
        Some(line) => println!("{line}"),
        None => println!("nothing to purge: no record is older than {days} days"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit checkpoint`: records the head and prints it.
fn checkpoint(config: &Config) -> anyhow::Result<ExitCode> {
    require_database(config)?;
    let mut backend = crate::store::open_audit(&config.storage)?;
    match backend
        .checkpoint()
        .context("cannot record the checkpoint")?
    {
        Some(h) => println!("{}", keeper::checkpoint_line(&h)),
        None => println!("the audit trail is empty: nothing to checkpoint"),
    }
    Ok(ExitCode::SUCCESS)
}
