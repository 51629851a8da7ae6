//! A real OpenID Connect provider on loopback for the sign-in tests: node's `oidc-provider`
//! (certified by the OpenID Foundation), run by `tests/oidc/provider.mjs` with the test accounts
//! it describes, and an HTTP client that follows a sign-in through it with a cookie jar.
//!
//! node and the npm module are required: a missing one fails the test, saying how to get it
//! (`scripts/test` installs node from Debian and runs `npm ci` in `tests/oidc`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::http::{Response, parse};
use super::require_tool;

/// The client secret the provider and the gateway share in these tests.
pub const CLIENT_SECRET: &str = "test-client-secret-4d1f";

/// A running provider; killed on drop.
pub struct Provider {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:PORT` (or the host asked for).
    pub issuer: String,
}

fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

impl Provider {
    /// Starts the provider for client `schoolgate` whose only redirect URI is `redirect_uri`,
    /// issuing as `http://HOST:PORT`.
    pub fn start(redirect_uri: &str, host: &str) -> Provider {
        let node = require_tool("node");
        let module = support_dir().join("node_modules/oidc-provider/package.json");
        assert!(
            module.is_file(),
            "{} is missing: run `npm ci` in tests/oidc (scripts/test does)",
            module.display()
        );
        let mut child = Command::new(node)
            .arg(support_dir().join("provider.mjs"))
            .env("REDIRECT_URI", redirect_uri)
            .env("CLIENT_ID", "schoolgate")
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("ISSUER_HOST", host)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node tests/oidc/provider.mjs");
        let stdout = child.stdout.take().expect("the provider's stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(port) = line.strip_prefix("listening ") {
                    let _ = tx.send(port.trim().parse::<u16>().ok());
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(port)) => port,
            other => {
                let _ = child.kill();
                panic!("the OpenID provider (tests/oidc/provider.mjs) did not start: {other:?}")
            }
        };
        Provider {
            child,
            port,
            issuer: format!("http://{host}:{port}"),
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the client secret where `[web.oidc] client_secret_file` will point, and returns the
/// `[web.oidc]` table for `issuer` and `redirect_url` (with `hosted_domain = "school.example"`,
/// the test accounts' `hd`).
pub fn config_table(dir: &Path, issuer: &str, redirect_url: &str) -> toml::Value {
    let secret = dir.join("oidc-client-secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).expect("write the client secret");
    let roles: toml::Table = [
        (
            "network-manager".to_string(),
            toml::Value::Array(vec!["grp-netman".into()]),
        ),
        (
            "dsl".to_string(),
            toml::Value::Array(vec!["Schoolgate.DSL".into(), "head@school.example".into()]),
        ),
    ]
    .into_iter()
    .collect();
    let t: toml::Table = [
        ("issuer".to_string(), toml::Value::from(issuer)),
        ("client_id".to_string(), "schoolgate".into()),
        (
            "client_secret_file".to_string(),
            secret.to_string_lossy().into_owned().into(),
        ),
        ("redirect_url".to_string(), redirect_url.into()),
        ("hosted_domain".to_string(), "school.example".into()),
        ("roles".to_string(), toml::Value::Table(roles)),
    ]
    .into_iter()
    .collect();
    toml::Value::Table(t)
}

/// Cookies by host:port, then name.
#[derive(Debug, Default, Clone)]
pub struct Jar(pub BTreeMap<String, BTreeMap<String, String>>);

impl Jar {
    fn header(&self, authority: &str) -> Option<String> {
        let c = self.0.get(authority)?;
        (!c.is_empty()).then(|| {
            c.iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn keep(&mut self, authority: &str, r: &Response) {
        for (name, value) in &r.headers {
            if name != "set-cookie" {
                continue;
            }
            let pair = value.split(';').next().unwrap_or("");
            if let Some((n, v)) = pair.split_once('=') {
                let cookies = self.0.entry(authority.to_string()).or_default();
                if value.contains("Max-Age=0") || v.is_empty() {
                    cookies.remove(n.trim());
                } else {
                    cookies.insert(n.trim().to_string(), v.trim().to_string());
                }
            }
        }
    }

    /// The value of cookie `name` for `authority`.
    pub fn get(&self, authority: &str, name: &str) -> Option<&str> {
        self.0.get(authority)?.get(name).map(String::as_str)
    }
}

/// `http://HOST:PORT/PATH?QUERY` → (`HOST:PORT`, `/PATH?QUERY`).
pub fn split_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    }
}

/// GET `url` (plain HTTP on loopback) with the jar's cookies; keeps the cookies it sets.
pub fn get(jar: &mut Jar, url: &str) -> Response {
    let (authority, path) = split_url(url);
    let port: u16 = authority
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(80);
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    if let Some(c) = jar.header(&authority) {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send the request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let r = parse(&raw);
    jar.keep(&authority, &r);
    r
}

/// Where a redirect goes, made absolute against `from`.
pub fn location(from: &str, r: &Response) -> String {
    let loc = r
        .header("location")
        .unwrap_or_else(|| panic!("no Location in a {} answer: {}", r.status, r.text()))
        .to_string();
    if loc.starts_with("http://") {
        loc
    } else {
        let (authority, _) = split_url(from);
        format!("http://{authority}{loc}")
    }
}

/// The value of query parameter `name` in `url`.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Follows the provider's redirects from `url` until one leads to `stop_prefix` (the gateway's
/// callback); returns that URL.
pub fn follow_until(jar: &mut Jar, url: &str, stop_prefix: &str) -> String {
    let mut at = url.to_string();
    for _ in 0..12 {
        let r = get(jar, &at);
        assert!(
            matches!(r.status, 302 | 303),
            "the provider answered {} at {at}: {}",
            r.status,
            r.text()
        );
        let next = location(&at, &r);
        if next.starts_with(stop_prefix) {
            return next;
        }
        at = next;
    }
    panic!("the provider never sent the browser back to {stop_prefix}");
}
