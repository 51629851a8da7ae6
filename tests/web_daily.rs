//! Issue 17's web defects, black-box over real HTTP against a real `schoolgate serve`: the audit
//! trail newest first in pages and sorted by any column; a deleted message's download is 410
//! Gone and its page says who deleted it, when and why; plain HTTP on a network address is
//! refused unless `[web] insecure_http`; findings stay with the attachment they were found in
//! whatever its file name header; every time in the school's zone (GMT/BST), never "UTC";
//! `/metrics` only for its allowed clients or its token; HSTS over TLS.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{Browser, Response, add_user};
use common::smtp::Client;
use common::{Gateway, set};

const PASSWORD: &str = "correct horse battery staple";
const STAFF: &str = "t.baker@example-academy.sch.uk";
const COLLEAGUE: &str = "office@example-academy.sch.uk";
const PUPIL: &str = "jamie.smith2010@gmail.com";

/// The `data-seq` of every audit row on an audit page, in the order shown.
fn seqs(page: &Response) -> Vec<u64> {
    let text = page.text();
    text.split("<tr class=\"record\" data-seq=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next()?.parse().ok())
        .collect()
}

/// The `href` of the element with `id` on `page`, HTML-unescaped.
fn href_of(page: &Response, id: &str) -> Option<String> {
    let text = page.text();
    let at = text.find(&format!("id=\"{id}\""))?;
    let tag_start = text[..at].rfind('<')?;
    let tag = &text[tag_start..tag_start + text[tag_start..].find('>')?];
    let h = tag.find("href=\"")?;
    let rest = &tag[h + 6..];
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}

/// Sends `message` to `to`; the relay's reply text.
fn send(c: &mut Client, from: &str, to: &str, message: &[u8]) -> String {
    let t = c.send(from, "", &[to], message).expect("send a message");
    assert!(t.accepted(), "not accepted: {:?}", t.reply);
    t.reply.text()
}

/// A page must not name UTC (or show a bare `…Z` time) while the school's zone is London.
fn assert_no_utc(what: &str, page: &Response) {
    let text = page.text();
    assert!(!text.contains("UTC"), "{what} says UTC: {text}");
    assert!(!text.contains("Z<"), "{what} shows a UTC time: {text}");
}

/// A UK-style time label: "Mon 7 Dec 2026, 09:14" then GMT or BST.
fn has_uk_time(text: &str) -> bool {
    let days = ["Mon ", "Tue ", "Wed ", "Thu ", "Fri ", "Sat ", "Sun "];
    (text.contains(" GMT") || text.contains(" BST")) && days.iter().any(|d| text.contains(d))
}

/// Issue 17, defect 1: with more records than a page holds, `/audit` opens on the newest,
/// pages back through the rest (links that work without JavaScript, page numbers), keeps a
/// filter while paging, sorts by any column, and shows times as the school reads them.
#[test]
fn the_audit_trail_opens_on_the_newest_records_and_pages_back_through_the_rest() {
    let gw = Gateway::start(|_| {});
    add_user(&gw.config_path, "dsl", &["dsl"], PASSWORD);
    let mut c = Client::ready(gw.port);
    for n in 1..=215 {
        let subject = format!("Staff note {n:03}");
        let message = common::plain_message(
            STAFF,
            COLLEAGUE,
            &subject,
            &format!("note.{n}@example-academy.sch.uk"),
            "See you in the staff room.",
        );
        send(&mut c, STAFF, COLLEAGUE, &message);
    }
    c.quit();
    let mut dsl = Browser::logged_in(gw.web_port(), "dsl", PASSWORD);
    let newest_before = gw
        .audit_records()
        .iter()
        .map(|r| u64::try_from(r.seq).unwrap_or(0))
        .max()
        .expect("records");
    assert!(newest_before > 215, "{newest_before} records");

    let first = dsl.get("/audit");
    assert_eq!(first.status, 200, "{}", first.text());
    let shown = seqs(&first);
    assert_eq!(shown.len(), 100, "one page is 100 records");
    assert!(
        shown[0] >= newest_before,
        "the first row is #{}, not the newest record #{newest_before}",
        shown[0]
    );
    assert!(
        shown.windows(2).all(|w| w[0] > w[1]),
        "newest first: {shown:?}"
    );
    assert!(
        first.text().contains("Staff note 215"),
        "the newest message"
    );
    assert!(
        !first.text().contains("Staff note 001"),
        "the oldest message is not on the first page"
    );
    assert!(has_uk_time(&first.text()), "times in GMT/BST");
    assert_no_utc("/audit", &first);
    // Page numbers and next/previous, as plain links.
    assert!(first.text().contains("class=\"page\""), "page numbers");
    let next = href_of(&first, "next-page").expect("a next page link");
    let second = dsl.get(&next);
    assert_eq!(second.status, 200);
    let shown2 = seqs(&second);
    assert_eq!(shown2.len(), 100);
    assert_eq!(shown2[0], shown[99] - 1, "page 2 follows page 1");
    assert!(href_of(&second, "prev-page").is_some(), "a previous link");
    let third = dsl.get(&href_of(&second, "next-page").expect("a third page"));
    let shown3 = seqs(&third);
    assert!(
        shown3.contains(&1),
        "the last page ends at record 1: {shown3:?}"
    );
    assert!(
        href_of(&third, "next-page").is_none(),
        "no page after the last"
    );
    // A page past the end shows the last one, not an error.
    let past = dsl.get("/audit?page=999");
    assert_eq!(past.status, 200);
    assert_eq!(seqs(&past), shown3);

    // Filters keep working with paging: only message records with verdict deliver, on every
    // page, and the next link keeps the filter.
    let filtered = dsl.get("/audit?verdict=deliver");
    let next = href_of(&filtered, "next-page").expect("215 delivered messages fill 3 pages");
    assert!(next.contains("verdict=deliver"), "{next}");
    let filtered2 = dsl.get(&next);
    assert_eq!(seqs(&filtered2).len(), 100);
    assert!(
        !filtered2.text().contains("<td>login</td>"),
        "a login record on a page filtered by verdict"
    );

    // Sorted by subject, A to Z: "Staff note 001" first; Z to A: "Staff note 215" first.
    let by_subject = dsl.get("/audit?sort=subject&dir=asc");
    let text = by_subject.text();
    let first_note = text.find("Staff note ").expect("subjects shown");
    assert!(
        text[first_note..].starts_with("Staff note 001"),
        "sorted by subject: {}",
        &text[first_note..first_note + 20]
    );
    let by_subject = dsl.get("/audit?sort=subject&dir=desc");
    let text = by_subject.text();
    let first_note = text.find("Staff note ").expect("subjects shown");
    assert!(
        text[first_note..].starts_with("Staff note 215"),
        "sorted by subject, Z to A"
    );
    // Sorting by who puts every row's sender in order.
    let by_who = dsl.get("/audit?sort=who&dir=asc");
    assert_eq!(by_who.status, 200);
    assert_eq!(seqs(&by_who).len(), 100);
    // A heading is a link that sorts by its column and keeps the filters.
    let filtered = dsl.get("/audit?verdict=deliver&sort=time&dir=desc");
    assert!(
        filtered
            .text()
            .contains("href=\"/audit?verdict=deliver&amp;sort=subject&amp;dir=asc&amp;page=1\""),
        "the Subject heading sorts by subject and keeps the filter"
    );

    // A UK date and an ISO date find the same records.
    let today = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::get("Europe/London").expect("Europe/London"))
        .date();
    let uk = dsl.get(&format!(
        "/audit?since={}&verdict=deliver",
        today.strftime("%d/%m/%Y")
    ));
    let iso = dsl.get(&format!("/audit?since={today}&verdict=deliver"));
    assert_eq!(uk.status, 200, "{}", uk.text());
    assert!(!uk.text().contains("class=\"error\""), "{}", uk.text());
    assert_eq!(seqs(&uk), seqs(&iso));
    assert_eq!(seqs(&uk).len(), 100);
    assert!(
        uk.text()
            .contains(&format!("type=\"date\" name=\"since\" value=\"{today}\"")),
        "the date picker gets the date as ISO"
    );
}

/// Sends a message to a pupil's personal address, which this gateway holds; the quarantine id.
fn send_held(gw: &Gateway, subject: &str) -> String {
    let mut c = Client::ready(gw.port);
    let message = common::plain_message(
        STAFF,
        PUPIL,
        subject,
        &format!("{}@example-academy.sch.uk", subject.replace(' ', ".")),
        "Here is the homework sheet.",
    );
    let reply = send(&mut c, STAFF, PUPIL, &message);
    assert!(reply.contains("held for review"), "{reply}");
    reply
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Issue 17, defect 2: a deleted message's download answers 410 Gone with a page saying who
/// deleted it, when and why (never 500, never a path on the server), and its entry shows the
/// deletion; a held message whose file was lost answers 410 too, without the path.
#[test]
fn a_deleted_messages_download_is_gone_and_its_entry_says_who_when_and_why() {
    let gw = Gateway::start(|cfg| {
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
    });
    add_user(&gw.config_path, "dsl", &["dsl"], PASSWORD);
    let deleted = send_held(&gw, "Homework one");
    let lost = send_held(&gw, "Homework two");
    let mut dsl = Browser::logged_in(gw.web_port(), "dsl", PASSWORD);
    let page = dsl.get(&format!("/quarantine/{deleted}"));
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("id=\"download\""),
        "a download while held"
    );
    let csrf = page.csrf().expect("a form");
    let reason = "Sent to the wrong address; the teacher will resend it to school email";
    let r = dsl.post(
        &format!("/quarantine/{deleted}/delete"),
        &[("csrf", &csrf), ("reason", reason), ("confirm", "yes")],
    );
    assert_eq!(r.status, 303, "{}", r.text());

    let state = gw.state_dir.to_string_lossy().into_owned();
    let download = dsl.get(&format!("/quarantine/{deleted}/eml"));
    assert_eq!(download.status, 410, "{}", download.text());
    let text = download.text();
    assert!(text.contains("deleted by dsl"), "{text}");
    assert!(text.contains(reason), "{text}");
    assert!(has_uk_time(&text), "when, as the school reads it: {text}");
    assert!(
        !text.contains(&state) && !text.contains(".eml"),
        "a path: {text}"
    );
    assert_no_utc("the 410 page", &download);

    let entry = dsl.get(&format!("/quarantine/{deleted}"));
    assert_eq!(entry.status, 200);
    let text = entry.text();
    let outcome = &text[text.find("id=\"outcome\"").expect("an outcome section")..];
    let outcome = &outcome[..outcome.find("</section>").unwrap_or(outcome.len())];
    assert!(outcome.contains("Deleted"), "{outcome}");
    assert!(outcome.contains(">dsl<"), "who: {outcome}");
    assert!(outcome.contains(reason), "why: {outcome}");
    assert!(has_uk_time(outcome), "when: {outcome}");
    assert!(
        !text.contains("id=\"download\""),
        "a download for a deleted message"
    );
    assert_no_utc("a deleted entry", &entry);

    std::fs::remove_file(gw.state_dir.join(format!("quarantine/{lost}.eml")))
        .expect("remove the held file");
    let download = dsl.get(&format!("/quarantine/{lost}/eml"));
    assert_eq!(download.status, 410, "{}", download.text());
    assert!(
        !download.text().contains(&state) && !download.text().contains("No such file"),
        "{}",
        download.text()
    );
}

/// Runs `schoolgate serve` on `config`, which must fail within 30 s; its stderr.
fn serve_refused(config: &Path) -> String {
    let mut child = Command::new(common::bin())
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run schoolgate serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait for schoolgate serve") {
            assert!(!status.success(), "serve started: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("schoolgate serve started on plain HTTP on a network address");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut err = String::new();
    use std::io::Read;
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

/// A copy of `gw`'s config with `[web]` `key = value` lines set.
fn config_with(gw: &Gateway, name: &str, web: &[(&str, toml::Value)]) -> PathBuf {
    let text = std::fs::read_to_string(&gw.config_path).expect("read the config");
    let mut cfg: toml::Table = toml::from_str(&text).expect("the config parses");
    for (key, value) in web {
        set(&mut cfg, &format!("web.{key}"), value.clone());
    }
    let path = gw.dir.path().join(name);
    std::fs::write(&path, toml::to_string(&cfg).expect("serialise")).expect("write");
    path
}

/// Issue 17, defect 3: plain HTTP on an address other than loopback is refused at start with
/// one line naming `[web] listen` and `tls`, and by `policy check`; `insecure_http = true`
/// starts it, says what it costs, and the cookie is then not `Secure` (so a login works).
#[test]
fn plain_http_on_a_network_address_is_refused_unless_insecure_http_says_what_it_costs() {
    let gw = Gateway::start(|_| {});
    let port = common::free_port();
    let open = config_with(
        &gw,
        "open.toml",
        &[("listen", format!("0.0.0.0:{port}").into())],
    );
    let err = serve_refused(&open);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("[web] listen")).collect();
    assert_eq!(lines.len(), 1, "one line names [web] listen: {err}");
    assert!(
        lines[0].starts_with("schoolgate: ") && lines[0].contains("[web] tls"),
        "{err}"
    );
    let check = common::schoolgate_cli(&open, &["policy", "check"]);
    assert!(!check.status.success(), "policy check passed it");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(said.contains("[web] listen"), "{said}");

    let insecure = config_with(
        &gw,
        "insecure.toml",
        &[
            ("listen", format!("0.0.0.0:{port}").into()),
            ("insecure_http", true.into()),
        ],
    );
    let check = common::schoolgate_cli(&insecure, &["policy", "check"]);
    let said = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(check.status.success(), "{said}");
    assert!(
        said.contains("warning: [web] insecure_http") && said.contains("cannot be Secure"),
        "{said}"
    );
    drop(gw);

    let gw = Gateway::start(|cfg| {
        set(
            cfg,
            "web.listen",
            format!("0.0.0.0:{}", common::free_port()),
        );
        set(cfg, "web.insecure_http", true);
    });
    add_user(&gw.config_path, "dsl", &["dsl"], PASSWORD);
    assert!(
        gw.wait_for(Duration::from_secs(10), || gw
            .log()
            .contains("insecure_http")),
        "the start does not say what insecure_http costs: {}",
        gw.log_tail(20)
    );
    let mut b = Browser::new(gw.web_port());
    let r = b.login("dsl", PASSWORD);
    assert_eq!(r.status, 303, "{}", r.text());
    let cookie = r.header("set-cookie").expect("a session cookie");
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert_eq!(b.get("/flags").status, 200, "logged in over plain HTTP");
}

/// A class list whose attachment's Content-Disposition is malformed (an unclosed quote): the
/// scan names it `"class-list.csv` while mail_parser names it otherwise, so matching findings
/// to attachments by name showed "No findings" under it.
fn malformed_name_class_list() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/sensitive/messages/class-list-csv.eml");
    let text = std::fs::read_to_string(&path).expect("read the class list fixture");
    let bad = text.replace(
        "Content-Disposition: attachment; filename=\"class-list.csv\"",
        "Content-Disposition: attachment; filename=\"class-list.csv",
    );
    assert_ne!(bad, text, "the fixture's header changed");
    bad.into_bytes()
}

/// Issue 17, defect 4: a finding sits with the attachment it was found in, whatever that
/// attachment's file name header looks like: no attachment reads "No findings" while "Why
/// held" names a finding in it.
#[test]
fn findings_stay_with_their_attachment_whatever_its_name_header() {
    let gw = Gateway::start(|cfg| {
        set(
            cfg,
            "school.directory",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/sensitive/directory.csv")
                .to_string_lossy()
                .into_owned(),
        );
    });
    add_user(&gw.config_path, "netman", &["network-manager"], PASSWORD);
    let mut c = Client::ready(gw.port);
    let reply = send(
        &mut c,
        COLLEAGUE,
        "k.supply.teacher@gmail.com",
        &malformed_name_class_list(),
    );
    assert!(reply.contains("held"), "{reply}");
    let id = reply
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut nm = Browser::logged_in(gw.web_port(), "netman", PASSWORD);
    let page = nm.get(&format!("/quarantine/{id}"));
    assert_eq!(page.status, 200, "{}", page.text());
    let text = page.text();
    let attachments = &text[text.find("id=\"attachments\"").expect("attachments")..];
    let attachments = &attachments[..attachments.find("</section>").unwrap_or(attachments.len())];
    let parts: Vec<&str> = attachments
        .split("<div class=\"attachment\"")
        .skip(1)
        .collect();
    assert_eq!(parts.len(), 1, "one attachment: {attachments}");
    assert!(
        parts[0].contains("unencrypted-sensitive-attachment"),
        "the class list's findings are not with it: {attachments}"
    );
    assert!(!attachments.contains("No findings"), "{attachments}");
    assert!(
        !attachments.contains("Not tied to one attachment"),
        "{attachments}"
    );
    // The audit record says which part it was found in.
    let record = gw
        .message_records()
        .into_iter()
        .last()
        .expect("a message record");
    assert_eq!(
        record.message()["findings"][0]["part"],
        serde_json::json!(1),
        "{}",
        record.record_json
    );
}

/// Issue 17, defect 6: with the school in Europe/London no page says UTC: the quarantine list
/// and entry, the flags and a case, the audit trail and the undelivered list.
#[test]
fn no_page_says_utc_while_the_school_is_in_london() {
    let gw = Gateway::start(|cfg| {
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
    });
    add_user(
        &gw.config_path,
        "both",
        &["network-manager", "dsl"],
        PASSWORD,
    );
    let id = send_held(&gw, "Homework three");
    let mut b = Browser::logged_in(gw.web_port(), "both", PASSWORD);
    let flags = b.get("/flags");
    let case = flags
        .text()
        .split("href=\"/flags/")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .map(|s| format!("/flags/{s}"))
        .expect("a case for the held message");
    for path in [
        "/quarantine".to_string(),
        format!("/quarantine/{id}"),
        "/flags".into(),
        case,
        "/audit".into(),
        "/undelivered".into(),
        "/flags?since=01/01/2026".into(),
    ] {
        let page = b.get(&path);
        assert_eq!(page.status, 200, "{path}: {}", page.text());
        assert_no_utc(&path, &page);
        if path.starts_with("/quarantine") || path == "/audit" {
            assert!(has_uk_time(&page.text()), "{path} shows no GMT/BST time");
        }
    }
}

/// Issue 17, defect 8: `/metrics` answers loopback by default and anyone else only with the
/// token of `[web] metrics_token_file`; a client outside `metrics_allowed_clients` gets 403.
#[test]
fn metrics_answer_only_their_allowed_clients_or_the_token() {
    let token = "f3b1c0a9e8d7c6b5a4f3e2d1c0b9a8f7";
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, format!("{token}\n")).expect("write the token");
    let loopback = Gateway::start(|_| {});
    let r = common::http_get(loopback.web_port(), "/metrics");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("schoolgate_"), "{r}");

    let gw = Gateway::start(|cfg| {
        set(
            cfg,
            "web.metrics_allowed_clients",
            toml::Value::Array(vec!["192.0.2.0/24".into()]),
        );
        set(
            cfg,
            "web.metrics_token_file",
            token_file.to_string_lossy().into_owned(),
        );
    });
    let r = common::http_get(gw.web_port(), "/metrics");
    assert!(
        r.starts_with("HTTP/1.1 403"),
        "loopback is not listed now: {r}"
    );
    assert!(!r.contains("schoolgate_"), "{r}");
    assert!(r.contains("metrics_allowed_clients"), "{r}");
    let with = |auth: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.web_port())).expect("connect");
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    };
    let r = with(&format!("Bearer {token}"));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("schoolgate_"), "{r}");
    for wrong in [
        format!("Bearer {}", &token[1..]),
        format!("Bearer {token}x"),
        format!("Basic {token}"),
        "Bearer ".to_string(),
    ] {
        let r = with(&wrong);
        assert!(r.starts_with("HTTP/1.1 403"), "{wrong}: {r}");
    }
}

/// Issue 17, defect 9: over TLS every answer carries Strict-Transport-Security; over plain
/// HTTP on loopback none does.
#[test]
fn hsts_over_tls_only() {
    let plain = Gateway::start(|_| {});
    let r = common::http_get(plain.web_port(), "/login");
    assert!(
        !r.to_ascii_lowercase().contains("strict-transport-security"),
        "{r}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    common::tools::self_signed_certificate("schoolgate.test", &cert, &key);
    let gw = Gateway::start(|cfg| {
        set(cfg, "relay.tls_cert", cert.to_string_lossy().into_owned());
        set(cfg, "relay.tls_key", key.to_string_lossy().into_owned());
        set(cfg, "web.tls", true);
    });
    for path in ["/login", "/metrics", "/static/style.css"] {
        let out = Command::new("openssl")
            .args(["s_client", "-quiet", "-ign_eof", "-connect"])
            .arg(format!("127.0.0.1:{}", gw.web_port()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                if let Some(mut stdin) = child.stdin.take() {
                    write!(
                        stdin,
                        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                    )?;
                }
                child.wait_with_output()
            })
            .expect("openssl s_client (scripts/test installs openssl)");
        let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 "), "{path}: {text}");
        assert!(
            text.contains("strict-transport-security: max-age=31536000"),
            "{path}: {text}"
        );
    }
}
