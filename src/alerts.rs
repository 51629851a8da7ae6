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
/// header or one line of a mail schoolgate writes: every character [`crate::display::is_unsafe`]
/// names (control characters C0, DEL and C1 with U+0085, the line and paragraph separators
/// U+2028/U+2029, the bidirectional overrides and isolates) becomes a space, so an
/// encoded CR LF in a Subject can neither add a header nor start a line of its own. Every
/// composer (alerts, notices, checkpoints, reports) passes message data through this.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if crate::display::is_unsafe(c) { ' ' } else { c })
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
/// [`concerns_escalation`], `[safeguarding] escalate_to` (the other DSLs when that names nobody else).
/// Never the sender themselves; empty when nobody is left.
pub fn alert_recipients(config: &Config, directory: &Directory, sender: &str) -> Vec<String> {
    let s = &config.safeguarding;
    // Everyone on `list` but the sender (by address, or as the same directory person).
    let others = |list: &[crate::config::Address]| {
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
    };
    if concerns_escalation(config, directory, sender) {
        let escalated = others(&s.escalate_to);
        if !escalated.is_empty() {
            return escalated;
        }
    }
    others(&s.dsl)
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
    /// The SHA-256 of the release link's token the notice carries, kept (with the quarantine
    /// id and the sender) once the notice is queued; never spooled.
    #[serde(skip)]
    pub release_link: Option<String>,
}

/// The one-time link in a notice that lets the sender release the message themselves.
pub struct SelfReleaseLink<'a> {
    pub url: &'a str,
    /// When it stops working, as the notice says it.
    pub until: &'a str,
}

/// What the notice says about one finding that holds the message (an attachment, the text, the
/// recipients).
pub struct HeldAttachment<'a> {
    pub attachment: &'a str,
    /// The finding's detail: counts and the file's name, never its content.
    pub detail: &'a str,
    /// The rule's stable name: it chooses what the notice tells the sender to do.
    pub rule: &'a str,
}

/// What the sender of a message held by `rule` is told to do about it, beside asking the
/// network manager; `None` when there is nothing they can do themselves.
pub fn notice_advice(rule: &str) -> Option<&'static str> {
    match rule {
        "unencrypted-sensitive-attachment" => Some(
            "School policy: personal data leaving the school must be encrypted. Send the \
             message again with the attachment encrypted: a password-protected file (in \
             Word or Excel: File > Info > Protect > Encrypt with Password) or an encrypted \
             (AES) ZIP. Give the recipient the password another way, by phone for example.",
        ),
        "sensitive-data-in-body" => Some(
            "School policy: personal data leaving the school must be encrypted. Take the \
             personal data out of the message text and send it as an encrypted attachment \
             (a password-protected file or an AES ZIP); give the password another way.",
        ),
        "exposed-recipients" => Some(
            "Every recipient can see every address in To and Cc, which shares the families' \
             addresses with each other. Send the message again with the recipients in Bcc \
             (and your own address in To).",
        ),
        "wrong-recipient" => Some(
            "Check the recipients: the message names a pupil, and none of the parents it \
             goes to is that pupil's parent.",
        ),
        "password-in-message" => Some(
            "The password of the encrypted attachment is written in the same message, so \
             anyone who receives it can open the attachment. Send the message again without \
             the password and give it to the recipient another way, by phone for example.",
        ),
        _ => None,
    }
}

/// Words wrapped to the notice's width, indented under a "  - " bullet.
fn bullet(text: &str) -> String {
    let mut out = String::from("  -");
    let mut width = 3;
    for word in text.split_whitespace() {
        if width + 1 + word.len() > 84 {
            out.push_str("\n   ");
            width = 3;
        }
        out.push(' ');
        out.push_str(word);
        width += 1 + word.len();
    }
    out.push('\n');
    out
}

/// Whether `address` is in one of the school's own domains (`[school] domains` or
/// `pupil_domains`): the only addresses a sender notice may go to. An envelope sender is only
/// a claim; a school-branded notice to an outside address would be backscatter.
pub fn is_school_address(config: &Config, address: &str) -> bool {
    let Some((local, domain)) = address.trim().rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !address.chars().any(|c| c.is_control() || c.is_whitespace())
        && config
            .school
            .domains
            .iter()
            .chain(&config.school.pupil_domains)
            .any(|d| d.0.eq_ignore_ascii_case(domain))
}

/// The headers every mail schoolgate writes carries, besides `Subject` and `To`.
fn builder<'x>(
    from: &'x str,
    subject: String,
    id: String,
    now: jiff::Timestamp,
) -> mail_builder::MessageBuilder<'x> {
    let subject = one_line(&subject);
    let builder = mail_builder::MessageBuilder::new().from(("schoolgate", from));
    // Text that looks like an encoded word would be decoded by the reader's mail program
    // (into a line break, say); mail-builder writes such ASCII text as it is, so encode it here.
    let builder = if subject.contains("=?") {
        builder.header(
            "Subject",
            mail_builder::headers::raw::Raw::new(encoded_words(&subject)),
        )
    } else {
        builder.subject(subject)
    };
    builder
        .date(now.as_second())
        .message_id(one_line(&id))
        .header(
            "Auto-Submitted",
            mail_builder::headers::raw::Raw::new("auto-generated"),
        )
}

/// `text` as RFC 2047 encoded words (`Q`, UTF-8), each at most 75 characters, space-separated
/// so that the header folds between them.
fn encoded_words(text: &str) -> String {
    const PREFIX: &str = "=?utf-8?Q?";
    const ROOM: usize = 75 - PREFIX.len() - 2;
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        let mut encoded = String::new();
        if c == ' ' {
            encoded.push('_');
        } else if c.is_ascii_alphanumeric() || matches!(c, '!' | '*' | '+' | '-' | '/') {
            encoded.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                encoded.push_str(&format!("={b:02X}"));
            }
        }
        if word.len() + encoded.len() > ROOM {
            words.push(format!("{PREFIX}{word}?="));
            word.clear();
        }
        word.push_str(&encoded);
    }
    if !word.is_empty() || words.is_empty() {
        words.push(format!("{PREFIX}{word}?="));
    }
    words.join(" ")
}

/// `body` as the text part: 7-bit as it is when it is ASCII in lines SMTP carries (so the
/// `Audit checkpoint:` line reads, and copies, whole even from the raw mail); otherwise
/// mail-builder's quoted-printable or base64.
fn text_part(body: String) -> mail_builder::mime::MimePart<'static> {
    let content_type = mail_builder::headers::content_type::ContentType::new("text/plain")
        .attribute("charset", "utf-8");
    if body.is_ascii() && body.lines().all(|l| l.len() <= 998) {
        let mut crlf = body.replace('\n', "\r\n");
        if !crlf.ends_with("\r\n") {
            crlf.push_str("\r\n");
        }
        mail_builder::mime::MimePart::new(content_type, crlf).transfer_encoding("7bit")
    } else {
        mail_builder::mime::MimePart::new(content_type, body)
    }
}

/// `addresses` as a `To:` header, each made one line.
fn to_header(addresses: &[String]) -> Vec<mail_builder::headers::address::Address<'static>> {
    addresses
        .iter()
        .map(|d| mail_builder::headers::address::Address::from(one_line(d)))
        .collect()
}

/// The notice to `sender` that their message was held (SPEC, "Sender notice"): which
/// attachment, why, and what to do. It never contains the sensitive content. Everything taken
/// from the message (subject, recipients, file names) is made [`one_line`].
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
    release: Option<&SelfReleaseLink<'_>>,
) -> std::io::Result<Vec<u8>> {
    let subject_line = one_line(subject.unwrap_or("(no subject)"));
    let quarantine_id = one_line(quarantine_id);
    let school = one_line(school);
    let mut body = format!(
        "Your message has not been sent.\n\n  To:        {}\n  Subject:   {subject_line}\n  Reference: {quarantine_id}\n\n\
         {school}'s mail gateway is holding it for the network manager to review, because:\n\n",
        one_line(&recipients.join(", ")),
    );
    for h in held {
        body.push_str(&format!("  - {}\n", one_line(h.detail)));
    }
    let encrypt = held
        .iter()
        .any(|h| h.rule == "unencrypted-sensitive-attachment");
    body.push_str("\nWhat to do:\n");
    let mut advised: Vec<&str> = Vec::new();
    for advice in held.iter().filter_map(|h| notice_advice(h.rule)) {
        if !advised.contains(&advice) {
            advised.push(advice);
            body.push_str(&bullet(advice));
        }
    }
    if let Some(link) = release {
        body.push_str(&format!(
            "  - If you have checked it and it is right to send it as it is, you may release it\n\
             \x20   yourself: open the link below, say in one line why, and it goes. Your reason\n\
             \x20   and your address are kept in the audit trail and shown to the network manager.\n\
             \x20   The link works once, until {}:\n\n\
             \x20   {}\n\n",
            one_line(link.until),
            one_line(link.url),
        ));
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
    builder(from, format!("Message held: {subject_line}"), id, now)
        .to(to_header(&[sender.to_string()]))
        .body(text_part(body))
        .write_to_vec()
}

/// How an alert is addressed and what it says about itself.
#[derive(Debug, Clone)]
pub struct AlertMail<'a> {
    /// The sender of alerts (`Config::alert_from`).
    pub from: &'a str,
    /// Who it goes to ([`alert_recipients`]).
    pub to: &'a [String],
    pub school: &'a str,
    /// The alert is about the headteacher or a DSL and goes to `escalate_to` (or the other DSLs).
    pub escalated: bool,
    /// When the previous alert about this sender went, when this one follows it up.
    pub follows: Option<jiff::Timestamp>,
    /// The head of the audit chain (`SEQ`, `HASH`) when the alert is sent.
    pub checkpoint: Option<(u64, &'a str)>,
    pub now: jiff::Timestamp,
}

/// The line an alert carries the audit chain's head on; `audit verify --checkpoint` takes the
/// `SEQ:HASH` after it.
pub fn checkpoint_line(seq: u64, hash: &str) -> String {
    format!("Audit checkpoint: {seq}:{hash}")
}

/// The alert for `items` (all from one sender), as RFC 5322 bytes. It names every flag it
/// covers; every value taken from a message is made [`one_line`], so a subject cannot add a
/// line (an `Outcome:` of its own) or a header.
pub fn compose(items: &[Flagged], mail: &AlertMail<'_>) -> std::io::Result<Vec<u8>> {
    let sender = one_line(items.first().map_or("", |i| i.sender.as_str()));
    let school = one_line(mail.school);
    let mut rules: Vec<String> = items
        .iter()
        .flat_map(|i| i.flags.iter().map(|f| one_line(&f.rule)))
        .collect();
    rules.sort_unstable();
    rules.dedup();
    let what = if items.len() == 1 {
        format!("{} ({sender})", rules.join(", "))
    } else {
        format!(
            "{} messages from {sender} ({})",
            items.len(),
            rules.join(", ")
        )
    };
    let subject = match (mail.escalated, mail.follows.is_some()) {
        (true, _) => format!("Safeguarding alert (escalated): {what}"),
        (false, true) => format!("Safeguarding alert (follow-up): {what}"),
        (false, false) => format!("Safeguarding alert: {what}"),
    };
    let mut body = format!(
        "schoolgate, the outbound mail gateway of {school}, flagged {} sent by {sender}.\n\n",
        if items.len() == 1 {
            "a message".to_string()
        } else {
            format!("{} messages", items.len())
        }
    );
    if mail.escalated {
        body.push_str(
            "This alert is escalated: the sender is the headteacher or a designated\n\
             safeguarding lead, so it goes to [safeguarding] escalate_to and never to them.\n\n",
        );
    }
    if let Some(t) = mail.follows {
        body.push_str(&format!(
            "This follows up the alert sent at {t} about the same sender: these are the\n\
             flags recorded since then.\n\n"
        ));
    }
    for (n, item) in items.iter().enumerate() {
        body.push_str(&format!("Message {} of {}\n", n + 1, items.len()));
        body.push_str(&format!("  Time:        {}\n", one_line(&item.time)));
        body.push_str(&format!("  From:        {}\n", one_line(&item.sender)));
        body.push_str(&format!(
            "  To:          {}\n",
            one_line(&item.recipients.join(", "))
        ));
        body.push_str(&format!(
            "  Subject:     {}\n",
            one_line(item.subject.as_deref().unwrap_or("(none)"))
        ));
        body.push_str(&format!("  Outcome:     {}\n", one_line(&item.outcome)));
        for f in &item.flags {
            body.push_str(&format!(
                "  Rule:        {} ({})\n",
                one_line(&f.rule),
                one_line(&f.action)
            ));
            body.push_str(&format!("    Found:     {}\n", one_line(&f.detail)));
            body.push_str(&format!("    Evidence:  {}\n", one_line(&f.evidence)));
        }
        body.push_str(&format!(
            "  To open it: audit record {} (queue id {}){}\n\n",
            item.audit_seq,
            one_line(&item.queue_id),
            match &item.evidence {
                Some(e) => format!(
                    "; the copy as delivered is kept on the gateway as {}",
                    one_line(e)
                ),
                None => String::new(),
            }
        ));
    }
    body.push_str(
        "Each flagged message is a case to review (the web page's Flags, or `schoolgate flags\n\
         review SEQ --outcome ... --note ... --as YOUR-ACCOUNT`, SEQ being its audit record).\n\
         Export the audit trail for this person with:\n  schoolgate audit export --person ",
    );
    body.push_str(&sender);
    body.push_str(" --format csv --as YOUR-ACCOUNT\n");
    if let Some((seq, hash)) = mail.checkpoint {
        body.push_str(&format!(
            "\nKeep this mail: the line below is the audit trail's head as this alert was sent.\n\
             `schoolgate audit verify --checkpoint SEQ:HASH` shows whether any record before it\n\
             was since changed or removed.\n{}\n",
            checkpoint_line(seq, &one_line(hash))
        ));
    }
    let id = format!(
        "{}.{}.alert@schoolgate",
        mail.now.as_millisecond(),
        items.first().map_or(0, |i| i.audit_seq)
    );
    builder(mail.from, subject, id, mail.now)
        .to(to_header(mail.to))
        .body(text_part(body))
        .write_to_vec()
}

/// Whether the queued flags of one sender are due to be alerted at `now`: at once when no alert
/// about this sender went within `window` (the first flag is alerted immediately); otherwise when
/// the window after that alert closes, in one follow-up. `oldest` is when the oldest of them was
/// recorded: no flag waits longer than `window` after that, whatever `last_sent` says (after a
/// restart, for example).
pub fn alert_due(
    now: jiff::Timestamp,
    last_sent: Option<jiff::Timestamp>,
    oldest: jiff::Timestamp,
    window: std::time::Duration,
) -> bool {
    let window = jiff::SignedDuration::try_from(window).unwrap_or(jiff::SignedDuration::MAX);
    let elapsed = |since: jiff::Timestamp| now.duration_since(since) >= window;
    match last_sent {
        None => true,
        Some(t) => elapsed(t) || elapsed(oldest),
    }
}

/// How long to wait before trying an alert, notice or checkpoint mail again after `failures`
/// failed attempts: 5 s, doubling each time, never more than an hour.
pub fn retry_after(failures: u32) -> std::time::Duration {
    const FIRST: u64 = 5;
    const MOST: u64 = 3600;
    let doublings = failures.saturating_sub(1).min(20);
    std::time::Duration::from_secs((FIRST << doublings).min(MOST))
}

/// How long mail schoolgate writes is tried before it gives up on it: two days.
pub const GIVE_UP_AFTER: std::time::Duration = std::time::Duration::from_secs(2 * 24 * 3600);

/// The prefix of the audit record written when schoolgate gives up on mail it wrote (the web
/// page and the weekly report find them by it).
pub const UNDELIVERED: &str = "mail-undelivered:";

/// The detail of that record: `what` (`alert`, `notice`, `checkpoint`), the audit records it was
/// about, who it was for and why it was not delivered.
pub fn undelivered_detail(what: &str, seqs: &[u64], to: &[String], why: &str) -> String {
    let seqs: Vec<String> = seqs.iter().map(u64::to_string).collect();
    format!(
        "{UNDELIVERED} {what} for audit records {} to {} not delivered: {}",
        if seqs.is_empty() {
            "-".to_string()
        } else {
            seqs.join(", ")
        },
        one_line(&to.join(", ")),
        one_line(why)
    )
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
    fn checkpoint_mail_is_on_and_daily_by_default_and_escalate_to_is_read() {
        let text = include_str!("../policies/example.toml")
            .replace("checkpoint_mail = true\n", "")
            .replace("checkpoint_mail_interval = \"1d\"\n", "");
        let config = match Config::parse(std::path::Path::new("x.toml"), &text) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert!(config.audit.checkpoint_mail);
        assert_eq!(
            config.audit.checkpoint_mail_interval.0,
            std::time::Duration::from_secs(86_400)
        );
        assert!(config.safeguarding.escalate_to.is_empty());
        let (config, _) = school("\"chair@governors.example\", \"lado@county.example\"");
        assert_eq!(config.safeguarding.escalate_to.len(), 2);
        let bad = include_str!("../policies/example.toml").replace(
            "\n[safeguarding]\n",
            "\n[safeguarding]\nescalate_to = [\"not an address\"]\n",
        );
        let e = match Config::parse(std::path::Path::new("x.toml"), &bad) {
            Ok(_) => panic!("a bad escalate_to address is refused"),
            Err(e) => e,
        };
        assert_eq!(e.field.as_deref(), Some("safeguarding.escalate_to"), "{e}");
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
        // A sole escalation contact is never told about themselves either.
        config.safeguarding.escalate_to =
            vec![crate::config::Address("dsl@example-academy.sch.uk".into())];
        assert_eq!(
            alert_recipients(&config, &directory, "dsl@example-academy.sch.uk"),
            ["deputy@example-academy.sch.uk"]
        );
    }

    fn mail<'a>(from: &'a str, to: &'a [String], now: jiff::Timestamp) -> AlertMail<'a> {
        AlertMail {
            from,
            to,
            school: "Example Academy",
            escalated: false,
            follows: None,
            checkpoint: None,
            now,
        }
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
        let to = ["dsl@example-academy.sch.uk".to_string()];
        let bytes = compose(
            &[item(7, "pupil-personal-address")],
            &mail("schoolgate@example-academy.sch.uk", &to, now),
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
                rule: "unencrypted-sensitive-attachment",
            }],
            "schoolgate@example-academy.sch.uk",
            "Example Academy",
            Some(30),
            now,
            None,
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
        let to = ["dsl@x.sch.uk".to_string()];
        let bytes = compose(&items, &mail("s@x.sch.uk", &to, now)).unwrap();
        let msg = mail_parser::MessageParser::new().parse(&bytes).unwrap();
        assert!(msg.subject().unwrap().contains("3 messages"));
        assert_eq!(msg.body_text(0).unwrap().matches("Message ").count(), 3);
    }

    fn notice_with(subject: &str, recipient: &str, file: &str) -> Vec<u8> {
        let now = "2026-11-23T10:00:00Z".parse().unwrap();
        let detail = format!("\"{file}\" is not encrypted and holds 12 pupils' dates of birth");
        compose_notice(
            "t.baker@example-academy.sch.uk",
            &[recipient.to_string()],
            Some(subject),
            "Q123",
            &[HeldAttachment {
                attachment: file,
                detail: &detail,
                rule: "unencrypted-sensitive-attachment",
            }],
            "schoolgate@example-academy.sch.uk",
            "Example Academy",
            Some(30),
            now,
            None,
        )
        .unwrap()
    }

    #[test]
    fn a_notice_may_carry_the_senders_release_link() {
        let now = "2026-11-23T10:00:00Z".parse().unwrap();
        let url = format!(
            "https://schoolgate.example-academy.sch.uk:8443/release/{}",
            "a1".repeat(32)
        );
        let link = SelfReleaseLink {
            url: &url,
            until: "30 Nov 2026, 10:00 GMT",
        };
        let bytes = compose_notice(
            "t.baker@example-academy.sch.uk",
            &["parent@gmail.com".into()],
            Some("Jamie's report"),
            "Q9",
            &[],
            "schoolgate@example-academy.sch.uk",
            "Example Academy",
            None,
            now,
            Some(&link),
        )
        .unwrap();
        let msg = mail_parser::MessageParser::new().parse(&bytes).unwrap();
        let text = msg.body_text(0).unwrap();
        for needle in [url.as_str(), "30 Nov 2026, 10:00 GMT", "works once", "Q9"] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }

    fn alert_with(subject: &str, recipient: &str, file: &str) -> Vec<u8> {
        let now = "2026-11-23T18:31:00Z".parse().unwrap();
        let mut a = item(7, "pupil-personal-address");
        a.subject = Some(subject.to_string());
        a.recipients = vec![recipient.to_string()];
        a.flags[0].detail = format!("\"{file}\" names {recipient}");
        a.flags[0].evidence = file.to_string();
        let mut b = item(8, "staff-personal-address");
        b.subject = Some(format!("{subject}{file}"));
        let to = ["dsl@example-academy.sch.uk".to_string()];
        let mut m = mail("schoolgate@example-academy.sch.uk", &to, now);
        m.checkpoint = Some((9, "ab12"));
        compose(&[a, b], &m).unwrap()
    }

    /// The header names of `bytes` as mail-parser reads them, in order.
    fn header_names(bytes: &[u8]) -> Vec<String> {
        let msg = mail_parser::MessageParser::new().parse(bytes).unwrap();
        msg.headers()
            .iter()
            .map(|h| h.name().to_ascii_lowercase())
            .collect()
    }

    fn body_lines(bytes: &[u8]) -> Vec<String> {
        let msg = mail_parser::MessageParser::new().parse(bytes).unwrap();
        msg.body_text(0)
            .unwrap()
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    fn squeeze(s: &str) -> String {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    const HEADERS: [&str; 8] = [
        "from",
        "subject",
        "date",
        "message-id",
        "auto-submitted",
        "to",
        "mime-version",
        "content-type",
    ];

    fn expected_headers() -> std::collections::BTreeSet<String> {
        HEADERS
            .iter()
            .map(|h| h.to_string())
            .chain(["content-transfer-encoding".to_string()])
            .collect()
    }

    #[test]
    fn an_encoded_line_break_in_the_subject_adds_no_header_to_the_notice() {
        // What mail-parser makes of `=?UTF-8?Q?x=0D=0AReply-To:_a@evil.example?=`.
        let bytes = notice_with("x\r\nReply-To: a@evil.example", "a@b.example", "f.xlsx");
        let names = header_names(&bytes);
        assert!(
            !names.iter().any(|n| n == "reply-to" || n == "bcc"),
            "{names:?}"
        );
        let msg = mail_parser::MessageParser::new().parse(&bytes).unwrap();
        assert_eq!(
            msg.subject(),
            Some("Message held: x  Reply-To: a@evil.example")
        );
        // Text that reads as an encoded word is encoded, so it cannot decode to a line break.
        let bytes = notice_with("=?UTF-8?Q?x=0D=0ABcc:_a@evil.example?=", "a@b.example", "f");
        let msg = mail_parser::MessageParser::new().parse(&bytes).unwrap();
        assert_eq!(
            msg.subject(),
            Some("Message held: =?UTF-8?Q?x=0D=0ABcc:_a@evil.example?=")
        );
        assert!(!header_names(&bytes).iter().any(|n| n == "bcc"));
    }

    #[test]
    fn an_encoded_line_break_in_the_subject_adds_no_line_to_the_alert() {
        let bytes = alert_with(
            "Homework\nOutcome: rejected (false positive, no action needed)",
            "jamie.smith2010@gmail.com",
            "f.xlsx",
        );
        let lines = body_lines(&bytes);
        let outcomes: Vec<&String> = lines
            .iter()
            .filter(|l| l.trim_start().starts_with("Outcome:"))
            .collect();
        assert_eq!(outcomes.len(), 2, "{lines:#?}");
        assert!(
            outcomes
                .iter()
                .all(|l| l.as_str() == "  Outcome:     delivered")
        );
        assert!(
            lines.iter().any(|l| l
                == "  Subject:     Homework Outcome: rejected (false positive, no action needed)")
        );
        assert!(
            lines.contains(&"Audit checkpoint: 9:ab12".to_string()),
            "{lines:#?}"
        );
        // In an ASCII alert the line is whole in the raw mail too, a full hash included.
        let now = "2026-11-23T18:31:00Z".parse().unwrap();
        let to = ["dsl@example-academy.sch.uk".to_string()];
        let hash = "0123456789abcdef".repeat(4);
        let mut m = mail("schoolgate@example-academy.sch.uk", &to, now);
        m.checkpoint = Some((48213, &hash));
        let raw = compose(&[item(7, "pupil-personal-address")], &m).unwrap();
        let raw = String::from_utf8_lossy(&raw);
        assert!(
            raw.contains(&format!("\r\nAudit checkpoint: 48213:{hash}\r\n")),
            "{raw}"
        );
    }

    #[test]
    fn escalated_and_follow_up_alerts_say_so() {
        let now: jiff::Timestamp = "2026-11-23T18:31:00Z".parse().unwrap();
        let to = ["chair@governors.example".to_string()];
        let mut m = mail("s@x.sch.uk", &to, now);
        m.escalated = true;
        let msg_bytes = compose(&[item(1, "pupil-personal-address")], &m).unwrap();
        let msg = mail_parser::MessageParser::new().parse(&msg_bytes).unwrap();
        assert!(
            msg.subject()
                .unwrap()
                .starts_with("Safeguarding alert (escalated): ")
        );
        assert!(msg.body_text(0).unwrap().contains("escalate_to"));
        m.escalated = false;
        m.follows = Some("2026-11-23T18:30:00Z".parse().unwrap());
        let msg_bytes = compose(&[item(2, "pupil-personal-address")], &m).unwrap();
        let msg = mail_parser::MessageParser::new().parse(&msg_bytes).unwrap();
        assert!(
            msg.subject()
                .unwrap()
                .starts_with("Safeguarding alert (follow-up): ")
        );
        assert!(msg.body_text(0).unwrap().contains("2026-11-23T18:30:00Z"));
    }

    #[test]
    fn the_first_flag_goes_at_once_and_later_ones_when_the_window_closes() {
        let t = |s: &str| -> jiff::Timestamp { s.parse().unwrap() };
        let w = std::time::Duration::from_secs(6);
        // Nothing sent about this sender yet: at once.
        assert!(alert_due(
            t("2026-01-01T10:00:00Z"),
            None,
            t("2026-01-01T10:00:00Z"),
            w
        ));
        // An alert went at :00; a flag at :02 waits until :06.
        let sent = Some(t("2026-01-01T10:00:00Z"));
        assert!(!alert_due(
            t("2026-01-01T10:00:05Z"),
            sent,
            t("2026-01-01T10:00:02Z"),
            w
        ));
        assert!(alert_due(
            t("2026-01-01T10:00:06Z"),
            sent,
            t("2026-01-01T10:00:02Z"),
            w
        ));
        // A flag older than the window (left from before a restart) never waits longer.
        assert!(alert_due(
            t("2026-01-01T10:00:01Z"),
            sent,
            t("2026-01-01T09:59:50Z"),
            w
        ));
    }

    #[test]
    fn retries_back_off_from_seconds_to_an_hour() {
        assert_eq!(retry_after(1), std::time::Duration::from_secs(5));
        assert_eq!(retry_after(2), std::time::Duration::from_secs(10));
        assert_eq!(retry_after(5), std::time::Duration::from_secs(80));
        assert_eq!(retry_after(30), std::time::Duration::from_secs(3600));
        assert_eq!(retry_after(u32::MAX), std::time::Duration::from_secs(3600));
    }

    #[test]
    fn undelivered_records_start_with_their_prefix_and_name_what_and_why() {
        let d = undelivered_detail(
            "alert",
            &[3, 5],
            &["dsl@x.sch.uk".into()],
            "refused: 550 no\r\nsuch user",
        );
        assert_eq!(
            d,
            "mail-undelivered: alert for audit records 3, 5 to dsl@x.sch.uk not delivered: refused: 550 no  such user"
        );
    }

    #[test]
    fn notices_go_only_to_the_schools_own_domains() {
        let (config, _) = school("");
        assert!(is_school_address(&config, "t.baker@example-academy.sch.uk"));
        assert!(is_school_address(&config, "T.Baker@EXAMPLE-ACADEMY.SCH.UK"));
        assert!(is_school_address(
            &config,
            "j.smith@pupils.example-academy.sch.uk"
        ));
        for outside in [
            "anyone@outside.example",
            "x@example-academy.sch.uk.evil.example",
            "x@sub.example-academy.sch.uk",
            "example-academy.sch.uk",
            "@example-academy.sch.uk",
            "a\r\nb@example-academy.sch.uk",
        ] {
            assert!(!is_school_address(&config, outside), "{outside}");
        }
    }

    /// Message text as an attacker writes it: anything, with line breaks, separators and
    /// encoded-word look-alikes more likely than chance gives.
    fn hostile() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            any::<String>(),
            "([a-zA-Z :@<>,\"=?_.-]|\r|\n|\t|\u{0}|\u{7f}|\u{85}|\u{9b}|\u{2028}|\u{2029}|\r\nReply-To: a@evil.example|\nOutcome: rejected|=\\?UTF-8\\?Q\\?x=0D=0A\\?=|é){0,40}",
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn no_subject_name_or_file_name_changes_the_notices_headers_or_lines(
            subject in hostile(), name in hostile(), file in hostile()
        ) {
            let recipient = format!("{name} <someone@example.org>");
            let bytes = notice_with(&subject, &recipient, &file);
            let names = header_names(&bytes);
            let set: std::collections::BTreeSet<String> = names.iter().cloned().collect();
            proptest::prop_assert_eq!(set.len(), names.len(), "a header twice: {:?}", names);
            proptest::prop_assert_eq!(&set, &expected_headers());
            let msg = mail_parser::MessageParser::new().parse(&bytes).unwrap();
            proptest::prop_assert_eq!(
                squeeze(msg.subject().unwrap_or_default()),
                squeeze(&format!("Message held: {}", one_line(&subject)))
            );
            let lines = body_lines(&bytes);
            let baseline = body_lines(&notice_with("S", "n <someone@example.org>", "f"));
            proptest::prop_assert_eq!(lines.len(), baseline.len());
            for (got, want) in lines.iter().zip(&baseline) {
                if want.starts_with("  Subject:") {
                    let want = format!("  Subject:   {}", one_line(&subject));
                    proptest::prop_assert_eq!(got.trim_end(), want.trim_end());
                } else if want.starts_with("  To:") {
                    let want = format!("  To:        {}", one_line(&recipient));
                    proptest::prop_assert_eq!(got.trim_end(), want.trim_end());
                } else if want.starts_with("  - \"") {
                    proptest::prop_assert!(got.starts_with("  - \""), "{}", got);
                } else {
                    proptest::prop_assert_eq!(got, want);
                }
            }
        }

        #[test]
        fn no_subject_name_or_file_name_changes_the_alerts_headers_or_lines(
            subject in hostile(), name in hostile(), file in hostile()
        ) {
            let recipient = format!("{name} <someone@example.org>");
            let bytes = alert_with(&subject, &recipient, &file);
            let names = header_names(&bytes);
            let set: std::collections::BTreeSet<String> = names.iter().cloned().collect();
            proptest::prop_assert_eq!(set.len(), names.len(), "a header twice: {:?}", names);
            proptest::prop_assert_eq!(&set, &expected_headers());
            let lines = body_lines(&bytes);
            let baseline = body_lines(&alert_with("S", "n <someone@example.org>", "f"));
            proptest::prop_assert_eq!(lines.len(), baseline.len(), "{:#?}", lines);
            // Every line keeps its label: data never starts a line of its own.
            for (got, want) in lines.iter().zip(&baseline) {
                let label = |l: &str| l.split(':').next().unwrap_or_default().to_string();
                if want.starts_with("  ") || want.starts_with("Message ") {
                    proptest::prop_assert_eq!(label(got), label(want), "{}", got);
                } else if !want.starts_with("schoolgate, the outbound") {
                    proptest::prop_assert_eq!(got, want);
                }
            }
            let outcomes = lines.iter().filter(|l| l.trim_start().starts_with("Outcome:")).count();
            proptest::prop_assert_eq!(outcomes, 2);
        }
    }
}
