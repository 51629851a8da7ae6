//! Sensitive attachments through the real server and the real CLI: a class list sent in clear
//! is held (250 "held for review"), nothing reaches the recipient, the sender gets the notice;
//! `quarantine release` delivers it exactly once and is audited. Decompression bombs are held as
//! unscannable and the server goes on serving.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::smtp::Client;
use common::{Gateway, OutboxMessage, verify_audit_chain};

const FROM: &str = "t.baker@example-academy.sch.uk";
const COUNTY: &str = "admissions@county.gov.example";

fn with_attachment(subject: &str, mid: &str, name: &str, mime: &str, data: &[u8]) -> Vec<u8> {
    common::message_with_attachment((FROM, COUNTY), subject, mid, (name, mime), data)
}

fn class_list_csv() -> Vec<u8> {
    let mut csv = String::from("Name,UPN,Date of birth,Form\r\n");
    for n in 0..30 {
        csv.push_str(&format!(
            "Pupil{n} Surname{n},{},{:02}/0{}/2014,7B\r\n",
            common::upn(100 + n),
            n % 28 + 1,
            n % 9 + 1
        ));
    }
    csv.into_bytes()
}

fn to(gw: &Gateway, who: &str) -> Vec<OutboxMessage> {
    gw.outbox_messages()
        .into_iter()
        .filter(|m| m.rcpt_to().iter().any(|r| r == who))
        .collect()
}

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn a_class_list_in_clear_is_held_the_sender_told_and_a_release_delivers_it_once() {
    let gw = Gateway::start(|_| {});
    let message = with_attachment(
        "Year 7 class list",
        "s1@test",
        "7B class list.csv",
        "text/csv",
        &class_list_csv(),
    );
    let mut c = Client::ready(gw.port);
    let t = c.send(FROM, "", &[COUNTY], &message).unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
    let text = t.reply.text();
    assert!(text.contains("held for review"), "{text}");
    let id = text.rsplit(' ').next().unwrap().trim().to_string();

    // The audit record names the rule, the attachment and the detectors, masked.
    let records = gw.message_records();
    let rec = records.last().unwrap();
    assert_eq!(rec.field("outcome").as_deref(), Some("quarantined"));
    let findings = &rec.message()["findings"];
    assert_eq!(findings[0]["rule"], "unencrypted-sensitive-attachment");
    assert_eq!(findings[0]["attachment"], "7B class list.csv");
    assert!(
        findings[0]["detectors"].to_string().contains("upn"),
        "{findings}"
    );
    // The attachment itself is listed: name, type, size, SHA-256, not encrypted.
    let csv = class_list_csv();
    let listed = &rec.message()["attachments"][0];
    assert_eq!(listed["name"], "7B class list.csv");
    assert_eq!(listed["mime_type"], "text/csv");
    assert_eq!(listed["size"], csv.len() as u64);
    assert_eq!(listed["sha256"], common::sha256_hex(&csv));
    assert_eq!(listed["encrypted"], false);
    assert!(
        !rec.record_json.contains(&common::upn(100)),
        "a whole UPN must never reach the audit trail"
    );

    // Nothing reached the recipient; the sender hears why, without the data.
    assert!(
        to(&gw, COUNTY).is_empty(),
        "a held message is not delivered"
    );
    assert!(
        gw.wait_for(Duration::from_secs(10), || !to(&gw, FROM).is_empty()),
        "the sender notice never reached the outbox\n{}",
        gw.log_tail(40)
    );
    let notice = to(&gw, FROM).remove(0);
    let notice_text = String::from_utf8_lossy(&notice.bytes).into_owned();
    for needle in ["7B class list.csv", &id, "encrypt", "network manager"] {
        assert!(
            notice_text.contains(needle),
            "{needle} missing from the notice:\n{notice_text}"
        );
    }
    assert!(
        !notice_text.contains(&common::upn(100)),
        "the notice holds no data"
    );
    assert!(
        !notice_text.contains("Surname1"),
        "the notice holds no data"
    );
    assert!(
        gw.wait_for(Duration::from_secs(60), || gw
            .audit_records()
            .iter()
            .any(|r| r.record_json.contains("sender notice sent"))),
        "the notice is audited"
    );

    // The network manager releases it: delivered exactly once, as held, audited.
    let held = std::fs::read(gw.state_dir.join(format!("quarantine/{id}.eml"))).unwrap();
    gw.add_user("netman", &["network-manager"], "netman password 1");
    gw.add_user("ms.dsl", &["dsl"], "dsl password 12");
    // A held attachment is the network manager's: a DSL may not release it.
    let refused = gw.cli(&["quarantine", "release", &id, "--as", "ms.dsl"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("network-manager role"),
        "{refused:?}"
    );
    assert!(to(&gw, COUNTY).is_empty(), "the DSL released nothing");
    // Every release says why.
    let no_reason = gw.cli(&["quarantine", "release", &id, "--as", "netman"]);
    assert_eq!(no_reason.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&no_reason.stderr).contains("needs --reason"),
        "{no_reason:?}"
    );
    assert!(to(&gw, COUNTY).is_empty(), "released without a reason");
    let why = "The county asked for it; the admissions portal is down";
    let out = gw.cli(&[
        "quarantine",
        "release",
        &id,
        "--as",
        "netman",
        "--reason",
        why,
    ]);
    assert!(out.status.success(), "{out:?}");
    let delivered = to(&gw, COUNTY);
    assert_eq!(delivered.len(), 1, "released once");
    assert_eq!(delivered[0].bytes, held, "the held bytes are what leaves");
    let again = gw.cli(&[
        "quarantine",
        "release",
        &id,
        "--as",
        "netman",
        "--reason",
        why,
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(to(&gw, COUNTY).len(), 1, "still exactly once");
    assert!(
        gw.audit_records().iter().any(|r| r
            .record_json
            .contains(&format!("quarantine release {id} by netman"))),
        "the release is audited"
    );
    verify_audit_chain(&gw.audit_records()).unwrap();
}

#[test]
fn the_same_list_encrypted_or_a_harmless_file_is_delivered() {
    let gw = Gateway::start(|_| {});
    let mut c = Client::ready(gw.port);
    let worksheet = b"Fractions worksheet\r\n1. What is 3/4 of 24?\r\n2. Simplify 12/16.\r\n";
    let m = with_attachment(
        "Worksheet",
        "s2@test",
        "fractions.txt",
        "text/plain",
        worksheet,
    );
    let t = c.send(FROM, "", &[COUNTY], &m).unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
    assert!(!t.reply.text().contains("held"), "{:?}", t.reply);
    let zip = std::fs::read(fixture("fixtures/sensitive/files/class-list-aes256.zip"))
        .expect("the AES ZIP fixture (scripts/make-sensitive-fixtures)");
    let m = with_attachment(
        "Class list (encrypted)",
        "s3@test",
        "class-list.zip",
        "application/zip",
        &zip,
    );
    let t = c.send(FROM, "", &[COUNTY], &m).unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
    assert!(!t.reply.text().contains("held"), "{:?}", t.reply);
    assert_eq!(to(&gw, COUNTY).len(), 2, "both delivered");
    let records = gw.message_records();
    let listed = &records.last().unwrap().message()["attachments"][0];
    assert_eq!(listed["name"], "class-list.zip");
    assert_eq!(listed["encrypted"], true);
    assert_eq!(listed["encryption"], "AES-256 ZIP");
}

#[test]
fn a_rejecting_policy_refuses_with_a_reason_the_sender_understands() {
    let gw = Gateway::start(|cfg| {
        common::set(
            cfg,
            "sensitive.rules.unencrypted-sensitive-attachment",
            "reject",
        );
    });
    let m = with_attachment(
        "List",
        "s4@test",
        "pupils.csv",
        "text/csv",
        &class_list_csv(),
    );
    let mut c = Client::ready(gw.port);
    let t = c.send(FROM, "", &[COUNTY], &m).unwrap();
    assert_eq!(t.reply.code, 550, "{:?}", t.reply);
    let text = t.reply.text();
    assert!(
        text.contains("pupils.csv") && text.contains("not encrypted"),
        "{text}"
    );
    assert!(to(&gw, COUNTY).is_empty());
}

#[test]
fn bombs_are_held_as_unscannable_and_the_server_goes_on() {
    let gw = Gateway::start(|cfg| {
        common::set(cfg, "relay.max_message_size", "60MiB");
    });
    let dir = fixture("fixtures/sensitive/bombs");
    let mut bombs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/make-sensitive-fixtures)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    bombs.sort();
    assert!(bombs.len() >= 4, "bombs: {bombs:?}");
    // The ZIP with 100,000 entries is built here, not committed.
    let many = with_attachment(
        "Files",
        "many@test",
        "zip-100k-entries.zip",
        "application/zip",
        &common::zip_with_empty_entries(100_000),
    );
    let many_path = PathBuf::from("(built) zip-100k-entries.eml");
    let messages = bombs
        .iter()
        .map(|p| (p.clone(), common::to_crlf(&std::fs::read(p).unwrap())))
        .chain(std::iter::once((many_path, many)));
    let mut sent = 0;
    for (n, (path, message)) in messages.enumerate() {
        sent += 1;
        let mut c = Client::ready(gw.port);
        let t = c.send(FROM, "", &[COUNTY], &message).unwrap();
        assert!(t.accepted(), "{}: {:?}", path.display(), t.reply);
        assert!(
            t.reply.text().contains("held for review"),
            "{}: {:?}",
            path.display(),
            t.reply
        );
        let records = gw.message_records();
        let rec = records.last().unwrap();
        assert_eq!(
            rec.message()["findings"][0]["rule"],
            "unscannable-attachment",
            "{}",
            path.display()
        );
        // Still serving: an ordinary message goes straight through.
        let plain = common::plain_message(FROM, COUNTY, "After", &format!("a{n}@test"), "Hi");
        let t = c.send(FROM, "", &[COUNTY], &plain).unwrap();
        assert!(
            t.accepted() && !t.reply.text().contains("held"),
            "{:?}",
            t.reply
        );
    }
    assert_eq!(to(&gw, COUNTY).len(), sent);
}
