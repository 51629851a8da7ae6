//! Seed 000: "The school requires a standard disclaimer to be attached to all email
//! correspondence except those of the Headteacher." Through the real server (and through
//! `schoolgate check`): the headteacher's mail leaves without the disclaimer, a colleague's with
//! it, and a message is exempt only when both the envelope sender and the From header are the
//! exempt person.

mod common;
mod disclaimer_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::smtp::Client;
use common::{Gateway, assert_relayed_intact, plain_message, set, smtp_canonical, strip_received};
use disclaimer_support as ds;

const HEAD: &str = "head@example-academy.sch.uk";
const COLLEAGUE: &str = "t.baker@example-academy.sch.uk";
const PARENT: &str = "jane.parent@example.org";

/// Relays one plain message and returns (what was sent, what reached the outbox, the
/// gateway's Received: header included).
fn relay(
    gw: &Gateway,
    envelope_from: &str,
    header_from: &str,
    subject: &str,
) -> (Vec<u8>, Vec<u8>) {
    let msg = smtp_canonical(&plain_message(
        header_from,
        PARENT,
        subject,
        &format!("{}@disclaimer.test", subject.replace(' ', "-")),
        "Dear Mrs Parent,\r\n\r\nSam's consent form has arrived. See you on Thursday.\r\n\r\nKind regards\r\n",
    ));
    let mut c = Client::ready(gw.port);
    let t = c
        .send(envelope_from, "", &[PARENT], &msg)
        .expect("SMTP transaction");
    assert!(
        t.accepted(),
        "the gateway refused {subject:?} from {envelope_from}: {:?} {}\n{}",
        t.stage,
        t.reply,
        gw.log_tail(4000)
    );
    c.quit();
    let mut found = None;
    let arrived = gw.wait_for(Duration::from_secs(10), || {
        found = gw
            .outbox_messages()
            .into_iter()
            .find(|m| m.header("Subject").as_deref() == Some(subject));
        found.is_some()
    });
    assert!(
        arrived,
        "{subject:?} never reached the outbox:\n{}",
        gw.log_tail(4000)
    );
    (msg, found.expect("found").bytes)
}

fn count_disclaimers(delivered: &[u8]) -> usize {
    String::from_utf8_lossy(&strip_received(delivered))
        .matches(ds::TEXT)
        .count()
}

/// The audit record's disclaimer outcome for the message with `subject`, if the record has
/// such a field.
fn audited_outcome(gw: &Gateway, subject: &str) -> Option<Option<String>> {
    let records = gw.message_records();
    let rec = records
        .iter()
        .rev()
        .find(|r| {
            r.field("subject").as_deref() == Some(subject)
                || r.record_json.contains(&format!("\"{subject}\""))
        })
        .unwrap_or_else(|| {
            panic!(
                "no audit record for {subject:?} among {} message records",
                records.len()
            )
        });
    if rec.message().get("disclaimer").is_some() {
        Some(rec.field("disclaimer"))
    } else {
        eprintln!(
            "NOTE: the audit record has no \"disclaimer\" field (SPEC: a message record holds the disclaimer outcome): {}",
            rec.record_json
        );
        None
    }
}

fn expect_audited(gw: &Gateway, subject: &str, want: &str) {
    if let Some(got) = audited_outcome(gw, subject) {
        assert_eq!(
            got.as_deref(),
            Some(want),
            "audit record for {subject:?}: disclaimer outcome"
        );
    }
}

#[test]
fn the_headteachers_mail_leaves_without_the_disclaimer_and_a_colleagues_with_it() {
    let gw = Gateway::start(|_| {});

    let (sent, head) = relay(&gw, HEAD, HEAD, "From the headteacher");
    assert_eq!(
        count_disclaimers(&head),
        0,
        "the headteacher's message got the disclaimer:\n{}",
        String::from_utf8_lossy(&head)
    );
    assert_relayed_intact("the headteacher's message", &sent, &head);
    expect_audited(&gw, "From the headteacher", "exempt");

    let (sent, colleague) = relay(&gw, COLLEAGUE, COLLEAGUE, "From a colleague");
    assert_eq!(
        count_disclaimers(&colleague),
        1,
        "a colleague's message must carry the disclaimer exactly once:\n{}",
        String::from_utf8_lossy(&colleague)
    );
    let checked = ds::check_rewrite(&sent, &strip_received(&colleague), ds::EXAMPLE);
    assert!(
        checked.failures.is_empty(),
        "the colleague's message was rewritten wrongly:\n  {}",
        checked.failures.join("\n  ")
    );
    expect_audited(&gw, "From a colleague", "appended");
}

#[test]
fn both_the_envelope_sender_and_the_from_header_must_be_the_headteacher() {
    let gw = Gateway::start(|_| {});

    let (_, delivered) = relay(&gw, HEAD, COLLEAGUE, "Envelope head, From colleague");
    assert_eq!(
        count_disclaimers(&delivered),
        1,
        "envelope head@ with From t.baker@ is not the headteacher's mail: it needs the disclaimer"
    );
    expect_audited(&gw, "Envelope head, From colleague", "appended");

    let (_, delivered) = relay(&gw, COLLEAGUE, HEAD, "Envelope colleague, From head");
    assert_eq!(
        count_disclaimers(&delivered),
        1,
        "envelope t.baker@ with From head@ is not the headteacher's mail: it needs the disclaimer"
    );
    expect_audited(&gw, "Envelope colleague, From head", "appended");
}

#[test]
fn exempt_addresses_are_exempt_too() {
    let gw = Gateway::start(|cfg| {
        set(
            cfg,
            "disclaimer.exempt_addresses",
            toml::Value::Array(vec![COLLEAGUE.into()]),
        )
    });
    let (sent, delivered) = relay(&gw, COLLEAGUE, COLLEAGUE, "Exempt by address");
    assert_eq!(count_disclaimers(&delivered), 0);
    assert_relayed_intact("an exempt address's message", &sent, &delivered);
    expect_audited(&gw, "Exempt by address", "exempt");

    // Matching is on the address, not on its spelling.
    let shouting = COLLEAGUE.to_ascii_uppercase();
    let (_, delivered) = relay(&gw, &shouting, &shouting, "Exempt in capitals");
    assert_eq!(
        count_disclaimers(&delivered),
        0,
        "{shouting} is the exempt address in other letters"
    );
}

/// `schoolgate check MESSAGE --config policies/example.toml [--from ADDR] --json --out OUT`.
fn check(message: &[u8], from: Option<&str>) -> (serde_json::Value, Vec<u8>) {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let input = tmp.path().join("in.eml");
    let output = tmp.path().join("out.eml");
    std::fs::write(&input, message).expect("write the message");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_schoolgate"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("SCHOOLGATE_CONFIG")
        .arg("check")
        .arg(&input)
        .args(["--config", "policies/example.toml", "--json", "--out"])
        .arg(&output);
    if let Some(from) = from {
        cmd.args(["--from", from]);
    }
    let out = cmd.output().expect("run schoolgate check");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "schoolgate check failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("check --json did not print one JSON object ({e}): {stdout}"));
    (
        json,
        std::fs::read(&output).expect("check --out wrote the message"),
    )
}

/// A fixture with its From header replaced.
fn fixture_from(name: &str, from: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/disclaimer")
        .join(format!("{name}.eml"));
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let text = String::from_utf8(raw).expect("the fixture is ASCII");
    let old = "From: Tom Baker <t.baker@example-academy.sch.uk>";
    assert!(text.contains(old), "{name} has no From: Tom Baker header");
    text.replacen(old, &format!("From: {from}"), 1).into_bytes()
}

#[test]
fn check_shows_the_headteacher_exempt_and_the_colleague_appended() {
    let head_msg = fixture_from("gmail-reply", &format!("Margaret Hughes <{HEAD}>"));

    // From header only (the envelope defaults to it).
    let (json, out) = check(&head_msg, None);
    assert_eq!(json["disclaimer"], "exempt", "{json}");
    assert!(
        out == head_msg,
        "exempt, but --out is not the message unchanged"
    );
    assert_eq!(json["sha256_original"], json["sha256_delivered"], "{json}");

    // Envelope and From both the headteacher.
    let (json, _) = check(&head_msg, Some(HEAD));
    assert_eq!(json["disclaimer"], "exempt", "{json}");

    // The headteacher's From with a colleague's envelope is not exempt.
    let (json, out) = check(&head_msg, Some(COLLEAGUE));
    assert_eq!(json["disclaimer"], "appended", "{json}");
    assert_ne!(json["sha256_original"], json["sha256_delivered"], "{json}");
    let checked = ds::check_rewrite(&head_msg, &out, ds::EXAMPLE);
    assert!(
        checked.failures.is_empty(),
        "{}",
        checked.failures.join("\n")
    );

    // A colleague's message, and the headteacher's envelope over a colleague's From.
    let colleague_msg = fixture_from("gmail-reply", &format!("Tom Baker <{COLLEAGUE}>"));
    for from in [None, Some(HEAD)] {
        let (json, out) = check(&colleague_msg, from);
        assert_eq!(json["disclaimer"], "appended", "--from {from:?}: {json}");
        assert_ne!(out, colleague_msg);
    }
}
