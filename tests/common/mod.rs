//! The harness the end-to-end tests share: a real `schoolgate serve` on loopback with its own
//! temporary config, state and outbox; readers for what it left behind (the outbox Maildir and
//! the audit database); a raw SMTP client and an in-test SMTP sink ([`smtp`]); the outside
//! tools the issue names, swaks and Postfix ([`tools`]); a raw HTTP client for the web page
//! ([`http`]); and a headless Chromium driven over WebDriver for it ([`browser`]).
//!
//! Every helper fails the test with a message that says what was expected and, for anything the
//! gateway did, its own log: a test that cannot see why it failed is only half a test.

#![allow(dead_code, unused_imports)]

pub mod browser;
pub mod http;
pub mod oidc;
pub mod pg;
pub mod smtp;
pub mod tools;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use smtp::{Client, HangUp, Reply, Sink, SinkBehaviour, SinkMessage, Stage, Transaction};
pub use tools::{Postfix, SwaksRun, require_tool, swaks, swaks_data_file};

/// The gateway binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_schoolgate");

/// The gateway binary the harness runs: [`BIN`], or `SCHOOLGATE_TEST_BIN` when set.
///
/// Worktrees of this crate that share one `CARGO_TARGET_DIR` overwrite each other's
/// `debug/schoolgate` (cargo hashes a path package relative to its workspace, so they build to
/// the same file), and a test may then start another worktree's gateway. Copying one's own
/// build aside and naming it here makes a run use exactly that binary.
pub fn bin() -> PathBuf {
    std::env::var_os("SCHOOLGATE_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BIN))
}

/// How long a gateway may take to answer its first connection.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The directory file every test config uses (absolute, so the gateway's working directory
/// does not matter).
pub fn example_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/example-directory.csv")
}

/// The shipped example config, which every test config starts from.
pub fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/example.toml")
}

/// A TCP port on 127.0.0.1 that nothing listens on right now and that no other caller in this
/// test process has been given.
///
/// The port is not held open, so it must not come from the kernel's ephemeral range: there,
/// the next `bind(0)` or outgoing connection of a test running alongside may take it before
/// the gateway or Postfix binds it (CI once saw Postfix fail with "Address already in use").
/// Ports are handed out in turn from 12000–31999, below Linux's ephemeral range (32768 up),
/// starting at an offset drawn from the process id so that two test processes rarely meet,
/// and each is proved bindable before it is returned.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 12_000;
    const SPAN: u32 = 20_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id().wrapping_mul(7919)) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        let port = (FIRST + offset) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free TCP port on 127.0.0.1 between {FIRST} and {}",
        FIRST + SPAN - 1
    )
}

/// Sets `dotted` (e.g. `"relay.next_hop"`) in `cfg`, creating tables on the way.
pub fn set(cfg: &mut toml::Table, dotted: &str, value: impl Into<toml::Value>) {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().expect("a non-empty key");
    let mut table = cfg;
    for part in parts {
        table = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap_or_else(|| panic!("config key {part} in {dotted} is not a table"));
    }
    table.insert(last.to_string(), value.into());
}

/// Removes `dotted` from `cfg` if it is there.
pub fn unset(cfg: &mut toml::Table, dotted: &str) {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().expect("a non-empty key");
    let mut table = cfg;
    for part in parts {
        match table.get_mut(part).and_then(|v| v.as_table_mut()) {
            Some(t) => table = t,
            None => return,
        }
    }
    table.remove(last);
}

/// The headteacher, who is exempt from the disclaimer: the sender of the relay tests' mail.
pub const HEADTEACHER: &str = "head@example-academy.sch.uk";

/// A config tweak for tests of the relay itself, which must see every message leave exactly
/// as it came: the disclaimer is off (empty text and html), and the headteacher is an
/// exempt address as well, so no policy rewrites what these tests send; the sensitive-attachment
/// rules are off, so none is held.
pub fn relay_only(cfg: &mut toml::Table) {
    set(
        cfg,
        "sensitive.rules.unencrypted-sensitive-attachment",
        "off",
    );
    set(cfg, "sensitive.rules.unscannable-attachment", "off");
    set(cfg, "disclaimer.text", "");
    set(cfg, "disclaimer.html", "");
    set(
        cfg,
        "disclaimer.exempt_addresses",
        toml::Value::Array(vec![HEADTEACHER.into()]),
    );
}

/// A `schoolgate serve` process on loopback with everything it owns in a temporary directory.
///
/// Its stdout and stderr go to `gateway.log` in that directory; when a test panics while a
/// `Gateway` is alive, the log is printed so the failure explains itself. Dropping it kills the
/// process.
pub struct Gateway {
    /// Holds the config, the state directory and the outbox; removed on drop.
    pub dir: tempfile::TempDir,
    /// The relay's port on 127.0.0.1.
    pub port: u16,
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    /// The outbox Maildir (meaningful only while `relay.next_hop` is the default outbox).
    pub outbox_dir: PathBuf,
    /// How many times the process has been started (1 after [`Gateway::start`]).
    pub starts: u32,
    log_path: PathBuf,
    child: Option<Child>,
    greeting: u16,
}

impl Gateway {
    /// Writes a config (the example config with test paths and ports, then `tweak`), starts the
    /// gateway and waits for its 220 greeting.
    pub fn start(tweak: impl FnOnce(&mut toml::Table)) -> Gateway {
        Self::start_expecting(tweak, 220)
    }

    /// As [`Gateway::start`], but waits for `greeting` (e.g. 554 when loopback is not an
    /// allowed client) instead of 220.
    pub fn start_expecting(tweak: impl FnOnce(&mut toml::Table), greeting: u16) -> Gateway {
        let dir = tempfile::Builder::new()
            .prefix("schoolgate-test-")
            .tempdir()
            .expect("create a temporary directory");
        let state_dir = dir.path().join("state");
        let outbox_dir = dir.path().join("outbox");
        let port = free_port();

        let text = fs::read_to_string(example_config()).expect("read policies/example.toml");
        let mut cfg: toml::Table = toml::from_str(&text).expect("policies/example.toml parses");
        set(
            &mut cfg,
            "school.directory",
            example_directory().to_string_lossy().into_owned(),
        );
        set(
            &mut cfg,
            "relay.listen",
            toml::Value::Array(vec![format!("127.0.0.1:{port}").into()]),
        );
        set(
            &mut cfg,
            "relay.next_hop",
            format!("outbox:{}", outbox_dir.display()),
        );
        set(&mut cfg, "relay.next_hop_timeout", "20s");
        set(&mut cfg, "relay.shutdown_grace", "1s");
        // Tests run side by side: no two gateways may want the same web port.
        set(&mut cfg, "web.listen", format!("127.0.0.1:{}", free_port()));
        // The out-of-hours rule depends on when the test runs (CI runs at any hour); it has
        // its own tests with a fixed clock (tests/contact_fixtures.rs), so it is off here.
        set(
            &mut cfg,
            "safeguarding.rules.out-of-hours-pupil-contact",
            "off",
        );
        set(
            &mut cfg,
            "storage.state_dir",
            state_dir.to_string_lossy().into_owned(),
        );
        // The weekly report would mail the DSL at whatever Monday 07:30 a run spans, beside
        // the mail a test counts; it has its own tests (tests/weekly_report.rs).
        set(&mut cfg, "safeguarding.weekly_report", "off");
        tweak(&mut cfg);

        let config_path = dir.path().join("schoolgate.toml");
        fs::write(
            &config_path,
            toml::to_string(&cfg).expect("serialise the test config"),
        )
        .expect("write the test config");
        let log_path = dir.path().join("gateway.log");

        let mut gateway = Gateway {
            dir,
            port,
            config_path,
            state_dir,
            outbox_dir,
            starts: 0,
            log_path,
            child: None,
            greeting,
        };
        gateway.spawn();
        gateway
    }

    /// The relay's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The `--server` argument for swaks.
    pub fn server_arg(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The process id of the running gateway.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the gateway is running").id()
    }

    /// Everything the gateway has written to stdout and stderr (across restarts).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The last `max` bytes of the log, for failure messages.
    pub fn log_tail(&self, max: usize) -> String {
        let log = self.log();
        if log.len() <= max {
            return log;
        }
        let mut cut = log.len() - max;
        while !log.is_char_boundary(cut) {
            cut += 1;
        }
        format!("[... {cut} bytes cut ...]\n{}", &log[cut..])
    }

    /// Kills the gateway with SIGKILL and reaps it. No clean-up of any kind runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // std sends SIGKILL on Unix
            let _ = child.wait();
            self.append_log(&format!(
                "\n===== test harness: SIGKILL sent to the gateway (start {}) =====\n",
                self.starts
            ));
        }
    }

    /// Starts the gateway again on the same port, config and state directory and waits for
    /// its greeting. Kills it first if it is still running.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Has the process exited on its own? Returns its status if so.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn append_log(&self, text: &str) {
        if let Ok(mut f) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
        {
            let _ = f.write_all(text.as_bytes());
        }
    }

    fn spawn(&mut self) {
        self.starts += 1;
        self.append_log(&format!(
            "===== test harness: starting the gateway (start {}) =====\n",
            self.starts
        ));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open the gateway log");
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .env_remove("SCHOOLGATE_CONFIG")
            // Logs must come to the test's file, not to a journal the test runner may sit in.
            .env_remove("JOURNAL_STREAM")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin().display()));
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the relay port accepts a connection and sends the expected greeting.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("no connection yet");
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                panic!(
                    "the gateway exited ({status}) before greeting on port {}; its log:\n{}",
                    self.port,
                    self.log_tail(20_000)
                );
            }
            match TcpStream::connect_timeout(&self.addr(), Duration::from_millis(500)) {
                Ok(stream) => match read_greeting(stream) {
                    Ok(code) if code == self.greeting => return,
                    Ok(code) => panic!(
                        "the gateway greeted with {code}, expected {}; its log:\n{}",
                        self.greeting,
                        self.log_tail(20_000)
                    ),
                    Err(e) => last = format!("connected, but no greeting: {e}"),
                },
                Err(e) => last = format!("connect: {e}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = self.log_tail(20_000);
        self.kill9();
        panic!(
            "the gateway did not greet on 127.0.0.1:{} within {START_TIMEOUT:?} ({last}); its log:\n{log}",
            self.port
        );
    }

    /// The port of `[web] listen` in this gateway's config.
    pub fn web_port(&self) -> u16 {
        let text = fs::read_to_string(&self.config_path).expect("read the test config");
        let cfg: toml::Table = toml::from_str(&text).expect("the test config parses");
        cfg.get("web")
            .and_then(|w| w.get("listen"))
            .and_then(|l| l.as_str())
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("web.listen in the test config")
    }

    /// Runs the schoolgate command line against this gateway's config.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        schoolgate_cli(&self.config_path, args)
    }

    /// Runs the command line and fails the test (showing its output) unless it succeeds;
    /// returns its standard output.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "schoolgate {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Adds a web account with `schoolgate user add NAME --role ROLE...`, the password as one
    /// line on standard input, the way a network manager scripts it.
    pub fn add_user(&self, name: &str, roles: &[&str], password: &str) {
        http::add_user(&self.config_path, name, roles, password);
    }

    /// The messages in the outbox (`new/`), sorted by file name, each with its envelope.
    pub fn outbox_messages(&self) -> Vec<OutboxMessage> {
        outbox_messages(&self.outbox_dir)
    }

    /// Every audit record, in sequence order.
    pub fn audit_records(&self) -> Vec<AuditRow> {
        audit_records(&self.state_dir)
    }

    /// The audit records about messages (kind `message`), in sequence order.
    pub fn message_records(&self) -> Vec<AuditRow> {
        self.audit_records()
            .into_iter()
            .filter(|r| r.kind == "message")
            .collect()
    }

    /// The gateway's memory now, from `/proc/PID/status`.
    pub fn memory(&self) -> Memory {
        let pid = self.pid();
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status:\n{status}"))
        };
        Memory {
            rss_kib: field("VmRSS:"),
            peak_kib: field("VmHWM:"),
        }
    }

    /// How many files and sockets the gateway has open (`/proc/PID/fd`).
    pub fn open_fds(&self) -> usize {
        let pid = self.pid();
        fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"))
            .count()
    }

    /// Asserts the audit chain verifies, both as `schoolgate audit verify` sees it and as the
    /// tests recompute it from the rows.
    pub fn assert_audit_verifies(&self, what: &str) {
        let out = self.cli(&["audit", "verify"]);
        assert!(
            out.status.success(),
            "{what}: schoolgate audit verify failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Err(e) = verify_audit_chain(&self.audit_records()) {
            panic!("{what}: the audit chain does not verify: {e}");
        }
    }

    /// Polls `cond` every 50 ms for up to `timeout`; true as soon as it holds.
    pub fn wait_for(&self, timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "----- schoolgate log (port {}, {}) -----\n{}\n----- end of schoolgate log -----",
                self.port,
                self.dir.path().display(),
                self.log_tail(30_000)
            );
        }
    }
}

/// Reads one (possibly multi-line) reply and returns its code; then says QUIT.
fn read_greeting(mut stream: TcpStream) -> std::io::Result<u16> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = std::io::BufReader::new(stream.try_clone()?);
    let reply = smtp::read_reply(&mut reader)?;
    let _ = stream.write_all(b"QUIT\r\n");
    // Let the server answer the QUIT so it does not log a dropped session; ignore what it says.
    let mut sink = [0u8; 512];
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = stream.read(&mut sink);
    Ok(reply.code)
}

/// One message in the outbox Maildir.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    /// The file name in `new/`.
    pub name: String,
    /// The file's bytes: exactly what was delivered.
    pub bytes: Vec<u8>,
    /// `envelopes/<name>.json`, if it is there.
    pub envelope: Option<Value>,
}

impl OutboxMessage {
    /// The mail's parts: (content type, decoded text), for the mail schoolgate composes (the
    /// weekly report, the quarantine digest).
    pub fn parts(&self) -> Vec<(String, String)> {
        use mail_parser::MimeHeaders;
        let parsed = mail_parser::MessageParser::new()
            .parse(&self.bytes)
            .unwrap_or_else(|| panic!("{} does not parse as mail", self.name));
        parsed
            .parts
            .iter()
            .filter_map(|p| {
                let ct = p.content_type()?;
                let ct = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""));
                Some((ct, p.text_contents().unwrap_or("").to_string()))
            })
            .collect()
    }
}

impl OutboxMessage {
    fn envelope(&self) -> &Value {
        self.envelope.as_ref().unwrap_or_else(|| {
            panic!(
                "outbox message {} has no envelopes/{}.json",
                self.name, self.name
            )
        })
    }

    /// The envelope sender (panics if the envelope file is missing).
    pub fn mail_from(&self) -> String {
        self.envelope()["mail_from"]
            .as_str()
            .unwrap_or_else(|| {
                panic!(
                    "envelope of {} has no mail_from string: {}",
                    self.name,
                    self.envelope()
                )
            })
            .to_string()
    }

    /// The envelope recipients (panics if the envelope file is missing).
    pub fn rcpt_to(&self) -> Vec<String> {
        self.envelope()["rcpt_to"]
            .as_array()
            .unwrap_or_else(|| {
                panic!(
                    "envelope of {} has no rcpt_to array: {}",
                    self.name,
                    self.envelope()
                )
            })
            .iter()
            .map(|v| v.as_str().expect("rcpt_to holds strings").to_string())
            .collect()
    }

    /// The value of the first header called `name` (unfolded, trimmed), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        header_value(&self.bytes, name)
    }
}

/// Reads `dir/new/*` and the matching `dir/envelopes/<name>.json`. A missing `new/` is an
/// empty outbox.
pub fn outbox_messages(dir: &Path) -> Vec<OutboxMessage> {
    let new = dir.join("new");
    let entries = match fs::read_dir(&new) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read the outbox {}: {e}", new.display()),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.expect("read an outbox entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let bytes = fs::read(entry.path())
            .unwrap_or_else(|e| panic!("cannot read outbox file {}: {e}", entry.path().display()));
        // The envelope is named after the message; tolerate a Maildir info suffix (":2,").
        let base = name.split(':').next().unwrap_or(&name).to_string();
        let envelope = [name.clone(), base]
            .iter()
            .map(|n| dir.join("envelopes").join(format!("{n}.json")))
            .find_map(|p| fs::read(&p).ok().map(|b| (p, b)))
            .map(|(p, b)| {
                serde_json::from_slice::<Value>(&b)
                    .unwrap_or_else(|e| panic!("envelope {} is not JSON: {e}", p.display()))
            });
        out.push(OutboxMessage {
            name,
            bytes,
            envelope,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One row of the `audit` table.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub seq: i64,
    pub time: String,
    pub kind: String,
    pub mail_from: Option<String>,
    pub outcome: Option<String>,
    /// The record exactly as stored (and hashed).
    pub record_json: String,
    /// The same, parsed.
    pub record: Value,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRow {
    /// The message part of a message record: `record.message` (or the record itself if the
    /// fields sit at the top level).
    pub fn message(&self) -> &Value {
        match self.record.get("message") {
            Some(m) if m.is_object() => m,
            _ => &self.record,
        }
    }

    /// A string field of the message part (`outcome`, `reply`, `sha256_received`, ...).
    pub fn field(&self, name: &str) -> Option<String> {
        match self.message().get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// A process's resident memory: now (`VmRSS`) and its peak so far (`VmHWM`), in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RSS {:.1} MiB (peak {:.1} MiB)",
            self.rss_kib as f64 / 1024.0,
            self.peak_kib as f64 / 1024.0
        )
    }
}

/// Reads every audit record from `state_dir/schoolgate.db`, in sequence order.
pub fn audit_records(state_dir: &Path) -> Vec<AuditRow> {
    let path = state_dir.join("schoolgate.db");
    assert!(
        path.exists(),
        "there is no audit database at {}",
        path.display()
    );
    // Read-write without create: a reader of a WAL database may have to recover it after a
    // kill -9, which a read-only connection cannot do. Nothing here writes.
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("cannot open the audit database {}: {e}", path.display()));
    conn.busy_timeout(Duration::from_secs(10))
        .expect("set busy timeout");
    let mut stmt = conn
        .prepare(
            "SELECT seq, time, kind, mail_from, outcome, record, prev_hash, hash
             FROM audit ORDER BY seq",
        )
        .unwrap_or_else(|e| panic!("cannot query the audit table in {}: {e}", path.display()));
    let rows = stmt
        .query_map([], |row| {
            let record_json: String = row.get(5)?;
            Ok(AuditRow {
                seq: row.get(0)?,
                time: row.get(1)?,
                kind: row.get(2)?,
                mail_from: row.get(3)?,
                outcome: row.get(4)?,
                record: serde_json::from_str(&record_json).unwrap_or(Value::Null),
                record_json,
                prev_hash: row.get(6)?,
                hash: row.get(7)?,
            })
        })
        .expect("query the audit table")
        .collect::<Result<Vec<_>, _>>()
        .expect("read the audit rows");
    for row in &rows {
        assert!(
            !row.record.is_null(),
            "audit record {} is not JSON: {}",
            row.seq,
            row.record_json
        );
    }
    rows
}

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Recomputes the hash chain from scratch: seq 1, 2, 3, ... with
/// `hash = sha256(seq "\n" prev_hash "\n" record_json)` and each `prev_hash` the previous hash.
/// Returns the first break, in words.
pub fn verify_audit_chain(rows: &[AuditRow]) -> Result<(), String> {
    let mut prev = GENESIS_HASH.to_string();
    for (i, row) in rows.iter().enumerate() {
        let want_seq = i as i64 + 1;
        if row.seq != want_seq {
            return Err(format!(
                "expected record {want_seq}, found {} (a record is missing)",
                row.seq
            ));
        }
        if row.prev_hash != prev {
            return Err(format!(
                "record {}: prev_hash {} does not match the previous record's hash {prev}",
                row.seq, row.prev_hash
            ));
        }
        let mut h = Sha256::new();
        h.update(row.seq.to_string().as_bytes());
        h.update(b"\n");
        h.update(row.prev_hash.as_bytes());
        h.update(b"\n");
        h.update(row.record_json.as_bytes());
        let want = hex::encode(h.finalize());
        if row.hash != want {
            return Err(format!(
                "record {}: stored hash {} but its content hashes to {want}",
                row.seq, row.hash
            ));
        }
        prev = row.hash.clone();
    }
    Ok(())
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Removes the gateway's `Received:` header, which must be the very first header: its first
/// line and any folded continuation lines. Panics (showing the start of the message) if the
/// message does not begin with a `Received:` header.
pub fn strip_received(bytes: &[u8]) -> Vec<u8> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
    assert!(
        bytes.len() >= 9 && bytes[..9].eq_ignore_ascii_case(b"Received:"),
        "the delivered message does not start with a Received: header; it starts:\n{head}"
    );
    let mut pos = 0;
    loop {
        match bytes[pos..].iter().position(|&b| b == b'\n') {
            Some(i) => pos += i + 1,
            None => {
                panic!("the Received: header never ends (no line break); message starts:\n{head}")
            }
        }
        match bytes.get(pos) {
            Some(b' ') | Some(b'\t') => continue,
            _ => break,
        }
    }
    bytes[pos..].to_vec()
}

/// The value of the first header called `name` in `message` (unfolded, trimmed).
pub fn header_value(message: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            return None;
        }
        let Some((n, v)) = line.split_once(':') else {
            continue;
        };
        if n.trim().eq_ignore_ascii_case(name) {
            let mut value = v.trim().to_string();
            while let Some(next) = lines.peek() {
                if next.starts_with(' ') || next.starts_with('\t') {
                    value.push(' ');
                    value.push_str(next.trim());
                    lines.next();
                } else {
                    break;
                }
            }
            return Some(value);
        }
    }
    None
}

/// Line endings made CRLF: every bare LF becomes CRLF; existing CRLFs and everything else are
/// kept. SMTP carries lines, so a bare LF cannot cross it faithfully.
pub fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// The message exactly as an SMTP server receives it after DATA: CRLF line endings and a
/// final CRLF (DATA cannot end a message in the middle of a line).
pub fn smtp_canonical(bytes: &[u8]) -> Vec<u8> {
    let mut out = to_crlf(bytes);
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The DATA payload for `message` (which must be [`smtp_canonical`]): dot-stuffed, with the
/// terminating `.CRLF`.
pub fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    assert!(
        message.is_empty() || message.ends_with(b"\r\n"),
        "dot_stuffed needs a message ending in CRLF"
    );
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Asserts that `delivered` is `sent` with exactly one `Received:` header put in front, and
/// shows where they first differ if not.
pub fn assert_relayed_intact(what: &str, sent: &[u8], delivered: &[u8]) {
    if let Err(e) = check_relayed_intact(sent, delivered) {
        panic!("{what}: {e}");
    }
}

/// The check behind [`assert_relayed_intact`]: `delivered` must be one complete `Received:`
/// header (its first line and any folded continuation lines, all CRLF-terminated) followed by
/// exactly the bytes of `sent`.
///
/// This does not rely on [`strip_received`] finding where the header ends, which a message
/// that itself starts with white space would fool (its first line reads as a continuation of
/// the `Received:` header in front of it).
pub fn check_relayed_intact(sent: &[u8], delivered: &[u8]) -> Result<(), String> {
    if delivered.len() > sent.len() && delivered.ends_with(sent) {
        let prefix = &delivered[..delivered.len() - sent.len()];
        let text = String::from_utf8_lossy(prefix);
        let well_formed = prefix.len() > 9
            && prefix[..9].eq_ignore_ascii_case(b"Received:")
            && prefix.ends_with(b"\r\n")
            && text
                .strip_suffix("\r\n")
                .unwrap_or(&text)
                .split("\r\n")
                .enumerate()
                .all(|(i, line)| !line.contains('\n') && (i == 0 || line.starts_with([' ', '\t'])));
        return if well_formed {
            Ok(())
        } else {
            Err(format!(
                "the message arrived intact, but what was put in front of it is not one Received: header: {text:?}"
            ))
        };
    }
    let stripped = if delivered.len() >= 9 && delivered[..9].eq_ignore_ascii_case(b"Received:") {
        strip_received(delivered)
    } else {
        return Err(format!(
            "the delivered message does not start with a Received: header; it starts {:?}",
            String::from_utf8_lossy(&delivered[..delivered.len().min(200)])
        ));
    };
    Err(format!(
        "the delivered message (apart from the Received: header) differs from the one sent: {}",
        bytes_difference(sent, &stripped).unwrap_or_else(|| "(identical after all?)".into())
    ))
}

/// Asserts `got == want`, showing lengths and the first difference with some context.
pub fn assert_same_bytes(what: &str, want: &[u8], got: &[u8]) {
    if let Some(d) = bytes_difference(want, got) {
        panic!("{what}: {d}");
    }
}

/// `None` if equal, else the lengths and the first difference with some context.
pub fn bytes_difference(want: &[u8], got: &[u8]) -> Option<String> {
    if got == want {
        return None;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let show = |b: &[u8]| {
        let from = at.saturating_sub(80);
        let to = (at + 80).min(b.len());
        format!("{:?}", String::from_utf8_lossy(&b[from.min(to)..to]))
    };
    Some(format!(
        "expected {} bytes, got {} bytes; first difference at byte {at}:\n  expected: {}\n  got:      {}",
        want.len(),
        got.len(),
        show(want),
        show(got)
    ))
}

/// A small deterministic random number generator (64-bit LCG, Knuth's MMIX constants), so a
/// failing run can be repeated with the same seed.
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + (self.next_u32() as u64) % (hi - lo + 1)
    }
}

/// A plain ASCII test message with CRLF line endings.
pub fn plain_message(from: &str, to: &str, subject: &str, message_id: &str, body: &str) -> Vec<u8> {
    let mut m = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Mon, 03 Mar 2025 10:00:00 +0000\r\n\
         Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    );
    for line in body.lines() {
        m.push_str(line);
        m.push_str("\r\n");
    }
    m.into_bytes()
}

/// A message from `from` to `to` with a short text body and `data` attached as `name` (base64),
/// the way a member of staff sends a file.
pub fn message_with_attachment(
    (from, to): (&str, &str),
    subject: &str,
    message_id: &str,
    (name, mime): (&str, &str),
    data: &[u8],
) -> Vec<u8> {
    let mut m = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nPlease find the list attached.\r\n--b1\r\n\
         Content-Type: {mime}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    m.extend(schoolgate::mime::encoding::base64_encode(
        data, 76, b"\r\n", true,
    ));
    m.extend_from_slice(b"--b1--\r\n");
    m
}

/// A ZIP of `count` empty stored entries: the "100,000 entries" bomb, built where a test needs it
/// rather than committed (19 MB with its message).
pub fn zip_with_empty_entries(count: usize) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..count {
        zip.start_file(format!("{i:x}"), options)
            .expect("a ZIP entry");
    }
    zip.finish().expect("the ZIP").into_inner()
}

/// A plain HTTP/1.1 GET to the gateway's web listener on loopback: the whole response, headers
/// and body.
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the web listener");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the response");
    out
}

/// Runs the schoolgate command line with `args` and `--config config` (warnings only).
pub fn schoolgate_cli(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("JOURNAL_STREAM")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run schoolgate")
}

/// A valid UPN for `serial` (the DfE check letter; research/detectors.md), for class lists.
pub fn upn(serial: u32) -> String {
    const TABLE: &[u8] = b"ABCDEFGHJKLMNPQRTUVWXYZ";
    let body = format!("80120000{serial:04}");
    let sum: u32 = body
        .bytes()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * (i as u32 + 2))
        .sum();
    format!("{}{body}", TABLE[(sum % 23) as usize] as char)
}

/// The corpus of real-world messages written by others, kept in the repository
/// (`fixtures/corpus/`, each project and licence in its SOURCES.md).
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/corpus")
}

/// Every message file under the corpus (not its SOURCES.md or README files), sorted.
pub fn corpus_files() -> Vec<PathBuf> {
    let root = corpus_dir();
    assert!(
        root.is_dir(),
        "the corpus is missing: expected it at {} (fixtures/corpus in the repository)",
        root.display()
    );
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let upper = name.to_ascii_uppercase();
            if upper.starts_with("SOURCES") || upper.starts_with("README") || name.starts_with('.')
            {
                continue;
            }
            out.push(path);
        }
    }
    out.sort();
    assert!(
        out.len() >= 150,
        "only {} messages in {}; the corpus should hold about 200",
        out.len(),
        root.display()
    );
    out
}

#[cfg(test)]
mod self_tests {
    use super::*;

    #[test]
    fn strip_received_removes_exactly_the_first_header() {
        let m = b"Received: from a\r\n\tby b;\r\n  Mon\r\nReceived: older\r\nSubject: x\r\n\r\nbody\r\n";
        assert_eq!(
            strip_received(m),
            b"Received: older\r\nSubject: x\r\n\r\nbody\r\n".to_vec()
        );
    }

    #[test]
    #[should_panic(expected = "does not start with a Received")]
    fn strip_received_insists_on_the_first_header() {
        strip_received(b"Subject: x\r\nReceived: from a\r\n\r\nbody\r\n");
    }

    #[test]
    fn relayed_intact_means_one_received_header_and_nothing_else() {
        let sent = b"Subject: x\r\n\r\nbody\r\n".to_vec();
        let ours = b"Received: from a\r\n\tby b; Mon\r\n".to_vec();
        assert!(check_relayed_intact(&sent, &[ours.clone(), sent.clone()].concat()).is_ok());
        // A message that starts with white space still counts as intact.
        let odd = b" From: x\r\nSubject: y\r\n\r\nbody\r\n".to_vec();
        assert!(check_relayed_intact(&odd, &[ours.clone(), odd.clone()].concat()).is_ok());
        // A second added header, a changed byte, a lost byte, or no Received: all fail.
        let extra = b"Received: from a\r\nX-Score: 3\r\n".to_vec();
        assert!(check_relayed_intact(&sent, &[extra, sent.clone()].concat()).is_err());
        let mut changed = [ours.clone(), sent.clone()].concat();
        *changed.last_mut().unwrap() = b' ';
        assert!(check_relayed_intact(&sent, &changed).is_err());
        let lost = [ours.clone(), sent[..sent.len() - 2].to_vec()].concat();
        assert!(check_relayed_intact(&sent, &lost).is_err());
        assert!(
            check_relayed_intact(&sent, &[b"X-A: b\r\n".to_vec(), sent.clone()].concat()).is_err()
        );
    }

    #[test]
    fn audit_chain_check_finds_a_changed_record() {
        let mut rows = Vec::new();
        let mut prev = GENESIS_HASH.to_string();
        for seq in 1..=3i64 {
            let record_json = format!("{{\"n\":{seq}}}");
            let hash = sha256_hex(format!("{seq}\n{prev}\n{record_json}").as_bytes());
            rows.push(AuditRow {
                seq,
                time: String::new(),
                kind: "action".into(),
                mail_from: None,
                outcome: None,
                record: serde_json::from_str(&record_json).unwrap(),
                record_json,
                prev_hash: prev.clone(),
                hash: hash.clone(),
            });
            prev = hash;
        }
        assert_eq!(verify_audit_chain(&rows), Ok(()));
        let mut changed = rows.clone();
        changed[1].record_json = "{\"n\":9}".into();
        assert!(
            verify_audit_chain(&changed)
                .unwrap_err()
                .starts_with("record 2")
        );
        let mut gap = rows.clone();
        gap.remove(1);
        assert!(verify_audit_chain(&gap).is_err());
    }

    #[test]
    fn dot_stuffing_and_line_endings() {
        assert_eq!(smtp_canonical(b"a\nb\r\nc"), b"a\r\nb\r\nc\r\n".to_vec());
        assert_eq!(
            dot_stuffed(b".a\r\nb\r\n..c\r\n"),
            b"..a\r\nb\r\n...c\r\n.\r\n".to_vec()
        );
    }
}
