//! `schoolgate flags …`: the DSL's case queue on the command line. Every flagged message is a
//! case ([`crate::review::cases`]); `list` shows them, `show` prints one as the plain block of
//! text to paste into CPOMS or MyConcern, `review` records an outcome and `reopen` puts a
//! reviewed case back in the queue. Reviews, reopenings and views are audited.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::Config;
use crate::directory::Directory;
use crate::review::audit_search::instant;
use crate::review::cases::{self, Case, CaseError, CaseState, Filter, escape};
use crate::store::users::{Role, Users};
use crate::store::{AuditLog, AuditRecord, RecordKind};

#[derive(Debug, Args)]
pub struct FlagsArgs {
    #[command(subcommand)]
    pub command: FlagsCommand,
}

#[derive(Debug, Subcommand)]
pub enum FlagsCommand {
    /// The cases (flagged messages), newest first.
    List {
        /// Only cases in this state.
        #[arg(long, value_name = "new|reviewed", value_parser = parse_state)]
        state: Option<CaseState>,
        /// Only messages from this day (YYYY-MM-DD, the school's time zone) or instant on.
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Only messages before the end of this day (or before this instant).
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
        /// Only cases where this rule matched.
        #[arg(long, value_name = "RULE")]
        rule: Option<String>,
        /// Only cases involving this address (or part of one).
        #[arg(long, value_name = "ADDRESS")]
        person: Option<String>,
        /// One JSON array of case objects instead of lines.
        #[arg(long)]
        json: bool,
        /// List only the cases this DSL account may see (cases about the headteacher or a DSL
        /// are seen only by accounts listed for escalation). Default: every case.
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
    },
    /// One case as a plain block of text (who, to whom, when, what rule, the evidence, the
    /// outcome), to paste into CPOMS or MyConcern. Audited.
    Show {
        seq: u64,
        /// The DSL account looking (checked, as for review); default: the OS user.
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
    },
    /// Record the outcome of a case. Audited.
    Review {
        /// The case: the audit record number `flags list` shows.
        seq: u64,
        /// no-concern, low-level-concern, concern-logged, referred, allegation-managed or other.
        #[arg(long)]
        outcome: String,
        /// What was found and done.
        #[arg(long)]
        note: String,
        /// The school's CPOMS or MyConcern incident number.
        #[arg(long)]
        reference: Option<String>,
        /// The DSL account reviewing (must exist with the dsl role).
        #[arg(long = "as", value_name = "NAME", required = true)]
        actor: String,
    },
    /// Put a reviewed case back in the queue as new. Audited.
    Reopen {
        seq: u64,
        /// Why it is reopened.
        #[arg(long)]
        note: String,
        /// The DSL account reopening (must exist with the dsl role).
        #[arg(long = "as", value_name = "NAME", required = true)]
        actor: String,
    },
}

fn parse_state(s: &str) -> Result<CaseState, String> {
    s.parse().map_err(|e: CaseError| e.to_string())
}

pub fn run(config_path: &Path, args: FlagsArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    crate::store::private::create_dir_all(&config.storage.state_dir).with_context(|| {
        format!(
            "{}: storage.state_dir: cannot create {}",
            config.source.display(),
            config.storage.state_dir.display()
        )
    })?;
    match args.command {
        FlagsCommand::List {
            state,
            since,
            until,
            rule,
            person,
            json,
            actor,
        } => {
            let filter = Filter {
                state,
                rule: rule.filter(|r| !r.trim().is_empty()),
                person: person.filter(|p| !p.trim().is_empty()),
                since: since
                    .map(|v| instant(&v, "--since", false, &config))
                    .transpose()?,
                until: until
                    .map(|v| instant(&v, "--until", true, &config))
                    .transpose()?,
            };
            list(&config, &filter, json, actor.as_deref())
        }
        FlagsCommand::Show { seq, actor } => {
            let case = match actor.as_deref().filter(|a| !a.trim().is_empty()) {
                Some(a) => case_for(&config, seq, a)?,
                None => match crate::store::cases::one(&config.storage, seq)? {
                    Some(c) => c,
                    None => return Err(CaseError::NotACase(seq).into()),
                },
            };
            let actor = actor
                .filter(|a| !a.trim().is_empty())
                .unwrap_or_else(super::quarantine::os_user);
            append(
                &config,
                AuditRecord::action(
                    RecordKind::Action,
                    &actor,
                    format!("case {seq} shown to {actor} (schoolgate flags show)"),
                ),
            )?;
            print!("{}", case.text_block(&cases::school_zone(&config)));
            Ok(ExitCode::SUCCESS)
        }
        FlagsCommand::Review {
            seq,
            outcome,
            note,
            reference,
            actor,
        } => {
            let case = case_for(&config, seq, &actor)?;
            let record = cases::review(&case, &outcome, &note, reference.as_deref(), &actor)?;
            let outcome = record.outcome.clone().unwrap_or_default();
            let entry = append(&config, AuditRecord::case_review(record))?;
            println!("case {seq} reviewed by {actor}: {outcome} (audit record {entry})");
            Ok(ExitCode::SUCCESS)
        }
        FlagsCommand::Reopen { seq, note, actor } => {
            let case = case_for(&config, seq, &actor)?;
            let record = cases::reopen(&case, &note, &actor)?;
            let entry = append(&config, AuditRecord::case_review(record))?;
            println!("case {seq} reopened by {actor} (audit record {entry})");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn directory(config: &Config) -> anyhow::Result<Directory> {
    Ok(Directory::load(
        &config.school.directory,
        &config.school.staff_roles,
    )?)
}

/// `name` must be an existing account with the dsl role; returns the schools it is restricted
/// to (empty: trust-wide).
fn dsl_account(config: &Config, name: &str) -> anyhow::Result<Vec<String>> {
    let users = Users::open(&config.storage);
    match users.get(name.trim())? {
        None => anyhow::bail!(
            "--as {name:?}: there is no such account; `schoolgate user list` shows the accounts, `schoolgate user add NAME --role dsl` adds one"
        ),
        Some(a) if !a.has(Role::Dsl) => anyhow::bail!(
            "--as {name:?}: the account does not have the dsl role, so it may not review safeguarding cases"
        ),
        Some(a) => Ok(a.schools),
    }
}

/// Whether an account restricted to `schools` (empty: trust-wide) sees `case`'s school.
fn in_schools(schools: &[String], case: &Case) -> bool {
    schools.is_empty()
        || case
            .message
            .school
            .as_deref()
            .is_some_and(|s| schools.iter().any(|r| r.eq_ignore_ascii_case(s)))
}

/// Case `seq` for `actor` to act on: the account a DSL's, the record a flagged message the
/// account may see.
fn case_for(config: &Config, seq: u64, actor: &str) -> anyhow::Result<Case> {
    let schools = dsl_account(config, actor)?;
    let case = match crate::store::cases::one(&config.storage, seq)? {
        Some(c) => c,
        None => return Err(CaseError::NotACase(seq).into()),
    };
    if !in_schools(&schools, &case) {
        anyhow::bail!(
            "case {seq} belongs to {}, and {actor:?} is restricted to {}",
            case.message
                .school
                .as_deref()
                .unwrap_or("no school of the trust"),
            schools.join(", ")
        );
    }
    if !cases::may_see(config, &directory(config)?, actor, &case) {
        anyhow::bail!(
            "case {seq} is about the headteacher or a DSL: only an account listed in [safeguarding] escalate_to may review it, and {actor:?} is not"
        );
    }
    Ok(case)
}

/// Appends one record with its own audit writer; returns its seq.
fn append(config: &Config, record: AuditRecord) -> anyhow::Result<u64> {
    let log = AuditLog::start(crate::store::open_audit(&config.storage)?)?;
    Ok(log.append_blocking(record)?.seq)
}

/// The object `flags list --json` prints for a case.
pub fn case_json(case: &Case) -> serde_json::Value {
    let m = &case.message;
    let review = case.latest_review();
    let mut json = serde_json::json!({
        "seq": case.seq,
        "state": case.state().as_str(),
        "rules": case.rules(),
        "sender": case.sender(),
        "recipients": m.rcpt_to,
        "time": case.time,
        "subject": m.subject,
        "outcome": review.and_then(|r| r.record.outcome.clone()),
        "note": review.map(|r| r.record.note.clone()),
        "reference": review.and_then(|r| r.record.reference.clone()),
        "reviewed_by": review.map(|r| r.record.actor.clone()),
        "reviewed_at": review.map(|r| r.time.clone()),
        "delivery": m.outcome,
        "evidence": m.evidence,
        "quarantine_id": m.quarantine_id,
        "flags": m.flags.iter().map(|f| serde_json::json!({
            "rule": f.rule, "detail": f.detail, "evidence": f.evidence, "action": f.action,
        })).collect::<Vec<_>>(),
    });
    // In a trust, the school the message belonged to (absent for a single school).
    if let (Some(school), Some(fields)) = (&m.school, json.as_object_mut()) {
        fields.insert("school".into(), school.clone().into());
    }
    json
}

fn list(
    config: &Config,
    filter: &Filter,
    json: bool,
    actor: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let mut found = crate::store::cases::list(&config.storage, filter)?;
    if let Some(actor) = actor {
        let schools = dsl_account(config, actor)?;
        let directory = directory(config)?;
        found.retain(|c| in_schools(&schools, c) && cases::may_see(config, &directory, actor, c));
    }
    if json {
        let all: Vec<serde_json::Value> = found.iter().map(case_json).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        println!("no cases");
    }
    let tz = cases::school_zone(config);
    for c in &found {
        let m = &c.message;
        println!(
            "{}  {:<8}  {}  from {}  to {}  rules {}  subject \"{}\"{}",
            c.seq,
            c.state().as_str(),
            cases::local_time(&c.time, &tz),
            escape(c.sender()),
            escape(&m.rcpt_to.join(", ")),
            c.rules().join(","),
            escape(m.subject.as_deref().unwrap_or("")),
            c.latest_review()
                .map(|r| format!(
                    "  outcome {}",
                    escape(r.record.outcome.as_deref().unwrap_or(""))
                ))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
