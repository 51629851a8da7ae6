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
        self.gw
            .message_records()
            .into_iter()
            .find(|r| r.field("message_id").as_deref() == Some(mid))
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
    assert_milter_record(&rig, &rec);
    assert_eq!(rec.field("outcome").as_deref(), Some("deferred"));
    assert_eq!(rec.field("verdict").as_deref(), Some("none"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        rig.sink.accepted().is_empty(),
        "nothing unfiltered went out"
    );
}

/// Files in Postfix's hold queue.
fn hold_queue(postfix: &Postfix) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&postfix.queue_dir.join("hold"), &mut out);
    out
}

/// A message the policy quarantines (here through a contact rule set to `quarantine`, which
/// needs no attachment rules) goes into schoolgate's quarantine as the exact bytes that would
/// have left; Postfix discards its copy; a release delivers those bytes.
#[test]
fn quarantine_schoolgate_holds_the_outgoing_bytes_and_postfix_discards() {
    let rig = Rig::start(|cfg| {
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
    });
    let m = plain_message(
        &format!("Tom Baker <{STAFF}>"),
        PUPIL_PERSONAL,
        "Held",
        "q1@example-academy.sch.uk",
        "Hold me.",
    );
    rig.send("q1.eml", STAFF, &[PUPIL_PERSONAL], &m)
        .assert_ok("swaks → Postfix (quarantined)");
    let rec = rig.record("q1@example-academy.sch.uk");
    assert_milter_record(&rig, &rec);
    assert_eq!(rec.field("verdict").as_deref(), Some("quarantine"));
    assert_eq!(rec.field("outcome").as_deref(), Some("quarantined"));
    let id = rec.field("quarantine_id").expect("a quarantine id");
    let held = std::fs::read(rig.gw.state_dir.join(format!("quarantine/{id}.eml")))
        .expect("the held file");
    assert!(
        String::from_utf8_lossy(&held).contains(DISCLAIMER),
        "held as it would have left, disclaimer included"
    );
    assert!(
        rig.gw.wait_for(Duration::from_secs(10), || rig
            .postfix
            .maillog()
            .contains("milter triggers DISCARD action")),
        "Postfix did not discard its copy:\n{}",
        rig.postfix.maillog()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        rig.sink.accepted().is_empty(),
        "nothing left through Postfix"
    );

    // Held by a safeguarding rule: the DSL's to release, with a reason.
    rig.gw.add_user("ms.dsl", &["dsl"], "dsl password 12");
    let out = rig.gw.cli(&[
        "quarantine",
        "release",
        &id,
        "--as",
        "ms.dsl",
        "--reason",
        "checked with the teacher",
    ]);
    assert!(out.status.success(), "{out:?}");
    let released: Vec<_> = rig
        .gw
        .outbox_messages()
        .into_iter()
        .filter(|m| m.rcpt_to().iter().any(|r| r == PUPIL_PERSONAL))
        .collect();
    assert_eq!(released.len(), 1, "released once through the next hop");
    assert_same_bytes("the released message", &held, &released[0].bytes);
}

/// `quarantine = "hold"`: Postfix keeps the message in its hold queue, with the disclaimer
/// already in it, and the audit record says how to release it.
#[test]
fn quarantine_hold_puts_the_message_in_postfixs_hold_queue() {
    let rig = Rig::start(|cfg| {
        set(cfg, "milter.quarantine", "hold");
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
    });
    let m = plain_message(
        &format!("Tom Baker <{STAFF}>"),
        PUPIL_PERSONAL,
        "Held by Postfix",
        "q2@example-academy.sch.uk",
        "Hold me too.",
    );
    rig.send("q2.eml", STAFF, &[PUPIL_PERSONAL], &m)
        .assert_ok("swaks → Postfix (held)");
    let rec = rig.record("q2@example-academy.sch.uk");
    assert_milter_record(&rig, &rec);
    assert_eq!(rec.field("outcome").as_deref(), Some("quarantined"));
    let qid = rec.field("mta_queue_id").unwrap_or_default();
    assert!(
        rec.field("detail")
            .is_some_and(|d| d.contains(&format!("postsuper -H {qid}"))),
        "{}",
        rec.record_json
    );
    assert!(
        rig.gw
            .wait_for(Duration::from_secs(10), || hold_queue(&rig.postfix).len()
                == 1),
        "nothing in Postfix's hold queue; maillog:\n{}",
        rig.postfix.maillog()
    );
    assert!(
        rig.postfix
            .maillog()
            .contains("milter triggers HOLD action"),
        "{}",
        rig.postfix.maillog()
    );
    assert!(rig.sink.accepted().is_empty());

    // Released by the network manager with Postfix's own tool: delivered with the disclaimer.
    let out = std::process::Command::new(require_tool("postsuper"))
        .arg("-c")
        .arg(&rig.postfix.config_dir)
        .args(["-H", &qid])
        .output()
        .expect("run postsuper");
    assert!(out.status.success(), "postsuper -H: {out:?}");
    let msgs = rig.delivered(1);
    let text = String::from_utf8_lossy(&msgs[0].data);
    assert!(
        text.contains(DISCLAIMER),
        "released without the disclaimer:\n{text}"
    );
    assert_eq!(
        rec.field("sha256_delivered"),
        Some(sha256_hex(&strip_received(&msgs[0].data))),
        "Postfix released exactly what the milter handed back"
    );
}

/// A message with a class list (a CSV with three valid UPNs) attached in clear.
fn class_list_message(mid: &str) -> Vec<u8> {
    let mut csv = String::from("Name,UPN,Form\r\n");
    for n in 0..3 {
        csv.push_str(&format!(
            "Pupil{n} Surname{n},{},7B\r\n",
            common::upn(100 + n)
        ));
    }
    format!(
        "From: Tom Baker <{STAFF}>\r\nTo: <{PARENT}>\r\nSubject: Class list\r\nMessage-ID: <{mid}>\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nThe list.\r\n--b1\r\n\
         Content-Type: text/csv; name=\"7B.csv\"\r\nContent-Disposition: attachment; filename=\"7B.csv\"\r\n\
         \r\n{csv}--b1--\r\n"
    )
    .into_bytes()
}

/// A class list in clear is held in both quarantine modes.
#[test]
fn a_sensitive_attachment_is_held_in_both_quarantine_modes() {
    for mode in ["schoolgate", "hold"] {
        let rig = Rig::start(|cfg| set(cfg, "milter.quarantine", mode));
        let mid = format!("s-{mode}@example-academy.sch.uk");
        rig.send("s.eml", STAFF, &[PARENT], &class_list_message(&mid))
            .assert_ok(&format!("swaks → Postfix (class list, {mode})"));
        let rec = rig.record(&mid);
        assert_milter_record(&rig, &rec);
        assert_eq!(
            rec.message()["findings"][0]["rule"],
            "unencrypted-sensitive-attachment",
            "({mode}) the attachment rules found nothing: are the real src/policy/sensitive/ detectors merged? {}",
            rec.record_json
        );
        assert_eq!(
            rec.field("outcome").as_deref(),
            Some("quarantined"),
            "({mode})"
        );
        match mode {
            "schoolgate" => {
                let id = rec.field("quarantine_id").expect("a quarantine id");
                assert!(
                    rig.gw
                        .state_dir
                        .join(format!("quarantine/{id}.eml"))
                        .exists()
                );
            }
            _ => assert!(
                rig.gw
                    .wait_for(Duration::from_secs(10), || hold_queue(&rig.postfix).len()
                        == 1),
                "nothing in Postfix's hold queue:\n{}",
                rig.postfix.maillog()
            ),
        }
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            rig.sink.accepted().is_empty(),
            "({mode}) nothing was delivered"
        );
        // The sender hears why, through the next hop.
        assert!(
            rig.gw.wait_for(Duration::from_secs(10), || rig
                .gw
                .outbox_messages()
                .iter()
                .any(|m| m.rcpt_to().iter().any(|r| r == STAFF))),
            "({mode}) no sender notice"
        );
    }
}

/// The milter on a Unix socket, as `smtpd_milters = unix:/…` reaches it. The socket is made
/// owner-and-group only; the mail server's user must be in its group (here: chgrp postfix).
#[test]
fn the_milter_listens_on_a_unix_socket() {
    let dir = tempfile::Builder::new()
        .prefix("schoolgate-milter-sock-")
        .tempdir()
        .expect("a directory for the socket");
    let socket = dir.path().join("milter.sock");
    let gw = Gateway::start(|cfg| set(cfg, "milter.listen", socket.display().to_string()));
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(&socket).expect("the socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the socket's directory");
    let chgrp = std::process::Command::new("chgrp")
        .arg("postfix")
        .arg(&socket)
        .status()
        .expect("run chgrp");
    assert!(chgrp.success());
    let sink = Sink::start(SinkBehaviour::accept());
    let postfix = Postfix::start_with(
        sink.port,
        &format!(
            "smtpd_milters = unix:{}\nmilter_default_action = tempfail\n",
            socket.display()
        ),
    );
    let rig = Rig { gw, sink, postfix };
    let m = plain_message(
        &format!("Tom Baker <{STAFF}>"),
        PARENT,
        "Over a socket",
        "u1@example-academy.sch.uk",
        "Hello.",
    );
    rig.send("u1.eml", STAFF, &[PARENT], &m)
        .assert_ok("swaks → Postfix → unix socket");
    let msgs = rig.delivered(1);
    assert!(String::from_utf8_lossy(&msgs[0].data).contains(DISCLAIMER));
    assert_milter_record(&rig, &rig.record("u1@example-academy.sch.uk"));
}

/// A client that goes away in the middle of DATA: Postfix hands a milter the content only once
/// the message is complete, so it abandons this one before schoolgate sees any of it; nothing
/// is delivered and nothing recorded as accepted. (An abandoned message whose content had
/// reached the milter is recorded as aborted: tests/milter_protocol.rs.)
#[test]
fn a_client_that_goes_away_leaves_nothing_delivered() {
    let rig = Rig::start(|_| {});
    let mut c = Client::ready(rig.postfix.port);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{STAFF}>")).unwrap().code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{PARENT}>")).unwrap().code, 250);
    assert_eq!(c.cmd("DATA").unwrap().code, 354);
    let mut partial = format!(
        "From: <{STAFF}>\r\nTo: <{PARENT}>\r\nSubject: cut off\r\nMessage-ID: <a1@example-academy.sch.uk>\r\n\r\n"
    );
    partial.push_str(&"half a message\r\n".repeat(2000));
    c.write(partial.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    c.drop_connection();
    // Instead of waiting a while and finding nothing: a whole message after it, through the
    // same Postfix and milter. Once it is at the sink, the cut one is long settled.
    let after = plain_message(
        STAFF,
        PARENT,
        "After the cut",
        "after-cut@example-academy.sch.uk",
        "Hello.",
    );
    rig.send("after.eml", STAFF, &[PARENT], &after)
        .assert_ok("a whole message after the cut one");
    let msgs = rig.delivered(1);
    let ids: Vec<String> = msgs
        .iter()
        .map(|m| String::from_utf8_lossy(&m.data).into_owned())
        .collect();
    assert_eq!(msgs.len(), 1, "only the whole message reached the sink");
    assert!(
        ids[0].contains("after-cut@example-academy.sch.uk"),
        "{}",
        ids[0]
    );
    assert_milter_record(&rig, &rig.record("after-cut@example-academy.sch.uk"));
    let records = rig.gw.message_records();
    assert!(
        records
            .iter()
            .filter(|r| r.field("message_id").as_deref() == Some("a1@example-academy.sch.uk"))
            .all(|r| r.field("outcome").as_deref() == Some("aborted")),
        "{:?}",
        records.iter().map(|r| &r.record_json).collect::<Vec<_>>()
    );
}
