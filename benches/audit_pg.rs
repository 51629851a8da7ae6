//! `audit verify` of a large audit trail on PostgreSQL (`[storage] database`): starts a private
//! cluster (tests/common/pg.rs), fills it fast (the chain computed by the library, the rows
//! loaded with psql's `\copy`), then times the real binary's `audit verify` under
//! `/usr/bin/time -v`. Run with `cargo bench --bench audit_pg`; `AUDIT_BENCH_RECORDS=N` changes
//! the size (default 1,000,000). Target: under 20 s for 1,000,000 records.

#[path = "../tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use schoolgate::store::audit::{chain_all, index_keys};
use schoolgate::store::{AuditRecord, ChainHead, FlagRecord, MessageRecord};

const BIN: &str = env!("CARGO_BIN_EXE_schoolgate");

/// The harness's ports (tests/common/pg.rs asks its parent module for one).
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn main() {
    let n: u64 = std::env::var("AUDIT_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let cluster = pg::PgCluster::start_new();
    let work = tempfile::tempdir().expect("a temporary directory");
    let config = write_config(work.path(), &cluster.url());
    // The schema, made by schoolgate itself (its migrations run on connect).
    let out = Command::new(BIN)
        .args(["audit", "checkpoint", "--config"])
        .arg(&config)
        .output()
        .expect("run schoolgate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let t = Instant::now();
    let (rows, keys) = (
        pg::cluster_dir(&cluster).join("audit.tsv"),
        pg::cluster_dir(&cluster).join("audit_key.tsv"),
    );
    let head = write_rows(n, &rows, &keys);
    println!("chained {n} records in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    cluster.psql(&format!(
        "\\copy audit (seq, time, kind, mail_from, outcome, record, prev_hash, hash) FROM '{}'",
        rows.display()
    ));
    cluster.psql(&format!(
        "\\copy audit_key (key, seq) FROM '{}'",
        keys.display()
    ));
    cluster.psql(&format!(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, {}, '{}'); ANALYZE",
        head.seq, head.hash
    ));
    println!("loaded with \\copy in {:.1} s", t.elapsed().as_secs_f64());
    println!(
        "database: {} records, {}",
        cluster.psql("SELECT count(*) FROM audit"),
        cluster.psql("SELECT pg_size_pretty(pg_database_size('schoolgate'))")
    );

    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(BIN)
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .output()
        .expect("/usr/bin/time (Debian package time)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let field = |name: &str| {
        stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| "?".into())
    };
    let rss = field("Maximum resident set size (kbytes):")
        .parse::<u64>()
        .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|_| "?".into());
    println!("\n| run | wall | peak RSS | output |");
    println!("|---|---|---|---|");
    println!(
        "| `audit verify`, {n} records on PostgreSQL | {} | {rss} | {} |",
        field("Elapsed (wall clock) time (h:mm:ss or m:ss):"),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    assert!(out.status.success(), "audit verify failed:\n{stderr}");
}

fn write_config(dir: &Path, url: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("policies/example.toml")).expect("example");
    let mut cfg: toml::Table = toml::from_str(&example).expect("example parses");
    let set = |cfg: &mut toml::Table, section: &str, key: &str, v: String| {
        if let Some(t) = cfg.get_mut(section).and_then(|t| t.as_table_mut()) {
            t.insert(key.into(), toml::Value::String(v));
        }
    };
    set(
        &mut cfg,
        "school",
        "directory",
        root.join("policies/example-directory.csv")
            .to_string_lossy()
            .into_owned(),
    );
    set(
        &mut cfg,
        "storage",
        "state_dir",
        dir.join("state").to_string_lossy().into_owned(),
    );
    set(&mut cfg, "storage", "database", url.to_string());
    let path = dir.join("schoolgate.toml");
    std::fs::write(&path, toml::to_string(&cfg).expect("serialise")).expect("write config");
    path
}

/// A field for COPY's text format.
fn copy_text(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// Writes `n` chained message records (a year of mail, as `benches/audit.rs` makes them) and
/// their export keys as COPY text files; returns the head.
fn write_rows(n: u64, rows: &Path, keys: &Path) -> ChainHead {
    let mut rows = std::io::BufWriter::new(std::fs::File::create(rows).expect("create"));
    let mut keys = std::io::BufWriter::new(std::fs::File::create(keys).expect("create"));
    let start = jiff::Timestamp::from_second(1_748_736_000).expect("2025-06-01");
    let mut head: Option<ChainHead> = None;
    let mut batch: Vec<AuditRecord> = Vec::with_capacity(10_000);
    for i in 1..=n {
        let time = start + jiff::SignedDuration::from_secs(i as i64 * 30);
        let staff = format!("staff{}@example-academy.sch.uk", i % 150);
        let rcpt = if i % 3 == 0 {
            format!("pupil{}@pupils.example-academy.sch.uk", i % 1200)
        } else {
            format!("parent{}@example.org", i % 5000)
        };
        let message = MessageRecord {
            client: "127.0.0.1:40000".into(),
            queue_id: Some(format!("{i:016X}")),
            helo: "mail.example-academy.sch.uk".into(),
            mail_from: staff.clone(),
            rcpt_to: vec![rcpt.clone()],
            header_from: Some(format!("Staff Member <{staff}>")),
            header_to: vec![format!("Someone <{rcpt}>")],
            subject: Some(format!("Weekly update {i}")),
            message_id: Some(format!("<{i}@example-academy.sch.uk>")),
            size: 4000 + i % 20000,
            sha256_received: format!("{i:064x}"),
            sha256_delivered: Some(format!("{:064x}", i + 1)),
            disclaimer: Some("appended".into()),
            flags: if i.is_multiple_of(50) {
                vec![FlagRecord {
                    rule: "out-of-hours-pupil-contact".into(),
                    detail: "sent at 21:14 on a Tuesday".into(),
                    evidence: "Date: Tue, 21:14".into(),
                    action: "flag".into(),
                }]
            } else {
                Vec::new()
            },
            verdict: "deliver".into(),
            outcome: "delivered".into(),
            next_hop: Some("smtp://mail.example-academy.sch.uk:25".into()),
            next_hop_reply: Some("250 2.0.0 Ok: queued as 4XyZ".into()),
            reply: "250 2.0.0 delivered".into(),
            ..Default::default()
        };
        let mut record = AuditRecord::message(message);
        record.time = time.to_string();
        batch.push(record);
        if batch.len() == batch.capacity() || i == n {
            let refs: Vec<&AuditRecord> = batch.iter().collect();
            let entries = chain_all(head.take(), &refs);
            for (e, r) in entries.iter().zip(&batch) {
                let m = r.message.as_ref().expect("a message record");
                writeln!(
                    rows,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    e.seq,
                    copy_text(&r.time),
                    r.kind.as_str(),
                    copy_text(&m.mail_from),
                    copy_text(&m.outcome),
                    copy_text(&e.record_json),
                    e.prev_hash,
                    e.hash
                )
                .expect("write");
                for k in index_keys(r) {
                    writeln!(keys, "{}\t{}", copy_text(&k), e.seq).expect("write");
                }
            }
            head = entries.last().map(|e| ChainHead {
                seq: e.seq,
                hash: e.hash.clone(),
            });
            batch.clear();
        }
    }
    rows.flush().expect("flush");
    keys.flush().expect("flush");
    head.expect("at least one record")
}
