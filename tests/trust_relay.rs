//! A multi-academy trust on one gateway (issue 19): `[[schools]]` with two schools, each with
//! its own directory, disclaimer and DSL, through the real relay on loopback. Each school's mail
//! carries its own disclaimer; its headteacher is exempt from it (the exempt role is the
//! trust-wide default); a flag at one school alerts that school's DSL only; the audit record
//! and `check --json` name the school; `policy check` prints each school and refuses a domain
//! claimed by two schools, naming both.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::smtp::Client;
use common::{Gateway, OutboxMessage, set, unset};

const ASHDOWN: &str = "Ashdown Park School";
const BRAMBLE: &str = "Bramblefield Primary";
const ASHDOWN_TEXT: &str = "Ashdown Park School is an academy of the Downland Trust.";
const BRAMBLE_TEXT: &str = "Bramblefield Primary is an academy of the Downland Trust.";
const ASHDOWN_DSL: &str = "dsl@ashdownpark.sch.uk";
const BRAMBLE_DSL: &str = "dsl@bramblefield.sch.uk";
const TRUST_DSL: &str = "safeguarding@downland-trust.org.uk";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/trust")
        .join(name)
}

fn school(name: &str, domain: &str, csv: &str, text: &str, dsl: &str) -> toml::Value {
    let table = format!(
        "name = \"{name}\"\ndomains = [\"{domain}\"]\npupil_domains = [\"pupils.{domain}\"]\n\
         directory = \"{}\"\ntimezone = \"Europe/London\"\nstaff_roles = [\"dsl\"]\n\
         [disclaimer]\ntext = \"{text}\"\nhtml = \"<p>{text}</p>\"\n\
         [safeguarding]\ndsl = [\"{dsl}\"]\nalert_window = \"0s\"\n",
        fixture(csv).display()
    );
    toml::Value::Table(toml::from_str(&table).expect("a school's table parses"))
}

/// The example config made a trust: no `[school]`, two `[[schools]]`; the top-level
/// `[disclaimer]` (exempt_roles = ["headteacher"]) and `[safeguarding]` are the defaults.
fn trust(cfg: &mut toml::Table) {
    unset(cfg, "school");
    set(
        cfg,
        "safeguarding.dsl",
        toml::Value::Array(vec![TRUST_DSL.into()]),
    );
    cfg.insert(
        "schools".into(),
        toml::Value::Array(vec![
            school(
                ASHDOWN,
                "ashdownpark.sch.uk",
                "ashdown.csv",
                ASHDOWN_TEXT,
                ASHDOWN_DSL,
            ),
            school(
                BRAMBLE,
                "bramblefield.sch.uk",
                "bramblefield.csv",
                BRAMBLE_TEXT,
                BRAMBLE_DSL,
            ),
        ]),
    );
}

fn send_fixture(c: &mut Client, file: &str, from: &str, to: &str) {
    let bytes = std::fs::read(fixture(file)).expect("fixture (scripts/make-trust-fixtures)");
    let t = c.send(from, "", &[to], &bytes).expect("the relay answers");
    assert!(t.accepted(), "{file}: {:?}", t.reply);
}

fn delivered_with_subject(gw: &Gateway, subject: &str) -> OutboxMessage {
    gw.outbox_messages()
        .into_iter()
        .find(|m| String::from_utf8_lossy(&m.bytes).contains(&format!("Subject: {subject}")))
        .unwrap_or_else(|| panic!("{subject} was not delivered:\n{}", gw.log_tail(3000)))
}

fn school_of_record(gw: &Gateway, subject: &str) -> Option<String> {
    gw.message_records()
        .into_iter()
        .find(|r| r.message()["subject"].as_str() == Some(subject))
        .unwrap_or_else(|| panic!("no audit record for {subject}"))
        .message()["school"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn each_school_s_mail_carries_its_own_disclaimer_and_its_head_is_exempt() {
    let gw = Gateway::start(trust);
    let mut c = Client::ready(gw.port);
    let parent = "parent@example.com";
    send_fixture(
        &mut c,
        "ashdown-staff-to-parent.eml",
        "r.ellis@ashdownpark.sch.uk",
        parent,
    );
    send_fixture(
        &mut c,
        "bramble-staff-to-parent.eml",
        "s.hale@bramblefield.sch.uk",
        parent,
    );
    send_fixture(
        &mut c,
        "ashdown-head-to-parent.eml",
        "head@ashdownpark.sch.uk",
        parent,
    );

    let ashdown =
        String::from_utf8_lossy(&delivered_with_subject(&gw, "Trip letter").bytes).into_owned();
    assert!(
        ashdown.contains(ASHDOWN_TEXT),
        "Ashdown's disclaimer:\n{ashdown}"
    );
    assert!(
        !ashdown.contains(BRAMBLE_TEXT),
        "not Bramblefield's:\n{ashdown}"
    );
    let bramble =
        String::from_utf8_lossy(&delivered_with_subject(&gw, "Sports day").bytes).into_owned();
    assert!(
        bramble.contains(BRAMBLE_TEXT),
        "Bramblefield's disclaimer:\n{bramble}"
    );
    assert!(!bramble.contains(ASHDOWN_TEXT), "not Ashdown's:\n{bramble}");
    let head =
        String::from_utf8_lossy(&delivered_with_subject(&gw, "From the head").bytes).into_owned();
    assert!(
        !head.contains(ASHDOWN_TEXT) && !head.contains("Downland Trust"),
        "Ashdown's headteacher is exempt from Ashdown's disclaimer:\n{head}"
    );

    assert_eq!(
        school_of_record(&gw, "Trip letter").as_deref(),
        Some(ASHDOWN)
    );
    assert_eq!(
        school_of_record(&gw, "Sports day").as_deref(),
        Some(BRAMBLE)
    );
    let head_record = gw
        .message_records()
        .into_iter()
        .find(|r| r.message()["subject"].as_str() == Some("From the head"))
        .expect("the head's record");
    assert_eq!(head_record.message()["disclaimer"].as_str(), Some("exempt"));
    gw.assert_audit_verifies("after the trust's mail");
}

#[test]
fn a_flag_at_one_school_alerts_only_that_school_s_dsl() {
    let gw = Gateway::start(trust);
    let mut c = Client::ready(gw.port);
    send_fixture(
        &mut c,
        "bramble-staff-to-pupil-personal.eml",
        "s.hale@bramblefield.sch.uk",
        "chloe.dunn2011@gmail.com",
    );
    let alerts = || {
        gw.outbox_messages()
            .into_iter()
            .filter(|m| String::from_utf8_lossy(&m.bytes).contains("Subject: Safeguarding alert"))
            .collect::<Vec<_>>()
    };
    assert!(
        gw.wait_for(Duration::from_secs(20), || !alerts().is_empty()),
        "no alert:\n{}",
        gw.log_tail(3000)
    );
    // Let a wrong second alert show itself if there were one.
    std::thread::sleep(Duration::from_secs(2));
    let sent = alerts();
    assert_eq!(sent.len(), 1, "one alert");
    assert_eq!(
        sent[0].rcpt_to(),
        vec![BRAMBLE_DSL.to_string()],
        "Bramblefield's DSL only"
    );
    let text = String::from_utf8_lossy(&sent[0].bytes).into_owned();
    assert!(
        text.contains(BRAMBLE),
        "the alert names the school:\n{text}"
    );
    assert!(text.contains("pupil-personal-address"), "{text}");
    assert_eq!(
        school_of_record(&gw, "Homework").as_deref(),
        Some(BRAMBLE),
        "the record says which school"
    );
}

#[test]
fn mail_from_no_school_s_domain_gets_the_trust_wide_defaults() {
    let gw = Gateway::start(|cfg| {
        trust(cfg);
        // The trust's central office sends from its own domain, listed for the trust only.
        set(cfg, "school.name", "Downland Trust");
        set(
            cfg,
            "school.domains",
            toml::Value::Array(vec!["downland-trust.org.uk".into()]),
        );
        set(cfg, "disclaimer.text", "Sent by the Downland Trust.");
    });
    let mut c = Client::ready(gw.port);
    let from = "office@downland-trust.org.uk";
    let m = common::plain_message(from, "supplier@example.com", "Invoice", "inv@test", "Paid.");
    assert!(
        c.send(from, "", &["supplier@example.com"], &m)
            .unwrap()
            .accepted()
    );
    let out = String::from_utf8_lossy(&delivered_with_subject(&gw, "Invoice").bytes).into_owned();
    assert!(out.contains("Sent by the Downland Trust."), "{out}");
    assert!(
        !out.contains(ASHDOWN_TEXT) && !out.contains(BRAMBLE_TEXT),
        "{out}"
    );
    assert_eq!(school_of_record(&gw, "Invoice"), None, "no school");
    // A domain no school and not the trust lists is refused, as today.
    let t = c
        .send("x@elsewhere.example", "", &["supplier@example.com"], &m)
        .unwrap();
    assert!(!t.accepted(), "{:?}", t.reply);
}

#[test]
fn check_json_names_the_school_and_policy_check_summarises_each_school() {
    let gw = Gateway::start(trust);
    let out = gw.cli_ok(&[
        "check",
        "--json",
        fixture("bramble-staff-to-parent.eml").to_str().unwrap(),
    ]);
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect("check --json is JSON");
    assert_eq!(json["school"].as_str(), Some(BRAMBLE), "{out}");
    assert_eq!(json["disclaimer"].as_str(), Some("appended"), "{out}");

    let summary = gw.cli_ok(&["policy", "check"]);
    for needle in [
        ASHDOWN,
        BRAMBLE,
        "ashdownpark.sch.uk",
        "pupils.bramblefield.sch.uk",
        "head@ashdownpark.sch.uk",
        ASHDOWN_DSL,
        BRAMBLE_DSL,
    ] {
        assert!(summary.contains(needle), "{needle} missing:\n{summary}");
    }
}

#[test]
fn policy_check_refuses_a_domain_claimed_by_two_schools_naming_both() {
    let gw = Gateway::start(trust);
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let mut cfg: toml::Table = toml::from_str(&text).unwrap();
    let schools = cfg["schools"].as_array_mut().unwrap();
    schools[1].as_table_mut().unwrap().insert(
        "pupil_domains".into(),
        toml::Value::Array(vec!["ashdownpark.sch.uk".into()]),
    );
    let bad = gw.dir.path().join("duplicate.toml");
    std::fs::write(&bad, toml::to_string(&cfg).unwrap()).unwrap();
    let out = common::schoolgate_cli(&bad, &["policy", "check"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "a domain claimed twice is refused:\n{said}"
    );
    for needle in ["ashdownpark.sch.uk", ASHDOWN, BRAMBLE] {
        assert!(
            said.contains(needle),
            "{needle} missing from the error:\n{said}"
        );
    }

    // Two schools with one name are refused too.
    let mut cfg: toml::Table = toml::from_str(&text).unwrap();
    let schools = cfg["schools"].as_array_mut().unwrap();
    schools[1]
        .as_table_mut()
        .unwrap()
        .insert("name".into(), ASHDOWN.into());
    std::fs::write(&bad, toml::to_string(&cfg).unwrap()).unwrap();
    let out = common::schoolgate_cli(&bad, &["policy", "check"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && said.contains(ASHDOWN), "{said}");
}

#[test]
fn a_dsl_account_is_restricted_to_the_schools_named_and_an_unknown_school_is_refused() {
    let gw = Gateway::start(trust);
    let add =
        |args: &[&str]| common::http::cli_with_stdin(&gw.config_path, args, "a long password 1\n");
    let out = add(&[
        "user", "add", "d.okafor", "--role", "dsl", "--school", ASHDOWN,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = add(&["user", "add", "trust.dsl", "--role", "dsl"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = add(&[
        "user", "add", "both", "--role", "dsl", "--school", ASHDOWN, "--school", BRAMBLE,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let list = gw.cli_ok(&["user", "list"]);
    let line = |name: &str| {
        list.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from user list:\n{list}"))
            .to_string()
    };
    assert!(
        line("d.okafor").contains(&format!("schools: {ASHDOWN}")),
        "{list}"
    );
    assert!(!line("d.okafor").contains(BRAMBLE), "{list}");
    assert!(
        line("both").contains(ASHDOWN) && line("both").contains(BRAMBLE),
        "{list}"
    );
    assert!(!line("trust.dsl").contains("schools"), "trust-wide: {list}");

    let out = add(&[
        "user",
        "add",
        "someone",
        "--role",
        "dsl",
        "--school",
        "Chalk Hill",
    ]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "an unknown school is refused");
    for needle in ["Chalk Hill", ASHDOWN, BRAMBLE] {
        assert!(said.contains(needle), "{needle} missing:\n{said}");
    }
    assert!(
        !gw.cli_ok(&["user", "list"]).contains("someone"),
        "no account made for an unknown school"
    );
}

#[test]
fn a_school_s_dsl_sees_only_that_school_s_cases_and_a_trust_wide_dsl_sees_all() {
    let gw = Gateway::start(trust);
    let mut c = Client::ready(gw.port);
    send_fixture(
        &mut c,
        "bramble-staff-to-pupil-personal.eml",
        "s.hale@bramblefield.sch.uk",
        "chloe.dunn2011@gmail.com",
    );
    let from = "r.ellis@ashdownpark.sch.uk";
    let to = "leo.grant2012@gmail.com";
    let m = common::plain_message(from, to, "Revision timetable", "rev@test", "Attached.");
    assert!(c.send(from, "", &[to], &m).unwrap().accepted());

    let password = "a long password 1";
    let add = |args: &[&str]| {
        let out = common::http::cli_with_stdin(&gw.config_path, args, &format!("{password}\n"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    add(&[
        "user",
        "add",
        "ashdown.dsl",
        "--role",
        "dsl",
        "--school",
        ASHDOWN,
    ]);
    add(&["user", "add", "trust.dsl", "--role", "dsl"]);

    let mut ashdown = common::http::Browser::logged_in(gw.web_port(), "ashdown.dsl", password);
    let page = ashdown.get("/flags").text();
    assert!(
        page.contains("Revision timetable"),
        "Ashdown's own case:\n{page}"
    );
    assert!(
        !page.contains("Homework"),
        "not Bramblefield's case:\n{page}"
    );
    let bramble_seq = gw
        .message_records()
        .into_iter()
        .find(|r| r.message()["subject"].as_str() == Some("Homework"))
        .expect("Bramblefield's record")
        .seq;
    assert_eq!(
        ashdown.get(&format!("/flags/{bramble_seq}")).status,
        404,
        "nor by its number"
    );

    // The audit search shows the school's messages only, and the trust's export is refused.
    let audit = ashdown.get("/audit").text();
    assert!(audit.contains("Revision timetable"), "{audit}");
    assert!(
        !audit.contains("Homework"),
        "not Bramblefield's message:\n{audit}"
    );
    assert_eq!(ashdown.get("/audit/export?format=csv").status, 403);

    // The command line applies the same restriction.
    let listed = gw.cli_ok(&["flags", "list", "--as", "ashdown.dsl", "--json"]);
    let cases: serde_json::Value = serde_json::from_str(&listed).expect("flags list --json");
    let schools: Vec<&str> = cases
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| c["school"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(schools, vec![ASHDOWN], "{listed}");

    let mut trust_dsl = common::http::Browser::logged_in(gw.web_port(), "trust.dsl", password);
    let page = trust_dsl.get("/flags").text();
    assert!(
        page.contains("Revision timetable") && page.contains("Homework"),
        "a trust-wide DSL sees every school's cases:\n{page}"
    );
    assert!(
        page.contains(ASHDOWN) && page.contains(BRAMBLE),
        "with the school of each:\n{page}"
    );
    let audit = trust_dsl.get("/audit").text();
    assert!(
        audit.contains("Revision timetable") && audit.contains("Homework"),
        "{audit}"
    );
}

#[test]
fn a_school_s_dsl_sees_and_releases_only_that_school_s_holds() {
    let gw = Gateway::start(|cfg| {
        trust(cfg);
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
    });
    let mut c = Client::ready(gw.port);
    send_fixture(
        &mut c,
        "bramble-staff-to-pupil-personal.eml",
        "s.hale@bramblefield.sch.uk",
        "chloe.dunn2011@gmail.com",
    );
    let from = "r.ellis@ashdownpark.sch.uk";
    let to = "leo.grant2012@gmail.com";
    let m = common::plain_message(from, to, "Revision timetable", "rev@test", "Attached.");
    assert!(c.send(from, "", &[to], &m).unwrap().accepted());
    let held = |subject: &str| {
        gw.message_records()
            .into_iter()
            .find(|r| r.message()["subject"].as_str() == Some(subject))
            .and_then(|r| r.message()["quarantine_id"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("{subject} was not held:\n{}", gw.log_tail(3000)))
    };
    let (ashdown_id, bramble_id) = (held("Revision timetable"), held("Homework"));

    let password = "a long password 1";
    for args in [
        &[
            "user",
            "add",
            "ashdown.dsl",
            "--role",
            "dsl",
            "--school",
            ASHDOWN,
        ][..],
        &["user", "add", "trust.dsl", "--role", "dsl"][..],
    ] {
        let out = common::http::cli_with_stdin(&gw.config_path, args, &format!("{password}\n"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut ashdown = common::http::Browser::logged_in(gw.web_port(), "ashdown.dsl", password);
    let list = ashdown.get("/quarantine").text();
    assert!(list.contains(&ashdown_id), "Ashdown's own hold:\n{list}");
    assert!(!list.contains(&bramble_id), "not Bramblefield's:\n{list}");
    assert_eq!(
        ashdown.get(&format!("/quarantine/{bramble_id}")).status,
        404
    );
    assert_eq!(
        ashdown
            .get(&format!("/quarantine/{bramble_id}/download"))
            .status,
        404
    );
    let csrf = ashdown
        .get(&format!("/quarantine/{ashdown_id}"))
        .csrf()
        .expect("the page has a form");
    let tried = ashdown.post(
        &format!("/quarantine/{bramble_id}/release"),
        &[
            ("csrf", &csrf),
            ("reason", "checked with the pupil"),
            ("confirm", "yes"),
        ],
    );
    assert!(
        !gw.outbox_messages().iter().any(|m| m
            .rcpt_to()
            .contains(&"chloe.dunn2011@gmail.com".to_string())),
        "another school's hold is not released ({}):\n{}",
        tried.status,
        tried.text()
    );

    let mut trust_dsl = common::http::Browser::logged_in(gw.web_port(), "trust.dsl", password);
    let list = trust_dsl.get("/quarantine").text();
    assert!(
        list.contains(&ashdown_id) && list.contains(&bramble_id),
        "a trust-wide DSL sees every school's holds, Bramblefield's still held:\n{list}"
    );
}
