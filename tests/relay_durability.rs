//! The README's promise that the client hears 250 only once what it answers for is on disk: the
//! audit record (and the outbox copy) of a delivered message, the quarantine file of a held one.
//! A SIGKILL (tests/relay_crash.rs) leaves the page cache behind, so it cannot tell a write from
//! a write that reached the disk; this watches the gateway's system calls instead. strace,
//! attached to the running gateway, logs in order every fsync/fdatasync (with the file it was
//! for) and everything written to a socket; between the 354 that starts the message's data and
//! the 250 that answers it, the fsyncs of the files that answer for it must have returned.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::smtp::Client;
use common::{Gateway, plain_message, require_tool, set};

const FROM: &str = "t.baker@example-academy.sch.uk";
const PARENT: &str = "parent@example.org";
const PUPIL: &str = "jamie.smith2010@gmail.com";

/// One system call as strace logged it: its name, whether this line is where it started or
/// where it returned (a call another thread interrupts is logged in two halves), and the line.
struct Call<'a> {
    name: &'a str,
    starts: bool,
    returns: bool,
    line: &'a str,
}

fn parse(log: &str) -> Vec<Call<'_>> {
    let mut calls = Vec::new();
    for line in log.lines() {
        // "PID name(args) = r", "PID name(args <unfinished ...>", "PID <... name resumed>…".
        let rest = line.split_once(' ').map_or(line, |(pid, rest)| {
            if pid.chars().all(|c| c.is_ascii_digit()) {
                rest.trim_start()
            } else {
                line
            }
        });
        if let Some(resumed) = rest.strip_prefix("<... ") {
            if let Some((name, _)) = resumed.split_once(" resumed>") {
                calls.push(Call {
                    name,
                    starts: false,
                    returns: true,
                    line,
                });
            }
        } else if let Some((name, _)) = rest.split_once('(')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            calls.push(Call {
                name,
                starts: true,
                returns: !rest.contains("<unfinished ...>"),
                line,
            });
        }
    }
    calls
}

fn is_socket_write(c: &Call<'_>) -> bool {
    c.starts && matches!(c.name, "write" | "writev" | "sendto" | "sendmsg")
}

fn is_sync_of(c: &Call<'_>, path_part: &str) -> bool {
    c.returns && matches!(c.name, "fsync" | "fdatasync") && c.line.contains(path_part)
}

/// Checks that, before the reply containing `reply_words` was written, and after the 354 of
/// that message, an fsync of a file whose path contains each of `synced` returned.
fn assert_synced_before_reply(log: &str, reply_words: &str, synced: &[&str]) {
    let calls = parse(log);
    let reply = calls
        .iter()
        .position(|c| {
            is_socket_write(c) && c.line.contains("\"250 ") && c.line.contains(reply_words)
        })
        .unwrap_or_else(|| panic!("no 250 with {reply_words:?} written in the trace:\n{log}"));
    let data = calls[..reply]
        .iter()
        .rposition(|c| is_socket_write(c) && c.line.contains("\"354 "))
        .unwrap_or_else(|| panic!("no 354 before the 250 with {reply_words:?}:\n{log}"));
    let window = &calls[data..reply];
    for part in synced {
        assert!(
            window.iter().any(|c| is_sync_of(c, part)),
            "no fsync of a {part} file returned between the 354 and the 250 {reply_words:?}; \
             the calls in between:\n{}",
            window.iter().map(|c| c.line).collect::<Vec<_>>().join("\n")
        );
    }
}

/// strace attached to every thread of the gateway, logging to `log`.
fn attach(gw: &Gateway, log: &Path) -> Child {
    Command::new(require_tool("strace"))
        .args(["-f", "-y", "-s", "200", "-o"])
        .arg(log)
        .args([
            "-e",
            "trace=fsync,fdatasync,write,writev,sendto,sendmsg",
            "-p",
        ])
        .arg(gw.pid().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start strace")
}

#[test]
fn the_250_comes_after_the_fsyncs_that_answer_for_it() {
    let gw = Gateway::start(|cfg| {
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
    });
    let log = gw.dir.path().join("strace.log");
    let mut strace = attach(&gw, &log);
    let read = || std::fs::read_to_string(&log).unwrap_or_default();

    // Attached once a NOOP's answer shows in the trace (strace attaches thread by thread).
    let mut c = Client::ready(gw.port);
    let attached = gw.wait_for(Duration::from_secs(60), || {
        let _ = c.cmd("NOOP");
        read().contains("\"250 ")
    });
    assert!(attached, "strace did not attach within 60 s:\n{}", read());

    let m = plain_message(FROM, PARENT, "Report", "d1@test", "Termly report.");
    let t = c.send(FROM, "", &[PARENT], &m).unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
    let delivered_reply = t.reply.text();
    let m = plain_message(FROM, PUPIL, "Homework", "d2@test", "See you.");
    let t = c.send(FROM, "", &[PUPIL], &m).unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
    assert!(t.reply.text().contains("held for review"), "{}", t.reply);
    c.quit();

    // Detach (SIGTERM makes strace let go of the gateway, which runs on) and read the trace.
    let stopped = Command::new("kill")
        .args(["-TERM", &strace.id().to_string()])
        .status()
        .expect("run kill");
    assert!(stopped.success());
    let _ = strace.wait();
    let trace = read();

    // Delivered: the outbox copy and the audit record (the database's WAL) are on disk first.
    let queued = delivered_reply
        .split_whitespace()
        .last()
        .expect("a queue id in the reply");
    assert_synced_before_reply(&trace, queued, &["/outbox/", "schoolgate.db"]);
    // Held: the quarantine file and the audit record are on disk first.
    assert_synced_before_reply(
        &trace,
        "held for review",
        &["/quarantine/", "schoolgate.db"],
    );
    // The gateway lived through it all.
    Client::ready(gw.port).quit();
}
