//! The audit trail at scale: fills a database with a year of records (1,000,000 by default)
//! through the library, then times the real binary with `/usr/bin/time -v`: `audit verify`, a
//! full CSV export, and exports for one person (all, and over a year), reporting wall time and
//! peak RSS. Run with `cargo bench --bench audit`.
//!
//! `AUDIT_BENCH_RECORDS=N` changes the size; `AUDIT_BENCH_DIR=DIR` keeps the database there and
//! reuses it on the next run (filling takes longer than the measurements).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use schoolgate::store::sqlite::{DATABASE_FILE, SqliteBackend};
use schoolgate::store::{AuditRecord, Backend, FlagRecord, MessageRecord};

const BIN: &str = env!("CARGO_BIN_EXE_schoolgate");
/// The person the one-person exports are for, and their personal address.
const TARGET: &str = "target.pupil@pupils.example-academy.sch.uk";
const TARGET_PERSONAL: &str = "target.pupil.2011@gmail.com";

fn main() {
    let n: u64 = std::env::var("AUDIT_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let kept = std::env::var_os("AUDIT_BENCH_DIR").map(PathBuf::from);
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = kept.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(dir.join("state")).expect("create the state directory");
    let config = write_config(&dir);

    let db = dir.join("state").join(DATABASE_FILE);
    let have = if db.exists() {
        let mut b = SqliteBackend::open_read_only(&dir.join("state")).expect("open");
        b.head().expect("head").map_or(0, |h| h.seq)
    } else {
        0
    };
    if have < n {
        let t = Instant::now();
        fill(&dir.join("state"), have, n);
        println!(
            "filled {} records in {:.1} s",
            n - have,
            t.elapsed().as_secs_f64()
        );
    }
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "database: {} records, {:.0} MiB",
        n,
        size as f64 / (1 << 20) as f64
    );

    let csv = dir.join("all.csv");
    let one = dir.join("person.jsonl");
    let year = dir.join("person-year.csv");
    let runs: [(&str, Vec<String>); 4] = [
        ("verify", vec!["audit".into(), "verify".into()]),
        (
            "export csv, everything",
            args(&["audit", "export", "--format", "csv", "--out"], &csv),
        ),
        (
            "export jsonl, one person",
            args(
                &[
                    "audit", "export", "--format", "jsonl", "--person", TARGET, "--out",
                ],
                &one,
            ),
        ),
        (
            "export csv, one person, one year",
            args(
                &[
                    "audit",
                    "export",
                    "--format",
                    "csv",
                    "--person",
                    TARGET_PERSONAL,
                    "--since",
                    "2025-06-01",
                    "--until",
                    "2026-05-31",
                    "--out",
                ],
                &year,
            ),
        ),
    ];
    println!("\n| run | wall | peak RSS | output |");
    println!("|---|---|---|---|");
    for (name, a) in runs {
        let (wall, rss, out) = timed(&config, &a);
        println!("| {name} | {wall} | {rss} | {out} |");
    }
    if kept.is_none() {
        drop(tmp);
    }
}

fn args(a: &[&str], out: &Path) -> Vec<String> {
    let mut v: Vec<String> = a.iter().map(|s| s.to_string()).collect();
    v.push(out.to_string_lossy().into_owned());
    v
}

/// Runs the binary under `/usr/bin/time -v`; returns wall time, peak RSS and the first line
/// of its output.
fn timed(config: &Path, a: &[String]) -> (String, String, String) {
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(BIN)
        .args(a)
        .arg("--config")
        .arg(config)
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
    let stdout = String::from_utf8_lossy(&out.stdout);
    let said = stdout
        .lines()
        .next()
        .or_else(|| stderr.lines().find(|l| l.starts_with("exported")))
        .unwrap_or("")
        .to_string();
    (
        field("Elapsed (wall clock) time (h:mm:ss or m:ss):"),
        rss,
        said,
    )
}

fn write_config(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = std::fs::read_to_string(root.join("policies/example.toml")).expect("example");
    let mut cfg: toml::Table = toml::from_str(&example).expect("example parses");
    let mut directory = std::fs::read_to_string(root.join("policies/example-directory.csv"))
        .expect("example directory");
    directory.push_str(&format!(
        "pupil,Target Pupil,{TARGET},{TARGET_PERSONAL},,2011-02-02,current\n"
    ));
    let dpath = dir.join("directory.csv");
    std::fs::write(&dpath, directory).expect("write the directory");
    let set = |cfg: &mut toml::Table, section: &str, key: &str, v: String| {
        if let Some(t) = cfg.get_mut(section).and_then(|t| t.as_table_mut()) {
            t.insert(key.into(), toml::Value::String(v));
        }
    };
    set(
        &mut cfg,
        "school",
        "directory",
        dpath.to_string_lossy().into_owned(),
    );
    set(
        &mut cfg,
        "storage",
        "state_dir",
        dir.join("state").to_string_lossy().into_owned(),
    );
    let path = dir.join("schoolgate.toml");
    std::fs::write(&path, toml::to_string(&cfg).expect("serialise")).expect("write config");
    path
}

/// Appends records `from + 1 ..= to`: a year of mail (one record every 30 s from
/// 2025-06-01), staff writing to parents and pupils; two in 1,000 involve the target
/// pupil (one by school, one by personal address), one in 50 is flagged.
fn fill(state: &Path, from: u64, to: u64) {
    let mut backend = SqliteBackend::open(state).expect("open the database");
    let start = jiff::Timestamp::from_second(1_748_736_000).expect("2025-06-01");
    let mut batch: Vec<AuditRecord> = Vec::with_capacity(5000);
    for i in from + 1..=to {
        let time = start + jiff::SignedDuration::from_secs(i as i64 * 30);
        let staff = format!("staff{}@example-academy.sch.uk", i % 150);
        let rcpt = match i % 1000 {
            0 => TARGET.to_string(),
            500 => TARGET_PERSONAL.to_string(),
            _ if i % 3 == 0 => format!("pupil{}@pupils.example-academy.sch.uk", i % 1200),
            _ => format!("parent{}@example.org", i % 5000),
        };
        let flagged = i % 50 == 0;
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
            flags: if flagged {
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
        if batch.len() == batch.capacity() || i == to {
            let refs: Vec<&AuditRecord> = batch.iter().collect();
            backend.append_chained(&refs).expect("append");
            batch.clear();
        }
    }
}
