//! The same message through the relay and through the milter: the same decision, the same
//! delivered bytes (apart from the trace header each path puts on top: ours on the relay,
//! Postfix's on the milter path) and equivalent audit records.
//!
//! One gateway runs both: its relay delivers into its outbox; its milter sits in a private
//! Postfix that delivers to an in-test sink. Each message is sent with swaks to each, byte for
//! byte the same. The messages cover every kind of edit the milter must make: a new body only,
//! a part converted to UTF-8 (fields changed in place and added), a message with no MIME header
//! at all (fields inserted), a signed message wrapped (fields deleted and inserted), the
//! headteacher's (none), and a flagged one.

mod common;

use std::time::Duration;

use common::*;

const STAFF: &str = "t.baker@example-academy.sch.uk";
const PARENT: &str = "parent@example.org";
const PUPIL_PERSONAL: &str = "jamie.smith2010@gmail.com";
/// Not ASCII, so that a US-ASCII 7bit part has to be converted to take it.
const DISCLAIMER: &str =
    "The views expressed are not necessarily those of Example Academy \u{2014} \u{c9}cole.";

struct Case {
    name: &'static str,
    from: &'static str,
    to: &'static str,
    message: Vec<u8>,
}

fn header(from: &str, to: &str, subject: &str, mid: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{mid}>\r\n"
    )
}

fn cases() -> Vec<Case> {
    let staff = format!("Tom Baker <{STAFF}>");
    let mut out = Vec::new();
    // A new body only: an 8bit UTF-8 text part takes the disclaimer as it is.
    out.push(Case {
        name: "utf8-body",
        from: STAFF,
        to: PARENT,
        message: format!(
            "{}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\nDear parent,\r\n\r\nCaf\u{e9} on Friday.\r\n.\r\n..dots\r\n",
            header(&staff, PARENT, "Caf\u{e9}", "e1@example-academy.sch.uk")
        )
        .into_bytes(),
    });
    // Converted: US-ASCII 7bit cannot carry the disclaimer, so charset and encoding change.
    out.push(Case {
        name: "ascii-converted",
        from: STAFF,
        to: PARENT,
        message: format!(
            "{}MIME-Version: 1.0\r\nContent-Type: text/plain;\r\n\tcharset=us-ascii\r\n\
             X-Mailer: test\r\n\r\nDear parent,\r\n\r\nSee you on Friday.\r\n",
            header(&staff, PARENT, "Friday", "e2@example-academy.sch.uk")
        )
        .into_bytes(),
    });
    // No MIME header at all: MIME-Version, Content-Type and the encoding are added.
    out.push(Case {
        name: "no-mime",
        from: STAFF,
        to: PARENT,
        message: format!(
            "{}\r\nPlain old mail.\r\n",
            header(&staff, PARENT, "Old", "e3@example-academy.sch.uk")
        )
        .into_bytes(),
    });
    // Alternative text and HTML: both parts take it.
    out.push(Case {
        name: "alternative",
        from: STAFF,
        to: PARENT,
        message: format!(
            "{}MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
             --alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
             Hello =E2=80=94 parents\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n<html><body><p>Hello</p></body></html>\r\n--alt--\r\n",
            header(&staff, PARENT, "Alt", "e4@example-academy.sch.uk")
        )
        .into_bytes(),
    });
    // Signed, wrapped untouched (on_signed = "wrap"): Content-* fields move into the body.
    out.push(Case {
        name: "signed-wrapped",
        from: STAFF,
        to: PARENT,
        message: format!(
            "{}MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pgp-signature\";\r\n\
             \tmicalg=pgp-sha256; boundary=\"sig\"\r\nX-After: kept\r\n\r\n--sig\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\r\nSigned words.\r\n--sig\r\n\
             Content-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\nAAAA\r\n\
             -----END PGP SIGNATURE-----\r\n--sig--\r\n",
            header(&staff, PARENT, "Signed", "e5@example-academy.sch.uk")
        )
        .into_bytes(),
    });
    // The headteacher's: untouched on both paths.
    out.push(Case {
        name: "headteacher",
        from: HEADTEACHER,
        to: PARENT,
        message: plain_message(
            &format!("Margaret Hughes <{HEADTEACHER}>"),
            PARENT,
            "From the head",
            "e6@example-academy.sch.uk",
            "Dear parents,\n\nA word.\n",
        ),
    });
    // Flagged: delivered with the disclaimer and the same flag on both paths.
    out.push(Case {
        name: "flagged",
        from: STAFF,
        to: PUPIL_PERSONAL,
        message: plain_message(
            &staff,
            PUPIL_PERSONAL,
            "Revision",
            "e7@example-academy.sch.uk",
            "Notes attached.\n",
        ),
    });
    out
}

fn swaks_to(port: u16, dir: &std::path::Path, case: &Case, via: &str) -> SwaksRun {
    let file = swaks_data_file(dir, &format!("{}-{via}.eml", case.name), &case.message);
    swaks(&[
        "--server".to_string(),
        format!("127.0.0.1:{port}"),
        "--from".into(),
        case.from.into(),
        "--to".into(),
        case.to.into(),
        "--data".into(),
        format!("@{}", file.display()),
        "--no-data-fixup".into(),
    ])
}

fn mid_of(bytes: &[u8]) -> String {
    header_value(bytes, "Message-ID").unwrap_or_default()
}

#[test]
fn relay_and_milter_deliver_the_same_bytes_and_record_the_same_decision() {
    let milter_port = free_port();
    let gw = Gateway::start(|cfg| {
        set(cfg, "milter.listen", format!("127.0.0.1:{milter_port}"));
        set(cfg, "disclaimer.text", DISCLAIMER);
        set(cfg, "disclaimer.html", "");
        set(cfg, "disclaimer.on_signed", "wrap");
    });
    let sink = Sink::start(SinkBehaviour::accept());
    let postfix = Postfix::start_with(
        sink.port,
        &format!(
            "smtpd_milters = inet:127.0.0.1:{milter_port}\nmilter_default_action = tempfail\n"
        ),
    );
    let cases = cases();
    for case in &cases {
        swaks_to(gw.port, gw.dir.path(), case, "relay")
            .assert_ok(&format!("{} via the relay", case.name));
        swaks_to(postfix.port, postfix.dir.path(), case, "milter")
            .assert_ok(&format!("{} via Postfix and the milter", case.name));
    }
    let relayed = |mid: &str| {
        gw.outbox_messages()
            .into_iter()
            .find(|m| mid_of(&m.bytes) == mid && !m.rcpt_to().iter().any(|r| r.starts_with("dsl@")))
    };
    assert!(
        gw.wait_for(Duration::from_secs(30), || sink.accepted().len()
            >= cases.len()),
        "{} of {} messages came through Postfix; maillog:\n{}",
        sink.accepted().len(),
        cases.len(),
        postfix.maillog()
    );
    let records = gw.message_records();
    for case in &cases {
        let mid = mid_of(&case.message);
        let via_relay = relayed(&mid).unwrap_or_else(|| panic!("{}: not in the outbox", case.name));
        let via_milter = sink
            .accepted()
            .into_iter()
            .find(|m| mid_of(&m.data) == mid)
            .unwrap_or_else(|| panic!("{}: not at the sink", case.name));
        let a = strip_received(&via_relay.bytes);
        let b = strip_received(&via_milter.data);
        assert_same_bytes(
            &format!(
                "{}: the milter's delivery (below Postfix's Received:) against the relay's (below ours)",
                case.name
            ),
            &a,
            &b,
        );
        if case.name != "headteacher" {
            assert_ne!(a, case.message, "{}: the disclaimer was added", case.name);
        }

        let of = |path: Option<&str>| {
            records
                .iter()
                .find(|r| {
                    r.field("message_id").as_deref() == Some(mid.trim_matches(['<', '>']))
                        && r.field("path").as_deref() == path
                })
                .unwrap_or_else(|| panic!("{}: no audit record for path {path:?}", case.name))
        };
        let (r, m) = (of(None), of(Some("milter")));
        for field in [
            "verdict",
            "disclaimer",
            "flags",
            "findings",
            "notes",
            "sha256_received",
            "size",
            "mail_from",
            "rcpt_to",
            "subject",
            "header_from",
            "header_to",
        ] {
            assert_eq!(
                r.message().get(field),
                m.message().get(field),
                "{}: {field} differs between the relay's and the milter's records:\n{}\n{}",
                case.name,
                r.record_json,
                m.record_json
            );
        }
        assert_eq!(
            m.field("sha256_delivered"),
            Some(sha256_hex(&b)),
            "{}: the milter records the hash of what it handed back",
            case.name
        );
        assert_eq!(r.field("outcome").as_deref(), Some("delivered"));
        assert_eq!(m.field("outcome").as_deref(), Some("accepted"));
    }
}

/// A class list with UPNs, in clear, both ways: held on both paths (never delivered), with the
/// same findings and verdict, and the same held bytes below each path's trace header.
#[test]
fn a_sensitive_attachment_gets_the_same_decision_both_ways() {
    let milter_port = free_port();
    let gw = Gateway::start(|cfg| {
        set(cfg, "milter.listen", format!("127.0.0.1:{milter_port}"));
    });
    let sink = Sink::start(SinkBehaviour::accept());
    let postfix = Postfix::start_with(
        sink.port,
        &format!(
            "smtpd_milters = inet:127.0.0.1:{milter_port}\nmilter_default_action = tempfail\n"
        ),
    );
    let mut csv = String::from("Name,UPN,Form\r\n");
    for n in 0..3 {
        csv.push_str(&format!(
            "Pupil{n} Surname{n},{},7B\r\n",
            common::upn(200 + n)
        ));
    }
    let case = Case {
        name: "class-list",
        from: STAFF,
        to: PARENT,
        message: format!(
            "{}MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nThe list.\r\n--b1\r\n\
             Content-Type: text/csv; name=\"7B.csv\"\r\nContent-Disposition: attachment; filename=\"7B.csv\"\r\n\
             \r\n{csv}--b1--\r\n",
            header(&format!("Tom Baker <{STAFF}>"), PARENT, "Class list", "cl@example-academy.sch.uk")
        )
        .into_bytes(),
    };
    swaks_to(gw.port, gw.dir.path(), &case, "relay").assert_ok("class list via the relay");
    swaks_to(postfix.port, postfix.dir.path(), &case, "milter")
        .assert_ok("class list via Postfix and the milter");
    let records = gw.message_records();
    let of = |path: Option<&str>| {
        records
            .iter()
            .find(|r| {
                r.field("message_id").as_deref() == Some("cl@example-academy.sch.uk")
                    && r.field("path").as_deref() == path
            })
            .unwrap_or_else(|| panic!("no audit record for path {path:?}"))
            .clone()
    };
    let (r, m) = (of(None), of(Some("milter")));
    for field in [
        "verdict",
        "disclaimer",
        "flags",
        "findings",
        "notes",
        "sha256_received",
    ] {
        assert_eq!(
            r.message().get(field),
            m.message().get(field),
            "{field} differs:\n{}\n{}",
            r.record_json,
            m.record_json
        );
    }
    // The hold is the point: three UPNs in clear reach the identifiers threshold (2), so both
    // paths must hold it. "Both delivered" would mean detection broke on both.
    for (rec, path) in [(&r, "relay"), (&m, "milter")] {
        assert_eq!(
            rec.field("verdict").as_deref(),
            Some("quarantine"),
            "the class list must be held via the {path}: {}",
            rec.record_json
        );
        assert_eq!(
            rec.field("outcome").as_deref(),
            Some("quarantined"),
            "{path}: {}",
            rec.record_json
        );
        assert_eq!(
            rec.message()["findings"][0]["rule"],
            "unencrypted-sensitive-attachment",
            "{path}: {}",
            rec.record_json
        );
    }
    let held = |rec: &AuditRow| {
        let id = rec.field("quarantine_id").expect("a quarantine id");
        std::fs::read(gw.state_dir.join(format!("quarantine/{id}.eml"))).expect("the held file")
    };
    // The relay holds what it would have sent, its Received: included; the milter holds what
    // Postfix would have delivered below its own.
    let (a, b) = (strip_received(&held(&r)), held(&m));
    assert!(
        gw.outbox_messages()
            .iter()
            .all(|o| mid_of(&o.bytes) != "<cl@example-academy.sch.uk>"),
        "the relay delivered the held class list"
    );
    assert!(
        sink.accepted()
            .iter()
            .all(|d| mid_of(&d.data) != "<cl@example-academy.sch.uk>"),
        "Postfix delivered the held class list:\n{}",
        postfix.maillog()
    );
    assert_same_bytes("the class list, relay against milter", &a, &b);
}
