//! The network manager's daily quarantine digest through the real gateway: mailed at
//! `[quarantine] digest` to `[quarantine] digest_to`, once (also across a restart), as plain
//! text and HTML, with each held message's link and no content or identifiers; its HTML part
//! photographed in a real Chromium (`quarantine-digest`). Two gateways on one PostgreSQL send
//! one digest between them (each day's digest is claimed in the shared trail).

mod common;

use std::time::Duration;

use common::pg::PgCluster;
use common::smtp::Client;
use common::{Gateway, OutboxMessage, set};

const FROM: &str = "t.baker@example-academy.sch.uk";
const COUNTY: &str = "admissions@county.gov.example";
const PUPIL: &str = "jamie.smith2010@gmail.com";
const NETWORK_MANAGER: &str = "it.manager@example-academy.sch.uk";
const PUBLIC_URL: &str = "https://schoolgate.example-academy.sch.uk:8443";

fn send_held(gw: &Gateway, from: &str, to: &str, message: &[u8]) -> String {
    let mut c = Client::ready(gw.port);
    let t = c.send(from, "", &[to], message).expect("send");
    let text = t.reply.text();
    assert!(text.contains("held for review"), "not held: {text}");
    text.rsplit(' ').next().unwrap().trim().to_string()
}

fn digests(gw: &Gateway) -> Vec<OutboxMessage> {
    gw.outbox_messages()
        .into_iter()
        .filter(|m| {
            mail_parser::MessageParser::new()
                .parse(&m.bytes)
                .and_then(|p| p.subject().map(|s| s.starts_with("Quarantine digest")))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn the_digest_is_mailed_at_its_time_once_with_links_and_no_content() {
    let mut gw = Gateway::start(|cfg| {
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
        set(
            cfg,
            "quarantine.digest_to",
            toml::Value::Array(vec![NETWORK_MANAGER.into()]),
        );
        set(cfg, "web.public_url", PUBLIC_URL);
        // Off until the slot below is set, so nothing goes at start.
        set(cfg, "quarantine.digest", "off");
    });
    let mut csv = String::from("Name,UPN,Date of birth\r\n");
    for n in 0..30 {
        csv.push_str(&format!(
            "Pupil{n} Surname{n},{},{:02}/03/2014\r\n",
            common::upn(100 + n),
            n % 28 + 1
        ));
    }
    let list = send_held(
        &gw,
        FROM,
        COUNTY,
        &common::message_with_attachment(
            (FROM, COUNTY),
            "Jamie Smith and the Year 7 class list",
            "digest-list@test",
            ("Jamie Smith 7B.csv", "text/csv"),
            csv.as_bytes(),
        ),
    );
    let secret = send_held(
        &gw,
        FROM,
        PUPIL,
        &common::plain_message(
            FROM,
            PUPIL,
            "Our secret",
            "digest-secret@test",
            "Delete this.",
        ),
    );

    // The first whole minute more than 2 s ahead, in the school's time zone.
    let tz = jiff::tz::TimeZone::get("Europe/London").unwrap();
    let slot = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(62))
        .to_zoned(tz)
        .with()
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .unwrap();
    let at = slot.strftime("%H:%M").to_string();
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let mut cfg: toml::Table = toml::from_str(&text).unwrap();
    set(&mut cfg, "quarantine.digest", at.as_str());
    std::fs::write(&gw.config_path, toml::to_string(&cfg).unwrap()).unwrap();
    gw.restart();

    assert!(
        gw.wait_for(Duration::from_secs(150), || !digests(&gw).is_empty()),
        "no digest at {at}:\n{}",
        gw.log_tail(4000)
    );
    let sent = digests(&gw);
    assert_eq!(sent.len(), 1, "one digest");
    assert_eq!(sent[0].rcpt_to(), [NETWORK_MANAGER], "only to digest_to");
    let p = sent[0].parts();
    let text = p
        .iter()
        .find(|(ct, _)| ct == "text/plain")
        .map(|(_, t)| t.clone())
        .unwrap_or_else(|| panic!("no text part: {p:?}"));
    let html = p
        .iter()
        .find(|(ct, _)| ct == "text/html")
        .map(|(_, t)| t.clone())
        .unwrap_or_else(|| panic!("no HTML part: {p:?}"));
    for want in [
        "Held in the last 24 hours: 2",
        "Still held (waiting for a decision): 2",
        "unencrypted-sensitive-attachment: 1 / 1",
        "safeguarding: 1 / 1",
        &format!("{PUBLIC_URL}/quarantine/{list}"),
        &format!("{PUBLIC_URL}/quarantine/{secret}"),
        &format!("from {FROM} to 1 recipient"),
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    // Oldest first.
    assert!(
        text.find(&list).unwrap() < text.find(&secret).unwrap(),
        "{text}"
    );
    assert!(
        html.contains(&format!("href=\"{PUBLIC_URL}/quarantine/{list}\"")),
        "{html}"
    );
    let whole = String::from_utf8_lossy(&sent[0].bytes).to_string();
    for secret_text in [
        "Jamie",
        "Year 7",
        "Our secret",
        "Delete this",
        PUPIL,
        COUNTY,
        "7B.csv",
        "pupil-personal-address",
    ] {
        for part in [&text, &html, &whole] {
            assert!(
                !part.contains(secret_text),
                "{secret_text:?} in the digest:\n{part}"
            );
        }
    }

    // The HTML part as a mail client shows it, in a real Chromium at desktop and phone width
    // (no sideways scrolling): both links, nothing else to click.
    let page = gw.dir.path().join("digest.html");
    std::fs::write(&page, &html).unwrap();
    let mut browser = common::browser::Browser::start();
    browser.set_base(format!("file://{}", gw.dir.path().display()));
    browser.goto("/digest.html");
    let links: Vec<String> = browser
        .find_all("a")
        .iter()
        .filter_map(|a| a.attr("href"))
        .collect();
    assert_eq!(
        links,
        [
            format!("{PUBLIC_URL}/quarantine/{list}"),
            format!("{PUBLIC_URL}/quarantine/{secret}")
        ],
        "oldest first, one link each"
    );
    assert!(browser.page_text().contains("Held by a safeguarding rule"));
    browser.screenshots("quarantine-digest");
    drop(browser);

    // Audited; a restart reads it back and does not send it again.
    let recorded = |gw: &Gateway| {
        gw.audit_records()
            .iter()
            .filter_map(|r| r.record["action"]["detail"].as_str().map(str::to_string))
            .filter(|d| d.starts_with("quarantine digest of ") && d.contains(NETWORK_MANAGER))
            .count()
    };
    assert!(
        gw.wait_for(Duration::from_secs(10), || recorded(&gw) == 1),
        "the digest is audited"
    );
    // The scheduler's line once it knows the last digest sent.
    let said = |gw: &Gateway| {
        gw.log()
            .lines()
            .filter(|l| {
                l.contains("quarantine digest (daily at")
                    && l.contains("the last one sent was that of")
            })
            .count()
    };
    assert!(
        gw.wait_for(Duration::from_secs(10), || said(&gw) >= 1),
        "{}",
        gw.log_tail(3000)
    );
    let before = said(&gw);
    gw.restart();
    assert!(
        gw.wait_for(Duration::from_secs(30), || said(&gw) > before),
        "the restarted gateway never decided:\n{}",
        gw.log_tail(3000)
    );
    assert_eq!(digests(&gw).len(), 1, "not sent again after the restart");
    assert_eq!(recorded(&gw), 1);
    gw.assert_audit_verifies("after the digest");
}

/// Two gateways of one school sharing one PostgreSQL (one quarantine): the network manager gets
/// one digest a day between them, not one from each.
#[test]
fn two_gateways_on_one_postgresql_mail_one_digest_between_them() {
    let pg = PgCluster::start_new();
    let url = pg.url();
    let tz = jiff::tz::TimeZone::get("Europe/London").expect("tzdata");
    // The first whole minute at least 60 s ahead: both gateways are up, and the message held.
    let slot = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60))
        .to_zoned(tz)
        .with()
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .expect("a whole minute")
        + jiff::SignedDuration::from_secs(60);
    let at = slot.strftime("%H:%M").to_string();
    let start = || {
        Gateway::start(|cfg| {
            set(cfg, "storage.database", url.as_str());
            set(
                cfg,
                "safeguarding.rules.pupil-personal-address",
                "quarantine",
            );
            set(
                cfg,
                "quarantine.digest_to",
                toml::Value::Array(vec![NETWORK_MANAGER.into()]),
            );
            set(cfg, "quarantine.digest", at.as_str());
        })
    };
    let (a, b) = (start(), start());
    let m = common::plain_message(FROM, PUPIL, "Homework", "pg-digest@test", "See you.");
    let held = send_held(&a, FROM, PUPIL, &m);
    let both = || digests(&a).len() + digests(&b).len();
    assert!(
        a.wait_for(Duration::from_secs(200), || both() >= 1),
        "no digest at {at}:\nnode a:\n{}\nnode b:\n{}",
        a.log_tail(3000),
        b.log_tail(3000)
    );
    // Each node decides the day is done: the one that sent it at once, the other when it
    // looks again and finds the "sent" record.
    let decided = |g: &Gateway| {
        g.log().lines().any(|l| {
            l.contains("quarantine digest (daily at") && l.contains("the last one sent was that of")
        })
    };
    assert!(
        a.wait_for(Duration::from_secs(90), || decided(&a) && decided(&b)),
        "node a:\n{}\nnode b:\n{}",
        a.log_tail(3000),
        b.log_tail(3000)
    );
    assert_eq!(both(), 1, "one digest across both gateways");
    let count = |sql: &str| pg.psql(sql).trim().parse::<usize>().unwrap_or(usize::MAX);
    assert_eq!(
        count(
            "SELECT count(*) FROM audit WHERE kind = 'action' \
             AND record LIKE '%\"quarantine digest of % to it.manager@%'"
        ),
        1,
        "one sent record in the shared trail"
    );
    let claims = count(
        "SELECT count(*) FROM audit WHERE record LIKE '%quarantine digest of % claimed by %'",
    );
    assert!(
        (1..=2).contains(&claims),
        "the digest was claimed in the shared trail (once per gateway at most): {claims}"
    );
    let digest = &(digests(&a).into_iter().chain(digests(&b)).next()).expect("the digest");
    let text = digest
        .parts()
        .into_iter()
        .find(|(ct, _)| ct == "text/plain")
        .map(|(_, t)| t)
        .expect("a text part");
    assert!(
        text.contains("Held in the last 24 hours: 1") && text.contains(&held),
        "the message held through node A is in the digest (one quarantine):\n{text}"
    );
    a.cli_ok(&["audit", "verify"]);
}
