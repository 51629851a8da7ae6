//! Issue 15 item 11: run outside systemd, from a shell whose umask is 022, schoolgate writes
//! nothing another user of the machine can read: the database with its -wal and -shm files,
//! the state folders, the quarantine, the evidence, the outbox, and the files the network
//! manager writes with `quarantine export --out`, `audit export --out` and `check --out`.
//!
//! This test binary holds this one test, and sets its own umask to 022 first: the gateway and
//! every command it runs inherit it, as they would from a login shell.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::smtp::Client;
use common::{Gateway, plain_message};

const FROM: &str = "t.baker@example-academy.sch.uk";
const PUPIL_PERSONAL: &str = "jamie.smith2010@gmail.com";
const COUNTY: &str = "admissions@county.gov.example";

fn class_list_csv() -> Vec<u8> {
    let mut csv = String::from("Name,UPN,Date of birth,Form\r\n");
    for n in 0..30 {
        csv.push_str(&format!(
            "Pupil{n} Surname{n},{},{:02}/0{}/2014,7B\r\n",
            common::upn(100 + n),
            n % 28 + 1,
            n % 9 + 1
        ));
    }
    csv.into_bytes()
}

/// Every file and folder under `root` (itself included), with its permission bits.
fn walk(root: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        out.push((p.clone(), meta.permissions().mode() & 0o777, meta.is_dir()));
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn nothing_is_world_readable_under_umask_022() {
    // SAFETY: umask(2) only sets this process's file-creation mask and cannot fail; this binary
    // runs this one test, so no other thread is creating files with the mask it had.
    unsafe { libc::umask(0o022) };
    let probe = tempfile::tempdir().unwrap();
    std::fs::write(probe.path().join("probe"), b"x").unwrap();
    assert_eq!(
        mode(&probe.path().join("probe")),
        0o644,
        "the umask is 022 here, so a plain file would be world-readable"
    );

    let gw = Gateway::start(|_| {});
    let mut c = Client::ready(gw.port);
    // Flagged (pupil-personal-address): delivered to the outbox, evidence kept, alert queued.
    let m = plain_message(FROM, PUPIL_PERSONAL, "Homework", "m1@test", "See you.");
    let t = c.send(FROM, "", &[PUPIL_PERSONAL], &m).unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
    // A class list in clear: held in the quarantine.
    let m = common::message_with_attachment(
        (FROM, COUNTY),
        "Year 7 class list",
        "m2@test",
        ("7B class list.csv", "text/csv"),
        &class_list_csv(),
    );
    let t = c.send(FROM, "", &[COUNTY], &m).unwrap();
    let text = t.reply.text();
    assert!(text.contains("held for review"), "{text}");
    let id = text.rsplit(' ').next().unwrap().trim().to_string();

    // The accounts `--as` names (created under the same umask: the database stays private).
    gw.add_user(
        "netman",
        &["network-manager"],
        "correct horse battery staple",
    );
    gw.add_user("dsl", &["dsl"], "correct horse battery staple");
    let out_dir = gw.dir.path().join("exports");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let held_copy = out_dir.join("held.eml");
    let trail = out_dir.join("trail.csv");
    let checked = out_dir.join("checked.eml");
    let message = out_dir.join("message.eml");
    std::fs::write(&message, &m).unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_string();
    gw.cli_ok(&[
        "quarantine",
        "export",
        &id,
        "--out",
        &p(&held_copy),
        "--as",
        "netman",
    ]);
    gw.cli_ok(&[
        "audit",
        "export",
        "--format",
        "csv",
        "--out",
        &p(&trail),
        "--as",
        "dsl",
    ]);
    gw.cli_ok(&["check", &p(&message), "--out", &p(&checked)]);
    for f in [&held_copy, &trail, &checked] {
        assert_eq!(mode(f), 0o600, "{} (written with --out)", f.display());
    }

    // The gateway is still running: the database's -wal and -shm files are there.
    let db = gw.state_dir.join("schoolgate.db");
    let wanted = [
        db.clone(),
        db.with_extension("db-wal"),
        db.with_extension("db-shm"),
        gw.state_dir.join("quarantine"),
        gw.state_dir.join(format!("quarantine/{id}.eml")),
        gw.state_dir.join("evidence"),
    ];
    let state = walk(&gw.state_dir);
    for w in &wanted {
        assert!(
            state.iter().any(|(p, _, _)| p == w),
            "{} should exist; found {:?}",
            w.display(),
            state.iter().map(|(p, _, _)| p).collect::<Vec<_>>()
        );
    }
    assert!(
        state
            .iter()
            .any(|(p, _, dir)| !dir && p.starts_with(gw.state_dir.join("evidence"))),
        "the evidence of the flagged message is kept"
    );
    let mut wrong = Vec::new();
    for (p, m, dir) in &state {
        let want = if *dir { 0o700 } else { 0o600 };
        if *m != want {
            wrong.push(format!("{} is {m:o}, not {want:o}", p.display()));
        }
    }
    // The outbox is a Maildir a pick-up job of the same group may read: never other users.
    let outbox = walk(&gw.outbox_dir);
    assert!(
        outbox
            .iter()
            .any(|(p, _, dir)| !dir && p.starts_with(gw.outbox_dir.join("new"))),
        "the flagged message was delivered to the outbox"
    );
    for (p, m, _) in &outbox {
        if m & 0o007 != 0 {
            wrong.push(format!("{} is {m:o}: other users can read it", p.display()));
        }
    }
    assert!(wrong.is_empty(), "under umask 022:\n{}", wrong.join("\n"));
}
