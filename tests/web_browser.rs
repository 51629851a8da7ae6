//! Issue 7's acceptance in a real headless Chromium (Debian's chromium and chromium-driver):
//! the network manager and the DSL use the web page the way they will at school.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::browser::{Browser, processes_using_profile};
use common::smtp::{Client, Sink, SinkBehaviour};
use common::{Gateway, header_value, set, smtp_canonical};

/// The network manager's account: reviews the quarantine.
const NETWORK_MANAGER: (&str, &str) = ("sam.network", "Kettle-lamp-2026");
/// The DSL's account: flags and the audit trail.
const DSL: (&str, &str) = ("priya.dsl", "Orchard-gate-2026");
/// An account that will be locked out.
const OFFICE: (&str, &str) = ("office.manager", "Quiet-river-2026");

/// A class list with a non-ASCII file name (RFC 2231), held; the network manager releases it.
const CLASS_LIST: &str = "class-list-xlsx-rfc2231-name";
const CLASS_LIST_ATTACHMENT: &str = "Class list – Year 7 (Zoë’s form).xlsx";
/// A child protection referral as a Word file, held; the network manager deletes it.
const REFERRAL: &str = "cp-referral-docx";
const DELETE_REASON: &str =
    "Sent as a Word file by mistake; the DSL is sending it through the secure portal";
/// A member of staff writing to a pupil's personal address: flagged for the DSL, delivered.
const STAFF: &str = "t.baker@example-academy.sch.uk";
const PUPIL_PERSONAL: &str = "mo.hussain2012@gmail.com";

fn sensitive_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/sensitive")
}

/// Sends `message` from `from` to `to` through the relay; returns the final reply's text.
fn send(gw: &Gateway, from: &str, to: &str, message: &[u8]) -> String {
    let mut client = Client::ready(gw.port);
    let t = client
        .send(from, "", &[to], &smtp_canonical(message))
        .expect("send through the relay");
    assert!(t.accepted(), "the relay refused the message: {}", t.reply);
    client.quit();
    t.reply.text()
}

/// Sends the fixture message `name` (its envelope from its From: and To:) and returns the
/// quarantine id the relay's "held for review" reply names.
fn send_held_fixture(gw: &Gateway, name: &str) -> String {
    let path = sensitive_fixtures().join(format!("messages/{name}.eml"));
    let message =
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let address = |header: &str| {
        let value = header_value(&message, header)
            .unwrap_or_else(|| panic!("{} has no {header}: header", path.display()));
        value
            .rsplit_once('<')
            .and_then(|(_, a)| a.split_once('>'))
            .map(|(a, _)| a.to_string())
            .unwrap_or(value)
    };
    let reply = send(gw, &address("From"), &address("To"), &message);
    assert!(
        reply.contains("held for review"),
        "{name} was not held: {reply}"
    );
    reply
        .rsplit(' ')
        .next()
        .expect("the reply ends with the quarantine id")
        .trim()
        .to_string()
}

/// The messages the next hop accepted whose Message-ID contains `id_part`.
fn at_next_hop(sink: &Sink, id_part: &str) -> Vec<Vec<u8>> {
    sink.accepted()
        .into_iter()
        .filter(|m| header_value(&m.data, "Message-ID").is_some_and(|v| v.contains(id_part)))
        .map(|m| m.data)
        .collect()
}

/// Logs in on /login the way a person does.
fn log_in(browser: &Browser, (name, password): (&str, &str)) {
    browser.goto("/login");
    browser.set_field("input[name=name]", name);
    browser.set_field("input[name=password]", password);
    browser.click("button[type=submit]");
}

/// The path of the current page without its query.
fn page(browser: &Browser) -> String {
    browser
        .path()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Fails the test, showing the page, unless the browser is on `path` (query aside).
fn expect_page(browser: &Browser, path: &str, why: &str) {
    let on = page(browser);
    if on != path {
        browser.fail(&format!("{why}: expected to be on {path}, but on {on}"));
    }
}

/// The one `tr.held` row whose text contains `needle`.
fn held_row<'b>(browser: &'b Browser, needle: &str) -> common::browser::El<'b> {
    let mut rows: Vec<_> = browser
        .find_all("table#quarantine tr.held")
        .into_iter()
        .filter(|row| row.text().contains(needle))
        .collect();
    if rows.len() != 1 {
        browser.fail(&format!(
            "expected one held message mentioning {needle:?} in the list, found {}",
            rows.len()
        ));
    }
    rows.remove(0)
}

/// On the confirmation page (nothing done yet), which lists the message `id`: confirms.
fn confirm(browser: &Browser, id: &str) {
    if !browser.exists("form#confirm-form") {
        browser.fail("expected the confirmation page");
    }
    let listed: Vec<String> = browser
        .find_all("table#confirm-list tr.confirm")
        .iter()
        .filter_map(|r| r.attr("data-id"))
        .collect();
    if listed != [id] {
        browser.fail(&format!("the confirmation page lists {listed:?}, not {id}"));
    }
    browser.click("button#confirm");
}

/// The action record whose text contains `what` (e.g. "quarantine release ID").
fn action_record(gw: &Gateway, what: &str) -> common::AuditRow {
    gw.audit_records()
        .into_iter()
        .filter(|r| r.kind != "message")
        .find(|r| r.record_json.contains(what))
        .unwrap_or_else(|| panic!("no audit record mentions {what:?}"))
}

/// Issue 7's acceptance, as the school will use it: the network manager logs in, finds the
/// held class list, reads it, releases it (the next hop gets it exactly once) and deletes a
/// held referral with a reason (the quarantine and the audit trail say who and why); the DSL
/// sees the safeguarding flags, searches the audit trail and downloads the CSV Excel opens;
/// five wrong passwords lock an account so that even the right one then fails. Every page is
/// photographed at desktop and phone widths (target/screenshots/).
#[test]
fn the_network_manager_reviews_the_quarantine_and_the_dsl_exports_the_audit_trail() {
    let started = Instant::now();
    let sink = Sink::start(SinkBehaviour::accept());
    let gw = Gateway::start(|cfg| {
        set(
            cfg,
            "school.directory",
            sensitive_fixtures()
                .join("directory.csv")
                .to_string_lossy()
                .into_owned(),
        );
        set(cfg, "relay.next_hop", sink.url());
    });
    gw.add_user(NETWORK_MANAGER.0, &["network-manager"], NETWORK_MANAGER.1);
    gw.add_user(DSL.0, &["dsl"], DSL.1);
    gw.add_user(OFFICE.0, &["network-manager"], OFFICE.1);

    let class_list = send_held_fixture(&gw, CLASS_LIST);
    let referral = send_held_fixture(&gw, REFERRAL);
    let flagged = common::plain_message(
        STAFF,
        PUPIL_PERSONAL,
        "Your coursework",
        "coursework.1@example-academy.sch.uk",
        "Hi Mo, I have marked your coursework; see me on Monday.",
    );
    let reply = send(&gw, STAFF, PUPIL_PERSONAL, &flagged);
    assert!(
        !reply.contains("held"),
        "the flagged message was held: {reply}"
    );
    let held_class_list = std::fs::read(gw.state_dir.join(format!("quarantine/{class_list}.eml")))
        .expect("the held class list is in the quarantine directory");
    let setup = started.elapsed();

    let mut browser = Browser::start();
    browser.set_base(format!("http://127.0.0.1:{}", gw.web_port()));

    // The network manager logs in and sees both held messages.
    browser.goto("/login");
    browser.screenshots("login");
    log_in(&browser, NETWORK_MANAGER);
    expect_page(
        &browser,
        "/quarantine",
        "a network manager lands on the quarantine",
    );
    assert!(
        !browser.exists("a#nav-flags"),
        "a network manager without the DSL role is offered the safeguarding flags"
    );
    assert_eq!(browser.find_all("table#quarantine tr.held").len(), 2);
    let row = held_row(&browser, CLASS_LIST_ATTACHMENT);
    let row_text = row.text();
    for shown in [
        "t.baker@example-academy.sch.uk",
        "k.supply.teacher@gmail.com",
        "Class list for Zoë’s form",
    ] {
        assert!(
            row_text.contains(shown),
            "the class list's row does not show {shown:?}: {row_text}"
        );
    }
    browser.screenshots("quarantine");
    // On a phone each held message's subject, reason and Open link are in view.
    for part in ["td.subject", "td.reason", "a.open"] {
        browser.assert_fits_on_a_phone(&format!("table#quarantine tr.held {part}"));
    }

    // The filter finds the referral alone.
    browser.set_field("form#quarantine-filter [name=q]", "Referral");
    browser.submit("form#quarantine-filter");
    assert_eq!(browser.find_all("table#quarantine tr.held").len(), 1);
    held_row(&browser, "cp-referral.docx");

    // The class list: headers, text preview, the attachment and why it is held.
    browser.goto("/quarantine");
    held_row(&browser, CLASS_LIST_ATTACHMENT)
        .find("a.open")
        .click();
    expect_page(
        &browser,
        &format!("/quarantine/{class_list}"),
        "opening the class list",
    );
    let headers = browser.text("section#headers");
    for shown in [
        "Tom Baker",
        "k.supply.teacher@gmail.com",
        "Class list for Zoë’s form",
    ] {
        assert!(
            headers.contains(shown),
            "the headers do not show {shown:?}: {headers}"
        );
    }
    let preview = browser.text("section#preview");
    assert!(
        preview.contains("Attached, as promised."),
        "the preview: {preview}"
    );
    let attachments = browser.find_all("section#attachments .attachment");
    assert_eq!(attachments.len(), 1, "one attachment is listed");
    let attachment = attachments[0].text();
    assert!(
        attachment.contains(CLASS_LIST_ATTACHMENT),
        "the attachment's name is not shown: {attachment}"
    );
    assert!(
        attachment.to_lowercase().contains("upn"),
        "the attachment's findings (pupil UPNs) are not shown: {attachment}"
    );
    assert!(
        browser
            .find("a#download")
            .attr("href")
            .is_some_and(|h| h.ends_with(&format!("/quarantine/{class_list}/eml"))),
        "a#download does not lead to the .eml"
    );
    browser.screenshots("message");
    browser.click_download("a#download");
    let eml = std::fs::read(browser.wait_for_download(".eml")).expect("read the downloaded .eml");
    assert!(
        eml == held_class_list,
        "the downloaded .eml is not the held message"
    );

    // Release, with a reason and confirmed: the next hop gets it, exactly once, byte for byte
    // as held.
    browser.set_field(
        "textarea#release-reason",
        "Checked with the county: it goes to their admissions team",
    );
    browser.click("button#release");
    confirm(&browser, &class_list);
    expect_page(&browser, "/quarantine", "releasing leads back to the list");
    let notice = browser.text(".notice");
    assert!(
        notice.contains("Released"),
        "the notice after a release: {notice}"
    );
    assert!(
        gw.wait_for(Duration::from_secs(10), || !at_next_hop(
            &sink,
            "class-list-xlsx-rfc2231-name"
        )
        .is_empty()),
        "the released class list never reached the next hop; the sink saw:\n{}",
        sink.transcript()
    );
    let release = action_record(&gw, &format!("quarantine release {class_list}"));
    assert_eq!(
        release.record["action"]["actor"], NETWORK_MANAGER.0,
        "{}",
        release.record_json
    );
    assert_eq!(browser.find_all("table#quarantine tr.held").len(), 1);

    // Delete the referral with a reason.
    held_row(&browser, "cp-referral.docx")
        .find("a.open")
        .click();
    expect_page(
        &browser,
        &format!("/quarantine/{referral}"),
        "opening the referral",
    );
    browser.set_field("form#delete-form textarea[name=reason]", DELETE_REASON);
    browser.click("button#delete");
    confirm(&browser, &referral);
    expect_page(&browser, "/quarantine", "deleting leads back to the list");
    let notice = browser.text(".notice");
    assert!(
        notice.contains("Deleted"),
        "the notice after a delete: {notice}"
    );
    assert!(
        browser.exists("p.empty"),
        "the quarantine is not shown empty"
    );
    let shown = gw.cli_ok(&["quarantine", "show", &referral, "--as", NETWORK_MANAGER.0]);
    assert!(shown.contains("state:    deleted"), "{shown}");
    assert!(
        shown.contains(&format!("by {}", NETWORK_MANAGER.0)) && shown.contains(DELETE_REASON),
        "the quarantine does not say who deleted it and why:\n{shown}"
    );
    assert!(
        !gw.state_dir
            .join(format!("quarantine/{referral}.eml"))
            .exists(),
        "the deleted referral's file is still kept"
    );
    let delete = action_record(&gw, &format!("quarantine delete {referral}"));
    assert_eq!(
        delete.record["action"]["actor"], NETWORK_MANAGER.0,
        "{}",
        delete.record_json
    );
    assert!(
        delete.record_json.contains(DELETE_REASON),
        "{}",
        delete.record_json
    );
    browser.click("button#logout");
    expect_page(&browser, "/login", "logging out");

    // The DSL: flags, then the audit trail searched and exported.
    log_in(&browser, DSL);
    expect_page(&browser, "/flags", "a DSL lands on the flags");
    let flags: Vec<String> = browser
        .find_all("table#flags tr.flag")
        .iter()
        .map(|r| r.text())
        .collect();
    assert!(
        flags.iter().any(|f| f.contains(PUPIL_PERSONAL)),
        "the message to a pupil's personal address is not among the flags: {flags:?}"
    );
    browser.screenshots("flags");
    browser.assert_fits_on_a_phone("table#flags tr.flag td.evidence");
    browser.click("a#nav-audit");
    expect_page(&browser, "/audit", "the audit link");
    browser.set_field(
        "form#audit-search [name=rule]",
        "unencrypted-sensitive-attachment",
    );
    browser.submit("form#audit-search");
    let records: Vec<String> = browser
        .find_all("table#audit tr.record")
        .iter()
        .map(|r| r.text())
        .collect();
    assert_eq!(
        records.len(),
        2,
        "the search should find the two held messages: {records:?}"
    );
    assert!(
        records.iter().any(|r| r.contains("Referral")),
        "{records:?}"
    );
    assert!(
        records
            .iter()
            .any(|r| r.contains("Class list for Zoë’s form")),
        "{records:?}"
    );
    browser.screenshots("audit");
    browser.click_download("a#download-csv");
    let csv = std::fs::read(browser.wait_for_download(".csv")).expect("read the downloaded CSV");
    assert!(
        csv.starts_with("\u{feff}seq,time,kind,".as_bytes()),
        "the CSV does not start with a BOM and the header row"
    );
    let cli = gw.cli(&[
        "audit",
        "export",
        "--as",
        DSL.0,
        "--format",
        "csv",
        "--rule",
        "unencrypted-sensitive-attachment",
    ]);
    assert!(
        cli.status.success(),
        "audit export: {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(
        csv == cli.stdout,
        "the CSV downloaded differs from `schoolgate audit export`'s:\n{}\n---\n{}",
        String::from_utf8_lossy(&csv),
        String::from_utf8_lossy(&cli.stdout)
    );
    let text = String::from_utf8(csv).expect("the CSV is UTF-8");
    assert!(
        text.contains("cp-referral-docx.16@") && text.contains("class-list-xlsx-rfc2231-name.2@"),
        "{text}"
    );
    assert!(
        !text.contains(PUPIL_PERSONAL),
        "the flagged message matched another rule: {text}"
    );
    browser.click("button#logout");

    // Five wrong passwords lock the account from this address; the right one then fails too,
    // and every refusal reads the same (it does not tell a lock from a wrong password).
    let mut errors = Vec::new();
    for attempt in 1..=5 {
        log_in(&browser, (OFFICE.0, &format!("not-the-password-{attempt}")));
        expect_page(&browser, "/login", "a wrong password");
        let error = browser.text(".error");
        assert!(
            error.contains("wrong name or password") && error.contains("locked"),
            "attempt {attempt}: {error}"
        );
        errors.push(error);
    }
    log_in(&browser, OFFICE);
    expect_page(
        &browser,
        "/login",
        "the right password let a locked account in",
    );
    let error = browser.text(".error");
    assert!(
        errors.iter().all(|e| *e == error),
        "the right password on a locked account: {error}"
    );
    browser.screenshots("login-locked");
    browser.goto("/quarantine");
    expect_page(&browser, "/login", "a locked account has no session");

    // Still exactly once at the next hop, and the referral never went.
    assert_eq!(
        at_next_hop(&sink, "class-list-xlsx-rfc2231-name").len(),
        1,
        "released once"
    );
    assert!(
        at_next_hop(&sink, "class-list-xlsx-rfc2231-name")[0] == held_class_list,
        "the released bytes are not the held bytes"
    );
    assert!(
        at_next_hop(&sink, "cp-referral-docx").is_empty(),
        "the deleted referral was delivered"
    );
    common::verify_audit_chain(&gw.audit_records()).expect("the audit chain is whole");
    eprintln!(
        "web_browser: setup (gateway, 3 accounts, 3 messages) {:.1} s, in the browser {:.1} s",
        setup.as_secs_f64(),
        (started.elapsed() - setup).as_secs_f64()
    );
}

/// Issue 14's check in a real browser: a message held by a safeguarding rule is the DSL's. The
/// network manager's list and page show that it exists, when and how large, and neither its
/// text nor a release; the DSL reads it, releases it with a reason, and the next hop gets it
/// exactly once. Both views are photographed at desktop and phone widths.
#[test]
fn the_dsl_releases_a_safeguarding_hold_with_a_reason_and_the_network_manager_sees_only_that_it_exists()
 {
    let sink = Sink::start(SinkBehaviour::accept());
    let gw = Gateway::start(|cfg| {
        set(
            cfg,
            "school.directory",
            sensitive_fixtures()
                .join("directory.csv")
                .to_string_lossy()
                .into_owned(),
        );
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
        set(cfg, "relay.next_hop", sink.url());
    });
    gw.add_user(NETWORK_MANAGER.0, &["network-manager"], NETWORK_MANAGER.1);
    gw.add_user(DSL.0, &["dsl"], DSL.1);
    const SUBJECT: &str = "Our little secret";
    const TEXT: &str = "Mo, delete this after reading. Don't tell your mum we talk here.";
    let message = common::plain_message(
        STAFF,
        PUPIL_PERSONAL,
        SUBJECT,
        "secret.1@example-academy.sch.uk",
        TEXT,
    );
    let reply = send(&gw, STAFF, PUPIL_PERSONAL, &message);
    assert!(reply.contains("held for review"), "not held: {reply}");
    let id = reply.rsplit(' ').next().unwrap().trim().to_string();
    let hidden = [
        SUBJECT,
        "delete this after reading",
        PUPIL_PERSONAL,
        STAFF,
        "pupil-personal-address",
    ];

    let mut browser = Browser::start();
    browser.set_base(format!("http://127.0.0.1:{}", gw.web_port()));

    // The network manager: one row, saying only that a safeguarding rule holds a message.
    log_in(&browser, NETWORK_MANAGER);
    expect_page(
        &browser,
        "/quarantine",
        "a network manager lands on the quarantine",
    );
    let rows = browser.find_all("table#quarantine tr.held");
    assert_eq!(rows.len(), 1, "one held message");
    let row = rows[0].text();
    assert!(
        row.contains("Held by a safeguarding rule"),
        "the row: {row}"
    );
    assert!(
        browser
            .find_all("table#quarantine tr.held a.open")
            .is_empty(),
        "the network manager is offered to open a safeguarding hold"
    );
    let page_text = browser.page_text();
    for secret in hidden {
        assert!(
            !page_text.contains(secret),
            "the network manager's list shows {secret:?}: {page_text}"
        );
    }
    browser.screenshots("safeguarding-hold-list-network-manager");
    browser.assert_fits_on_a_phone("table#quarantine tr.held td.hidden");
    // The message's own address, typed in: its existence, time and size; nothing to act on.
    browser.goto(&format!("/quarantine/{id}"));
    assert_eq!(browser.text("h1"), "Held by a safeguarding rule");
    let page_text = browser.page_text();
    for secret in hidden {
        assert!(
            !page_text.contains(secret),
            "the network manager's message page shows {secret:?}: {page_text}"
        );
    }
    for absent in [
        "section#preview",
        "button#release",
        "button#delete",
        "a#download",
    ] {
        assert!(
            !browser.exists(absent),
            "the network manager's page has {absent}"
        );
    }
    assert!(
        browser.text("section#restricted").contains("bytes"),
        "the size"
    );
    browser.screenshots("safeguarding-hold-network-manager");
    browser.click("button#logout");

    // The DSL: the list names it, the page shows the text and the flag, and a release needs
    // a reason.
    log_in(&browser, DSL);
    browser.click("a#nav-quarantine");
    expect_page(&browser, "/quarantine", "the quarantine link");
    held_row(&browser, SUBJECT).find("a.open").click();
    expect_page(
        &browser,
        &format!("/quarantine/{id}"),
        "the DSL opens the hold",
    );
    assert!(
        browser.text("section#preview").contains(TEXT),
        "the DSL reads the text"
    );
    assert!(
        browser.exists("#safeguarding-hold"),
        "the page says whose decision it is"
    );
    assert!(
        browser
            .text("section#flags")
            .contains("pupil-personal-address"),
        "the flag is shown to the DSL"
    );
    assert_eq!(
        browser
            .find("textarea#release-reason")
            .attr("required")
            .as_deref()
            .map(|r| r == "true" || r.is_empty()),
        Some(true),
        "the release's reason is required"
    );
    browser.screenshots("safeguarding-hold-dsl");
    browser.assert_fits_on_a_phone("button#release");
    browser.assert_fits_on_a_phone("textarea#release-reason");
    const WHY: &str = "Spoke to Mr Baker and Mo's mother: a revision timetable, nothing more";
    browser.set_field("textarea#release-reason", WHY);
    browser.click("button#release");
    confirm(&browser, &id);
    expect_page(&browser, "/quarantine", "releasing leads back to the list");
    assert!(browser.text(".notice").contains("Released"));
    browser.screenshots("safeguarding-hold-released-dsl");
    assert!(
        gw.wait_for(Duration::from_secs(10), || !at_next_hop(&sink, "secret.1@")
            .is_empty()),
        "the released message never reached the next hop; the sink saw:\n{}",
        sink.transcript()
    );
    let release = action_record(&gw, &format!("quarantine release {id}"));
    assert_eq!(
        release.record["action"]["actor"], DSL.0,
        "{}",
        release.record_json
    );
    assert!(
        release.record_json.contains(WHY) && release.record_json.contains("safeguarding hold"),
        "the reason is not in the audit trail: {}",
        release.record_json
    );
    assert_eq!(at_next_hop(&sink, "secret.1@").len(), 1, "delivered once");
    common::verify_audit_chain(&gw.audit_records()).expect("the audit chain is whole");
}

/// A page of our own, served in-test, on which the harness itself is proved: a form that
/// posts, a page it leads to, and a CSV download.
fn serve_harness_pages() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind the test page server");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let target = request_line.split(' ').nth(1).unwrap_or("/");
            let (head, content): (String, Vec<u8>) = match target {
                "/" => (
                    "Content-Type: text/html; charset=utf-8".into(),
                    b"<!doctype html><meta name=viewport content='width=device-width'>\
                      <title>Harness</title><form id=f method=post action=/posted>\
                      <input name=q><button type=submit>Send</button></form>\
                      <a id=csv href=/export.csv>CSV</a>"
                        .to_vec(),
                ),
                "/posted" => (
                    "Content-Type: text/html; charset=utf-8".into(),
                    format!(
                        "<!doctype html><title>Posted</title><p class=echo>{}</p>",
                        String::from_utf8_lossy(&body)
                    )
                    .into_bytes(),
                ),
                "/export.csv" => (
                    "Content-Type: text/csv; charset=utf-8\r\n\
                     Content-Disposition: attachment; filename=\"harness.csv\""
                        .into(),
                    "\u{feff}name,value\r\nélève,1\r\n".as_bytes().to_vec(),
                ),
                _ => ("Content-Type: text/plain".into(), b"not found".to_vec()),
            };
            let status = if target == "/" || target == "/posted" || target == "/export.csv" {
                "200 OK"
            } else {
                "404 Not Found"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                content.len()
            );
            let _ = stream.write_all(&content);
        }
    });
    port
}

/// The harness itself: Chromium types into a form and posts it, follows to the next page,
/// saves a download where the test can read it, takes screenshots at both widths, and leaves
/// no Chromium behind when dropped.
#[test]
fn the_browser_harness_drives_headless_chromium() {
    let port = serve_harness_pages();
    let mut browser = Browser::start();
    browser.set_base(format!("http://127.0.0.1:{port}"));
    browser.goto("/");
    assert_eq!(browser.path(), "/");
    browser.fill("input[name=q]", "Year 9 list");
    browser.click("button[type=submit]");
    assert_eq!(browser.path(), "/posted");
    assert_eq!(browser.text("p.echo"), "q=Year+9+list");

    browser.goto("/");
    browser.click_download("a#csv");
    let csv = std::fs::read(browser.wait_for_download(".csv")).expect("read the download");
    assert_eq!(csv, "\u{feff}name,value\r\nélève,1\r\n".as_bytes());

    let [desktop, phone] = browser.screenshots("harness");
    for shot in [&desktop, &phone] {
        let png = std::fs::read(shot).expect("read the screenshot");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            shot.display()
        );
    }
    assert!(desktop.ends_with("harness-desktop.png") && phone.ends_with("harness-phone.png"));
    // The phone screenshot is 390 CSS pixels wide (PNG width: bytes 16..20 of the IHDR).
    let png = std::fs::read(&phone).expect("read the phone screenshot");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, 390, "the phone screenshot's width");

    let profile = browser.profile_dir().to_path_buf();
    assert!(
        !processes_using_profile(&profile).is_empty(),
        "no Chromium process found for the profile {}",
        profile.display()
    );
    drop(browser);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_using_profile(&profile).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        processes_using_profile(&profile),
        Vec::<i32>::new(),
        "Chromium processes left running after the browser was dropped"
    );
}

/// An HTTP server on loopback that answers nothing useful and counts who asked: where a
/// message's remote images, scripts, styles and frames point, to prove none is fetched.
fn serve_beacon() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind the beacon");
    let port = listener.local_addr().expect("its address").port();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let _ =
                BufReader::new(stream.try_clone().expect("clone the stream")).read_line(&mut line);
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line.trim().to_string());
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (port, asked)
}

/// The preview of a held HTML message, opened in a real browser, runs none of its scripts and
/// fetches none of its remote images, scripts, styles or frames (issue 7: "An HTML preview
/// never runs the message's scripts or loads its remote images").
#[test]
fn a_held_html_message_previews_without_running_scripts_or_fetching_anything() {
    let (beacon_port, asked) = serve_beacon();
    let beacon = format!("http://127.0.0.1:{beacon_port}");
    let gw = Gateway::start(|cfg| {
        set(
            cfg,
            "school.directory",
            sensitive_fixtures()
                .join("directory.csv")
                .to_string_lossy()
                .into_owned(),
        );
    });
    gw.add_user(NETWORK_MANAGER.0, &["network-manager"], NETWORK_MANAGER.1);
    let pwn = |how: &str| format!("document.documentElement.setAttribute('data-pwned','{how}')");
    let html = format!(
        "<html><head><link rel=\"stylesheet\" href=\"{beacon}/style.css\">\
         <script src=\"{beacon}/app.js\"></script></head>\
         <body onload=\"{onload}\"><p>Dear parents, the Year 7 list is attached.</p>\
         <script>{script}</script>\
         <img src=\"{beacon}/logo.png\" onerror=\"{onerror}\">\
         <div style=\"background-image:url({beacon}/bg.png)\">Sports day</div>\
         <iframe src=\"{beacon}/frame.html\"></iframe>\
         <a href=\"javascript:{link}\">Open the list</a></body></html>",
        onload = pwn("onload"),
        script = pwn("script"),
        onerror = pwn("onerror"),
        link = pwn("link"),
    );
    let csv = std::fs::read(sensitive_fixtures().join("files/class-list.csv"))
        .expect("read the class list fixture");
    let mut message = format!(
        "From: Tom Baker <{STAFF}>\r\nTo: <k.supply.teacher@gmail.com>\r\nSubject: Newsletter draft\r\n\
         Message-ID: <newsletter-html.1@example-academy.sch.uk>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--b1\r\n\
         Content-Type: text/csv; name=\"class-list.csv\"\r\n\
         Content-Disposition: attachment; filename=\"class-list.csv\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    message.extend(schoolgate::mime::encoding::base64_encode(
        &csv, 76, b"\r\n", true,
    ));
    message.extend_from_slice(b"--b1--\r\n");
    let reply = send(&gw, STAFF, "k.supply.teacher@gmail.com", &message);
    assert!(reply.contains("held for review"), "not held: {reply}");
    let id = reply.rsplit(' ').next().unwrap().trim().to_string();

    let mut browser = Browser::start();
    browser.set_base(format!("http://127.0.0.1:{}", gw.web_port()));
    log_in(&browser, NETWORK_MANAGER);
    held_row(&browser, "Newsletter draft")
        .find("a.open")
        .click();
    expect_page(
        &browser,
        &format!("/quarantine/{id}"),
        "opening the HTML message",
    );
    let preview = browser.text("section#preview");
    assert!(
        preview.contains("Dear parents, the Year 7 list is attached."),
        "the HTML's text is not previewed: {preview}"
    );
    assert!(
        browser.find_all("section#preview script, section#preview img, section#preview iframe, section#preview a[href^=javascript]").is_empty(),
        "the preview holds live elements of the message"
    );
    browser.screenshots("message-html");
    // Give anything the page might have started time to arrive.
    std::thread::sleep(Duration::from_millis(500));
    let pwned = browser.execute(
        "return document.documentElement.getAttribute('data-pwned')",
        vec![],
    );
    assert_eq!(pwned, serde_json::Value::Null, "the message's script ran");
    let fetched = asked.lock().unwrap().clone();
    assert_eq!(
        fetched,
        Vec::<String>::new(),
        "the message page fetched the message's remote content"
    );
}

/// Issue 14's case queue as the DSL uses it: the navigation counts the unreviewed cases, the
/// list shows each flagged message with its subject and a link to the kept evidence copy, the
/// case page records an outcome with a CPOMS reference (audited, the count goes down), gives
/// the block of text to paste, downloads the evidence copy, and reopens the case (audited, the
/// count goes back up). Photographed as `cases` and `case` at desktop and phone widths.
#[test]
fn the_dsl_reviews_a_case_and_reopens_it() {
    const BAKER: &str = "t.baker@example-academy.sch.uk";
    const JAMIE_PERSONAL: &str = "jamie.smith2010@gmail.com";
    let gw = Gateway::start(common::relay_only);
    gw.add_user(DSL.0, &["dsl"], DSL.1);
    for (i, subject) in ["Your coursework", "Trip money"].into_iter().enumerate() {
        let m = common::plain_message(
            BAKER,
            JAMIE_PERSONAL,
            subject,
            &format!("case.{i}@example-academy.sch.uk"),
            "Hi Jamie, see me on Monday.",
        );
        send(&gw, BAKER, JAMIE_PERSONAL, &m);
    }
    let mut browser = Browser::start();
    browser.set_base(format!("http://127.0.0.1:{}", gw.web_port()));
    log_in(&browser, DSL);
    expect_page(&browser, "/flags", "a DSL lands on the cases");
    let badge = || browser.text("a#nav-flags span#unreviewed");
    assert_eq!(badge(), "2", "two unreviewed cases in the navigation");
    let rows = browser.find_all("table#flags tr.flag");
    assert_eq!(rows.len(), 2, "two cases listed");
    assert!(
        rows.iter().any(|r| r.text().contains("Your coursework")),
        "the list shows the subject"
    );
    assert!(browser.exists("table#flags tr.flag a.evidence-copy"));
    browser.screenshots("cases");
    browser.assert_fits_on_a_phone("table#flags tr.flag td.subject");

    // Filters: by state and by person.
    browser.set_field("form#case-filter [name=state]", "reviewed");
    browser.submit("form#case-filter");
    assert!(browser.text("main").contains("No case matches"));
    browser.goto("/flags?person=jamie.smith2010");
    assert_eq!(browser.find_all("table#flags tr.flag").len(), 2);

    // One case: review it.
    let row = browser
        .find_all("table#flags tr.flag")
        .into_iter()
        .find(|r| r.text().contains("Your coursework"))
        .expect("the coursework case");
    let seq = row.attr("data-seq").expect("the row names its case");
    row.find("td.subject a").click();
    expect_page(&browser, &format!("/flags/{seq}"), "opening the case");
    browser.set_field("select#outcome", "concern-logged");
    browser.set_field(
        "textarea#note",
        "Spoke to Mr Baker; reminded him of the policy.",
    );
    browser.set_field("input#reference", "CPOMS-20431");
    browser.click("button#review");
    expect_page(&browser, &format!("/flags/{seq}"), "after the review");
    assert!(browser.text("p.notice").contains("recorded"));
    assert!(browser.text("dd.outcome").contains("Concern logged"));
    assert_eq!(badge(), "1", "one case left to review");
    let block = browser
        .find("textarea#case-block")
        .attr("value")
        .unwrap_or_else(|| browser.find("textarea#case-block").html());
    for want in [
        BAKER,
        JAMIE_PERSONAL,
        "pupil-personal-address",
        "Concern logged",
        "CPOMS-20431",
    ] {
        assert!(
            block.contains(want),
            "{want} missing from the text block:\n{block}"
        );
    }
    browser.screenshots("case");
    browser.assert_fits_on_a_phone("textarea#case-block");
    let review = gw
        .audit_records()
        .into_iter()
        .find(|r| r.kind == "case-review")
        .expect("the review is audited");
    assert_eq!(review.record["case_review"]["outcome"], "concern-logged");
    assert_eq!(review.record["case_review"]["actor"], DSL.0);
    assert_eq!(review.record["case_review"]["reference"], "CPOMS-20431");

    // The evidence copy is the delivered message, and its download is audited.
    browser.click_download("a#evidence-copy");
    let downloaded = std::fs::read(browser.wait_for_download(".eml")).expect("the download");
    assert!(
        String::from_utf8_lossy(&downloaded).contains("Your coursework"),
        "the evidence copy is the message"
    );
    action_record(&gw, &format!("case {seq} evidence copy downloaded"));

    // Reopen: new again, audited.
    browser.set_field("textarea#reopen-note", "His reply raised a new question.");
    browser.click("button#reopen");
    assert!(browser.text("p.notice").contains("reopened"));
    assert!(browser.exists("form#review-form"));
    assert_eq!(badge(), "2");
    assert!(
        gw.audit_records()
            .iter()
            .any(|r| r.record["case_review"]["action"] == "reopen"),
        "the reopening is audited"
    );
    gw.assert_audit_verifies("after the DSL's reviews");
}
