//! The README's Microsoft 365 and Google Workspace recipes with `[dkim]`, as far as this machine
//! allows: a private Postfix stands in for the cloud. The schoolgate config and the Postfix lines
//! are the README's blocks (ports, names and paths changed).
//!
//! - Microsoft 365 loop-back: swaks → "Exchange Online" (a Postfix whose relay host is
//!   schoolgate: the outbound connector; whose `header_checks` send mail stamped
//!   `X-Schoolgate-Processed` to the Internet instead: the transport rule's exception) →
//!   schoolgate → that Postfix's second smtpd (the inbound connector) → the Internet (a sink).
//! - Google Workspace: swaks (for Gmail's outbound gateway) → schoolgate → the README's Postfix,
//!   which delivers (here to the sink) without re-encoding 8-bit mail.
//!
//! Needs root and Postfix (scripts/test installs it), python3-dkim for the verifier.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const DOMAIN: &str = "example-academy.sch.uk";

/// One README config block's lines for `recipe` and the file `file` ends with.
fn readme_block(recipe: &str, file: &str) -> String {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let mut out = String::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if !line.trim_start().starts_with("```") {
            continue;
        }
        let mut body = Vec::new();
        for l in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            body.push(l);
        }
        if body
            .first()
            .is_some_and(|f| f.trim().ends_with(&format!("{file} ({recipe})")))
        {
            out.push_str(&(body[1..].join("\n") + "\n"));
        }
    }
    assert!(
        !out.is_empty(),
        "the README has no {file} lines for {recipe}"
    );
    out
}

fn apply_toml(cfg: &mut toml::Table, text: &str) {
    let lines: toml::Table = toml::from_str(text).expect("the README's TOML parses");
    for (section, table) in lines {
        let toml::Value::Table(table) = table else {
            panic!("{section} is not a [section]");
        };
        for (key, value) in table {
            set(cfg, &format!("{section}.{key}"), value);
        }
    }
}

/// A key from `schoolgate dkim keygen` and its record text.
fn keygen(dir: &Path) -> (std::path::PathBuf, String) {
    let path = dir.join("example-academy.pem");
    let out = Command::new(bin())
        .args([
            "dkim",
            "keygen",
            "--domain",
            DOMAIN,
            "--selector",
            "sg2026",
            "--out",
        ])
        .arg(&path)
        .output()
        .expect("run schoolgate dkim keygen");
    assert!(out.status.success(), "keygen failed");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("sg2026._domainkey."))
        .expect("the record line");
    let record: String = line.split('"').skip(1).step_by(2).collect();
    (path, record)
}

fn dkimpy_verifies(record: &str, message: &[u8], dir: &Path) {
    let file = dir.join("arrived.eml");
    fs::write(&file, message).expect("write");
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dkim-verify"))
        .arg("--record")
        .arg(format!("sg2026._domainkey.{DOMAIN}={record}"))
        .args(["--domain", DOMAIN])
        .arg(&file)
        .output()
        .expect("run scripts/dkim-verify");
    assert!(
        out.status.success(),
        "dkimpy does not verify what reached the Internet:\n{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(message)
    );
}

fn wait_for_sink(sink: &Sink) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.accepted().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn microsoft_365_loop_back_recipe() {
    let keys = tempfile::tempdir().expect("tempdir");
    let (key, record) = keygen(keys.path());
    let sink = Sink::start(SinkBehaviour::accept());
    // The inbound connector: a second smtpd on the "Exchange Online" Postfix.
    let inbound = free_port();
    let toml_lines = readme_block("m365", "schoolgate.toml");
    assert!(
        toml_lines.contains("processed_header = true"),
        "{toml_lines}"
    );
    let gw = Gateway::start(|cfg| {
        let text = toml_lines
            .replace(
                "smtp+starttls://example-academy-sch-uk.mail.protection.outlook.com:25",
                &format!("smtp://127.0.0.1:{inbound}"),
            )
            .replace(
                "/etc/schoolgate/dkim/example-academy.pem",
                &key.to_string_lossy(),
            );
        apply_toml(cfg, &text);
        set(cfg, "relay.hostname", "schoolgate.example-academy.sch.uk");
    });
    // The transport rule: mail already stamped goes to the Internet, the rest to schoolgate.
    let rules = keys.path().join("transport_rule");
    fs::write(
        &rules,
        format!(
            "/^X-Schoolgate-Processed: schoolgate\\.example-academy\\.sch\\.uk/ FILTER smtp:[127.0.0.1]:{}\n",
            sink.port
        ),
    )
    .expect("write header_checks");
    std::process::Command::new("chmod")
        .args(["755"])
        .arg(keys.path())
        .status()
        .expect("chmod");
    let exchange = Postfix::start_with_services(
        gw.port,
        &format!(
            "header_checks = regexp:{}\ndisable_mime_output_conversion = yes\n",
            rules.display()
        ),
        &format!("127.0.0.1:{inbound} inet n - n - - smtpd\n"),
    );

    let message = plain_message(
        "Tom Baker <t.baker@example-academy.sch.uk>",
        "parent@example.org",
        "Through Exchange Online",
        "m365-loop@example-academy.sch.uk",
        "Dear parent,\n\nThe trip is on Thursday.\n\nMr Baker\n",
    );
    let file = swaks_data_file(exchange.dir.path(), "message.swaks", &message);
    swaks(&[
        "--server".to_string(),
        format!("127.0.0.1:{}", exchange.port),
        "--from".into(),
        "t.baker@example-academy.sch.uk".into(),
        "--to".into(),
        "parent@example.org".into(),
        "--data".into(),
        format!("@{}", file.display()),
    ])
    .assert_ok("swaks into Exchange Online's stand-in");

    wait_for_sink(&sink);
    // A loop would bring the message back to schoolgate: give it the time to.
    std::thread::sleep(Duration::from_secs(2));
    let delivered = sink.accepted();
    assert_eq!(
        delivered.len(),
        1,
        "one message reaches the Internet; Postfix's log:\n{}\nschoolgate's log:\n{}",
        exchange.maillog(),
        gw.log_tail(4000)
    );
    let data = &delivered[0].data;
    let text = String::from_utf8_lossy(data);
    assert_eq!(
        text.matches("The views expressed are not necessarily those of")
            .count(),
        1,
        "the disclaimer, once:\n{text}"
    );
    assert_eq!(
        text.matches("X-Schoolgate-Processed: schoolgate.example-academy.sch.uk")
            .count(),
        1,
        "the stamp, once:\n{text}"
    );
    dkimpy_verifies(&record, data, keys.path());
    assert_eq!(
        gw.message_records().len(),
        1,
        "schoolgate saw the message once (no loop)"
    );
}

#[test]
fn google_workspace_outbound_gateway_recipe() {
    let keys = tempfile::tempdir().expect("tempdir");
    let (key, record) = keygen(keys.path());
    let sink = Sink::start(SinkBehaviour::accept());
    let reinject = free_port();
    let toml_lines = readme_block("google", "schoolgate.toml");
    let main_cf = readme_block("google", "main.cf");
    let master_cf = readme_block("google", "master.cf").replace("10025", &reinject.to_string());
    let gw = Gateway::start(|cfg| {
        let text = toml_lines.replace("10025", &reinject.to_string()).replace(
            "/etc/schoolgate/dkim/example-academy.pem",
            &key.to_string_lossy(),
        );
        apply_toml(cfg, &text);
    });
    // The Postfix that delivers by MX: here everything goes to the sink.
    let postfix = Postfix::start_with_services(sink.port, &main_cf, &master_cf);
    let _ = &postfix;
    // An 8-bit message, as Gmail sends one: Postfix must not re-encode it.
    let message = smtp_canonical(
        "From: Tom Baker <t.baker@example-academy.sch.uk>\r\nTo: parent@example.org\r\nSubject: Via Gmail\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <google-recipe@example-academy.sch.uk>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nThe café trip costs £5 — Zoë is going.\r\n"
            .as_bytes(),
    );
    let mut c = smtp::Client::ready(gw.port);
    let t = c
        .send(
            "t.baker@example-academy.sch.uk",
            "BODY=8BITMIME",
            &["parent@example.org"],
            &message,
        )
        .expect("SMTP");
    assert!(t.accepted(), "{:?} {}", t.stage, t.reply);
    c.quit();
    wait_for_sink(&sink);
    let delivered = sink.accepted();
    assert_eq!(
        delivered.len(),
        1,
        "Postfix's log:\n{}\nschoolgate's log:\n{}",
        postfix.maillog(),
        gw.log_tail(4000)
    );
    let data = &delivered[0].data;
    assert!(
        String::from_utf8_lossy(data).contains("café"),
        "re-encoded on the way"
    );
    dkimpy_verifies(&record, data, keys.path());
}
