//! The directory through the real server: a change to the file is put in force without SIGHUP
//! and without dropping a session in flight; a file with a bad row is refused, naming the file
//! and line in the log and the audit trail, while the directory already in force keeps serving.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::smtp::Client;
use common::{AuditRow, Gateway, dot_stuffed, plain_message};

/// The sender of every message here: a member of staff in the example directory.
const STAFF: &str = "t.baker@example-academy.sch.uk";
/// The example directory's first pupil and their personal address.
const JAMIE: &str = "jamie.smith2010@gmail.com";
/// A pupil the test adds to the file while the gateway runs.
const LILY_ROW: &str = "pupil,Lily Évans,l.evans@pupils.example-academy.sch.uk,lily.evans2012@gmail.com,,2012-05-05,current";
const LILY: &str = "lily.evans2012@gmail.com";

/// Bounded wait for the 2 s poll to see a change, let it settle for one poll, and reload.
const RELOAD_WITHIN: Duration = Duration::from_secs(10);

/// A copy of the example directory in its own temporary directory.
fn directory_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("schoolgate-directory-")
        .tempdir()
        .expect("create a temporary directory");
    let path = dir.path().join("people.csv");
    std::fs::copy(common::example_directory(), &path).expect("copy the example directory");
    (dir, path)
}

fn start(csv: &Path) -> Gateway {
    let csv = csv.to_string_lossy().into_owned();
    Gateway::start(move |cfg| common::set(cfg, "school.directory", csv))
}

/// The audit records of kind `config-reload`.
fn reloads(gw: &Gateway) -> Vec<AuditRow> {
    gw.audit_records()
        .into_iter()
        .filter(|r| r.kind == "config-reload")
        .collect()
}

/// The message record with `subject`.
fn record_for(gw: &Gateway, subject: &str) -> AuditRow {
    let records = gw.message_records();
    records
        .iter()
        .find(|r| r.field("subject").as_deref() == Some(subject))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no message record with subject {subject:?} among {:?}",
                records.iter().map(|r| &r.record).collect::<Vec<_>>()
            )
        })
}

/// `(rule, evidence)` of each flag on a message record.
fn flags(row: &AuditRow) -> Vec<(String, String)> {
    row.message()["flags"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_string(),
                f["evidence"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn assert_flagged(row: &AuditRow, address: &str) {
    let flags = flags(row);
    assert!(
        flags
            .iter()
            .any(|(rule, evidence)| rule == "pupil-personal-address" && evidence == address),
        "expected a pupil-personal-address flag on {address}; the record: {}",
        row.record
    );
}

/// Is a message with `subject` in the outbox, addressed to `to`?
fn delivered(gw: &Gateway, subject: &str, to: &str) -> bool {
    gw.outbox_messages()
        .iter()
        .any(|m| m.header("Subject").as_deref() == Some(subject) && m.rcpt_to() == [to])
}

#[test]
fn a_changed_directory_is_reloaded_and_a_bad_one_refused_while_the_old_keeps_serving() {
    let (_keep, csv) = directory_copy();
    let gw = start(&csv);
    let original = std::fs::read_to_string(&csv).unwrap();

    // Before the change, Lily's address is nobody's.
    let mut c = Client::ready(gw.port);
    let m = plain_message(STAFF, LILY, "before", "d0@test", "Hello.");
    assert!(c.send(STAFF, "", &[LILY], &m).unwrap().accepted());
    assert!(
        flags(&record_for(&gw, "before")).is_empty(),
        "{}",
        record_for(&gw, "before").record
    );

    // (a) A session that has begun a transaction before the change...
    let mut in_flight = Client::ready(gw.port);
    assert_eq!(
        in_flight.cmd(&format!("MAIL FROM:<{STAFF}>")).unwrap().code,
        250
    );
    assert_eq!(
        in_flight.cmd(&format!("RCPT TO:<{LILY}>")).unwrap().code,
        250
    );

    // ...and a new pupil appended to the file, as an MIS export adds one: no SIGHUP.
    let mut text = original.clone();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(LILY_ROW);
    text.push('\n');
    std::fs::write(&csv, &text).unwrap();
    assert!(
        gw.wait_for(RELOAD_WITHIN, || gw
            .log()
            .contains("configuration reloaded")),
        "the changed directory was not reloaded within {RELOAD_WITHIN:?}:\n{}",
        gw.log_tail(4000)
    );
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .unwrap();
    assert!(
        line.contains(&format!("after a change to {}", csv.display()))
            && line.contains("(6 people)"),
        "the log says why and what was reloaded: {line}"
    );

    // The session in flight is not dropped by the reload; its message is judged by the new
    // directory, since it reached the policy after the reload.
    assert_eq!(in_flight.cmd("DATA").unwrap().code, 354);
    let m = plain_message(STAFF, LILY, "in flight", "d1@test", "Hello.");
    in_flight.write(&dot_stuffed(&m)).unwrap();
    let r = in_flight.read_reply().unwrap();
    assert_eq!(r.code, 250, "the message in flight: {r}");
    assert_flagged(&record_for(&gw, "in flight"), LILY);
    in_flight.quit();

    // A new message to the new pupil's personal address is flagged and delivered.
    let m = plain_message(STAFF, LILY, "after reload", "d2@test", "Hello.");
    assert!(c.send(STAFF, "", &[LILY], &m).unwrap().accepted());
    let row = record_for(&gw, "after reload");
    assert_flagged(&row, LILY);
    assert_eq!(row.field("outcome").as_deref(), Some("delivered"));
    assert!(delivered(&gw, "after reload", LILY));
    assert_eq!(reloads(&gw).len(), 1, "one change, one reload");

    // (b) A file with a bad row: line 4 has a role nobody configured. It also leaves Lily
    // out, so a directory that was put in force anyway would not flag her.
    let bad: String = original
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 3 {
                format!("caretaker{}\n", &l[l.find(',').unwrap()..])
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(bad.lines().nth(3).unwrap().starts_with("caretaker,"));
    std::fs::write(&csv, &bad).unwrap();
    let want = format!("{}:4: unknown role \"caretaker\"", csv.display());
    assert!(
        gw.wait_for(RELOAD_WITHIN, || gw.log().contains("reload refused")),
        "the bad directory was not refused within {RELOAD_WITHIN:?}:\n{}",
        gw.log_tail(4000)
    );
    let log = gw.log();
    let refused = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(
        refused.contains(&want),
        "the log line names the file and line ({want}): {refused}"
    );
    gw.wait_for(RELOAD_WITHIN, || reloads(&gw).len() >= 2);
    let records = reloads(&gw);
    assert_eq!(
        records.len(),
        2,
        "{:?}",
        records.iter().map(|r| &r.record).collect::<Vec<_>>()
    );
    let detail = records[1].record.to_string();
    assert!(
        detail.contains("reload refused") && detail.contains(&want.replace('"', "\\\"")),
        "the audit record says the reload was refused, and why: {detail}"
    );

    // The directory of (a) keeps serving: both pupils' personal addresses are still flagged,
    // and the message is delivered.
    let m = plain_message(STAFF, LILY, "after refusal", "d3@test", "Hello.");
    assert!(c.send(STAFF, "", &[LILY], &m).unwrap().accepted());
    let row = record_for(&gw, "after refusal");
    assert_flagged(&row, LILY);
    assert_eq!(row.field("outcome").as_deref(), Some("delivered"));
    assert!(delivered(&gw, "after refusal", LILY));
    let m = plain_message(STAFF, JAMIE, "to jamie", "d4@test", "Hello.");
    assert!(c.send(STAFF, "", &[JAMIE], &m).unwrap().accepted());
    assert_flagged(&record_for(&gw, "to jamie"), JAMIE);
    assert!(delivered(&gw, "to jamie", JAMIE));

    // The refused file is not tried again and again: two more polls, no more reloads.
    std::thread::sleep(Duration::from_millis(4500));
    assert_eq!(
        reloads(&gw).len(),
        2,
        "one change, one reload:\n{}",
        gw.log_tail(4000)
    );
    c.quit();
}
