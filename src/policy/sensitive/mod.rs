//! Sensitive attachments (seeds 000–003). Seed 000: "Where personal data is transferred outside
//! the secure school network, it must be encrypted"; seed 002: "Any attachments containing
//! sensitive or confidential information should be encrypted so that the information is only
//! accessible by the intended recipient".
//!
//! Each attachment is opened ([`extract`]) within hard limits ([`limits`]), checked for
//! encryption ([`encryption`]), and its text read by the detectors ([`detect`]). The
//! thresholds of `[sensitive]` turn what they count into a finding:
//! `unencrypted-sensitive-attachment`, or `unscannable-attachment` when it could not be opened.

pub mod body;
pub mod detect;
pub mod encryption;
pub mod extract;
pub mod limits;

use std::borrow::Cow;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Action, Config, SensitiveRule, Thresholds};
use crate::directory::Directory;
use crate::mime::charset::Charset;
use crate::mime::encoding::qp_decode;
use crate::mime::tree::{self, Part};
use detect::{Evidence, Tally, Vocabulary};
use encryption::Protection;
use extract::{Contents, Text};
use limits::{Budget, Unscannable};

impl SensitiveRule {
    /// The rule's stable name (SPEC, "Rule names").
    pub fn name(self) -> &'static str {
        match self {
            SensitiveRule::UnencryptedSensitiveAttachment => "unencrypted-sensitive-attachment",
            SensitiveRule::UnscannableAttachment => "unscannable-attachment",
            SensitiveRule::SensitiveDataInBody => "sensitive-data-in-body",
        }
    }
}

/// What the sensitive-attachment rules found in one attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule's stable name.
    pub rule: &'static str,
    /// The attachment's file name as the sender sees it.
    pub attachment: String,
    /// Which attachment it is: its 1-based place in [`attachments`] (the same list the
    /// quarantine page shows), so a finding stays with its part whatever the part's name.
    /// `None` for a finding about the message as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<usize>,
    /// What was found, in words the network manager and the sender read (never the data).
    pub detail: String,
    /// Each detector that counted something, with its count of distinct values.
    pub detectors: Vec<DetectorCount>,
    /// Where, which detector, and a masked sample.
    pub evidence: Vec<Evidence>,
    /// What the policy does about it.
    #[serde(skip)]
    pub action: Action,
}

impl Finding {
    /// A finding for an attachment walk that failed inside schoolgate (a bug, contained): the
    /// message is treated as unscannable rather than let through unread.
    pub fn internal_error(config: &Config) -> Finding {
        let action = config
            .sensitive
            .rules
            .get(&SensitiveRule::UnscannableAttachment)
            .copied()
            .unwrap_or(Action::Quarantine);
        Finding {
            rule: SensitiveRule::UnscannableAttachment.name(),
            attachment: "(all attachments)".into(),
            part: None,
            detail: "the attachments could not be inspected: internal error in schoolgate".into(),
            detectors: Vec::new(),
            evidence: Vec::new(),
            action,
        }
    }

    /// Why the message is refused, for the sender (SMTP reply text; never the data).
    pub fn refusal(&self) -> String {
        if self.rule == SensitiveRule::UnscannableAttachment.name() {
            format!(
                "The attachment \"{}\" could not be checked for pupils' personal data; ask the network manager",
                self.attachment
            )
        } else {
            format!(
                "The attachment \"{}\" holds personal data and is not encrypted; encrypt it (a password-protected file) and send it again",
                self.attachment
            )
        }
    }
}

/// One attachment as the audit trail lists it (SPEC, "Audit trail": name, type, size, SHA-256,
/// encrypted or not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachmentInfo {
    pub name: String,
    /// Its declared `type/subtype`.
    pub mime_type: String,
    /// Decoded size in bytes.
    pub size: u64,
    /// SHA-256 of the decoded file.
    pub sha256: String,
    /// How it is encrypted, when it is ("AES-256 ZIP", "password-protected PDF").
    pub encrypted: Option<String>,
}

/// What the attachment rules saw in a message.
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    pub attachments: Vec<AttachmentInfo>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DetectorCount {
    pub detector: &'static str,
    pub count: usize,
}

/// One attachment of a message: where it is and what it is called.
struct Attachment<'a> {
    part: &'a Part,
    name: String,
}

/// Checks every attachment of `message` (the findings of [`inspect`]).
pub fn check(
    message: &[u8],
    config: &Config,
    directory: &Directory,
    today: jiff::civil::Date,
) -> Vec<Finding> {
    inspect(message, config, directory, today).findings
}

/// Lists every attachment of `message` and, unless both rules are off, checks each one.
pub fn inspect(
    message: &[u8],
    config: &Config,
    directory: &Directory,
    today: jiff::civil::Date,
) -> Inspection {
    let s = &config.sensitive;
    let action = |r: SensitiveRule| s.rules.get(&r).copied().unwrap_or(Action::Quarantine);
    let on_sensitive = action(SensitiveRule::UnencryptedSensitiveAttachment);
    let on_unscannable = action(SensitiveRule::UnscannableAttachment);
    let rules_on = on_sensitive != Action::Off || on_unscannable != Action::Off;
    let root = tree::scan(message);
    let mut inspection = Inspection::default();
    let mut attachments = Vec::new();
    collect(message, &root, &mut attachments);
    // A message encrypted as a whole (S/MIME, PGP/MIME) is encrypted for its recipient: its
    // parts are ciphertext, listed as such and not read.
    if whole_message_encrypted(message, &root) {
        return inspection;
    }
    if rules_on
        && on_unscannable != Action::Off
        && let Some(unseen) = unseen_by_us(message, &root, &attachments)
    {
        inspection.findings.push(Finding {
            rule: SensitiveRule::UnscannableAttachment.name(),
            detail: format!(
                "\"{unseen}\" could not be inspected: a header line that is neither a field nor \
                 a continuation makes mail programs read this message differently, and some \
                 of them see an attachment there"
            ),
            attachment: unseen,
            part: None,
            detectors: Vec::new(),
            evidence: Vec::new(),
            action: on_unscannable,
        });
    }
    // Parts nested past the MIME walk's limit were not looked into: what they hold (a class
    // list, say) would reach the recipient unread, so the message is held.
    if rules_on
        && on_unscannable != Action::Off
        && let Some((attachment, why)) = unsplit(&root)
    {
        inspection.findings.push(Finding {
            rule: SensitiveRule::UnscannableAttachment.name(),
            attachment: attachment.into(),
            part: None,
            detail: format!("the message could not be inspected: {why}"),
            detectors: Vec::new(),
            evidence: Vec::new(),
            action: on_unscannable,
        });
    }
    let budget = Budget::new(&s.limits);
    let vocabulary = Vocabulary::new(&s.keywords, &s.markings);
    let marked = message_marking(message, &root, config);
    for (i, a) in attachments.into_iter().enumerate() {
        let part = Some(i + 1);
        let mut info = AttachmentInfo {
            name: a.name.clone(),
            mime_type: a.part.mime_type().to_string(),
            size: 0,
            sha256: String::new(),
            encrypted: None,
        };
        let mut contents = Contents::default();
        let opened = open_attachment(message, &a, &budget, &mut contents, &mut info, rules_on);
        inspection.attachments.push(info);
        if !rules_on {
            continue;
        }
        match opened {
            Err(why) => {
                if on_unscannable != Action::Off {
                    inspection.findings.push(Finding {
                        rule: SensitiveRule::UnscannableAttachment.name(),
                        attachment: a.name.clone(),
                        part,
                        detail: format!("\"{}\" could not be inspected: {why}", a.name),
                        detectors: Vec::new(),
                        evidence: Vec::new(),
                        action: on_unscannable,
                    });
                }
            }
            Ok(Opened::Encrypted) => {}
            Ok(Opened::Clear) => {
                if on_sensitive == Action::Off {
                    if contents.truncated && on_unscannable != Action::Off {
                        inspection
                            .findings
                            .push(truncated(&a.name, part, on_unscannable));
                    }
                    continue;
                }
                let names = directory.detector_names(today);
                let tally = detect::scan_named(&contents.texts, &names, today, &vocabulary);
                let labelled = contents
                    .labels
                    .iter()
                    .find(|l| label_listed(l, &s.labels))
                    .cloned();
                let reasons = judge(
                    &tally,
                    &s.thresholds,
                    marked.as_deref(),
                    labelled.as_deref(),
                );
                if !reasons.is_empty() {
                    inspection.findings.push(Finding {
                        rule: SensitiveRule::UnencryptedSensitiveAttachment.name(),
                        attachment: a.name.clone(),
                        part,
                        detail: format!(
                            "\"{}\" is not encrypted and holds {}",
                            a.name,
                            and_list(&reasons)
                        ),
                        detectors: tally
                            .by_detector
                            .iter()
                            .filter(|(_, n)| *n > 0)
                            .map(|&(detector, count)| DetectorCount { detector, count })
                            .collect(),
                        evidence: tally.evidence.clone(),
                        action: on_sensitive,
                    });
                } else if contents.truncated && on_unscannable != Action::Off {
                    // What was read is clean, but the rest was not read at all.
                    inspection
                        .findings
                        .push(truncated(&a.name, part, on_unscannable));
                }
            }
        }
    }
    inspection
}

/// One attachment as the quarantine page lists it: the same list, in the same order, that
/// [`inspect`] numbers its findings by ([`Finding::part`]).
#[derive(Debug, Clone)]
pub struct Listed {
    /// 1-based.
    pub part: usize,
    pub name: String,
    pub mime_type: String,
    /// Decoded size in bytes.
    pub size: usize,
    pub protection: Protection,
}

/// Every attachment of `message`, as [`inspect`] walks them (its names, its order).
pub fn attachments(message: &[u8]) -> Vec<Listed> {
    let root = tree::scan(message);
    let mut found = Vec::new();
    collect(message, &root, &mut found);
    found
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let body = decode_body(message, a.part).unwrap_or(Cow::Borrowed(&[]));
            Listed {
                part: i + 1,
                name: a.name.clone(),
                mime_type: a.part.mime_type().to_string(),
                size: body.len(),
                protection: encryption::of_part(
                    a.part.mime_type(),
                    &a.part.content_type.params,
                    &a.name,
                    &body,
                ),
            }
        })
        .collect()
}

/// Whether `message` is text only: no attachment for [`inspect`] to open (every leaf part an
/// unnamed `text/plain` or `text/html` body) and no part left unsplit at a limit. What the
/// relay asks before checking a small message on its own worker rather than a blocking
/// thread: the time such a message takes is its body's reading, in proportion to its size.
pub fn text_only(message: &[u8]) -> bool {
    let root = tree::scan(message);
    let mut found = Vec::new();
    collect(message, &root, &mut found);
    found.is_empty() && unsplit(&root).is_none()
}

/// Where the MIME walk stopped at a limit, if it did: what the finding names, and why.
fn unsplit(root: &Part) -> Option<(&'static str, Unscannable)> {
    if root.any_too_deep() {
        Some((
            "(parts nested too deep)",
            Unscannable::PartsTooDeep(tree::MAX_DEPTH),
        ))
    } else if root.any_too_many() {
        Some((
            "(too many parts)",
            Unscannable::TooMany(format!("it has more than {} MIME parts", tree::MAX_PARTS)),
        ))
    } else {
        None
    }
}

/// An attachment whose text ran past [`limits::MAX_TEXT`]: only its start was read.
fn truncated(name: &str, part: Option<usize>, action: Action) -> Finding {
    Finding {
        rule: SensitiveRule::UnscannableAttachment.name(),
        attachment: name.to_string(),
        part,
        detail: format!(
            "\"{name}\" could not be inspected: it holds more than {} MiB of text, and only \
             the first {} MiB were read",
            limits::MAX_TEXT >> 20,
            limits::MAX_TEXT >> 20
        ),
        detectors: Vec::new(),
        evidence: Vec::new(),
        action,
    }
}

enum Opened {
    Clear,
    Encrypted,
}

fn open_attachment(
    raw: &[u8],
    a: &Attachment<'_>,
    budget: &Budget,
    out: &mut Contents,
    info: &mut AttachmentInfo,
    read: bool,
) -> Result<Opened, Unscannable> {
    let body = decode_body(raw, a.part)?;
    info.size = body.len() as u64;
    info.sha256 = hex::encode(Sha256::digest(&body));
    let protection = encryption::of_part(
        a.part.mime_type(),
        &a.part.content_type.params,
        &a.name,
        &body,
    );
    if let Protection::Encrypted(how) = protection {
        info.encrypted = Some(how.to_string());
        return Ok(Opened::Encrypted);
    }
    if !read {
        return Ok(Opened::Clear);
    }
    budget.charge(body.len() as u64)?;
    if a.part.mime_type() == "message/rfc822" || a.part.mime_type() == "message/global" {
        open_message(&a.name, &body, budget, 1, out)?;
        return Ok(Opened::Clear);
    }
    extract::extract(&a.name, &a.name, a.part.mime_type(), &body, budget, 1, out)?;
    // A file that is wholly encrypted leaves nothing to read and says so.
    if let Some((_, how)) = out.encrypted.iter().find(|(l, _)| l == &a.name)
        && out.texts.is_empty()
    {
        info.encrypted = Some(how.to_string());
        return Ok(Opened::Encrypted);
    }
    Ok(Opened::Clear)
}

/// Opens an attached message (message/rfc822, or an .eml inside an archive): its text and its
/// own attachments, `depth` levels down. Used by [`extract`] too.
pub(crate) fn open_message(
    location: &str,
    bytes: &[u8],
    budget: &Budget,
    depth: usize,
    out: &mut Contents,
) -> Result<(), Unscannable> {
    budget.enter(depth)?;
    let root = tree::scan(bytes);
    if whole_message_encrypted(bytes, &root) {
        out.encrypted
            .push((location.to_string(), "an encrypted message"));
        return Ok(());
    }
    if let Some((_, why)) = unsplit(&root) {
        return Err(why);
    }
    let mut bodies = Vec::new();
    collect_bodies(&root, &mut bodies);
    for part in bodies {
        let decoded = decode_body(bytes, part)?;
        budget.charge(decoded.len() as u64)?;
        let text = text_of(part, &decoded);
        let text = if part.mime_type() == "text/html" {
            let mut inner = Contents::default();
            extract::extract(
                location,
                "",
                "text/html",
                text.as_bytes(),
                budget,
                depth,
                &mut inner,
            )?;
            inner
                .texts
                .into_iter()
                .map(|t| t.text)
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            text
        };
        out.texts.push(Text {
            location: location.to_string(),
            text,
        });
    }
    let mut attachments = Vec::new();
    collect(bytes, &root, &mut attachments);
    for a in attachments {
        let inner = format!("{location} › {}", a.name);
        let body = decode_body(bytes, a.part)?;
        budget.charge(body.len() as u64)?;
        match encryption::of_part(
            a.part.mime_type(),
            &a.part.content_type.params,
            &a.name,
            &body,
        ) {
            Protection::Encrypted(how) => out.encrypted.push((inner, how)),
            _ if a.part.mime_type() == "message/rfc822" => {
                open_message(&inner, &body, budget, depth + 1, out)?
            }
            _ => extract::extract(
                &inner,
                &a.name,
                a.part.mime_type(),
                &body,
                budget,
                depth + 1,
                out,
            )?,
        }
    }
    Ok(())
}

/// Which reasons, if any, make an attachment sensitive.
fn judge(
    tally: &Tally,
    thresholds: &Thresholds,
    marked: Option<&str>,
    labelled: Option<&str>,
) -> Vec<String> {
    let reached = |count: usize, threshold: u32| threshold > 0 && count >= threshold as usize;
    let mut reasons = Vec::new();
    if reached(tally.identifiers, thresholds.identifiers) {
        reasons.push(plural(
            tally.identifiers,
            "pupil or staff identifier (UPN, ULN, NHS or NI number)",
            "pupil or staff identifiers (UPN, ULN, NHS or NI numbers)",
        ));
    }
    if reached(tally.birth_dates, thresholds.birth_dates) {
        reasons.push(plural(
            tally.birth_dates,
            "date of birth beside a name",
            "dates of birth beside names",
        ));
    }
    if reached(tally.special_category, thresholds.special_category) {
        reasons.push(plural(
            tally.special_category,
            "pupil with special-category or safeguarding information",
            "pupils with special-category or safeguarding information",
        ));
    }
    if let Some(m) = tally.markings.first() {
        reasons.push(format!("the protective marking {m}"));
    } else if let Some(m) = marked {
        reasons.push(format!("the message is marked {m}"));
    }
    if let Some(l) = labelled {
        reasons.push(format!("the sensitivity label {l}"));
    }
    reasons
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn label_listed(found: &str, listed: &[String]) -> bool {
    let found = found.to_ascii_lowercase();
    listed.iter().any(|l| {
        let l = l.trim().to_ascii_lowercase();
        !l.is_empty() && found.contains(&l)
    })
}

/// A protective marking at the start of the subject, or a sensitivity label of the policy's in
/// the `msip_labels` header: it applies to every attachment of the message.
fn message_marking(raw: &[u8], root: &Part, config: &Config) -> Option<String> {
    let s = &config.sensitive;
    if let Some(subject) = root.header.value(raw, "subject") {
        let subject = decode_words(&subject);
        let squashed = squash(&subject);
        if let Some(m) = s.markings.iter().find(|m| {
            let m = squash(m);
            !m.is_empty() && squashed.contains(&m)
        }) {
            return Some(m.clone());
        }
    }
    for field in root
        .header
        .fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("msip_labels"))
    {
        let value = crate::mime::header::unfold(&raw[field.value.clone()]);
        for label in value.split(';') {
            if label_listed(label, &s.labels) {
                return Some(format!("with the sensitivity label {}", label.trim()));
            }
        }
    }
    None
}

/// Upper-case letters and digits only: "Official - Sensitive" and "OFFICIAL_SENSITIVE" compare
/// equal.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_uppercase)
        .collect()
}

fn whole_message_encrypted(raw: &[u8], root: &Part) -> bool {
    let t = root.mime_type();
    if t == "multipart/encrypted" {
        return true;
    }
    if t == "application/pkcs7-mime" || t == "application/x-pkcs7-mime" {
        let body = decode_body(raw, root).unwrap_or_default();
        return matches!(
            encryption::of_part(t, &root.content_type.params, "", &body),
            Protection::Encrypted(_)
        );
    }
    false
}

/// The attachments: every leaf that is not a body text, and every attached message.
fn collect<'a>(raw: &[u8], part: &'a Part, out: &mut Vec<Attachment<'a>>) {
    if part.is_multipart() {
        if part.mime_type() == "multipart/encrypted" {
            return;
        }
        for c in &part.children {
            collect(raw, c, out);
        }
        return;
    }
    let name = file_name(raw, part);
    let body_text = matches!(part.mime_type(), "text/plain" | "text/html")
        && name.is_none()
        && !part.is_attachment();
    if body_text {
        return;
    }
    let name = name.unwrap_or_else(|| default_name(part.mime_type(), out.len() + 1));
    out.push(Attachment { part, name });
}

/// The text parts that are a message's own body (not attachments).
fn collect_bodies<'a>(part: &'a Part, out: &mut Vec<&'a Part>) {
    if part.is_multipart() {
        for c in &part.children {
            collect_bodies(c, out);
        }
        return;
    }
    let named = part.content_type.param("name").is_some()
        || part
            .disposition
            .as_ref()
            .is_some_and(|d| d.param("filename").is_some());
    if matches!(part.mime_type(), "text/plain" | "text/html") && !named && !part.is_attachment() {
        out.push(part);
    }
}

/// The file name the sender gave (Content-Disposition filename, else Content-Type name).
fn file_name(raw: &[u8], part: &Part) -> Option<String> {
    let _ = raw;
    part.disposition
        .as_ref()
        .and_then(|d| d.param("filename"))
        .or_else(|| part.content_type.param("name"))
        .map(decode_words)
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
}

fn default_name(mime_type: &str, n: usize) -> String {
    if mime_type == "message/rfc822" {
        format!("attached message {n}")
    } else {
        format!("unnamed attachment {n} ({mime_type})")
    }
}

/// When a header section of `message` ends at a stray line, the name of an attachment that
/// another reader (mail-parser, which reads past such a line as many mail programs do) finds
/// and our walk does not. Without this, a line like `X` above a part's Content-Type would hide
/// a class list from the check while the recipient's mail program still shows it.
fn unseen_by_us(message: &[u8], root: &Part, ours: &[Attachment<'_>]) -> Option<String> {
    if !root.any_stray_header_line() {
        return None;
    }
    let theirs: Vec<String> = std::panic::catch_unwind(|| {
        mail_parser::MessageParser::default()
            .parse(message)
            .map(|m| {
                m.attachments()
                    .map(|a| {
                        crate::mime::attachment_name(message, a)
                            .unwrap_or_else(|| "(unnamed)".to_string())
                    })
                    .collect()
            })
            .unwrap_or_default()
    })
    .unwrap_or_else(|_| vec!["(unreadable)".to_string()]);
    if theirs.len() <= ours.len() {
        return None;
    }
    theirs
        .iter()
        .find(|name| !ours.iter().any(|a| &a.name == *name))
        .or(theirs.first())
        .cloned()
}

/// RFC 2047 encoded words (`=?utf-8?B?…?=`) in a file name or subject, decoded.
fn decode_words(s: &str) -> String {
    if !s.contains("=?") {
        return s.to_string();
    }
    let header = format!("Subject: {s}\r\n\r\n");
    std::panic::catch_unwind(|| {
        mail_parser::MessageParser::new()
            .parse_headers(header.as_bytes())
            .and_then(|m| m.subject().map(str::to_string))
    })
    .ok()
    .flatten()
    .unwrap_or_else(|| s.to_string())
}

/// A part's body with its transfer encoding undone. Base64 is read leniently (stray bytes
/// skipped, as mail clients do): the recipient will open what a client opens.
fn decode_body<'a>(raw: &'a [u8], part: &Part) -> Result<Cow<'a, [u8]>, Unscannable> {
    let body = &raw[part.body()];
    Ok(match part.encoding.as_str() {
        "base64" => Cow::Owned(base64_lenient(body)),
        "quoted-printable" => Cow::Owned(qp_decode(body)),
        _ => Cow::Borrowed(body),
    })
}

fn base64_lenient(encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut n = 0;
    for &b in encoded {
        let v = BASE64[usize::from(b)];
        if v < 64 {
            acc = (acc << 6) | u32::from(v);
            n += 1;
            if n == 4 {
                out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
                acc = 0;
                n = 0;
            }
        } else if v == PAD {
            break;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    out
}

/// Each byte's base64 value (both alphabets, RFC 4648 §4 and §5); [`PAD`] for `=`, 0xFF for
/// anything else (skipped). A table, as a 20 MB attachment is decoded on every message.
const BASE64: [u8; 256] = {
    let mut t = [0xFF; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        t[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    t[b'+' as usize] = 62;
    t[b'-' as usize] = 62;
    t[b'/' as usize] = 63;
    t[b'_' as usize] = 63;
    t[b'=' as usize] = PAD;
    t
};
const PAD: u8 = 0xFE;

/// A body text part decoded to a string, by its charset (UTF-8 when unknown).
fn text_of(part: &Part, decoded: &[u8]) -> String {
    let label = part.content_type.param("charset").unwrap_or("us-ascii");
    let charset = Charset::from_label(label, decoded).unwrap_or(Charset::Utf8);
    charset.decode_lossy(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_message_of_unnamed_text_bodies_is_text_only() {
        let head = "From: t@school.example\r\nTo: x@county.example\r\nSubject: s\r\n";
        let plain = format!("{head}\r\nHello\r\n");
        assert!(text_only(plain.as_bytes()), "no Content-Type: text/plain");
        let alternative = format!(
            "{head}MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nHi\r\n--b\r\n\
             Content-Type: text/html\r\n\r\n<p>Hi</p>\r\n--b--\r\n"
        );
        assert!(text_only(alternative.as_bytes()));
        // Anything the attachment rules would open is not, however it is sent.
        for part in [
            "Content-Type: application/zip\r\nContent-Transfer-Encoding: 8bit\r\n\r\nPK\x03\x04",
            "Content-Type: text/csv\r\n\r\nName,UPN\r\n",
            "Content-Type: text/plain; name=list.txt\r\n\r\nName,UPN\r\n",
            "Content-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nName\r\n",
            "Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi\r\n",
        ] {
            let mixed = format!(
                "{head}MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
                 --b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\n{part}\r\n--b--\r\n"
            );
            assert!(!text_only(mixed.as_bytes()), "{part}");
        }
        // Nested past the MIME walk's limit: not looked into, so not known to be text.
        let depth = crate::mime::tree::MAX_DEPTH + 2;
        let mut deep = format!("{head}MIME-Version: 1.0\r\n");
        for d in 0..depth {
            deep.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{d}\r\n\r\n--b{d}\r\n"
            ));
        }
        deep.push_str("Content-Type: text/plain\r\n\r\nhi\r\n");
        assert!(!text_only(deep.as_bytes()));
    }

    #[test]
    fn lenient_base64_reads_what_clients_read() {
        assert_eq!(base64_lenient(b"aGVs\r\nbG8=\r\n"), b"hello");
        assert_eq!(base64_lenient(b"aGVs bG8"), b"hello");
        assert_eq!(base64_lenient(b"aGk="), b"hi");
        assert_eq!(base64_lenient(b"aA"), b"h", "unpadded tail");
        let all: Vec<u8> = (0..=255).collect();
        let encoded = crate::mime::encoding::base64_encode(&all, 76, b"\r\n", true);
        assert_eq!(base64_lenient(&encoded), all);
    }

    #[test]
    fn markings_compare_without_punctuation_or_case() {
        assert_eq!(squash("Official - Sensitive"), squash("OFFICIAL_SENSITIVE"));
    }

    #[test]
    fn a_class_list_inside_outlooks_winmail_dat_is_found() {
        let upns = ["H801200001001", "B801200005001", "X00180001701A"];
        let csv: String = std::iter::once("Name,UPN".to_string())
            .chain(
                upns.iter()
                    .enumerate()
                    .map(|(n, u)| format!("Pupil{n} Surname{n},{u}")),
            )
            .collect::<Vec<_>>()
            .join("\n");
        let tnef = extract::tnef_for_tests(&[("class list.csv", csv.as_bytes())]);
        let body = crate::mime::encoding::base64_encode(&tnef, 76, b"\r\n", true);
        let mut message = b"From: t@school.example\r\nTo: x@county.example\r\nSubject: list\r\n\
            MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
            Content-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\n\
            Content-Type: application/ms-tnef; name=winmail.dat\r\n\
            Content-Transfer-Encoding: base64\r\n\r\n"
            .to_vec();
        message.extend_from_slice(&body);
        message.extend_from_slice(b"--b--\r\n");
        let config = crate::config::Config::parse(
            std::path::Path::new("t.toml"),
            "[school]\nname = \"S\"\ndomains = [\"school.example\"]\ndirectory = \"d.csv\"\n\
             [relay]\nlisten = [\"127.0.0.1:2525\"]\nhostname = \"h\"\nallowed_clients = [\"127.0.0.1/32\"]\n\
             next_hop = \"outbox:o\"\n[storage]\nstate_dir = \"v\"\n[disclaimer]\ntext = \"\"\n",
        )
        .unwrap();
        let directory = Directory::default();
        let findings = check(
            &message,
            &config,
            &directory,
            jiff::civil::date(2026, 11, 23),
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].attachment, "winmail.dat");
        assert!(
            findings[0].detail.contains("3 pupil or staff identifiers"),
            "{}",
            findings[0].detail
        );
    }

    fn test_config() -> Config {
        Config::parse(
            std::path::Path::new("t.toml"),
            "[school]\nname = \"S\"\ndomains = [\"school.example\"]\ndirectory = \"d.csv\"\n\
             [relay]\nlisten = [\"127.0.0.1:2525\"]\nhostname = \"h\"\nallowed_clients = [\"127.0.0.1/32\"]\n\
             next_hop = \"outbox:o\"\n[storage]\nstate_dir = \"v\"\n[disclaimer]\ntext = \"\"\n",
        )
        .unwrap()
    }

    /// A message with `csv` attached inside `levels` nested multipart/mixed parts.
    fn csv_nested(levels: usize, csv: &str) -> Vec<u8> {
        let mut m = b"From: t@school.example\r\nTo: x@county.example\r\nSubject: list\r\nMIME-Version: 1.0\r\n".to_vec();
        for i in 0..levels {
            m.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                    .as_bytes(),
            );
        }
        m.extend_from_slice(
            format!(
                "Content-Type: text/csv; name=pupils.csv\r\n\
                 Content-Disposition: attachment; filename=pupils.csv\r\n\r\n{csv}\r\n"
            )
            .as_bytes(),
        );
        for i in (0..levels).rev() {
            m.extend_from_slice(format!("--b{i}--\r\n").as_bytes());
        }
        m
    }

    #[test]
    fn a_csv_nested_past_the_mime_limit_is_held_as_unscannable() {
        let config = test_config();
        let today = jiff::civil::date(2026, 11, 23);
        let dir = Directory::default();
        // Within the limit the file is read (a clean one is delivered)...
        let within = csv_nested(tree::MAX_DEPTH, "Name,Score\nAda,3");
        assert!(check(&within, &config, &dir, today).is_empty());
        // ...past it, whatever it holds is held unread.
        for levels in [tree::MAX_DEPTH + 1, 40, 200] {
            let deep = csv_nested(levels, "Name,Score\nAda,3");
            let findings = check(&deep, &config, &dir, today);
            assert_eq!(findings.len(), 1, "{levels}: {findings:?}");
            assert_eq!(findings[0].rule, "unscannable-attachment");
            assert_eq!(findings[0].action, Action::Quarantine);
            assert!(
                findings[0].detail.contains("nested more than 32"),
                "{}",
                findings[0].detail
            );
        }
    }

    #[test]
    fn a_message_of_more_parts_than_the_walk_reads_is_held() {
        let mut m = b"From: t@school.example\r\nTo: x@county.example\r\nSubject: parts\r\n\
            MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            .to_vec();
        for _ in 0..tree::MAX_PARTS {
            m.extend_from_slice(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n");
        }
        m.extend_from_slice(
            b"--b\r\nContent-Type: text/csv; name=pupils.csv\r\n\r\nName,UPN\r\n--b--\r\n",
        );
        let findings = check(
            &m,
            &test_config(),
            &Directory::default(),
            jiff::civil::date(2026, 11, 23),
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].attachment, "(too many parts)");
        assert!(
            findings[0].detail.contains("more than 10000 MIME parts"),
            "{}",
            findings[0].detail
        );
    }

    #[test]
    fn an_attached_message_nested_past_the_mime_limit_is_unscannable() {
        let inner = csv_nested(tree::MAX_DEPTH + 1, "Name,Score\nAda,3");
        let mut m = b"From: t@school.example\r\nTo: x@county.example\r\nSubject: fwd\r\n\
            MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n\
            Content-Type: message/rfc822\r\n\r\n"
            .to_vec();
        m.extend_from_slice(&inner);
        m.extend_from_slice(b"\r\n--o--\r\n");
        let findings = check(
            &m,
            &test_config(),
            &Directory::default(),
            jiff::civil::date(2026, 11, 23),
        );
        assert!(
            findings
                .iter()
                .any(|f| f.rule == "unscannable-attachment"
                    && f.detail.contains("nested more than 32")),
            "{findings:?}"
        );
    }

    #[test]
    fn reasons_read_as_a_sentence() {
        let tally = Tally {
            identifiers: 30,
            birth_dates: 30,
            ..Tally::default()
        };
        let reasons = judge(&tally, &Thresholds::default(), None, None);
        assert_eq!(
            and_list(&reasons),
            "30 pupil or staff identifiers (UPN, ULN, NHS or NI numbers) and 30 dates of birth beside names"
        );
    }
}
