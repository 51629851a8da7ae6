//! Real Postfix in front of schoolgate: a private Postfix instance (its own config, queue and
//! log under a temporary directory, `relayhost = [127.0.0.1]:SCHOOLGATE_PORT`) relays what
//! swaks gives it through schoolgate into the outbox. This is how a school's mail server uses
//! schoolgate as its smarthost.

mod common;

use std::time::{Duration, Instant};

use common::*;

const FROM: &str = HEADTEACHER;

#[test]
fn postfix_relays_through_schoolgate_into_the_outbox() {
    let gw = Gateway::start(relay_only);
    let postfix = Postfix::start(gw.port);

    let to = ["parent@example.org", "governor@example.net"];
    let message = plain_message(
        "Margaret Hughes <head@example-academy.sch.uk>",
        "parent@example.org, governor@example.net",
        "Relayed by Postfix",
        "postfix-interop-1@example-academy.sch.uk",
        "Dear parents,\n\nThis came through the school's Postfix.\n.\n..a line with dots\n\nMrs Hughes\n",
    );
    let file = swaks_data_file(postfix.dir.path(), "message.swaks", &message);
    let run = swaks(&[
        "--server".to_string(),
        format!("127.0.0.1:{}", postfix.port),
        "--from".into(),
        FROM.into(),
        "--to".into(),
        to.join(","),
        "--data".into(),
        format!("@{}", file.display()),
        "--no-data-fixup".into(),
    ]);
    run.assert_ok("swaks to Postfix");

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut msgs = gw.outbox_messages();
    while msgs.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        msgs = gw.outbox_messages();
    }
    assert!(
        !msgs.is_empty(),
        "nothing reached schoolgate's outbox within 30 s of Postfix accepting the message; Postfix's maillog:\n{}",
        postfix.maillog()
    );
    // Postfix may split recipients over transactions: wait for both (a generous bound).
    gw.wait_for(Duration::from_secs(60), || {
        gw.outbox_messages()
            .iter()
            .map(|m| m.rcpt_to().len())
            .sum::<usize>()
            >= 2
    });
    let msgs = gw.outbox_messages();
    let mut rcpts: Vec<String> = msgs.iter().flat_map(|m| m.rcpt_to()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        ["governor@example.net", "parent@example.org"],
        "recipients that reached the outbox"
    );
    for m in &msgs {
        assert_eq!(m.mail_from(), FROM, "envelope sender of {}", m.name);
        // schoolgate's Received: first, then Postfix's, then the message exactly as sent.
        let after_ours = strip_received(&m.bytes);
        let postfix_received = header_value(&after_ours, "Received").unwrap_or_default();
        assert!(
            postfix_received.contains("(Postfix)"),
            "the second header should be Postfix's Received:, found {postfix_received:?}"
        );
        let original = strip_received(&after_ours);
        assert_same_bytes(
            "the message relayed by Postfix, below both Received: headers",
            &message,
            &original,
        );
        assert_eq!(
            m.header("Message-ID").as_deref(),
            Some("<postfix-interop-1@example-academy.sch.uk>")
        );
    }
    let records = gw.message_records();
    assert!(
        records
            .iter()
            .any(|r| r.field("outcome").as_deref() == Some("delivered")
                && r.field("helo")
                    .is_some_and(|h| h.contains("mta.example-academy.sch.uk"))),
        "no delivered audit record from Postfix's session (HELO mta.example-academy.sch.uk):\n{}",
        records
            .iter()
            .map(|r| r.record_json.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        postfix.maillog().contains("status=sent"),
        "Postfix did not log the message as sent:\n{}",
        postfix.maillog()
    );
}
