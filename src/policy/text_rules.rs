//! The rules that read what a message says, in its Subject, its attachments' file names and the
//! text its author wrote ([`author::author_text`], the quoted thread left out):
//!
//! - `sensitive-data-in-body` ([`sensitive::body`]): personal data pasted into the text, going
//!   outside the school;
//! - `wrong-recipient` ([`wrong_recipient`]): the message names pupils and goes only to parents
//!   of other pupils;
//! - `password-in-message` ([`password_in_message`]): an encrypted attachment and its password
//!   in the same message.
//!
//! Each reads the text once; the author's text is worked out once for all three, and only when
//! the message goes outside the school and one of them is on.

use crate::config::{Action, Config, DataProtectionRule, SensitiveRule};
use crate::directory::{Directory, canonical_address};
use crate::envelope::Envelope;
use crate::policy::author::author_text;
use crate::policy::data_protection::{finding, is_outside};
use crate::policy::names::{Named, Reading};
use crate::policy::password;
use crate::policy::sensitive::detect::{Evidence, Vocabulary};
use crate::policy::sensitive::{self, AttachmentInfo, DetectorCount, Finding};

/// What these rules need to know about one message.
pub struct Message<'a> {
    pub envelope: &'a Envelope,
    /// The message as received.
    pub raw: &'a [u8],
    pub subject: Option<&'a str>,
    /// Its attachments, as the attachment rules listed them (name, encrypted or not).
    pub attachments: &'a [AttachmentInfo],
}

/// Runs the three rules; the findings of those that matched and are not `off`.
pub fn check(
    m: &Message<'_>,
    config: &Config,
    directory: &Directory,
    today: jiff::civil::Date,
) -> Vec<Finding> {
    // A bounce (null sender) is the mail system speaking, not a member of staff.
    if m.envelope.mail_from.trim().is_empty() {
        return Vec::new();
    }
    let mut outside: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in &m.envelope.rcpt_to {
        if is_outside(config, r) && seen.insert(canonical_address(r)) {
            outside.push(r.clone());
        }
    }
    if outside.is_empty() {
        return Vec::new();
    }
    let on_body = config
        .sensitive
        .rules
        .get(&SensitiveRule::SensitiveDataInBody)
        .copied()
        .unwrap_or(Action::Quarantine);
    let on_wrong = config
        .data_protection
        .action(DataProtectionRule::WrongRecipient);
    let on_password = config
        .data_protection
        .action(DataProtectionRule::PasswordInMessage);
    let encrypted: Vec<&AttachmentInfo> = m
        .attachments
        .iter()
        .filter(|a| a.encrypted.is_some())
        .collect();
    let wants_password = on_password != Action::Off && !encrypted.is_empty();
    if on_body == Action::Off && on_wrong == Action::Off && !wants_password {
        return Vec::new();
    }
    let text = author_text(m.raw);
    let names = directory.pupil_names();
    let is_pupil = |i: usize| directory.people.get(i).is_some_and(|p| p.is_pupil(today));
    // The pupils the text names, read once and only when a rule gets as far as needing them.
    let in_text = std::cell::OnceCell::new();
    let in_text = || {
        in_text.get_or_init(|| {
            let mut found: Vec<Named> = Vec::new();
            names.find(&text, Reading::Prose, &is_pupil, &mut found);
            found
        })
    };

    let mut findings = Vec::new();
    if wants_password {
        findings.extend(password_in_message(m.subject, &text, &encrypted, config));
    }
    if on_body != Action::Off {
        let is_parent_of = |recipient: &str, pupil: usize| {
            directory
                .people
                .get(pupil)
                .is_some_and(|p| directory.is_parent_of(recipient, p))
        };
        let vocabulary = Vocabulary::new(&config.sensitive.keywords, &config.sensitive.markings);
        let named = || in_text().iter().map(|n| n.person).collect();
        findings.extend(sensitive::body::check(
            &text,
            &sensitive::body::Recipients {
                outside: &outside,
                is_parent_of: &is_parent_of,
            },
            &named,
            config,
            directory,
            today,
            &vocabulary,
        ));
    }
    // `wrong-recipient` speaks only of messages whose every outside recipient is a parent: for
    // any other the names are not read for it.
    if on_wrong != Action::Off && outside.iter().all(|r| directory.parent(r).is_some()) {
        let mut mentions: Vec<(String, Named)> = Vec::new();
        let mut add = |location: String, found: Vec<Named>| {
            for n in found {
                if !mentions.iter().any(|(_, m)| m.person == n.person) {
                    mentions.push((location.clone(), n));
                }
            }
        };
        if let Some(subject) = m.subject {
            let mut found = Vec::new();
            names.find(subject, Reading::Label, &is_pupil, &mut found);
            add("the subject".into(), found);
        }
        for a in m.attachments {
            let mut found = Vec::new();
            names.find(&a.name, Reading::Label, &is_pupil, &mut found);
            add(format!("the file name \"{}\"", a.name), found);
        }
        add("the message text".into(), in_text().clone());
        findings.extend(wrong_recipient(&mentions, &outside, config, directory));
    }
    findings
}

/// `password-in-message`: an attachment the gateway's encryption check found encrypted, and a
/// password written in the Subject or the author's text ([`password::written`]).
pub fn password_in_message(
    subject: Option<&str>,
    text: &str,
    encrypted: &[&AttachmentInfo],
    config: &Config,
) -> Option<Finding> {
    let first = encrypted.first()?;
    let (location, written) = subject
        .and_then(password::written)
        .map(|w| ("the subject", w))
        .or_else(|| password::written(text).map(|w| ("the message text", w)))?;
    let files: Vec<String> = encrypted
        .iter()
        .map(|a| {
            format!(
                "\"{}\" ({})",
                a.name,
                a.encrypted.as_deref().unwrap_or("encrypted")
            )
        })
        .collect();
    let mut f = finding(
        config,
        DataProtectionRule::PasswordInMessage,
        format!(
            "{} {} encrypted, but a password is written in {location} (\"{} {}\"): whoever \
             receives the message can open {}; give the password another way, by phone for \
             example",
            files.join(", "),
            if files.len() == 1 { "is" } else { "are" },
            written.word,
            written.masked,
            if files.len() == 1 { "it" } else { "them" },
        ),
        vec![DetectorCount {
            detector: "password",
            count: 1,
        }],
        vec![Evidence {
            detector: "password",
            location: location.to_string(),
            sample: format!("{} {}", written.word, written.masked),
        }],
    )?;
    f.attachment = first.name.clone();
    Some(f)
}

/// `wrong-recipient`: the message names pupils (`mentions`: where, and who), every outside
/// recipient is a parent in the directory, and none of them is a parent of any pupil named.
/// "Jamie Carter's report" to Olivia's parent is held; to Jamie's parent it is not; "Jamie and
/// Olivia worked well together" names nobody.
pub fn wrong_recipient(
    mentions: &[(String, Named)],
    outside: &[String],
    config: &Config,
    directory: &Directory,
) -> Option<Finding> {
    if mentions.is_empty() || outside.is_empty() {
        return None;
    }
    if !outside.iter().all(|r| directory.parent(r).is_some()) {
        return None;
    }
    // Each recipient's children against the pupils named: linear in recipients and names.
    let named_pupils: std::collections::HashSet<*const crate::directory::Person> = mentions
        .iter()
        .filter_map(|(_, n)| directory.people.get(n.person))
        .map(std::ptr::from_ref)
        .collect();
    if outside.iter().any(|r| {
        directory
            .children_of(r)
            .any(|c| named_pupils.contains(&std::ptr::from_ref(c)))
    }) {
        return None;
    }
    // A mailing to many parents, or a text naming many pupils, is summed up: the first few,
    // then how many more.
    const SHOWN: usize = 10;
    let mut named: Vec<String> = mentions
        .iter()
        .take(SHOWN)
        .filter_map(|(location, n)| {
            directory
                .people
                .get(n.person)
                .map(|p| format!("{} (in {location})", p.name))
        })
        .collect();
    if mentions.len() > SHOWN {
        named.push(format!("and {} more pupils", mentions.len() - SHOWN));
    }
    let mut went_to: Vec<String> = outside
        .iter()
        .take(SHOWN)
        .map(|r| {
            let children: Vec<&str> = directory.children_of(r).map(|c| c.name.as_str()).collect();
            if children.is_empty() {
                format!("{r} (a parent)")
            } else {
                format!("{r} (parent of {})", children.join(", "))
            }
        })
        .collect();
    if outside.len() > SHOWN {
        went_to.push(format!("and {} more parents", outside.len() - SHOWN));
    }
    finding(
        config,
        DataProtectionRule::WrongRecipient,
        format!(
            "the message names {}, but goes only to parents of other pupils: {}; check the \
             recipients",
            named.join(", "),
            went_to.join(", ")
        ),
        vec![DetectorCount {
            detector: "pupil-name",
            count: mentions.len(),
        }],
        mentions
            .iter()
            .take(SHOWN)
            .filter_map(|(location, n)| {
                Some(Evidence {
                    detector: "pupil-name",
                    location: location.clone(),
                    sample: directory.people.get(n.person)?.name.clone(),
                })
            })
            .chain(outside.iter().take(SHOWN).map(|r| Evidence {
                detector: "parent",
                location: "recipients".into(),
                sample: r.clone(),
            }))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIRECTORY: &str = "role,name,school_email,personal_emails,personal_phones,date_of_birth,status,children\n\
        staff,Tom Baker,t.baker@school.example,,,,current,\n\
        pupil,Jamie Carter,j.carter@pupils.school.example,,,2011-03-14,current,\n\
        pupil,Olivia Bennett,o.bennett@pupils.school.example,,,2011-07-02,current,\n\
        pupil,Noah Patel,n.patel@pupils.school.example,,,2011-01-20,current,\n\
        parent,Sarah Carter,,sarah.carter@gmail.com,,,current,j.carter@pupils.school.example\n\
        parent,Mark Bennett,,mark.bennett@outlook.com,,,current,o.bennett@pupils.school.example\n";

    fn config(extra: &str) -> Config {
        Config::parse(
            std::path::Path::new("t.toml"),
            &format!(
                "[school]\nname = \"S\"\ndomains = [\"school.example\"]\n\
                 pupil_domains = [\"pupils.school.example\"]\ndirectory = \"d.csv\"\n\
                 [relay]\nlisten = [\"127.0.0.1:2525\"]\nhostname = \"h\"\n\
                 allowed_clients = [\"127.0.0.1/32\"]\nnext_hop = \"outbox:o\"\n\
                 [storage]\nstate_dir = \"v\"\n[disclaimer]\ntext = \"\"\n{extra}"
            ),
        )
        .expect("the test config")
    }

    fn directory() -> Directory {
        Directory::parse(std::path::Path::new("d.csv"), DIRECTORY.as_bytes(), &[])
            .expect("the test directory")
    }

    fn run(
        subject: &str,
        body: &str,
        to: &[&str],
        attachments: &[AttachmentInfo],
        extra: &str,
    ) -> Vec<Finding> {
        let raw = format!(
            "From: t.baker@school.example\r\nTo: {}\r\nSubject: {subject}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{body}",
            to.join(", ")
        );
        let envelope = Envelope {
            mail_from: "t.baker@school.example".into(),
            rcpt_to: to.iter().map(|t| t.to_string()).collect(),
            smtputf8: false,
            body_8bit: false,
        };
        check(
            &Message {
                envelope: &envelope,
                raw: raw.as_bytes(),
                subject: Some(subject),
                attachments,
            },
            &config(extra),
            &directory(),
            jiff::civil::date(2026, 11, 23),
        )
    }

    fn rules(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.rule).collect()
    }

    fn zip() -> Vec<AttachmentInfo> {
        vec![AttachmentInfo {
            name: "pupils.zip".into(),
            mime_type: "application/zip".into(),
            size: 100,
            sha256: String::new(),
            encrypted: Some("AES-256 ZIP".into()),
        }]
    }

    const OLIVIAS: &str = "mark.bennett@outlook.com";
    const JAMIES: &str = "sarah.carter@gmail.com";

    #[test]
    fn a_report_to_the_wrong_parent_names_the_pupil_and_the_parent() {
        let f = run(
            "Jamie Carter's report",
            "Please find it attached.",
            &[OLIVIAS],
            &[],
            "",
        );
        assert_eq!(rules(&f), ["wrong-recipient"]);
        assert!(
            f[0].detail.contains("Jamie Carter (in the subject)"),
            "{}",
            f[0].detail
        );
        assert!(
            f[0].detail
                .contains("mark.bennett@outlook.com (parent of Olivia Bennett)"),
            "{}",
            f[0].detail
        );
        assert_eq!(f[0].action, Action::Quarantine);
        assert!(run("Jamie Carter's report", "Attached.", &[JAMIES], &[], "").is_empty());
        assert!(
            run(
                "Report",
                "Jamie and Olivia worked well together.",
                &[OLIVIAS],
                &[],
                ""
            )
            .is_empty()
        );
        // A Gmail spelling of the parent's address is the parent.
        assert!(
            run(
                "Jamie Carter's report",
                "Attached.",
                &["Sarah.Carter+school@googlemail.com"],
                &[],
                ""
            )
            .is_empty()
        );
    }

    #[test]
    fn a_recipient_who_is_not_a_parent_or_inside_the_school_is_not_wrong_recipient() {
        assert!(
            run(
                "Jamie Carter's report",
                "x",
                &["exams@board.example"],
                &[],
                ""
            )
            .is_empty()
        );
        assert!(
            run(
                "Jamie Carter's report",
                "x",
                &[OLIVIAS, "exams@board.example"],
                &[],
                ""
            )
            .is_empty()
        );
        assert!(
            run(
                "Jamie Carter's report",
                "x",
                &["g.darcy@school.example"],
                &[],
                ""
            )
            .is_empty()
        );
    }

    #[test]
    fn a_password_beside_an_encrypted_attachment_is_found_and_masked() {
        let f = run(
            "List",
            "The password is Kestrel-42\n",
            &["a@council.example"],
            &zip(),
            "",
        );
        assert_eq!(rules(&f), ["password-in-message"]);
        assert_eq!(f[0].attachment, "pupils.zip");
        assert!(!format!("{f:?}").contains("Kestrel-42"));
        assert!(f[0].detail.contains("AES-256 ZIP"), "{}", f[0].detail);
        // Without an encrypted attachment a password is somebody's business, not this rule's.
        assert!(
            run(
                "List",
                "The password is Kestrel-42\n",
                &["a@council.example"],
                &[],
                ""
            )
            .is_empty()
        );
        assert!(
            run(
                "List",
                "I'll phone you with the password.\n",
                &["a@council.example"],
                &zip(),
                ""
            )
            .is_empty()
        );
        let f = run(
            "List (pw: Kestrel42)",
            "See attached.\n",
            &["a@council.example"],
            &zip(),
            "",
        );
        assert_eq!(rules(&f), ["password-in-message"]);
        assert_eq!(f[0].evidence[0].location, "the subject");
    }

    #[test]
    fn personal_data_about_a_pupil_to_their_own_parent_does_not_count() {
        let letter = "Dear Mrs Carter,\n\nJamie Carter's SEN support plan now includes speech and \
                      language therapy, and his EHCP review is on Monday. Date of birth on our \
                      records: 14/03/2011.\n";
        let strict = "[sensitive.body_thresholds]\nspecial_category = 1\nbirth_dates = 1\n";
        assert!(run("Jamie", letter, &[JAMIES], &[], strict).is_empty());
        let f = run("Jamie", letter, &["a@council.example"], &[], strict);
        assert_eq!(rules(&f), ["sensitive-data-in-body"], "{f:?}");
        assert!(f[0].attachment.is_empty());
        assert!(
            f[0].evidence
                .iter()
                .all(|e| e.location.starts_with(sensitive::body::LOCATION))
        );
        // With the default thresholds one pupil is not a list, wherever it goes.
        assert!(run("Jamie", letter, &["a@council.example"], &[], "").is_empty());
    }

    #[test]
    fn a_pasted_list_is_held_even_to_a_parent() {
        let list = "Name\tDOB\tNeed\nJamie Carter\t14/03/2011\tEHCP\nOlivia Bennett\t02/07/2011\tSEN support\n\
                    Noah Patel\t20/01/2011\tSEMH\n";
        for to in [JAMIES, "a@council.example"] {
            let f = run("List", list, &[to], &[], "");
            assert!(rules(&f).contains(&"sensitive-data-in-body"), "{to}: {f:?}");
        }
        // Inside the school the text is not leaving the network.
        assert!(run("List", list, &["g.darcy@school.example"], &[], "").is_empty());
        // Quoted from an earlier message, it is not the author pasting it.
        let quoted: String = list.lines().map(|l| format!("> {l}\n")).collect();
        let reply = format!(
            "Thanks, noted.\n\nOn Mon, 23 Nov 2026 at 09:00, Jo <a@council.example> wrote:\n{quoted}"
        );
        assert!(run("Re: List", &reply, &["a@council.example"], &[], "").is_empty());
    }

    #[test]
    fn rules_that_are_off_do_nothing() {
        let off = "[data_protection]\nrules = { wrong-recipient = \"off\", password-in-message = \"off\" }\n";
        assert!(run("Jamie Carter's report", "x", &[OLIVIAS], &zip(), off).is_empty());
        let f = run(
            "Jamie Carter's report",
            "pw: Kestrel42",
            &[OLIVIAS],
            &zip(),
            "[data_protection]\nrules = { wrong-recipient = \"flag\" }\n",
        );
        assert_eq!(rules(&f), ["password-in-message", "wrong-recipient"]);
        assert_eq!(f[1].action, Action::Flag);
    }
}
