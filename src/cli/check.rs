//! `schoolgate check MESSAGE.eml`: a dry run of the policy on one message. Changes no state.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use sha2::{Digest, Sha256};

use crate::directory::Directory;
use crate::envelope::Envelope;
use crate::policy;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The message (RFC 5322, as it would be sent).
    pub message: PathBuf,
    /// Envelope sender (default: the From header).
    #[arg(long)]
    pub from: Option<String>,
    /// Envelope recipient, repeatable (default: the To and Cc headers).
    #[arg(long = "to")]
    pub to: Vec<String>,
    /// Write the message as it would leave to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the verdict as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(config_path: &Path, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let trust = super::load_config(config_path)?;
    let message = std::fs::read(&args.message)
        .with_context(|| format!("cannot read the message {}", args.message.display()))?;
    let summary = policy::summarise(&message);
    let bare = |s: &str| -> String {
        match (s.rfind('<'), s.rfind('>')) {
            (Some(a), Some(b)) if a < b => s[a + 1..b].to_string(),
            _ => s.to_string(),
        }
    };
    let envelope = Envelope {
        mail_from: args
            .from
            .clone()
            .or_else(|| summary.from_address.clone())
            .or_else(|| summary.from.as_deref().map(bare))
            .unwrap_or_default(),
        rcpt_to: if args.to.is_empty() {
            summary
                .to
                .iter()
                .chain(&summary.cc)
                .map(|s| bare(s))
                .collect()
        } else {
            args.to.clone()
        },
        smtputf8: false,
        body_8bit: false,
    };
    // In a trust, the school of the envelope sender's domain decides, with its own directory.
    let config = match trust.school_of(&envelope.mail_from) {
        Some(i) => trust.for_school(i).unwrap_or_else(|| trust.clone()),
        None => trust,
    };
    let directory = Directory::load(&config.school.directory, &config.school.staff_roles)?;
    let decision = policy::evaluate(
        &envelope,
        &message,
        &config,
        &directory,
        jiff::Timestamp::now(),
    );
    let delivered = decision.outgoing(b"", &message);
    let delivered = delivered.as_slice();
    if let Some(out) = &args.out {
        crate::store::private::write_file(out, delivered).with_context(|| {
            format!(
                "cannot write {}: check that the folder exists and is writable",
                out.display()
            )
        })?;
    }
    let mut verdict = serde_json::json!({
        "verdict": decision.verdict,
        "disclaimer": decision.disclaimer,
        "flags": decision.flags,
        "findings": decision.findings,
        "attachments": decision.attachments,
        "notes": decision.disclaimer_notes,
        "sha256_original": hex::encode(Sha256::digest(&message)),
        "sha256_delivered": hex::encode(Sha256::digest(delivered)),
    });
    // In a trust, which school the message belonged to (absent for a single school).
    if let (Some(school), Some(fields)) = (&config.trust_school, verdict.as_object_mut()) {
        fields.insert("school".into(), school.clone().into());
    }
    if args.json {
        println!("{}", crate::display::json(&verdict.to_string()));
    } else {
        println!("message:    {}", args.message.display());
        let shown = crate::display::text;
        println!(
            "envelope:   {} -> {}",
            shown(&envelope.mail_from),
            shown(&envelope.rcpt_to.join(", "))
        );
        if let Some(school) = &config.trust_school {
            println!("school:     {}", shown(school));
        }
        println!("verdict:    {}", decision.verdict.as_str());
        for f in &decision.flags {
            println!(
                "flag:       {} ({:?}): {} [{}]",
                f.rule,
                f.action,
                shown(&f.detail),
                shown(&f.evidence)
            );
        }
        for f in &decision.findings {
            println!(
                "finding:    {} ({:?}): {}",
                f.rule,
                f.action,
                shown(&f.detail)
            );
            for e in &f.evidence {
                println!(
                    "            {} at {}: {}",
                    e.detector,
                    shown(&e.location),
                    shown(&e.sample)
                );
            }
        }
        println!("disclaimer: {}", decision.disclaimer.as_str());
        for note in &decision.disclaimer_notes {
            println!("            {}", shown(note));
        }
    }
    Ok(ExitCode::SUCCESS)
}
