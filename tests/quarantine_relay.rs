//! The quarantine through the real server and the real CLI: a message the policy quarantines is
//! held (250 "held for review"), not delivered, and audited. Held by a safeguarding rule, it is
//! the DSL's: the network manager's `--as` sees only that it exists, the DSL releases it exactly
//! once with a reason and deletes another; `--as` must name an existing account with the role
//! the action needs; every action is audited with who did it, and the audit chain stays whole
//! while the gateway and the CLI both write to it.

mod common;

use common::smtp::{Client, Sink, SinkBehaviour};
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

/// The accounts the new tests act as (`--as` names a real account with the role the web page
/// would need): two network managers and two DSLs (a hold by a safeguarding rule is the DSL's).
fn accounts(gw: &Gateway) {
    gw.add_user(
        "netman",
        &["network-manager"],
        "correct horse battery staple",
    );
    gw.add_user(
        "netman2",
        &["network-manager"],
        "correct horse battery staple",
    );
    gw.add_user("dsl", &["dsl"], "correct horse battery staple");
    gw.add_user("dsl2", &["dsl"], "correct horse battery staple");
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

/// Issue 15 item 8: `quarantine release` with an `smtp://` next hop (every school's set-up)
/// once failed before sending anything, while the tests above used the outbox only. A real SMTP
/// next hop here: the release reaches it exactly once, byte for byte, and a second release is
/// refused without a second delivery.
#[test]
fn cli_release_through_an_smtp_next_hop_delivers_once() {
    let sink = Sink::start(SinkBehaviour::accept());
    let gw = Gateway::start(|cfg| {
        set(cfg, "relay.next_hop", sink.url());
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
    });
    accounts(&gw);
    let to_pupil = || {
        sink.accepted()
            .into_iter()
            .filter(|m| m.rcpt_to.iter().any(|r| r == PUPIL))
            .collect::<Vec<_>>()
    };
    let id = send_held(&gw, "Homework", "smtp-release@test");
    assert!(to_pupil().is_empty(), "a held message is not delivered");
    let held_bytes = std::fs::read(gw.state_dir.join(format!("quarantine/{id}.eml"))).unwrap();

    let out = ok(
        &gw,
        &[
            "quarantine",
            "release",
            &id,
            "--as",
            "dsl",
            "--reason",
            "checked",
        ],
    );
    assert!(out.contains(&format!("released {id} to smtp://")), "{out}");
    let delivered = to_pupil();
    assert_eq!(delivered.len(), 1, "released once: {}", sink.transcript());
    assert_eq!(delivered[0].mail_from, FROM);
    assert_eq!(
        delivered[0].data, held_bytes,
        "the held bytes are what leaves"
    );

    let again = gw.cli(&[
        "quarantine",
        "release",
        &id,
        "--as",
        "dsl",
        "--reason",
        "again",
    ]);
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already released"), "{err}");
    assert_eq!(to_pupil().len(), 1, "still exactly once");
    assert!(held(&gw).is_empty(), "a released message is no longer held");
    let v = ok(&gw, &["audit", "verify"]);
    assert!(v.contains("intact"), "{v}");
}

/// Issue 15 item 9: a Subject (RFC 2047 encoded, so it decodes to raw controls) and a header
/// (raw bytes) that would set the terminal's title and clear its screen reach `quarantine show`
/// and `list` escaped: not one ESC or C1 control in what they print, and the text still there.
#[test]
fn show_and_list_print_no_terminal_escapes_from_mail() {
    let gw = Gateway::start(|cfg| {
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
    });
    accounts(&gw);
    let mut c = Client::ready(gw.port);
    let mut m = plain_message(
        FROM,
        PUPIL,
        "=?UTF-8?Q?Hi=1B]0;pwned=07=1B[2J=C2=9B31mthere?=",
        "hostile@test",
        "Here is the sheet.",
    );
    let raw = b"X-Note: a\x1b]0;title\x07b\x1b[2Jc\r\n";
    m.splice(0..0, raw.iter().copied());
    let t = c.send(FROM, "", &[PUPIL], &m).unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
    let id = t
        .reply
        .text()
        .rsplit(' ')
        .next()
        .unwrap()
        .trim()
        .to_string();

    let raw_controls = |out: &str| {
        out.chars()
            .filter(|c| c.is_control() && !matches!(c, '\n' | '\t'))
            .collect::<Vec<_>>()
    };
    let show = ok(&gw, &["quarantine", "show", &id, "--as", "dsl"]);
    assert_eq!(
        raw_controls(&show),
        Vec::<char>::new(),
        "show printed raw controls:\n{show:?}"
    );
    assert!(
        show.contains("subject:  Hi\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{9b}31mthere"),
        "the Subject is shown, escaped:\n{show}"
    );
    assert!(
        show.contains("X-Note: a\\u{1b}]0;title\\u{7}b\\u{1b}[2Jc"),
        "the headers are shown, escaped:\n{show}"
    );

    let list = ok(&gw, &["quarantine", "list", "--as", "dsl"]);
    assert_eq!(
        raw_controls(&list),
        Vec::<char>::new(),
        "list printed raw controls:\n{list:?}"
    );
    assert!(list.contains("Hi\\u{1b}]0;pwned"), "{list}");
    let json = ok(&gw, &["quarantine", "list", "--json", "--as", "dsl"]);
    assert_eq!(
        raw_controls(&json),
        Vec::<char>::new(),
        "list --json printed raw controls"
    );
    let parsed: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        parsed[0]["subject"], "Hi\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31mthere",
        "the JSON still holds the Subject as sent"
    );

    // `audit export` to a terminal (a pseudo-terminal from script(1)): the Subject's controls
    // are escaped there too; to a file or a pipe the export stays data, byte for byte.
    let command = format!(
        "'{}' audit export --format csv --as dsl --config '{}'",
        common::bin().display(),
        gw.config_path.display()
    );
    let out = std::process::Command::new(common::require_tool("script"))
        .args(["-qec", &command, "/dev/null"])
        .env_remove("SCHOOLGATE_CONFIG")
        // The log would be coloured on a terminal: only the export's own bytes are checked.
        .env("RUST_LOG", "off")
        .output()
        .expect("run script");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert_eq!(
        shown
            .chars()
            .filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            .collect::<Vec<_>>(),
        Vec::<char>::new(),
        "audit export printed raw controls to the terminal:\n{shown:?}"
    );
    assert!(
        shown.contains("Hi\\u001b]0;pwned\\u0007\\u001b[2J\\u009b31mthere"),
        "the Subject is in the export, escaped:\n{shown}"
    );
    let piped = ok(&gw, &["audit", "export", "--format", "csv", "--as", "dsl"]);
    assert!(
        piped.contains("Hi\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31mthere"),
        "to a pipe the export is the data as it is"
    );
}

/// README: "claimed first, so two releases at once deliver once". Two DSLs release
/// the same message at the same moment through a real SMTP next hop (which, unlike the outbox,
/// would keep a second copy): one release delivers, the other is refused, and the pupil gets
/// the message once.
#[test]
fn two_releases_at_once_deliver_once() {
    let sink = Sink::start(SinkBehaviour::accept());
    let gw = Gateway::start(|cfg| {
        set(cfg, "relay.next_hop", sink.url());
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
    });
    accounts(&gw);
    let to_pupil = || {
        sink.accepted()
            .into_iter()
            .filter(|m| m.rcpt_to.iter().any(|r| r == PUPIL))
            .count()
    };
    for round in 0..3 {
        let id = send_held(&gw, "Homework", &format!("twice{round}@test"));
        let barrier = std::sync::Barrier::new(2);
        let outs: Vec<std::process::Output> = std::thread::scope(|s| {
            let runs: Vec<_> = ["dsl", "dsl2"]
                .into_iter()
                .map(|who| {
                    let (gw, id, barrier) = (&gw, &id, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        gw.cli(&[
                            "quarantine",
                            "release",
                            id,
                            "--as",
                            who,
                            "--reason",
                            "checked",
                        ])
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let ok = outs.iter().filter(|o| o.status.success()).count();
        let texts: Vec<String> = outs
            .iter()
            .map(|o| {
                format!(
                    "{}: {}{}",
                    o.status,
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .collect();
        assert_eq!(
            ok, 1,
            "round {round}: exactly one release succeeds: {texts:#?}"
        );
        let refused = outs.iter().find(|o| !o.status.success()).unwrap();
        assert_eq!(refused.status.code(), Some(2), "{texts:#?}");
        assert_eq!(
            to_pupil(),
            round + 1,
            "round {round}: delivered once: {texts:#?}"
        );
    }
    let v = ok(&gw, &["audit", "verify"]);
    assert!(v.contains("intact"), "{v}");
}
