//! `schoolgate directory import --from oneroster DIR --out FILE`: the directory CSV from an
//! MIS export.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::directory::oneroster;

#[derive(Debug, Args)]
pub struct DirectoryArgs {
    #[command(subcommand)]
    pub command: DirectoryCommand,
}

#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// Convert an MIS export into the directory CSV ([school] directory).
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export's format.
    #[arg(long, value_enum)]
    pub from: Format,
    /// The folder of the export (for OneRoster: the unzipped CSV bundle with users.csv).
    pub dir: PathBuf,
    /// The directory CSV to write (readable by its owner only; install it for schoolgate).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// A OneRoster 1.1 CSV bundle (Groupcall Xporter, Wonde, most MIS exporters).
    Oneroster,
}

pub fn run(args: DirectoryArgs) -> anyhow::Result<ExitCode> {
    let DirectoryCommand::Import(args) = args.command;
    let Format::Oneroster = args.from;
    let c = oneroster::import(&args.dir)?;
    for w in &c.warnings {
        eprintln!("warning: {}", crate::display::text(w));
    }
    crate::store::private::write_file(&args.out, c.csv.as_bytes()).with_context(|| {
        format!(
            "cannot write {}: check that the folder exists and is writable",
            args.out.display()
        )
    })?;
    println!(
        "wrote {}: {} staff, {} pupils, {} parents' rows{}",
        args.out.display(),
        c.staff,
        c.pupils,
        c.parents,
        if c.skipped > 0 {
            format!(" ({} rows marked tobedeleted left out)", c.skipped)
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
