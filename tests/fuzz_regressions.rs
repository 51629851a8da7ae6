//! Every input a fuzz target found a bug with (`fixtures/fuzz/<target>/`), and the small
//! hand-made seeds (`fuzz/seeds/<target>/`), replayed through the very check the fuzzer runs
//! (`fuzz/src/lib.rs`, included here), so a fixed crash stays fixed in plain `cargo test`.

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod fuzz_checks;

use std::path::{Path, PathBuf};

/// The files of `fixtures/fuzz/<target>/` and `fuzz/seeds/<target>/`, in name order.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        root.join("fixtures/fuzz").join(target),
        root.join("fuzz/seeds").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(
        !files.is_empty(),
        "no inputs for the {target} fuzz target in fixtures/fuzz/{target}/ or fuzz/seeds/{target}/"
    );
    files
}

/// Runs `check` on every input of `target`, naming the file that fails.
fn replay(target: &str, check: fn(&[u8])) {
    for path in inputs(target) {
        let bytes = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&bytes));
        assert!(outcome.is_ok(), "{} fails its fuzz check", path.display());
    }
}

#[test]
fn smtp_session_inputs() {
    replay("smtp_session", fuzz_checks::smtp_session);
    // The target reaches the hand-off: a pipelined message is delivered into the outbox.
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/smtp_session/pipelined");
    let replies = fuzz_checks::smtp_transcript(&std::fs::read(seed).unwrap());
    let replies = String::from_utf8(replies).unwrap();
    assert!(
        replies.contains("\r\n250 2.0.0 Ok: queued as "),
        "{replies}"
    );
    assert!(replies.ends_with(" Bye\r\n"), "{replies}");
    std::fs::remove_dir_all(fuzz_checks::smtp_state_dir()).unwrap();
}

#[test]
fn the_access_seed_is_refused_where_it_should_be() {
    // An outside sender, a UTF-8 address without SMTPUTF8, a control character in a quoted
    // local part, a NUL in the message: each refused at its own step (issue 15, items 7, 12).
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/smtp_session/access-strict");
    let replies = fuzz_checks::smtp_transcript(&std::fs::read(seed).unwrap());
    let replies = String::from_utf8(replies).unwrap();
    let codes: Vec<&str> = replies
        .split("\r\n")
        .filter(|l| l.len() > 4 && l.as_bytes()[3] == b' ')
        .map(|l| &l[..3])
        .collect();
    assert_eq!(
        codes,
        [
            "220", "250", "550", "553", "250", "250", "250", "553", "553", "354", "554", "250",
            "250", "250", "221"
        ],
        "{replies}"
    );
    assert!(replies.contains("554 5.6.0 "), "{replies}");
    assert!(replies.contains("550 5.7.1 "), "{replies}");
}

#[test]
fn mime_rewrite_inputs() {
    replay("mime_rewrite", fuzz_checks::mime_rewrite);
}

#[test]
fn attachment_inputs() {
    replay("attachment", fuzz_checks::attachment);
}

#[test]
fn config_directory_inputs() {
    replay("config_directory", fuzz_checks::config_or_directory);
}
