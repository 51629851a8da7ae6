//! `/metrics` after real traffic: a delivered message with a safeguarding flag and a message
//! quarantined for its attachment are counted by verdict, outcome and rule; the quarantine's
//! size follows a release; the next hop's latency is a histogram; nothing from a message shows.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const FROM: &str = "t.baker@example-academy.sch.uk";

fn metrics(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the web listener");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("send the request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the response");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn class_list() -> Vec<u8> {
    let mut csv = String::from("Name,UPN,Date of birth,Form\r\n");
    for n in 0..30 {
        csv.push_str(&format!(
            "Pupil{n} Surname{n},{},{:02}/03/2014,7B\r\n",
            upn(100 + n),
            n % 28 + 1
        ));
    }
    let encoded: String = csv
        .as_bytes()
        .chunks(57)
        .map(|c| {
            const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut line = String::new();
            for chunk in c.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
                for i in 0..4 {
                    if i <= chunk.len() {
                        line.push(B64[(v >> (18 - 6 * i) & 63) as usize] as char);
                    } else {
                        line.push('=');
                    }
                }
            }
            line + "\r\n"
        })
        .collect();
    format!(
        "From: Tom Baker <{FROM}>\r\nTo: <admissions@county.gov.example>\r\nSubject: Class list\r\n\
         Message-ID: <metrics-held@example-academy.sch.uk>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nThe list.\r\n--b1\r\n\
         Content-Type: text/csv; name=\"7B.csv\"\r\nContent-Disposition: attachment; filename=\"7B.csv\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{encoded}--b1--\r\n"
    )
    .into_bytes()
}

#[test]
fn metrics_count_verdicts_rules_latency_and_the_quarantine() {
    let gw = Gateway::start(|_| {});
    let port = gw.web_port();

    let before = metrics(port);
    assert_eq!(
        value(&before, "schoolgate_quarantine_messages"),
        Some(0.0),
        "{before}"
    );

    let mut c = Client::ready(gw.port);
    let flagged = plain_message(
        "Tom Baker <t.baker@example-academy.sch.uk>",
        "Jamie <jamie.smith2010@gmail.com>",
        "Homework",
        "metrics-flag@example-academy.sch.uk",
        "See you on Monday.\n",
    );
    let t = c
        .send(FROM, "", &["jamie.smith2010@gmail.com"], &flagged)
        .expect("send the flagged message");
    assert!(t.accepted(), "{:?}", t.reply);
    let t = c
        .send(FROM, "", &["admissions@county.gov.example"], &class_list())
        .expect("send the class list");
    assert!(
        t.accepted() && t.reply.text().contains("held for review"),
        "{:?}",
        t.reply
    );
    let _ = c.cmd("QUIT");

    let m = metrics(port);
    for (series, want) in [
        (
            "schoolgate_messages_total{path=\"relay\",verdict=\"deliver\",outcome=\"delivered\"}",
            1.0,
        ),
        (
            "schoolgate_messages_total{path=\"relay\",verdict=\"quarantine\",outcome=\"quarantined\"}",
            1.0,
        ),
        (
            "schoolgate_rule_matches_total{kind=\"flag\",rule=\"pupil-personal-address\"}",
            1.0,
        ),
        (
            "schoolgate_rule_matches_total{kind=\"finding\",rule=\"unencrypted-sensitive-attachment\"}",
            1.0,
        ),
        (
            "schoolgate_next_hop_seconds_count{result=\"accepted\"}",
            1.0,
        ),
        (
            "schoolgate_next_hop_seconds_bucket{result=\"accepted\",le=\"+Inf\"}",
            1.0,
        ),
        ("schoolgate_quarantine_messages", 1.0),
    ] {
        assert_eq!(value(&m, series), Some(want), "{series} in:\n{m}");
    }
    let bytes = value(&m, "schoolgate_quarantine_bytes").expect("quarantine bytes");
    assert!(bytes > 1000.0, "the held message's size: {bytes}");
    for secret in [
        "jamie.smith2010",
        "Class list",
        "7B.csv",
        "Homework",
        "Pupil",
    ] {
        assert!(!m.contains(secret), "/metrics shows {secret:?}:\n{m}");
    }

    // Released, it is no longer counted as held.
    let list = gw.cli(&["quarantine", "list", "--json"]);
    let held: serde_json::Value =
        serde_json::from_slice(&list.stdout).expect("quarantine list --json");
    let id = held[0]["id"].as_str().expect("a held id").to_string();
    // Whichever kind of hold it is, an account with both roles may release it, with a reason.
    gw.add_user("tester", &["network-manager", "dsl"], "tester password 1");
    let out = gw.cli(&[
        "quarantine",
        "release",
        &id,
        "--as",
        "tester",
        "--reason",
        "checked",
    ]);
    assert!(
        out.status.success(),
        "release: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = metrics(port);
    assert_eq!(
        value(&after, "schoolgate_quarantine_messages"),
        Some(0.0),
        "{after}"
    );
}
