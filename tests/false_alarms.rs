//! False alarms, measured through the decision core (`policy::evaluate`) with the full example
//! configuration: every rule the configuration has, whatever rules it holds when this runs.
//!
//! - fixtures/benign/ (scripts/make-benign-fixtures): realistic school documents — newsletters
//!   whose staff tables name the SENCO and the DSL, letters home, timetables, invoices,
//!   governors' minutes, SEND and safeguarding policies, exam entries, rotas, menus — in pdf,
//!   docx, xlsx, csv, txt and html, each sent by a member of staff to an outside address as an
//!   attachment and pasted as the body: none is held or flagged.
//! - fixtures/held/: documents about named pupils (a suspension letter whose sentence wraps
//!   across PDF lines, an EHCP review, a SEN register, medical needs, a referral): every one is
//!   held as `unencrypted-sensitive-attachment`.
//! - fixtures/corpus/ (real-world mail from fourteen mail libraries): at most 2% of the
//!   messages held or flagged; the figure is printed (`--nocapture`) and kept in the README.

mod common;

use std::path::{Path, PathBuf};

use schoolgate::config::Config;
use schoolgate::directory::Directory;
use schoolgate::envelope::Envelope;
use schoolgate::policy::{self, Decision, Verdict};

const STAFF: &str = "p.evans@example-academy.sch.uk";
const OUTSIDE: &str = "admissions@anytown-council.example";

fn fixtures(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(dir)
}

fn config() -> Config {
    Config::load(&common::example_config()).expect("policies/example.toml loads")
}

/// The school the benign and held documents are written for.
fn school(config: &Config) -> Directory {
    Directory::load(
        &fixtures("benign").join("directory.csv"),
        &config.school.staff_roles,
    )
    .expect("fixtures/benign/directory.csv loads")
}

/// A noon on a school day, when the fixtures were made.
fn now() -> jiff::Timestamp {
    "2026-11-23T12:00:00Z".parse().unwrap()
}

fn envelope(from: &str, to: &str) -> Envelope {
    Envelope {
        mail_from: from.into(),
        rcpt_to: vec![to.into()],
        smtputf8: false,
        body_8bit: false,
    }
}

fn base64(bytes: &[u8]) -> String {
    String::from_utf8(schoolgate::mime::encoding::base64_encode(
        bytes, 76, b"\r\n", true,
    ))
    .unwrap()
}

fn mime_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "pdf" => "application/pdf",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "csv" => "text/csv",
        "html" => "text/html",
        _ => "text/plain",
    }
}

/// `file` attached to a short note from a member of staff to an outside address.
fn with_attachment(name: &str, file: &[u8]) -> Vec<u8> {
    format!(
        "From: Paul Evans <{STAFF}>\r\nTo: Admissions <{OUTSIDE}>\r\nSubject: {name}\r\n\
         Date: Mon, 23 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{name}@example-academy.sch.uk>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease find the document attached.\r\n\
         --b\r\nContent-Type: {}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}--b--\r\n",
        mime_type(name),
        base64(file)
    )
    .into_bytes()
}

/// `text` pasted as the body of a message from a member of staff to an outside address.
fn pasted(name: &str, text: &str) -> Vec<u8> {
    format!(
        "From: Paul Evans <{STAFF}>\r\nTo: Admissions <{OUTSIDE}>\r\nSubject: {name}\r\n\
         Date: Mon, 23 Nov 2026 12:00:00 +0000\r\nMessage-ID: <pasted-{name}@example-academy.sch.uk>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}",
        base64(text.as_bytes())
    )
    .into_bytes()
}

/// The document's text as a teacher copying it into a message would paste it.
fn text_of(name: &str, file: &[u8], config: &Config) -> String {
    use schoolgate::policy::sensitive::{extract, limits::Budget};
    let budget = Budget::new(&config.sensitive.limits);
    let mut out = extract::Contents::default();
    extract::extract(name, name, mime_type(name), file, &budget, 1, &mut out)
        .unwrap_or_else(|e| panic!("{name} cannot be read: {e}"));
    out.texts
        .iter()
        .map(|t| t.text.as_str())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// What a decision holds or flags, in one line each; empty when it is clean.
fn alarms(d: &Decision) -> Vec<String> {
    let mut out: Vec<String> = d
        .findings
        .iter()
        .map(|f| format!("{} ({}): {}", f.rule, f.attachment, f.detail))
        .collect();
    out.extend(d.flags.iter().map(|f| format!("flag {f:?}")));
    if out.is_empty() && d.verdict != Verdict::Deliver {
        out.push(format!("verdict {:?}", d.verdict));
    }
    out
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/make-benign-fixtures)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            p.is_file() && name != "directory.csv" && name != "README.md"
        })
        .collect();
    files.sort();
    files
}

#[test]
fn no_benign_school_document_is_held_attached_or_pasted() {
    let config = config();
    let directory = school(&config);
    let files = files(&fixtures("benign"));
    assert!(files.len() >= 40, "only {} benign documents", files.len());
    let mut formats: Vec<&str> = files
        .iter()
        .filter_map(|p| p.extension().and_then(|e| e.to_str()))
        .collect();
    formats.sort_unstable();
    formats.dedup();
    assert_eq!(formats, ["csv", "docx", "html", "pdf", "txt", "xlsx"]);
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let file = std::fs::read(path).unwrap();
        let attached = policy::evaluate(
            &envelope(STAFF, OUTSIDE),
            &with_attachment(name, &file),
            &config,
            &directory,
            now(),
        );
        for a in alarms(&attached) {
            failures.push(format!("{name} attached: {a}"));
        }
        let text = text_of(name, &file, &config);
        assert!(!text.trim().is_empty(), "{name}: no text read");
        let body = policy::evaluate(
            &envelope(STAFF, OUTSIDE),
            &pasted(name, &text),
            &config,
            &directory,
            now(),
        );
        for a in alarms(&body) {
            failures.push(format!("{name} pasted: {a}"));
        }
    }
    println!(
        "benign documents: {} ({} formats), held or flagged: {}",
        files.len(),
        formats.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "benign documents held or flagged:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_document_about_a_named_pupil_is_held() {
    let config = config();
    let directory = school(&config);
    let files = files(&fixtures("held"));
    assert!(files.len() >= 15, "only {} held documents", files.len());
    let mut missed = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let file = std::fs::read(path).unwrap();
        let d = policy::evaluate(
            &envelope(STAFF, OUTSIDE),
            &with_attachment(name, &file),
            &config,
            &directory,
            now(),
        );
        let held = d.verdict == Verdict::Quarantine
            && d.findings
                .iter()
                .any(|f| f.rule == "unencrypted-sensitive-attachment" && f.attachment == name);
        if !held {
            missed.push(format!("{name}: {:?} {:?}", d.verdict, alarms(&d)));
        }
    }
    println!(
        "documents about named pupils: {}, held: {}",
        files.len(),
        files.len() - missed.len()
    );
    assert!(missed.is_empty(), "not held:\n{}", missed.join("\n"));
}

#[test]
fn the_real_world_corpus_raises_at_most_two_percent_false_alarms() {
    let config = config();
    let directory = Directory::load(&common::example_directory(), &config.school.staff_roles)
        .expect("the example directory loads");
    let messages = common::corpus_files();
    assert!(
        messages.len() >= 190,
        "only {} corpus messages",
        messages.len()
    );
    let mut raised = Vec::new();
    for path in &messages {
        let message = std::fs::read(path).unwrap();
        let name = path
            .strip_prefix(common::corpus_dir())
            .unwrap_or(path)
            .display()
            .to_string();
        // Each message as a member of staff sending it to someone outside the school.
        let d = policy::evaluate(
            &envelope("t.baker@example-academy.sch.uk", "someone@example.org"),
            &message,
            &config,
            &directory,
            now(),
        );
        let a = alarms(&d);
        if !a.is_empty() {
            raised.push(format!("{name}: {}", a.join("; ")));
        }
    }
    let percent = 100.0 * raised.len() as f64 / messages.len() as f64;
    println!(
        "corpus: {} messages, {} held or flagged ({percent:.1}%)\n{}",
        messages.len(),
        raised.len(),
        raised.join("\n")
    );
    assert!(
        percent <= 2.0,
        "{percent:.1}% of the corpus held or flagged (at most 2%):\n{}",
        raised.join("\n")
    );
}
