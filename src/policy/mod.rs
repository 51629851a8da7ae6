//! THE CORE, pure: (envelope, message bytes, config, now) → [`Decision`].
//!
//! No I/O happens here: the shells (the SMTP relay, `check`, the milter) read the bytes, call
//! [`evaluate`], and act on what it decides. That keeps every rule testable on its own and the
//! same whichever way a message arrives.
//!
//! The rules: the disclaimer ([`disclaimer`]), the safeguarding contact rules ([`contact`]),
//! the sensitive-attachment rules ([`sensitive`]), the data-protection rules
//! ([`data_protection`]) and the rules that read what a message says ([`text_rules`]). The
//! strictest action of any rule that matched decides the verdict.

pub mod access;
pub mod author;
pub mod contact;
pub mod data_protection;
pub mod disclaimer;
mod eight_bytes;
pub mod holds;
mod letters;
pub mod names;
pub mod password;
pub mod release;
pub mod sensitive;
pub mod text_rules;

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;

use crate::config::Config;
use crate::directory::Directory;
use crate::envelope::Envelope;

/// What happens to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Deliver,
    Quarantine,
    Reject,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Deliver => "deliver",
            Verdict::Quarantine => "quarantine",
            Verdict::Reject => "reject",
        }
    }
}

/// What was done about the disclaimer (SPEC, `check --json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DisclaimerOutcome {
    Appended,
    Wrapped,
    Exempt,
    AlreadyPresent,
    SkippedSigned,
    SkippedEncrypted,
    SkippedMalformed,
    Off,
}

impl DisclaimerOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DisclaimerOutcome::Appended => "appended",
            DisclaimerOutcome::Wrapped => "wrapped",
            DisclaimerOutcome::Exempt => "exempt",
            DisclaimerOutcome::AlreadyPresent => "already-present",
            DisclaimerOutcome::SkippedSigned => "skipped-signed",
            DisclaimerOutcome::SkippedEncrypted => "skipped-encrypted",
            DisclaimerOutcome::SkippedMalformed => "skipped-malformed",
            DisclaimerOutcome::Off => "off",
        }
    }
}

/// The decision about one message.
#[derive(Debug, Clone)]
pub struct Decision {
    pub verdict: Verdict,
    pub disclaimer: DisclaimerOutcome,
    /// What else the disclaimer step did or why it did not (for the audit trail).
    pub disclaimer_notes: Vec<String>,
    /// The safeguarding contact rules that matched.
    pub flags: Vec<contact::Flag>,
    /// What the sensitive-attachment rules found.
    pub findings: Vec<sensitive::Finding>,
    /// The message's attachments (name, type, size, SHA-256, encrypted or not).
    pub attachments: Vec<sensitive::AttachmentInfo>,
    /// The edits that make the message as it must leave; `None` means unchanged.
    pub patch: Option<disclaimer::Patch>,
    /// What the headers say, for the audit trail.
    pub summary: MessageSummary,
}

/// The headers the audit trail keeps (never the body).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageSummary {
    pub from: Option<String>,
    /// The bare address of the (first) From.
    pub from_address: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// The To and Cc mailboxes: display name and bare address.
    pub recipients: Vec<(Option<String>, String)>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    /// The headers could not be read at all (mail-parser gave up or panicked).
    pub malformed: bool,
}

impl Decision {
    /// The permanent reply for a rejected message, in words the sender understands (the first
    /// rule that rejects says why).
    pub fn refusal(&self) -> String {
        use crate::config::Action::Reject;
        let why = self
            .findings
            .iter()
            .find(|f| f.action == Reject)
            .map(|f| f.refusal())
            .or_else(|| {
                self.flags
                    .iter()
                    .find(|f| f.action == Reject)
                    .map(|f| format!("{} is not allowed by the school's mail policy", f.rule))
            })
            .unwrap_or_else(|| "Message refused by the school's mail policy".into());
        let line: String = why
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(400)
            .collect();
        format!("550 5.7.1 {line}")
    }

    /// The message as it leaves, after `prefix` (the relay's `Received:` header).
    pub fn outgoing(&self, prefix: &[u8], original: &[u8]) -> Vec<u8> {
        match &self.patch {
            Some(p) => p.apply(prefix, original),
            None => [prefix, original].concat(),
        }
    }
}

/// Decides what happens to `message`, sent with `envelope`, under `config` and `directory`.
pub fn evaluate(
    envelope: &Envelope,
    message: &[u8],
    config: &Config,
    directory: &Directory,
    now: jiff::Timestamp,
) -> Decision {
    let summary = summarise(message);
    // A bug must not cost a message its reply: a panic in a rule is contained and audited.
    let flags = catch_unwind(AssertUnwindSafe(|| {
        contact::check(
            &contact::Message {
                envelope,
                header_recipients: &summary.recipients,
                new_text: &|| disclaimer::new_text(message),
                received: now,
            },
            config,
            directory,
        )
    }))
    .unwrap_or_default();
    let today = now
        .to_zoned(
            jiff::tz::TimeZone::get(&config.school.timezone).unwrap_or(jiff::tz::TimeZone::UTC),
        )
        .date();
    let inspection = catch_unwind(AssertUnwindSafe(|| {
        sensitive::inspect(message, config, directory, today)
    }))
    .unwrap_or_else(|_| sensitive::Inspection {
        // A bug in an extractor must not let the attachments through unread.
        attachments: Vec::new(),
        findings: vec![sensitive::Finding::internal_error(config)],
    });
    let sensitive::Inspection {
        attachments,
        mut findings,
    } = inspection;
    // The data-protection rules' results are findings like the attachments'.
    findings.extend(
        catch_unwind(AssertUnwindSafe(|| {
            data_protection::check(
                &data_protection::Message {
                    envelope,
                    header_recipients: &summary.recipients,
                },
                config,
                directory,
            )
        }))
        .unwrap_or_default(),
    );
    // The rules that read what the message says: its Subject, file names and author's text.
    findings.extend(
        catch_unwind(AssertUnwindSafe(|| {
            text_rules::check(
                &text_rules::Message {
                    envelope,
                    raw: message,
                    subject: summary.subject.as_deref(),
                    attachments: &attachments,
                },
                config,
                directory,
                today,
            )
        }))
        .unwrap_or_default(),
    );
    // The strictest action of any matched rule decides.
    let actions = flags
        .iter()
        .map(|f| f.action)
        .chain(findings.iter().map(|f| f.action));
    let verdict = actions.fold(Verdict::Deliver, |v, a| match (v, a) {
        (Verdict::Reject, _) | (_, crate::config::Action::Reject) => Verdict::Reject,
        (Verdict::Quarantine, _) | (_, crate::config::Action::Quarantine) => Verdict::Quarantine,
        _ => Verdict::Deliver,
    });
    let d = &config.disclaimer;
    let plan = if disclaimer_exempt(envelope, &summary, config, directory) {
        disclaimer::Plan {
            outcome: DisclaimerOutcome::Exempt,
            patch: None,
            notes: Vec::new(),
        }
    } else {
        catch_unwind(AssertUnwindSafe(|| {
            disclaimer::plan(message, &d.text, &d.html, d.on_signed)
        }))
        .unwrap_or_else(|_| disclaimer::Plan {
            outcome: DisclaimerOutcome::SkippedMalformed,
            patch: None,
            notes: vec!["internal error while placing the disclaimer; delivered unchanged".into()],
        })
    };
    Decision {
        verdict,
        disclaimer: plan.outcome,
        disclaimer_notes: plan.notes,
        flags,
        findings,
        attachments,
        patch: plan.patch,
        summary,
    }
}

/// Seed 000: "… attached to all email correspondence except those of the Headteacher". Exempt
/// when the envelope sender and the From header are both the exempt person (a role in
/// `exempt_roles`, through the directory) or both exempt addresses: a From header alone is
/// easily written, and a colleague's mail relayed with the head's envelope is not the head's.
fn disclaimer_exempt(
    envelope: &Envelope,
    summary: &MessageSummary,
    config: &Config,
    directory: &Directory,
) -> bool {
    let Some(from) = summary.from_address.as_deref() else {
        return false;
    };
    let sender = envelope.mail_from.as_str();
    let listed = |a: &str| {
        config
            .disclaimer
            .exempt_addresses
            .iter()
            .any(|e| e.0.eq_ignore_ascii_case(a.trim()))
    };
    if listed(sender) && listed(from) {
        return true;
    }
    match (directory.person(sender), directory.person(from)) {
        (Some(a), Some(b)) => {
            std::ptr::eq(a, b) && config.disclaimer.exempt_roles.contains(&a.role)
        }
        _ => false,
    }
}

/// Reads From/To/Cc/Subject/Message-ID. Contains a parser panic (a hostile message can cause
/// one in mail-parser 0.11): such a message is summarised as malformed, never lost.
pub fn summarise(message: &[u8]) -> MessageSummary {
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        let msg = mail_parser::MessageParser::new().parse_headers(message)?;
        let list = |a: Option<&mail_parser::Address<'_>>| -> Vec<String> {
            a.map(|a| a.iter().map(show_addr).collect())
                .unwrap_or_default()
        };
        Some(MessageSummary {
            from: msg.from().and_then(|a| a.first()).map(show_addr),
            from_address: msg
                .from()
                .and_then(|a| a.first())
                .and_then(|a| a.address.as_deref())
                .map(str::to_string),
            to: list(msg.to()),
            cc: list(msg.cc()),
            recipients: [msg.to(), msg.cc()]
                .into_iter()
                .flatten()
                .flat_map(|a| a.iter())
                .filter_map(|a| {
                    let addr = a.address.as_deref()?.to_string();
                    Some((a.name.as_deref().map(str::to_string), addr))
                })
                .collect(),
            subject: msg.subject().map(str::to_string),
            message_id: msg.message_id().map(str::to_string),
            malformed: false,
        })
    }));
    match parsed {
        Ok(Some(summary)) => summary,
        _ => MessageSummary {
            malformed: true,
            ..MessageSummary::default()
        },
    }
}

fn show_addr(a: &mail_parser::Addr<'_>) -> String {
    match (&a.name, &a.address) {
        (Some(name), Some(addr)) => format!("{name} <{addr}>"),
        (None, Some(addr)) => addr.to_string(),
        (Some(name), None) => name.to_string(),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_reads_the_headers() {
        let m = b"From: Tom Baker <t.baker@example-academy.sch.uk>\r\nTo: a@x.example, b@y.example\r\nSubject: Trip\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n";
        let s = summarise(m);
        assert_eq!(
            s.from.as_deref(),
            Some("Tom Baker <t.baker@example-academy.sch.uk>")
        );
        assert_eq!(s.to, vec!["a@x.example", "b@y.example"]);
        assert_eq!(s.subject.as_deref(), Some("Trip"));
        assert_eq!(s.message_id.as_deref(), Some("1@x"));
        assert!(!s.malformed);
    }

    #[test]
    fn garbage_is_summarised_not_lost() {
        let s = summarise(b"\x00\xff\xfe");
        assert!(s.subject.is_none());
    }
}
