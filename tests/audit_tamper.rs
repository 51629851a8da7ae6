//! `audit verify` against a trail tampered with through the real `sqlite3` CLI: a changed
//! subject, a changed column beside a record (sender, outcome, kind, time), a deleted row, two rows swapped, the tail dropped (also when the gateway goes on
//! writing afterwards), the head dropped; each is caught with the right record named, and an
//! untouched trail, or one purged under retention, verifies.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::smtp::Client;
use common::{Gateway, plain_message, require_tool, set};

const FROM: &str = "t.baker@example-academy.sch.uk";

/// A gateway that has relayed `n` messages (subjects "Report 1" … "Report n"), then stopped.
fn trail(n: usize) -> Gateway {
    let mut gw = Gateway::start(common::relay_only);
    let mut c = Client::ready(gw.port);
    for i in 1..=n {
        let m = plain_message(
            FROM,
            "parent@example.org",
            &format!("Report {i}"),
            &format!("r{i}@test"),
            "Termly report attached.",
        );
        let t = c.send(FROM, "", &["parent@example.org"], &m).unwrap();
        assert!(t.accepted(), "{:?}", t.reply);
    }
    gw.kill9();
    gw
}

/// A copy of the gateway's state and config, to tamper with on its own.
struct Copy {
    _dir: tempfile::TempDir,
    config: PathBuf,
    db: PathBuf,
}

fn copy(gw: &Gateway, tweak: impl FnOnce(&mut toml::Table)) -> Copy {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // The WAL is folded in first, so the copy is one self-contained file.
    sqlite(
        &gw.state_dir.join("schoolgate.db"),
        "PRAGMA wal_checkpoint(TRUNCATE);",
    );
    std::fs::copy(
        gw.state_dir.join("schoolgate.db"),
        state.join("schoolgate.db"),
    )
    .unwrap();
    let mut cfg: toml::Table =
        toml::from_str(&std::fs::read_to_string(&gw.config_path).unwrap()).unwrap();
    set(
        &mut cfg,
        "storage.state_dir",
        state.to_string_lossy().into_owned(),
    );
    tweak(&mut cfg);
    let config = dir.path().join("schoolgate.toml");
    std::fs::write(&config, toml::to_string(&cfg).unwrap()).unwrap();
    Copy {
        config,
        db: state.join("schoolgate.db"),
        _dir: dir,
    }
}

/// Runs SQL through the sqlite3 command-line tool, as someone tampering would.
fn sqlite(db: &Path, sql: &str) {
    let out = Command::new(require_tool("sqlite3"))
        .arg(db)
        .arg(sql)
        .output()
        .expect("run sqlite3");
    assert!(
        out.status.success(),
        "sqlite3 {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn schoolgate(c: &Copy, args: &[&str]) -> Output {
    common::schoolgate_cli(&c.config, args)
}

/// `audit verify`: its exit code and what it printed.
fn verify(c: &Copy) -> (Option<i32>, String) {
    let out = schoolgate(c, &["audit", "verify"]);
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn assert_broken_at(c: &Copy, seq: u64, words: &str) {
    let (code, text) = verify(c);
    eprintln!("verify: {}", text.trim_end());
    assert_eq!(code, Some(1), "verify should fail: {text}");
    assert!(
        text.contains(&format!("audit trail BROKEN at record {seq}:")),
        "verify should name record {seq}: {text}"
    );
    assert!(text.contains(words), "verify should say {words:?}: {text}");
}

/// The sequence number of the message record with this subject.
fn seq_of(gw: &Gateway, subject: &str) -> u64 {
    gw.message_records()
        .iter()
        .find(|r| r.field("subject").as_deref() == Some(subject))
        .unwrap_or_else(|| panic!("no record with subject {subject}"))
        .seq as u64
}

#[test]
fn tampering_is_caught_and_named() {
    let gw = trail(6);
    let total = gw.audit_records().len() as u64;
    assert!(total >= 7, "start and 6 messages: {total}");

    // Untouched: intact, with the count and head.
    let c = copy(&gw, |_| {});
    let (code, text) = verify(&c);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("audit trail intact: {total} records, head ")),
        "{text}"
    );

    // A subject changed.
    let c = copy(&gw, |_| {});
    let s = seq_of(&gw, "Report 3");
    sqlite(
        &c.db,
        &format!(
            "UPDATE audit SET record = replace(record, 'Report 3', 'Report 9') WHERE seq = {s};"
        ),
    );
    assert_broken_at(&c, s, "the record was changed");

    // A row deleted.
    let c = copy(&gw, |_| {});
    let s = seq_of(&gw, "Report 2");
    sqlite(&c.db, &format!("DELETE FROM audit WHERE seq = {s};"));
    assert_broken_at(&c, s, &format!("record {s} is missing (deleted)"));

    // Two rows swapped.
    let c = copy(&gw, |_| {});
    let s = seq_of(&gw, "Report 4");
    sqlite(
        &c.db,
        &format!(
            "BEGIN; UPDATE audit SET seq = -1 WHERE seq = {s}; UPDATE audit SET seq = {s} WHERE seq = {n};
             UPDATE audit SET seq = {n} WHERE seq = -1; COMMIT;",
            n = s + 1
        ),
    );
    assert_broken_at(
        &c,
        s,
        &format!("holds the entry written as record {}", s + 1),
    );

    // The tail dropped.
    let c = copy(&gw, |_| {});
    let keep = total - 3;
    sqlite(&c.db, &format!("DELETE FROM audit WHERE seq > {keep};"));
    assert_broken_at(&c, keep + 1, "the tail was cut off");

    // The tail dropped, and then schoolgate writes again (here: an export is audited): the
    // chain grows over the gap, but the cut is still named.
    let c = copy(&gw, |_| {});
    sqlite(&c.db, &format!("DELETE FROM audit WHERE seq > {keep};"));
    common::http::add_user(&c.config, "dsl", &["dsl"], "dsl password 12");
    let out = schoolgate(&c, &["audit", "export", "--format", "jsonl", "--as", "dsl"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_broken_at(&c, keep + 1, "tampered with");
    let db = rusqlite::Connection::open(&c.db).unwrap();
    let notice: String = db
        .query_row(
            "SELECT record FROM audit WHERE seq = ?1",
            [keep as i64 + 1],
            |r| r.get(0),
        )
        .unwrap();
    assert!(notice.contains("audit trail tampered with"), "{notice}");

    // The oldest rows dropped, with no purge to account for them.
    let c = copy(&gw, |_| {});
    sqlite(&c.db, "DELETE FROM audit WHERE seq <= 2;");
    assert_broken_at(&c, 1, "records 1 to 2 are missing");

    // The export index changed: an export for that address would miss the message.
    let c = copy(&gw, |_| {});
    let s = seq_of(&gw, "Report 5");
    sqlite(
        &c.db,
        &format!("DELETE FROM audit_key WHERE seq = {s} AND key = 'a:parent@example.org';"),
    );
    assert_broken_at(&c, s, "the export index lacks a:parent@example.org");

    // The time column changed: an export by date would miss the message.
    let c = copy(&gw, |_| {});
    let s = seq_of(&gw, "Report 1");
    sqlite(
        &c.db,
        &format!("UPDATE audit SET time = '2001-01-01T00:00:00Z' WHERE seq = {s};"),
    );
    assert_broken_at(&c, s, "its time column says \"2001-01-01T00:00:00Z\"");

    // Issue 15 item 13: every other column kept beside the hashed record, edited one at a
    // time, is caught and named: the envelope sender, the outcome (both set, and emptied), the
    // kind, and a sender given to a record that is not about a message.
    let start = gw
        .audit_records()
        .iter()
        .find(|r| r.kind != "message")
        .expect("a record that is not about a message (the start)")
        .seq as u64;
    let s = seq_of(&gw, "Report 2");
    for (seq, set_sql, words) in [
        (
            s,
            "mail_from = 'someone.else@example-academy.sch.uk'",
            "its mail_from column says \"someone.else@example-academy.sch.uk\" but the record says \"t.baker@example-academy.sch.uk\"",
        ),
        (s, "mail_from = NULL", "its mail_from column says nothing"),
        (
            s,
            "outcome = 'rejected'",
            "its outcome column says \"rejected\" but the record says \"delivered\"",
        ),
        (s, "outcome = NULL", "its outcome column says nothing"),
        (s, "kind = 'action'", "its kind column says \"action\""),
        (
            start,
            "mail_from = 't.baker@example-academy.sch.uk'",
            "its mail_from column says \"t.baker@example-academy.sch.uk\" but the record says nothing",
        ),
    ] {
        let c = copy(&gw, |_| {});
        sqlite(
            &c.db,
            &format!("UPDATE audit SET {set_sql} WHERE seq = {seq};"),
        );
        assert_broken_at(&c, seq, words);
    }

    // `audit checkpoint` prints the head as `verify --checkpoint` takes it.
    let c = copy(&gw, |_| {});
    let out = schoolgate(&c, &["audit", "checkpoint"]);
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success(), "{line}");
    let last = gw.audit_records().last().unwrap().clone();
    let seq_hash = format!("{}:{}", last.seq, last.hash);
    assert!(line.ends_with(&format!("head {seq_hash}")), "{line}");
    let out = schoolgate(&c, &["audit", "verify", "--checkpoint", &seq_hash]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("checkpoints match"), "{text}");

    // A checkpoint kept elsewhere that the trail no longer matches.
    let bad = format!("3:{}", "ab".repeat(32));
    let out = schoolgate(&c, &["audit", "verify", "--checkpoint", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("BROKEN at record 3") && text.contains("the checkpoint given"),
        "{text}"
    );
}

#[test]
fn a_retention_purge_keeps_the_chain_verifiable_and_is_audited() {
    let gw = trail(5);
    let c = copy(&gw, |cfg| set(cfg, "audit.retention_days", 30));
    // Make the first four records old (the time column is what the purge looks at).
    sqlite(
        &c.db,
        "UPDATE audit SET time = '2020-01-01T00:00:00Z' WHERE seq <= 4;",
    );
    // The purge is the DSL's (the audit trail is the DSL's evidence).
    common::http::add_user(&c.config, "ms.dsl", &["dsl"], "dsl password 12");
    let out = schoolgate(&c, &["audit", "purge", "--as", "ms.dsl"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("records 1 to 4 (4 records"), "{text}");

    let (code, text) = verify(&c);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("records 1 to 4 were purged"), "{text}");
    assert!(text.starts_with("audit trail intact: "), "{text}");
    assert!(text.contains(" records (5 to "), "the records kept: {text}");

    // The purge is itself a record, by who ran it, carrying the hash of record 4.
    let db = rusqlite::Connection::open(&c.db).unwrap();
    let (first, record): (i64, String) = db
        .query_row(
            "SELECT (SELECT min(seq) FROM audit), record FROM audit WHERE kind = 'purge'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(first, 5);
    let purge: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(purge["action"]["actor"], "ms.dsl");
    assert_eq!(purge["purge"]["last_seq"], 4);
    assert_eq!(
        purge["purge"]["last_hash"],
        gw.audit_records()[3].hash.as_str()
    );

    // Deleting more from the start is not a purge.
    sqlite(&c.db, "DELETE FROM audit WHERE seq = 5;");
    assert_broken_at(&c, 5, "record 5 is missing");
}
