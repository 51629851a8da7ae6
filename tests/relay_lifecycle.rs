//! The gateway's life: a clean stop on SIGTERM that finishes the message in flight, a reload on
//! SIGHUP (and a refused reload that keeps the old config), config errors that name the file,
//! line and field, and STARTTLS.

mod common;

use std::process::Command;
use std::time::Duration;

use common::smtp::Client;
use common::{Gateway, plain_message, set};

fn signal(gw: &Gateway, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &gw.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} failed");
}

fn schoolgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_schoolgate"))
}

#[test]
fn sigterm_finishes_the_message_in_flight_then_stops() {
    let mut gw = Gateway::start(|cfg| set(cfg, "relay.shutdown_grace", "20s"));
    let mut c = Client::ready(gw.port);
    assert_eq!(
        c.cmd("MAIL FROM:<t.baker@example-academy.sch.uk>")
            .unwrap()
            .code,
        250
    );
    assert_eq!(c.cmd("RCPT TO:<parent@example.org>").unwrap().code, 250);
    assert_eq!(c.cmd("DATA").unwrap().code, 354);
    let msg = plain_message(
        "t.baker@example-academy.sch.uk",
        "parent@example.org",
        "In flight at shutdown",
        "<inflight@test>",
        "first half\r\n",
    );
    c.write(&msg).unwrap();

    signal(&gw, "TERM");
    // New clients are no longer served once the gateway is stopping.
    let refused = gw.wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(gw.addr()).is_err()
            || Client::connect(gw.port)
                .map(|c| c.greeting.code != 220)
                .unwrap_or(true)
    });
    assert!(
        refused,
        "a new client was still greeted after SIGTERM:\n{}",
        gw.log_tail(4000)
    );

    // The message in flight still completes, and truthfully.
    c.write(b"second half\r\n.\r\n").unwrap();
    let r = c.read_reply().unwrap();
    assert_eq!(
        r.code,
        250,
        "the message in flight: {r}\n{}",
        gw.log_tail(4000)
    );
    // A generous bound: the machine may be busy; the exit itself follows at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut status = gw.exited();
    while status.is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        status = gw.exited();
    }
    let exited = status.is_some_and(|s| s.success());
    assert!(
        exited,
        "the gateway did not exit 0 after SIGTERM:\n{}",
        gw.log_tail(4000)
    );

    let out = gw.outbox_messages();
    assert_eq!(out.len(), 1);
    assert!(String::from_utf8_lossy(&out[0].bytes).contains("first half\r\nsecond half\r\n"));
    let records = gw.audit_records();
    let last = records.last().expect("audit records");
    assert_eq!(
        last.kind, "stop",
        "the stop is recorded last: {:?}",
        last.record
    );
    assert!(
        last.record.to_string().contains("stopped cleanly"),
        "{:?}",
        last.record
    );
}

#[test]
fn sighup_reloads_the_config_and_keeps_the_old_one_when_the_new_is_bad() {
    let gw = Gateway::start(|_| {});
    let second = gw.dir.path().join("outbox-after-reload");
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let old_hop = format!("outbox:{}", gw.outbox_dir.display());
    let new_text = text.replace(&old_hop, &format!("outbox:{}", second.display()));
    assert_ne!(text, new_text, "the test config names the outbox");
    std::fs::write(&gw.config_path, &new_text).unwrap();
    signal(&gw, "HUP");
    // The file poll would reload the changed file too ("after a change to …"): the reload
    // must be the one SIGHUP asked for, or a SIGHUP that did nothing would pass.
    assert!(
        gw.wait_for(Duration::from_secs(30), || gw.log().lines().any(|l| l
            .contains("configuration reloaded from")
            && l.contains(" on SIGHUP;"))),
        "no reload on SIGHUP logged:\n{}",
        gw.log_tail(4000)
    );
    let mut c = Client::ready(gw.port);
    let msg = plain_message(
        "a@example-academy.sch.uk",
        "b@example.org",
        "after reload",
        "<r1@test>",
        "x\r\n",
    );
    assert!(
        c.send("a@example-academy.sch.uk", "", &["b@example.org"], &msg)
            .unwrap()
            .accepted()
    );
    assert_eq!(
        common::outbox_messages(&second).len(),
        1,
        "the reloaded next hop is used"
    );
    assert_eq!(gw.outbox_messages().len(), 0);

    // A broken config is refused; the gateway keeps working on the one it has.
    std::fs::write(
        &gw.config_path,
        new_text.replace("max_recipients = 1000", "max_recipients = \"lots\""),
    )
    .unwrap();
    signal(&gw, "HUP");
    assert!(
        gw.wait_for(Duration::from_secs(30), || gw.log().contains(
            "reload refused on SIGHUP, the old configuration stays in force"
        )),
        "no refusal on SIGHUP logged:\n{}",
        gw.log_tail(4000)
    );
    let msg = plain_message(
        "a@example-academy.sch.uk",
        "b@example.org",
        "after bad reload",
        "<r2@test>",
        "y\r\n",
    );
    assert!(
        c.send("a@example-academy.sch.uk", "", &["b@example.org"], &msg)
            .unwrap()
            .accepted()
    );
    assert_eq!(common::outbox_messages(&second).len(), 2);
    // One record per SIGHUP (the file poll may add its own, "after a change to …").
    let reloads = || -> Vec<_> {
        gw.audit_records()
            .into_iter()
            .filter(|r| r.kind == "config-reload" && r.record_json.contains("on SIGHUP"))
            .collect()
    };
    gw.wait_for(Duration::from_secs(30), || reloads().len() >= 2);
    let reloads = reloads();
    assert_eq!(
        reloads.len(),
        2,
        "both SIGHUP reloads are in the audit trail"
    );
    assert!(!reloads[0].record_json.contains("reload refused"));
    assert!(reloads[1].record_json.contains("reload refused"));
}

#[test]
fn a_bad_config_line_is_named_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(common::example_config())
        .unwrap()
        .replace(
            "policies/example-directory.csv",
            &common::example_directory().to_string_lossy(),
        );
    let cases = [
        (
            "\"127.0.0.0/8\"",
            "\"127.0.0.0/99\"",
            "relay.allowed_clients",
        ),
        (
            "max_recipients = 1000",
            "max_recipientz = 1000",
            "relay.max_recipientz",
        ),
        (
            "dsl = [\"dsl@example-academy.sch.uk\"]",
            "dsl = [\"not an address\"]",
            "safeguarding.dsl",
        ),
        (
            "next_hop = \"outbox:var/outbox\"",
            "next_hop = \"gopher://x\"",
            "relay.next_hop",
        ),
    ];
    for (from, to, field) in cases {
        let text = example.replace(from, to);
        assert_ne!(text, example, "{from} is in the example config");
        let line = text.lines().position(|l| l.contains(to)).unwrap() + 1;
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, &text).unwrap();
        for args in [&["policy", "check"][..], &["serve"][..]] {
            let out = schoolgate()
                .args(args)
                .arg("--config")
                .arg(&path)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} {field}: {stderr}");
            let want = format!("{}:{line}: {field}: ", path.display());
            assert!(
                stderr.contains(&want),
                "{args:?}: expected `{want}` in: {stderr}"
            );
            assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        }
    }
    let out = schoolgate()
        .args([
            "policy",
            "check",
            "--config",
            "/nonexistent/schoolgate.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/schoolgate.toml") && stderr.contains("--config"),
        "{stderr}"
    );

    // The good config passes and is summarised.
    let path = dir.path().join("good.toml");
    std::fs::write(&path, &example).unwrap();
    let out = schoolgate()
        .args(["policy", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3 staff, 2 pupils"), "{stdout}");
    assert!(
        stdout.contains("head@example-academy.sch.uk"),
        "the headteacher is exempt: {stdout}"
    );
}

#[test]
fn starttls_is_offered_with_a_certificate_and_used_by_swaks() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    common::tools::self_signed_certificate("schoolgate.test", &cert, &key);
    let gw = Gateway::start(|cfg| {
        set(cfg, "relay.tls_cert", cert.to_string_lossy().into_owned());
        set(cfg, "relay.tls_key", key.to_string_lossy().into_owned());
    });
    let c = Client::ready(gw.port);
    assert!(c.has_extension("STARTTLS"));
    let out = Command::new("swaks")
        .args([
            "--server",
            &gw.server_arg(),
            "--tls",
            "--from",
            "a@example-academy.sch.uk",
            "--to",
            "b@example.org",
        ])
        .args(["--header", "Subject: over TLS"])
        .output()
        .expect("swaks not found: run scripts/test, which installs it");
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "swaks --tls failed:\n{transcript}\n{}",
        gw.log_tail(3000)
    );
    let msgs = gw.outbox_messages();
    assert_eq!(msgs.len(), 1);
    let received = msgs[0].header("Received").unwrap_or_default();
    assert!(
        received.contains("ESMTPS") && received.contains("using TLS"),
        "{received}"
    );
    let rec = gw.message_records();
    assert!(
        rec[0].field("tls").is_some_and(|t| t.contains("TLS")),
        "{:?}",
        rec[0].record
    );
}
