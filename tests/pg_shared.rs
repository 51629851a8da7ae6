//! Two gateways on one PostgreSQL database (`[storage] database`): the quarantine (its held
//! bytes too), accounts, web sessions and the alert queue are shared. A message held through
//! one node is listed and released once through the other, even when both release it at once;
//! one flag gives exactly one DSL alert across both nodes; a session made on one node's web page
//! works on the other's; an alert claimed by a node that died is sent by the other once the
//! claim runs out. Each test runs a private cluster (tests/common/pg.rs).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::http::Browser;
use common::pg::PgCluster;
use common::smtp::Client;
use common::{Gateway, OutboxMessage, plain_message, set};
use schoolgate::alerts::Flagged;
use schoolgate::config::Storage;
use schoolgate::store::quarantine::{NewHeld, Quarantine};
use schoolgate::store::spool::Spool;
use schoolgate::store::users::{Role, Users};
use schoolgate::web::auth::Sessions;

const FROM: &str = "t.baker@example-academy.sch.uk";
const PUPIL: &str = "jamie.smith2010@gmail.com";
const DSL: &str = "dsl@example-academy.sch.uk";

/// `[storage]` of one node: its own state_dir, the shared database.
fn storage(state_dir: &Path, url: &str) -> Storage {
    Storage {
        state_dir: state_dir.to_path_buf(),
        database: Some(url.to_string()),
    }
}

/// Two gateways on the database `url`, each with its own state_dir and outbox.
fn two_nodes(url: &str, tweak: impl Fn(&mut toml::Table)) -> (Gateway, Gateway) {
    let start = || {
        Gateway::start(|cfg| {
            set(cfg, "storage.database", url);
            tweak(cfg);
        })
    };
    (start(), start())
}

fn cli_ok(gw: &Gateway, args: &[&str]) -> String {
    let out = gw.cli(args);
    assert!(
        out.status.success(),
        "schoolgate {args:?} failed ({:?}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn to_pupil(gws: &[&Gateway]) -> Vec<OutboxMessage> {
    gws.iter()
        .flat_map(|g| g.outbox_messages())
        .filter(|m| m.rcpt_to().iter().any(|r| r == PUPIL))
        .collect()
}

fn dsl_alerts(gws: &[&Gateway]) -> Vec<OutboxMessage> {
    gws.iter()
        .flat_map(|g| g.outbox_messages())
        .filter(|m| m.rcpt_to().iter().any(|r| r == DSL))
        .filter(|m| subject(m).starts_with("Safeguarding alert"))
        .collect()
}

/// The Subject as a mail program shows it (a long one is RFC 2047-encoded).
fn subject(m: &OutboxMessage) -> String {
    mail_parser::MessageParser::new()
        .parse(&m.bytes)
        .and_then(|p| p.subject().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn a_message_held_through_one_node_is_listed_and_released_once_through_the_other() {
    let cluster = PgCluster::start_new();
    let (a, b) = two_nodes(&cluster.url(), |cfg| {
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
    });
    a.add_user("ms.dsl", &["dsl"], "dsl password 12");

    let mut c = Client::ready(a.port);
    let m = plain_message(FROM, PUPIL, "Homework", "held@test", "Here is the sheet.");
    let t = c.send(FROM, "", &[PUPIL], &m).unwrap();
    let text = t.reply.text();
    assert!(t.accepted() && text.contains("held for review"), "{text}");
    let id = text.rsplit(' ').next().unwrap().trim().to_string();
    assert!(
        !a.state_dir.join(format!("quarantine/{id}.eml")).exists(),
        "the held bytes are in the database, not in node A's state_dir"
    );

    // Node B's CLI lists it (the account made through A is B's too) and reads its bytes.
    let list: serde_json::Value = serde_json::from_str(&cli_ok(
        &b,
        &["quarantine", "list", "--json", "--as", "ms.dsl"],
    ))
    .expect("list --json prints JSON");
    assert_eq!(list[0]["id"], id.as_str(), "{list}");
    assert_eq!(list[0]["rcpt_to"][0], PUPIL, "{list}");
    let shown = cli_ok(&b, &["quarantine", "show", &id, "--as", "ms.dsl"]);
    assert!(shown.contains("Homework"), "{shown}");

    // Released through both nodes at once: exactly one release succeeds and one copy goes.
    let release = |gw: &Gateway| {
        let config = gw.config_path.clone();
        let id = id.clone();
        std::thread::spawn(move || {
            common::schoolgate_cli(
                &config,
                &[
                    "quarantine",
                    "release",
                    &id,
                    "--as",
                    "ms.dsl",
                    "--reason",
                    "checked with the parent",
                ],
            )
        })
    };
    let (ra, rb) = (release(&a), release(&b));
    let outs = [ra.join().unwrap(), rb.join().unwrap()];
    let ok = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(
        ok,
        1,
        "one release succeeds: {:?}",
        outs.iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .collect::<Vec<_>>()
    );
    assert!(
        a.wait_for(Duration::from_secs(20), || !to_pupil(&[&a, &b]).is_empty()),
        "the released message is delivered"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(to_pupil(&[&a, &b]).len(), 1, "delivered once");
    let shown = cli_ok(&a, &["quarantine", "show", &id, "--as", "ms.dsl"]);
    assert!(shown.contains("released"), "{shown}");
}

fn flag(port: u16, n: usize) {
    let mut c = Client::ready(port);
    let m = plain_message(
        FROM,
        PUPIL,
        &format!("Maths {n}"),
        &format!("flag{n}@test"),
        "See you at the park.",
    );
    let t = c.send(FROM, "", &[PUPIL], &m).unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
}

/// One flag gives one alert, whichever node sends it; flags through the other node inside the
/// alert window after it are one follow-up when the window closes, as on one gateway.
#[test]
fn one_flag_gives_exactly_one_dsl_alert_across_both_nodes() {
    let cluster = PgCluster::start_new();
    let (a, b) = two_nodes(&cluster.url(), |cfg| {
        set(cfg, "safeguarding.alert_window", "10s");
    });
    flag(a.port, 0);
    assert!(
        a.wait_for(Duration::from_secs(30), || !dsl_alerts(&[&a, &b])
            .is_empty()),
        "the flag is alerted:\n{}\n{}",
        a.log_tail(2000),
        b.log_tail(2000)
    );
    // Both nodes' alert senders look at the queue twice a second: time to send a second.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        dsl_alerts(&[&a, &b]).len(),
        1,
        "one alert across both nodes"
    );

    // Two more from the same sender through B, inside the window A's alert opened.
    flag(b.port, 1);
    flag(b.port, 2);
    assert!(
        a.wait_for(Duration::from_secs(30), || dsl_alerts(&[&a, &b]).len() >= 2),
        "the follow-up comes:\n{}\n{}",
        a.log_tail(2000),
        b.log_tail(2000)
    );
    std::thread::sleep(Duration::from_secs(3));
    let all = dsl_alerts(&[&a, &b]);
    let subjects: Vec<String> = all.iter().map(subject).collect();
    assert_eq!(all.len(), 2, "the first, then one follow-up: {subjects:?}");
    assert!(
        subjects.iter().any(|s| s.contains("follow-up")),
        "{subjects:?}"
    );
    assert_eq!(
        cluster.psql("SELECT count(*) FROM send_queue"),
        "0",
        "nothing left queued"
    );
}

#[test]
fn a_web_session_made_on_one_node_works_on_the_other() {
    let cluster = PgCluster::start_new();
    let (a, b) = two_nodes(&cluster.url(), |_| {});
    a.add_user("ms.dsl", &["dsl"], "dsl password 12");
    let on_a = Browser::logged_in(a.web_port(), "ms.dsl", "dsl password 12");
    let mut on_b = Browser::new(b.web_port());
    on_b.cookie = on_a.cookie.clone();
    let page = on_b.get("/quarantine");
    assert_eq!(
        page.status,
        200,
        "node B knows A's session: {}",
        page.text()
    );
    // Logging out on B ends it on A too.
    let csrf = on_b.get("/quarantine").csrf().expect("a page with a form");
    let out = on_b.post("/logout", &[("csrf", &csrf)]);
    assert_eq!(out.status, 303, "{}", out.text());
    let mut again = Browser::new(a.web_port());
    again.cookie = on_a.cookie.clone();
    let after = again.get("/quarantine");
    assert_ne!(after.status, 200, "the session ended on both nodes");
}

/// The stores through the library, two nodes (two state_dirs) on one database: a release is
/// claimed once however many try at once; an alert claimed by a node that died is taken by the
/// other once its claim runs out; accounts and sessions are the same on both.
#[test]
fn stores_shared_by_two_nodes_claim_once_and_expire_claims() {
    let cluster = PgCluster::start_new();
    let url = cluster.url();
    let dir = tempfile::tempdir().unwrap();
    let (sa, sb) = (
        storage(&dir.path().join("a"), &url),
        storage(&dir.path().join("b"), &url),
    );

    // The quarantine: held on A, read on B, marked by eight at once: one wins.
    let (qa, qb) = (Quarantine::open(&sa), Quarantine::open(&sb));
    let rcpt = vec![PUPIL.to_string()];
    let item = NewHeld {
        id: "Q1",
        mail_from: FROM,
        rcpt_to: &rcpt,
        subject: Some("Homework"),
        reason: serde_json::json!([{"rule": "pupil-personal-address"}]),
        smtputf8: false,
        body_8bit: false,
        delivery_key: "k1",
    };
    qa.hold(&item, b"held bytes\r\n").unwrap();
    assert!(
        qb.recover().unwrap().removed.is_empty(),
        "B's start leaves A's entry in flight alone"
    );
    assert!(qa.confirm("Q1").unwrap());
    assert_eq!(qb.read("Q1").unwrap(), b"held bytes\r\n");
    assert_eq!(qb.list("held").unwrap().len(), 1);
    let again = qb.hold(&item, b"held bytes\r\n").unwrap();
    assert_eq!(again.state, "held", "a retry through B finds A's entry");
    let winners: usize = (0..8)
        .map(|n| {
            let q = if n % 2 == 0 { qa.clone() } else { qb.clone() };
            std::thread::spawn(move || q.mark("Q1", "releasing", "dsl", None).unwrap())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| usize::from(h.join().unwrap()))
        .sum();
    assert_eq!(winners, 1, "one release claims the message");

    // The alert queue: A claims and dies; B gets it only after A's claim runs out.
    let claim = Duration::from_secs(2);
    let (pa, pb) = (
        Spool::open(&sa).with_claim_for(claim),
        Spool::open(&sb).with_claim_for(claim),
    );
    pa.queue_alert(&Flagged {
        audit_seq: 7,
        queue_id: "Q7".into(),
        time: "2026-12-07T09:00:00Z".into(),
        sender: FROM.into(),
        recipients: vec![PUPIL.into()],
        subject: None,
        flags: Vec::new(),
        outcome: "delivered".into(),
        evidence: None,
    })
    .unwrap();
    let taken = Instant::now();
    assert_eq!(pa.pending_alerts().unwrap().len(), 1, "A claims it");
    assert!(
        pb.pending_alerts().unwrap().is_empty(),
        "B does not see A's claim"
    );
    let mut on_b = Vec::new();
    while on_b.is_empty() && taken.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(250));
        on_b = pb.pending_alerts().unwrap();
    }
    assert_eq!(on_b.len(), 1, "B takes it once A's claim runs out");
    assert!(taken.elapsed() >= claim, "not before");
    pb.alerts_sent(&[on_b[0].0.clone()]).unwrap();
    assert!(pa.pending_alerts().unwrap().is_empty(), "sent once");

    // Evidence kept through A is read through B, and purged once old.
    let rel = pa.keep_evidence("Q7", b"delivered copy\r\n").unwrap();
    assert_eq!(rel, "evidence/Q7.eml");
    assert!(pb.evidence_kept(&rel).unwrap());
    assert_eq!(
        pb.read_evidence(&rel).unwrap().as_deref(),
        Some(&b"delivered copy\r\n"[..])
    );
    assert_eq!(pb.read_evidence("evidence/../x").unwrap(), None);
    assert_eq!(
        pb.purge_evidence(std::time::SystemTime::now() + Duration::from_secs(5))
            .unwrap(),
        1
    );
    assert!(!pa.evidence_kept(&rel).unwrap());

    // Accounts and sessions.
    assert!(
        Users::open(&sa)
            .add("ms.dsl", &[Role::Dsl], "hash")
            .unwrap()
    );
    assert_eq!(
        Users::open(&sb).get("ms.dsl").unwrap().map(|a| a.roles),
        Some(vec![Role::Dsl])
    );
    let (ta, tb) = (Sessions::open(&sa), Sessions::open(&sb));
    let (id, csrf) = ta.create(Some("ms.dsl".into())).unwrap();
    let found = tb.find(&id).expect("B finds A's session");
    assert_eq!(found.account.as_deref(), Some("ms.dsl"));
    assert_eq!(found.csrf, csrf);
    tb.end_all_of("ms.dsl");
    assert!(ta.find(&id).is_none(), "ended on both");
}

/// `schoolgate migrate --from sqlite:STATE_DIR` copies the quarantine with its held bytes,
/// the accounts and the release links: after it, the trust's config lists and exports the
/// message held by the single school, byte for byte, to the same account.
#[test]
fn migrate_copies_the_quarantine_with_its_bytes_and_the_accounts() {
    let cluster = PgCluster::start_new();
    let mut gw = Gateway::start(|cfg| {
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
    });
    gw.add_user("ms.dsl", &["dsl"], "dsl password 12");
    let mut c = Client::ready(gw.port);
    let m = plain_message(FROM, PUPIL, "Homework", "mig@test", "Here is the sheet.");
    let t = c.send(FROM, "", &[PUPIL], &m).unwrap();
    let text = t.reply.text();
    assert!(text.contains("held for review"), "{text}");
    let id = text.rsplit(' ').next().unwrap().trim().to_string();
    let held = std::fs::read(gw.state_dir.join(format!("quarantine/{id}.eml"))).unwrap();
    // The single school's gateway is stopped before its store is moved (as the README says).
    gw.kill9();

    let mut cfg: toml::Table =
        toml::from_str(&std::fs::read_to_string(&gw.config_path).unwrap()).unwrap();
    set(&mut cfg, "storage.database", cluster.url());
    set(
        &mut cfg,
        "storage.state_dir",
        gw.dir.path().join("trust").to_string_lossy().into_owned(),
    );
    let trust = gw.dir.path().join("trust.toml");
    std::fs::write(&trust, toml::to_string(&cfg).unwrap()).unwrap();
    let from = format!("sqlite:{}", gw.state_dir.display());
    let out = common::schoolgate_cli(&trust, &["migrate", "--from", &from]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "migrate: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("copied 1 quarantine entries") && said.contains("copied 1 web accounts"),
        "{said}"
    );

    let copy = gw.dir.path().join("copy.eml");
    let out = common::schoolgate_cli(
        &trust,
        &[
            "quarantine",
            "export",
            &id,
            "--out",
            copy.to_str().unwrap(),
            "--as",
            "ms.dsl",
        ],
    );
    assert!(
        out.status.success(),
        "export after migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&copy).unwrap(), held, "the same bytes");
    // A second migrate into the now full database is refused.
    let again = common::schoolgate_cli(&trust, &["migrate", "--from", &from]);
    assert!(!again.status.success(), "a full target is refused");
}
