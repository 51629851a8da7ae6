//! What the running gateway does for the audit trail by itself: a checkpoint of the head in the
//! journal (and mailed to the DSL when configured) at start and every
//! `[audit] checkpoint_interval`, which `audit verify --checkpoint` then checks; and the
//! retention purge, which is itself audited and leaves the chain verifiable.

mod common;

use std::process::Command;
use std::time::Duration;

use common::smtp::Client;
use common::{Gateway, plain_message, require_tool, set};

const FROM: &str = "t.baker@example-academy.sch.uk";

fn send(gw: &Gateway, subject: &str) {
    let mut c = Client::ready(gw.port);
    let m = plain_message(
        FROM,
        "parent@example.org",
        subject,
        &format!("{subject}@test"),
        "Hi.",
    );
    let t = c.send(FROM, "", &["parent@example.org"], &m).unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
}

/// The `SEQ:HASH` of every "audit checkpoint" line in the gateway's log.
fn checkpoints(gw: &Gateway) -> Vec<String> {
    gw.log()
        .lines()
        .filter_map(|l| l.split("audit checkpoint: ").nth(1))
        .filter_map(|l| l.rsplit(' ').next().map(str::to_string))
        .collect()
}

#[test]
fn checkpoints_go_to_the_journal_and_the_dsl_and_verify_checks_them() {
    let gw = Gateway::start(|cfg| {
        common::relay_only(cfg);
        set(cfg, "audit.checkpoint_interval", "1s");
        set(cfg, "audit.checkpoint_mail", true);
        set(cfg, "audit.checkpoint_mail_interval", "1s");
    });
    assert!(
        gw.wait_for(Duration::from_secs(10), || !checkpoints(&gw).is_empty()),
        "a checkpoint at start"
    );
    send(&gw, "One");
    let head = gw.audit_records().last().unwrap().clone();
    let want = format!("{}:{}", head.seq, head.hash);
    assert!(
        gw.wait_for(Duration::from_secs(10), || checkpoints(&gw).contains(&want)),
        "a checkpoint of the new head {want}: {:?}",
        checkpoints(&gw)
    );
    // The DSL got the checkpoint by mail, with the command that checks it.
    assert!(gw.wait_for(Duration::from_secs(10), || {
        gw.outbox_messages().iter().any(|m| {
            m.rcpt_to() == ["dsl@example-academy.sch.uk"]
                && String::from_utf8_lossy(&m.bytes).contains(&format!("\r\n\r\n{want}\r\n"))
                && String::from_utf8_lossy(&m.bytes)
                    .contains("schoolgate audit verify --checkpoint")
        })
    }));

    let all = checkpoints(&gw);
    let mut args = vec!["audit", "verify"];
    for c in &all {
        args.extend(["--checkpoint", c.as_str()]);
    }
    let out = gw.cli(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("checkpoints match"), "{text}");
}

#[test]
fn the_gateway_purges_under_retention_and_the_chain_still_verifies() {
    let mut gw = Gateway::start(common::relay_only);
    for s in ["Old 1", "Old 2", "Old 3"] {
        send(&gw, s);
    }
    gw.kill9();
    let db = gw.state_dir.join("schoolgate.db");
    let out = Command::new(require_tool("sqlite3"))
        .arg(&db)
        .arg("UPDATE audit SET time = '2019-09-01T08:00:00Z' WHERE seq <= 4;")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cfg: toml::Table =
        toml::from_str(&std::fs::read_to_string(&gw.config_path).unwrap()).unwrap();
    set(&mut cfg, "audit.retention_days", 365);
    std::fs::write(&gw.config_path, toml::to_string(&cfg).unwrap()).unwrap();
    gw.restart();

    assert!(
        gw.wait_for(Duration::from_secs(10), || gw
            .log()
            .contains("audit retention purge: records 1 to 4 (4 records")),
        "the purge runs at start"
    );
    let records = gw.audit_records();
    assert_eq!(records[0].seq, 5, "records 1 to 4 are gone");
    let purge = records
        .iter()
        .find(|r| r.kind == "purge")
        .expect("a purge record");
    assert_eq!(purge.record["action"]["actor"], "schoolgate");
    assert_eq!(purge.record["purge"]["records"], 4);
    assert_eq!(purge.record["purge"]["retention_days"], 365);

    let out = gw.cli(&["audit", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("records 1 to 4 were purged"), "{text}");
}
