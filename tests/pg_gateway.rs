//! The real gateway with `[storage] database` on a private PostgreSQL cluster
//! (tests/common/pg.rs): mail recorded in PostgreSQL, `audit verify` and `audit export` against
//! it (and the README's independent script on the export), PostgreSQL stopped mid-stream (451,
//! never an unrecorded 250; the gateway reconnects by itself), unreachable at start (refused,
//! saying why), two gateways on one database (one chain), and `schoolgate migrate`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pg::PgCluster;
use common::*;

const STAFF: &str = "t.baker@example-academy.sch.uk";
const PARENT: &str = "parent@example.org";

fn on_postgres(cluster: &PgCluster) -> impl FnOnce(&mut toml::Table) + '_ {
    move |cfg| {
        relay_only(cfg);
        set(cfg, "storage.database", cluster.url());
    }
}

/// Sends one message with `subject` on a new connection; the transaction's outcome.
fn send(port: u16, subject: &str) -> std::io::Result<Transaction> {
    let m = plain_message(
        STAFF,
        PARENT,
        subject,
        &format!("{}@test", subject.replace(' ', "-")),
        "Hello.",
    );
    let mut c = Client::connect(port)?;
    c.cmd("EHLO staff-pc.example-academy.sch.uk")?;
    let t = c.send(STAFF, "", &[PARENT], &m)?;
    let _ = c.cmd("QUIT");
    Ok(t)
}

/// How many message records in the database carry each subject.
fn recorded_subjects(cluster: &PgCluster) -> BTreeMap<String, usize> {
    let out = cluster.psql(
        "SELECT record::json->'message'->>'subject' FROM audit WHERE kind = 'message' ORDER BY seq",
    );
    let mut counts = BTreeMap::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    counts
}

/// The README's independent verify script, taken from the README itself.
fn readme_verify_script() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let start = readme
        .find("import hashlib, json, sys")
        .expect("the README's verify script");
    let end = start
        + readme[start..]
            .find("print(\"every record matches its hash\")")
            .expect("the script's last line")
        + "print(\"every record matches its hash\")".len();
    readme[start..end]
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn mail_is_recorded_in_postgresql_verified_and_exported() {
    let cluster = PgCluster::start_new();
    let gw = Gateway::start(on_postgres(&cluster));
    gw.add_user("dsl", &["dsl"], "dsl password 12");
    for n in 0..6 {
        let t = send(gw.port, &format!("pg message {n}")).unwrap();
        assert!(
            t.accepted(),
            "message {n}: {:?}\n{}",
            t.reply,
            gw.log_tail(3000)
        );
    }
    let subjects = recorded_subjects(&cluster);
    assert_eq!(subjects.len(), 6, "{subjects:?}");
    assert!(subjects.values().all(|&n| n == 1), "{subjects:?}");
    let verified = gw.cli_ok(&["audit", "verify"]);
    let total = cluster.psql("SELECT count(*) FROM audit");
    assert!(
        verified.contains(&format!("audit trail intact: {total} records")),
        "{verified}"
    );
    let out = gw.dir.path().join("trail.jsonl");
    gw.cli_ok(&[
        "audit",
        "export",
        "--as",
        "dsl",
        "--format",
        "jsonl",
        "--out",
        out.to_str().unwrap(),
    ]);
    let lines = std::fs::read_to_string(&out).unwrap().lines().count();
    assert!(lines >= 6, "{lines} lines exported");
    let py = Command::new("python3")
        .arg("-c")
        .arg(readme_verify_script())
        .arg(&out)
        .output()
        .expect("python3 (scripts/test installs it)");
    assert!(
        py.status.success()
            && String::from_utf8_lossy(&py.stdout).contains("every record matches its hash"),
        "{}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
    // A record changed in the database is named by verify.
    cluster.psql("UPDATE audit SET record = replace(record, 'pg message 3', 'pg message 9') WHERE kind = 'message'");
    let out = gw.cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("BROKEN at record"));
}

#[test]
fn postgresql_stopped_mid_stream_gives_451_and_the_gateway_reconnects_by_itself() {
    let mut cluster = PgCluster::start_new();
    let gw = Gateway::start(on_postgres(&cluster));
    let mut accepted = Vec::new();
    let t = send(gw.port, "before the stop").unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
    accepted.push("before the stop".to_string());

    // The gateway retries the record of a delivered message for 30 s before its 451
    // (`handoff::AUDIT_PATIENCE`): one message is enough.
    cluster.stop();
    for n in 0..1 {
        let subject = format!("while stopped {n}");
        let t = send(gw.port, &subject).unwrap();
        assert!(
            !t.accepted(),
            "{subject}: a 250 while PostgreSQL is stopped cannot have been recorded"
        );
        assert_eq!(
            t.reply.code,
            451,
            "{subject}: {:?}\n{}",
            t.reply,
            gw.log_tail(3000)
        );
    }

    cluster.start();
    // The gateway reconnects by itself: the next message (a retry at most) gets 250.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    loop {
        let subject = format!("after the start {n}");
        let t = send(gw.port, &subject).unwrap();
        if t.accepted() {
            accepted.push(subject);
            break;
        }
        assert_eq!(t.reply.code, 451, "{:?}", t.reply);
        assert!(
            Instant::now() < deadline,
            "no 250 within 60 s of PostgreSQL's return:\n{}",
            gw.log_tail(3000)
        );
        std::thread::sleep(Duration::from_millis(500));
        n += 1;
    }
    assert!(n <= 1, "it took {n} refused messages to reconnect");
    let t = send(gw.port, "after the start, again").unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
    accepted.push("after the start, again".into());

    // A restart (every connection cut) between two messages: the next one just works.
    cluster.restart();
    let t = send(gw.port, "after a restart").unwrap();
    assert!(t.accepted(), "{:?}\n{}", t.reply, gw.log_tail(3000));
    accepted.push("after a restart".into());

    let recorded = recorded_subjects(&cluster);
    for subject in &accepted {
        assert_eq!(
            recorded.get(subject),
            Some(&1),
            "{subject} recorded once: {recorded:?}"
        );
    }
    assert!(
        recorded.keys().all(|s| !s.starts_with("while stopped")),
        "{recorded:?}"
    );
    gw.cli_ok(&["audit", "verify"]);
}

#[test]
fn postgresql_unreachable_at_start_is_refused_saying_why() {
    let mut cluster = PgCluster::start_new();
    let mut gw = Gateway::start(on_postgres(&cluster));
    gw.kill9();
    cluster.stop();
    let mut child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&gw.config_path)
        .env_remove("SCHOOLGATE_CONFIG")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve kept running without its database");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot reach the PostgreSQL database")
            && stderr.contains(&format!("postgres@127.0.0.1:{}/schoolgate", cluster.port())),
        "{stderr}"
    );
}

#[test]
fn two_gateways_on_one_database_keep_one_chain() {
    let cluster = PgCluster::start_new();
    let a = Gateway::start(on_postgres(&cluster));
    let b = Gateway::start(on_postgres(&cluster));
    let ports = [a.port, b.port];
    let threads: Vec<_> = (0..6)
        .map(|t| {
            std::thread::spawn(move || {
                for n in 0..20 {
                    let port = ports[(t + n) % 2];
                    let subject = format!("node test {t}-{n}");
                    let r = send(port, &subject).unwrap();
                    assert!(r.accepted(), "{subject}: {:?}", r.reply);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let recorded = recorded_subjects(&cluster);
    assert_eq!(recorded.len(), 120);
    assert!(
        recorded.values().all(|&n| n == 1),
        "each message recorded once"
    );
    a.cli_ok(&["audit", "verify"]);
    b.cli_ok(&["audit", "verify"]);
    assert_eq!(
        cluster.psql("SELECT count(*) FROM audit a JOIN audit b ON b.seq = a.seq + 1 WHERE b.prev_hash <> a.hash"),
        "0"
    );
}

#[test]
fn migrate_copies_a_single_school_store_chain_intact_and_only_into_an_empty_database() {
    let cluster = PgCluster::start_new();
    let mut gw = Gateway::start(relay_only);
    for n in 0..5 {
        assert!(
            send(gw.port, &format!("sqlite message {n}"))
                .unwrap()
                .accepted()
        );
    }
    gw.cli_ok(&["audit", "checkpoint"]);
    gw.kill9();
    let before = gw.audit_records();

    // The same config with the database added, as the network manager edits it.
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let mut cfg: toml::Table = toml::from_str(&text).unwrap();
    set(&mut cfg, "storage.database", cluster.url());
    let pg_config = gw.dir.path().join("trust.toml");
    std::fs::write(&pg_config, toml::to_string(&cfg).unwrap()).unwrap();

    let from = format!("sqlite:{}", gw.state_dir.display());
    let out = schoolgate_cli(&pg_config, &["migrate", "--from", &from]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("copied {} audit records", before.len())),
        "{stdout}"
    );
    let conn = rusqlite::Connection::open(gw.state_dir.join("schoolgate.db")).unwrap();
    let checkpoints: i64 = conn
        .query_row("SELECT count(*) FROM audit_checkpoint", [], |r| r.get(0))
        .unwrap();
    assert!(checkpoints >= 2, "at start and by hand");
    assert!(
        stdout.contains(&format!("copied {checkpoints} audit checkpoints")),
        "{stdout}"
    );
    assert_eq!(
        cluster.psql("SELECT count(*) FROM audit_checkpoint"),
        checkpoints.to_string()
    );
    let copied = cluster.psql("SELECT string_agg(seq || ':' || hash, ',' ORDER BY seq) FROM audit");
    let want: Vec<String> = before
        .iter()
        .map(|r| format!("{}:{}", r.seq, r.hash))
        .collect();
    assert_eq!(copied, want.join(","), "same seq and hashes");
    let verified = schoolgate_cli(&pg_config, &["audit", "verify"]);
    assert!(verified.status.success());

    // Again into the now full database: refused, nothing changed.
    let out = schoolgate_cli(&pg_config, &["migrate", "--from", &from]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        cluster.psql("SELECT count(*) FROM audit"),
        before.len().to_string()
    );

    // A broken source is refused before anything is copied.
    conn.execute("UPDATE audit SET record = replace(record, 'sqlite message 2', 'sqlite message 7') WHERE kind = 'message'", [])
        .unwrap();
    cluster.create_database("second");
    set(&mut cfg, "storage.database", cluster.url_of("second"));
    std::fs::write(&pg_config, toml::to_string(&cfg).unwrap()).unwrap();
    let out = schoolgate_cli(&pg_config, &["migrate", "--from", &from]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("does not verify") && stderr.contains("nothing was copied"),
        "{stderr}"
    );
    assert_eq!(
        cluster.psql_in(
            "second",
            "SELECT count(*) FROM pg_class WHERE relname IN ('audit', 'schema_version')"
        ),
        "0",
        "not even connected to"
    );
}
