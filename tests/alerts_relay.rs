//! DSL alerts and evidence through the real server: a flagged message is delivered, the DSL's
//! alert lands through the next hop, the delivered copy is kept, and a burst is one alert.

mod common;

use std::time::Duration;

use common::smtp::Client;
use common::{Gateway, plain_message, set};

const FROM: &str = "t.baker@example-academy.sch.uk";
const PUPIL_PERSONAL: &str = "jamie.smith2010@gmail.com";
const DSL: &str = "dsl@example-academy.sch.uk";

fn alerts(gw: &Gateway) -> Vec<common::OutboxMessage> {
    gw.outbox_messages()
        .into_iter()
        .filter(|m| m.rcpt_to().iter().any(|r| r == DSL))
        .collect()
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
fn a_burst_of_flags_from_one_sender_is_one_alert() {
    let gw = Gateway::start(|cfg| set(cfg, "safeguarding.alert_window", "5s"));
    let mut c = Client::ready(gw.port);
    for n in 0..3 {
        let m = plain_message(
            FROM,
            PUPIL_PERSONAL,
            &format!("Message {n}"),
            &format!("b{n}@test"),
            "hi",
        );
        assert!(c.send(FROM, "", &[PUPIL_PERSONAL], &m).unwrap().accepted());
    }
    assert!(
        gw.wait_for(Duration::from_secs(40), || !alerts(&gw).is_empty()),
        "no alert:\n{}",
        gw.log_tail(3000)
    );
    std::thread::sleep(Duration::from_secs(3));
    let all = alerts(&gw);
    assert_eq!(all.len(), 1, "one alert for the burst");
    let parsed = mail_parser::MessageParser::new()
        .parse(&all[0].bytes)
        .unwrap();
    let subject = parsed.subject().unwrap_or_default().to_string();
    assert!(subject.contains("3 messages"), "{subject}");
}
