//! `schoolgate dkim keygen`: make a DKIM key and print the DNS record to publish.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use crate::config::{Domain, Selector};
use crate::dkim::{Algorithm, key};

#[derive(Debug, Args)]
pub struct DkimArgs {
    #[command(subcommand)]
    pub command: DkimCommand,
}

#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// Write a new private key (mode 0600) and print the TXT record to publish for it.
    Keygen {
        /// The domain mail is signed for (the `From:` domain), e.g. example-academy.sch.uk.
        #[arg(long)]
        domain: String,
        /// The selector, e.g. sg2026: the record is published at SELECTOR._domainkey.DOMAIN.
        #[arg(long)]
        selector: String,
        /// Where to write the private key (PEM); an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// rsa (2048 bits; every receiver verifies it) or ed25519 (RFC 8463; publish an RSA
        /// key too, as not every receiver verifies Ed25519).
        #[arg(long, value_enum, default_value = "rsa")]
        algorithm: AlgorithmArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AlgorithmArg {
    Rsa,
    Ed25519,
}

pub fn run(args: DkimArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DkimCommand::Keygen {
            domain,
            selector,
            out,
            algorithm,
        } => {
            let domain: Domain = domain
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--domain: {e}"))?;
            let selector: Selector = selector
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--selector: {e}"))?;
            let algorithm = match algorithm {
                AlgorithmArg::Rsa => Algorithm::Rsa,
                AlgorithmArg::Ed25519 => Algorithm::Ed25519,
            };
            let made = key::generate(algorithm, &out)?;
            let (d, s) = (domain.0.as_str(), selector.0.as_str());
            let what = match algorithm {
                Algorithm::Rsa => format!("a {}-bit RSA", made.bits),
                Algorithm::Ed25519 => "an Ed25519".to_string(),
            };
            let path = out.display();
            let text = format!(
                "wrote {what} private key to {path} (mode 0600: make it readable by schoolgate's \
                 user, e.g. chown schoolgate {path})\n\n\
                 Publish this TXT record in the DNS of {d}:\n\n{}\n\n\
                 (name {s}._domainkey, value {})\n\n\
                 Then add to schoolgate's config and reload:\n\n\
                 [dkim]\ndomain = \"{d}\"\nselector = \"{s}\"\nkey = \"{path}\"\n\n\
                 `schoolgate policy check` says when the record is published.\n",
                key::zone_line(s, d, &made.record()),
                made.record()
            );
            // A closed pipe (`| head`) is not an error worth a panic: the key is written.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
            Ok(ExitCode::SUCCESS)
        }
    }
}
