//! DSL alerts and evidence through the real server: a flagged message is delivered, the DSL's
//! alert lands through the next hop, the delivered copy is kept; the first flag is alerted at
//! once and later ones in one follow-up per `alert_window`; every alert carries the audit
//! chain's head, which catches a removed-and-rehashed record; a flag on the headteacher goes to
//! `escalate_to` and never to them; notices go only to the school's own domains and carry no
//! injected header; an alert the next hop refuses is given up with a `mail-undelivered:` record
//! the DSL's web page shows.

mod common;

use std::time::{Duration, Instant};

use common::smtp::Client;
use common::{Gateway, OutboxMessage, Sink, SinkBehaviour, plain_message, set};

const FROM: &str = "t.baker@example-academy.sch.uk";
const PUPIL_PERSONAL: &str = "jamie.smith2010@gmail.com";
const DSL: &str = "dsl@example-academy.sch.uk";

fn alerts(gw: &Gateway) -> Vec<common::OutboxMessage> {
    gw.outbox_messages()
        .into_iter()
        .filter(|m| m.rcpt_to().iter().any(|r| r == DSL))
        .filter(|m| subject(m).starts_with("Safeguarding alert"))
        .collect()
}

/// The audit records of the flagged messages, as `(seq, time)`.
fn flagged_records(gw: &Gateway) -> Vec<(u64, jiff::Timestamp)> {
    gw.message_records()
        .into_iter()
        .filter(|r| {
            r.message()["flags"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
        })
        .map(|r| (r.seq as u64, r.time.parse().unwrap()))
        .collect()
}

/// The records of alerts sent, as `(time, the audit records the alert names)`.
fn alert_records(gw: &Gateway) -> Vec<(jiff::Timestamp, Vec<u64>)> {
    gw.audit_records()
        .into_iter()
        .filter_map(|r| {
            let detail = r.record["action"]["detail"].as_str()?.to_string();
            let rest = detail.strip_prefix("DSL alert sent to ")?;
            let seqs = rest
                .split(" for audit records ")
                .nth(1)?
                .split(" (")
                .next()?;
            Some((
                r.time.parse().unwrap(),
                seqs.split(", ").map(|s| s.parse().unwrap()).collect(),
            ))
        })
        .collect()
}

fn flag(c: &mut Client, from: &str, n: usize) {
    let m = plain_message(
        from,
        PUPIL_PERSONAL,
        &format!("Message {n}"),
        &format!("f{n}.{}@test", std::process::id()),
        "hi",
    );
    let t = c.send(from, "", &[PUPIL_PERSONAL], &m).unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
}

/// The Subject as a mail program shows it (decoded: a long one is RFC 2047-encoded).
fn subject(m: &OutboxMessage) -> String {
    mail_parser::MessageParser::new()
        .parse(&m.bytes)
        .and_then(|p| p.subject().map(str::to_string))
        .unwrap_or_default()
}

fn body(m: &OutboxMessage) -> String {
    mail_parser::MessageParser::new()
        .parse(&m.bytes)
        .and_then(|p| p.body_text(0).map(|b| b.into_owned()))
        .unwrap_or_default()
}

#[test]
fn a_flag_reaches_the_dsl_and_the_delivered_copy_is_kept() {
    let gw = Gateway::start(|cfg| set(cfg, "safeguarding.alert_window", "0s"));
    let mut c = Client::ready(gw.port);
    let m = plain_message(
        FROM,
        PUPIL_PERSONAL,
        "Revision notes",
        "a1@test",
        "Notes attached. Private body text.",
    );
    assert!(c.send(FROM, "", &[PUPIL_PERSONAL], &m).unwrap().accepted());
    assert!(
        gw.wait_for(Duration::from_secs(15), || alerts(&gw).len() == 1),
        "no alert:\n{}",
        gw.log_tail(3000)
    );
    let alert = &alerts(&gw)[0];
    let text = String::from_utf8_lossy(&alert.bytes).to_string();
    for needle in [
        "pupil-personal-address",
        FROM,
        PUPIL_PERSONAL,
        "Revision notes",
        "audit record",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from the alert:\n{text}"
        );
    }
    assert!(
        !text.contains("Private body text"),
        "the alert never carries the message itself"
    );
    assert!(alert.header("Auto-Submitted").is_some());

    // The evidence is the exact delivered copy.
    let delivered = gw
        .outbox_messages()
        .into_iter()
        .find(|m| m.rcpt_to().iter().any(|r| r == PUPIL_PERSONAL))
        .expect("the flagged message was delivered");
    let record = gw.message_records().into_iter().next().unwrap();
    let evidence = record.message()["evidence"]
        .as_str()
        .expect("evidence recorded")
        .to_string();
    let kept = std::fs::read(gw.state_dir.join(&evidence)).unwrap();
    assert_eq!(kept, delivered.bytes, "evidence = what the pupil received");
    // The alert's record is written just after the next hop took the alert: wait for it.
    let alert_records = || {
        gw.audit_records()
            .into_iter()
            .filter(|r| r.record.to_string().contains("DSL alert sent"))
            .count()
    };
    gw.wait_for(Duration::from_secs(10), || alert_records() > 0);
    assert_eq!(alert_records(), 1, "the alert is audited");
}

#[test]
fn the_first_flag_is_alerted_at_once_and_a_burst_after_it_is_one_follow_up() {
    let gw = Gateway::start(|cfg| set(cfg, "safeguarding.alert_window", "5s"));
    let mut c = Client::ready(gw.port);
    flag(&mut c, FROM, 0);
    assert!(
        gw.wait_for(Duration::from_secs(10), || alert_records(&gw).len() == 1),
        "the first flag is alerted at once:\n{}",
        gw.log_tail(3000)
    );
    // Two more inside the window: one follow-up when it closes.
    flag(&mut c, FROM, 1);
    flag(&mut c, FROM, 2);
    assert!(
        gw.wait_for(Duration::from_secs(40), || {
            alert_records(&gw)
                .iter()
                .map(|(_, s)| s.len())
                .sum::<usize>()
                == 3
        }),
        "every flag alerted:\n{}",
        gw.log_tail(3000)
    );
    let sent = alert_records(&gw);
    assert_eq!(
        sent.len(),
        2,
        "the first at once, then one follow-up: {sent:?}"
    );
    assert_eq!(
        sent[0].1.len(),
        1,
        "the first alert is the first flag alone"
    );
    let all = alerts(&gw);
    assert_eq!(all.len(), 2);
    let subjects: Vec<String> = all.iter().map(subject).collect();
    assert!(
        subjects
            .iter()
            .any(|s| s.contains("(follow-up)") && s.contains("2 messages")),
        "{subjects:?}"
    );
}

#[test]
fn the_first_alert_comes_within_ten_seconds_and_its_checkpoint_catches_a_rehashed_removal() {
    // The default alert_window (2 minutes) must not hold the first alert back.
    let mut gw = Gateway::start(|_| {});
    let mut c = Client::ready(gw.port);
    for n in 0..3 {
        let m = plain_message(
            FROM,
            "parent@example.org",
            &format!("Report {n}"),
            &format!("r{n}@test"),
            "Hi.",
        );
        assert!(
            c.send(FROM, "", &["parent@example.org"], &m)
                .unwrap()
                .accepted()
        );
    }
    flag(&mut c, FROM, 0);
    let accepted = Instant::now();
    assert!(
        gw.wait_for(Duration::from_secs(60), || !alerts(&gw).is_empty()),
        "no alert:\n{}",
        gw.log_tail(3000)
    );
    let waited = accepted.elapsed();
    assert!(
        waited <= Duration::from_secs(10),
        "the first alert took {waited:?}"
    );

    let text = body(&alerts(&gw)[0]);
    let seq_hash = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Audit checkpoint: "))
        .unwrap_or_else(|| panic!("no checkpoint line in the alert:\n{text}"))
        .to_string();
    let (seq, _) = seq_hash.split_once(':').unwrap();
    let seq: i64 = seq.parse().unwrap();
    let flagged = flagged_records(&gw);
    assert!(
        seq >= flagged[0].0 as i64,
        "the head covers the flag it alerts"
    );
    let out = gw.cli(&["audit", "verify", "--checkpoint", &seq_hash]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Someone with the database removes "Report 1" and rehashes everything after it, the
    // database's own head and checkpoints included.
    gw.kill9();
    let db = gw.state_dir.join("schoolgate.db");
    let removed = gw
        .message_records()
        .into_iter()
        .find(|r| r.record_json.contains("Report 1"))
        .unwrap()
        .seq;
    remove_and_rehash(&db, removed);
    let out = gw.cli(&["audit", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the rehash fools verify without a checkpoint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gw.cli(&["audit", "verify", "--checkpoint", &seq_hash]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "the checkpoint in the alert catches it: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Deletes record `removed` and renumbers and rehashes every record after it, as someone with
/// write access to the database would to hide it.
fn remove_and_rehash(db: &std::path::Path, removed: i64) {
    use sha2::{Digest, Sha256};
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let tx = conn.transaction().unwrap();
    type Row = (i64, String, String, Option<String>, Option<String>, String);
    let rows: Vec<Row> = {
        let mut st = tx
            .prepare(
                "SELECT seq, time, kind, mail_from, outcome, record FROM audit WHERE seq > ?1 ORDER BY seq",
            )
            .unwrap();
        st.query_map([removed], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    let mut prev: String = tx
        .query_row(
            "SELECT hash FROM audit WHERE seq = ?1",
            [removed - 1],
            |r| r.get(0),
        )
        .unwrap();
    tx.execute("DELETE FROM audit WHERE seq >= ?1", [removed])
        .unwrap();
    for (seq, time, kind, mail_from, outcome, record) in rows {
        let seq = seq - 1;
        let mut h = Sha256::new();
        h.update(format!("{seq}\n{prev}\n{record}").as_bytes());
        let hash = hex::encode(h.finalize());
        tx.execute(
            "INSERT INTO audit (seq, time, kind, mail_from, outcome, record, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![seq, time, kind, mail_from, outcome, record, prev, hash],
        )
        .unwrap();
        prev = hash;
    }
    tx.execute("DELETE FROM audit_checkpoint", []).unwrap();
    // The export index follows the renumbered records.
    tx.execute("DELETE FROM audit_key WHERE seq = ?1", [removed])
        .unwrap();
    tx.execute(
        "UPDATE audit_key SET seq = -(seq - 1) WHERE seq > ?1",
        [removed],
    )
    .unwrap();
    tx.execute("UPDATE audit_key SET seq = -seq WHERE seq < 0", [])
        .unwrap();
    tx.execute(
        "UPDATE audit_head SET seq = (SELECT MAX(seq) FROM audit), hash = ?1",
        [&prev],
    )
    .unwrap();
    tx.commit().unwrap();
}

#[test]
fn a_sender_flagged_every_two_seconds_gets_at_most_four_alerts_each_in_time() {
    let gw = Gateway::start(|cfg| set(cfg, "safeguarding.alert_window", "6s"));
    let mut c = Client::ready(gw.port);
    let start = Instant::now();
    for n in 0..8 {
        // The pace of a busy teacher: one flagged message every 2 s for 14 s.
        let due = Duration::from_secs(2 * n as u64);
        if let Some(left) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(left);
        }
        flag(&mut c, FROM, n);
    }
    assert!(
        gw.wait_for(Duration::from_secs(60), || {
            alert_records(&gw)
                .iter()
                .map(|(_, s)| s.len())
                .sum::<usize>()
                >= 8
        }),
        "every flag alerted:\n{}",
        gw.log_tail(3000)
    );
    let flagged = flagged_records(&gw);
    assert_eq!(flagged.len(), 8);
    let sent = alert_records(&gw);
    assert!(sent.len() <= 4, "at most 4 alerts for 8 flags: {sent:?}");
    let mut covered: Vec<u64> = sent.iter().flat_map(|(_, s)| s.clone()).collect();
    covered.sort_unstable();
    let want: Vec<u64> = flagged.iter().map(|(s, _)| *s).collect();
    assert_eq!(covered, want, "every flag in exactly one alert");
    // The first within 10 s of its flag; none more than the window (6 s) and a margin after
    // its flag, so every flag is alerted within 12 s of the last.
    let first = sent[0].0.duration_since(flagged[0].1);
    assert!(
        first <= jiff::SignedDuration::from_secs(10),
        "first alert after {first}"
    );
    for (seq, time) in &flagged {
        let (sent_at, _) = sent.iter().find(|(_, s)| s.contains(seq)).unwrap();
        let waited = sent_at.duration_since(*time);
        assert!(
            waited <= jiff::SignedDuration::from_secs(9),
            "flag {seq} waited {waited} (window 6 s)"
        );
    }
    eprintln!(
        "8 flags 2 s apart, alert_window 6 s: {} alerts; first after {first}; waits {:?}",
        sent.len(),
        flagged
            .iter()
            .map(|(seq, t)| {
                let (at, _) = sent.iter().find(|(_, s)| s.contains(seq)).unwrap();
                at.duration_since(*t).as_secs_f64()
            })
            .collect::<Vec<_>>()
    );
    let last_flag = flagged.last().unwrap().1;
    let last_alert = sent.iter().map(|(t, _)| *t).max().unwrap();
    assert!(last_alert.duration_since(last_flag) <= jiff::SignedDuration::from_secs(12));
    assert_eq!(alerts(&gw).len(), sent.len(), "each alert reached the DSL");
}

#[test]
fn the_headteachers_own_flag_goes_to_escalate_to_and_never_to_the_head() {
    const HEAD: &str = "head@example-academy.sch.uk";
    const CHAIR: &str = "chair@governors.example";
    let gw = Gateway::start(|cfg| {
        set(cfg, "safeguarding.alert_window", "0s");
        set(
            cfg,
            "safeguarding.escalate_to",
            toml::Value::Array(vec![CHAIR.into()]),
        );
    });
    let mut c = Client::ready(gw.port);
    flag(&mut c, HEAD, 0);
    let escalated = || -> Vec<OutboxMessage> {
        gw.outbox_messages()
            .into_iter()
            .filter(|m| subject(m).starts_with("Safeguarding alert"))
            .collect()
    };
    assert!(
        gw.wait_for(Duration::from_secs(30), || !escalated().is_empty()),
        "no alert:\n{}\n{:?}",
        gw.log_tail(3000),
        gw.outbox_messages()
            .iter()
            .map(|m| String::from_utf8_lossy(&m.bytes[..m.bytes.len().min(400)]).into_owned())
            .collect::<Vec<_>>()
    );
    // A teacher's flag still goes to the DSL, and is the last alert to wait for.
    flag(&mut c, FROM, 1);
    assert!(gw.wait_for(Duration::from_secs(30), || escalated().len() == 2));
    let all = escalated();
    let about_head: Vec<&OutboxMessage> = all.iter().filter(|m| body(m).contains(HEAD)).collect();
    assert_eq!(about_head.len(), 1);
    assert_eq!(about_head[0].rcpt_to(), [CHAIR]);
    assert!(subject(about_head[0]).contains("(escalated)"));
    assert!(
        !gw.outbox_messages()
            .iter()
            .any(|m| m.rcpt_to().iter().any(|r| r == HEAD)),
        "nothing schoolgate wrote went to the head"
    );
    let about_teacher = all.iter().find(|m| !body(m).contains(HEAD)).unwrap();
    assert_eq!(about_teacher.rcpt_to(), [DSL]);

    // `policy check` warns when escalate_to is missing.
    let mut cfg: toml::Table =
        toml::from_str(&std::fs::read_to_string(&gw.config_path).unwrap()).unwrap();
    common::unset(&mut cfg, "safeguarding.escalate_to");
    let path = gw.config_path.with_file_name("no-escalation.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["policy", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines().any(
            |l| l.starts_with("warning: [safeguarding] escalate_to is empty") && l.contains(HEAD)
        ),
        "{text}"
    );
}

fn class_list(from: &str, subject: &str, mid: &str) -> Vec<u8> {
    let mut csv = String::from("Name,UPN,Date of birth,Form\r\n");
    for n in 0..30 {
        csv.push_str(&format!(
            "Pupil{n} Surname{n},{},{:02}/0{}/2014,7B\r\n",
            common::upn(100 + n),
            n % 28 + 1,
            n % 9 + 1
        ));
    }
    common::message_with_attachment(
        (from, "admissions@county.gov.example"),
        subject,
        mid,
        ("7B class list.csv", "text/csv"),
        csv.as_bytes(),
    )
}

#[test]
fn notices_go_only_to_the_schools_own_domains_and_carry_no_injected_header() {
    const OUTSIDE: &str = "anyone@outside.example";
    let gw = Gateway::start(|_| {});
    let mut c = Client::ready(gw.port);
    // An encoded CR LF in the Subject, as issue 15 shows it.
    let m = class_list(
        FROM,
        "=?UTF-8?Q?x=0D=0AReply-To:_a@evil.example?=",
        "n1@test",
    );
    let t = c
        .send(FROM, "", &["admissions@county.gov.example"], &m)
        .unwrap();
    assert!(t.reply.text().contains("held for review"), "{:?}", t.reply);
    let m = class_list(OUTSIDE, "Class list", "n2@test");
    let t = c
        .send(OUTSIDE, "", &["admissions@county.gov.example"], &m)
        .unwrap();
    let held_outside = t.accepted();
    let notices = || -> Vec<OutboxMessage> {
        gw.outbox_messages()
            .into_iter()
            .filter(|m| subject(m).starts_with("Message held"))
            .collect()
    };
    assert!(
        gw.wait_for(Duration::from_secs(20), || !notices().is_empty()),
        "the school sender's notice never came:\n{}",
        gw.log_tail(3000)
    );
    let notice = &notices()[0];
    assert_eq!(notice.rcpt_to(), [FROM]);
    let parsed = mail_parser::MessageParser::new()
        .parse(&notice.bytes)
        .unwrap();
    let names: Vec<String> = parsed
        .headers()
        .iter()
        .map(|h| h.name().to_ascii_lowercase())
        .collect();
    for bad in ["reply-to", "bcc", "cc"] {
        assert!(
            !names.iter().any(|n| n == bad),
            "{bad} in the notice: {names:?}"
        );
    }
    assert_eq!(
        parsed.subject(),
        Some("Message held: x  Reply-To: a@evil.example")
    );
    if held_outside {
        // Wait until the outside sender's message is audited, then a while for any notice.
        assert!(gw.wait_for(Duration::from_secs(10), || {
            gw.message_records()
                .iter()
                .any(|r| r.mail_from.as_deref() == Some(OUTSIDE))
        }));
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            assert!(
                !gw.outbox_messages()
                    .iter()
                    .any(|m| m.rcpt_to().iter().any(|r| r == OUTSIDE)),
                "a notice went to an outside address"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    assert_eq!(notices().len(), 1, "one notice: to the school's own sender");
}

#[test]
fn an_alert_the_next_hop_refuses_is_given_up_recorded_and_shown_to_the_dsl() {
    let sink = Sink::start(SinkBehaviour::rcpt_reply("550 5.1.1 mailbox unavailable"));
    let gw = Gateway::start(|cfg| {
        set(cfg, "relay.next_hop", sink.url());
        set(cfg, "safeguarding.rules.pupil-personal-address", "reject");
    });
    let mut c = Client::ready(gw.port);
    let m = plain_message(FROM, PUPIL_PERSONAL, "Hello", "u1@test", "hi");
    let t = c.send(FROM, "", &[PUPIL_PERSONAL], &m).unwrap();
    assert!(!t.accepted(), "the rule rejects it: {:?}", t.reply);
    let undelivered = || -> Vec<String> {
        gw.audit_records()
            .into_iter()
            .filter_map(|r| r.record["action"]["detail"].as_str().map(str::to_string))
            .filter(|d| d.starts_with("mail-undelivered: alert"))
            .collect()
    };
    assert!(
        gw.wait_for(Duration::from_secs(30), || !undelivered().is_empty()),
        "no mail-undelivered record:\n{}",
        gw.log_tail(3000)
    );
    let detail = &undelivered()[0];
    let seq = flagged_records(&gw)[0].0;
    assert!(
        detail.contains(&format!("audit records {seq} ")),
        "{detail}"
    );
    assert!(detail.contains(DSL) && detail.contains("550"), "{detail}");
    // Given up, not retried: one try reached the sink, and no more follow.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(undelivered().len(), 1);
    let tries = sink
        .messages()
        .iter()
        .filter(|m| m.rcpt_to.iter().any(|r| r == DSL))
        .count();
    assert!(tries <= 1, "a refused alert is not retried: {tries} tries");

    gw.add_user("dsl", &["dsl"], "correct horse battery staple");
    gw.add_user(
        "netman",
        &["network-manager"],
        "correct horse battery staple",
    );
    let mut nm =
        common::http::Browser::logged_in(gw.web_port(), "netman", "correct horse battery staple");
    assert_eq!(nm.get("/undelivered").status, 403, "DSL role only");
    let mut b =
        common::http::Browser::logged_in(gw.web_port(), "dsl", "correct horse battery staple");
    let record = gw
        .audit_records()
        .into_iter()
        .find(|r| {
            r.record["action"]["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("mail-undelivered: alert"))
        })
        .unwrap()
        .seq;
    let page = b.get("/undelivered");
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(
        html.contains(&format!("data-seq=\"{record}\"")) && html.contains("550"),
        "{html}"
    );
    assert!(b.get("/flags").text().contains("href=\"/undelivered\""));
}

/// An undelivered alert about the headteacher is, like the head's case, only for those listed
/// for escalation: the chair (an account named as `escalate_to`) sees it on /undelivered, the
/// DSL does not.
#[test]
fn an_undelivered_alert_about_the_head_is_shown_only_to_those_listed_for_escalation() {
    const HEAD: &str = "head@example-academy.sch.uk";
    const CHAIR: &str = "chair@governors.example";
    let sink = Sink::start(SinkBehaviour::rcpt_reply("550 5.1.1 mailbox unavailable"));
    let gw = Gateway::start(|cfg| {
        set(cfg, "relay.next_hop", sink.url());
        set(cfg, "safeguarding.rules.pupil-personal-address", "reject");
        set(cfg, "safeguarding.alert_window", "0s");
        set(
            cfg,
            "safeguarding.escalate_to",
            toml::Value::Array(vec![CHAIR.into()]),
        );
    });
    let mut c = Client::ready(gw.port);
    for (i, from) in [HEAD, FROM].into_iter().enumerate() {
        let m = plain_message(from, PUPIL_PERSONAL, "Hello", &format!("e{i}@test"), "hi");
        let t = c.send(from, "", &[PUPIL_PERSONAL], &m).unwrap();
        assert!(!t.accepted(), "the rule rejects it: {:?}", t.reply);
    }
    let undelivered = || -> Vec<(i64, String)> {
        gw.audit_records()
            .into_iter()
            .filter_map(|r| {
                r.record["action"]["detail"]
                    .as_str()
                    .filter(|d| d.starts_with("mail-undelivered: alert"))
                    .map(|d| (r.seq, d.to_string()))
            })
            .collect()
    };
    assert!(
        gw.wait_for(Duration::from_secs(60), || undelivered().len() == 2),
        "two mail-undelivered records expected: {:?}\n{}",
        undelivered(),
        gw.log_tail(3000)
    );
    let all = undelivered();
    let head = all.iter().find(|(_, d)| d.contains(CHAIR)).unwrap().0;
    let teacher = all.iter().find(|(_, d)| d.contains(DSL)).unwrap().0;

    const PASSWORD: &str = "correct horse battery staple";
    gw.add_user("dsl", &["dsl"], PASSWORD);
    gw.add_user(CHAIR, &["dsl"], PASSWORD);
    let seen = |account: &str| {
        let mut b = common::http::Browser::logged_in(gw.web_port(), account, PASSWORD);
        let page = b.get("/undelivered");
        assert_eq!(page.status, 200);
        let html = page.text();
        (
            html.contains(&format!("data-seq=\"{head}\"")),
            html.contains(&format!("data-seq=\"{teacher}\"")),
        )
    };
    assert_eq!(
        seen("dsl"),
        (false, true),
        "the DSL sees the teacher's, not the head's"
    );
    assert_eq!(
        seen(CHAIR),
        (true, true),
        "the chair, listed for escalation, sees both"
    );
}

#[test]
fn an_alert_the_next_hop_defers_is_retried_with_a_growing_wait_then_delivered() {
    let sink = Sink::start(SinkBehaviour::dot_reply("451 4.3.0 try again later"));
    let gw = Gateway::start(|cfg| {
        set(cfg, "relay.next_hop", sink.url());
        set(cfg, "safeguarding.rules.pupil-personal-address", "reject");
    });
    let mut c = Client::ready(gw.port);
    let m = plain_message(FROM, PUPIL_PERSONAL, "Hello", "d1@test", "hi");
    assert!(!c.send(FROM, "", &[PUPIL_PERSONAL], &m).unwrap().accepted());
    let tries = || {
        sink.messages()
            .iter()
            .filter(|m| m.rcpt_to.iter().any(|r| r == DSL))
            .count()
    };
    assert!(
        gw.wait_for(Duration::from_secs(20), || tries() >= 1),
        "the alert was never tried:\n{}",
        gw.log_tail(3000)
    );
    let first = Instant::now();
    // Tries at about 0, 5 and 15 s: never the old one every half second.
    assert!(
        gw.wait_for(Duration::from_secs(40), || tries() >= 3),
        "the alert was not tried again:\n{}",
        gw.log_tail(3000)
    );
    let third = first.elapsed();
    assert!(
        third >= Duration::from_secs(12),
        "three tries within {third:?}: no backoff (5 s, then 10 s)"
    );
    assert!(
        !gw.audit_records()
            .iter()
            .any(|r| r.record["action"]["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("mail-undelivered:"))),
        "a deferral is not given up before two days"
    );
    // The next hop recovers: the next try delivers it.
    sink.set_behaviour(SinkBehaviour::accept());
    assert!(
        gw.wait_for(Duration::from_secs(60), || sink
            .accepted()
            .iter()
            .any(|m| m.rcpt_to.iter().any(|r| r == DSL))),
        "the alert was not delivered after the next hop recovered:\n{}",
        gw.log_tail(3000)
    );
}
