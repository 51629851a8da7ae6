//! The README's retention promises through the real gateway: evidence copies older than
//! `[safeguarding] evidence_retention_days` and messages held longer than `[sensitive]
//! quarantine_retention_days` are removed when the gateway starts (then hourly), each purge is
//! in the audit trail, and what is younger stays.

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime};

use common::smtp::Client;
use common::{Gateway, plain_message, require_tool, set};

const FROM: &str = "t.baker@example-academy.sch.uk";
const PUPIL: &str = "jamie.smith2010@gmail.com";

fn send(gw: &Gateway, to: &str, subject: &str, mid: &str) -> String {
    let mut c = Client::ready(gw.port);
    let m = plain_message(FROM, to, subject, mid, "See you.");
    let t = c.send(FROM, "", &[to], &m).unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
    t.reply.text()
}

fn evidence_files(gw: &Gateway) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(gw.state_dir.join("evidence"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn old_evidence_and_old_held_messages_are_purged_and_audited() {
    // First flagged (evidence kept), then held, by the same rule in two runs.
    let mut gw = Gateway::start(|_| {});
    send(&gw, PUPIL, "Old homework", "old-flag@test");
    send(&gw, PUPIL, "New homework", "new-flag@test");
    let evidence = evidence_files(&gw);
    assert_eq!(evidence.len(), 2, "two evidence copies: {evidence:?}");
    gw.kill9();
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let mut cfg: toml::Table = toml::from_str(&text).unwrap();
    set(
        &mut cfg,
        "safeguarding.rules.pupil-personal-address",
        "quarantine",
    );
    std::fs::write(&gw.config_path, toml::to_string(&cfg).unwrap()).unwrap();
    gw.restart();
    let old_id = send(&gw, PUPIL, "Old held", "old-held@test")
        .rsplit(' ')
        .next()
        .unwrap()
        .trim()
        .to_string();
    let new_id = send(&gw, PUPIL, "New held", "new-held@test")
        .rsplit(' ')
        .next()
        .unwrap()
        .trim()
        .to_string();
    gw.kill9();

    // Age one of each: the evidence file's time, the held message's time.
    let old_evidence = &evidence[0];
    let long_ago = SystemTime::now() - Duration::from_secs(400 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(old_evidence)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let out = Command::new(require_tool("sqlite3"))
        .arg(gw.state_dir.join("schoolgate.db"))
        .arg(format!(
            "UPDATE quarantine SET time = '2019-09-01T08:00:00Z' WHERE id = '{old_id}';"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    set(&mut cfg, "safeguarding.evidence_retention_days", 365);
    set(&mut cfg, "sensitive.quarantine_retention_days", 30);
    std::fs::write(&gw.config_path, toml::to_string(&cfg).unwrap()).unwrap();
    gw.restart();

    let purges = || {
        gw.audit_records()
            .into_iter()
            .filter(|r| r.record_json.contains("retention purge:"))
            .map(|r| {
                r.record["action"]["detail"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    assert!(
        gw.wait_for(Duration::from_secs(60), || purges().len() >= 2),
        "both purges are audited at start: {:?}\n{}",
        purges(),
        gw.log_tail(4000)
    );
    let purges = purges();
    assert!(
        purges
            .iter()
            .any(|d| d.contains("1 evidence copies older than 365 days removed")),
        "{purges:?}"
    );
    assert!(
        purges.iter().any(|d| d.contains(&format!(
            "1 quarantined messages held longer than 30 days deleted: {old_id}"
        ))),
        "{purges:?}"
    );
    assert_eq!(
        evidence_files(&gw),
        vec![evidence[1].clone()],
        "the old evidence copy went, the new one stayed"
    );
    assert!(
        !gw.state_dir
            .join(format!("quarantine/{old_id}.eml"))
            .exists()
    );
    assert!(
        gw.state_dir
            .join(format!("quarantine/{new_id}.eml"))
            .exists()
    );
    let list: serde_json::Value =
        serde_json::from_str(&gw.cli_ok(&["quarantine", "list", "--json"])).unwrap();
    let held: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["id"].as_str())
        .collect();
    assert_eq!(
        held,
        vec![new_id.as_str()],
        "only the young held message is listed"
    );
    let v = gw.cli_ok(&["audit", "verify"]);
    assert!(v.contains("intact"), "{v}");
}
