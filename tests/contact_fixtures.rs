//! The four safeguarding contact rules on messages shaped as staff really send them (Outlook,
//! Gmail, Outlook on the web), through the real binary: `schoolgate check FIXTURE.eml --config
//! CONFIG --json [--from ..] [--to ..]`. Issue 4's acceptance: hits and near misses for each
//! rule, each asserting the exact rule and evidence.
//!
//! Each fixtures/contact/NAME.eml has a NAME.json beside it: one run, or `"runs": [...]`, each
//!
//! ```json
//! { "from": "envelope sender (default: the From header)",
//!   "to": ["envelope recipients (default: To and Cc)"],
//!   "hours": "always | ended-a-minute-ago | every-day-but-today",
//!   "rules": { "pupil-personal-address": "reject" },
//!   "verdict": "deliver",
//!   "flags": [ { "rule": "…", "evidence": "…", "detail_has": ["Jamie Smith"] } ] }
//! ```
//!
//! `flags` is the exact list `check --json` must print, in order: rule and evidence exactly (or
//! any of a list of evidences where two spellings are equally right); the detail only has to
//! contain each `detail_has`. The evidence `{now}` stands for the time the binary ran, as the
//! out-of-hours rule writes it (`Mon 23 Nov 2026 19:05 GMT`). `verdict` defaults to deliver.
//!
//! The clock: `check` uses the current time, so every run names its contact hours — `always`
//! (00:00–24:00, Mon–Sun), `ended-a-minute-ago` (a two-hour window that closed a minute before
//! the run), or `every-day-but-today` (all day, every other day of the week). Ages: the
//! directory is written for each test with dates of birth relative to today, so "a former pupil
//! now 19" stays 19 whatever day the test runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use jiff::{ToSpan, Zoned, civil::Date, tz::TimeZone};
use serde_json::Value;

const SCHOOL_TZ: &str = "Europe/London";

/// How the out-of-hours rule writes the time (and how `{now}` is matched).
const EVIDENCE_TIME: &str = "%a %d %b %Y %H:%M %Z";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/contact")
}

fn london_now() -> Zoned {
    Zoned::now().with_time_zone(TimeZone::get(SCHOOL_TZ).expect("the Europe/London zone"))
}

/// The school's people, ages counted back from `today`.
fn directory_csv(today: Date) -> String {
    let born = |years: i64, months: i64, days: i64| -> String {
        today
            .checked_sub(years.years().months(months))
            .and_then(|d| d.checked_add(days.days()))
            .expect("a date of birth")
            .to_string()
    };
    let rows = [
        "role,name,school_email,personal_emails,personal_phones,date_of_birth,status".to_string(),
        "headteacher,Margaret Hughes,head@example-academy.sch.uk,,,,current".into(),
        "dsl,Priya Shah,dsl@example-academy.sch.uk,,,,current".into(),
        "staff,Tom Baker,t.baker@example-academy.sch.uk,tombaker77@gmail.com,07700 900123,,current"
            .into(),
        "staff,Sarah Khan,s.khan@example-academy.sch.uk,sarahk.home@outlook.com,+44 7700 900789,,current"
            .into(),
        format!(
            "pupil,Jamie Smith,j.smith@pupils.example-academy.sch.uk,jamie.smith2010@gmail.com,,{},current",
            born(15, 2, 0)
        ),
        format!(
            "pupil,Chloé Durand,c.durand@pupils.example-academy.sch.uk,,,{},current",
            born(14, 7, 0)
        ),
        format!(
            "pupil,Seán O'Connor,s.oconnor@pupils.example-academy.sch.uk,,,{},current",
            born(13, 4, 0)
        ),
        // Left, and 18 years and 4 months old: still a pupil (seed 001).
        format!(
            "pupil,Ava Jones,a.jones@pupils.example-academy.sch.uk,ava.jones@hotmail.co.uk,,{},former",
            born(18, 4, 0)
        ),
        // Left, and 19 tomorrow: 18 today, still a pupil.
        format!(
            "pupil,Leah Price,l.price@pupils.example-academy.sch.uk,,,{},former",
            born(19, 0, 1)
        ),
        // Left, and 19 years and 3 months old: not a pupil.
        format!(
            "pupil,Ryan Cole,r.cole@pupils.example-academy.sch.uk,ryan.cole@gmail.com,,{},former",
            born(19, 3, 0)
        ),
        // Left, and 19 today: not a pupil from today.
        format!(
            "pupil,Kyle Ward,k.ward@pupils.example-academy.sch.uk,kyleward@outlook.com,,{},former",
            born(19, 0, 0)
        ),
    ];
    rows.join("\n") + "\n"
}

/// `HH:MM` of `minute` after midnight, wrapped into one day.
fn clock(minute: i64) -> String {
    let m = minute.rem_euclid(24 * 60);
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// The `[safeguarding] contact_hours` for a run's `hours`, as of `now`.
fn contact_hours(hours: &str, now: &Zoned) -> toml::Table {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let (start, end, days) = match hours {
        "always" => (
            "00:00".to_string(),
            "24:00".to_string(),
            "Mon-Sun".to_string(),
        ),
        "ended-a-minute-ago" => {
            let minute = i64::from(now.hour()) * 60 + i64::from(now.minute());
            (
                clock(minute - 121),
                clock(minute - 1),
                "Mon-Sun".to_string(),
            )
        }
        "every-day-but-today" => {
            let today = now.weekday().to_monday_zero_offset() as usize;
            let others: Vec<&str> = (1..7).map(|k| DAYS[(today + k) % 7]).collect();
            ("00:00".to_string(), "24:00".to_string(), others.join(","))
        }
        other => panic!("unknown hours \"{other}\""),
    };
    let mut t = toml::Table::new();
    t.insert("start".into(), start.into());
    t.insert("end".into(), end.into());
    t.insert("days".into(), days.into());
    t
}

/// The table `[name]` of `cfg`, made if it is missing.
fn section<'a>(cfg: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
    cfg.entry(name)
        .or_insert_with(|| toml::Table::new().into())
        .as_table_mut()
        .unwrap_or_else(|| panic!("[{name}] is not a table"))
}

/// The shipped example config, pointed at `dir` for its directory and state, with the run's
/// contact hours and rule actions (every contact rule `flag` unless the run says otherwise).
fn write_config(dir: &Path, run: &Value, now: &Zoned) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/example.toml");
    let mut cfg: toml::Table = std::fs::read_to_string(&example)
        .expect("read policies/example.toml")
        .parse()
        .expect("policies/example.toml is TOML");
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    section(&mut cfg, "school").insert("directory".into(), path(dir.join("directory.csv")).into());
    section(&mut cfg, "storage").insert("state_dir".into(), path(dir.join("var")).into());
    section(&mut cfg, "relay").insert(
        "next_hop".into(),
        format!("outbox:{}", path(dir.join("outbox"))).into(),
    );

    let mut rules = toml::Table::new();
    for rule in [
        "pupil-personal-address",
        "staff-personal-address",
        "personal-contact-shared",
        "out-of-hours-pupil-contact",
    ] {
        let action = run["rules"][rule].as_str().unwrap_or("flag");
        rules.insert(rule.into(), action.into());
    }
    if let Some(asked) = run["rules"].as_object() {
        for name in asked.keys() {
            assert!(rules.contains_key(name), "unknown rule \"{name}\" in a run");
        }
    }
    let hours = run["hours"].as_str().unwrap_or("always");
    let safeguarding = section(&mut cfg, "safeguarding");
    safeguarding.insert("contact_hours".into(), contact_hours(hours, now).into());
    safeguarding.insert("rules".into(), rules.into());

    let file = dir.join("schoolgate.toml");
    std::fs::write(&file, toml::to_string(&cfg).expect("serialise the config")).unwrap();
    file
}

/// What `check --json` printed for one run, and the school-time clock around it.
struct Outcome {
    json: Value,
    before: Zoned,
    after: Zoned,
}

fn check(eml: &Path, run: &Value) -> Outcome {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let before = london_now();
        std::fs::write(
            tmp.path().join("directory.csv"),
            directory_csv(before.date()),
        )
        .unwrap();
        let config = write_config(tmp.path(), run, &before);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_schoolgate"));
        cmd.current_dir(tmp.path())
            .env_remove("SCHOOLGATE_CONFIG")
            .arg("check")
            .arg(eml)
            .arg("--config")
            .arg(&config)
            .arg("--json");
        if let Some(from) = run["from"].as_str() {
            cmd.args(["--from", from]);
        }
        for to in run["to"].as_array().into_iter().flatten() {
            cmd.args(["--to", to.as_str().expect("\"to\" holds addresses")]);
        }
        let out = cmd.output().expect("run schoolgate check");
        let after = london_now();
        assert!(
            out.status.success(),
            "schoolgate check {} failed ({}):\n{}",
            eml.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // The clock crossed midnight while the directory and hours were written for the day
        // before: ages and "today" moved under the run, so run it again.
        if before.date() != after.date() && attempts < 3 {
            continue;
        }
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "check --json printed no JSON ({e}):\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        return Outcome {
            json,
            before,
            after,
        };
    }
}

/// The runs a sidecar describes.
fn runs(sidecar: &Value) -> Vec<Value> {
    match sidecar.get("runs") {
        Some(Value::Array(runs)) => runs.clone(),
        Some(_) => panic!("\"runs\" must be a list"),
        None => vec![sidecar.clone()],
    }
}

/// A sidecar evidence: one string, or a list of strings any of which will do.
fn one_of(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().expect("evidence holds strings").to_string())
            .collect(),
        other => panic!("evidence {other} is neither a string nor a list"),
    }
}

/// Compares one run; returns what is wrong, if anything.
fn compare(run: &Value, got: &Outcome) -> Vec<String> {
    let mut wrong = Vec::new();
    let want_verdict = run["verdict"].as_str().unwrap_or("deliver");
    if got.json["verdict"] != want_verdict {
        wrong.push(format!(
            "verdict: expected {want_verdict}, got {}",
            got.json["verdict"]
        ));
    }
    let empty = Vec::new();
    let want = run["flags"].as_array().unwrap_or(&empty);
    let flags = got.json["flags"].as_array().unwrap_or(&empty);
    let times = [&got.before, &got.after].map(|t| t.strftime(EVIDENCE_TIME).to_string());
    // Evidence shown with Rust escapes, so a no-break space or a curly quote is visible.
    let show = |f: &Value| {
        let evidence: Vec<String> = one_of(&f["evidence"])
            .iter()
            .map(|e| match e.as_str() {
                "{now}" => format!("{:?}", times[0]),
                e => format!("{e:?}"),
            })
            .collect();
        format!("({}, {})", f["rule"], evidence.join(" or "))
    };
    let evidence_ok = |want: &Value, got: &Value| {
        one_of(want).iter().any(|w| match w.as_str() {
            "{now}" => times.iter().any(|t| got == t.as_str()),
            w => got == w,
        })
    };
    let same = want.len() == flags.len()
        && want
            .iter()
            .zip(flags)
            .all(|(w, f)| f["rule"] == w["rule"] && evidence_ok(&w["evidence"], &f["evidence"]));
    if !same {
        wrong.push(format!(
            "flags: expected [{}], got [{}]",
            want.iter().map(show).collect::<Vec<_>>().join(", "),
            flags.iter().map(show).collect::<Vec<_>>().join(", ")
        ));
        return wrong;
    }
    for (w, f) in want.iter().zip(flags) {
        let detail = f["detail"].as_str().unwrap_or_default();
        for part in w["detail_has"].as_array().into_iter().flatten() {
            let part = part.as_str().expect("detail_has holds strings");
            if !detail.contains(part) {
                wrong.push(format!(
                    "{} detail \"{detail}\" does not contain \"{part}\"",
                    f["rule"]
                ));
            }
        }
    }
    wrong
}

/// Runs every run of fixture `name` and fails with every mismatch at once.
fn fixture(name: &str) {
    let dir = fixture_dir();
    let eml = dir.join(format!("{name}.eml"));
    let sidecar = dir.join(format!("{name}.json"));
    assert!(eml.is_file(), "no fixture {}", eml.display());
    let expect: Value = serde_json::from_slice(
        &std::fs::read(&sidecar).unwrap_or_else(|e| panic!("{}: {e}", sidecar.display())),
    )
    .unwrap_or_else(|e| panic!("{} is not JSON: {e}", sidecar.display()));
    let mut failures = Vec::new();
    for (i, run) in runs(&expect).iter().enumerate() {
        let got = check(&eml, run);
        let wrong = compare(run, &got);
        if !wrong.is_empty() {
            let args: Vec<String> = ["from", "to", "hours", "rules"]
                .iter()
                .filter(|k| !run[**k].is_null())
                .map(|k| format!("{k}={}", run[*k]))
                .collect();
            failures.push(format!(
                "{name} run {i} [{}]:\n  {}\n  check --json: {}",
                args.join(" "),
                wrong.join("\n  "),
                got.json
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

macro_rules! fixtures {
    ($($name:ident),* $(,)?) => {
        /// Every fixture the tests below run, as file names.
        const FIXTURES: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                fixture(&stringify!($name).replace('_', "-"));
            }
        )*
    };
}

fixtures! {
    // pupil-personal-address
    pupil_personal_listed,
    pupil_name_surname_first,
    pupil_name_accent_added,
    pupil_name_accent_dropped,
    pupil_name_typographic_apostrophe,
    pupil_school_address,
    parent_same_surname,
    former_pupil_18,
    former_pupil_19_tomorrow,
    former_pupil_19,
    former_pupil_19_today,
    // staff-personal-address
    staff_personal_cc,
    staff_personal_bcc_self,
    staff_personal_sender,
    staff_personal_no_pupil,
    pupil_to_pupil,
    bounce_to_pupil_personal,
    // personal-contact-shared
    personal_email_in_text,
    mobile_national,
    mobile_international,
    mobile_international_trunk_zero,
    mobile_html_only_nbsp,
    mobile_new_and_quoted_gmail,
    mobile_quoted_gmail_plain,
    mobile_quoted_outlook_plain,
    mobile_quoted_gmail_html,
    mobile_quoted_outlook_html,
    mobile_inline_reply,
    mobile_bottom_posted,
    parent_cc_address_in_text,
    // the envelope: Bcc is only there
    bcc_only_pupil,
    // out-of-hours-pupil-contact
    out_of_hours,
    out_of_hours_parent,
    // actions
    every_rule,
}

/// Every .eml in fixtures/contact has a test, and every test its .eml and .json.
#[test]
fn every_fixture_is_run() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("read fixtures/contact")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FIXTURES.iter().map(|n| n.replace('_', "-")).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "fixtures/contact/*.eml and the fixtures! list differ"
    );
    for name in &listed {
        assert!(
            fixture_dir().join(format!("{name}.json")).is_file(),
            "{name}.eml has no {name}.json"
        );
    }
}

/// The clock-independent configs do what they say, whatever the time now.
#[test]
fn the_test_hours_are_what_they_claim() {
    for minute in [0, 1, 59, 60, 121, 122, 600, 1439] {
        let m = i64::from(minute);
        let (start, end) = (clock(m - 121), clock(m - 1));
        let to_min = |s: &str| {
            let (h, mm) = s.split_once(':').unwrap();
            h.parse::<i64>().unwrap() * 60 + mm.parse::<i64>().unwrap()
        };
        let (s, e) = (to_min(&start), to_min(&end));
        // The rule's own reading: start <= end is one window, else it runs overnight.
        let within = |x: i64| {
            if s <= e {
                s <= x && x < e
            } else {
                x >= s || x < e
            }
        };
        assert!(!within(m), "{start}-{end} contains {}", clock(m));
        assert!(
            !within((m + 1) % 1440),
            "{start}-{end} contains a minute later"
        );
        assert!(
            within((m - 2).rem_euclid(1440)),
            "{start}-{end} is not a window"
        );
    }
}
