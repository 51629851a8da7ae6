//! The DSL alert: one plain mail per sender and burst of flagged messages, composed here
//! without I/O; the relay's alert sender spools and sends it.
//!
//! SPEC, "Alerts and notices": rule, sender, recipients, time, subject, the evidence, and how to
//! open the message. Never the message itself, never an attachment of it: the DSL opens the
//! kept evidence (by audit record) on the gateway. Research/peers.md warns of alert fatigue:
//! flags from one sender within `safeguarding.alert_window` become one alert.

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::directory::Directory;
use crate::store::FlagRecord;

/// Text from a message (a subject, a display name, a file name, an address), made safe for one
/// header or one line of a mail schoolgate writes: every control character (C0, DEL, C1) and
/// every Unicode line or paragraph separator (U+0085, U+2028, U+2029) becomes a space, so an
/// encoded CR LF in a Subject can neither add a header nor start a line of its own. Every
/// composer (alerts, notices, checkpoints, reports) passes message data through this.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Whether an alert about `sender` must be escalated: the sender is the headteacher (a person in
/// the directory whose role is `headteacher`) or one of `[safeguarding] dsl`, the people alerts
/// go to. Such an alert goes to `[safeguarding] escalate_to`, never to the person it is about;
/// the same decides who sees their cases on the web page. Pure: no I/O.
pub fn concerns_escalation(config: &Config, directory: &Directory, sender: &str) -> bool {
    let sender = sender.trim();
    let is_dsl = config
        .safeguarding
        .dsl
        .iter()
        .any(|d| d.0.trim().eq_ignore_ascii_case(sender));
    let is_head = directory
        .person(sender)
        .is_some_and(|p| p.role.eq_ignore_ascii_case("headteacher"));
    is_dsl || is_head
}

/// Who an alert about `sender` goes to: `[safeguarding] dsl`, or when it
/// [`concerns_escalation`], `[safeguarding] escalate_to` (the other DSLs when that is empty).
/// Never the sender themselves; empty when nobody is left.
pub fn alert_recipients(config: &Config, directory: &Directory, sender: &str) -> Vec<String> {
    let s = &config.safeguarding;
    let list = if concerns_escalation(config, directory, sender) && !s.escalate_to.is_empty() {
        &s.escalate_to
    } else {
        &s.dsl
    };
    let mut to: Vec<String> = Vec::new();
    for a in list {
        let a = a.0.trim();
        let is_sender = a.eq_ignore_ascii_case(sender.trim())
            || directory
                .person(a)
                .zip(directory.person(sender))
                .is_some_and(|(x, y)| std::ptr::eq(x, y));
        if !is_sender && !to.iter().any(|t| t.eq_ignore_ascii_case(a)) {
            to.push(a.to_string());
        }
    }
    to
}

/// One flagged message, as the alert describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flagged {
    /// The message's audit record.
    pub audit_seq: u64,
    pub queue_id: String,
    /// When the gateway received it (UTC, RFC 3339).
    pub time: String,
    /// The envelope sender.
    pub sender: String,
    pub recipients: Vec<String>,
    #[serde(default)]
    pub subject: Option<String>,
    pub flags: Vec<FlagRecord>,
    /// What happened to the message (`delivered`, `rejected`, …).
    #[serde(default)]
    pub outcome: String,
    /// Where the delivered copy is kept, when it is.
    #[serde(default)]
    pub evidence: Option<String>,
}

/// A notice to the sender of a held message, composed and waiting to be sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// The held message's audit record.
    pub audit_seq: u64,
    /// The held message's quarantine id.
    pub quarantine_id: String,
    /// The sender it goes to (the held message's envelope sender).
    pub to: String,
    /// The notice as RFC 5322 text (7-bit: mail-builder encodes what is not).
    pub message: String,
}

/// What the notice says about one attachment.
pub struct HeldAttachment<'a> {
    pub attachment: &'a str,
    /// The finding's detail: counts and the file's name, never its content.
    pub detail: &'a str,
    pub unscannable: bool,
}

/// The notice to `sender` that their message was held (SPEC, "Sender notice"): which
/// attachment, why, and what to do. It never contains the sensitive content.
#[allow(clippy::too_many_arguments)]
pub fn compose_notice(
    sender: &str,
    recipients: &[String],
    subject: Option<&str>,
    quarantine_id: &str,
    held: &[HeldAttachment<'_>],
    from: &str,
    school: &str,
    retention_days: Option<u32>,
    now: jiff::Timestamp,
) -> std::io::Result<Vec<u8>> {
    let subject_line = subject.unwrap_or("(no subject)");
    let mut body = format!(
        "Your message has not been sent.\n\n  To:        {}\n  Subject:   {subject_line}\n  Reference: {quarantine_id}\n\n\
         {school}'s mail gateway is holding it for the network manager to review, because:\n\n",
        recipients.join(", "),
    );
    for h in held {
        body.push_str(&format!("  - {}\n", h.detail));
    }
    let encrypt = held.iter().any(|h| !h.unscannable);
    body.push_str("\nWhat to do:\n");
    if encrypt {
        body.push_str(
            "  - School policy: personal data leaving the school must be encrypted. Send the\n\
             \x20   message again with the attachment encrypted: a password-protected file (in\n\
             \x20   Word or Excel: File > Info > Protect > Encrypt with Password) or an encrypted\n\
             \x20   (AES) ZIP. Give the recipient the password another way, by phone for example.\n",
        );
    }
    body.push_str(&format!(
        "  - If the message must go as it is, or you think it was held by mistake, ask the\n\
         \x20   network manager to review it, quoting the reference {quarantine_id}.\n",
    ));
    if encrypt {
        body.push_str("  - Sending the same attachment again unencrypted will be held again.\n");
    }
    if let Some(days) = retention_days {
        body.push_str(&format!(
            "\nA held message that nobody releases is deleted after {days} days.\n"
        ));
    }
    body.push_str("\nThis notice was sent automatically; replies are not read.\n");
    let id = format!("{}.{quarantine_id}.notice@schoolgate", now.as_millisecond());
    mail_builder::MessageBuilder::new()
        .from(("schoolgate", from))
        .to(sender)
        .subject(format!("Message held: {subject_line}"))
        .date(now.as_second())
        .message_id(id)
        .header(
            "Auto-Submitted",
            mail_builder::headers::raw::Raw::new("auto-generated"),
        )
        .text_body(body)
        .write_to_vec()
}

/// The alert for `items` (all from one sender), from `from` to the DSLs, as RFC 5322 bytes.
pub fn compose(
    items: &[Flagged],
    from: &str,
    dsl: &[String],
    school: &str,
    now: jiff::Timestamp,
) -> std::io::Result<Vec<u8>> {
    let sender = items.first().map_or("", |i| i.sender.as_str());
    let mut rules: Vec<&str> = items
        .iter()
        .flat_map(|i| i.flags.iter().map(|f| f.rule.as_str()))
        .collect();
    rules.sort_unstable();
    rules.dedup();
    let subject = if items.len() == 1 {
        format!("Safeguarding alert: {} ({sender})", rules.join(", "))
    } else {
        format!(
            "Safeguarding alert: {} messages from {sender} ({})",
            items.len(),
            rules.join(", ")
        )
    };
    let mut body = format!(
        "schoolgate, the outbound mail gateway of {school}, flagged {} sent by {sender}.\n\n",
        if items.len() == 1 {
            "a message".to_string()
        } else {
            format!("{} messages", items.len())
        }
    );
    for (n, item) in items.iter().enumerate() {
        body.push_str(&format!("Message {} of {}\n", n + 1, items.len()));
        body.push_str(&format!("  Time:        {}\n", item.time));
        body.push_str(&format!("  From:        {}\n", item.sender));
        body.push_str(&format!("  To:          {}\n", item.recipients.join(", ")));
        body.push_str(&format!(
            "  Subject:     {}\n",
            item.subject.as_deref().unwrap_or("(none)")
        ));
        body.push_str(&format!("  Outcome:     {}\n", item.outcome));
        for f in &item.flags {
            body.push_str(&format!("  Rule:        {} ({})\n", f.rule, f.action));
            body.push_str(&format!("    Found:     {}\n", f.detail));
            body.push_str(&format!("    Evidence:  {}\n", f.evidence));
        }
        body.push_str(&format!(
            "  To open it: audit record {} (queue id {}){}\n\n",
            item.audit_seq,
            item.queue_id,
            match &item.evidence {
                Some(e) => format!("; the copy as delivered is kept on the gateway as {e}"),
                None => String::new(),
            }
        ));
    }
    body.push_str(
        "Export the audit trail for this person with:\n  schoolgate audit export --person ",
    );
    body.push_str(sender);
    body.push_str(" --format csv\n");
    let id = format!(
        "{}.{}.alert@schoolgate",
        now.as_millisecond(),
        items.first().map_or(0, |i| i.audit_seq)
    );
    mail_builder::MessageBuilder::new()
        .from(("schoolgate", from))
        .to(dsl
            .iter()
            .map(|d| mail_builder::headers::address::Address::from(d.as_str()))
            .collect::<Vec<_>>())
        .subject(subject)
        .date(now.as_second())
        .message_id(id)
        .header(
            "Auto-Submitted",
            mail_builder::headers::raw::Raw::new("auto-generated"),
        )
        .text_body(body)
        .write_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn school(escalate_to: &str) -> (Config, Directory) {
        let text = format!(
            "{}\n",
            include_str!("../policies/example.toml").replace(
                "\n[safeguarding]\n",
                &format!("\n[safeguarding]\nescalate_to = [{escalate_to}]\n"),
            )
        );
        let config = match Config::parse(std::path::Path::new("example.toml"), &text) {
            Ok(c) => c,
            Err(e) => panic!("the example config with escalate_to: {e}"),
        };
        let directory = match Directory::parse(
            std::path::Path::new("d.csv"),
            include_bytes!("../policies/example-directory.csv"),
            &config.school.staff_roles,
        ) {
            Ok(d) => d,
            Err(e) => panic!("the example directory: {e}"),
        };
        (config, directory)
    }

    #[test]
    fn one_line_replaces_every_control_and_line_separator() {
        assert_eq!(
            one_line("x\r\nReply-To: a@evil.example"),
            "x  Reply-To: a@evil.example"
        );
        for c in [
            '\0', '\t', '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}', '\u{2028}', '\u{2029}',
        ] {
            assert_eq!(one_line(&format!("a{c}b")), "a b", "{:?}", c);
        }
        assert_eq!(one_line("Café — ok"), "Café — ok");
    }

    #[test]
    fn the_headteacher_and_the_dsl_are_escalated_and_never_alerted_about_themselves() {
        let (config, directory) = school("\"chair@governors.example\"");
        assert!(
            config
                .safeguarding
                .dsl
                .iter()
                .any(|d| d.0 == "dsl@example-academy.sch.uk")
        );
        for who in [
            "head@example-academy.sch.uk",
            "HEAD@Example-Academy.sch.uk",
            "dsl@example-academy.sch.uk",
        ] {
            assert!(concerns_escalation(&config, &directory, who), "{who}");
            assert_eq!(
                alert_recipients(&config, &directory, who),
                ["chair@governors.example"]
            );
        }
        let teacher = "t.baker@example-academy.sch.uk";
        assert!(!concerns_escalation(&config, &directory, teacher));
        // Someone the directory does not know is not escalated.
        assert!(!concerns_escalation(
            &config,
            &directory,
            "someone@gmail.example"
        ));
        assert_eq!(
            alert_recipients(&config, &directory, teacher),
            config
                .safeguarding
                .dsl
                .iter()
                .map(|d| d.0.clone())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn without_escalate_to_the_alert_goes_to_the_other_dsls_only() {
        let (mut config, directory) = school("");
        config.safeguarding.dsl = vec![
            crate::config::Address("dsl@example-academy.sch.uk".into()),
            crate::config::Address("deputy@example-academy.sch.uk".into()),
        ];
        assert_eq!(
            alert_recipients(&config, &directory, "dsl@example-academy.sch.uk"),
            ["deputy@example-academy.sch.uk"]
        );
        assert_eq!(
            alert_recipients(&config, &directory, "head@example-academy.sch.uk"),
            [
                "dsl@example-academy.sch.uk",
                "deputy@example-academy.sch.uk"
            ]
        );
    }

    fn item(seq: u64, rule: &str) -> Flagged {
        Flagged {
            audit_seq: seq,
            queue_id: format!("Q{seq}"),
            time: "2026-11-23T18:30:00Z".into(),
            sender: "t.baker@example-academy.sch.uk".into(),
            recipients: vec!["jamie.smith2010@gmail.com".into()],
            subject: Some("Homework".into()),
            flags: vec![FlagRecord {
                rule: rule.into(),
                detail: "jamie.smith2010@gmail.com is a personal address of the pupil Jamie Smith"
                    .into(),
                evidence: "jamie.smith2010@gmail.com".into(),
                action: "flag".into(),
            }],
            outcome: "delivered".into(),
            evidence: Some("evidence/Q1.eml".into()),
        }
    }

    #[test]
    fn an_alert_names_the_rule_sender_evidence_and_how_to_open_it() {
        let now = "2026-11-23T18:31:00Z".parse().unwrap();
        let bytes = compose(
            &[item(7, "pupil-personal-address")],
            "schoolgate@example-academy.sch.uk",
            &["dsl@example-academy.sch.uk".into()],
            "Example Academy",
            now,
        )
        .unwrap();
        let msg = mail_parser::MessageParser::new().parse(&bytes).unwrap();
        assert_eq!(
            msg.subject(),
            Some("Safeguarding alert: pupil-personal-address (t.baker@example-academy.sch.uk)")
        );
        let text = msg.body_text(0).unwrap();
        for needle in [
            "pupil-personal-address",
            "jamie.smith2010@gmail.com",
            "Homework",
            "audit record 7",
            "2026-11-23T18:30:00Z",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert_eq!(msg.attachments().count(), 0);
        assert!(bytes.split(|&b| b == b'\n').all(|l| l.len() <= 998));
    }

    #[test]
    fn a_notice_says_which_attachment_why_and_what_to_do_and_nothing_more() {
        let now = "2026-11-23T10:00:00Z".parse().unwrap();
        let bytes = compose_notice(
            "t.baker@example-academy.sch.uk",
            &["someone@county.gov.example".into()],
            Some("SEN register"),
            "Q123",
            &[HeldAttachment {
                attachment: "SEN register.xlsx",
                detail: "\"SEN register.xlsx\" is not encrypted and holds 12 pupils with special-category or safeguarding information",
                unscannable: false,
            }],
            "schoolgate@example-academy.sch.uk",
            "Example Academy",
            Some(30),
            now,
        )
        .unwrap();
        let msg = mail_parser::MessageParser::new().parse(&bytes).unwrap();
        assert_eq!(msg.subject(), Some("Message held: SEN register"));
        let text = msg.body_text(0).unwrap();
        for needle in [
            "SEN register.xlsx",
            "Q123",
            "encrypt",
            "network manager",
            "30 days",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert_eq!(msg.attachments().count(), 0);
    }

    #[test]
    fn a_burst_is_one_alert() {
        let now = "2026-11-23T18:31:00Z".parse().unwrap();
        let items: Vec<_> = (1..=3)
            .map(|n| item(n, "out-of-hours-pupil-contact"))
            .collect();
        let bytes = compose(&items, "s@x.sch.uk", &["dsl@x.sch.uk".into()], "X", now).unwrap();
        let msg = mail_parser::MessageParser::new().parse(&bytes).unwrap();
        assert!(msg.subject().unwrap().contains("3 messages"));
        assert_eq!(msg.body_text(0).unwrap().matches("Message ").count(), 3);
    }
}
