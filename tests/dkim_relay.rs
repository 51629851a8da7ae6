//! `[dkim]` end to end (issue 18): mail relayed through the real gateway leaves signed for the
//! school's domain, after the disclaimer, and two verifiers that share no code with schoolgate
//! (dkimpy through `scripts/dkim-verify`, and OpenDKIM in its test mode) verify every signature
//! against the record `schoolgate dkim keygen` printed, served as DNS would. Mail from another
//! domain leaves unsigned by us. With `arc = true`, the ARC set records what the incoming
//! signature said before the disclaimer broke it, checked against a DNS server on loopback.

mod common;

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::smtp::Client;
use common::{Gateway, OutboxMessage, bin, set, smtp_canonical};

const DOMAIN: &str = "example-academy.sch.uk";
const SELECTOR: &str = "sg1";
const HEAD: &str = "head@example-academy.sch.uk";
const COLLEAGUE: &str = "t.baker@example-academy.sch.uk";
const PUPIL: &str = "sam.pupil@pupils.example-academy.sch.uk";
const PARENT: &str = "jane.parent@example.org";
const DISCLAIMER: &str = "The views expressed are not necessarily those of Example Academy.";

/// A key made by `schoolgate dkim keygen`, and the TXT record it printed.
struct Key {
    path: PathBuf,
    record: String,
}

fn keygen(dir: &Path, name: &str, algorithm: &str, domain: &str, selector: &str) -> Key {
    let path = dir.join(name);
    let out = Command::new(bin())
        .args(["dkim", "keygen", "--domain", domain, "--selector", selector])
        .arg("--out")
        .arg(&path)
        .args(["--algorithm", algorithm])
        .output()
        .expect("run schoolgate dkim keygen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "keygen failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&path)
        .expect("the key file")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the key must be readable by its owner only"
    );
    // The zone-file line: the record split into quoted strings of at most 255 characters.
    let prefix = format!("{selector}._domainkey.{domain} IN TXT \"");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("keygen printed no {prefix}… line:\n{stdout}"));
    let strings: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
    assert!(strings.iter().all(|s| s.len() <= 255), "{line}");
    let record = strings.concat();
    assert!(
        record.starts_with(&format!("v=DKIM1; k={algorithm}; p=")),
        "{record}"
    );
    Key { path, record }
}

fn with_key(cfg: &mut toml::Table, key: &Key) {
    set(cfg, "dkim.domain", DOMAIN);
    set(cfg, "dkim.selector", SELECTOR);
    set(cfg, "dkim.key", key.path.to_string_lossy().into_owned());
}

/// The messages every verifier must pass: each transfer encoding and structure a school's
/// mail has. `(subject, 8-bit, message)`.
fn variety(from: &str, tag: &str) -> Vec<(String, bool, Vec<u8>)> {
    let head = |subject: &str, extra: &str| {
        format!(
            "From: {from}\r\nTo: {PARENT}\r\nSubject: {subject}\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <{}@dkim.test>\r\nMIME-Version: 1.0\r\n{extra}",
            subject.replace(' ', "-")
        )
    };
    let mut out = Vec::new();
    let s = format!("plain {tag}");
    out.push((
        s.clone(),
        false,
        format!(
            "{}Content-Type: text/plain; charset=us-ascii\r\n\r\nDear Mrs Parent,\r\n\r\nSam's consent form has arrived.   Trailing spaces here:   \r\n\r\n\r\n",
            head(&s, "")
        ),
    ));
    let s = format!("qp {tag}");
    out.push((
        s.clone(),
        false,
        format!(
            "{}Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=C3=A9 trip on Thursday: =C2=A35 per pupil, a long line that is wrapped =\r\nwith a soft break.\r\n",
            head(&s, "")
        ),
    ));
    let s = format!("base64 {tag}");
    out.push((
        s.clone(),
        false,
        format!(
            "{}Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nRGVhciBNcnMgUGFyZW50LAoKVGhlIGNhZsOpIHRyaXAgaXMgb24gVGh1cnNkYXkuCg==\r\n",
            head(&s, "")
        ),
    ));
    let s = format!("8bit {tag}");
    out.push((
        s.clone(),
        true,
        format!(
            "{}Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nThe café trip costs £5 — Zoë and Siân are going.\r\n",
            head(&s, "")
        ),
    ));
    let s = format!("multipart {tag}");
    out.push((
        s.clone(),
        false,
        format!(
            "{}Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nSee you on Thursday =E2=80=94 bring a coat.\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<html><body><p>See you on Thursday =E2=80=94 bring a coat.</p></body></html>\r\n--b1--\r\n",
            head(&s, "")
        ),
    ));
    let s = format!("mixed {tag}");
    out.push((
        s.clone(),
        false,
        format!(
            "{}Content-Type: multipart/mixed; boundary=\"m1\"\r\n\r\n--m1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe trip letter is attached.\r\n--m1\r\nContent-Type: application/octet-stream; name=\"letter.bin\"\r\nContent-Disposition: attachment; filename=\"letter.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\r\n--m1--\r\n",
            head(&s, "")
        ),
    ));
    out.into_iter()
        .map(|(s, eight, m)| (s, eight, smtp_canonical(m.as_bytes())))
        .collect()
}

fn send(gw: &Gateway, from: &str, message: &[u8], eight_bit: bool) {
    let mut c = Client::ready(gw.port);
    let t = c
        .send(
            from,
            if eight_bit { "BODY=8BITMIME" } else { "" },
            &[PARENT],
            message,
        )
        .expect("SMTP transaction");
    assert!(
        t.accepted(),
        "refused: {:?} {}\n{}",
        t.stage,
        t.reply,
        gw.log_tail(4000)
    );
    c.quit();
}

fn delivered(gw: &Gateway, subject: &str) -> OutboxMessage {
    let mut found = None;
    let arrived = gw.wait_for(Duration::from_secs(20), || {
        found = gw
            .outbox_messages()
            .into_iter()
            .find(|m| m.header("Subject").as_deref() == Some(subject));
        found.is_some()
    });
    assert!(arrived, "{subject:?} never arrived:\n{}", gw.log_tail(4000));
    found.expect("found")
}

/// Runs `scripts/dkim-verify` (dkimpy) on `files`; panics with its output unless all pass.
fn dkimpy_verifies(records: &[(&str, &str)], files: &[PathBuf], extra: &[&str]) -> String {
    let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dkim-verify"));
    for (name, text) in records {
        cmd.arg("--record").arg(format!("{name}={text}"));
    }
    cmd.args(extra).args(files);
    let out = cmd
        .output()
        .expect("run scripts/dkim-verify (needs /usr/bin/python3 and python3-dkim)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dkimpy does not verify:\n{text}");
    text
}

/// OpenDKIM's verifier in test mode (`opendkim -t`), the public key from a TestPublicKeys file
/// instead of DNS. Returns what it said about each file.
fn opendkim_verifies(dir: &Path, record: &str, files: &[PathBuf]) {
    let keys = dir.join("opendkim-keys");
    std::fs::write(&keys, format!("{SELECTOR}._domainkey.{DOMAIN} {record}\n")).expect("keys");
    let conf = dir.join("opendkim.conf");
    std::fs::write(
        &conf,
        format!("Mode v\nTestPublicKeys {}\nSyslog no\n", keys.display()),
    )
    .expect("conf");
    for f in files {
        let out = Command::new("/usr/sbin/opendkim")
            .arg("-x")
            .arg(&conf)
            .arg("-vvv")
            .arg("-t")
            .arg(f)
            .output()
            .expect("run /usr/sbin/opendkim (Debian's opendkim package)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success()
                && text.contains(
                    "verification (s=sg1, d=example-academy.sch.uk, 2048-bit key) succeeded"
                )
                && text.contains("dkim=pass"),
            "OpenDKIM does not verify {}:\n{text}",
            f.display()
        );
    }
}

#[test]
fn mail_leaves_signed_after_the_disclaimer_and_independent_verifiers_agree() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keygen(keys.path(), "sg1.pem", "rsa", DOMAIN, SELECTOR);
    let gw = Gateway::start(|cfg| with_key(cfg, &key));

    let mut files = Vec::new();
    for (from, tag) in [(COLLEAGUE, "with disclaimer"), (HEAD, "no disclaimer")] {
        for (subject, eight, message) in variety(from, tag) {
            send(&gw, from, &message, eight);
            let m = delivered(&gw, &subject);
            assert!(
                m.bytes.starts_with(b"DKIM-Signature:"),
                "{subject}: no DKIM-Signature on top:\n{}",
                String::from_utf8_lossy(&m.bytes)
            );
            let text = String::from_utf8_lossy(&m.bytes);
            let sig = common::header_value(&m.bytes, "DKIM-Signature").expect("signature");
            assert!(sig.contains("d=example-academy.sch.uk"), "{sig}");
            assert!(sig.contains("c=relaxed/relaxed"), "{sig}");
            assert!(sig.contains("a=rsa-sha256"), "{sig}");
            // From is oversigned: listed once more than it appears.
            let h = sig
                .split("h=")
                .nth(1)
                .expect("h=")
                .split(';')
                .next()
                .expect("h");
            assert_eq!(
                h.to_ascii_lowercase().matches("from").count(),
                2,
                "From not oversigned: h={h}"
            );
            // The disclaimer is in what was signed (base64 bodies carry it encoded).
            if from == COLLEAGUE && !subject.starts_with("base64") {
                assert!(
                    text.contains(DISCLAIMER) || text.contains("The views expressed"),
                    "{subject}: no disclaimer:\n{text}"
                );
            }
            if from == HEAD {
                assert!(
                    !text.contains(DISCLAIMER),
                    "{subject}: the headteacher is exempt"
                );
            }
            let path = gw.outbox_dir.join("new").join(&m.name);
            files.push(path);
        }
    }
    let name = format!("{SELECTOR}._domainkey.{DOMAIN}");
    let said = dkimpy_verifies(
        &[(name.as_str(), key.record.as_str())],
        &files,
        &["--domain", DOMAIN],
    );
    assert!(said.contains("12 passed, 0 failed"), "{said}");
    opendkim_verifies(keys.path(), &key.record, &files);

    // Mail whose From: is another domain (here the pupils' subdomain: exact domains only)
    // leaves unsigned by us.
    let (subject, eight, message) = variety(PUPIL, "pupil domain").remove(0);
    send(&gw, PUPIL, &message, eight);
    let m = delivered(&gw, &subject);
    assert!(
        common::header_value(&m.bytes, "DKIM-Signature").is_none(),
        "mail from another domain was signed:\n{}",
        String::from_utf8_lossy(&m.bytes)
    );
    // The audit record says which key signed.
    let records = gw.message_records();
    assert!(
        records.iter().any(|r| r
            .message()
            .to_string()
            .contains("DKIM-signed d=example-academy.sch.uk s=sg1")),
        "no audit note of the signature"
    );
}

#[test]
fn ed25519_keys_sign_too() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keygen(keys.path(), "ed.pem", "ed25519", DOMAIN, SELECTOR);
    let gw = Gateway::start(|cfg| with_key(cfg, &key));
    let mut files = Vec::new();
    for (subject, eight, message) in variety(COLLEAGUE, "ed25519") {
        send(&gw, COLLEAGUE, &message, eight);
        let m = delivered(&gw, &subject);
        let sig = common::header_value(&m.bytes, "DKIM-Signature").expect("signature");
        assert!(sig.contains("a=ed25519-sha256"), "{sig}");
        files.push(gw.outbox_dir.join("new").join(&m.name));
    }
    let name = format!("{SELECTOR}._domainkey.{DOMAIN}");
    dkimpy_verifies(
        &[(name.as_str(), key.record.as_str())],
        &files,
        &["--domain", DOMAIN],
    );
}

#[test]
fn a_bad_key_stops_the_start_with_a_clear_error() {
    let keys = tempfile::tempdir().expect("tempdir");
    // A 1024-bit RSA key.
    let small = keys.path().join("small.pem");
    let made = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
        ])
        .arg(&small)
        .output()
        .expect("run openssl (Debian's openssl package)");
    assert!(made.status.success(), "openssl genpkey failed");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("schoolgate.toml");
    let text = std::fs::read_to_string(common::example_config()).expect("example config");
    let mut cfg: toml::Table = toml::from_str(&text).expect("parses");
    set(
        &mut cfg,
        "school.directory",
        common::example_directory().to_string_lossy().into_owned(),
    );
    set(&mut cfg, "dkim.domain", DOMAIN);
    set(&mut cfg, "dkim.selector", SELECTOR);
    set(&mut cfg, "dkim.key", small.to_string_lossy().into_owned());
    std::fs::write(&config, toml::to_string(&cfg).expect("toml")).expect("write");
    let out = Command::new(bin())
        .arg("--config")
        .arg(&config)
        .args(["policy", "check"])
        .output()
        .expect("run policy check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a 1024-bit key was accepted");
    assert!(
        err.contains("dkim.key") && err.contains("1024 bits") && err.contains("at least 2048"),
        "{err}"
    );
    assert!(!err.contains("BEGIN"), "key material in the error: {err}");
}

/// A DNS server on loopback answering TXT queries from `records`, NXDOMAIN otherwise.
fn dns_stub(records: Vec<(String, String)>) -> std::net::SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the DNS stub");
    let addr = socket.local_addr().expect("addr");
    let records = Arc::new(records);
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                return;
            };
            if let Some(reply) = dns_answer(&buf[..n], &records) {
                let _ = socket.send_to(&reply, peer);
            }
        }
    });
    addr
}

fn dns_answer(q: &[u8], records: &[(String, String)]) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(pos..pos + len)?).to_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*q.get(pos)?, *q.get(pos + 1)?]);
    let question_end = pos + 4;
    let name = labels.join(".");
    let found: Vec<&String> = records
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(&name))
        .map(|(_, t)| t)
        .collect();
    let mut r = Vec::new();
    r.extend_from_slice(&q[0..2]);
    let rcode = if found.is_empty() { 3 } else { 0 };
    r.extend_from_slice(&[0x81, 0x80 | rcode]);
    r.extend_from_slice(&[0, 1]);
    let answers = if qtype == 16 { found.len() } else { 0 };
    r.extend_from_slice(&(answers as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(q.get(12..question_end)?);
    if qtype == 16 {
        for text in found {
            r.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60]);
            let mut data = Vec::new();
            for chunk in text.as_bytes().chunks(255) {
                data.push(chunk.len() as u8);
                data.extend_from_slice(chunk);
            }
            r.extend_from_slice(&(data.len() as u16).to_be_bytes());
            r.extend_from_slice(&data);
        }
    }
    Some(r)
}

/// Signs `message` as the cloud would before the connector (dkimpy, another key).
fn upstream_sign(key: &Path, message: &[u8]) -> Vec<u8> {
    let script = "import sys, dkim\n\
        key = open(sys.argv[1], 'rb').read()\n\
        msg = sys.stdin.buffer.read()\n\
        sig = dkim.sign(msg, b'selector1', b'example-academy.sch.uk', key, include_headers=[b'from', b'to', b'subject', b'date', b'message-id'])\n\
        sys.stdout.buffer.write(sig + msg)\n";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run /usr/bin/python3 with python3-dkim");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(message)
        .expect("write");
    let out = child.wait_with_output().expect("dkimpy sign");
    assert!(out.status.success(), "dkimpy could not sign");
    smtp_canonical(&out.stdout)
}

#[test]
fn arc_records_that_the_incoming_signature_passed_before_the_disclaimer() {
    let keys = tempfile::tempdir().expect("tempdir");
    let ours = keygen(keys.path(), "sg1.pem", "rsa", DOMAIN, SELECTOR);
    let cloud = keygen(keys.path(), "cloud.pem", "rsa", DOMAIN, "selector1");
    let ours_name = format!("{SELECTOR}._domainkey.{DOMAIN}");
    let cloud_name = format!("selector1._domainkey.{DOMAIN}");
    let dns = dns_stub(vec![
        (ours_name.clone(), ours.record.clone()),
        (cloud_name.clone(), cloud.record.clone()),
    ]);
    let gw = Gateway::start(|cfg| {
        with_key(cfg, &ours);
        set(cfg, "dkim.arc", true);
        set(cfg, "dkim.resolver", dns.to_string());
    });
    let (subject, eight, message) = variety(COLLEAGUE, "arc").remove(1);
    let signed = upstream_sign(&cloud.path, &message);
    send(&gw, COLLEAGUE, &signed, eight);
    let m = delivered(&gw, &subject);
    let text = String::from_utf8_lossy(&m.bytes).into_owned();
    assert!(
        text.contains(DISCLAIMER) || text.contains("The views expressed"),
        "{text}"
    );
    let aar = common::header_value(&m.bytes, "ARC-Authentication-Results").expect("an AAR");
    assert!(
        aar.contains("dkim=pass") && aar.contains("header.s=selector1"),
        "the ARC results must say the cloud's signature passed on arrival: {aar}"
    );
    assert!(aar.starts_with("i=1; "), "{aar}");
    let file = gw.outbox_dir.join("new").join(&m.name);
    let records = [
        (ours_name.as_str(), ours.record.as_str()),
        (cloud_name.as_str(), cloud.record.as_str()),
    ];
    // Ours verifies, and the ARC chain (our seal over the changed message) too.
    dkimpy_verifies(
        &records,
        std::slice::from_ref(&file),
        &["--domain", DOMAIN, "--arc"],
    );
    // The cloud's own signature is still there, broken by the disclaimer, as receivers expect.
    let signatures = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .filter(|l| l.starts_with("DKIM-Signature:"))
        .count();
    assert_eq!(signatures, 2, "{text}");

    // Unsigned mail: the results say so honestly.
    let (subject, eight, message) = variety(COLLEAGUE, "arc unsigned").remove(0);
    send(&gw, COLLEAGUE, &message, eight);
    let m = delivered(&gw, &subject);
    let aar = common::header_value(&m.bytes, "ARC-Authentication-Results").expect("an AAR");
    assert!(aar.contains("dkim=none"), "{aar}");
}

#[test]
fn policy_check_looks_up_the_published_record_and_says_what_to_publish() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keygen(keys.path(), "sg1.pem", "rsa", DOMAIN, SELECTOR);
    let other = keygen(keys.path(), "other.pem", "rsa", DOMAIN, SELECTOR);
    let name = format!("{SELECTOR}._domainkey.{DOMAIN}");
    let check = |records: Vec<(String, String)>| -> String {
        let dns = dns_stub(records);
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("schoolgate.toml");
        let text = std::fs::read_to_string(common::example_config()).expect("example config");
        let mut cfg: toml::Table = toml::from_str(&text).expect("parses");
        set(
            &mut cfg,
            "school.directory",
            common::example_directory().to_string_lossy().into_owned(),
        );
        with_key(&mut cfg, &key);
        set(&mut cfg, "dkim.resolver", dns.to_string());
        std::fs::write(&config, toml::to_string(&cfg).expect("toml")).expect("write");
        let out = Command::new(bin())
            .arg("--config")
            .arg(&config)
            .args(["policy", "check"])
            .output()
            .expect("run policy check");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{said}");
        said
    };
    let publish = format!("{name} IN TXT \"");
    let said = check(vec![(name.clone(), key.record.clone())]);
    assert!(said.contains("is published and matches the key"), "{said}");
    assert!(!said.contains("warning: sg1._domainkey"), "{said}");
    let said = check(vec![(name.clone(), other.record.clone())]);
    assert!(
        said.contains("warning: sg1._domainkey")
            && said.contains("publishes another key")
            && said.contains(&publish),
        "{said}"
    );
    let said = check(Vec::new());
    assert!(
        said.contains("warning: sg1._domainkey")
            && said.contains("is not published")
            && said.contains(&publish),
        "{said}"
    );
}

#[test]
fn the_processed_stamp_is_added_once() {
    let gw = Gateway::start(|cfg| {
        set(cfg, "relay.processed_header", true);
        set(cfg, "relay.hostname", "schoolgate.example-academy.sch.uk");
    });
    let (subject, eight, message) = variety(COLLEAGUE, "stamp").remove(0);
    send(&gw, COLLEAGUE, &message, eight);
    let m = delivered(&gw, &subject);
    assert_eq!(
        common::header_value(&m.bytes, "X-Schoolgate-Processed").as_deref(),
        Some("schoolgate.example-academy.sch.uk")
    );
    // Already stamped (by an earlier pass): not stamped again.
    let (subject, eight, message) = variety(COLLEAGUE, "stamped").remove(0);
    let mut stamped = b"X-Schoolgate-Processed: schoolgate.example-academy.sch.uk\r\n".to_vec();
    stamped.extend_from_slice(&message);
    send(&gw, COLLEAGUE, &stamped, eight);
    let m = delivered(&gw, &subject);
    let text = String::from_utf8_lossy(&m.bytes);
    assert_eq!(text.matches("X-Schoolgate-Processed:").count(), 1, "{text}");
}
