//! The safeguarding contact rules: staff and pupils meet only through school accounts, in
//! school hours.
//!
//! Seed 000: "I will not use personal email addresses to communicate with pupils, parents or
//! former pupils under the age of 18." Seed 001: "Personal email addresses/telephone numbers
//! must not be shared with pupils or parents"; contact with pupils 8.00 am to 6.00 pm; "'pupil'
//! = anyone 18 or under, including former pupils until 18". Seed 004: "I will only communicate
//! with pupils and parents/carers using official school systems".

use serde::Serialize;

use crate::config::{Action, Config, ContactHours, ContactRule};
use crate::directory::{Directory, Person};
use crate::envelope::Envelope;

/// One rule that matched, with what shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    /// The rule's stable name (SPEC, "Rule names").
    pub rule: &'static str,
    /// What the rule found, in words a DSL reads.
    pub detail: String,
    /// The address, name, number or time that shows it.
    pub evidence: String,
    /// What the policy does about it.
    #[serde(skip)]
    pub action: Action,
}

impl ContactRule {
    /// The rule's stable name.
    pub fn name(self) -> &'static str {
        match self {
            ContactRule::PupilPersonalAddress => "pupil-personal-address",
            ContactRule::StaffPersonalAddress => "staff-personal-address",
            ContactRule::PersonalContactShared => "personal-contact-shared",
            ContactRule::OutOfHoursPupilContact => "out-of-hours-pupil-contact",
        }
    }
}

/// What the contact rules need to know about one message.
pub struct Message<'a> {
    pub envelope: &'a Envelope,
    /// To and Cc from the header: display name and address.
    pub header_recipients: &'a [(Option<String>, String)],
    /// The author's new text (quoted thread removed), worked out only for a message to a pupil.
    pub new_text: &'a dyn Fn() -> String,
    /// When the gateway received it.
    pub received: jiff::Timestamp,
}

/// Runs the four contact rules; returns the flags of those that matched and are not `off`.
pub fn check(m: &Message<'_>, config: &Config, directory: &Directory) -> Vec<Flag> {
    // A bounce (null sender) is the mail system speaking, not a member of staff.
    if m.envelope.mail_from.trim().is_empty() {
        return Vec::new();
    }
    let rules = &config.safeguarding.rules;
    let action = |r: ContactRule| rules.get(&r).copied().unwrap_or(Action::Flag);
    let tz = jiff::tz::TimeZone::get(&config.school.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
    let today = m.received.to_zoned(tz.clone()).date();
    let school = |a: &str| is_in(a, config.school.domains.iter().map(|d| d.0.as_str()));
    let pupil_domain = |a: &str| is_in(a, config.school.pupil_domains.iter().map(|d| d.0.as_str()));

    // Every recipient once: envelope (Bcc is only there) and header, lower-cased.
    let mut recipients: Vec<(Option<&str>, String)> = Vec::new();
    for r in &m.envelope.rcpt_to {
        push_unique(&mut recipients, None, r);
    }
    for (name, r) in m.header_recipients {
        push_unique(&mut recipients, name.as_deref(), r);
    }

    let mut flags = Vec::new();
    let mut add = |rule: ContactRule, detail: String, evidence: String| {
        let a = action(rule);
        if a != Action::Off
            && !flags
                .iter()
                .any(|f: &Flag| f.rule == rule.name() && f.evidence == evidence)
        {
            flags.push(Flag {
                rule: rule.name(),
                detail,
                evidence,
                action: a,
            });
        }
    };

    // Who among the recipients is a pupil, and through which address.
    let mut to_pupil = false;
    for (name, addr) in &recipients {
        let person = directory.person(addr);
        match person {
            Some(p) if p.is_pupil(today) => {
                to_pupil = true;
                if p.has_personal_email(addr) {
                    add(
                        ContactRule::PupilPersonalAddress,
                        format!("{addr} is a personal address of the pupil {}", p.name),
                        addr.clone(),
                    );
                }
            }
            Some(_) => {}
            None if pupil_domain(addr) => to_pupil = true,
            None => {
                if school(addr) || pupil_domain(addr) {
                    continue;
                }
                if let Some(name) = name
                    && let Some(p) = directory.pupil_named(name, today)
                {
                    to_pupil = true;
                    add(
                        ContactRule::PupilPersonalAddress,
                        format!(
                            "{addr} is not a school address but is addressed to \"{name}\", the name of the pupil {}",
                            p.name
                        ),
                        format!("{name} <{addr}>"),
                    );
                }
            }
        }
    }
    if !to_pupil {
        return flags;
    }

    // Staff personal addresses alongside a pupil, or a sender outside the school.
    for (_, addr) in &recipients {
        if let Some(p) = directory.person(addr)
            && p.is_staff()
            && p.has_personal_email(addr)
        {
            add(
                ContactRule::StaffPersonalAddress,
                format!(
                    "a message to a pupil also goes to {addr}, a personal address of {}",
                    p.name
                ),
                addr.clone(),
            );
        }
    }
    let sender = m.envelope.mail_from.to_lowercase();
    if !school(&sender) && !pupil_domain(&sender) {
        let who = directory
            .person(&sender)
            .map(|p| format!(" ({})", p.name))
            .unwrap_or_default();
        add(
            ContactRule::StaffPersonalAddress,
            format!(
                "a message to a pupil was sent from {sender}{who}, which is not a school address"
            ),
            sender.clone(),
        );
    }

    // Personal contact details in the author's own text.
    let sender_person = directory.person(&sender);
    shared_contacts(
        &(m.new_text)(),
        sender_person,
        &school,
        &pupil_domain,
        &recipients,
        &mut |detail, evidence| add(ContactRule::PersonalContactShared, detail, evidence),
    );

    // Out of hours, in the school's time zone.
    let hours = config.safeguarding.contact_hours.unwrap_or_default();
    let local = m.received.to_zoned(tz);
    if !in_hours(&hours, &local) {
        add(
            ContactRule::OutOfHoursPupilContact,
            "a message to a pupil was sent outside the school's contact hours".into(),
            local.strftime("%a %d %b %Y %H:%M %Z").to_string(),
        );
    }
    flags
}

fn push_unique<'a>(list: &mut Vec<(Option<&'a str>, String)>, name: Option<&'a str>, addr: &str) {
    let addr = addr.trim().to_lowercase();
    if addr.is_empty() {
        return;
    }
    match list.iter_mut().find(|(_, a)| *a == addr) {
        Some(entry) => {
            if entry.0.is_none() {
                entry.0 = name;
            }
        }
        None => list.push((name, addr)),
    }
}

fn is_in<'a>(addr: &str, mut domains: impl Iterator<Item = &'a str>) -> bool {
    let Some((_, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let domain = domain.trim_end_matches('>').to_ascii_lowercase();
    domains.any(|d| domain == d)
}

fn in_hours(h: &ContactHours, t: &jiff::Zoned) -> bool {
    let day = t.weekday().to_monday_zero_offset() as u8;
    let minute = t.hour() as u16 * 60 + t.minute() as u16;
    let within = if h.start.0 <= h.end.0 {
        h.start.0 <= minute && minute < h.end.0
    } else {
        minute >= h.start.0 || minute < h.end.0
    };
    h.days.contains(day) && within
}

/// Personal addresses and UK mobile numbers written in `text`.
fn shared_contacts(
    text: &str,
    sender: Option<&Person>,
    school: &dyn Fn(&str) -> bool,
    pupil_domain: &dyn Fn(&str) -> bool,
    recipients: &[(Option<&str>, String)],
    add: &mut dyn FnMut(String, String),
) {
    for addr in addresses_in(text) {
        if school(&addr) || pupil_domain(&addr) || recipients.iter().any(|(_, r)| *r == addr) {
            continue;
        }
        let whose = match sender {
            Some(p) if p.has_personal_email(&addr) => {
                format!("the sender's own personal address ({})", p.name)
            }
            _ => "a personal (non-school) address".into(),
        };
        add(format!("a message to a pupil gives {whose}: {addr}"), addr);
    }
    let listed: Vec<String> = sender
        .map(|p| p.personal_phones.iter().map(|n| digits(n)).collect())
        .unwrap_or_default();
    for number in mobiles_in(text) {
        let d = digits(&number);
        let whose = if listed.iter().any(|l| same_number(l, &d)) {
            "the sender's own personal phone number"
        } else {
            "a mobile phone number"
        };
        add(
            format!("a message to a pupil gives {whose}: {number}"),
            number,
        );
    }
}

/// Mail addresses in free text, lower-cased.
fn addresses_in(text: &str) -> Vec<String> {
    let is_local = |c: char| c.is_ascii_alphanumeric() || ".!#$%&'*+/=?^_`{|}~-".contains(c);
    let is_domain = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    let mut out: Vec<String> = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        if c != '@' {
            continue;
        }
        let start = chars[..k]
            .iter()
            .rev()
            .take_while(|(_, c)| is_local(*c))
            .last()
            .map(|(j, _)| *j);
        let end = chars[k + 1..]
            .iter()
            .take_while(|(_, c)| is_domain(*c))
            .last()
            .map(|(j, c)| j + c.len_utf8());
        if let (Some(s), Some(e)) = (start, end) {
            let local = text[s..i].trim_matches('.');
            let domain = text[i + 1..e].trim_matches(|c| c == '.' || c == '-');
            if !local.is_empty() && domain.contains('.') {
                let a = format!("{local}@{domain}").to_lowercase();
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// UK mobile numbers (07xxx xxxxxx, +44 7xxx xxxxxx, with spaces, dots or dashes), as written.
fn mobiles_in(text: &str) -> Vec<String> {
    // A no-break space between the digits is a space.
    let text = text.replace('\u{a0}', " ");
    let text = text.as_str();
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = (b[i] == b'0' && b.get(i + 1) == Some(&b'7')) || b[i..].starts_with(b"+44");
        let boundary = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if starts && boundary {
            let mut j = i;
            let mut n = 0;
            while j < b.len() && (b[j].is_ascii_digit() || b" .-()+".contains(&b[j])) && n < 14 {
                if b[j].is_ascii_digit() {
                    n += 1;
                }
                j += 1;
            }
            let number = text[i..j]
                .trim_end_matches([' ', '.', '-', '('])
                .to_string();
            let d = digits(&number);
            // 07…, +44 7…, and +44 (0)7… as people write it.
            let mobile = (d.len() == 11 && d.starts_with("07"))
                || (d.len() == 12 && d.starts_with("447"))
                || (d.len() == 13 && d.starts_with("4407"));
            let ends = j >= b.len() || !b[j].is_ascii_digit();
            if mobile && ends {
                if !out.contains(&number) {
                    out.push(number);
                }
                i = j;
                continue;
            }
        }
        i += 1;
    }
    out
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// 07700900123, 447700900123 and 4407700900123 are the same number.
fn same_number(a: &str, b: &str) -> bool {
    let national = |s: &str| match s.strip_prefix("44") {
        Some(rest) if rest.starts_with('0') => rest.to_string(),
        Some(rest) => format!("0{rest}"),
        None => s.to_string(),
    };
    national(a) == national(b)
}

#[cfg(test)]
mod tests;
