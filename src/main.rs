//! The `schoolgate` command: parse arguments, run one command, map errors to exit codes.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use schoolgate::cli::{Cli, run};
use tracing_subscriber::EnvFilter;

fn init_logs() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = std::env::var_os("JOURNAL_STREAM")
        .is_some()
        .then(|| tracing_journald::layer().ok())
        .flatten();
    match journal {
        Some(layer) => tracing_subscriber::registry()
            .with(filter())
            .with(layer.with_syslog_identifier("schoolgate".into()))
            .init(),
        None => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; RUST_LOG tunes them. Under systemd, whose journal stderr is connected
    // to (JOURNAL_STREAM names it), each event goes to the journal natively instead, its fields
    // (queue_id, verdict, rules, …) as journal fields a `journalctl QUEUE_ID=…` can select.
    init_logs();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("schoolgate: {e:#}");
            ExitCode::from(2)
        }
    }
}
