//! `audit export`: the records an investigation needs, streamed (constant memory whatever the
//! size of the trail) as CSV for Excel, a JSON array, or JSON Lines. The filters and writers
//! are [`crate::review::audit_search`], shared with the web page's audit search.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Config;
use crate::display::TerminalWriter;
pub use crate::review::audit_search::{Format, RULES};
use crate::review::audit_search::{PersonFound, Search, SearchError, export_record};
use crate::store::AuditLog;

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

/// The destination: a temporary file renamed into place at the end, or standard output.
enum Sink {
    File {
        w: BufWriter<File>,
        tmp: PathBuf,
        out: PathBuf,
    },
    Stdout(BufWriter<std::io::Stdout>),
    /// Standard output that is a terminal: what came from mail is escaped for it.
    Terminal(TerminalWriter<BufWriter<std::io::Stdout>>),
}

impl Sink {
    fn open(out: Option<&Path>, to_terminal: bool) -> anyhow::Result<Sink> {
        let Some(out) = out else {
            let w = BufWriter::with_capacity(1 << 16, std::io::stdout());
            return Ok(if to_terminal {
                Sink::Terminal(TerminalWriter::new(w))
            } else {
                Sink::Stdout(w)
            });
        };
        let name = out
            .file_name()
            .with_context(|| format!("--out {} is not a file name", out.display()))?;
        let tmp = out.with_file_name(format!(
            ".{}.partial-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        // 0600 whatever the umask: the trail names pupils.
        let f = crate::store::private::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .with_context(|| {
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
            Sink::Terminal(w) => w,
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
            Sink::Terminal(mut w) => w.flush().context("cannot write to standard output"),
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
    let search = Search {
        since: args.since.clone(),
        until: args.until.clone(),
        person: args.person.clone(),
        rule: args.rule.clone(),
        verdict: args.verdict.map(|v| {
            match v {
                Verdict::Deliver => "deliver",
                Verdict::Quarantine => "quarantine",
                Verdict::Reject => "reject",
            }
            .to_string()
        }),
    };
    let query = search.prepare(config).map_err(|e| match e {
        // The messages start with the field's name: here it is a flag.
        SearchError::Invalid(m) => anyhow::anyhow!("--{m}"),
        other => other.into(),
    })?;
    match &query.person {
        Some(PersonFound::Known { name, addresses }) => {
            eprintln!("exporting the records of {name} ({})", addresses.join(", "))
        }
        Some(PersonFound::Unknown { address }) => eprintln!(
            "{address} is not in the directory {}; exporting the records of that address only",
            config.school.directory.display()
        ),
        None => {}
    }

    // Read-write: an older database gets its export index here.
    let mut backend = crate::store::open_audit(&config.storage)?;
    // One snapshot for the count, the index and the records, however much the gateway writes.
    backend.begin_read()?;
    let range = query.range(&mut *backend)?;

    let to_terminal = args.out.is_none() && std::io::stdout().is_terminal();
    let bar = if std::io::stderr().is_terminal() && !to_terminal {
        let total = match range {
            Some(r) => backend.count(r, query.keys())?,
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

    let mut sink = Sink::open(args.out.as_deref(), to_terminal)?;
    let written = query.write(&mut *backend, range, args.format, sink.writer(), &|| {
        bar.inc(1)
    });
    bar.finish_and_clear();
    let written = written.and_then(|w| {
        backend.end_read()?;
        Ok(w)
    });
    let written = match written {
        Ok(n) => n,
        Err(e) => {
            sink.abandon();
            return Err(e.into());
        }
    };
    sink.finish()?;

    let target = args
        .out
        .as_ref()
        .map_or("standard output".to_string(), |p| p.display().to_string());
    let log = AuditLog::start(crate::store::open_audit(&config.storage)?)?;
    log.append_blocking(export_record(&search, actor, written, args.format, &target))
        .context("the export was written but could not be recorded in the audit trail")?;
    eprintln!("exported {} records to {target}", written.0);
    Ok(ExitCode::SUCCESS)
}
