//! `audit export` through the real binary, over a trail the real gateway wrote: JSONL that
//! re-imports as exactly the stored records (and re-hashes to the chain), a JSON array, CSV that
//! Python's csv module reads with the expected columns and formulas neutralised, and the
//! filters (`--person` across a person's school and personal addresses, `--rule`, `--verdict`,
//! `--since`/`--until`). Every export is itself audited.

mod common;

use std::path::Path;
use std::process::Command;

use common::smtp::Client;
use common::{AuditRow, Gateway, plain_message, sha256_hex};
use serde_json::Value;

const BAKER: &str = "t.baker@example-academy.sch.uk";
const BAKER_PERSONAL: &str = "tombaker77@gmail.com";
const HEAD: &str = "head@example-academy.sch.uk";
const JAMIE_SCHOOL: &str = "j.smith@pupils.example-academy.sch.uk";
const JAMIE_PERSONAL: &str = "jamie.smith2010@gmail.com";

/// (envelope from, envelope to, To header, subject as sent, subject as recorded)
const MESSAGES: [(&str, &str, &str, &str, &str); 6] = [
    (
        BAKER,
        "parent@example.org",
        "parent@example.org",
        "=HYPERLINK(\"http://x.example\",\"open\")",
        "=HYPERLINK(\"http://x.example\",\"open\")",
    ),
    (
        BAKER,
        JAMIE_PERSONAL,
        JAMIE_PERSONAL,
        "Homework",
        "Homework",
    ),
    (
        HEAD,
        JAMIE_SCHOOL,
        "Jamie Smith <j.smith@pupils.example-academy.sch.uk>",
        "+Trip, \"letter\"",
        "+Trip, \"letter\"",
    ),
    (
        BAKER,
        "parent2@example.org",
        "parent2@example.org",
        "-2+3",
        "-2+3",
    ),
    (
        BAKER_PERSONAL,
        "parent@example.org",
        "parent@example.org",
        "@SUM(A1)",
        "@SUM(A1)",
    ),
    (
        HEAD,
        "governor@example.org",
        "governor@example.org",
        "=?UTF-8?Q?Caf=C3=A9_=C3=BCber_na=C3=AFve?=",
        "Café über naïve",
    ),
];

/// A trail written by the real gateway: a start record and the six messages. The gateway is
/// stopped so that nothing else is appended while the exports run.
fn trail() -> Gateway {
    let mut gw = Gateway::start(|cfg| {
        common::relay_only(cfg);
        // One sender is a teacher's personal address (the staff-personal-address flag), which
        // the default [relay] allowed_senders would refuse at MAIL.
        common::set(
            cfg,
            "relay.allowed_senders",
            toml::Value::Array(vec!["*".into()]),
        );
    });
    // The export is the DSL's: `--as` names an account with the dsl role.
    gw.add_user("dsl", &["dsl"], "dsl password 12");
    let mut c = Client::ready(gw.port);
    for (i, (from, to, to_header, subject, _)) in MESSAGES.iter().enumerate() {
        let m = plain_message(from, to_header, subject, &format!("x{i}@test"), "Hello.");
        let t = c.send(from, "", &[to], &m).unwrap();
        assert!(t.accepted(), "{subject}: {:?}", t.reply);
    }
    gw.kill9();
    gw
}

fn export(gw: &Gateway, args: &[&str]) -> (String, String) {
    let mut all = vec!["audit", "export", "--as", "dsl"];
    all.extend_from_slice(args);
    let out = gw.cli(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "schoolgate {all:?} failed: {stderr}");
    // Not on a terminal: no progress bar, only the summary.
    assert!(
        !stderr.contains('\r') && !stderr.contains("[="),
        "{stderr:?}"
    );
    (String::from_utf8(out.stdout).expect("UTF-8 output"), stderr)
}

/// The subjects of the message records in a JSONL export.
fn subjects(jsonl: &str) -> Vec<String> {
    jsonl
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .filter(|v| v["record"]["kind"] == "message")
        .map(|v| {
            v["record"]["message"]["subject"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

fn recorded(i: usize) -> String {
    MESSAGES[i].4.to_string()
}

#[test]
fn jsonl_and_json_reimport_as_the_records_and_the_export_is_audited() {
    let gw = trail();
    let before = gw.audit_records();
    assert_eq!(before.iter().filter(|r| r.kind == "message").count(), 6);
    let out = gw.dir.path().join("trail.jsonl");
    let (_, stderr) = export(&gw, &["--format", "jsonl", "--out", out.to_str().unwrap()]);
    assert!(
        stderr.contains(&format!("exported {} records", before.len())),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), before.len());
    for (line, row) in lines.iter().zip(&before) {
        let v: Value = serde_json::from_str(line).expect("each line is JSON");
        assert_eq!(v["seq"], row.seq);
        assert_eq!(v["prev_hash"], row.prev_hash.as_str());
        assert_eq!(v["hash"], row.hash.as_str());
        assert_eq!(
            v["record"], row.record,
            "record {} re-imports as stored",
            row.seq
        );
        // The stored JSON is there byte for byte: the export re-hashes to the chain.
        let raw = &line[line.find("\"record\":").unwrap() + 9..line.len() - 1];
        assert_eq!(raw, row.record_json);
        let hash = sha256_hex(format!("{}\n{}\n{}", row.seq, row.prev_hash, raw).as_bytes());
        assert_eq!(hash, row.hash);
    }
    // Every field: the flags of the flagged message are there in full.
    let homework = before
        .iter()
        .find(|r| r.field("subject").as_deref() == Some("Homework"))
        .unwrap();
    assert_eq!(
        homework.message()["flags"][0]["rule"],
        "pupil-personal-address"
    );

    // The export is recorded, with who did it and how many records.
    let after = gw.audit_records();
    assert_eq!(after.len(), before.len() + 1);
    let last: &AuditRow = after.last().unwrap();
    assert_eq!(last.record["action"]["actor"], "dsl");
    let detail = last.record["action"]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("audit export by dsl: {} records", before.len())),
        "{detail}"
    );

    // JSON: one array, to standard output.
    let (json, _) = export(&gw, &["--format", "json"]);
    let items: Vec<Value> = serde_json::from_str(&json).expect("a JSON array");
    assert_eq!(items.len(), after.len());
    for (item, row) in items.iter().zip(&after) {
        assert_eq!(item["record"], row.record);
    }
}

#[test]
fn csv_opens_in_python_with_the_columns_and_no_formulas() {
    let gw = trail();
    let rows = gw.audit_records();
    let out = gw.dir.path().join("trail.csv");
    export(&gw, &["--format", "csv", "--out", out.to_str().unwrap()]);
    let bytes = std::fs::read(&out).unwrap();
    assert!(
        bytes.starts_with(b"\xef\xbb\xbf"),
        "UTF-8 byte-order mark first"
    );
    assert!(bytes.windows(2).any(|w| w == b"\r\n"), "CRLF rows");

    let script = r#"
import csv, json, sys
with open(sys.argv[1], newline='', encoding='utf-8-sig') as f:
    rows = list(csv.reader(f))
print(json.dumps({"header": rows[0], "rows": rows[1:]}))
"#;
    let py = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&out)
        .output()
        .expect("python3 is on every machine");
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let parsed: Value = serde_json::from_slice(&py.stdout).unwrap();
    let header: Vec<String> = serde_json::from_value(parsed["header"].clone()).unwrap();
    let expected = [
        "seq",
        "time",
        "kind",
        "actor",
        "action",
        "client",
        "helo",
        "tls",
        "queue_id",
        "mail_from",
        "rcpt_to",
        "header_from",
        "header_to",
        "header_cc",
        "subject",
        "message_id",
        "size",
        "sha256_received",
        "sha256_delivered",
        "disclaimer",
        "flags",
        "findings",
        "verdict",
        "outcome",
        "detail",
        "quarantine_id",
        "evidence",
        "next_hop",
        "next_hop_reply",
        "reply",
        "notes",
        "hash",
        "prev_hash",
        "attachments",
        "case_seq",
        "case_action",
        "case_outcome",
        "case_reference",
        "case_note",
    ];
    assert_eq!(header, expected);
    let table: Vec<Vec<String>> = serde_json::from_value(parsed["rows"].clone()).unwrap();
    assert_eq!(table.len(), rows.len(), "one row per record");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for (cells, row) in table.iter().zip(&rows) {
        assert_eq!(cells.len(), header.len());
        assert_eq!(cells[col("seq")], row.seq.to_string());
        assert_eq!(cells[col("hash")], row.hash);
        assert_eq!(cells[col("kind")], row.kind);
    }
    let subject_of = |i: usize| -> &Vec<String> {
        table
            .iter()
            .find(|c| c[col("message_id")] == format!("x{i}@test"))
            .unwrap_or_else(|| panic!("no row for message x{i}"))
    };
    // Formulas are neutralised with a leading apostrophe; the rest of the text is kept.
    for i in [0, 2, 3, 4] {
        assert_eq!(subject_of(i)[col("subject")], format!("'{}", recorded(i)));
    }
    assert_eq!(subject_of(5)[col("subject")], "Café über naïve");
    let homework = subject_of(1);
    assert!(
        homework[col("flags")].starts_with("pupil-personal-address (flag): "),
        "{}",
        homework[col("flags")]
    );
    assert_eq!(homework[col("verdict")], "deliver");
    assert_eq!(homework[col("rcpt_to")], JAMIE_PERSONAL);
    for cells in &table {
        for c in cells {
            assert!(
                !c.starts_with(['=', '+', '-', '@']),
                "a cell Excel would run as a formula: {c:?}"
            );
        }
    }
}

#[test]
fn filters_find_a_person_by_every_address_a_rule_a_verdict_and_dates() {
    let gw = trail();
    // Jamie: the personal address (Homework) and the school address (the trip letter, whose
    // To header has a display name).
    let (jsonl, stderr) = export(&gw, &["--format", "jsonl", "--person", JAMIE_PERSONAL]);
    assert_eq!(subjects(&jsonl), [recorded(1), recorded(2)]);
    assert!(stderr.contains("Jamie Smith"), "{stderr}");
    let (jsonl, _) = export(
        &gw,
        &[
            "--format",
            "jsonl",
            "--person",
            "J.Smith@Pupils.Example-Academy.sch.uk",
        ],
    );
    assert_eq!(subjects(&jsonl), [recorded(1), recorded(2)]);
    // Tom Baker: his school address and, as envelope sender, his personal one.
    let (jsonl, _) = export(&gw, &["--format", "jsonl", "--person", BAKER]);
    assert_eq!(
        subjects(&jsonl),
        [recorded(0), recorded(1), recorded(3), recorded(4)]
    );
    // Someone not in the directory: that address only.
    let (jsonl, stderr) = export(
        &gw,
        &["--format", "jsonl", "--person", "governor@example.org"],
    );
    assert_eq!(subjects(&jsonl), [recorded(5)]);
    assert!(stderr.contains("not in the directory"), "{stderr}");

    let (jsonl, _) = export(
        &gw,
        &["--format", "jsonl", "--rule", "pupil-personal-address"],
    );
    assert_eq!(subjects(&jsonl), [recorded(1)]);
    let (jsonl, _) = export(&gw, &["--format", "jsonl", "--verdict", "deliver"]);
    assert_eq!(jsonl.lines().count(), 6, "messages only: {jsonl}");

    // Dates are days in the school's time zone (the example config's).
    let today = jiff::Timestamp::now()
        .in_tz("Europe/London")
        .unwrap()
        .date();
    let (jsonl, _) = export(
        &gw,
        &[
            "--format",
            "jsonl",
            "--since",
            &today.to_string(),
            "--until",
            &today.to_string(),
        ],
    );
    assert_eq!(subjects(&jsonl).len(), 6, "today's records");
    let tomorrow = today.tomorrow().unwrap().to_string();
    let (csv, _) = export(&gw, &["--format", "csv", "--since", &tomorrow]);
    assert_eq!(csv.lines().count(), 1, "only the header: {csv}");
    let (json, _) = export(
        &gw,
        &[
            "--format",
            "json",
            "--until",
            &today.yesterday().unwrap().to_string(),
        ],
    );
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        Value::Array(vec![])
    );
}

#[test]
fn bad_arguments_say_what_is_wrong_and_write_nothing() {
    let gw = trail();
    let out = gw.cli(&[
        "audit",
        "export",
        "--as",
        "dsl",
        "--format",
        "csv",
        "--rule",
        "pupil-personal",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a rule") && err.contains("pupil-personal-address"),
        "{err}"
    );

    let out = gw.cli(&[
        "audit",
        "export",
        "--as",
        "dsl",
        "--format",
        "csv",
        "--since",
        "31-01-2026",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("YYYY-MM-DD"));

    let missing = gw.dir.path().join("no/such/dir/out.csv");
    let out = gw.cli(&[
        "audit",
        "export",
        "--as",
        "dsl",
        "--format",
        "csv",
        "--out",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("check that the directory exists"));
    assert!(!Path::new(&missing).exists());
}
