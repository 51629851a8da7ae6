//! The login page against a real `schoolgate serve`, over HTTP from more than one client address
//! (127.0.0.1 and 127.0.0.2, both loopback): a refused login reads the same whether the name is
//! unknown, the password wrong or the name locked; a lock from one address does not lock the
//! account from another; each failure slows the next attempt (1 s, 2 s, 4 s …); the lock is
//! audited once; and an account with `--totp` is asked for its authenticator code, each code
//! good once.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::Gateway;
use common::http::{Response, add_user, cli_with_stdin, parse};

const PASSWORD: &str = "correct horse battery staple";

/// A browser of one session whose connections come from `source`.
struct Client {
    port: u16,
    source: IpAddr,
    cookie: Option<String>,
}

impl Client {
    fn new(port: u16, source: &str) -> Client {
        Client {
            port,
            source: source.parse().expect("an address"),
            cookie: None,
        }
    }

    fn request(&mut self, method: &str, path: &str, form: &[(&str, &str)]) -> Response {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        let _guard = rt.enter();
        socket
            .bind(SocketAddr::new(self.source, 0))
            .unwrap_or_else(|e| panic!("bind to {}: {e}", self.source));
        let stream = rt
            .block_on(socket.connect(SocketAddr::from(([127, 0, 0, 1], self.port))))
            .expect("connect to the web listener");
        let mut s = stream.into_std().expect("a std stream");
        s.set_nonblocking(false).expect("blocking");
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let mut e = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form {
            e.append_pair(k, v);
        }
        let body = e.finish();
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        if let Some(c) = &self.cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        if method == "POST" {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        s.write_all(req.as_bytes()).expect("send");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read");
        let r = parse(&raw);
        if let Some(set) = r.header("set-cookie") {
            self.cookie = Some(set.split(';').next().unwrap_or("").trim().to_string());
        }
        r
    }

    fn login(&mut self, name: &str, password: &str) -> Response {
        let page = self.request("GET", "/login", &[]);
        assert_eq!(page.status, 200);
        let csrf = page.csrf().expect("a csrf field");
        self.request(
            "POST",
            "/login",
            &[("csrf", &csrf), ("name", name), ("password", password)],
        )
    }

    fn code(&mut self, csrf: &str, code: &str) -> Response {
        self.request("POST", "/login/code", &[("csrf", csrf), ("code", code)])
    }
}

/// The page's error paragraph.
fn error_of(r: &Response) -> String {
    let t = r.text();
    let at = t
        .find("class=\"error\"")
        .unwrap_or_else(|| panic!("no error on the page ({}): {t}", r.status));
    let rest = &t[at..];
    let start = rest.find('>').expect("a tag") + 1;
    let end = rest.find("</p>").expect("a paragraph");
    rest[start..end].to_string()
}

#[test]
fn a_lock_reads_like_an_unknown_name_slows_down_and_holds_for_one_address_only() {
    let gw = Gateway::start(|_| {});
    add_user(&gw.config_path, "netman", &["network-manager"], PASSWORD);
    let port = gw.web_port();

    // Five wrong passwords from 127.0.0.2, each answered later than the one before.
    let mut attacker = Client::new(port, "127.0.0.2");
    let started = Instant::now();
    let mut answers = Vec::new();
    for n in 1..=4 {
        let r = attacker.login("netman", &format!("not the password {n}"));
        assert_eq!(r.status, 200, "attempt {n}");
        answers.push(error_of(&r));
    }
    // The fifth waits 8 s; meanwhile the server answers everyone else at once.
    let fifth = std::thread::spawn(move || {
        let r = attacker.login("netman", "not the password 5");
        (attacker, r)
    });
    let other = Instant::now();
    let page = Client::new(port, "127.0.0.4").request("GET", "/login", &[]);
    assert_eq!(page.status, 200);
    assert!(
        other.elapsed() < Duration::from_secs(4),
        "a delayed login held up another client for {:?}",
        other.elapsed()
    );
    let (mut attacker, r) = fifth.join().expect("the fifth attempt");
    assert_eq!(r.status, 200, "attempt 5");
    answers.push(error_of(&r));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(14),
        "1 + 2 + 4 + 8 s of delay before attempts 2 to 5, took {took:?}"
    );
    // Locked from there: even the right password is refused, in the same words as an unknown
    // name from a fresh address, with the same status.
    let t = Instant::now();
    let locked = attacker.login("netman", PASSWORD);
    let locked_took = t.elapsed();
    let t = Instant::now();
    let unknown = Client::new(port, "127.0.0.3").login("no-such-person", "whatever it is");
    let unknown_took = t.elapsed();
    // Both check a password hash (the unknown name and the locked one against a dummy), and
    // neither waits: a second's difference would be a delay on one of them.
    assert!(
        locked_took.abs_diff(unknown_took) < Duration::from_secs(1),
        "locked {locked_took:?}, unknown {unknown_took:?}"
    );
    assert_eq!(locked.status, unknown.status);
    assert_eq!(error_of(&locked), error_of(&unknown));
    assert!(
        answers.iter().all(|a| *a == error_of(&unknown)),
        "{answers:?}"
    );
    assert!(error_of(&unknown).contains("wrong name or password"));
    assert_eq!(
        attacker.request("GET", "/quarantine", &[]).status,
        303,
        "no session from the locked address"
    );

    // The network manager logs in from their own machine all the same.
    let mut own = Client::new(port, "127.0.0.1");
    let r = own.login("netman", PASSWORD);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(own.request("GET", "/quarantine", &[]).status, 200);

    // The lock is audited once; the attempt while locked is not another record.
    let records = gw.audit_records();
    let failed: Vec<&common::AuditRow> = records
        .iter()
        .filter(|r| r.kind == "login-failed")
        .collect();
    let locks = failed
        .iter()
        .filter(|r| r.record_json.contains("web login locked"))
        .count();
    assert_eq!(locks, 1, "one lock record");
    assert_eq!(
        failed.len(),
        5 + 1 + 1,
        "five wrong passwords, the lock, the unknown name"
    );
    assert!(
        failed
            .iter()
            .any(|r| r.record_json.contains("127.0.0.2") && r.record_json.contains("locked"))
    );

    let list = gw.cli_ok(&["user", "list"]);
    assert!(
        list.contains("netman  network-manager  locked until") && list.contains("from 127.0.0.2"),
        "{list}"
    );
    // A new password lifts the lock.
    let out = cli_with_stdin(
        &gw.config_path,
        &["user", "passwd", "netman"],
        "a brand new password\n",
    );
    assert!(out.status.success());
    assert_eq!(attacker.login("netman", "a brand new password").status, 303);
}

/// RFC 4648 base32 (no padding) as `user add --totp` prints it.
fn base32_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {s}"),
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

#[test]
fn an_account_with_totp_is_asked_for_its_code_and_a_code_is_good_once() {
    use schoolgate::web::totp;

    let gw = Gateway::start(|_| {});
    let out = cli_with_stdin(
        &gw.config_path,
        &["user", "add", "ms.jones", "--role", "dsl", "--totp"],
        &format!("{PASSWORD}\n"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    let uri = stdout
        .lines()
        .find(|l| l.starts_with("otpauth://totp/"))
        .unwrap_or_else(|| panic!("no otpauth:// URI printed: {stdout}"));
    assert!(uri.contains("algorithm=SHA1&digits=6&period=30"), "{uri}");
    let b32 = common::oidc::query_param(uri, "secret").expect("a secret in the URI");
    assert!(stdout.contains(&format!("secret: {b32}")));
    let secret = base32_decode(&b32);
    assert_eq!(secret.len(), 20);
    assert!(gw.cli_ok(&["user", "list"]).contains("ms.jones  dsl  code"));
    // Kept in the private database only, never in the audit trail.
    assert!(
        !gw.audit_records()
            .iter()
            .any(|r| r.record_json.contains(&b32))
    );

    let port = gw.web_port();
    let mut b = Client::new(port, "127.0.0.1");
    let r = b.login("ms.jones", PASSWORD);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("name=\"code\""), "the code is asked for");
    let csrf = r.csrf().expect("the code form's csrf");
    assert_eq!(
        b.request("GET", "/flags", &[]).status,
        303,
        "not logged in before the code"
    );
    let r = b.code(&csrf, "000000x");
    assert!(error_of(&r).contains("code is wrong"), "{}", r.text());

    let now = jiff::Timestamp::now().as_second();
    let step = totp::step_at(now);
    let good = format!("{:06}", totp::code(&secret, step, 6));
    let r = b.code(&csrf, &good);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/flags"));
    assert_eq!(b.request("GET", "/flags", &[]).status, 200);

    // The same code again, from a new session: refused.
    let mut again = Client::new(port, "127.0.0.1");
    let r = again.login("ms.jones", PASSWORD);
    let csrf = r.csrf().expect("the code form");
    let r = again.code(&csrf, &good);
    assert_eq!(r.status, 200);
    assert!(error_of(&r).contains("used already"), "{}", r.text());
    assert_eq!(again.request("GET", "/flags", &[]).status, 303);
    // The next step's code is good (one step either side is allowed for clock drift).
    let next = format!("{:06}", totp::code(&secret, step + 1, 6));
    let r = again.code(&csrf, &next);
    assert_eq!(r.status, 303, "{}", r.text());

    let logins: Vec<String> = gw
        .audit_records()
        .into_iter()
        .filter(|r| r.kind == "login")
        .map(|r| r.record_json)
        .collect();
    assert_eq!(logins.len(), 2);
    assert!(logins.iter().all(|l| l.contains("password and code")));
}
