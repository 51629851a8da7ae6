//! The quarantine through the real server and the real CLI: a message the policy quarantines is
//! held (250 "held for review"), not delivered, and audited. Held by a safeguarding rule, it is
//! the DSL's: the network manager's `--as` sees only that it exists, the DSL releases it exactly
//! once with a reason and deletes another; `--as` must name an existing account with the role
//! the action needs; every action is audited with who did it, and the audit chain stays whole
//! while the gateway and the CLI both write to it.

mod common;

use common::smtp::Client;
use common::{Gateway, OutboxMessage, plain_message, set, verify_audit_chain};
use serde_json::Value;

const FROM: &str = "t.baker@example-academy.sch.uk";
const PUPIL: &str = "jamie.smith2010@gmail.com";

fn ok(gw: &Gateway, args: &[&str]) -> String {
    let out = gw.cli(args);
    assert!(
        out.status.success(),
        "schoolgate {args:?} failed ({:?}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn to_pupil(gw: &Gateway) -> Vec<OutboxMessage> {
    gw.outbox_messages()
        .into_iter()
        .filter(|m| m.rcpt_to().iter().any(|r| r == PUPIL))
        .collect()
}

fn held(gw: &Gateway) -> Vec<Value> {
    let list: Value = serde_json::from_str(&ok(gw, &["quarantine", "list", "--json"]))
        .expect("list --json prints JSON");
    list.as_array().expect("an array").clone()
}

fn send_held(gw: &Gateway, subject: &str, mid: &str) -> String {
    let mut c = Client::ready(gw.port);
    let m = plain_message(FROM, PUPIL, subject, mid, "Here is the sheet.");
    let t = c.send(FROM, "", &[PUPIL], &m).unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
    let text = t.reply.text();
    assert!(text.contains("held for review"), "{text}");
    text.rsplit(' ').next().unwrap().trim().to_string()
}

fn fails(gw: &Gateway, args: &[&str]) -> String {
    let out = gw.cli(args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "schoolgate {args:?} should be refused: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A message held by a safeguarding rule, on the command line: `--as` names an existing
/// account; the network manager sees only that it exists and can neither export, release nor
/// delete it; the DSL releases it with a reason, exactly once, audited.
#[test]
fn held_released_once_deleted_and_audited() {
    let gw = Gateway::start(|cfg| {
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
    });
    gw.add_user("netman", &["network-manager"], "netman password 1");
    gw.add_user("ms.dsl", &["dsl"], "dsl password 12");
    let id = send_held(&gw, "Homework", "q1@test");
    assert!(to_pupil(&gw).is_empty(), "a held message is not delivered");
    let records = gw.message_records();
    let rec = records.last().unwrap();
    assert_eq!(rec.field("outcome").as_deref(), Some("quarantined"));
    assert_eq!(rec.field("quarantine_id").as_deref(), Some(id.as_str()));

    // Without a DSL account: that it exists, when, its size; nothing else.
    for who in [None, Some("netman")] {
        let mut args = vec!["quarantine", "list", "--json"];
        args.extend(who.map(|w| ["--as", w]).into_iter().flatten());
        let list: Value = serde_json::from_str(&ok(&gw, &args)).expect("JSON");
        let text = list.to_string();
        assert_eq!(list[0]["id"], id.as_str(), "{text}");
        assert_eq!(list[0]["hold"], "safeguarding", "{text}");
        assert_eq!(list[0]["restricted"], true, "{text}");
        assert!(list[0]["size"].as_u64().unwrap_or(0) > 0, "{text}");
        for hidden in [PUPIL, FROM, "Homework", "pupil-personal-address"] {
            assert!(
                !text.contains(hidden),
                "{who:?}'s list shows {hidden}: {text}"
            );
        }
    }
    let line = ok(&gw, &["quarantine", "list", "--as", "netman"]);
    assert!(
        line.contains("held by a safeguarding rule") && !line.contains(PUPIL),
        "{line}"
    );
    let shown = ok(&gw, &["quarantine", "show", &id, "--as", "netman"]);
    assert!(shown.contains("held by a safeguarding rule"), "{shown}");
    for hidden in [PUPIL, FROM, "Homework", "pupil-personal-address"] {
        assert!(
            !shown.contains(hidden),
            "show as netman shows {hidden}: {shown}"
        );
    }
    // The DSL sees all of it.
    let list: Value = serde_json::from_str(&ok(
        &gw,
        &["quarantine", "list", "--json", "--as", "ms.dsl"],
    ))
    .expect("JSON");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["rcpt_to"][0], PUPIL);
    assert_eq!(list[0]["reason"][0]["rule"], "pupil-personal-address");
    assert_eq!(list[0]["hold"], "safeguarding");
    let shown = ok(&gw, &["quarantine", "show", &id, "--as", "ms.dsl"]);
    assert!(
        shown.contains(PUPIL) && shown.contains("Homework"),
        "{shown}"
    );
    let held_bytes = std::fs::read(gw.state_dir.join(format!("quarantine/{id}.eml"))).unwrap();

    // --as must name an existing account, holding the role the action needs.
    let err = fails(&gw, &["quarantine", "show", &id]);
    assert!(err.contains("needs --as NAME"), "{err}");
    let err = fails(
        &gw,
        &[
            "quarantine",
            "release",
            &id,
            "--as",
            "ghost",
            "--reason",
            "x",
        ],
    );
    assert!(err.contains("no account \"ghost\""), "{err}");
    let copy = gw.dir.path().join("copy.eml");
    let copy_arg = copy.to_str().unwrap();
    let err = fails(
        &gw,
        &[
            "quarantine",
            "export",
            &id,
            "--out",
            copy_arg,
            "--as",
            "netman",
        ],
    );
    assert!(
        err.contains("safeguarding rule") && err.contains("dsl role"),
        "{err}"
    );
    assert!(!copy.exists(), "nothing exported");
    let err = fails(
        &gw,
        &[
            "quarantine",
            "release",
            &id,
            "--as",
            "netman",
            "--reason",
            "fine",
        ],
    );
    assert!(
        err.contains("netman may not release") && err.contains("dsl role"),
        "{err}"
    );
    let err = fails(
        &gw,
        &[
            "quarantine",
            "delete",
            &id,
            "--as",
            "netman",
            "--reason",
            "spam",
        ],
    );
    assert!(err.contains("netman may not delete"), "{err}");
    let err = fails(&gw, &["quarantine", "release", &id, "--as", "ms.dsl"]);
    assert!(err.contains("needs --reason"), "{err}");
    assert!(to_pupil(&gw).is_empty(), "nothing was released");

    ok(
        &gw,
        &[
            "quarantine",
            "export",
            &id,
            "--out",
            copy_arg,
            "--as",
            "ms.dsl",
        ],
    );
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        held_bytes,
        "export writes the held bytes"
    );

    let why = "Checked with the teacher: homework for a pupil off sick";
    ok(
        &gw,
        &[
            "quarantine",
            "release",
            &id,
            "--as",
            "ms.dsl",
            "--reason",
            why,
        ],
    );
    let out = to_pupil(&gw);
    assert_eq!(out.len(), 1, "released once");
    assert_eq!(out[0].bytes, held_bytes, "the held bytes are what leaves");
    let release = gw
        .audit_records()
        .into_iter()
        .filter(|r| r.kind == "action")
        .find(|r| r.record_json.contains(&format!("quarantine release {id}")))
        .expect("the release is audited");
    assert_eq!(release.record["action"]["actor"], "ms.dsl");
    assert!(
        release.record_json.contains(why) && release.record_json.contains("safeguarding hold"),
        "{}",
        release.record_json
    );
    assert!(held(&gw).is_empty(), "a released message is no longer held");

    let again = gw.cli(&[
        "quarantine",
        "release",
        &id,
        "--as",
        "ms.dsl",
        "--reason",
        why,
    ]);
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already released"), "{err}");
    assert_eq!(to_pupil(&gw).len(), 1, "still exactly once");

    let unknown = gw.cli(&["quarantine", "show", "NOPE", "--as", "netman"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("no quarantined message NOPE; see schoolgate quarantine list")
    );

    let id2 = send_held(&gw, "Again", "q2@test");
    assert_ne!(id2, id);
    let file = gw.state_dir.join(format!("quarantine/{id2}.eml"));
    assert!(file.exists());
    let no_reason = gw.cli(&["quarantine", "delete", &id2, "--as", "ms.dsl"]);
    assert_eq!(no_reason.status.code(), Some(2), "delete needs --reason");
    ok(
        &gw,
        &[
            "quarantine",
            "delete",
            &id2,
            "--reason",
            "sent in error",
            "--as",
            "ms.dsl",
        ],
    );
    assert!(!file.exists(), "the file is gone");
    assert!(held(&gw).is_empty());
    let del = gw
        .audit_records()
        .into_iter()
        .find(|r| r.record_json.contains(&format!("quarantine delete {id2}")))
        .expect("the delete is audited");
    assert_eq!(del.record["action"]["actor"], "ms.dsl");
    assert!(del.record_json.contains("sent in error"));
    assert!(to_pupil(&gw).len() == 1);

    // The audit commands: export and purge are the DSL's; verify needs no account.
    let err = fails(
        &gw,
        &["audit", "export", "--format", "csv", "--as", "netman"],
    );
    assert!(
        err.contains("audit export needs an account with the dsl role"),
        "{err}"
    );
    let err = fails(&gw, &["audit", "export", "--format", "csv"]);
    assert!(err.contains("needs --as NAME"), "{err}");
    let err = fails(&gw, &["audit", "purge", "--as", "netman"]);
    assert!(
        err.contains("audit purge needs an account with the dsl role"),
        "{err}"
    );
    let exported = ok(
        &gw,
        &["audit", "export", "--as", "ms.dsl", "--format", "jsonl"],
    );
    assert!(exported.contains(&format!("quarantine release {id}")));

    // The gateway writes again after the CLI did; the chain holds.
    let _ = send_held(&gw, "Third", "q3@test");
    verify_audit_chain(&gw.audit_records()).unwrap();
    let v = ok(&gw, &["audit", "verify"]);
    assert!(v.contains("intact"), "{v}");
}
