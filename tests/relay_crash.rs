//! Crash safety: while swaks sends 200 messages (each retried until it hears 250), the gateway
//! is killed with SIGKILL at random moments and restarted on the same port and state.
//! Afterwards every message the client saw a 250 for must be in the outbox exactly once and
//! intact, have a `delivered` audit record, and the audit chain must verify.
//!
//! The run is repeatable: set SCHOOLGATE_CRASH_SEED to replay a seed printed by a failure.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const FROM: &str = HEADTEACHER;
const TO: &str = "parent@example.org";
const MESSAGES: usize = 200;
const SENDERS: usize = 4;
const MAX_ATTEMPTS: u32 = 20;

fn message(seq: usize) -> Vec<u8> {
    let mut rng = Lcg::new(seq as u64);
    // 1 KB to 200 KB, so kills land in every phase of a transaction, DATA included.
    let lines = rng.range(14, 2800) as usize;
    let mut body = String::new();
    for n in 0..lines {
        if n % 50 == 7 {
            body.push('.');
        }
        body.push_str(&format!(
            "message {seq} line {n}: the quick brown fox jumps over the lazy dog {}\n",
            rng.next_u32()
        ));
    }
    let mut m = plain_message(
        "Margaret Hughes <head@example-academy.sch.uk>",
        TO,
        &format!("Crash test message {seq}"),
        &format!("crash-{seq}@example-academy.sch.uk"),
        &body,
    );
    // X-Seq goes right after the headers plain_message wrote.
    let at = m
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end")
        + 2;
    m.splice(at..at, format!("X-Seq: {seq}\r\n").into_bytes());
    m
}

#[derive(Debug)]
struct Sent {
    attempts: u32,
}

#[test]
fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    let seed: u64 = std::env::var("SCHOOLGATE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20250303);
    eprintln!("crash test seed {seed} (set SCHOOLGATE_CRASH_SEED={seed} to replay)");
    require_tool("swaks");

    let gw = Gateway::start(relay_only);
    let port = gw.port;
    let files_dir = tempfile::tempdir().expect("temporary directory for the messages");
    let messages: Vec<Vec<u8>> = (0..MESSAGES).map(message).collect();
    let files: Vec<PathBuf> = messages
        .iter()
        .enumerate()
        .map(|(seq, m)| swaks_data_file(files_dir.path(), &format!("{seq}.swaks"), m))
        .collect();

    let gw = Arc::new(Mutex::new(gw));
    let finished = Arc::new(AtomicUsize::new(0));
    let failed_attempts = Arc::new(AtomicUsize::new(0));
    let accepted: Arc<Mutex<BTreeMap<usize, Sent>>> = Arc::default();
    let gave_up: Arc<Mutex<Vec<String>>> = Arc::default();
    let started = Instant::now();

    let killer = {
        let (gw, finished) = (gw.clone(), finished.clone());
        thread::spawn(move || {
            let mut rng = Lcg::new(seed);
            let kills = rng.range(10, 20) as usize;
            let mut log = Vec::new();
            for k in 1..=kills {
                // Spread the kills over the whole run, each at a random moment.
                let target = k * MESSAGES / (kills + 1);
                while finished.load(Ordering::SeqCst) < target {
                    thread::sleep(Duration::from_millis(5));
                }
                thread::sleep(Duration::from_millis(rng.range(50, 400)));
                let mut g = gw.lock().unwrap_or_else(|e| e.into_inner());
                g.kill9();
                log.push(format!(
                    "kill {k} at {:?} after {} messages",
                    started.elapsed(),
                    finished.load(Ordering::SeqCst)
                ));
                // Sometimes leave the port closed for a moment, as a real restart would.
                thread::sleep(Duration::from_millis(rng.range(0, 100)));
                g.restart();
            }
            log
        })
    };

    let senders: Vec<_> = (0..SENDERS)
        .map(|t| {
            let files = files.clone();
            let (finished, failed_attempts, accepted, gave_up) = (
                finished.clone(),
                failed_attempts.clone(),
                accepted.clone(),
                gave_up.clone(),
            );
            thread::spawn(move || {
                for seq in (t..MESSAGES).step_by(SENDERS) {
                    let mut last = String::new();
                    let mut ok = false;
                    for attempt in 1..=MAX_ATTEMPTS {
                        let run = swaks(&[
                            "--server".to_string(),
                            format!("127.0.0.1:{port}"),
                            "--from".into(),
                            FROM.into(),
                            "--to".into(),
                            TO.into(),
                            "--data".into(),
                            format!("@{}", files[seq].display()),
                            "--no-data-fixup".into(),
                        ]);
                        if run.ok() {
                            accepted.lock().unwrap().insert(seq, Sent { attempts: attempt });
                            ok = true;
                            break;
                        }
                        failed_attempts.fetch_add(1, Ordering::SeqCst);
                        last = run.transcript;
                        thread::sleep(Duration::from_millis((50 * attempt as u64).min(500)));
                    }
                    if !ok {
                        gave_up.lock().unwrap().push(format!(
                            "message {seq}: no 250 after {MAX_ATTEMPTS} attempts; last transcript:\n{last}"
                        ));
                    }
                    finished.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    for s in senders {
        s.join().expect("a sender thread panicked");
    }
    let kill_log = match killer.join() {
        Ok(log) => log,
        Err(e) => std::panic::resume_unwind(e),
    };
    let elapsed = started.elapsed();
    let gw = Arc::try_unwrap(gw)
        .ok()
        .expect("the gateway is no longer shared")
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "{} kills, {} failed attempts, {} messages in {elapsed:?}",
        kill_log.len(),
        failed_attempts.load(Ordering::SeqCst),
        MESSAGES
    );

    let gave_up = gave_up.lock().unwrap().clone();
    assert!(
        gave_up.is_empty(),
        "{} messages never got a 250 (seed {seed}):\n{}",
        gave_up.len(),
        gave_up.join("\n\n")
    );
    assert!(
        kill_log.len() >= 10,
        "only {} kills happened; the test did not test crashes",
        kill_log.len()
    );
    assert!(
        failed_attempts.load(Ordering::SeqCst) > 0,
        "no send was ever interrupted by a kill; the test did not test crashes:\n{}",
        kill_log.join("\n")
    );
    let accepted = accepted.lock().unwrap();

    // The outbox: every accepted message exactly once, byte for byte; nothing torn.
    let mut problems = Vec::new();
    let mut by_seq: BTreeMap<usize, usize> = BTreeMap::new();
    for m in gw.outbox_messages() {
        let Some(seq) = m.header("X-Seq").and_then(|s| s.parse::<usize>().ok()) else {
            problems.push(format!(
                "outbox file {} has no X-Seq header (torn or foreign): {:?}",
                m.name,
                String::from_utf8_lossy(&m.bytes[..m.bytes.len().min(300)])
            ));
            continue;
        };
        *by_seq.entry(seq).or_default() += 1;
        if seq >= MESSAGES {
            problems.push(format!(
                "outbox file {} has X-Seq {seq}, which was never sent",
                m.name
            ));
            continue;
        }
        if let Err(e) = check_relayed_intact(&messages[seq], &m.bytes) {
            problems.push(format!("message {seq} ({}): {e}", m.name));
        }
        if m.envelope.is_none() {
            problems.push(format!(
                "outbox file {} (message {seq}) has no envelope",
                m.name
            ));
        }
    }
    for (seq, sent) in accepted.iter() {
        match by_seq.get(seq).copied().unwrap_or(0) {
            1 => {}
            0 => problems.push(format!(
                "message {seq} got a 250 (attempt {}) but is not in the outbox",
                sent.attempts
            )),
            n => problems.push(format!(
                "message {seq} is in the outbox {n} times (250 on attempt {})",
                sent.attempts
            )),
        }
    }
    for (seq, n) in &by_seq {
        if *n > 1 && !accepted.contains_key(seq) {
            problems.push(format!(
                "message {seq} (never acknowledged) is in the outbox {n} times"
            ));
        }
    }

    // The audit trail: a delivered record for each, and an unbroken chain.
    let rows = gw.audit_records();
    if let Err(e) = verify_audit_chain(&rows) {
        problems.push(format!("the audit chain does not verify: {e}"));
    }
    let delivered: Vec<&AuditRow> = rows
        .iter()
        .filter(|r| r.kind == "message" && r.field("outcome").as_deref() == Some("delivered"))
        .collect();
    for &seq in accepted.keys() {
        let sha = sha256_hex(&messages[seq]);
        let id = format!("crash-{seq}@example-academy.sch.uk");
        let found = delivered.iter().any(|r| {
            r.field("sha256_received").as_deref() == Some(sha.as_str())
                || r.field("message_id").is_some_and(|m| m.contains(&id))
        });
        if !found {
            problems.push(format!(
                "message {seq} got a 250 but has no delivered audit record"
            ));
        }
    }

    eprintln!(
        "outbox: {} files; audit: {} records, {} of them delivered message records",
        by_seq.values().sum::<usize>(),
        rows.len(),
        delivered.len()
    );
    assert!(
        problems.is_empty(),
        "{} problems after {} kills (seed {seed}):\n{}\n\nkills:\n{}",
        problems.len(),
        kill_log.len(),
        problems.join("\n"),
        kill_log.join("\n")
    );
}
