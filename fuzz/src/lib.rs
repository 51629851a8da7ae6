//! What each fuzz target feeds schoolgate and what it asserts about the answer.
//!
//! Shared by the fuzz targets (`fuzz/fuzz_targets/`) and by `tests/fuzz_regressions.rs`, which
//! includes this file as a module: a reproducer kept in `fixtures/fuzz/<target>/` goes through
//! exactly the function the fuzzer found it with, in plain `cargo test`.
//!
//! Panics: the library contains the panics of the parsers it uses (lopdf, cfb, mail-parser) with
//! `catch_unwind`, and production builds unwind. [`contained_panics_are_fine`] keeps the fuzzer
//! going through those, and stops it on any panic raised in schoolgate's own code, caught or not.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use schoolgate::config::Config;
use schoolgate::directory::Directory;
use schoolgate::envelope::Envelope;
use schoolgate::policy;
use schoolgate::policy::sensitive::encryption;
use schoolgate::policy::sensitive::extract::{self, Contents};
use schoolgate::policy::sensitive::limits::Budget;
use schoolgate::smtp::server::Relay;

/// The example configuration every target runs under, as shipped.
const EXAMPLE_CONFIG: &str = include_str!("../../policies/example.toml");
/// The example directory it names.
const EXAMPLE_DIRECTORY: &[u8] = include_bytes!("../../policies/example-directory.csv");

/// Installs a panic hook that aborts on a panic raised in schoolgate's own code (a bug, even if
/// `catch_unwind` contains it), and lets a third-party parser's panic unwind silently to the
/// library's `catch_unwind` (by design; if nothing catches it, the target aborts all the same).
pub fn contained_panics_are_fine() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info.location().map(|l| l.file()).unwrap_or("");
            let third_party = file.contains("/.cargo/registry/") || file.starts_with("/rustc/");
            if !third_party {
                default(info);
                std::process::abort();
            }
        }));
    });
}

/// Runs `check`, aborting (a crash libFuzzer records) if a panic escapes it.
pub fn must_not_panic(check: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        eprintln!("a panic escaped the check: {message}");
        std::process::abort();
    }
}

/// The example config and directory, parsed once.
fn example() -> &'static (Config, Directory) {
    static EXAMPLE: OnceLock<(Config, Directory)> = OnceLock::new();
    EXAMPLE.get_or_init(|| {
        let mut config = Config::parse(Path::new("policies/example.toml"), EXAMPLE_CONFIG)
            .expect("the example config parses");
        // Well inside libFuzzer's -timeout=10: a file that runs past it ignored its budget.
        config.sensitive.limits.max_scan_time =
            schoolgate::config::HumanDuration(std::time::Duration::from_secs(3));
        let directory = Directory::parse(
            Path::new("policies/example-directory.csv"),
            EXAMPLE_DIRECTORY,
            &config.school.staff_roles,
        )
        .expect("the example directory parses");
        (config, directory)
    })
}

// ---------------------------------------------------------------------------------------------
// SMTP session

/// A relay over the example config, its state (audit database, outbox) in a fresh directory,
/// on one current-thread runtime for the life of the process.
struct SessionBench {
    runtime: tokio::runtime::Runtime,
    relay: Arc<Relay>,
    state: PathBuf,
    outbox: PathBuf,
    runs: std::sync::atomic::AtomicU64,
    /// Keeps the relay's shutdown channel open.
    _stop: tokio::sync::watch::Sender<bool>,
}

/// Where the SMTP target keeps its state: `$SCHOOLGATE_FUZZ_DIR` (scripts/fuzz makes one on
/// tmpfs and removes it), else /dev/shm when there is one (the audit trail fsyncs every
/// message), else the system's temporary directory.
fn state_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("SCHOOLGATE_FUZZ_DIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn session_bench() -> &'static SessionBench {
    static BENCH: OnceLock<SessionBench> = OnceLock::new();
    BENCH.get_or_init(|| {
        let state = state_root().join(format!("schoolgate-fuzz-smtp-{}", std::process::id()));
        std::fs::create_dir_all(&state).expect("the fuzz state directory can be made");
        let outbox = state.join("outbox");
        let text = EXAMPLE_CONFIG
            .replace(
                "next_hop = \"outbox:var/outbox\"",
                &format!("next_hop = \"outbox:{}\"", outbox.display()),
            )
            .replace(
                "state_dir = \"var\"",
                &format!("state_dir = \"{}\"", state.display()),
            );
        let config = Config::parse(Path::new("fuzz.toml"), &text).expect("the fuzz config parses");
        assert_eq!(
            config.storage.state_dir, state,
            "the example config's state_dir moved"
        );
        let (example_config, directory) = example();
        let mut config = config;
        config.sensitive.limits = example_config.sensitive.limits.clone();
        let directory = directory.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let relay = runtime.block_on(async {
            let audit = schoolgate::store::AuditLog::start(Box::new(
                schoolgate::store::sqlite::SqliteBackend::open(&state).expect("audit database"),
            ))
            .expect("audit writer");
            let hop = schoolgate::smtp::next_hop::NextHop::new(
                &config.relay.next_hop.0,
                None,
                &config.relay.hostname,
                config.relay.next_hop_timeout.0,
            )
            .expect("the outbox next hop");
            let answered = schoolgate::store::answered::RetryLookup::start(&config.storage)
                .expect("the retry look-up thread");
            Relay::new(
                Arc::new(config),
                directory,
                Vec::new(),
                hop,
                audit,
                answered,
                None,
                stop_rx,
            )
        });
        SessionBench {
            runtime,
            relay,
            state,
            outbox,
            runs: Default::default(),
            _stop: stop,
        }
    })
}

/// Where the SMTP target's relay keeps its state (for a test to remove when done).
pub fn smtp_state_dir() -> PathBuf {
    session_bench().state.clone()
}

/// Feeds `data` to a real session as one client's byte stream (then end of input) and returns
/// everything the relay answered.
pub fn smtp_transcript(data: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bench = session_bench();
    // Keeps the outbox from filling the disk over millions of runs.
    let n = bench
        .runs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if n % 5000 == 4999 {
        let _ = std::fs::remove_dir_all(bench.outbox.join("new"));
        let _ = std::fs::create_dir_all(bench.outbox.join("new"));
        let _ = std::fs::remove_dir_all(bench.outbox.join("envelopes"));
        let _ = std::fs::create_dir_all(bench.outbox.join("envelopes"));
    }
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("a socket address");
    bench.runtime.block_on(async {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let session = schoolgate::smtp::session::run_plain(Arc::clone(&bench.relay), server, peer);
        let send = async {
            // The session may stop reading (QUIT, too many errors): the rest is not sent.
            let _ = client_write.write_all(data).await;
            let _ = client_write.shutdown().await;
            drop(client_write);
        };
        let receive = async {
            let mut replies = Vec::new();
            let _ = client_read.read_to_end(&mut replies).await;
            replies
        };
        let session = async {
            session.await;
        };
        let (_, _, replies) = tokio::join!(session, send, receive);
        replies
    })
}

/// The SMTP target: any byte stream from a client gets well-formed replies, a greeting first
/// and nothing after the goodbye.
pub fn smtp_session(data: &[u8]) {
    let replies = smtp_transcript(data);
    assert!(
        replies.ends_with(b"\r\n"),
        "the replies end mid-line: {:?}",
        String::from_utf8_lossy(&replies)
    );
    let text = std::str::from_utf8(&replies).expect("replies are UTF-8");
    let lines: Vec<&str> = text
        .strip_suffix("\r\n")
        .unwrap_or(text)
        .split("\r\n")
        .collect();
    assert!(lines[0].starts_with("220 "), "no greeting: {text:?}");
    for (i, line) in lines.iter().enumerate() {
        let b = line.as_bytes();
        assert!(
            b.len() >= 4
                && (b'2'..=b'5').contains(&b[0])
                && b[1].is_ascii_digit()
                && b[2].is_ascii_digit()
                && (b[3] == b' ' || b[3] == b'-'),
            "reply line {i} is not a reply: {line:?} in {text:?}"
        );
        assert!(
            !line.contains(['\r', '\n']),
            "a bare CR or LF inside reply line {i}: {line:?}"
        );
        assert!(
            !line.starts_with("221 ") || i + 1 == lines.len(),
            "replies after the goodbye: {text:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// MIME rewrite

/// The policy on any message: the rewritten message parses, and every attachment (a part that
/// is not text) leaves byte for byte as it came.
pub fn mime_rewrite(data: &[u8]) {
    use mail_parser::{MessageParser, MimeHeaders, PartType};
    let (config, directory) = example();
    let envelope = Envelope {
        mail_from: "t.baker@example-academy.sch.uk".into(),
        rcpt_to: vec![
            "parent@example.org".into(),
            "jamie.smith2010@gmail.com".into(),
        ],
        smtputf8: false,
        body_8bit: true,
    };
    // A Tuesday in term, after contact hours: every contact rule can match.
    let now: jiff::Timestamp = "2026-03-10T19:30:00Z".parse().expect("a timestamp");
    let decision = policy::evaluate(&envelope, data, config, directory, now);
    // Parts nested past the MIME walk's limit are held, never passed unread (issue 15), unless
    // the whole message is encrypted for its recipient.
    let root = schoolgate::mime::tree::scan(data);
    if (root.any_too_deep() || root.any_too_many())
        && !root.mime_type().contains("encrypted")
        && !root.mime_type().contains("pkcs7")
    {
        assert_ne!(
            decision.verdict,
            policy::Verdict::Deliver,
            "parts past the walk's limits were delivered unread"
        );
    }
    let out = decision.outgoing(b"", data);
    if decision.patch.is_none() {
        assert_eq!(out, data, "no edits, yet the message changed");
        return;
    }
    // The original as mail-parser reads it; a parser panic here is mail-parser's, not ours
    // (it has one on some nested multipart/report messages: "Invalid part ID, could not find
    // multipart"), and then the rewrite cannot be held to it either.
    let original = std::panic::catch_unwind(|| MessageParser::new().parse(data));
    let Ok(original) = original else { return };
    // mail-parser's own debug assertions (fuzz builds have them on) are not schoolgate's
    // failures: a panic in it proves nothing either way.
    let parsed = std::panic::catch_unwind(|| MessageParser::new().parse(&out).is_some());
    assert!(
        parsed.unwrap_or(true),
        "the rewritten message does not parse (disclaimer {:?})",
        decision.disclaimer
    );
    let Some(original) = original else { return };
    // Known and reported, not asserted here: a line in a header section that is neither a field
    // nor a continuation ends the header for schoolgate (src/mime/header.rs, as Postfix reads
    // it), while mail-parser skips it and reads on, so the two see different parts.
    let junk_in_a_header = original.parts.iter().any(|part| {
        let (start, end) = (part.offset_header as usize, part.offset_body as usize);
        data.get(start..end.max(start))
            .is_some_and(|header| header_has_a_stray_line(header, start == 0))
    });
    if junk_in_a_header {
        return;
    }
    for (i, part) in original.parts.iter().enumerate() {
        if !matches!(part.body, PartType::Binary(_) | PartType::InlineBinary(_)) {
            continue;
        }
        // A Content-Type that is not `type/subtype` is read as text/plain (RFC 2045 §5.2), as
        // schoolgate does; mail-parser keeps the junk as a type and calls the part binary.
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
        };
        let declared = part
            .content_type()
            .is_some_and(|ct| token(&ct.c_type) && ct.c_subtype.as_deref().is_some_and(token));
        if !declared {
            continue;
        }
        let (start, end) = (part.offset_body as usize, part.offset_end as usize);
        let Some(raw) = data.get(start..end.max(start)) else {
            continue;
        };
        assert!(
            memchr::memmem::find(&out, raw).is_some(),
            "attachment part {i} ({start}..{end}) changed by the rewrite (disclaimer {:?})",
            decision.disclaimer
        );
    }
}

/// Whether `header` holds a line that is neither `name:` nor a continuation nor blank (nor, at
/// the top of a message, an mbox `From ` line).
fn header_has_a_stray_line(header: &[u8], top: bool) -> bool {
    header.split(|&b| b == b'\n').enumerate().any(|(i, line)| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line[0] == b' ' || line[0] == b'\t' {
            return false;
        }
        if i == 0 && top && line.starts_with(b"From ") {
            return false;
        }
        match memchr::memchr(b':', line) {
            Some(colon) => {
                let name = line[..colon].trim_ascii_end();
                name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b))
            }
            None => true,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Attachment extractors and encryption detection

/// What the first byte of an attachment input says it was sent as: the name and declared type
/// decide the reader when the magic bytes do not.
const SENT_AS: &[(&str, &str)] = &[
    ("file.bin", "application/octet-stream"),
    ("list.csv", "text/csv"),
    ("page.html", "text/html"),
    ("fwd.eml", "message/rfc822"),
    ("letter.rtf", "application/rtf"),
    ("notes.txt", "text/plain"),
    ("winmail.dat", "application/ms-tnef"),
    ("report.pdf", "application/pdf"),
    ("smime.p7m", "application/pkcs7-mime"),
    ("msg.asc", "application/pgp-encrypted"),
];

/// Every extractor and encryption check on any file: an answer (text, encrypted, unscannable)
/// within the budget, never a panic.
pub fn attachment(data: &[u8]) {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    let (name, mime_type) = SENT_AS[first as usize % SENT_AS.len()];
    let config = &example().0;
    let budget = Budget::new(&config.sensitive.limits);
    let mut out = Contents::default();
    let opened = extract::extract(name, name, mime_type, bytes, &budget, 1, &mut out);
    // An attached message whose parts are nested past the walk's limit is unscannable, never
    // read as far as the limit and passed (issue 15).
    if mime_type == "message/rfc822" && opened.is_ok() && out.encrypted.is_empty() {
        assert!(
            {
                let root = schoolgate::mime::tree::scan(bytes);
                !root.any_too_deep() && !root.any_too_many()
            },
            "an attached message nested too deep to read was opened"
        );
    }
    let _ = encryption::of_file(bytes);
    let params = vec![
        ("smime-type".to_string(), "enveloped-data".to_string()),
        (
            "protocol".to_string(),
            "application/pgp-encrypted".to_string(),
        ),
    ];
    let _ = encryption::of_part(mime_type, &params, name, bytes);
    let text: usize = out.texts.iter().map(|t| t.text.len()).sum();
    assert!(
        text <= 64 << 20,
        "{text} bytes of text from a {}-byte file",
        bytes.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Config and directory

/// The config parser (first byte even) or the directory CSV parser (odd) on any text: a value
/// or an error naming the file and what to do, never a panic.
pub fn config_or_directory(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let path = Path::new("fuzz-input");
    if first % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        if let Err(e) = Config::parse(path, text) {
            assert!(e.to_string().contains("fuzz-input"), "{e}");
        }
    } else {
        let roles = &example().0.school.staff_roles;
        if let Err(e) = Directory::parse(path, rest, roles) {
            assert!(e.to_string().contains("fuzz-input"), "{e}");
        }
    }
}
