//! Who may send through the relay, and what it refuses on the wire (issue 15, items 7 and 12):
//! `[relay] allowed_senders` at MAIL, the Microsoft 365 tenant pin after DATA, UTF-8 addresses
//! without SMTPUTF8, NUL bytes in the message, and quoted local parts passed on intact.

mod common;

use std::time::Duration;

use common::*;

const STAFF: &str = "t.baker@example-academy.sch.uk";
const PUPIL: &str = "j.smith@pupils.example-academy.sch.uk";
const OUTSIDER: &str = "someone@tenant.example";
const PARENT: &str = "parent@example.org";

const OUR_TENANT: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
const OTHER_TENANT: &str = "9b2d7c1a-0000-4e11-8a55-123456789abc";

fn message(from: &str, mid: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {PARENT}\r\nSubject: Trip letter\r\nMessage-ID: <{mid}>\r\n\
         {extra_headers}Date: Mon, 03 Mar 2025 10:00:00 +0000\r\n\r\nDear parent,\r\n"
    )
    .into_bytes()
}

fn record(gw: &Gateway, mid: &str) -> Option<AuditRow> {
    gw.message_records()
        .into_iter()
        .find(|r| r.field("message_id").as_deref() == Some(mid))
}

#[test]
fn an_outside_sender_gets_550_and_the_schools_own_domains_pass() {
    let gw = Gateway::start(relay_only);
    let mut c = Client::ready(gw.port);
    let r = c.cmd(&format!("MAIL FROM:<{OUTSIDER}>")).unwrap();
    assert_eq!(r.code, 550, "{r}");
    assert!(r.text().starts_with("5.7.1 "), "{r}");
    assert!(r.text().contains("relay.allowed_senders"), "{r}");
    // Exact domains: a subdomain of the school's domain is not the school's.
    let r = c.cmd("MAIL FROM:<x@sub.example-academy.sch.uk>").unwrap();
    assert_eq!(r.code, 550, "{r}");
    for allowed in [
        STAFF,
        PUPIL,
        "T.Baker@EXAMPLE-ACADEMY.SCH.UK",
        "", // the null sender (bounces)
    ] {
        let r = c.cmd(&format!("MAIL FROM:<{allowed}>")).unwrap();
        assert_eq!(r.code, 250, "MAIL FROM:<{allowed}>: {r}");
        assert_eq!(c.cmd("RSET").unwrap().code, 250);
    }
    // End to end: the outsider's message goes nowhere, the staff member's is delivered.
    let t = c
        .send(OUTSIDER, "", &[PARENT], &message(OUTSIDER, "out@test", ""))
        .unwrap();
    assert_eq!((t.stage, t.reply.code), (Stage::Mail, 550), "{}", t.reply);
    let t = c
        .send(STAFF, "", &[PARENT], &message(STAFF, "in@test", ""))
        .unwrap();
    assert!(t.accepted(), "{:?} {}", t.stage, t.reply);
    c.quit();
    let out = gw.outbox_messages();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].mail_from(), STAFF);
    assert!(
        gw.wait_for(Duration::from_secs(30), || gw
            .log()
            .contains("not in relay.allowed_senders")),
        "the refusal is logged"
    );
}

#[test]
fn allowed_senders_star_lets_inbound_mail_through_and_a_list_replaces_the_default() {
    let gw = Gateway::start(|cfg| {
        relay_only(cfg);
        set(
            cfg,
            "relay.allowed_senders",
            toml::Value::Array(vec!["*".into()]),
        );
    });
    let mut c = Client::ready(gw.port);
    let t = c
        .send(OUTSIDER, "", &[STAFF], &message(OUTSIDER, "star@test", ""))
        .unwrap();
    assert!(t.accepted(), "{:?} {}", t.stage, t.reply);
    c.quit();
    drop(gw);

    let gw = Gateway::start(|cfg| {
        relay_only(cfg);
        set(
            cfg,
            "relay.allowed_senders",
            toml::Value::Array(vec!["*.Example-Academy.sch.uk".into()]),
        );
    });
    let mut c = Client::ready(gw.port);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{PUPIL}>")).unwrap().code, 250);
    assert_eq!(c.cmd("RSET").unwrap().code, 250);
    let r = c.cmd(&format!("MAIL FROM:<{STAFF}>")).unwrap();
    assert_eq!(r.code, 550, "the list replaces the default: {r}");
}

#[test]
fn the_m365_tenant_pin_refuses_other_tenants_after_data_and_audits_it() {
    let gw = Gateway::start(|cfg| {
        relay_only(cfg);
        set(cfg, "relay.m365_tenant_id", OUR_TENANT);
    });
    let mut c = Client::ready(gw.port);
    let header = |id: &str| format!("X-MS-Exchange-CrossTenant-Id: {id}\r\n");
    let cases = [
        ("none@test", String::new(), 550),
        ("other@test", header(OTHER_TENANT), 550),
        (
            "both@test",
            format!("{}{}", header(OUR_TENANT), header(OTHER_TENANT)),
            550,
        ),
        ("ours@test", header(&OUR_TENANT.to_uppercase()), 250),
    ];
    for (mid, headers, code) in &cases {
        let t = c
            .send(STAFF, "", &[PARENT], &message(STAFF, mid, headers))
            .unwrap();
        assert_eq!(t.stage, Stage::Dot, "{mid}: checked after DATA");
        assert_eq!(t.reply.code, *code, "{mid}: {}", t.reply);
        if *code == 550 {
            assert!(t.reply.text().starts_with("5.7.1 "), "{mid}: {}", t.reply);
            assert!(
                t.reply.text().contains("X-MS-Exchange-CrossTenant-Id"),
                "{mid}: the reply says why: {}",
                t.reply
            );
        }
    }
    c.quit();
    let out = gw.outbox_messages();
    assert_eq!(out.len(), 1, "only the school's tenant's message left");
    assert_eq!(
        header_value(&out[0].bytes, "Message-ID").as_deref(),
        Some("<ours@test>")
    );
    for (mid, _, code) in &cases {
        let rec = record(&gw, mid).unwrap_or_else(|| panic!("{mid}: no audit record"));
        let outcome = rec.field("outcome");
        if *code == 550 {
            assert_eq!(outcome.as_deref(), Some("rejected"), "{mid}");
            let detail = rec.field("detail").unwrap_or_default();
            assert!(detail.contains("m365_tenant_id"), "{mid}: {detail}");
        } else {
            assert_eq!(outcome.as_deref(), Some("delivered"), "{mid}");
        }
    }
    let other = record(&gw, "other@test").and_then(|r| r.field("detail"));
    assert!(
        other.is_some_and(|d| d.contains(OTHER_TENANT)),
        "the audit record names the other tenant"
    );
    gw.assert_audit_verifies("after the tenant refusals");
}

#[test]
fn a_nul_byte_in_data_is_refused_with_554_and_audited() {
    let gw = Gateway::start(relay_only);
    let mut c = Client::ready(gw.port);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{STAFF}>")).unwrap().code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{PARENT}>")).unwrap().code, 250);
    assert_eq!(c.cmd("DATA").unwrap().code, 354);
    c.write(b"Subject: nul\r\nMessage-ID: <nul@test>\r\n\r\nbefore \x00 after\r\n.\r\n")
        .unwrap();
    let r = c.read_reply().unwrap();
    assert_eq!(r.code, 554, "{r}");
    assert!(r.text().starts_with("5.6.0 "), "{r}");
    // The session goes on.
    let t = c
        .send(STAFF, "", &[PARENT], &message(STAFF, "clean@test", ""))
        .unwrap();
    assert!(t.accepted(), "{:?} {}", t.stage, t.reply);
    c.quit();
    let out = gw.outbox_messages();
    assert_eq!(out.len(), 1, "only the clean message was delivered");
    assert!(!out[0].bytes.contains(&0), "no NUL left the gateway");
    let rec = record(&gw, "nul@test").expect("the refused message is audited");
    assert_eq!(rec.field("outcome").as_deref(), Some("rejected"));
    assert!(
        rec.field("reply")
            .is_some_and(|r| r.starts_with("554 5.6.0")),
        "{:?}",
        rec.field("reply")
    );
}

#[test]
fn a_utf8_address_needs_smtputf8() {
    let gw = Gateway::start(|cfg| {
        relay_only(cfg);
        set(
            cfg,
            "relay.allowed_senders",
            toml::Value::Array(vec!["*".into()]),
        );
    });
    let mut c = Client::ready(gw.port);
    let r = c.cmd("MAIL FROM:<jürgen@exämple.org>").unwrap();
    assert_eq!(r.code, 553, "{r}");
    assert!(r.text().contains("SMTPUTF8"), "{r}");
    assert_eq!(c.cmd(&format!("MAIL FROM:<{STAFF}>")).unwrap().code, 250);
    let r = c.cmd("RCPT TO:<jürgen.groß@exämple.org>").unwrap();
    assert_eq!(r.code, 553, "{r}");
    assert_eq!(c.cmd("RSET").unwrap().code, 250);
    assert_eq!(
        c.cmd("MAIL FROM:<jürgen@exämple.org> SMTPUTF8")
            .unwrap()
            .code,
        250
    );
    assert_eq!(
        c.cmd("RCPT TO:<jürgen.groß@exämple.org>").unwrap().code,
        250
    );
}

#[test]
fn a_quoted_local_part_is_passed_on_intact_or_refused_at_rcpt() {
    let sink = Sink::start(SinkBehaviour::accept());
    let gw = Gateway::start(|cfg| {
        relay_only(cfg);
        set(cfg, "relay.next_hop", sink.url());
    });
    let mut c = Client::ready(gw.port);
    let quoted = [r#""a b"@example.org"#, r#""odd\"one"@example.org"#];
    let sender = r#""head teacher"@example-academy.sch.uk"#;
    let t = c
        .send(sender, "", &quoted, &message(STAFF, "quoted@test", ""))
        .unwrap();
    assert!(t.accepted(), "{:?} {}", t.stage, t.reply);
    // One the next hop's client could not write is refused at RCPT, never after DATA.
    assert_eq!(c.cmd(&format!("MAIL FROM:<{STAFF}>")).unwrap().code, 250);
    let r = c.cmd("RCPT TO:<\"tab\x01here\"@example.org>").unwrap();
    assert_eq!(r.code, 553, "{r}");
    assert!(r.text().starts_with("5.1.3 "), "{r}");
    c.quit();
    let got = sink.accepted();
    assert_eq!(got.len(), 1, "{}", sink.transcript());
    assert_eq!(got[0].mail_from, sender);
    assert_eq!(got[0].rcpt_to, quoted);
}
