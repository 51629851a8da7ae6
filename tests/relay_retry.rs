//! A client's retry of a message whose 250 it never heard (README "Running two gateways",
//! issue 19 "every 250 is delivered and recorded exactly once"), on one gateway with SQLite:
//! the window is made to happen every time by a client that sends the message's final dot
//! and hangs up without waiting for the reply. The gateway delivers and records it; the
//! gateway is then killed with SIGKILL and started again (the crash); the client's retry gets
//! 250 with the original's queue id, and the message is at the next hop once, recorded once,
//! with a `retry-answered` record for the retry. A held message retried is held once, with
//! one DSL alert. (Two gateways on one PostgreSQL: tests/pg_trust_nodes.rs.)

mod common;

use std::time::Duration;

use common::smtp::Client;
use common::{AuditRow, Gateway, dot_stuffed, plain_message, set};

const FROM: &str = "t.baker@example-academy.sch.uk";
const PARENT: &str = "parent@example.org";
const PUPIL: &str = "jamie.smith2010@gmail.com";

/// Sends `message` and hangs up right after its final dot, never reading the reply: what a
/// client sees when the gateway dies between recording a message and answering it.
fn send_and_hang_up(port: u16, from: &str, to: &str, message: &[u8]) {
    let mut c = Client::ready(port);
    for line in [format!("MAIL FROM:<{from}>"), format!("RCPT TO:<{to}>")] {
        let r = c.cmd(&line).expect("the gateway answers");
        assert_eq!(r.code, 250, "{line}: {r}");
    }
    let r = c.cmd("DATA").expect("the gateway answers DATA");
    assert_eq!(r.code, 354, "{r}");
    c.write(&dot_stuffed(message)).expect("the message is sent");
    c.drop_connection();
}

fn records_of(gw: &Gateway, message_id: &str) -> Vec<AuditRow> {
    gw.audit_records()
        .into_iter()
        .filter(|r| r.field("message_id").as_deref() == Some(message_id))
        .collect()
}

fn outcomes(rows: &[AuditRow]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| (r.kind.clone(), r.field("outcome").unwrap_or_default()))
        .collect()
}

#[test]
fn a_retry_of_a_message_delivered_and_recorded_before_a_crash_is_answered_not_delivered_again() {
    let mut gw = Gateway::start(|cfg| {
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
    });
    let report = plain_message(
        FROM,
        PARENT,
        "Report",
        "retry-report@test",
        "Termly report.",
    );
    let homework = plain_message(FROM, PUPIL, "Homework", "retry-held@test", "See you.");
    send_and_hang_up(gw.port, FROM, PARENT, &report);
    send_and_hang_up(gw.port, FROM, PUPIL, &homework);
    let recorded = |gw: &Gateway| {
        !records_of(gw, "retry-report@test").is_empty()
            && !records_of(gw, "retry-held@test").is_empty()
    };
    assert!(
        gw.wait_for(Duration::from_secs(30), || recorded(&gw)),
        "both messages recorded although their clients hung up\n{}",
        gw.log_tail(3000)
    );
    let first = records_of(&gw, "retry-report@test");
    assert_eq!(
        outcomes(&first),
        [("message".to_string(), "delivered".to_string())]
    );
    let queue_id = first[0].field("queue_id").expect("a queue id");
    let held = records_of(&gw, "retry-held@test");
    assert_eq!(
        outcomes(&held),
        [("message".to_string(), "quarantined".to_string())]
    );
    let held_id = held[0].field("quarantine_id").expect("a quarantine id");

    // The crash, then the client's retries.
    gw.restart();
    let mut c = Client::ready(gw.port);
    let t = c.send(FROM, "", &[PARENT], &report).expect("the retry");
    let text = t.reply.text();
    assert_eq!(t.reply.code, 250, "{text}\n{}", gw.log_tail(3000));
    assert!(
        text.starts_with(&format!("2.0.0 Ok: queued as {queue_id} ("))
            && text.contains("already delivered"),
        "the retry is told the original's queue id {queue_id}: {text}"
    );
    let t = c.send(FROM, "", &[PUPIL], &homework).expect("the retry");
    assert_eq!(
        t.reply.text(),
        format!("2.0.0 Ok: held for review as {held_id}"),
        "the retry of a held message is told its entry"
    );
    c.quit();

    // At the next hop once; recorded once, and each retry once as answered.
    let copies = gw
        .outbox_messages()
        .iter()
        .filter(|m| {
            m.header("Message-ID")
                .is_some_and(|id| id.trim().trim_matches(['<', '>']) == "retry-report@test")
        })
        .count();
    assert_eq!(copies, 1, "delivered once\n{}", gw.log_tail(3000));
    let rows = records_of(&gw, "retry-report@test");
    assert_eq!(
        outcomes(&rows),
        [
            ("message".to_string(), "delivered".to_string()),
            (
                "retry-answered".to_string(),
                "already-delivered".to_string()
            )
        ]
    );
    let detail = rows[1].field("detail").unwrap_or_default();
    assert!(
        detail.contains(&format!("recorded as {}", rows[0].seq)),
        "the retry's record names the original's: {detail}"
    );
    assert_eq!(
        outcomes(&records_of(&gw, "retry-held@test")),
        [
            ("message".to_string(), "quarantined".to_string()),
            ("retry-answered".to_string(), "already-held".to_string())
        ]
    );
    gw.add_user("school.dsl", &["dsl"], "dsl password 12");
    let list: serde_json::Value =
        serde_json::from_str(&gw.cli_ok(&["quarantine", "list", "--json", "--as", "school.dsl"]))
            .expect("quarantine list --json prints JSON");
    let entries = list.as_array().expect("a list");
    assert_eq!(entries.len(), 1, "held once: {list}");
    assert_eq!(entries[0]["id"], held_id.as_str(), "{list}");
    // One DSL alert for the one hold: the retry raised none.
    let alerts = || {
        gw.outbox_messages()
            .iter()
            .filter(|m| {
                m.header("Subject")
                    .is_some_and(|s| s.starts_with("Safeguarding alert"))
            })
            .count()
    };
    assert!(
        gw.wait_for(Duration::from_secs(20), || alerts() >= 1),
        "the hold's alert\n{}",
        gw.log_tail(3000)
    );
    // The alert sender looks at its queue twice a second: time for a wrong second one.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(alerts(), 1, "one alert for the one hold");
    gw.assert_audit_verifies("after the retries");
}
