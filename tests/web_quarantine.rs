//! Issue 17's quarantine for a busy morning, over real HTTP against a real `schoolgate serve`:
//! every release and delete gives a reason (up to 1,000 characters) and is confirmed on one
//! page; several messages are released or deleted at once with one reason, each audited on its
//! own, with what could not be done said per message; the list filters by date, rule, sender,
//! recipient and attachment type, sorts by any column, counts per rule, and pages through 137+
//! held messages.

mod common;

use common::http::{Browser, Response, add_user};
use common::smtp::Client;
use common::{Gateway, set};

const FROM: &str = "t.baker@example-academy.sch.uk";
const OTHER: &str = "r.jones@example-academy.sch.uk";
const COUNTY: &str = "admissions@county.gov.example";
const PUPIL: &str = "jamie.smith2010@gmail.com";
const PASSWORD: &str = "correct horse battery staple";

/// A gateway that holds sensitive attachments and mail to a pupil's personal address, with
/// `netman` (network manager) and `dsl` accounts.
fn gateway() -> Gateway {
    let gw = Gateway::start(|cfg| {
        set(
            cfg,
            "safeguarding.rules.pupil-personal-address",
            "quarantine",
        );
    });
    add_user(&gw.config_path, "netman", &["network-manager"], PASSWORD);
    add_user(&gw.config_path, "dsl", &["dsl"], PASSWORD);
    gw
}

/// A class list of 30 pupils with UPNs and dates of birth: held for a sensitive attachment.
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

/// Sends `message` from `from` to `to` on `c`; returns the quarantine id of its "held" reply.
fn send_held(c: &mut Client, from: &str, to: &str, message: &[u8]) -> String {
    let t = c.send(from, "", &[to], message).expect("send");
    let text = t.reply.text();
    assert!(text.contains("held for review"), "not held: {text}");
    text.rsplit(' ').next().unwrap().trim().to_string()
}

/// A class list from `from` to `to` as `file`, held; its id.
fn held_list(c: &mut Client, from: &str, to: &str, subject: &str, file: &str) -> String {
    let mid = format!("{}@test", subject.replace(' ', "."));
    let m = common::message_with_attachment(
        (from, to),
        subject,
        &mid,
        (file, "application/octet-stream"),
        &class_list_as(file),
    );
    send_held(c, from, to, &m)
}

fn details(gw: &Gateway) -> Vec<String> {
    gw.audit_records()
        .iter()
        .filter_map(|r| r.record["action"]["detail"].as_str().map(str::to_string))
        .collect()
}

fn delivered_to(gw: &Gateway, whom: &str) -> usize {
    gw.outbox_messages()
        .iter()
        .filter(|m| m.rcpt_to().iter().any(|r| r == whom))
        .count()
}

/// The `data-id`s of the list's rows, in order.
fn row_ids(page: &Response) -> Vec<String> {
    let t = page.text();
    t.split("<tr class=\"held")
        .skip(1)
        .filter_map(|row| {
            let at = row.find("data-id=\"")? + "data-id=\"".len();
            Some(row[at..at + row[at..].find('"')?].to_string())
        })
        .collect()
}

#[test]
fn a_reason_is_required_and_at_most_a_thousand_characters_and_each_action_is_confirmed() {
    let gw = gateway();
    let mut c = Client::ready(gw.port);
    let id = held_list(&mut c, FROM, COUNTY, "Year 7 class list", "7B.csv");
    let mut nm = Browser::logged_in(gw.web_port(), "netman", PASSWORD);
    let page = nm.get(&format!("/quarantine/{id}"));
    let t = page.text();
    assert!(
        t.contains("id=\"release-reason\"") && t.contains("maxlength=\"1000\""),
        "{t}"
    );
    let csrf = page.csrf().unwrap();
    let long = "x".repeat(100_000);
    let just = "y".repeat(1_000);
    for (path, reason, status, says) in [
        ("release", "", 400, "needs a reason"),
        ("release", "   ", 400, "needs a reason"),
        ("release", long.as_str(), 400, "at most 1,000 characters"),
        ("delete", "", 400, "needs a reason"),
        ("delete", long.as_str(), 400, "at most 1,000 characters"),
    ] {
        for confirm in ["", "yes"] {
            let r = nm.post(
                &format!("/quarantine/{id}/{path}"),
                &[("csrf", &csrf), ("reason", reason), ("confirm", confirm)],
            );
            assert_eq!(r.status, status, "{path} {confirm}: {}", r.text());
            assert!(r.text().contains(says), "{path}: {}", r.text());
            assert!(r.text().contains("100000") || reason.len() < 1_000);
        }
    }
    assert_eq!(delivered_to(&gw, COUNTY), 0, "nothing released");
    assert!(
        !details(&gw)
            .iter()
            .any(|d| d.starts_with("quarantine release") || d.starts_with("quarantine delete")),
        "nothing done, nothing audited"
    );

    // 1,000 characters are allowed: the confirmation page says what will happen, and only its
    // confirm does it.
    let r = nm.post(
        &format!("/quarantine/{id}/release"),
        &[("csrf", &csrf), ("reason", &just)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.text();
    for want in [
        "Release 1 message?",
        "id=\"confirm-form\"",
        "name=\"confirm\" value=\"yes\"",
        &format!("name=\"id\" value=\"{id}\""),
        "released to 1 recipient",
        COUNTY,
        "id=\"cancel\"",
    ] {
        assert!(
            t.contains(want),
            "{want:?} missing from the confirmation:\n{t}"
        );
    }
    assert_eq!(delivered_to(&gw, COUNTY), 0, "not before the confirmation");
    let r = nm.post(
        "/quarantine/bulk",
        &[
            ("csrf", &csrf),
            ("action", "release"),
            ("id", &id),
            ("reason", &just),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    let back = nm.get(r.header("location").unwrap());
    assert!(
        back.text()
            .contains(&format!("Released {id} to the next hop."))
    );
    assert_eq!(delivered_to(&gw, COUNTY), 1);
    assert!(
        details(&gw).iter().any(|d| d.starts_with(&format!(
            "quarantine release {id} by netman (reason: {just})"
        ))),
        "the release and its reason are audited"
    );

    // The command line: a release needs --reason too, and the same limit holds.
    let id2 = held_list(&mut c, FROM, COUNTY, "Year 8 class list", "8C.csv");
    for args in [
        vec!["quarantine", "release", &id2, "--as", "netman"],
        vec![
            "quarantine",
            "release",
            &id2,
            "--as",
            "netman",
            "--reason",
            &long,
        ],
        vec![
            "quarantine",
            "delete",
            &id2,
            "--as",
            "netman",
            "--reason",
            &long,
        ],
    ] {
        let out = gw.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("needs --reason") || err.contains("at most 1,000 characters"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains(&long[..2000]),
            "the reason is not echoed back"
        );
    }
    assert_eq!(delivered_to(&gw, COUNTY), 1, "the CLI released nothing");
}

#[test]
fn several_messages_are_released_with_one_reason_each_audited_and_failures_said_per_message() {
    let gw = gateway();
    let mut c = Client::ready(gw.port);
    let ids: Vec<String> = (0..4)
        .map(|n| {
            held_list(
                &mut c,
                FROM,
                COUNTY,
                &format!("List {n}"),
                &format!("list{n}.csv"),
            )
        })
        .collect();
    let mut nm = Browser::logged_in(gw.web_port(), "netman", PASSWORD);
    let list = nm.get("/quarantine");
    let t = list.text();
    for id in &ids {
        assert!(
            t.contains(&format!("name=\"id\" value=\"{id}\"")),
            "no checkbox for {id}:\n{t}"
        );
    }
    assert!(t.contains("id=\"bulk-release\"") && t.contains("id=\"bulk-delete\""));
    let csrf = list.csrf().unwrap();
    const WHY: &str = "Checked with the county: these go to their admissions team";
    let ticked = [&ids[0], &ids[1], &ids[2]];
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("action", "release"),
        ("reason", WHY),
    ];
    form.extend(ticked.iter().map(|id| ("id", id.as_str())));

    // Nothing ticked, or no action chosen: said, nothing done.
    let r = nm.post(
        "/quarantine/bulk",
        &[("csrf", &csrf), ("action", "release"), ("reason", WHY)],
    );
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("Tick at least one message"),
        "{}",
        r.text()
    );

    let confirm = nm.post("/quarantine/bulk", &form);
    assert_eq!(confirm.status, 200, "{}", confirm.text());
    let t = confirm.text();
    assert!(t.contains("Release 3 messages?"), "{t}");
    for id in ticked {
        assert!(
            t.contains(&format!("data-id=\"{id}\"")),
            "{id} not listed:\n{t}"
        );
    }
    assert!(!t.contains(&format!("data-id=\"{}\"", ids[3])), "{t}");
    assert_eq!(
        delivered_to(&gw, COUNTY),
        0,
        "nothing before the confirmation"
    );

    // Meanwhile someone releases one of them on the command line.
    gw.cli_ok(&[
        "quarantine",
        "release",
        &ids[1],
        "--as",
        "netman",
        "--reason",
        "urgent",
    ]);
    let mut confirmed = form.clone();
    confirmed.push(("confirm", "yes"));
    let r = nm.post("/quarantine/bulk", &confirmed);
    assert_eq!(r.status, 200, "done in part: {}", r.text());
    let t = r.text();
    assert!(t.contains("Released 2 of 3 messages"), "{t}");
    assert!(
        t.contains(&format!("class=\"result not-done\" data-id=\"{}\"", ids[1]))
            && t.contains("already released by netman"),
        "the message released meanwhile is said: {t}"
    );
    for id in [&ids[0], &ids[2]] {
        assert!(
            t.contains(&format!("class=\"result done\" data-id=\"{id}\"")),
            "{id}: {t}"
        );
    }
    assert_eq!(
        delivered_to(&gw, COUNTY),
        3,
        "two by the web page, one by the CLI"
    );
    let released: Vec<String> = details(&gw)
        .into_iter()
        .filter(|d| d.contains(&format!("by netman (reason: {WHY})")))
        .collect();
    assert_eq!(released.len(), 2, "each audited on its own: {released:?}");
    for id in [&ids[0], &ids[2]] {
        assert!(
            released
                .iter()
                .any(|d| d.starts_with(&format!("quarantine release {id} "))),
            "{released:?}"
        );
    }

    // Bulk delete of the last one with a safeguarding hold the network manager may not touch:
    // the hold is left, said so, and the other deleted.
    let secret = send_held(
        &mut c,
        FROM,
        PUPIL,
        &common::plain_message(FROM, PUPIL, "Our secret", "s@test", "Delete this."),
    );
    let list = nm.get("/quarantine");
    assert!(
        !list
            .text()
            .contains(&format!("name=\"id\" value=\"{secret}\"")),
        "the network manager is offered a safeguarding hold's checkbox"
    );
    let base = [
        ("csrf", csrf.as_str()),
        ("action", "delete"),
        ("reason", "Sent to the wrong county address"),
        ("id", ids[3].as_str()),
        ("id", secret.as_str()),
    ];
    let confirm = nm.post("/quarantine/bulk", &base);
    let t = confirm.text();
    assert_eq!(confirm.status, 200, "{t}");
    assert!(
        t.contains("Delete 1 message?") && t.contains("Left as they are"),
        "{t}"
    );
    assert!(!t.contains("Our secret") && !t.contains(PUPIL), "{t}");
    let mut confirmed = base.to_vec();
    confirmed.push(("confirm", "yes"));
    let r = nm.post("/quarantine/bulk", &confirmed);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Deleted 1 of 2 messages"), "{}", r.text());
    assert!(r.text().contains("the DSL's decision"), "{}", r.text());
    let left = gw.cli_ok(&["quarantine", "list", "--json", "--as", "dsl"]);
    assert!(left.contains(&secret) && !left.contains(&ids[3]), "{left}");
    gw.assert_audit_verifies("after the bulk actions");
}

#[test]
fn the_list_filters_sorts_counts_per_rule_and_pages_through_many() {
    let gw = gateway();
    let mut c = Client::ready(gw.port);
    let a = held_list(&mut c, FROM, COUNTY, "Alpha list", "alpha.xlsx");
    let b = held_list(
        &mut c,
        OTHER,
        "office@trust.example",
        "Bravo list",
        "bravo.csv",
    );
    let secret = send_held(
        &mut c,
        FROM,
        PUPIL,
        &common::plain_message(FROM, PUPIL, "Our secret", "s2@test", "Delete this."),
    );
    let mut nm = Browser::logged_in(gw.web_port(), "netman", PASSWORD);
    let mut dsl = Browser::logged_in(gw.web_port(), "dsl", PASSWORD);

    // Counts per rule, as each person may see them.
    let t = nm.get("/quarantine").text();
    assert!(t.contains("id=\"held-count\">3<"), "{t}");
    assert!(
        t.contains("data-rule=\"unencrypted-sensitive-attachment\"")
            && t.contains("data-rule=\"safeguarding\""),
        "{t}"
    );
    assert!(!t.contains("pupil-personal-address"), "{t}");
    let t = dsl.get("/quarantine").text();
    assert!(t.contains("data-rule=\"pupil-personal-address\""), "{t}");

    // Filters.
    let today = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::get("Europe/London").unwrap())
        .date();
    let uk = today.strftime("%d/%m/%Y").to_string();
    let yesterday = today.yesterday().unwrap().to_string();
    let get = |b: &mut Browser, q: &str| {
        let r = b.get(&format!("/quarantine?{q}"));
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        let mut ids = row_ids(&r);
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    assert_eq!(get(&mut nm, "sender=r.jones"), std::slice::from_ref(&b));
    assert_eq!(
        get(&mut nm, "recipient=COUNTY.gov"),
        std::slice::from_ref(&a)
    );
    assert_eq!(get(&mut nm, "ext=.XLSX"), std::slice::from_ref(&a));
    assert_eq!(get(&mut nm, "ext=csv"), std::slice::from_ref(&b));
    assert_eq!(
        get(&mut nm, "rule=safeguarding"),
        std::slice::from_ref(&secret)
    );
    assert_eq!(
        get(&mut nm, "rule=unencrypted-sensitive-attachment"),
        sorted(vec![&a, &b])
    );
    assert_eq!(get(&mut nm, &format!("from={uk}&to={uk}")).len(), 3);
    assert_eq!(get(&mut nm, &format!("from={}", today)).len(), 3);
    assert!(get(&mut nm, &format!("to={yesterday}")).is_empty());
    // A hidden hold matches no filter on what it hides, not even its own sender.
    assert!(get(&mut nm, "sender=t.baker").iter().all(|i| *i != secret));
    assert!(get(&mut nm, &format!("recipient={PUPIL}")).is_empty());
    assert_eq!(
        get(&mut dsl, &format!("recipient={PUPIL}")),
        std::slice::from_ref(&secret)
    );
    let bad = nm.get("/quarantine?from=31/02/2026").text();
    assert!(bad.contains("dd/mm/yyyy"), "{bad}");

    // Sorting by any column, both ways.
    let order = |b: &mut Browser, q: &str| row_ids(&b.get(&format!("/quarantine?{q}")));
    assert_eq!(
        order(&mut dsl, "sort=from&dir=asc")[0],
        b,
        "r.jones before t.baker"
    );
    assert_eq!(order(&mut dsl, "sort=attachments&dir=asc")[0], secret);
    assert_eq!(
        order(&mut dsl, "sort=attachments&dir=desc")[0],
        b,
        "bravo.csv"
    );
    assert_eq!(
        order(&mut nm, "sort=held&dir=asc"),
        [a.clone(), b.clone(), secret.clone()]
    );
    assert_eq!(
        order(&mut nm, ""),
        [secret.clone(), b.clone(), a.clone()],
        "newest first"
    );
    // For the network manager the hidden sender sorts as empty: first A to Z.
    assert_eq!(order(&mut nm, "sort=from&dir=asc")[0], secret);
    for col in [
        "held",
        "from",
        "to",
        "subject",
        "why",
        "attachments",
        "size",
    ] {
        let r = nm.get(&format!("/quarantine?sort={col}&dir=desc"));
        assert_eq!(row_ids(&r).len(), 3, "{col}");
        assert!(r.text().contains("aria-sort=\"descending\""), "{col}");
    }

    // 140 held: pages of 50, each page links the next, the filters kept.
    for n in 0..137 {
        send_held(
            &mut c,
            FROM,
            PUPIL,
            &common::plain_message(
                FROM,
                PUPIL,
                &format!("Note {n}"),
                &format!("n{n}@test"),
                "Hi.",
            ),
        );
    }
    let first = dsl.get("/quarantine?rule=pupil-personal-address");
    let t = first.text();
    assert!(t.contains("138 held matching · page 1 of 3"), "{t}");
    assert_eq!(row_ids(&first).len(), 50);
    let mut seen = std::collections::BTreeSet::new();
    for page in 1..=3 {
        let r = dsl.get(&format!(
            "/quarantine?rule=pupil-personal-address&sort=held&dir=desc&page={page}"
        ));
        let ids = row_ids(&r);
        assert_eq!(ids.len(), if page < 3 { 50 } else { 38 }, "page {page}");
        seen.extend(ids);
        if page < 3 {
            assert!(
                r.text().contains(&format!(
                    "href=\"/quarantine?rule=pupil-personal-address&amp;sort=held&amp;dir=desc&amp;page={}\"",
                    page + 1
                )),
                "page {page} links the next with its filter"
            );
        }
    }
    assert_eq!(seen.len(), 138, "every held message on exactly one page");
    // Tick all on a page: every checkbox of the page comes ticked.
    let all = dsl.get("/quarantine?rule=pupil-personal-address&page=2&all=1");
    assert_eq!(all.text().matches(" checked").count(), 50);
}
