//! `audit export`: the records an investigation needs, streamed (constant memory whatever the
//! size of the trail) as CSV for Excel, a JSON array, or JSON Lines.
//!
//! JSON and JSONL carry every field: each item is `{"seq", "prev_hash", "hash", "record"}`
//! with `record` the stored JSON byte for byte, last in the item, so anyone can recompute
//! `SHA-256(seq "\n" prev_hash "\n" record)` and check the export against the chain.
//!
//! Filters: `--since`/`--until` by the records' time index, then exactly; `--person` through
//! the address index (every address of that person in the directory, in envelope or
//! headers); `--rule` through the rule index; `--verdict` on the record.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::csv;
use crate::config::Config;
use crate::directory::Directory;
use crate::store::sqlite::SqliteBackend;
use crate::store::{
    ActionRecord, AuditEntry, AuditLog, AuditRecord, Backend, RecordKind, StoreError,
};

/// The rule names (SPEC, "Rule names").
pub const RULES: [&str; 6] = [
    "pupil-personal-address",
    "staff-personal-address",
    "personal-contact-shared",
    "out-of-hours-pupil-contact",
    "unencrypted-sensitive-attachment",
    "unscannable-attachment",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For Excel: UTF-8 with BOM, one row per record.
    Csv,
    /// One JSON array.
    Json,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Csv => "CSV",
            Format::Json => "JSON",
            Format::Jsonl => "JSONL",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Verdict {
    Deliver,
    Quarantine,
    Reject,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// From this date (YYYY-MM-DD, from midnight in [school] timezone) or instant (RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Up to and including this date (YYYY-MM-DD), or up to this instant (RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// Records involving this person: any of their addresses in the directory (school and
    /// personal), as envelope sender or recipient or in From/To/Cc.
    #[arg(long, value_name = "ADDR")]
    pub person: Option<String>,
    /// Messages this rule matched.
    #[arg(long, value_name = "RULE")]
    pub rule: Option<String>,
    /// Messages with this verdict.
    #[arg(long, value_enum, value_name = "V")]
    pub verdict: Option<Verdict>,
    #[arg(long, value_enum)]
    pub format: Format,
    /// Write here instead of standard output (written whole or not at all).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// The instants a `--since`/`--until` value stands for.
fn instant(
    value: &str,
    flag: &str,
    end_of_day: bool,
    config: &Config,
) -> anyhow::Result<jiff::Timestamp> {
    if let Ok(t) = value.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let date: jiff::civil::Date = value.parse().map_err(|_| {
        anyhow::anyhow!("{flag} {value:?} is not a date (YYYY-MM-DD) or an RFC 3339 instant (2026-01-31T17:00:00Z)")
    })?;
    let date = if end_of_day {
        date.tomorrow().context("that date is out of range")?
    } else {
        date
    };
    let zoned = date
        .to_zoned(
            jiff::tz::TimeZone::get(&config.school.timezone)
                .with_context(|| format!("{}: school.timezone", config.source.display()))?,
        )
        .with_context(|| {
            format!(
                "{flag} {value:?}: no such day in {}",
                config.school.timezone
            )
        })?;
    Ok(zoned.timestamp())
}

/// The stored-time bounds that include at least every record in `[since, until)`: seconds,
/// without the `Z`, so that text order cannot leave out a record with a fraction of a second.
fn bound(t: jiff::Timestamp, up: bool) -> String {
    let secs = if up && t.subsec_nanosecond() != 0 {
        t.as_second() + 1
    } else {
        t.as_second()
    };
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Who `--person` means: every address of theirs in the directory.
fn person_addresses(config: &Config, addr: &str) -> anyhow::Result<Vec<String>> {
    let addr = addr.trim().to_lowercase();
    if !addr.contains('@') {
        anyhow::bail!(
            "--person {addr:?} is not a mail address; give any of the person's addresses"
        );
    }
    let directory = Directory::load(&config.school.directory, &config.school.staff_roles)?;
    match directory.person(&addr) {
        Some(p) => {
            let mut all: Vec<String> = p
                .school_email
                .iter()
                .chain(&p.personal_emails)
                .map(|a| a.trim().to_lowercase())
                .collect();
            all.dedup();
            eprintln!("exporting the records of {} ({})", p.name, all.join(", "));
            Ok(all)
        }
        None => {
            eprintln!(
                "{addr} is not in the directory {}; exporting the records of that address only",
                config.school.directory.display()
            );
            Ok(vec![addr])
        }
    }
}

/// What is left to check on each record after the index did its part.
struct Filter {
    since: Option<jiff::Timestamp>,
    until: Option<jiff::Timestamp>,
    rule: Option<String>,
    verdict: Option<&'static str>,
}

impl Filter {
    fn keeps(&self, r: &AuditRecord) -> bool {
        if self.since.is_some() || self.until.is_some() {
            let Ok(t) = r.time.parse::<jiff::Timestamp>() else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        if self.rule.is_none() && self.verdict.is_none() {
            return true;
        }
        let Some(m) = &r.message else {
            return false;
        };
        if let Some(rule) = &self.rule
            && !m.flags.iter().any(|f| &f.rule == rule)
            && !m.findings.iter().any(|f| &f.rule == rule)
        {
            return false;
        }
        self.verdict.is_none_or(|v| m.verdict == v)
    }
}

/// The destination: a temporary file renamed into place at the end, or standard output.
enum Sink {
    File {
        w: BufWriter<File>,
        tmp: PathBuf,
        out: PathBuf,
    },
    Stdout(BufWriter<std::io::Stdout>),
}

impl Sink {
    fn open(out: Option<&Path>) -> anyhow::Result<Sink> {
        let Some(out) = out else {
            return Ok(Sink::Stdout(BufWriter::with_capacity(
                1 << 16,
                std::io::stdout(),
            )));
        };
        let name = out
            .file_name()
            .with_context(|| format!("--out {} is not a file name", out.display()))?;
        let tmp = out.with_file_name(format!(
            ".{}.partial-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let f = File::create(&tmp).with_context(|| {
            format!(
                "cannot create {} (for --out {}): check that the directory exists and is writable",
                tmp.display(),
                out.display()
            )
        })?;
        Ok(Sink::File {
            w: BufWriter::with_capacity(1 << 16, f),
            tmp,
            out: out.to_path_buf(),
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::File { w, .. } => w,
            Sink::Stdout(w) => w,
        }
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::File { w, tmp, out } => {
                let f = w.into_inner().map_err(|e| {
                    anyhow::anyhow!("cannot write {}: {}", tmp.display(), e.error())
                })?;
                f.sync_all()
                    .with_context(|| format!("cannot write {}", tmp.display()))?;
                std::fs::rename(&tmp, &out)
                    .with_context(|| format!("cannot move {} to {}", tmp.display(), out.display()))
            }
            Sink::Stdout(mut w) => w.flush().context("cannot write to standard output"),
        }
    }

    fn abandon(self) {
        if let Sink::File { tmp, .. } = self {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

pub fn run(config: &Config, actor: &str, args: ExportArgs) -> anyhow::Result<ExitCode> {
    super::require_database(config)?;
    if let Some(rule) = &args.rule
        && !RULES.contains(&rule.as_str())
    {
        anyhow::bail!(
            "--rule {rule:?} is not a rule; the rules are {}",
            RULES.join(", ")
        );
    }
    let since = args
        .since
        .as_deref()
        .map(|v| instant(v, "--since", false, config))
        .transpose()?;
    // A bare date means the whole of that day.
    let until = args
        .until
        .as_deref()
        .map(|v| instant(v, "--until", true, config))
        .transpose()?;
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        anyhow::bail!("--since is not before --until: nothing could match");
    }
    let mut keys: Vec<String> = match &args.person {
        Some(p) => person_addresses(config, p)?
            .into_iter()
            .map(|a| format!("a:{a}"))
            .collect(),
        None => Vec::new(),
    };
    if keys.is_empty()
        && let Some(rule) = &args.rule
    {
        keys.push(format!("r:{rule}"));
    }
    let filter = Filter {
        since,
        until,
        rule: args.rule.clone(),
        verdict: args.verdict.map(|v| match v {
            Verdict::Deliver => "deliver",
            Verdict::Quarantine => "quarantine",
            Verdict::Reject => "reject",
        }),
    };

    // Read-write: an older database gets its export index here.
    let mut backend = SqliteBackend::open(&config.storage.state_dir)?;
    // One snapshot for the count, the index and the records, however much the gateway writes.
    backend.begin_read()?;
    let range = backend.seq_range(
        since.map(|t| bound(t, false)).as_deref(),
        until.map(|t| bound(t, true)).as_deref(),
    )?;

    let to_terminal = args.out.is_none() && std::io::stdout().is_terminal();
    let bar = if std::io::stderr().is_terminal() && !to_terminal {
        let total = match range {
            Some(r) => backend.count(r, &keys)?,
            None => 0,
        };
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "exporting [{bar:30}] {human_pos}/{human_len} records, {eta} left",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let mut sink = Sink::open(args.out.as_deref())?;
    let written = write_all(
        &mut backend,
        range,
        &keys,
        &filter,
        args.format,
        sink.writer(),
        &bar,
    );
    bar.finish_and_clear();
    let written = written.and_then(|w| {
        backend.end_read()?;
        Ok(w)
    });
    let (count, last) = match written {
        Ok(n) => n,
        Err(e) => {
            sink.abandon();
            return Err(e);
        }
    };
    sink.finish()?;

    let target = args
        .out
        .as_ref()
        .map_or("standard output".to_string(), |p| p.display().to_string());
    let mut filters = Vec::new();
    for (name, v) in [
        ("since", &args.since),
        ("until", &args.until),
        ("person", &args.person),
        ("rule", &args.rule),
    ] {
        if let Some(v) = v {
            filters.push(format!("--{name} {v}"));
        }
    }
    if let Some(v) = filter.verdict {
        filters.push(format!("--verdict {v}"));
    }
    let detail = format!(
        "audit export by {actor}: {count} records{} as {} to {target}{}",
        last.map(|s| format!(" (up to record {s})"))
            .unwrap_or_default(),
        args.format.name(),
        if filters.is_empty() {
            String::new()
        } else {
            format!("; {}", filters.join(" "))
        }
    );
    let log = AuditLog::start(Box::new(SqliteBackend::open(&config.storage.state_dir)?))?;
    log.append_blocking(AuditRecord::action(
        RecordKind::Action,
        ActionRecord {
            actor: actor.to_string(),
            detail,
        },
    ))
    .context("the export was written but could not be recorded in the audit trail")?;
    eprintln!("exported {count} records to {target}");
    Ok(ExitCode::SUCCESS)
}

/// Streams the matching records to `w`; returns how many and the last one's sequence number.
fn write_all(
    backend: &mut dyn Backend,
    range: Option<(u64, u64)>,
    keys: &[String],
    filter: &Filter,
    format: Format,
    w: &mut dyn Write,
    bar: &ProgressBar,
) -> anyhow::Result<(u64, Option<u64>)> {
    let io = |e: std::io::Error| StoreError::Output(e.to_string());
    match format {
        Format::Csv => {
            w.write_all(csv::BOM.as_bytes()).map_err(io)?;
            w.write_all(csv::header().as_bytes()).map_err(io)?;
        }
        Format::Json => w.write_all(b"[").map_err(io)?,
        Format::Jsonl => {}
    }
    let mut count = 0u64;
    let mut last = None;
    if let Some(range) = range {
        backend.scan(range, keys, &mut |entry: AuditEntry| {
            bar.inc(1);
            let record = entry.record()?;
            if !filter.keeps(&record) {
                return Ok(true);
            }
            match format {
                Format::Csv => w
                    .write_all(csv::record_row(&entry, &record).as_bytes())
                    .map_err(io)?,
                Format::Json | Format::Jsonl => {
                    if format == Format::Json {
                        w.write_all(if count == 0 { b"\n" } else { b",\n" })
                            .map_err(io)?;
                    }
                    write!(
                        w,
                        "{{\"seq\":{},\"prev_hash\":\"{}\",\"hash\":\"{}\",\"record\":{}}}",
                        entry.seq, entry.prev_hash, entry.hash, entry.record_json
                    )
                    .map_err(io)?;
                    if format == Format::Jsonl {
                        w.write_all(b"\n").map_err(io)?;
                    }
                }
            }
            count += 1;
            last = Some(entry.seq);
            Ok(true)
        })?;
    }
    if format == Format::Json {
        w.write_all(if count == 0 { b"]\n" } else { b"\n]\n" })
            .map_err(io)?;
    }
    Ok((count, last))
}
