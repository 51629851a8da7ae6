//! A sender releases their own held message (issue 16, "override with justification"): the
//! one-time link's page on the real web listener, and `schoolgate quarantine release ID
//! --justification TEXT`.
//!
//! The first test goes end to end: twelve parents visible in To are held by
//! `exposed-recipients`, the sender's notice carries the link, and the link releases it; a
//! class list in clear gets a notice without one. The others make their holds through the store,
//! as the gateway makes them, to test who may release what, that a link works once, for 7
//! days, and never for a safeguarding hold, and what the network manager sees afterwards.

mod common;

use std::time::Duration;

use common::Gateway;
use common::http::Browser;
use common::smtp::Client;
use schoolgate::store::quarantine::{NewHeld, Quarantine};
use schoolgate::store::release::{ReleaseLinks, new_token, token_hash};
use serde_json::{Value, json};

const SENDER: &str = "t.baker@example-academy.sch.uk";
const BODY: &str = "Dear parent, Jamie has had a difficult week at school.";

fn flag(rule: &str, action: &str) -> Value {
    json!({"rule": rule, "detail": format!("{rule} matched"), "evidence": "e", "action": action})
}

/// Holds a message from [`SENDER`] to two parents as `id`, for `reason`.
fn hold(g: &Gateway, id: &str, reason: Value) {
    let q = Quarantine::new(&g.state_dir);
    let rcpt = vec![
        "olivia.parent@gmail.com".to_string(),
        "other.parent@gmail.com".to_string(),
    ];
    let bytes = common::plain_message(
        SENDER,
        "olivia.parent@gmail.com",
        &format!("Jamie's report {id}"),
        &format!("<{id}@example-academy.sch.uk>"),
        BODY,
    );
    q.hold(
        &NewHeld {
            id,
            mail_from: SENDER,
            rcpt_to: &rcpt,
            subject: Some(&format!("Jamie's report {id}")),
            reason,
            smtputf8: false,
            body_8bit: false,
            delivery_key: "",
        },
        &bytes,
    )
    .expect("hold a message");
    assert!(q.confirm(id).expect("confirm the hold"));
}

fn state(g: &Gateway, id: &str) -> String {
    Quarantine::new(&g.state_dir)
        .get(id)
        .expect("read the quarantine")
        .expect("the entry exists")
        .state
}

fn link(g: &Gateway, id: &str) -> String {
    ReleaseLinks::new(&g.state_dir)
        .issue(id, SENDER, jiff::Timestamp::now())
        .expect("issue a release link")
}

/// Opens the link's page and posts `justification` with the page's CSRF token.
fn release_through(b: &mut Browser, token: &str, justification: &str) -> common::http::Response {
    let page = b.get(&format!("/release/{token}"));
    assert_eq!(page.status, 200, "GET /release: {}", page.text());
    let csrf = page.csrf().expect("the release form has a csrf field");
    b.post(
        &format!("/release/{token}"),
        &[("csrf", &csrf), ("justification", justification)],
    )
}

/// The text of the notices that reached [`SENDER`].
fn notices(g: &Gateway) -> Vec<String> {
    g.outbox_messages()
        .into_iter()
        .filter(|m| m.rcpt_to().iter().any(|r| r == SENDER))
        .map(|m| {
            mail_parser::MessageParser::new()
                .parse(&m.bytes)
                .and_then(|p| p.body_text(0).map(|t| t.into_owned()))
                .expect("a notice with a text body")
        })
        .collect()
}

#[test]
fn twelve_parents_in_to_are_held_and_the_link_in_the_notice_releases_them() {
    let g = Gateway::start(|_| {});
    let parents: Vec<String> = (1..=12).map(|n| format!("parent{n}@gmail.com")).collect();
    let message = format!(
        "From: {SENDER}\r\nTo: {}\r\nSubject: Year 9 trip\r\nMessage-ID: <trip@test>\r\n\r\nThe coach leaves at 8.\r\n",
        parents.join(", ")
    );
    let mut c = Client::ready(g.port);
    let t = c
        .send(
            SENDER,
            "",
            &parents.iter().map(String::as_str).collect::<Vec<_>>(),
            message.as_bytes(),
        )
        .unwrap();
    assert!(t.reply.text().contains("held for review"), "{:?}", t.reply);
    let id = t
        .reply
        .text()
        .rsplit(' ')
        .next()
        .unwrap()
        .trim()
        .to_string();
    assert!(
        g.wait_for(Duration::from_secs(20), || !notices(&g).is_empty()),
        "no sender notice\n{}",
        g.log_tail(40)
    );
    let notice = notices(&g).remove(0);
    assert!(
        notice.contains("exposed-recipients") || notice.contains("Bcc"),
        "{notice}"
    );
    let at = notice
        .find("/release/")
        .expect("the notice carries a release link");
    let token: String = notice[at + "/release/".len()..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    assert_eq!(token.len(), 64, "{notice}");
    assert!(notice.contains("works once"), "{notice}");

    let mut b = Browser::new(g.web_port());
    let r = release_through(
        &mut b,
        &token,
        "the parents agreed to share addresses for lifts",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(state(&g, &id), "released");
    assert!(
        g.outbox_messages()
            .iter()
            .any(|m| m.rcpt_to().len() == 12 && m.mail_from() == SENDER),
        "the held message went to its twelve recipients"
    );

    // A class list in clear: held for the network manager, and its notice has no link.
    let mut csv = String::from("Name,UPN,Date of birth\r\n");
    for n in 0..30 {
        csv.push_str(&format!(
            "Pupil{n} Surname{n},{},0{}/03/2014\r\n",
            common::upn(100 + n),
            n % 9 + 1
        ));
    }
    let list = common::message_with_attachment(
        (SENDER, "admissions@county.gov.example"),
        "class list",
        "list@test",
        ("7B.csv", "text/csv"),
        csv.as_bytes(),
    );
    let t = c
        .send(SENDER, "", &["admissions@county.gov.example"], &list)
        .unwrap();
    assert!(t.reply.text().contains("held for review"), "{:?}", t.reply);
    assert!(
        g.wait_for(Duration::from_secs(20), || notices(&g).len() == 2),
        "no second notice\n{}",
        g.log_tail(40)
    );
    let second = notices(&g)
        .into_iter()
        .find(|n| n.contains("7B.csv"))
        .expect("the list's notice");
    assert!(!second.contains("/release/"), "{second}");
}

#[test]
fn a_senders_link_releases_once_with_a_reason_and_the_network_manager_sees_it() {
    let g = Gateway::start(|_| {});
    let port = g.web_port();
    hold(&g, "W1", json!([flag("wrong-recipient", "quarantine")]));
    let token = link(&g, "W1");

    // The page: subject, why, how many recipients; never the text.
    let mut b = Browser::new(port);
    let page = b.get(&format!("/release/{token}"));
    assert_eq!(page.status, 200, "{}", page.text());
    let text = page.text();
    for needle in [
        "Jamie&#39;s report W1",
        "wrong-recipient",
        "id=\"recipients\">2<",
    ] {
        assert!(
            text.contains(needle) || text.contains(&needle.replace("&#39;", "'")),
            "{needle} missing from the page:\n{text}"
        );
    }
    assert!(!text.contains("difficult week"), "the page shows the body");
    assert!(!text.contains("<script"), "the page needs no script");

    // A post without the page's CSRF token, or from another session, is refused.
    let r = b.post(&format!("/release/{token}"), &[("justification", "fine")]);
    assert_eq!(r.status, 403, "{}", r.text());
    let mut stranger = Browser::new(port);
    let r = stranger.post(
        &format!("/release/{token}"),
        &[("csrf", &page.csrf().unwrap()), ("justification", "fine")],
    );
    assert_eq!(r.status, 403, "{}", r.text());
    // The reason is required and one line of at most 1,000 characters.
    for bad in ["", "   ", &"x".repeat(1001)] {
        let r = release_through(&mut b, &token, bad);
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains("1,000") || r.text().contains("one line"));
    }
    assert_eq!(state(&g, "W1"), "held");
    assert!(g.outbox_messages().is_empty());

    let reason = "I checked: Olivia's parent is also Jamie's guardian";
    let r = release_through(&mut b, &token, reason);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("released"), "{}", r.text());
    let delivered = g.outbox_messages();
    assert_eq!(delivered.len(), 1, "delivered once");
    assert_eq!(delivered[0].mail_from(), SENDER);
    assert_eq!(delivered[0].rcpt_to().len(), 2);
    assert_eq!(state(&g, "W1"), "released");

    // The link works once.
    let again = b.get(&format!("/release/{token}"));
    assert_eq!(again.status, 410, "{}", again.text());
    assert!(again.text().contains("used already"), "{}", again.text());
    let r = b.post(
        &format!("/release/{token}"),
        &[("csrf", &page.csrf().unwrap()), ("justification", reason)],
    );
    assert_eq!(r.status, 410, "{}", r.text());
    assert_eq!(g.outbox_messages().len(), 1, "still delivered once");

    // Audited: the override, the reason and the sender's address.
    let records = g.audit_records();
    let audited = records
        .iter()
        .map(|r| r.record.to_string())
        .find(|r| r.contains("quarantine release W1"))
        .expect("an audit record of the release");
    for needle in [
        "sender override",
        SENDER,
        "Olivia's parent is also Jamie's guardian",
    ] {
        assert!(audited.contains(needle), "{needle} missing from {audited}");
    }
    g.assert_audit_verifies("after a sender's release");

    // The network manager sees it on the entry's page.
    g.add_user("netman", &["network-manager"], "correct horse battery");
    let mut nm = Browser::logged_in(port, "netman", "correct horse battery");
    let entry = nm.get("/quarantine/W1");
    assert_eq!(entry.status, 200, "{}", entry.text());
    let text = entry.text();
    assert!(text.contains("id=\"sender-override\""), "{text}");
    assert!(text.contains(SENDER), "{text}");
    assert!(
        text.contains("Olivia&#39;s parent is also Jamie&#39;s guardian")
            || text.contains("Olivia's parent is also Jamie's guardian"),
        "{text}"
    );
}

#[test]
fn wrong_expired_and_safeguarding_links_are_refused() {
    let g = Gateway::start(|_| {});
    let port = g.web_port();
    let mut b = Browser::new(port);

    // A token nobody was given, and something that is not a token.
    for path in [
        format!("/release/{}", new_token().unwrap()),
        "/release/not-a-token".to_string(),
    ] {
        let r = b.get(&path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(r.text().contains("not known"), "{}", r.text());
    }

    // Expired: made eight days ago.
    hold(&g, "X1", json!([flag("exposed-recipients", "quarantine")]));
    let token = new_token().unwrap();
    let eight_days_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(8 * 24);
    ReleaseLinks::new(&g.state_dir)
        .keep(&token_hash(&token).unwrap(), "X1", SENDER, eight_days_ago)
        .unwrap();
    let r = b.get(&format!("/release/{token}"));
    assert_eq!(r.status, 410, "{}", r.text());
    assert!(r.text().contains("expired"), "{}", r.text());

    // Held by a safeguarding rule as well: never the sender's, whatever the link.
    hold(
        &g,
        "S1",
        json!([
            flag("wrong-recipient", "quarantine"),
            flag("pupil-personal-address", "flag")
        ]),
    );
    let token = link(&g, "S1");
    let r = b.get(&format!("/release/{token}"));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("pupil-personal-address") && r.text().contains("DSL"),
        "{}",
        r.text()
    );
    // Nor for an attachment finding.
    hold(
        &g,
        "A1",
        json!([{"rule": "unencrypted-sensitive-attachment", "attachment": "SEN.xlsx",
                "detail": "d", "action": "quarantine"}]),
    );
    let token_a = link(&g, "A1");
    assert_eq!(b.get(&format!("/release/{token_a}")).status, 403);
    // A post is refused the same way (with a valid CSRF token from an open page).
    hold(&g, "W9", json!([flag("wrong-recipient", "quarantine")]));
    let csrf = b
        .get(&format!("/release/{}", link(&g, "W9")))
        .csrf()
        .expect("a form");
    let r = b.post(
        &format!("/release/{token}"),
        &[("csrf", &csrf), ("justification", "it is fine")],
    );
    assert_eq!(r.status, 403, "{}", r.text());
    for id in ["X1", "S1", "A1", "W9"] {
        assert_eq!(state(&g, id), "held", "{id}");
    }
    assert!(g.outbox_messages().is_empty());
}

#[test]
fn the_command_line_releases_for_the_sender_with_a_justification() {
    let g = Gateway::start(|_| {});
    hold(&g, "P1", json!([flag("password-in-message", "quarantine")]));
    hold(
        &g,
        "S2",
        json!([flag("out-of-hours-pupil-contact", "quarantine")]),
    );

    // Refused: no reason, a reason too long, a safeguarding hold.
    let out = g.cli(&["quarantine", "release", "P1", "--justification", " "]);
    assert!(!out.status.success());
    let long = "x".repeat(1001);
    let out = g.cli(&["quarantine", "release", "P1", "--justification", &long]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1,000"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = g.cli(&["quarantine", "release", "S2", "--justification", "fine"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("out-of-hours-pupil-contact") && err.contains("cannot release"),
        "{err}"
    );
    assert_eq!(state(&g, "P1"), "held");
    assert_eq!(state(&g, "S2"), "held");
    assert!(g.outbox_messages().is_empty());

    let out = g.cli_ok(&[
        "quarantine",
        "release",
        "P1",
        "--justification",
        "the password is for a shared calendar, not the file",
    ]);
    assert!(out.contains("released P1 for its sender"), "{out}");
    assert_eq!(g.outbox_messages().len(), 1);
    assert_eq!(state(&g, "P1"), "released");
    let audited = g
        .audit_records()
        .iter()
        .map(|r| r.record.to_string())
        .find(|r| r.contains("quarantine release P1"))
        .expect("an audit record of the release");
    for needle in ["sender override", "command line", SENDER, "shared calendar"] {
        assert!(audited.contains(needle), "{needle} missing from {audited}");
    }
    // Once.
    let out = g.cli(&["quarantine", "release", "P1", "--justification", "again"]);
    assert!(!out.status.success());
    assert_eq!(g.outbox_messages().len(), 1);
}
