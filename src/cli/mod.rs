//! The command line: one file per subcommand; each returns the process's exit code.

mod account;
pub mod audit;
pub mod check;
pub mod directory;
pub mod dkim;
pub mod flags;
pub mod migrate;
pub mod notify;
pub mod policy;
pub mod quarantine;
pub mod report;
pub mod serve;
pub mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_PATH};

/// schoolgate: the school's outbound mail gateway.
#[derive(Debug, Parser)]
#[command(name = "schoolgate", version, about)]
pub struct Cli {
    /// The configuration file.
    #[arg(long, global = true, env = "SCHOOLGATE_CONFIG", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: the SMTP relay, the milter and the web page when configured.
    Serve,
    /// Dry run: what the policy does to one message. Changes no state.
    Check(check::CheckArgs),
    /// The configuration.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Messages held for review.
    Quarantine(quarantine::QuarantineArgs),
    /// The DSL's safeguarding cases: list, show, review, reopen.
    Flags(flags::FlagsArgs),
    /// The audit trail: verify it, export it, purge it.
    Audit(audit::AuditArgs),
    /// Accounts for the web page.
    User(user::UserArgs),
    /// The DSL's weekly report: flags, cases, holds, undelivered alerts, the audit chain.
    Report(report::ReportArgs),
    /// DKIM keys: make one and print the DNS record to publish.
    Dkim(dkim::DkimArgs),
    /// The directory: make it from an MIS export.
    Directory(directory::DirectoryArgs),
    /// Copy a single-school store (SQLite) into the PostgreSQL database `[storage] database`
    /// names, chain intact: verified before and after; the target must be empty.
    Migrate(migrate::MigrateArgs),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate the config and the directory and print a summary.
    Check,
}

/// Runs the command; errors are printed by `main` and exit 2.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve => serve::run(&cli.config),
        Command::Check(args) => check::run(&cli.config, args),
        Command::Policy {
            command: PolicyCommand::Check,
        } => policy::run(&cli.config),
        Command::Quarantine(args) => quarantine::run(&cli.config, args),
        Command::Flags(args) => flags::run(&cli.config, args),
        Command::Audit(args) => audit::run(&cli.config, args),
        Command::User(args) => user::run(&cli.config, args),
        Command::Report(args) => report::run(&cli.config, args),
        Command::Dkim(args) => dkim::run(args),
        Command::Directory(args) => directory::run(args),
        Command::Migrate(args) => migrate::run(&cli.config, args),
    }
}

/// Loads the config, as every command does first.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}
