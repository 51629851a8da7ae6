//! Issue 16's performance target for the rules that read a message's own words
//! (`sensitive-data-in-body`, `wrong-recipient`, `password-in-message`): together they add under
//! 50 µs to a 10 KB message, and `wrong-recipient` stays linear in the recipients and the text
//! with a directory of 2,000 pupils and 4,000 parents.
//!
//! `text_rules/*` times `policy::text_rules::check` alone: what the rules add to the decision
//! (the author's text, the name look-ups, the detectors on the text, the password reading).
//! Each case runs with the shipped example directory and with a generated one of 2,000 pupils
//! and 4,000 parents (each pupil two parents; names from a few dozen forenames and surnames, so
//! many pupils share a surname, the worst case for the look-up). The message is 10 KB of a
//! teacher's letter home naming a few pupils, to one parent, with an encrypted ZIP attached.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use schoolgate::config::Config;
use schoolgate::directory::Directory;
use schoolgate::envelope::Envelope;
use schoolgate::policy::sensitive::AttachmentInfo;
use schoolgate::policy::text_rules;

const FORENAMES: &[&str] = &[
    "Jamie", "Ava", "Oliver", "Amélie", "Zoë", "Noah", "Siân", "Aoife", "Mohammed", "Chloé",
    "Harry", "Isla", "Freya", "Niamh", "Rhys", "Ruby", "Tomás", "Priya", "Oskar", "Maja",
];
const SURNAMES: &[&str] = &[
    "Smith", "Jones", "O'Brien", "Hughes", "Shah", "Williams", "Taylor", "Davies", "Evans",
    "Thomas", "Roberts", "Patel", "Khan", "Walker", "Wright", "Green", "Hall", "Wood", "Clarke",
    "Lewis", "Carter", "Bennett", "Price", "Morgan", "Cooper", "Ward", "Turner", "Hill", "Ahmed",
    "Murphy",
];

/// 2,000 pupils and 4,000 parents (8 columns, `children` the pupil's school address).
fn big_directory() -> Directory {
    let mut csv = String::from(
        "role,name,school_email,personal_emails,personal_phones,date_of_birth,status,children\n",
    );
    csv.push_str("staff,Tom Baker,t.baker@example-academy.sch.uk,,,,current,\n");
    for i in 0..2_000 {
        let first = FORENAMES[i % FORENAMES.len()];
        let last = SURNAMES[(i / FORENAMES.len()) % SURNAMES.len()];
        let school = format!("p{i}@pupils.example-academy.sch.uk");
        let _ = writeln!(
            csv,
            "pupil,{first} {last},{school},,,2011-0{}-1{},current,",
            1 + i % 9,
            i % 10
        );
        for k in 0..2 {
            let _ = writeln!(
                csv,
                "parent,Parent{k} {last},,parent{k}.{i}@example.net,,,current,{school}"
            );
        }
    }
    Directory::parse(Path::new("bench.csv"), csv.as_bytes(), &[]).expect("the bench directory")
}

/// A 10 KB letter home naming a few pupils, as one text/plain part; `extra` ends each paragraph.
fn message(extra: &str) -> Vec<u8> {
    let mut body = String::from("Dear Mr Jones,\r\n\r\n");
    let paragraph = "Thank you for coming to parents' evening on Thursday. Jamie Carter and \
        Olivia worked well together on the science project, and the whole class enjoyed the \
        trip to the museum. Homework is set on Mondays and due the following Monday; please \
        check the planner each week and sign it. Our next open morning is on 14 December at \
        9.30 am, and the Christmas concert is the week after.";
    while body.len() < 10_000 {
        body.push_str(paragraph);
        body.push_str(extra);
        body.push_str("\r\n\r\n");
    }
    body.push_str("Kind regards,\r\nTom Baker\r\nClass teacher\r\n");
    format!(
        "From: Tom Baker <t.baker@example-academy.sch.uk>\r\nTo: parent0.7@example.net\r\n\
         Subject: Parents' evening follow-up\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::load(&root.join("policies/example.toml")).expect("example config");
    let example = Directory::load(
        &root.join("policies/example-directory.csv"),
        &config.school.staff_roles,
    )
    .expect("example directory");
    let big = big_directory();
    let envelope = Envelope {
        mail_from: "t.baker@example-academy.sch.uk".into(),
        rcpt_to: vec!["parent0.7@example.net".into()],
        smtputf8: false,
        body_8bit: false,
    };
    let raw = message("");
    // The worst case for the body rules: a phone number in each paragraph could be part of an
    // identifier, so the detectors read the whole text.
    let raw_phone = message(" Call the office on 01632 960123 with any questions.");
    let attachments = vec![AttachmentInfo {
        name: "report.zip".into(),
        mime_type: "application/zip".into(),
        size: 1000,
        sha256: String::new(),
        encrypted: Some("AES-256 ZIP".into()),
    }];
    let today = jiff::civil::date(2026, 11, 23);
    let m = text_rules::Message {
        envelope: &envelope,
        raw: &raw,
        subject: Some("Parents' evening follow-up"),
        attachments: &attachments,
    };
    let m_phone = text_rules::Message {
        raw: &raw_phone,
        ..m
    };
    let mut group = c.benchmark_group("text_rules");
    group.throughput(Throughput::Bytes(raw.len() as u64));
    for (label, directory, m) in [
        ("10k_example_directory", &example, &m),
        ("10k_2000_pupils_4000_parents", &big, &m),
        ("10k_phone_numbers_example_directory", &example, &m_phone),
    ] {
        // The name index is built once per directory load; not part of a message's cost.
        let findings = text_rules::check(m, &config, directory, today);
        eprintln!(
            "{label}: {} bytes, findings {:?}",
            m.raw.len(),
            findings.iter().map(|f| f.rule).collect::<Vec<_>>()
        );
        group.bench_function(label, |b| {
            b.iter(|| black_box(text_rules::check(black_box(m), &config, directory, today)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
