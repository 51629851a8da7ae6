//! Issue 16's cases for the rules that read a message's own words, through the real binary:
//! `schoolgate check MESSAGE.eml --config CONFIG --json [--to ADDR]...`.
//!
//! - `sensitive-data-in-body`: a list of six pupils pasted into a message to the council is
//!   held; a teacher writing to a pupil's own parent about that pupil's SEN support and EHCP
//!   is not.
//! - `wrong-recipient`: "Jamie Carter's report" to another pupil's parent is held; to Jamie's
//!   parent it is not; "Jamie and Olivia worked well together" names nobody.
//! - `password-in-message`: an AES ZIP with its password in the text (English, Welsh, "pw:" in
//!   the subject) is held; "I'll phone you with the password", or the password only in the
//!   quoted thread, is not.
//!
//! The messages and the directory (with parents) are in fixtures/text-rules/, built by
//! scripts/make-text-rules-fixtures.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/text-rules")
        .join(name)
}

/// The example config with the fixtures' directory, state in `dir`, and `tweak` applied.
fn config(dir: &Path, tweak: &dyn Fn(&mut toml::Table)) -> PathBuf {
    let mut cfg: toml::Table = std::fs::read_to_string(common::example_config())
        .expect("read policies/example.toml")
        .parse()
        .expect("policies/example.toml is TOML");
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    common::set(&mut cfg, "school.directory", path(fixture("directory.csv")));
    common::set(&mut cfg, "storage.state_dir", path(dir.join("var")));
    common::set(
        &mut cfg,
        "relay.next_hop",
        format!("outbox:{}", path(dir.join("outbox"))),
    );
    tweak(&mut cfg);
    let file = dir.join("schoolgate.toml");
    std::fs::write(&file, toml::to_string(&cfg).expect("serialise the config"))
        .expect("write the config");
    file
}

/// `check --json` of fixture `name`, sent to `to` (default: its To header).
fn check_with(name: &str, to: &[&str], tweak: &dyn Fn(&mut toml::Table)) -> Value {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let cfg = config(tmp.path(), tweak);
    let mut cmd = Command::new(common::bin());
    cmd.arg("check")
        .arg(fixture(name))
        .arg("--config")
        .arg(&cfg)
        .arg("--json");
    for t in to {
        cmd.arg("--to").arg(t);
    }
    let out = cmd.output().expect("run schoolgate check");
    assert!(
        out.status.success(),
        "check {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check {name} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn check(name: &str, to: &[&str]) -> Value {
    check_with(name, to, &|_| {})
}

/// The rules of the findings, in order.
fn rules(v: &Value) -> Vec<String> {
    v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["rule"].as_str().unwrap_or("").to_string())
        .collect()
}

fn the_finding<'a>(v: &'a Value, rule: &str) -> &'a Value {
    v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["rule"] == rule)
        .unwrap_or_else(|| panic!("no {rule} finding in {v}"))
}

const COUNCIL: &str = "admissions@council.example.gov.uk";
const JAMIES_PARENT: &str = "sarah.carter@gmail.com";
const OLIVIAS_PARENT: &str = "mark.bennett@outlook.com";

#[test]
fn a_pasted_list_of_six_pupils_to_the_council_is_held() {
    let v = check("pasted-list-to-council.eml", &[]);
    assert_eq!(v["verdict"], "quarantine", "{v}");
    assert_eq!(rules(&v), ["sensitive-data-in-body"], "{v}");
    let f = the_finding(&v, "sensitive-data-in-body");
    let detail = f["detail"].as_str().unwrap_or("");
    assert!(detail.contains("6 dates of birth"), "{detail}");
    assert!(
        detail.contains("6 pupils with special-category"),
        "{detail}"
    );
    // The evidence is masked: never a whole name or date.
    let evidence = f["evidence"].to_string();
    assert!(!evidence.contains("Jamie Carter"), "{evidence}");
    assert!(!evidence.contains("14/03/2011"), "{evidence}");
    // Inside the school it is not leaving the network.
    let v = check(
        "pasted-list-to-council.eml",
        &["g.darcy@example-academy.sch.uk"],
    );
    assert_eq!(v["verdict"], "deliver", "{v}");
}

#[test]
fn a_letter_to_a_pupils_own_parent_about_their_sen_support_is_delivered_clean() {
    let v = check("sen-letter-to-own-parent.eml", &[]);
    assert_eq!(v["verdict"], "deliver", "{v}");
    assert!(rules(&v).is_empty(), "{v}");
    // Even with the strictest thresholds, data about a pupil going only to that pupil's own
    // parent does not count...
    let strict = |cfg: &mut toml::Table| {
        common::set(cfg, "sensitive.body_thresholds.special_category", 1);
        common::set(cfg, "sensitive.body_thresholds.birth_dates", 1);
    };
    let v = check_with("sen-letter-to-own-parent.eml", &[], &strict);
    assert_eq!(v["verdict"], "deliver", "{v}");
    // ...but the same letter to another pupil's parent does.
    let v = check_with("sen-letter-to-own-parent.eml", &[OLIVIAS_PARENT], &strict);
    assert_eq!(v["verdict"], "quarantine", "{v}");
    assert!(
        rules(&v).contains(&"sensitive-data-in-body".to_string()),
        "{v}"
    );
}

#[test]
fn a_pupils_report_to_another_pupils_parent_is_flagged_wrong_recipient() {
    let v = check("report.eml", &[OLIVIAS_PARENT]);
    assert_eq!(v["verdict"], "quarantine", "{v}");
    assert_eq!(rules(&v), ["wrong-recipient"], "{v}");
    let detail = the_finding(&v, "wrong-recipient")["detail"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(detail.contains("Jamie Carter"), "{detail}");
    assert!(detail.contains(OLIVIAS_PARENT), "{detail}");
    assert!(detail.contains("parent of Olivia Bennett"), "{detail}");
    // The same report to Jamie's parent is not.
    let v = check("report.eml", &[JAMIES_PARENT]);
    assert_eq!(v["verdict"], "deliver", "{v}");
    assert!(rules(&v).is_empty(), "{v}");
    // Nor to both of them: one of them is Jamie's parent.
    let v = check("report.eml", &[JAMIES_PARENT, OLIVIAS_PARENT]);
    assert!(!rules(&v).contains(&"wrong-recipient".to_string()), "{v}");
    // Nor to someone who is not a parent in the directory (the rule cannot know them).
    let v = check("report.eml", &[COUNCIL]);
    assert!(!rules(&v).contains(&"wrong-recipient".to_string()), "{v}");
}

#[test]
fn a_pupil_named_in_mis_order_in_the_text_counts_and_first_names_do_not() {
    let v = check("report-mis-order.eml", &[]);
    assert_eq!(rules(&v), ["wrong-recipient"], "{v}");
    let v = check("first-names-only.eml", &[]);
    assert_eq!(v["verdict"], "deliver", "{v}");
    assert!(rules(&v).is_empty(), "{v}");
}

#[test]
fn an_aes_zip_with_its_password_in_the_message_is_held() {
    for name in [
        "aes-zip-password.eml",
        "aes-zip-password-welsh.eml",
        "aes-zip-password-pw-subject.eml",
    ] {
        let v = check(name, &[]);
        assert_eq!(v["verdict"], "quarantine", "{name}: {v}");
        assert_eq!(rules(&v), ["password-in-message"], "{name}: {v}");
        let f = the_finding(&v, "password-in-message");
        let all = f.to_string();
        // The password itself is never repeated.
        assert!(
            !all.contains("Kestrel-42") && !all.contains("Kestrel42") && !all.contains("Draig2026"),
            "{name}: {all}"
        );
        assert!(
            f["detail"].as_str().unwrap_or("").contains("AES"),
            "{name}: {all}"
        );
    }
}

#[test]
fn an_aes_zip_whose_password_goes_another_way_is_delivered() {
    for name in ["aes-zip-phone.eml", "aes-zip-password-quoted.eml"] {
        let v = check(name, &[]);
        assert_eq!(v["verdict"], "deliver", "{name}: {v}");
        assert!(rules(&v).is_empty(), "{name}: {v}");
    }
}

#[test]
fn each_rule_can_be_turned_off() {
    let off = |cfg: &mut toml::Table| {
        common::set(cfg, "sensitive.rules.sensitive-data-in-body", "off");
        common::set(cfg, "data_protection.rules.wrong-recipient", "off");
        common::set(cfg, "data_protection.rules.password-in-message", "off");
    };
    for (name, to) in [
        ("pasted-list-to-council.eml", vec![]),
        ("report.eml", vec![OLIVIAS_PARENT]),
        ("aes-zip-password.eml", vec![]),
    ] {
        let v = check_with(name, &to, &off);
        assert_eq!(v["verdict"], "deliver", "{name}: {v}");
    }
    let flag = |cfg: &mut toml::Table| {
        common::set(cfg, "data_protection.rules.password-in-message", "flag");
    };
    let v = check_with("aes-zip-password.eml", &[], &flag);
    assert_eq!(v["verdict"], "deliver", "{v}");
    assert_eq!(rules(&v), ["password-in-message"], "{v}");
}

/// Every message of the real-world corpus (fixtures/corpus), sent from a member of staff to an
/// outside address and checked against the fixtures' directory (pupils and parents): the rules
/// that read the message's words hold none of it. Ordinary mail, threads and forwards included,
/// is not a pasted list, names no pupil of ours and writes no password beside a file.
#[test]
fn the_real_world_corpus_is_not_held_by_the_text_rules() {
    use schoolgate::config::Config;
    use schoolgate::directory::Directory;
    use schoolgate::envelope::Envelope;
    let config = Config::load(&common::example_config()).expect("the example config");
    let directory = Directory::load(&fixture("directory.csv"), &config.school.staff_roles)
        .expect("the fixtures' directory");
    let envelope = Envelope {
        mail_from: "t.baker@example-academy.sch.uk".into(),
        rcpt_to: vec![
            "admissions@council.example.gov.uk".into(),
            JAMIES_PARENT.into(),
        ],
        smtputf8: false,
        body_8bit: false,
    };
    let now = "2026-11-23T10:00:00Z".parse().expect("a time");
    let files = common::corpus_files();
    let mut held = Vec::new();
    for path in &files {
        let message = std::fs::read(path).expect("read a corpus message");
        let d = schoolgate::policy::evaluate(&envelope, &message, &config, &directory, now);
        for f in &d.findings {
            if matches!(
                f.rule,
                "sensitive-data-in-body" | "wrong-recipient" | "password-in-message"
            ) {
                held.push(format!("{}: {} ({})", path.display(), f.rule, f.detail));
            }
        }
    }
    assert!(files.len() > 100, "the corpus holds {} files", files.len());
    assert!(held.is_empty(), "held of {}: {held:#?}", files.len());
}

/// What a school sends outside every day is delivered: a newsletter congratulating pupils by
/// name and naming the SENCO, a trip letter, exam entries and a detention to the pupil's own
/// parent, an invoice, governors' minutes with SEND numbers, an encrypted ZIP whose password
/// goes by text or phone (English, Welsh), and a reply quoting the council's list.
#[test]
fn ordinary_school_mail_is_delivered() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/text-rules");
    let mut benign: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures/text-rules")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("benign-") && n.ends_with(".eml"))
        .collect();
    benign.sort();
    assert!(benign.len() >= 9, "{benign:?}");
    for name in &benign {
        let v = check(name, &[]);
        assert_eq!(v["verdict"], "deliver", "{name}: {v}");
        assert!(rules(&v).is_empty(), "{name}: {v}");
    }
}
