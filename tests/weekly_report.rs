//! The DSL's weekly report through the real gateway: `schoolgate report` over what the relay
//! recorded, and the report mailed at `[safeguarding] weekly_report`, once, across a restart.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::smtp::Client;
use common::{Gateway, HEADTEACHER, OutboxMessage, plain_message, set};

const TEACHER: &str = "t.baker@example-academy.sch.uk";
const PUPIL_PERSONAL: &str = "jamie.smith2010@gmail.com";
const DSL: &str = "dsl@example-academy.sch.uk";
/// `[safeguarding] escalate_to`: the chair of governors.
const CHAIR: &str = "chair@governors.example";

/// A teacher's two flags and the headteacher's one, recorded.
fn flag_three(gw: &Gateway) {
    let mut c = Client::ready(gw.port);
    for (n, from) in [TEACHER, TEACHER, HEADTEACHER].into_iter().enumerate() {
        let m = plain_message(
            from,
            PUPIL_PERSONAL,
            &format!("Revision {n}"),
            &format!("r{n}@test"),
            "Private body text.",
        );
        assert!(c.send(from, "", &[PUPIL_PERSONAL], &m).unwrap().accepted());
    }
    assert!(
        gw.wait_for(Duration::from_secs(20), || gw.message_records().len() == 3),
        "three message records expected:\n{}",
        gw.log_tail(3000)
    );
}

/// The details of every action record, in order.
fn details(gw: &Gateway) -> Vec<String> {
    gw.audit_records()
        .into_iter()
        .filter_map(|r| r.record["action"]["detail"].as_str().map(str::to_string))
        .collect()
}

/// The head `SEQ:HASH` on the report's "Chain head:" line.
fn chain_head(text: &str) -> (i64, String) {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Chain head: "))
        .unwrap_or_else(|| panic!("no chain head in:\n{text}"));
    let (seq, hash) = line.split_once(':').expect("SEQ:HASH");
    (seq.parse().expect("a sequence number"), hash.to_string())
}

#[test]
fn report_text_names_the_rules_the_unreviewed_count_and_the_chain_head() {
    let gw = Gateway::start(|_| {});
    flag_three(&gw);

    let text = gw.cli_ok(&["report", "--format", "text"]);
    for want in [
        "pupil-personal-address",
        "Cases still unreviewed: 2",
        "Tom Baker <t.baker@example-academy.sch.uk>",
        "Revision 0",
        "audit verify: intact",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    // The headteacher's flag is for escalation only, never in the DSLs' copy.
    assert!(
        !text.contains(HEADTEACHER) && !text.contains("Revision 2"),
        "{text}"
    );
    assert!(!text.contains("Private body text"), "{text}");
    // The head is a real record of the trail, at or after the last message.
    let (seq, hash) = chain_head(&text);
    let rows = gw.audit_records();
    let row = rows
        .iter()
        .find(|r| r.seq == seq)
        .unwrap_or_else(|| panic!("no record {seq}"));
    assert_eq!(
        row.hash, hash,
        "the chain head printed is record {seq}'s hash"
    );
    assert!(seq >= gw.message_records().last().map_or(0, |r| r.seq));

    // Every report made is audited, with who made it.
    let reports: Vec<String> = details(&gw)
        .into_iter()
        .filter(|d| d.starts_with("report by "))
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].contains("2 unreviewed cases"), "{reports:?}");
}

#[test]
fn report_writes_csv_and_html_files_for_the_dsl_only() {
    let gw = Gateway::start(|_| {});
    flag_three(&gw);
    let csv = gw.dir.path().join("week.csv");
    gw.cli_ok(&[
        "report",
        "--since",
        "2020-01-01",
        "--format",
        "csv",
        "--out",
        csv.to_str().unwrap(),
    ]);
    let meta = std::fs::metadata(&csv).expect("the CSV was written");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "--out is private");
    let body = std::fs::read_to_string(&csv).unwrap();
    assert!(body.starts_with("\u{feff}section,"), "{body}");
    assert_eq!(
        body.lines()
            .filter(|l| l.starts_with("unreviewed,"))
            .count(),
        2,
        "{body}"
    );

    let html = gw.cli_ok(&["report", "--format", "html"]);
    assert!(
        html.contains("<table") && html.contains("pupil-personal-address"),
        "{html}"
    );

    // A DSL account may be named; anyone else is refused, saying why.
    gw.add_user("ms.shah", &["dsl"], "correct horse battery");
    gw.add_user("mr.it", &["network-manager"], "correct horse battery");
    gw.cli_ok(&["report", "--format", "text", "--as", "ms.shah"]);
    for (who, why) in [("mr.it", "dsl role"), ("nobody", "no such account")] {
        let out = gw.cli(&["report", "--format", "text", "--as", who]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why), "{who}: {err}");
    }
    let out = gw.cli(&["report", "--format", "text", "--since", "last week"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("YYYY-MM-DD"), "{err}");
}

fn reports_to(gw: &Gateway, whom: &str) -> Vec<OutboxMessage> {
    gw.outbox_messages()
        .into_iter()
        .filter(|m| m.rcpt_to().iter().any(|r| r == whom))
        .filter(|m| subject(m).contains("Weekly safeguarding report"))
        .collect()
}

/// The decoded Subject.
fn subject(m: &OutboxMessage) -> String {
    mail_parser::MessageParser::new()
        .parse(&m.bytes)
        .and_then(|p| p.subject().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn the_weekly_report_is_mailed_at_its_time_once_across_restarts() {
    let mut gw = Gateway::start(|cfg| {
        set(cfg, "safeguarding.alert_window", "0s");
        set(
            cfg,
            "safeguarding.escalate_to",
            toml::Value::Array(vec![CHAIR.into()]),
        );
    });
    flag_three(&gw);

    // The first whole minute more than 2 s ahead, in the school's time zone, as the spec.
    let tz = jiff::tz::TimeZone::get("Europe/London").unwrap();
    let slot = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(62))
        .to_zoned(tz)
        .with()
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .unwrap();
    let spec = slot.strftime("%a %H:%M").to_string();
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let mut cfg: toml::Table = toml::from_str(&text).unwrap();
    set(&mut cfg, "safeguarding.weekly_report", spec.as_str());
    std::fs::write(&gw.config_path, toml::to_string(&cfg).unwrap()).unwrap();
    gw.restart();

    let both = |gw: &Gateway| reports_to(gw, DSL).len() + reports_to(gw, CHAIR).len();
    assert!(
        gw.wait_for(Duration::from_secs(150), || both(&gw) >= 2),
        "no weekly report at {spec}:\n{}",
        gw.log_tail(4000)
    );
    let dsl_copy = reports_to(&gw, DSL);
    let escalation = reports_to(&gw, CHAIR);
    assert_eq!((dsl_copy.len(), escalation.len()), (1, 1), "one for each");
    assert!(!subject(&dsl_copy[0]).contains("escalation"));
    assert!(subject(&escalation[0]).contains("escalation"));
    assert_eq!(escalation[0].rcpt_to(), [CHAIR], "only to escalate_to");

    // The DSLs' copy: readable HTML with a plain-text part, without the head's flag.
    let p = dsl_copy[0].parts();
    let text = p
        .iter()
        .find(|(ct, _)| ct == "text/plain")
        .map(|(_, t)| t.clone())
        .unwrap_or_else(|| panic!("no text part: {p:?}"));
    let html = p
        .iter()
        .find(|(ct, _)| ct == "text/html")
        .map(|(_, t)| t.clone())
        .unwrap_or_else(|| panic!("no HTML part: {p:?}"));
    assert!(text.contains("Cases still unreviewed: 2"), "{text}");
    assert!(
        text.contains("pupil-personal-address") && html.contains("<table"),
        "{html}"
    );
    assert!(
        !text.contains(HEADTEACHER) && !html.contains(HEADTEACHER),
        "{text}"
    );
    // What concerns the head goes to escalate_to, on its own.
    let esc: String = escalation[0].parts().into_iter().map(|(_, t)| t).collect();
    assert!(esc.contains(HEADTEACHER) && !esc.contains(TEACHER), "{esc}");

    let sent = |gw: &Gateway| {
        details(gw)
            .into_iter()
            .filter(|d| d.starts_with("weekly report of ") && d.contains(" sent to "))
            .count()
    };
    assert!(
        gw.wait_for(Duration::from_secs(10), || sent(&gw) == 2),
        "both copies are audited"
    );

    // A restart reads the sent report back from the audit trail and does not send it again:
    // once it has said so in its log, nothing more has gone out.
    let said = |gw: &Gateway| gw.log().matches("the last one sent was that of").count();
    assert!(
        gw.wait_for(Duration::from_secs(10), || said(&gw) >= 1),
        "{}",
        gw.log_tail(3000)
    );
    gw.restart();
    assert!(
        gw.wait_for(Duration::from_secs(30), || said(&gw) >= 2),
        "the restarted gateway never decided:\n{}",
        gw.log_tail(3000)
    );
    assert_eq!(both(&gw), 2, "not sent again after the restart");
    assert_eq!(sent(&gw), 2);
    gw.assert_audit_verifies("after the weekly report");
}
