//! Issue 17's quarantine in a real headless Chromium (Debian's chromium and chromium-driver), as
//! the network manager uses it on a busy morning: the counts per rule, a filter by attachment
//! type and sender, a sort by a column, three messages ticked and released with one reason
//! through the confirmation page, each reaching the next hop once and audited on its own.
//! Photographed at desktop and phone widths in target/screenshots/ (`quarantine-counts`,
//! `quarantine-filtered`, `quarantine-confirm`, `quarantine-bulk-done`).

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::smtp::{Client, Sink, SinkBehaviour};
use common::{Gateway, header_value, set};

const NETWORK_MANAGER: (&str, &str) = ("sam.network", "Kettle-lamp-2026");
const BAKER: &str = "t.baker@example-academy.sch.uk";
const JONES: &str = "r.jones@example-academy.sch.uk";
const COUNTY: &str = "admissions@county.gov.example";
const WHY: &str = "Checked with the county: these go to their admissions team";

/// The class list as `file` would hold it: the fixture workbook for a `.xlsx`, else CSV.
fn class_list_as(file: &str) -> Vec<u8> {
    if file.ends_with(".xlsx") {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/sensitive/files/class-list.xlsx");
        return std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    class_list()
}

fn class_list() -> Vec<u8> {
    let mut csv = String::from("Name,UPN,Date of birth,Form\r\n");
    for n in 0..30 {
        csv.push_str(&format!(
            "Pupil{n} Surname{n},{},{:02}/03/2014,7B\r\n",
            common::upn(100 + n),
            n % 28 + 1
        ));
    }
    csv.into_bytes()
}

/// Holds a class list from `from` as `file`; its quarantine id.
fn hold(c: &mut Client, from: &str, subject: &str, file: &str, mid: &str) -> String {
    let m = common::message_with_attachment(
        (from, COUNTY),
        subject,
        mid,
        (file, "application/octet-stream"),
        &class_list_as(file),
    );
    let t = c.send(from, "", &[COUNTY], &m).expect("send");
    let text = t.reply.text();
    assert!(text.contains("held for review"), "not held: {text}");
    text.rsplit(' ').next().unwrap().trim().to_string()
}

fn page(browser: &Browser) -> String {
    browser
        .path()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The ids of the rows listed, in order.
fn rows(browser: &Browser) -> Vec<String> {
    browser
        .find_all("table#quarantine tr.held")
        .iter()
        .filter_map(|r| r.attr("data-id"))
        .collect()
}

#[test]
fn the_network_manager_filters_the_quarantine_and_releases_three_messages_at_once() {
    let sink = Sink::start(SinkBehaviour::accept());
    let gw = Gateway::start(|cfg| set(cfg, "relay.next_hop", sink.url()));
    gw.add_user(NETWORK_MANAGER.0, &["network-manager"], NETWORK_MANAGER.1);
    let mut c = Client::ready(gw.port);
    let baker: Vec<String> = (0..3)
        .map(|n| {
            hold(
                &mut c,
                BAKER,
                &format!("Form 7B list {n}"),
                &format!("7B-{n}.csv"),
                &format!("bulk-{n}@example-academy.sch.uk"),
            )
        })
        .collect();
    let jones = hold(
        &mut c,
        JONES,
        "Year 9 options",
        "options.xlsx",
        "jones@test",
    );

    let mut browser = Browser::start();
    browser.set_base(format!("http://127.0.0.1:{}", gw.web_port()));
    browser.goto("/login");
    browser.set_field("input[name=name]", NETWORK_MANAGER.0);
    browser.set_field("input[name=password]", NETWORK_MANAGER.1);
    browser.click("button[type=submit]");
    if page(&browser) != "/quarantine" {
        browser.fail("a network manager lands on the quarantine");
    }

    // The counts per rule at the top.
    assert_eq!(browser.text("#held-count"), "4");
    let counts = browser.text("table#rule-counts");
    assert!(
        counts.contains("unencrypted-sensitive-attachment") && counts.contains('4'),
        "{counts}"
    );
    browser.screenshots("quarantine-counts");

    // Filter by attachment type, then by sender too.
    browser.set_field("form#quarantine-filter input#ext", "xlsx");
    browser.submit("form#quarantine-filter");
    assert_eq!(
        rows(&browser),
        std::slice::from_ref(&jones),
        "only the .xlsx"
    );
    browser.set_field("form#quarantine-filter input#ext", "csv");
    browser.set_field("form#quarantine-filter input#sender", "t.baker");
    browser.submit("form#quarantine-filter");
    let mut shown = rows(&browser);
    shown.sort();
    let mut want = baker.clone();
    want.sort();
    assert_eq!(shown, want, "Mr Baker's three .csv lists");
    browser.screenshots("quarantine-filtered");
    // Sorted by the held time, oldest first, with the filter kept.
    browser
        .find_all("table#quarantine th a.sort")
        .into_iter()
        .find(|a| a.attr("data-column").as_deref() == Some("held"))
        .expect("the Held column sorts")
        .click();
    assert_eq!(rows(&browser), baker, "oldest first after one click");
    assert!(
        browser.path().contains("sender=t.baker"),
        "{}",
        browser.path()
    );

    // Tick the three, give one reason, release: the confirmation lists them, nothing yet gone.
    for row in browser.find_all("table#quarantine tr.held") {
        row.find("input.pick").tick();
    }
    browser.set_field("textarea#bulk-reason", WHY);
    browser.click("button#bulk-release");
    if !browser.exists("form#confirm-form") {
        browser.fail("expected the confirmation page");
    }
    let listed: Vec<String> = browser
        .find_all("table#confirm-list tr.confirm")
        .iter()
        .filter_map(|r| r.attr("data-id"))
        .collect();
    assert_eq!(listed, baker, "the three, in the list's order");
    assert_eq!(browser.text("#confirm-reason"), WHY);
    let at_hop = |n: usize| {
        sink.accepted()
            .iter()
            .filter(|m| {
                header_value(&m.data, "Message-ID")
                    .is_some_and(|v| v.contains(&format!("bulk-{n}@")))
            })
            .count()
    };
    // (The sink has had the senders' notices; none of the held messages.)
    assert!(
        (0..3).all(|n| at_hop(n) == 0),
        "nothing before the confirmation"
    );
    browser.screenshots("quarantine-confirm");
    browser.click("button#confirm");
    if page(&browser) != "/quarantine" {
        browser.fail("confirming leads back to the list");
    }
    assert!(
        browser
            .text(".notice")
            .contains("Released 3 messages to the next hop."),
        "{}",
        browser.text(".notice")
    );
    assert_eq!(rows(&browser), std::slice::from_ref(&jones), "one left");
    browser.screenshots("quarantine-bulk-done");

    assert!(
        gw.wait_for(Duration::from_secs(10), || (0..3).all(|n| at_hop(n) == 1)),
        "each released message reached the next hop once: {}",
        sink.transcript()
    );
    let details: Vec<String> = gw
        .audit_records()
        .iter()
        .filter_map(|r| r.record["action"]["detail"].as_str().map(str::to_string))
        .collect();
    for id in &baker {
        let mine: Vec<&String> = details
            .iter()
            .filter(|d| {
                d.starts_with(&format!(
                    "quarantine release {id} by sam.network (reason: {WHY})"
                ))
            })
            .collect();
        assert_eq!(mine.len(), 1, "{id} audited on its own: {details:?}");
    }
    gw.assert_audit_verifies("after the bulk release");
}
