//! `schoolgate report`: the DSL's weekly report (flags by rule and staff member, cases
//! unreviewed and reviewed, holds and what became of them, undelivered alerts, the audit chain's
//! head and whether it verifies), for the last 7 days unless `--since`/`--until` say otherwise.
//!
//! This is the DSLs' copy: what concerns the headteacher or a DSL is left out (it is mailed to
//! `escalate_to` only). Every report made is audited: who, which period, where it went.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::Config;
use crate::directory::Directory;
use crate::review::audit_search::{SearchError, instant};
use crate::review::report::render::{Format, render, render_summary, summary, summary_of_trust};
use crate::review::report::{Period, Report, trail};
use crate::store::sqlite::DATABASE_FILE;
use crate::store::users::{Role, Users};
use crate::store::{AuditLog, AuditRecord, RecordKind};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// From this date (YYYY-MM-DD, from midnight in [school] timezone) or instant (RFC 3339);
    /// default 7 days before --until.
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Up to and including this date (YYYY-MM-DD), or up to this instant (RFC 3339); default now.
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    #[arg(long, value_enum)]
    pub format: Format,
    /// Write here (created readable by its owner only) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The DSL account making the report, for the audit trail (default: the OS user). When
    /// given, it must be an existing account holding the dsl role.
    #[arg(long = "as", value_name = "NAME")]
    pub actor: Option<String>,
    /// In a trust ([[schools]]): report on this school only. Without it a trust-wide account
    /// gets the trust summary, and an account of one school that school's report.
    #[arg(long, value_name = "NAME")]
    pub school: Option<String>,
}

/// What a report made by hand is about.
enum Subject {
    /// A single school's config: the report, as always.
    Single,
    /// One school of the trust (its index in `[[schools]]`).
    School(usize),
    /// The trust summary.
    Trust,
}

/// What `--as`'s account (`schools`: its schools, empty for trust-wide or no account) and
/// `--school` ask for, under `config`.
fn subject_of(
    config: &Config,
    schools: &[String],
    school: Option<&str>,
) -> anyhow::Result<Subject> {
    let school = school.map(str::trim).filter(|s| !s.is_empty());
    if config.schools.is_empty() {
        if let Some(s) = school {
            anyhow::bail!(
                "--school {s}: {} configures one school, not a trust ([[schools]]); leave --school out",
                config.source.display()
            );
        }
        return Ok(Subject::Single);
    }
    let names: Vec<&str> = config
        .schools
        .iter()
        .map(|s| s.school.name.as_str())
        .collect();
    let index = |name: &str| names.iter().position(|n| n.eq_ignore_ascii_case(name));
    match school {
        Some(s) => {
            let Some(i) = index(s) else {
                anyhow::bail!(
                    "--school {s}: no such school in {}; the schools are: {}",
                    config.source.display(),
                    names.join(", ")
                );
            };
            if !schools.is_empty() && !schools.iter().any(|m| m.eq_ignore_ascii_case(names[i])) {
                anyhow::bail!(
                    "--school {s}: the account is restricted to {}; it can report only on those",
                    schools.join(", ")
                );
            }
            Ok(Subject::School(i))
        }
        None => match schools {
            [] => Ok(Subject::Trust),
            [one] => match index(one) {
                Some(i) => Ok(Subject::School(i)),
                None => anyhow::bail!(
                    "the account's school {one} is not a school of {}; fix the account (schoolgate user) or the config",
                    config.source.display()
                ),
            },
            many => anyhow::bail!(
                "the account is restricted to several schools ({}); say which with --school NAME",
                many.join(", ")
            ),
        },
    }
}

/// The period `--since`/`--until` mean, at `now`.
pub fn period(
    config: &Config,
    since: Option<&str>,
    until: Option<&str>,
    now: jiff::Timestamp,
) -> anyhow::Result<Period> {
    let flag = |e: SearchError| match e {
        SearchError::Invalid(m) => anyhow::anyhow!("--{m}"),
        other => other.into(),
    };
    let until = match until.map(str::trim).filter(|v| !v.is_empty()) {
        Some(u) => instant(u, "until", true, config).map_err(flag)?,
        None => now,
    };
    let since = match since.map(str::trim).filter(|v| !v.is_empty()) {
        Some(s) => instant(s, "since", false, config).map_err(flag)?,
        None => {
            let tz =
                jiff::tz::TimeZone::get(&config.school.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
            Period::last_week(until, &tz).since
        }
    };
    if since >= until {
        anyhow::bail!("--since is not before --until: the report would cover nothing");
    }
    Ok(Period { since, until })
}

pub fn run(config_path: &Path, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let (actor, schools) = match args
        .actor
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        Some(name) => (name.to_string(), check_dsl(&config, name)?),
        None => (super::quarantine::os_user(), Vec::new()),
    };
    let subject = subject_of(&config, &schools, args.school.as_deref())?;
    // A school's report is timed in its own time zone.
    let clock = match subject {
        Subject::School(i) => config.for_school(i).unwrap_or_else(|| config.clone()),
        Subject::Single | Subject::Trust => config.clone(),
    };
    let now = jiff::Timestamp::now();
    let period = period(&clock, args.since.as_deref(), args.until.as_deref(), now)?;
    let path = config.storage.state_dir.join(DATABASE_FILE);
    if config.storage.database.is_none() && !path.exists() {
        anyhow::bail!(
            "no audit trail at {}: storage.state_dir in {} points at a directory schoolgate has not used",
            path.display(),
            config.source.display()
        );
    }
    let mut backend = crate::store::open_audit_read_only(&config.storage)?;
    let (bytes, what) = match subject {
        Subject::Single => {
            let directory = Directory::load(&config.school.directory, &config.school.staff_roles)?;
            let (report, _escalation) =
                trail::reports(&mut *backend, &config, &directory, period, now)?;
            (render(&report, args.format), report_line(&report))
        }
        Subject::School(_) => {
            let directory = Directory::load(&clock.school.directory, &clock.school.staff_roles)?;
            let (report, _escalation) =
                trail::school_reports(&mut *backend, &clock, &directory, period, now)?;
            let line = format!(
                "school {}: {}",
                crate::review::report::one_line(&clock.school.name),
                report_line(&report)
            );
            (render(&report, args.format), line)
        }
        Subject::Trust => {
            let directory = Directory::load(&config.school.directory, &config.school.staff_roles)?;
            let schools = crate::smtp::server::load_schools(&config)?;
            let pairs: Vec<(&Config, &Directory)> = schools
                .iter()
                .map(|s| (&*s.config, &*s.directory))
                .collect();
            let all =
                trail::trust_reports(&mut *backend, &config, &directory, &pairs, period, now)?;
            let s = &all.summary;
            let line = format!(
                "trust summary: {}; chain head {}",
                summary_of_trust(s),
                s.chain.head_line()
            );
            (render_summary(s, args.format), line)
        }
    };
    let target = match &args.out {
        Some(out) => {
            write_private(out, bytes.as_bytes())?;
            out.display().to_string()
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(bytes.as_bytes())
                .and_then(|()| stdout.flush())
                .context("cannot write the report to standard output")?;
            "standard output".to_string()
        }
    };
    let log = AuditLog::start(crate::store::open_audit(&config.storage)?)?;
    log.append_blocking(record(&what, period, &actor, args.format, &target))
        .context("the report was written but could not be recorded in the audit trail")?;
    if args.out.is_some() {
        eprintln!("report written to {target}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The audit record of a report made by hand.
pub fn report_record(report: &Report, actor: &str, format: Format, target: &str) -> AuditRecord {
    record(&report_line(report), report.period, actor, format, target)
}

/// What a report held, for its audit record.
fn report_line(report: &Report) -> String {
    format!(
        "{}; chain head {}",
        summary(report),
        report.chain.head_line()
    )
}

fn record(what: &str, period: Period, actor: &str, format: Format, target: &str) -> AuditRecord {
    AuditRecord::action(
        RecordKind::Action,
        actor,
        format!(
            "report by {actor}: {} to {} as {} to {target}; {what}",
            period.since,
            period.until,
            format.name(),
        ),
    )
}

/// `--as NAME` must be an existing account holding the dsl role: the report is the DSL's.
/// Returns the account's schools (empty: trust-wide).
fn check_dsl(config: &Config, name: &str) -> anyhow::Result<Vec<String>> {
    match Users::open(&config.storage).get(name)? {
        Some(a) if a.has(Role::Dsl) => Ok(a.schools),
        Some(_) => anyhow::bail!(
            "account {name} does not hold the dsl role; the report is the DSL's (see schoolgate user list)"
        ),
        None => anyhow::bail!(
            "--as {name}: no such account; give a DSL's account (see schoolgate user list), or leave --as out to act as the OS user"
        ),
    }
}

/// Writes `bytes` to `out` whole, readable by its owner only (0600), whatever the umask.
fn write_private(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::store::private::write_file(out, bytes).with_context(|| {
        format!(
            "cannot write --out {}: check that the directory exists and is writable",
            out.display()
        )
    })
}
