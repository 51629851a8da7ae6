//! A tiny HTTP/1.1 client for the web page's tests: one request per connection, a cookie jar of
//! one (the session), and the helpers a login needs (the CSRF token from a page's form, a user
//! made with the real `schoolgate user add`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::BIN;

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of the hidden `csrf` field of the page's first form that has one.
    pub fn csrf(&self) -> Option<String> {
        let text = self.text();
        let at = text.find("name=\"csrf\" value=\"")?;
        let rest = &text[at + "name=\"csrf\" value=\"".len()..];
        Some(rest[..rest.find('"')?].to_string())
    }
}

/// A browser of one session against the web listener on 127.0.0.1:`port`.
#[derive(Debug, Clone)]
pub struct Browser {
    pub port: u16,
    /// `name=value` of the session cookie, once set.
    pub cookie: Option<String>,
}

impl Browser {
    pub fn new(port: u16) -> Browser {
        Browser { port, cookie: None }
    }

    /// Sends one request; keeps a `Set-Cookie` it gets (and forgets it on `Max-Age=0`).
    pub fn request(&mut self, method: &str, path: &str, form: Option<&[(&str, &str)]>) -> Response {
        let mut s =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the web listener");
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let body = form
            .map(|pairs| {
                let mut e = form_urlencoded::Serializer::new(String::new());
                for (k, v) in pairs {
                    e.append_pair(k, v);
                }
                e.finish()
            })
            .unwrap_or_default();
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        if let Some(c) = &self.cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        if form.is_some() {
            req.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        } else if method == "POST" {
            req.push_str("Content-Length: 0\r\n");
        }
        req.push_str("\r\n");
        req.push_str(&body);
        s.write_all(req.as_bytes()).expect("send the request");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read the response");
        let r = parse(&raw);
        if let Some(set) = r.header("set-cookie") {
            let pair = set.split(';').next().unwrap_or("").trim().to_string();
            if set.contains("Max-Age=0") {
                self.cookie = None;
            } else {
                self.cookie = Some(pair);
            }
        }
        r
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.request("GET", path, None)
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Response {
        self.request("POST", path, Some(form))
    }

    /// Opens the login page and submits `name` and `password`; returns the response to the POST.
    pub fn login(&mut self, name: &str, password: &str) -> Response {
        let page = self.get("/login");
        assert_eq!(page.status, 200, "GET /login: {}", page.text());
        let csrf = page.csrf().expect("the login form has a csrf field");
        self.post(
            "/login",
            &[("csrf", &csrf), ("name", name), ("password", password)],
        )
    }

    /// Logs in and checks it worked (303 away from the login page).
    pub fn logged_in(port: u16, name: &str, password: &str) -> Browser {
        let mut b = Browser::new(port);
        let r = b.login(name, password);
        assert_eq!(r.status, 303, "login of {name} failed: {}", r.text());
        b
    }
}

/// Parses a whole HTTP/1.1 response.
pub fn parse(raw: &[u8]) -> Response {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response has a header block");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..nl])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = nl + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
}

/// Runs `schoolgate ARGS --config CONFIG` with `stdin` as its standard input (a password).
pub fn cli_with_stdin(config: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("JOURNAL_STREAM")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run schoolgate");
    // A command that fails before reading (a bad role) closes its stdin: not an error here.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    child.wait_with_output().expect("wait for schoolgate")
}

/// `schoolgate user add NAME --role R…` with `password`; panics with its output on failure.
pub fn add_user(config: &Path, name: &str, roles: &[&str], password: &str) {
    let mut args = vec!["user", "add", name];
    for r in roles {
        args.push("--role");
        args.push(r);
    }
    let out = cli_with_stdin(config, &args, &format!("{password}\n"));
    assert!(
        out.status.success(),
        "schoolgate user add {name} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
