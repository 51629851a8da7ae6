use serde_json::json;

use super::render::{Format, render};
use super::*;

const HEAD: &str = "head@school.example";
const TEACHER: &str = "t.baker@school.example";

struct School;

impl People for School {
    fn name(&self, address: &str) -> Option<String> {
        match address {
            HEAD => Some("Margaret Hughes".into()),
            TEACHER => Some("Tom Baker".into()),
            _ => None,
        }
    }
    fn concerns_escalation(&self, sender: &str) -> bool {
        sender == HEAD
    }
}

fn at(s: &str) -> jiff::Timestamp {
    s.parse().expect("an instant")
}

fn utc() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::UTC
}

/// A message record's JSON with `flags` (rule, action) and `findings` (rule, action).
fn message(
    time: &str,
    from: &str,
    subject: &str,
    flags: &[(&str, &str)],
    findings: &[(&str, &str)],
    quarantine_id: Option<&str>,
) -> String {
    json!({
        "time": time,
        "kind": "message",
        "message": {
            "client": "127.0.0.1:1", "helo": "h", "mail_from": from,
            "rcpt_to": ["j.smith@pupils.school.example"],
            "subject": subject, "size": 10, "sha256_received": "00",
            "flags": flags.iter().map(|(r, a)| json!({"rule": r, "detail": "d", "evidence": "e", "action": a})).collect::<Vec<_>>(),
            "findings": findings.iter().map(|(r, a)| json!({"rule": r, "attachment": "a.xlsx", "detail": "d", "action": a})).collect::<Vec<_>>(),
            "verdict": if quarantine_id.is_some() { "quarantine" } else { "deliver" },
            "outcome": if quarantine_id.is_some() { "quarantined" } else { "delivered" },
            "quarantine_id": quarantine_id,
            "reply": "250 ok"
        }
    })
    .to_string()
}

fn review(time: &str, case_seq: u64, action: &str, outcome: Option<&str>) -> String {
    json!({
        "time": time,
        "kind": "case-review",
        "action": {"actor": "ms.shah", "detail": format!("case {case_seq} {action}")},
        "case_review": {
            "case_seq": case_seq, "action": action, "outcome": outcome,
            "note": "spoke to\nthe teacher", "reference": "CPOMS-7", "actor": "ms.shah"
        }
    })
    .to_string()
}

fn action(time: &str, actor: &str, detail: &str) -> String {
    json!({"time": time, "kind": "action", "action": {"actor": actor, "detail": detail}})
        .to_string()
}

fn chain() -> ChainStatus {
    ChainStatus {
        head: Some(ChainHead {
            seq: 42,
            hash: "ab".repeat(32),
        }),
        records: 42,
        broken: None,
    }
}

fn week() -> Period {
    Period {
        since: at("2026-11-30T00:00:00Z"),
        until: at("2026-12-07T00:00:00Z"),
    }
}

/// A week of a school's trail: flags, reviews, holds, an undelivered alert.
fn trail() -> Vec<String> {
    vec![
        // 1: last week's case, never reviewed: still unreviewed, oldest first.
        message(
            "2026-11-20T09:00:00Z",
            TEACHER,
            "old",
            &[("pupil-personal-address", "flag")],
            &[],
            None,
        ),
        // 2: a case this week, reviewed this week.
        message(
            "2026-12-01T09:00:00Z",
            TEACHER,
            "Homework",
            &[("pupil-personal-address", "flag")],
            &[],
            None,
        ),
        // 3: a case reviewed then reopened: unreviewed.
        message(
            "2026-12-01T10:00:00Z",
            "a.n.other@school.example",
            "Trip\r\nBcc: evil",
            &[("personal-contact-shared", "flag")],
            &[],
            None,
        ),
        review("2026-12-02T09:00:00Z", 2, "review", Some("no-concern")),
        review(
            "2026-12-02T09:05:00Z",
            3,
            "review",
            Some("low-level-concern"),
        ),
        review("2026-12-02T09:10:00Z", 3, "reopen", None),
        // 7: a safeguarding hold, deleted by the DSL.
        message(
            "2026-12-03T16:00:00Z",
            TEACHER,
            "Held",
            &[("staff-personal-address", "quarantine")],
            &[],
            Some("Q7"),
        ),
        action(
            "2026-12-03T17:00:00Z",
            "ms.shah",
            "quarantine delete Q7 by ms.shah: grooming concern, referred",
        ),
        // 9: a sensitive-attachment hold released by the network manager (not a case).
        message(
            "2026-12-04T08:00:00Z",
            TEACHER,
            "SEN list",
            &[],
            &[("unencrypted-sensitive-attachment", "quarantine")],
            Some("Q9"),
        ),
        action(
            "2026-12-04T08:30:00Z",
            "mr.it",
            "quarantine release Q9 by mr.it: t.baker to x; next hop smtp: 250 ok",
        ),
        // 11: the head's own flag and hold: only for escalate_to.
        message(
            "2026-12-05T20:00:00Z",
            HEAD,
            "Head's mail",
            &[("out-of-hours-pupil-contact", "quarantine")],
            &[],
            Some("Q11"),
        ),
        // 12: an alert that could not be delivered.
        action(
            "2026-12-05T20:05:00Z",
            "schoolgate",
            "mail-undelivered: DSL alert for audit records 2 to dsl@school.example: 550 mailbox full",
        ),
        // 13: a record a newer schoolgate wrote that this one cannot read.
        "{\"time\": 5}".to_string(),
        // 14: after the period: not counted, and a review after it does not count either.
        message(
            "2026-12-07T09:00:00Z",
            TEACHER,
            "next week",
            &[("pupil-personal-address", "flag")],
            &[],
            None,
        ),
        review("2026-12-07T09:00:00Z", 1, "review", Some("referred")),
    ]
}

fn build(audience: Audience) -> Report {
    let school = School;
    let mut b = Builder::new(week(), &school);
    for (i, r) in trail().iter().enumerate() {
        b.add(i as u64 + 1, r);
    }
    b.finish(
        audience,
        "Example Academy",
        at("2026-12-07T07:30:00Z"),
        utc(),
        chain(),
    )
}

#[test]
fn the_dsls_copy_holds_each_section() {
    let r = build(Audience::Dsl);
    assert_eq!(r.flagged, 4, "messages 2, 3, 7, 9 are in the week");
    let rules: Vec<(&str, usize)> = r
        .by_rule
        .iter()
        .map(|c| (c.key.as_str(), c.messages))
        .collect();
    assert_eq!(
        rules,
        [
            ("personal-contact-shared", 1),
            ("pupil-personal-address", 1),
            ("staff-personal-address", 1),
            ("unencrypted-sensitive-attachment", 1)
        ]
    );
    assert_eq!(r.by_staff[0].key, TEACHER);
    assert_eq!(r.by_staff[0].messages, 3);
    assert_eq!(r.by_staff[0].name.as_deref(), Some("Tom Baker"));

    let unreviewed: Vec<u64> = r.unreviewed.iter().map(|c| c.seq).collect();
    assert_eq!(
        unreviewed,
        [1, 3, 7],
        "oldest first; the reopened one is back"
    );
    assert_eq!(age_words(r.age(&r.unreviewed[0])), "16 days 15 hours");

    assert_eq!(r.reviewed.len(), 1);
    assert_eq!(r.reviewed[0].case.seq, 2);
    assert_eq!(r.reviewed[0].review.outcome.as_deref(), Some("no-concern"));

    assert_eq!(r.safeguarding_holds.len(), 1);
    assert!(matches!(
        &r.safeguarding_holds[0].fate,
        Fate::Deleted { by, detail, .. } if by == "ms.shah" && detail == "grooming concern, referred"
    ));
    assert_eq!(r.attachment_holds.len(), 1);
    assert!(matches!(&r.attachment_holds[0].fate, Fate::Released { by, .. } if by == "mr.it"));
    assert_eq!(r.undelivered.len(), 1);
    assert_eq!(r.unreadable, [13]);
}

#[test]
fn what_concerns_the_head_goes_only_to_escalation() {
    let dsl = build(Audience::Dsl);
    let all = render(&dsl, Format::Text) + &render(&dsl, Format::Html) + &render(&dsl, Format::Csv);
    assert!(
        !all.contains(HEAD) && !all.contains("Margaret") && !all.contains("Q11"),
        "{all}"
    );
    assert!(!all.contains("out-of-hours-pupil-contact"), "{all}");

    let up = build(Audience::Escalation);
    assert_eq!(up.flagged, 1);
    assert_eq!(
        up.unreviewed.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [11]
    );
    assert_eq!(up.safeguarding_holds.len(), 1);
    assert_eq!(up.safeguarding_holds[0].fate, Fate::StillHeld);
    assert!(up.attachment_holds.is_empty() && up.undelivered.is_empty());
    let text = render(&up, Format::Text);
    assert!(
        text.contains("Margaret Hughes <head@school.example>"),
        "{text}"
    );
    assert!(!text.contains(TEACHER), "{text}");
}

#[test]
fn text_names_the_rules_the_unreviewed_count_and_the_chain_head() {
    let text = render(&build(Audience::Dsl), Format::Text);
    for want in [
        "pupil-personal-address",
        "personal-contact-shared",
        "Cases still unreviewed: 3",
        "3 unreviewed cases",
        &format!("Chain head: 42:{}", "ab".repeat(32)),
        "audit verify: intact (42 records checked)",
        "outcome no-concern by ms.shah",
        "reference CPOMS-7; note: spoke to the teacher",
        "deleted by ms.shah on Thu 2026-12-03 17:00: grooming concern, referred",
        "released by mr.it",
        "550 mailbox full",
        "unreviewed for 16 days 15 hours",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // The subject's CR LF cannot start a line of its own.
    assert!(text.contains("\"Trip  Bcc: evil\""), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("Bcc")), "{text}");
}

#[test]
fn a_broken_chain_is_said_plainly() {
    let school = School;
    let b = Builder::new(week(), &school);
    let broken = ChainStatus {
        broken: Some("audit chain broken at record 7: record 7 is missing (deleted)".into()),
        ..chain()
    };
    let r = b.finish(
        Audience::Dsl,
        "X",
        at("2026-12-07T07:30:00Z"),
        utc(),
        broken,
    );
    let text = render(&r, Format::Text);
    assert!(
        text.contains("audit verify: BROKEN: audit chain broken at record 7"),
        "{text}"
    );
    assert!(text.contains("Cases still unreviewed: 0"), "{text}");
    assert!(r.is_empty());
}

#[test]
fn html_escapes_what_mail_says() {
    let school = School;
    let mut b = Builder::new(week(), &school);
    b.add(
        1,
        &message(
            "2026-12-01T09:00:00Z",
            TEACHER,
            "<script>alert(1)</script>",
            &[("pupil-personal-address", "flag")],
            &[],
            None,
        ),
    );
    let r = b.finish(
        Audience::Dsl,
        "A & B <School>",
        at("2026-12-07T07:30:00Z"),
        utc(),
        chain(),
    );
    let html = render(&r, Format::Html);
    assert!(
        !html.contains("<script>") && html.contains("&lt;script&gt;"),
        "{html}"
    );
    assert!(html.contains("A &amp; B &lt;School&gt;"), "{html}");
    assert!(html.contains("<table border=\"1\""), "{html}");
}

#[test]
fn csv_has_one_row_per_item_with_its_section_and_is_injection_safe() {
    let school = School;
    let mut b = Builder::new(week(), &school);
    b.add(
        1,
        &message(
            "2026-12-01T09:00:00Z",
            TEACHER,
            "=HYPERLINK(\"http://x\")",
            &[("pupil-personal-address", "flag")],
            &[],
            None,
        ),
    );
    let r = b.finish(
        Audience::Dsl,
        "X",
        at("2026-12-07T07:30:00Z"),
        utc(),
        chain(),
    );
    let csv = render(&r, Format::Csv);
    assert!(csv.starts_with("\u{feff}section,case,time,"), "{csv}");
    let sections: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap_or(""))
        .collect();
    assert_eq!(
        sections,
        [
            "period",
            "flags-by-rule",
            "flags-by-staff",
            "unreviewed",
            "audit-chain"
        ]
    );
    assert!(csv.contains("\"'=HYPERLINK(\"\"http://x\"\")\""), "{csv}");
}

#[test]
fn quarantine_retention_purge_is_a_delete_by_the_gateway() {
    let school = School;
    let mut b = Builder::new(week(), &school);
    b.add(
        1,
        &message(
            "2026-12-01T09:00:00Z",
            TEACHER,
            "s",
            &[],
            &[("unscannable-attachment", "quarantine")],
            Some("Q1"),
        ),
    );
    b.add(
        2,
        &action(
            "2026-12-02T09:00:00Z",
            "schoolgate",
            "retention purge: 2 quarantined messages held longer than 1 days deleted: Q0, Q1",
        ),
    );
    let r = b.finish(
        Audience::Dsl,
        "X",
        at("2026-12-07T07:30:00Z"),
        utc(),
        chain(),
    );
    assert_eq!(r.attachment_holds.len(), 2, "{:?}", r.attachment_holds);
    let q1 = r
        .attachment_holds
        .iter()
        .find(|h| h.id == "Q1")
        .expect("Q1");
    assert!(
        matches!(&q1.fate, Fate::Deleted { by, detail, .. } if by == "schoolgate" && detail.contains("retention"))
    );
}

#[test]
fn one_line_removes_controls_and_bidi_overrides() {
    assert_eq!(one_line("a\r\nb\u{1b}[31mc\u{202e}d"), "a  b [31mc d");
}

#[test]
fn last_week_is_seven_days_on_the_schools_clock_across_a_clock_change() {
    let london = jiff::tz::TimeZone::get("Europe/London").expect("Europe/London");
    // Monday 26 October 2026 07:30 GMT; the Monday before, 07:30 was BST (06:30 UTC).
    let p = Period::last_week(at("2026-10-26T07:30:00Z"), &london);
    assert_eq!(p.since, at("2026-10-19T06:30:00Z"));
    assert_eq!(p.until, at("2026-10-26T07:30:00Z"));
}

#[test]
fn a_release_reason_and_a_safeguarding_delete_are_read() {
    let school = School;
    let mut b = Builder::new(week(), &school);
    b.add(
        1,
        &message(
            "2026-12-01T09:00:00Z",
            TEACHER,
            "a",
            &[("pupil-personal-address", "quarantine")],
            &[],
            Some("Q1"),
        ),
    );
    b.add(
        2,
        &message(
            "2026-12-01T09:01:00Z",
            TEACHER,
            "b",
            &[("pupil-personal-address", "quarantine")],
            &[],
            Some("Q2"),
        ),
    );
    b.add(3, &action("2026-12-02T09:00:00Z", "ms.shah", "quarantine release Q1 by ms.shah (safeguarding hold; reason: parent confirmed the address): t.baker to x; next hop smtp: 250 ok"));
    b.add(
        4,
        &action(
            "2026-12-02T09:05:00Z",
            "ms.shah",
            "quarantine delete Q2 by ms.shah (safeguarding hold): inappropriate",
        ),
    );
    let r = b.finish(
        Audience::Dsl,
        "X",
        at("2026-12-07T07:30:00Z"),
        utc(),
        chain(),
    );
    let fates: Vec<String> = r
        .safeguarding_holds
        .iter()
        .map(|h| h.fate.describe(&utc()))
        .collect();
    assert_eq!(
        fates,
        [
            "released by ms.shah on Wed 2026-12-02 09:00: parent confirmed the address",
            "deleted by ms.shah on Wed 2026-12-02 09:05: inappropriate"
        ]
    );
}

#[test]
fn an_undelivered_alert_about_the_heads_flag_is_only_in_the_escalation_copy() {
    let school = School;
    let mut b = Builder::new(week(), &school);
    b.add(
        1,
        &message(
            "2026-12-01T09:00:00Z",
            HEAD,
            "h",
            &[("pupil-personal-address", "flag")],
            &[],
            None,
        ),
    );
    b.add(
        2,
        &message(
            "2026-12-01T09:01:00Z",
            TEACHER,
            "t",
            &[("pupil-personal-address", "flag")],
            &[],
            None,
        ),
    );
    b.add(3, &action("2026-12-01T10:00:00Z", "schoolgate", "mail-undelivered: alert for audit records 1 to chair@gov.example not delivered: refused: 550 no"));
    b.add(4, &action("2026-12-01T10:00:00Z", "schoolgate", "mail-undelivered: alert for audit records 2 to dsl@school.example not delivered: refused: 550 no"));
    let seqs = |a| -> Vec<u64> {
        b.finish(a, "X", at("2026-12-07T07:30:00Z"), utc(), chain())
            .undelivered
            .iter()
            .map(|u| u.seq)
            .collect()
    };
    assert_eq!(seqs(Audience::Dsl), [4]);
    assert_eq!(seqs(Audience::Escalation), [3]);
    assert_eq!(about_records("x for audit records 3, 15 to y"), [3, 15]);
    assert_eq!(
        about_records("checkpoint for audit records - to y"),
        Vec::<u64>::new()
    );
}
