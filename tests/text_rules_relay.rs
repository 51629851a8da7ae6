//! The rules that read a message's words through the real relay: a report sent to the wrong
//! parent and an encrypted ZIP sent with its password are held (250 "held for review"), reach
//! nobody, are audited with their evidence, and the sender's notice says why (the pupil and
//! the parent it went to; that the password must go another way) without the password.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::smtp::Client;
use common::{Gateway, OutboxMessage};

const FROM: &str = "t.baker@example-academy.sch.uk";
const OLIVIAS_PARENT: &str = "mark.bennett@outlook.com";
const COUNCIL: &str = "admissions@council.example.gov.uk";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/text-rules")
        .join(name)
}

fn to(gw: &Gateway, who: &str) -> Vec<OutboxMessage> {
    gw.outbox_messages()
        .into_iter()
        .filter(|m| m.rcpt_to().iter().any(|r| r == who))
        .collect()
}

/// Sends fixture `name` to `rcpt`; the quarantine id from the 250 reply.
fn send_held(gw: &Gateway, name: &str, rcpt: &str) -> String {
    let message = std::fs::read(fixture(name)).expect("read the fixture");
    let mut c = Client::ready(gw.port);
    let t = c.send(FROM, "", &[rcpt], &message).expect("send");
    assert!(t.accepted(), "{name}: {:?}", t.reply);
    let text = t.reply.text();
    assert!(text.contains("held for review"), "{name}: {text}");
    text.rsplit(' ').next().unwrap_or("").trim().to_string()
}

/// The sender's notices, as text, once `n` have arrived.
fn notices(gw: &Gateway, n: usize) -> Vec<String> {
    assert!(
        gw.wait_for(Duration::from_secs(30), || to(gw, FROM).len() >= n),
        "{n} sender notices never reached the outbox\n{}",
        gw.log_tail(40)
    );
    to(gw, FROM)
        .into_iter()
        .map(|m| String::from_utf8_lossy(&m.bytes).into_owned())
        .collect()
}

#[test]
fn the_wrong_parent_and_a_password_beside_its_file_are_held_audited_and_explained() {
    let gw = Gateway::start(|cfg| {
        common::set(
            cfg,
            "school.directory",
            fixture("directory.csv").to_string_lossy().into_owned(),
        );
    });

    let report = send_held(&gw, "report.eml", OLIVIAS_PARENT);
    let zip = send_held(&gw, "aes-zip-password.eml", COUNCIL);
    assert!(
        to(&gw, OLIVIAS_PARENT).is_empty(),
        "a held message is not delivered"
    );
    assert!(
        to(&gw, COUNCIL).is_empty(),
        "a held message is not delivered"
    );

    // The audit records carry the findings with their evidence, never the password.
    let records = gw.message_records();
    let wrong = records
        .iter()
        .find(|r| r.record_json.contains("wrong-recipient"))
        .expect("the wrong-recipient record");
    assert_eq!(wrong.field("outcome").as_deref(), Some("quarantined"));
    let evidence = wrong.message()["findings"].to_string();
    assert!(
        evidence.contains("pupil-name at the subject: Jamie Carter"),
        "{evidence}"
    );
    assert!(evidence.contains(OLIVIAS_PARENT), "{evidence}");
    let password = records
        .iter()
        .find(|r| r.record_json.contains("password-in-message"))
        .expect("the password-in-message record");
    assert!(
        !password.record_json.contains("Kestrel-42"),
        "{}",
        password.record_json
    );

    // Each sender is told why and what to do.
    let all = notices(&gw, 2);
    let about = |id: &str| {
        all.iter()
            .find(|n| n.contains(id))
            .unwrap_or_else(|| panic!("no notice quoting {id}: {all:#?}"))
            .replace("\r\n ", " ")
            .replace("\n ", " ")
    };
    let n = about(&report);
    for needle in [
        "Jamie Carter",
        OLIVIAS_PARENT,
        "Olivia Bennett",
        "Check the recipients",
    ] {
        assert!(n.contains(needle), "{needle} missing from the notice:\n{n}");
    }
    let n = about(&zip);
    assert!(
        n.contains("another way"),
        "the notice says what to do:\n{n}"
    );
    assert!(
        !n.contains("Kestrel-42"),
        "the notice never repeats the password:\n{n}"
    );
}
