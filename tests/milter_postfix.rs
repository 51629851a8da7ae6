//! The milter with a real Postfix: swaks → Postfix (`smtpd_milters = inet:127.0.0.1:PORT`) →
//! schoolgate's milter → Postfix delivers to an in-test sink. The disclaimer is there, the
//! headteacher's mail is untouched, a flag alerts the DSL, a sensitive attachment is held in
//! either quarantine, a rule that rejects is a 5xx, and a message too big for the milter is
//! tempfailed rather than let through unfiltered.

mod common;

use std::time::Duration;

use common::*;

const STAFF: &str = "t.baker@example-academy.sch.uk";
const PARENT: &str = "parent@example.org";
const PUPIL_PERSONAL: &str = "jamie.smith2010@gmail.com";
const DSL: &str = "dsl@example-academy.sch.uk";
const DISCLAIMER: &str = "The views expressed are not necessarily those of Example Academy.";

/// A gateway with its milter on, a sink standing for the Internet, and a Postfix between.
struct Rig {
    gw: Gateway,
    sink: Sink,
    postfix: Postfix,
}

impl Rig {
    fn start(tweak: impl FnOnce(&mut toml::Table)) -> Rig {
        let milter_port = free_port();
        let gw = Gateway::start(|cfg| {
            set(cfg, "milter.listen", format!("127.0.0.1:{milter_port}"));
            set(cfg, "safeguarding.alert_window", "0s");
            tweak(cfg);
        });
        let sink = Sink::start(SinkBehaviour::accept());
        let postfix = Postfix::start_with(
            sink.port,
            &format!(
                "smtpd_milters = inet:127.0.0.1:{milter_port}\n\
                 milter_default_action = tempfail\n\
                 milter_protocol = 6\n"
            ),
        );
        Rig { gw, sink, postfix }
    }

    /// Sends `message` through Postfix with swaks.
    fn send(&self, name: &str, from: &str, to: &[&str], message: &[u8]) -> SwaksRun {
        let file = swaks_data_file(self.postfix.dir.path(), name, message);
        swaks(&[
            "--server".to_string(),
            format!("127.0.0.1:{}", self.postfix.port),
            "--from".into(),
            from.into(),
            "--to".into(),
            to.join(","),
            "--data".into(),
            format!("@{}", file.display()),
            "--no-data-fixup".into(),
        ])
    }

    /// Waits for `n` messages at the sink.
    fn delivered(&self, n: usize) -> Vec<SinkMessage> {
        let ok = self
            .gw
            .wait_for(Duration::from_secs(30), || self.sink.accepted().len() >= n);
        assert!(
            ok,
            "{} of {n} messages reached the sink within 30 s; Postfix's maillog:\n{}\nsink:\n{}",
            self.sink.accepted().len(),
            self.postfix.maillog(),
            self.sink.transcript()
        );
        self.sink.accepted()
    }

    /// The message record whose Message-ID is `mid`.
    fn record(&self, mid: &str) -> AuditRow {
        let want = format!("{mid}");
        self.gw
            .message_records()
            .into_iter()
            .find(|r| r.field("message_id").as_deref() == Some(want.as_str()))
            .unwrap_or_else(|| {
                panic!(
                    "no audit record for {mid}; records:\n{}",
                    self.gw
                        .message_records()
                        .iter()
                        .map(|r| r.record_json.clone())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
    }
}

fn by_mid<'a>(msgs: &'a [SinkMessage], mid: &str) -> &'a SinkMessage {
    msgs.iter()
        .find(|m| header_value(&m.data, "Message-ID").as_deref() == Some(&format!("<{mid}>")))
        .unwrap_or_else(|| panic!("no delivered message with Message-ID <{mid}>"))
}

/// The milter's record names its path and Postfix's queue id, which Postfix's log knows.
fn assert_milter_record(rig: &Rig, rec: &AuditRow) {
    assert_eq!(
        rec.field("path").as_deref(),
        Some("milter"),
        "{}",
        rec.record_json
    );
    let qid = rec
        .field("mta_queue_id")
        .unwrap_or_else(|| panic!("no mta_queue_id: {}", rec.record_json));
    assert!(
        rig.postfix.maillog().contains(&format!("{qid}: ")),
        "Postfix's queue id {qid} is not in its log:\n{}",
        rig.postfix.maillog()
    );
}

#[test]
fn the_disclaimer_is_added_and_the_headteachers_mail_is_untouched() {
    let rig = Rig::start(|_| {});
    let staff = plain_message(
        &format!("Tom Baker <{STAFF}>"),
        PARENT,
        "Trip letter",
        "m1@example-academy.sch.uk",
        "Dear parent,\n\nThe trip is on Friday.\n.\n..dots\n\nMr Baker\n",
    );
    rig.send("staff.eml", STAFF, &[PARENT], &staff)
        .assert_ok("swaks → Postfix (staff)");
    let head = plain_message(
        &format!("Margaret Hughes <{HEADTEACHER}>"),
        PARENT,
        "From the head",
        "m2@example-academy.sch.uk",
        "Dear parents,\n\nA word from the head.\n",
    );
    rig.send("head.eml", HEADTEACHER, &[PARENT], &head)
        .assert_ok("swaks → Postfix (headteacher)");

    let msgs = rig.delivered(2);
    let staff_out = by_mid(&msgs, "m1@example-academy.sch.uk");
    let text = String::from_utf8_lossy(&staff_out.data);
    assert!(text.contains(DISCLAIMER), "no disclaimer:\n{text}");
    assert!(
        text.contains("\r\n..dots\r\n"),
        "dot-stuffed line lost:\n{text}"
    );
    assert!(
        !text.contains("schoolgate") || text.contains("Example Academy"),
        "nothing internal is added:\n{text}"
    );
    let head_out = by_mid(&msgs, "m2@example-academy.sch.uk");
    // Postfix's Received: first, then the headteacher's message exactly as sent.
    assert_same_bytes(
        "the headteacher's message below Postfix's Received:",
        &head,
        &strip_received(&head_out.data),
    );

    let rec = rig.record("m1@example-academy.sch.uk");
    assert_milter_record(&rig, &rec);
    assert_eq!(rec.field("disclaimer").as_deref(), Some("appended"));
    assert_eq!(rec.field("verdict").as_deref(), Some("deliver"));
    assert_eq!(rec.field("outcome").as_deref(), Some("accepted"));
    assert_eq!(
        rec.field("sha256_delivered"),
        Some(sha256_hex(&strip_received(&staff_out.data))),
        "the recorded hash is of what Postfix delivered (below its trace header)"
    );
    let rec = rig.record("m2@example-academy.sch.uk");
    assert_milter_record(&rig, &rec);
    assert_eq!(rec.field("disclaimer").as_deref(), Some("exempt"));
    assert_eq!(rec.field("sha256_received"), Some(sha256_hex(&head)));
}

#[test]
fn a_flagged_message_is_delivered_and_alerts_the_dsl() {
    let rig = Rig::start(|_| {});
    let m = plain_message(
        &format!("Tom Baker <{STAFF}>"),
        PUPIL_PERSONAL,
        "Revision notes",
        "f1@example-academy.sch.uk",
        "Notes for the exam. Private body text.",
    );
    rig.send("flag.eml", STAFF, &[PUPIL_PERSONAL], &m)
        .assert_ok("swaks → Postfix (flagged)");
    let msgs = rig.delivered(1);
    let out = by_mid(&msgs, "f1@example-academy.sch.uk");
    assert_eq!(out.rcpt_to, vec![PUPIL_PERSONAL.to_string()]);
    assert!(String::from_utf8_lossy(&out.data).contains(DISCLAIMER));

    let rec = rig.record("f1@example-academy.sch.uk");
    assert_milter_record(&rig, &rec);
    assert_eq!(rec.message()["flags"][0]["rule"], "pupil-personal-address");
    // The evidence is the delivered copy, below Postfix's trace header.
    let evidence = rec.field("evidence").expect("evidence kept");
    let kept = std::fs::read(rig.gw.state_dir.join(&evidence)).expect("the evidence file");
    assert_same_bytes("evidence", &strip_received(&out.data), &kept);

    let alerts = || {
        rig.gw
            .outbox_messages()
            .into_iter()
            .filter(|m| m.rcpt_to().iter().any(|r| r == DSL))
            .collect::<Vec<_>>()
    };
    assert!(
        rig.gw
            .wait_for(Duration::from_secs(15), || alerts().len() == 1),
        "no DSL alert in the outbox:\n{}",
        rig.gw.log_tail(4000)
    );
    let text = String::from_utf8_lossy(&alerts()[0].bytes).into_owned();
    for needle in [
        "pupil-personal-address",
        STAFF,
        PUPIL_PERSONAL,
        "Revision notes",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from the alert:\n{text}"
        );
    }
    assert!(!text.contains("Private body text"));
}

#[test]
fn a_rule_that_rejects_is_a_5xx_with_the_reason() {
    let rig = Rig::start(|cfg| {
        set(cfg, "safeguarding.rules.pupil-personal-address", "reject");
    });
    let m = plain_message(
        &format!("Tom Baker <{STAFF}>"),
        PUPIL_PERSONAL,
        "Hello",
        "r1@example-academy.sch.uk",
        "Hi.",
    );
    let run = rig.send("reject.eml", STAFF, &[PUPIL_PERSONAL], &m);
    assert!(
        !run.ok(),
        "Postfix accepted a rejected message:\n{}",
        run.transcript
    );
    let last = run
        .server_lines()
        .into_iter()
        .rev()
        .find(|l| l.starts_with('5'));
    let last = last.unwrap_or_else(|| panic!("no 5xx:\n{}", run.transcript));
    assert!(
        last.starts_with("550 5.7.1") && last.contains("pupil-personal-address"),
        "{last}"
    );
    let rec = rig.record("r1@example-academy.sch.uk");
    assert_eq!(rec.field("outcome").as_deref(), Some("rejected"));
    assert!(rig.sink.accepted().is_empty());
}

#[test]
fn a_message_too_big_for_the_milter_is_tempfailed_not_let_through() {
    let rig = Rig::start(|cfg| set(cfg, "milter.max_message_size", "4KiB"));
    let body = "All work and no play makes Jack a dull boy.\n".repeat(200);
    let m = plain_message(
        &format!("Tom Baker <{STAFF}>"),
        PARENT,
        "Long",
        "big1@example-academy.sch.uk",
        &body,
    );
    let run = rig.send("big.eml", STAFF, &[PARENT], &m);
    assert!(!run.ok(), "Postfix accepted it:\n{}", run.transcript);
    let lines = run.server_lines();
    assert!(
        lines.iter().any(|l| l.starts_with("452 4.3.4")),
        "expected 452 4.3.4:\n{}",
        run.transcript
    );
    let rec = rig.record("big1@example-academy.sch.uk");
    assert_eq!(rec.field("outcome").as_deref(), Some("deferred"));
    assert_eq!(rec.field("verdict").as_deref(), Some("none"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        rig.sink.accepted().is_empty(),
        "nothing unfiltered went out"
    );
}
