//! A trust's weekly report (issue 19): each school's DSLs get a report about their own school
//! only, the trust-wide DSLs a summary with each school's counts side by side (and mail from no
//! school); `schoolgate report --as` reports only the account's schools, `--school` picks one.
//! Mailed once: two gateways on one PostgreSQL trail send each copy once between them.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::pg::PgCluster;
use common::smtp::Client;
use common::{Gateway, OutboxMessage, set, unset};

const ASHDOWN: &str = "Ashdown Park School";
const BRAMBLE: &str = "Bramblefield Primary";
const ASHDOWN_DSL: &str = "dsl@ashdownpark.sch.uk";
const BRAMBLE_DSL: &str = "dsl@bramblefield.sch.uk";
const TRUST_DSL: &str = "safeguarding@downland-trust.org.uk";
/// Ashdown's teacher, who writes to an Ashdown pupil's personal address (flagged).
const ASHDOWN_TEACHER: &str = "r.ellis@ashdownpark.sch.uk";
const ASHDOWN_PUPIL: &str = "leo.grant2012@gmail.com";
/// Bramblefield's teacher, who writes to a Bramblefield pupil's personal address (flagged).
const BRAMBLE_TEACHER: &str = "s.hale@bramblefield.sch.uk";
const BRAMBLE_PUPIL: &str = "chloe.dunn2011@gmail.com";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/trust")
        .join(name)
}

fn school(name: &str, domain: &str, csv: &str, dsl: &str) -> toml::Value {
    let table = format!(
        "name = \"{name}\"\ndomains = [\"{domain}\"]\npupil_domains = [\"pupils.{domain}\"]\n\
         directory = \"{}\"\ntimezone = \"Europe/London\"\nstaff_roles = [\"dsl\"]\n\
         [safeguarding]\ndsl = [\"{dsl}\"]\nalert_window = \"0s\"\n",
        fixture(csv).display()
    );
    toml::Value::Table(toml::from_str(&table).expect("a school's table parses"))
}

/// The example config made a trust of two schools, the trust's own DSL at the top level.
fn trust(cfg: &mut toml::Table) {
    unset(cfg, "school");
    set(
        cfg,
        "safeguarding.dsl",
        toml::Value::Array(vec![TRUST_DSL.into()]),
    );
    set(cfg, "safeguarding.alert_window", "0s");
    cfg.insert(
        "schools".into(),
        toml::Value::Array(vec![
            school(ASHDOWN, "ashdownpark.sch.uk", "ashdown.csv", ASHDOWN_DSL),
            school(
                BRAMBLE,
                "bramblefield.sch.uk",
                "bramblefield.csv",
                BRAMBLE_DSL,
            ),
        ]),
    );
}

/// One flagged message from each school's teacher, recorded (`flagged_records` counts them).
fn flag_one_at_each_school(gw: &Gateway, flagged_records: impl Fn() -> usize) {
    let mut c = Client::ready(gw.port);
    for (from, to, subject) in [
        (ASHDOWN_TEACHER, ASHDOWN_PUPIL, "Ashdown revision"),
        (BRAMBLE_TEACHER, BRAMBLE_PUPIL, "Bramble reading"),
    ] {
        let m = common::plain_message(from, to, subject, &format!("{from}@test"), "Private.");
        let t = c.send(from, "", &[to], &m).expect("the relay answers");
        assert!(t.accepted(), "{subject}: {:?}", t.reply);
    }
    assert!(
        gw.wait_for(Duration::from_secs(20), || flagged_records() == 2),
        "two flagged message records expected:\n{}",
        gw.log_tail(3000)
    );
}

fn add_dsl(gw: &Gateway, name: &str, schools: &[&str]) {
    let mut args = vec!["user", "add", name, "--role", "dsl"];
    for s in schools {
        args.extend(["--school", s]);
    }
    let out = common::http::cli_with_stdin(&gw.config_path, &args, "a long password 1\n");
    assert!(
        out.status.success(),
        "user add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn refused(gw: &Gateway, args: &[&str], why: &str) {
    let out = gw.cli(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(why),
        "{args:?} should be refused with {why:?}: {err}"
    );
}

#[test]
fn report_as_a_school_s_dsl_covers_that_school_only_and_a_trust_wide_account_gets_the_summary() {
    let gw = Gateway::start(trust);
    flag_one_at_each_school(&gw, || {
        gw.message_records()
            .iter()
            .filter(|r| {
                r.message()["flags"]
                    .as_array()
                    .is_some_and(|f| !f.is_empty())
            })
            .count()
    });
    add_dsl(&gw, "d.okafor", &[ASHDOWN]);
    add_dsl(&gw, "both", &[ASHDOWN, BRAMBLE]);
    add_dsl(&gw, "trust.dsl", &[]);

    // Ashdown's DSL: Ashdown's flag, never Bramblefield's.
    let ashdown = gw.cli_ok(&["report", "--format", "text", "--as", "d.okafor"]);
    assert!(
        ashdown.contains(ASHDOWN) && ashdown.contains(ASHDOWN_TEACHER),
        "{ashdown}"
    );
    assert!(
        ashdown.contains("Cases still unreviewed: 1"),
        "one case, Ashdown's:\n{ashdown}"
    );
    assert!(
        !ashdown.contains(BRAMBLE_TEACHER) && !ashdown.contains("Bramble reading"),
        "another school's flagged sender is not in Ashdown's report:\n{ashdown}"
    );
    refused(
        &gw,
        &[
            "report", "--format", "text", "--as", "d.okafor", "--school", BRAMBLE,
        ],
        "restricted to",
    );
    // An account of two schools says which.
    refused(
        &gw,
        &["report", "--format", "text", "--as", "both"],
        "--school",
    );
    let bramble = gw.cli_ok(&[
        "report", "--format", "text", "--as", "both", "--school", BRAMBLE,
    ]);
    assert!(
        bramble.contains(BRAMBLE_TEACHER) && !bramble.contains(ASHDOWN_TEACHER),
        "{bramble}"
    );

    // The trust-wide account: the summary, counts side by side, nobody's mail named.
    let summary = gw.cli_ok(&["report", "--format", "text", "--as", "trust.dsl"]);
    assert!(summary.contains("trust summary"), "{summary}");
    for school in [ASHDOWN, BRAMBLE, "mail from no school"] {
        let at = summary
            .find(school)
            .unwrap_or_else(|| panic!("{school} missing from the summary:\n{summary}"));
        let flagged = summary[at..]
            .lines()
            .find_map(|l| l.trim().strip_prefix("flagged: "))
            .unwrap_or_else(|| panic!("no flagged count for {school}:\n{summary}"));
        let want = if school.starts_with("mail from") {
            "0"
        } else {
            "1"
        };
        assert_eq!(flagged, want, "{school}:\n{summary}");
    }
    assert!(
        !summary.contains(ASHDOWN_TEACHER) && !summary.contains(BRAMBLE_TEACHER),
        "{summary}"
    );
    let csv = gw.cli_ok(&["report", "--format", "csv", "--as", "trust.dsl"]);
    assert!(
        csv.lines()
            .any(|l| l.starts_with(&format!("{BRAMBLE},1,1,"))),
        "{csv}"
    );
    // And it may pick one school.
    let picked = gw.cli_ok(&[
        "report",
        "--format",
        "text",
        "--as",
        "trust.dsl",
        "--school",
        ASHDOWN,
    ]);
    assert!(
        picked.contains(ASHDOWN_TEACHER) && !picked.contains(BRAMBLE_TEACHER),
        "{picked}"
    );
    refused(
        &gw,
        &["report", "--format", "text", "--school", "Nowhere High"],
        "no such school",
    );

    // Every report made is audited, saying what it covered.
    let audited: Vec<String> = gw
        .audit_records()
        .into_iter()
        .filter_map(|r| r.record["action"]["detail"].as_str().map(str::to_string))
        .filter(|d| d.starts_with("report by "))
        .collect();
    assert!(
        audited.iter().any(|d| d.contains("trust summary"))
            && audited
                .iter()
                .any(|d| d.contains(&format!("school {ASHDOWN}"))),
        "{audited:?}"
    );
}

/// The decoded Subject.
fn subject(m: &OutboxMessage) -> String {
    mail_parser::MessageParser::new()
        .parse(&m.bytes)
        .and_then(|p| p.subject().map(str::to_string))
        .unwrap_or_default()
}

fn text_of(m: &OutboxMessage) -> String {
    m.parts()
        .into_iter()
        .find(|(ct, _)| ct == "text/plain")
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no text part"))
}

fn reports_to(gws: &[&Gateway], whom: &str) -> Vec<OutboxMessage> {
    gws.iter()
        .flat_map(|g| g.outbox_messages())
        .filter(|m| m.rcpt_to().iter().any(|r| r == whom))
        .filter(|m| subject(m).contains("Weekly safeguarding report"))
        .collect()
}

/// A `weekly_report` slot ("Mon 07:05", Europe/London): the first whole minute at least 40 s
/// ahead, so both nodes are up and the mail recorded before it.
fn weekly_slot_soon() -> String {
    let tz = jiff::tz::TimeZone::get("Europe/London").expect("tzdata");
    let slot = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(100))
        .to_zoned(tz)
        .with()
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .expect("a whole minute");
    slot.strftime("%a %H:%M").to_string()
}

#[test]
fn two_gateways_on_one_postgresql_mail_each_school_its_own_report_and_the_trust_its_summary_once() {
    let pg = PgCluster::start_new();
    let url = pg.url();
    let spec = weekly_slot_soon();
    let start = || {
        Gateway::start(|cfg| {
            trust(cfg);
            set(cfg, "storage.database", url.as_str());
            set(cfg, "safeguarding.weekly_report", spec.as_str());
        })
    };
    let (a, b) = (start(), start());
    let count = |sql: &str| pg.psql(sql).trim().parse::<usize>().unwrap_or(usize::MAX);
    flag_one_at_each_school(&a, || {
        count(
            "SELECT count(*) FROM audit WHERE kind = 'message' AND record LIKE '%pupil-personal-address%'",
        )
    });

    let nodes = [&a, &b];
    let all_three = || {
        [ASHDOWN_DSL, BRAMBLE_DSL, TRUST_DSL]
            .iter()
            .all(|d| !reports_to(&nodes, d).is_empty())
    };
    assert!(
        a.wait_for(Duration::from_secs(200), all_three),
        "no weekly reports at {spec}:\nnode a:\n{}\nnode b:\n{}",
        a.log_tail(3000),
        b.log_tail(3000)
    );
    // Both nodes have had their turn at the slot (each says so once it decided; one that found
    // the other sending looks again 20 s later).
    let decided = |g: &Gateway| g.log().contains("the last one sent was that of");
    assert!(
        a.wait_for(Duration::from_secs(90), || decided(&a) && decided(&b)),
        "node a:\n{}\nnode b:\n{}",
        a.log_tail(3000),
        b.log_tail(3000)
    );

    let one = |whom: &str| {
        let got = reports_to(&nodes, whom);
        assert_eq!(
            got.len(),
            1,
            "exactly one report to {whom} across both nodes"
        );
        got.into_iter().next().expect("one")
    };
    let ashdown = text_of(&one(ASHDOWN_DSL));
    assert!(ashdown.contains(ASHDOWN_TEACHER), "{ashdown}");
    assert!(
        !ashdown.contains(BRAMBLE_TEACHER),
        "Bramblefield's flagged sender is not in Ashdown's report:\n{ashdown}"
    );
    let bramble = text_of(&one(BRAMBLE_DSL));
    assert!(
        bramble.contains(BRAMBLE_TEACHER) && !bramble.contains(ASHDOWN_TEACHER),
        "{bramble}"
    );
    let summary = one(TRUST_DSL);
    assert_eq!(
        summary.rcpt_to(),
        [TRUST_DSL],
        "the summary goes to the trust's DSL only"
    );
    assert!(subject(&summary).contains("trust summary"));
    let text = text_of(&summary);
    assert!(
        text.contains(ASHDOWN) && text.contains(BRAMBLE) && text.contains("mail from no school"),
        "{text}"
    );
    assert!(
        !text.contains(ASHDOWN_TEACHER) && !text.contains(BRAMBLE_TEACHER),
        "{text}"
    );
    // Recorded once each, in the one trail both nodes write.
    for (what, want) in [
        ("for Ashdown Park School to its DSLs sent to", 1),
        ("for Bramblefield Primary to its DSLs sent to", 1),
        ("to the DSLs (trust summary) sent to", 1),
    ] {
        let sql =
            format!("SELECT count(*) FROM audit WHERE record LIKE '%weekly report of % {what}%'");
        assert_eq!(count(&sql), want, "{what}");
    }
    a.cli_ok(&["audit", "verify"]);
}

/// A single school's config (no `[[schools]]`) on two gateways sharing one PostgreSQL: its
/// weekly report reaches its DSL once between them, claimed in the shared trail.
#[test]
fn two_gateways_of_one_school_on_one_postgresql_mail_its_weekly_report_once() {
    const SCHOOL_DSL: &str = "dsl@example-academy.sch.uk";
    let pg = PgCluster::start_new();
    let url = pg.url();
    let spec = weekly_slot_soon();
    let start = || {
        Gateway::start(|cfg| {
            set(cfg, "storage.database", url.as_str());
            set(cfg, "safeguarding.weekly_report", spec.as_str());
        })
    };
    let (a, b) = (start(), start());
    let nodes = [&a, &b];
    assert!(
        a.wait_for(Duration::from_secs(200), || !reports_to(&nodes, SCHOOL_DSL)
            .is_empty()),
        "no weekly report at {spec}:\nnode a:\n{}\nnode b:\n{}",
        a.log_tail(3000),
        b.log_tail(3000)
    );
    let decided = |g: &Gateway| g.log().contains("the last one sent was that of");
    assert!(
        a.wait_for(Duration::from_secs(90), || decided(&a) && decided(&b)),
        "node a:\n{}\nnode b:\n{}",
        a.log_tail(3000),
        b.log_tail(3000)
    );
    assert_eq!(
        reports_to(&nodes, SCHOOL_DSL).len(),
        1,
        "exactly one weekly report to the school's DSL across both gateways"
    );
    let count = |sql: &str| pg.psql(sql).trim().parse::<usize>().unwrap_or(usize::MAX);
    assert_eq!(
        count(
            "SELECT count(*) FROM audit WHERE record LIKE '%weekly report of % to the DSLs sent to%'"
        ),
        1,
        "one sent record in the shared trail"
    );
    // Each gateway claims unless it sees a standing claim already; the first claim in the
    // trail sends.
    let claims = count(
        "SELECT count(*) FROM audit WHERE record LIKE '%weekly report of % the school''s copy claimed by%'",
    );
    assert!(
        (1..=2).contains(&claims),
        "the copy was claimed in the shared trail (once per gateway at most): {claims}"
    );
    a.cli_ok(&["audit", "verify"]);
}
