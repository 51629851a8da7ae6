//! The DSL's case queue on the command line, over a trail the real gateway wrote: every flagged
//! message is a case (`flags list --json` with its fields and filters), `flags review` records
//! an outcome that `audit export` shows, `flags reopen` puts it back, `flags show` prints the
//! block to paste into CPOMS; wrong outcomes, numbers and accounts are refused clearly, and a
//! case about the headteacher is only for the accounts listed for escalation.

mod common;

use common::smtp::Client;
use common::{Gateway, plain_message, set};
use serde_json::Value;

const BAKER: &str = "t.baker@example-academy.sch.uk";
const HEAD: &str = "head@example-academy.sch.uk";
const JAMIE_PERSONAL: &str = "jamie.smith2010@gmail.com";
const CHAIR: &str = "chair@example-governors.org";

/// A gateway that took three messages: Tom Baker to a pupil's personal address (a case), the
/// headteacher to the same (an escalated case) and Tom Baker to a parent (no case); with the
/// accounts `dsl`, `netman` (network manager) and the chair of governors, listed for escalation.
fn school() -> Gateway {
    let gw = Gateway::start(|cfg| {
        common::relay_only(cfg);
        set(
            cfg,
            "safeguarding.escalate_to",
            toml::Value::Array(vec![CHAIR.into()]),
        );
    });
    let mut c = Client::ready(gw.port);
    for (i, (from, to, subject)) in [
        (BAKER, JAMIE_PERSONAL, "Revision =?UTF-8?Q?notes=1B[2J?="),
        (HEAD, JAMIE_PERSONAL, "Your report"),
        (BAKER, "parent@example.org", "Parents evening"),
    ]
    .into_iter()
    .enumerate()
    {
        let m = plain_message(from, to, subject, &format!("c{i}@test"), "Private body.");
        let t = c.send(from, "", &[to], &m).unwrap();
        assert!(t.accepted(), "{subject}: {:?}", t.reply);
    }
    gw.add_user("dsl", &["dsl"], "correct horse battery staple");
    gw.add_user(
        "netman",
        &["network-manager"],
        "correct horse battery staple",
    );
    gw.add_user(CHAIR, &["dsl"], "correct horse battery staple");
    gw
}

fn cases(gw: &Gateway, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["flags", "list", "--json"];
    all.extend_from_slice(args);
    let out = gw.cli_ok(&all);
    match serde_json::from_str::<Value>(&out) {
        Ok(Value::Array(items)) => items,
        other => panic!("flags list --json printed no array: {other:?}\n{out}"),
    }
}

fn case_by_sender(gw: &Gateway, sender: &str) -> Value {
    cases(gw, &[])
        .into_iter()
        .find(|c| c["sender"] == sender)
        .unwrap_or_else(|| panic!("no case from {sender}"))
}

/// Runs a command that must fail; returns its standard error.
fn refused(gw: &Gateway, args: &[&str]) -> String {
    let out = gw.cli(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "schoolgate {args:?} should have been refused:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

/// The records `audit export --format jsonl` writes.
fn export_jsonl(gw: &Gateway) -> Vec<Value> {
    gw.cli_ok(&["audit", "export", "--format", "jsonl", "--as", "dsl"])
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("each JSONL line parses");
            v["record"].clone()
        })
        .collect()
}

#[test]
fn every_flagged_message_is_a_new_case_with_its_fields() {
    let gw = school();
    let all = cases(&gw, &[]);
    assert_eq!(all.len(), 2, "two flagged messages, two cases: {all:#?}");
    let baker = case_by_sender(&gw, BAKER);
    for field in [
        "seq",
        "state",
        "rules",
        "sender",
        "recipients",
        "time",
        "subject",
    ] {
        assert!(!baker[field].is_null(), "{field} missing: {baker:#}");
    }
    assert_eq!(baker["state"], "new");
    assert_eq!(baker["recipients"], serde_json::json!([JAMIE_PERSONAL]));
    assert!(
        baker["rules"]
            .as_array()
            .unwrap()
            .contains(&"pupil-personal-address".into())
    );
    // `seq` is the message's own audit record.
    let records = gw.message_records();
    let seq = baker["seq"].as_i64().unwrap();
    let record = records.iter().find(|r| r.seq == seq).expect("the record");
    assert_eq!(record.message()["mail_from"], BAKER);

    // The lines never carry the escape sequence the subject hid.
    let lines = gw.cli_ok(&["flags", "list"]);
    assert!(!lines.contains('\u{1b}'), "{lines:?}");
    assert!(lines.contains("\\u{1b}"), "{lines}");
    assert_eq!(lines.lines().count(), 2, "{lines}");

    // Filters: nothing reviewed yet, nothing after tomorrow.
    assert!(cases(&gw, &["--state", "reviewed"]).is_empty());
    assert_eq!(cases(&gw, &["--state", "new"]).len(), 2);
    assert!(cases(&gw, &["--since", "2099-01-01"]).is_empty());
    assert_eq!(cases(&gw, &["--since", "2000-01-01"]).len(), 2);
    let err = refused(&gw, &["flags", "list", "--state", "open"]);
    assert!(err.contains("new") && err.contains("reviewed"), "{err}");
}

#[test]
fn a_review_is_audited_with_its_outcome_and_a_reopen_puts_the_case_back() {
    let gw = school();
    let seq = case_by_sender(&gw, BAKER)["seq"]
        .as_u64()
        .unwrap()
        .to_string();
    let out = gw.cli_ok(&[
        "flags",
        "review",
        &seq,
        "--outcome",
        "concern-logged",
        "--note",
        "Spoke to Mr Baker; logged.",
        "--reference",
        "CPOMS-4411",
        "--as",
        "dsl",
    ]);
    assert!(out.contains("concern-logged"), "{out}");
    let reviewed = cases(&gw, &["--state", "reviewed"]);
    assert_eq!(reviewed.len(), 1);
    assert_eq!(reviewed[0]["seq"].to_string(), seq);
    assert_eq!(reviewed[0]["outcome"], "concern-logged");
    assert_eq!(reviewed[0]["reference"], "CPOMS-4411");
    assert_eq!(cases(&gw, &["--state", "new"]).len(), 1);

    // The export shows who, when and what.
    let review = export_jsonl(&gw)
        .into_iter()
        .find(|r| r["kind"] == "case-review")
        .expect("a case-review record in the export");
    let c = &review["case_review"];
    assert_eq!(c["case_seq"].to_string(), seq);
    assert_eq!(c["action"], "review");
    assert_eq!(c["outcome"], "concern-logged");
    assert_eq!(c["note"], "Spoke to Mr Baker; logged.");
    assert_eq!(c["reference"], "CPOMS-4411");
    assert_eq!(c["actor"], "dsl");
    assert!(review["time"].as_str().is_some_and(|t| !t.is_empty()));
    let csv = gw.cli_ok(&["audit", "export", "--format", "csv", "--as", "dsl"]);
    let row = csv
        .lines()
        .find(|l| l.contains("case-review"))
        .expect("a case-review row in the CSV");
    assert!(
        row.contains("concern-logged") && row.contains("CPOMS-4411"),
        "{row}"
    );
    let header = csv.lines().next().unwrap();
    assert!(header.ends_with("case_seq,case_action,case_outcome,case_reference,case_note"));

    // The block to paste into CPOMS.
    let block = gw.cli_ok(&["flags", "show", &seq, "--as", "dsl"]);
    for want in [
        BAKER,
        JAMIE_PERSONAL,
        "pupil-personal-address",
        "Concern logged",
        "CPOMS-4411",
    ] {
        assert!(block.contains(want), "{want} missing:\n{block}");
    }
    assert!(!block.contains('\u{1b}'));
    assert!(!block.contains("Private body"), "never the message body");

    // Reopened: new again, and audited too.
    refused(
        &gw,
        &["flags", "reopen", "999999", "--note", "x", "--as", "dsl"],
    );
    gw.cli_ok(&[
        "flags",
        "reopen",
        &seq,
        "--note",
        "Mother called again",
        "--as",
        "dsl",
    ]);
    assert!(cases(&gw, &["--state", "reviewed"]).is_empty());
    let again = case_by_sender(&gw, BAKER);
    assert_eq!(again["state"], "new");
    assert!(again["outcome"].is_null());
    let reopen = export_jsonl(&gw)
        .into_iter()
        .find(|r| r["case_review"]["action"] == "reopen")
        .expect("a reopen record");
    assert_eq!(reopen["case_review"]["note"], "Mother called again");
    let err = refused(
        &gw,
        &["flags", "reopen", &seq, "--note", "x", "--as", "dsl"],
    );
    assert!(err.contains("not reviewed"), "{err}");
    gw.assert_audit_verifies("after reviews");
}

#[test]
fn wrong_outcomes_numbers_and_accounts_are_refused_clearly() {
    let gw = school();
    let seq = case_by_sender(&gw, BAKER)["seq"]
        .as_u64()
        .unwrap()
        .to_string();
    let review = |seq: &str, outcome: &str, who: &str| {
        refused(
            &gw,
            &[
                "flags",
                "review",
                seq,
                "--outcome",
                outcome,
                "--note",
                "n",
                "--as",
                who,
            ],
        )
    };
    let err = review(&seq, "fine", "dsl");
    assert!(
        err.contains("\"fine\" is not an outcome") && err.contains("allegation-managed"),
        "{err}"
    );
    let err = review("999999", "no-concern", "dsl");
    assert!(
        err.contains("999999") && err.contains("flags list"),
        "{err}"
    );
    // The unflagged message and the start record are no cases.
    let plain = gw
        .message_records()
        .into_iter()
        .find(|r| r.message()["subject"] == "Parents evening")
        .expect("the unflagged message")
        .seq
        .to_string();
    let err = review(&plain, "no-concern", "dsl");
    assert!(err.contains("not a flagged message"), "{err}");
    let err = review("1", "no-concern", "dsl");
    assert!(err.contains("not a flagged message"), "{err}");
    let err = review(&seq, "no-concern", "nobody");
    assert!(err.contains("no such account"), "{err}");
    let err = review(&seq, "no-concern", "netman");
    assert!(err.contains("dsl role"), "{err}");
    let err = refused(
        &gw,
        &[
            "flags",
            "review",
            &seq,
            "--outcome",
            "other",
            "--note",
            " ",
            "--as",
            "dsl",
        ],
    );
    assert!(err.contains("note"), "{err}");
    // Nothing was recorded by any of these.
    assert!(
        export_jsonl(&gw).iter().all(|r| r["kind"] != "case-review"),
        "a refused review left a record"
    );
}

#[test]
fn a_case_about_the_headteacher_is_only_for_those_listed_for_escalation() {
    let gw = school();
    let head = case_by_sender(&gw, HEAD)["seq"]
        .as_u64()
        .unwrap()
        .to_string();
    let err = refused(
        &gw,
        &[
            "flags",
            "review",
            &head,
            "--outcome",
            "referred",
            "--note",
            "LADO",
            "--as",
            "dsl",
        ],
    );
    assert!(err.contains("escalate_to"), "{err}");
    let seen_by_dsl = cases(&gw, &["--as", "dsl"]);
    assert!(
        seen_by_dsl.iter().all(|c| c["sender"] != HEAD),
        "{seen_by_dsl:#?}"
    );
    assert_eq!(cases(&gw, &["--as", CHAIR]).len(), 2);
    gw.cli_ok(&[
        "flags",
        "review",
        &head,
        "--outcome",
        "referred",
        "--note",
        "LADO",
        "--as",
        CHAIR,
    ]);
    assert_eq!(case_by_sender(&gw, HEAD)["outcome"], "referred");
}

/// The web page applies the same rules: a case about the headteacher is neither listed, counted,
/// shown nor reviewable for a DSL not listed for escalation, and is for the chair of governors;
/// a network manager has no case pages; a review needs the form's CSRF token and a known
/// outcome, and is audited like the command line's.
#[test]
fn on_the_web_page_escalated_cases_roles_and_tokens_hold() {
    use common::http::Browser;
    const PASSWORD: &str = "correct horse battery staple";
    let gw = school();
    let port = gw.web_port();
    let head = case_by_sender(&gw, HEAD)["seq"].as_u64().unwrap();
    let baker = case_by_sender(&gw, BAKER)["seq"].as_u64().unwrap();

    let mut dsl = Browser::logged_in(port, "dsl", PASSWORD);
    let list = dsl.get("/flags");
    assert_eq!(list.status, 200);
    let t = list.text();
    assert!(t.contains("Revision") && !t.contains("Your report"), "{t}");
    assert!(
        t.contains(">1</span>"),
        "the count is of the cases the DSL may see:\n{t}"
    );
    for path in [format!("/flags/{head}"), format!("/flags/{head}/evidence")] {
        assert_eq!(dsl.get(&path).status, 404, "GET {path} as a DSL not listed");
    }
    let page = dsl.get(&format!("/flags/{baker}"));
    assert_eq!(page.status, 200);
    assert!(page.text().contains("id=\"case-block\""));
    let csrf = page.csrf().expect("the review form's token");
    let review = |b: &mut Browser, seq: u64, csrf: &str, outcome: &str| {
        b.post(
            &format!("/flags/{seq}/review"),
            &[
                ("csrf", csrf),
                ("outcome", outcome),
                ("note", "Looked into it"),
                ("reference", "MyConcern 77"),
            ],
        )
        .status
    };
    assert_eq!(review(&mut dsl, head, &csrf, "no-concern"), 404);
    assert_eq!(review(&mut dsl, baker, "not-the-token", "no-concern"), 403);
    assert_eq!(review(&mut dsl, baker, &csrf, "fine"), 400);
    assert!(
        export_jsonl(&gw).iter().all(|r| r["kind"] != "case-review"),
        "a refused review left a record"
    );
    assert_eq!(review(&mut dsl, baker, &csrf, "no-concern"), 303);
    assert_eq!(case_by_sender(&gw, BAKER)["outcome"], "no-concern");
    assert_eq!(case_by_sender(&gw, BAKER)["reference"], "MyConcern 77");

    let mut netman = Browser::logged_in(port, "netman", PASSWORD);
    assert_eq!(netman.get(&format!("/flags/{baker}")).status, 403);
    let token = netman.get("/quarantine").csrf().unwrap_or_default();
    assert_eq!(review(&mut netman, baker, &token, "other"), 403);

    let mut chair = Browser::logged_in(port, CHAIR, PASSWORD);
    let t = chair.get("/flags").text();
    assert!(t.contains("Your report"), "{t}");
    let page = chair.get(&format!("/flags/{head}"));
    assert_eq!(page.status, 200);
    let csrf = page.csrf().unwrap();
    assert_eq!(review(&mut chair, head, &csrf, "referred"), 303);
    let views = export_jsonl(&gw)
        .into_iter()
        .filter(|r| {
            r["action"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&format!("case {head} viewed by {CHAIR}")))
        })
        .count();
    assert_eq!(views, 1, "the chair's view is audited");
}

/// A message a safeguarding rule held is a case too, and both the list and the case link to the
/// held message; the text block names the quarantine entry.
#[test]
fn a_held_case_links_to_the_held_message() {
    use common::http::Browser;
    let gw = Gateway::start(|cfg| {
        common::relay_only(cfg);
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
    });
    let mut c = Client::ready(gw.port);
    let m = plain_message(BAKER, JAMIE_PERSONAL, "Weekend plans", "h1@test", "Hi.");
    let t = c.send(BAKER, "", &[JAMIE_PERSONAL], &m).unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
    gw.add_user("dsl", &["dsl"], "correct horse battery staple");
    let all = cases(&gw, &[]);
    assert_eq!(all.len(), 1, "{all:#?}");
    let id = all[0]["quarantine_id"]
        .as_str()
        .expect("the case names its quarantine entry")
        .to_string();
    let seq = all[0]["seq"].as_u64().unwrap();
    let link = format!("href=\"/quarantine/{id}\"");
    let mut dsl = Browser::logged_in(gw.web_port(), "dsl", "correct horse battery staple");
    assert!(dsl.get("/flags").text().contains(&link));
    let page = dsl.get(&format!("/flags/{seq}")).text();
    assert!(
        page.contains("id=\"held-message\"") && page.contains(&link),
        "{page}"
    );
    let block = gw.cli_ok(&["flags", "show", &seq.to_string()]);
    assert!(block.contains(&format!("quarantine entry {id}")), "{block}");
}
