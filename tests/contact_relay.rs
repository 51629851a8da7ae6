//! The contact rules through the real server: a flagged message is delivered, nothing about
//! the flag is added to it, and its audit record holds the flag with its evidence.

mod common;

use common::smtp::Client;
use common::{Gateway, plain_message};

#[test]
fn a_message_to_a_pupils_personal_address_is_delivered_and_the_flag_audited() {
    let gw = Gateway::start(|_| {});
    let mut c = Client::ready(gw.port);
    let from = "t.baker@example-academy.sch.uk";
    let to = "jamie.smith2010@gmail.com";
    let m = plain_message(from, to, "Homework", "c1@test", "Here is the sheet.");
    assert!(c.send(from, "", &[to], &m).unwrap().accepted());
    // The DSL's alert may already be in the outbox too: only what went to the pupil counts.
    let out: Vec<_> = gw
        .outbox_messages()
        .into_iter()
        .filter(|m| m.rcpt_to().iter().any(|r| r == to))
        .collect();
    assert_eq!(out.len(), 1, "flag delivers");
    let delivered = String::from_utf8_lossy(&out[0].bytes).to_lowercase();
    assert!(
        !delivered.contains("pupil-personal-address") && !delivered.contains("safeguard"),
        "nothing about the flag leaves the school"
    );
    let records = gw.message_records();
    let flags = records[0].message()["flags"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(flags.len(), 1, "{:?}", records[0].record);
    assert_eq!(flags[0]["rule"], "pupil-personal-address");
    assert_eq!(flags[0]["evidence"], to);
    assert_eq!(flags[0]["action"], "flag");
    // A message to a parent is not flagged.
    let m = plain_message(
        from,
        "parent@example.org",
        "Trip",
        "c2@test",
        "Dear parent.",
    );
    assert!(
        c.send(from, "", &["parent@example.org"], &m)
            .unwrap()
            .accepted()
    );
    let records = gw.message_records();
    assert!(
        records[1].message().get("flags").is_none(),
        "{:?}",
        records[1].record
    );
}
