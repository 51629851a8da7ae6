//! The README's scan-time limit (`[sensitive.limits] max_scan_time`, 10 s per message by
//! default) through the real gateway: an attachment that takes longer to open than the limit is
//! held as `unscannable-attachment`, never passed unread; under the default limit the same
//! attachment is read and delivered.

mod common;

use common::smtp::Client;
use common::{Gateway, message_with_attachment, set, zip_with_empty_entries};

const FROM: &str = "t.baker@example-academy.sch.uk";
const COUNTY: &str = "admissions@county.gov.example";

/// A ZIP of 5,000 entries (under `max_entries`), nothing sensitive in it.
fn message(mid: &str) -> Vec<u8> {
    message_with_attachment(
        (FROM, COUNTY),
        "Photos",
        mid,
        ("photos.zip", "application/zip"),
        &zip_with_empty_entries(5000),
    )
}

#[test]
fn an_attachment_slower_to_open_than_the_limit_is_held() {
    // 1 ms: opening 5,000 entries takes longer, however fast the machine.
    let gw = Gateway::start(|cfg| set(cfg, "sensitive.limits.max_scan_time", "1ms"));
    let mut c = Client::ready(gw.port);
    let t = c.send(FROM, "", &[COUNTY], &message("slow@test")).unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
    assert!(t.reply.text().contains("held for review"), "{}", t.reply);
    let rec = gw.message_records().pop().expect("a message record");
    assert_eq!(rec.field("outcome").as_deref(), Some("quarantined"));
    let finding = &rec.message()["findings"][0];
    assert_eq!(
        finding["rule"], "unscannable-attachment",
        "{}",
        rec.record_json
    );
    assert!(
        finding.to_string().contains("took longer than 1ms"),
        "the finding says why: {finding}"
    );
    assert!(
        gw.outbox_messages()
            .iter()
            .all(|m| !m.rcpt_to().iter().any(|r| r == COUNTY)),
        "nothing reached the next hop"
    );
    drop(gw);

    // The default limit (10 s) is ample for it: read, nothing found, delivered.
    let gw = Gateway::start(|_| {});
    let mut c = Client::ready(gw.port);
    let t = c.send(FROM, "", &[COUNTY], &message("fast@test")).unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
    assert!(!t.reply.text().contains("held"), "{}", t.reply);
    let rec = gw.message_records().pop().expect("a message record");
    assert_eq!(
        rec.field("outcome").as_deref(),
        Some("delivered"),
        "{}",
        rec.record_json
    );
}
