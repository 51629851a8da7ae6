//! The README's "every view, download, release, delete, login and failed login is in the audit
//! trail with the account's name", for what the other web tests leave out: opening a held
//! message, downloading its .eml, and the DSL's audit export download. Each must add its record,
//! naming the account, and nothing else may: a page that showed a held message without a record
//! would be a hole in the trail.

mod common;

use common::http::{Browser, add_user};
use common::smtp::Client;
use common::{Gateway, plain_message, set};

const FROM: &str = "t.baker@example-academy.sch.uk";
const PUPIL: &str = "jamie.smith2010@gmail.com";
const PASSWORD: &str = "correct horse battery staple";

/// The action records (not messages, logins or checkpoints) whose detail mentions `what`.
fn actions(gw: &Gateway, what: &str) -> Vec<common::AuditRow> {
    gw.audit_records()
        .into_iter()
        .filter(|r| r.kind == "action")
        .filter(|r| {
            r.record["action"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains(what))
        })
        .collect()
}

#[test]
fn web_views_and_downloads_are_audited_with_the_account() {
    let gw = Gateway::start(|cfg| {
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
    });
    add_user(&gw.config_path, "netman", &["network-manager"], PASSWORD);
    add_user(&gw.config_path, "dsl", &["dsl"], PASSWORD);
    let mut c = Client::ready(gw.port);
    let m = plain_message(FROM, PUPIL, "Homework", "web-view@test", "See you.");
    let t = c.send(FROM, "", &[PUPIL], &m).unwrap();
    assert!(t.reply.text().contains("held for review"), "{}", t.reply);
    let id = t
        .reply
        .text()
        .rsplit(' ')
        .next()
        .unwrap()
        .trim()
        .to_string();
    let port = gw.web_port();

    // A message held by a safeguarding rule is the DSL's to open (issue 14): the DSL's views
    // and downloads are audited with the account.
    let mut viewer = Browser::logged_in(port, "dsl", PASSWORD);
    let show = format!("quarantine show {id} by dsl");
    assert!(
        actions(&gw, &show).is_empty(),
        "no view before the page is opened"
    );
    let page = viewer.get(&format!("/quarantine/{id}"));
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("Homework"), "the message is shown");
    let views = actions(&gw, &show);
    assert_eq!(views.len(), 1, "one view, one record");
    assert_eq!(views[0].record["action"]["actor"], "dsl");
    viewer.get(&format!("/quarantine/{id}"));
    assert_eq!(actions(&gw, &show).len(), 2, "every view is recorded");

    let eml = viewer.get(&format!("/quarantine/{id}/eml"));
    assert_eq!(eml.status, 200, "{}", eml.text());
    let downloads = actions(
        &gw,
        &format!("quarantine export {id} by dsl to a web download"),
    );
    assert_eq!(downloads.len(), 1, "the .eml download is recorded");
    assert_eq!(downloads[0].record["action"]["actor"], "dsl");

    let mut dsl = Browser::logged_in(port, "dsl", PASSWORD);
    let csv = dsl.get("/audit/export?format=csv");
    assert_eq!(csv.status, 200, "{}", csv.text());
    let exports = actions(&gw, "audit export by dsl:");
    assert_eq!(exports.len(), 1, "the DSL's download is recorded");
    assert!(
        exports[0].record["action"]["detail"]
            .as_str()
            .unwrap()
            .contains("as CSV to a web download"),
        "{}",
        exports[0].record_json
    );
    assert_eq!(exports[0].record["action"]["actor"], "dsl");
}
