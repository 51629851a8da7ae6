//! The disclaimer on messages shaped as real clients send them: Outlook (desktop, on the web,
//! Express), Gmail, Apple Mail, Thunderbird, iPhone Mail, a Japanese mailer, and the awkward
//! cases (signed, encrypted, attachment-only, no body, a forwarded message, long lines).
//!
//! The fixtures live in fixtures/disclaimer/ and are built by scripts/make-fixtures; each
//! NAME.eml has a NAME.expect.json that says what add_disclaimer must do with it (outcome, which
//! parts are main, the quote marker the disclaimer must sit above, the charsets a non-ASCII
//! disclaimer leaves). Each test runs every fixture and reports every failure at once.

mod disclaimer_support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use disclaimer_support::{self as ds, Disclaimer};
use schoolgate::config::OnSigned;
use schoolgate::policy::disclaimer::{Rewrite, add_disclaimer};
use serde_json::Value;

struct Fixture {
    name: String,
    raw: Vec<u8>,
    expect: Value,
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/disclaimer")
}

fn fixtures() -> Vec<Fixture> {
    let dir = fixture_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): build the fixtures with scripts/make-fixtures",
            dir.display()
        )
    });
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.expect("read a directory entry").path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let name = path
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let sidecar = dir.join(format!("{name}.expect.json"));
        let expect: Value = serde_json::from_slice(
            &std::fs::read(&sidecar)
                .unwrap_or_else(|e| panic!("{name}.eml has no {}: {e}", sidecar.display())),
        )
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", sidecar.display()));
        out.push(Fixture {
            name,
            raw: std::fs::read(&path).expect("read the fixture"),
            expect,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        out.len() >= 30,
        "only {} fixtures in {}: run scripts/make-fixtures",
        out.len(),
        dir.display()
    );
    out
}

/// A sidecar value that is one string or a list of acceptable strings.
fn one_of(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn run(raw: &[u8], d: Disclaimer<'_>, on_signed: OnSigned) -> Result<Rewrite, String> {
    catch_unwind(AssertUnwindSafe(|| {
        add_disclaimer(raw, d.text, d.html, on_signed)
    }))
    .map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("add_disclaimer panicked: {msg}")
    })
}

fn changed(outcome: &str) -> bool {
    matches!(outcome, "appended" | "wrapped")
}

/// Runs one fixture with `d` and `on_signed` and checks it against `allowed` outcomes and the
/// sidecar's placement (and, with `charsets`, the charsets it expects).
fn check_fixture(
    f: &Fixture,
    d: Disclaimer<'_>,
    on_signed: OnSigned,
    allowed: &[String],
    charsets: Option<&Value>,
) -> (Vec<String>, Option<Vec<u8>>) {
    let mut fails = Vec::new();

    // My reading of the fixture must agree with its sidecar (else the test itself is wrong).
    let orig = ds::parse(&f.raw);
    let analysis = ds::analyse(&orig);
    let main_types: Vec<String> = analysis
        .main
        .iter()
        .map(|p| orig.at(p).map_or("?".into(), |e| e.mime.clone()))
        .collect();
    let want_main: Vec<String> = one_of(&f.expect["main"]);
    if main_types != want_main {
        fails.push(format!(
            "TEST BUG: the checker reads main parts {main_types:?}, the sidecar says {want_main:?}"
        ));
    }

    let r = match run(&f.raw, d, on_signed) {
        Ok(r) => r,
        Err(e) => return (vec![e], None),
    };
    let outcome = ds::outcome_name(r.outcome);
    if !allowed.contains(&outcome) {
        fails.push(format!(
            "outcome {outcome}, expected {}",
            allowed.join(" or ")
        ));
    }
    match (&r.message, changed(&outcome)) {
        (Some(_), false) => fails.push(format!(
            "outcome {outcome} but the message was changed (message is Some)"
        )),
        (None, true) => fails.push(format!(
            "outcome {outcome} but no rewritten message (message is None)"
        )),
        _ => {}
    }
    if r.message.as_ref() == Some(&f.raw) {
        fails.push("the rewritten message is identical to the original".into());
    }
    let Some(out) = r.message.clone() else {
        return (fails, None);
    };

    let checked = ds::check_rewrite(&f.raw, &out, d);
    fails.extend(checked.failures.iter().cloned());
    for n in &checked.notes {
        eprintln!("note: {}: {n}", f.name);
    }
    let added = f.expect["added_part"].as_bool().unwrap_or(false);
    if added && !checked.mains.iter().any(|m| m.added) && !outcome.starts_with("skipped") {
        fails.push("expected a new disclaimer part; none found".into());
    }

    // Placement: above the quote marker, below the author's new text.
    for m in &checked.mains {
        let kind = if m.mime == "text/html" {
            "html"
        } else {
            "text"
        };
        let where_ = format!("{}{}", ds::show_path(&m.path), m.mime);
        if let Some(marker) = f.expect[format!("{kind}_before")].as_str() {
            let marker = marker.replace("\r\n", "\n");
            match m.text.find(&marker) {
                Some(pos) if m.at < pos => {}
                Some(_) => fails.push(format!(
                    "{where_}: the disclaimer is below {marker:?}; it must come above the quoted thread:\n      {:?}",
                    around(&m.text, m.at)
                )),
                None => fails.push(format!(
                    "{where_}: the quote marker {marker:?} is gone from the output"
                )),
            }
        }
        if let Some(marker) = f.expect[format!("{kind}_after")].as_str() {
            let marker = marker.replace("\r\n", "\n");
            match m.text.find(&marker) {
                Some(pos) if pos + marker.len() <= m.at => {}
                Some(_) => fails.push(format!(
                    "{where_}: the disclaimer is above {marker:?}; it must come after the author's new text:\n      {:?}",
                    around(&m.text, m.at)
                )),
                None => fails.push(format!("{where_}: {marker:?} is gone from the output")),
            }
        }
    }

    if let Some(want) = charsets.and_then(Value::as_array) {
        let got: Vec<String> = checked
            .mains
            .iter()
            .map(|m| canonical_charset(m.charset_after.as_deref()))
            .collect();
        let want: Vec<String> = want.iter().map(|v| canonical_charset(v.as_str())).collect();
        if got != want {
            fails.push(format!(
                "charsets after a non-ASCII disclaimer: {got:?}, expected {want:?}"
            ));
        }
    }
    (fails, Some(out))
}

fn canonical_charset(cs: Option<&str>) -> String {
    let cs = cs
        .unwrap_or("us-ascii")
        .trim()
        .trim_matches('"')
        .to_ascii_lowercase();
    match cs.as_str() {
        "utf8" => "utf-8".into(),
        "latin1" | "iso8859-1" | "iso_8859-1" => "iso-8859-1".into(),
        "cp1252" => "windows-1252".into(),
        _ => cs,
    }
}

fn around(s: &str, at: usize) -> String {
    let mut from = at.saturating_sub(80);
    while !s.is_char_boundary(from) {
        from -= 1;
    }
    let mut to = (at + 160).min(s.len());
    while !s.is_char_boundary(to) {
        to += 1;
    }
    s[from..to].to_string()
}

fn assert_none_failed(what: &str, failures: Vec<(String, Vec<String>)>, total: usize) {
    assert!(
        failures.is_empty(),
        "{what}: {} of {total} fixtures failed:\n{}",
        failures.len(),
        ds::render(&failures)
    );
}

#[test]
fn every_fixture_gets_what_its_sidecar_says() {
    let all = fixtures();
    let mut failures = Vec::new();
    for f in &all {
        let allowed = one_of(&f.expect["outcome"]);
        let (fails, _) = check_fixture(f, ds::EXAMPLE, OnSigned::Skip, &allowed, None);
        if !fails.is_empty() {
            failures.push((f.name.clone(), fails));
        }
    }
    assert_none_failed("the example disclaimer", failures, all.len());
}

#[test]
fn a_non_ascii_disclaimer_is_written_in_each_parts_charset_or_the_part_becomes_utf8() {
    let all = fixtures();
    let mut failures = Vec::new();
    let mut n = 0;
    for f in all
        .iter()
        .filter(|f| f.expect.get("nonascii_charsets").is_some())
    {
        n += 1;
        let allowed = one_of(&f.expect["outcome"]);
        let (fails, _) = check_fixture(
            f,
            ds::NONASCII,
            OnSigned::Skip,
            &allowed,
            f.expect.get("nonascii_charsets"),
        );
        if !fails.is_empty() {
            failures.push((f.name.clone(), fails));
        }
    }
    assert!(n >= 20, "only {n} fixtures say which charsets to expect");
    assert_none_failed("the non-ASCII disclaimer", failures, n);
}

#[test]
fn signed_and_encrypted_messages_are_never_altered_and_wrap_keeps_them_whole() {
    let all = fixtures();
    let mut failures = Vec::new();
    let mut n = 0;
    for f in &all {
        let fails = match f.expect.get("outcome_wrap") {
            Some(v) => {
                n += 1;
                check_fixture(f, ds::EXAMPLE, OnSigned::Wrap, &one_of(v), None).0
            }
            // Messages that are neither signed nor encrypted come out the same whatever
            // on_signed says (their own checks are every_fixture_gets_what_its_sidecar_says).
            None => match (
                run(&f.raw, ds::EXAMPLE, OnSigned::Skip),
                run(&f.raw, ds::EXAMPLE, OnSigned::Wrap),
            ) {
                (Ok(skip), Ok(wrap)) if skip.message != wrap.message => vec![
                    "on_signed = wrap changes a message that is not signed (differs from skip)"
                        .to_string(),
                ],
                (Ok(_), Err(e)) => vec![e],
                _ => Vec::new(),
            },
        };
        if !fails.is_empty() {
            failures.push((f.name.clone(), fails));
        }
    }
    assert!(n >= 5, "only {n} signed or encrypted fixtures");
    assert_none_failed("on_signed = wrap", failures, all.len());
}

#[test]
fn a_second_pass_finds_the_disclaimer_already_there() {
    let all = fixtures();
    let mut failures = Vec::new();
    for f in &all {
        if f.expect["idempotent"].as_bool() == Some(false) {
            continue;
        }
        let Ok(first) = run(&f.raw, ds::EXAMPLE, OnSigned::Skip) else {
            continue; // reported by every_fixture_gets_what_its_sidecar_says
        };
        let Some(once) = first.message else { continue };
        match run(&once, ds::EXAMPLE, OnSigned::Skip) {
            Ok(second) => {
                let outcome = ds::outcome_name(second.outcome);
                let mut fails = Vec::new();
                if outcome != "already-present" {
                    fails.push(format!(
                        "second pass: outcome {outcome}, expected already-present"
                    ));
                }
                if let Some(twice) = &second.message {
                    fails.push(format!(
                        "second pass changed the message again:\n{}",
                        ds::first_difference(&once, twice)
                    ));
                }
                if !fails.is_empty() {
                    failures.push((f.name.clone(), fails));
                }
            }
            Err(e) => failures.push((f.name.clone(), vec![format!("second pass: {e}")])),
        }
    }
    assert_none_failed("idempotence", failures, all.len());
}

#[test]
fn the_already_present_fixture_really_carries_the_disclaimer_in_its_new_text() {
    let f = fixtures()
        .into_iter()
        .find(|f| f.name == "already-present")
        .expect("fixtures/disclaimer/already-present.eml");
    let root = ds::parse(&f.raw);
    let analysis = ds::analyse(&root);
    assert_eq!(analysis.main.len(), 2);
    for p in &analysis.main {
        let e = root.at(p).expect("a main part");
        let needle = if e.mime == "text/html" {
            ds::HTML
        } else {
            ds::TEXT
        };
        assert_eq!(
            e.text().matches(needle).count(),
            1,
            "{} should carry the disclaimer once",
            e.mime
        );
    }
}

#[test]
fn the_committed_fixtures_are_what_the_script_builds() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-fixtures");
    // Without python3 this fails, never skips: a skipped check would let the committed
    // fixtures drift from the script unnoticed.
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(tmp.path())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "python3 not found ({e}): run scripts/test, which installs it (Debian package python3)"
            )
        });
    assert!(
        out.status.success(),
        "scripts/make-fixtures failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("read a fixture directory")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".eml") || n.ends_with(".expect.json"))
            .collect();
        v.sort();
        v
    };
    let built = list(tmp.path());
    let committed = list(&fixture_dir());
    assert_eq!(
        built, committed,
        "fixtures/disclaimer differs from what scripts/make-fixtures builds: run it"
    );
    for name in &built {
        let a = std::fs::read(tmp.path().join(name)).expect("read a built fixture");
        let b = std::fs::read(fixture_dir().join(name)).expect("read a committed fixture");
        assert!(
            a == b,
            "fixtures/disclaimer/{name} differs from what scripts/make-fixtures builds: run it\n{}",
            ds::first_difference(&a, &b)
        );
    }
}

/// The checker itself must not be vacuous: a hand-made correct rewrite passes, and each kind of
/// damage a disclaimer tool is known for is caught.
#[test]
fn the_checker_catches_the_damage_disclaimer_tools_are_known_for() {
    let f = fixtures()
        .into_iter()
        .find(|f| f.name == "outlook-with-attachment")
        .expect("fixtures/disclaimer/outlook-with-attachment.eml");
    let orig = String::from_utf8(f.raw.clone()).expect("ASCII fixture");
    let good = orig
        .replacen(
            "Head of Year 7\r\n",
            &format!("Head of Year 7\r\n\r\n{}\r\n", ds::TEXT),
            1,
        )
        .replacen(
            "</body>",
            "<p style=3D\"font-size:small;color:#555\">The views expressed are not necessarily=\r\n those of Example Academy.</p>\r\n</body>",
            1,
        );
    let ok = ds::check_rewrite(&f.raw, good.as_bytes(), ds::EXAMPLE);
    assert!(
        ok.failures.is_empty(),
        "a correct rewrite is reported wrong:\n{}",
        ok.failures.join("\n")
    );
    assert_eq!(ok.mains.len(), 2);

    let damaged: Vec<(&str, String)> = vec![
        ("nothing added", orig.clone()),
        (
            "added twice",
            good.replacen(ds::TEXT, &format!("{}\r\n{}", ds::TEXT, ds::TEXT), 1),
        ),
        (
            "the author's text changed",
            good.replacen("Kind regards", "Kind regard", 1),
        ),
        (
            "an attachment byte changed",
            {
                let at = good.rfind("Content-Transfer-Encoding: base64\r\n\r\n").expect("the docx") + 40;
                let mut b = good.clone().into_bytes();
                b[at] = if b[at] == b'A' { b'B' } else { b'A' };
                String::from_utf8(b).expect("ASCII")
            },
        ),
        ("a bare LF", good.replacen("Kind regards\r\n", "Kind regards\n", 1)),
        (
            "the HTML snippet inside a tag",
            orig.replacen(
                "Head of Year 7\r\n",
                &format!("Head of Year 7\r\n\r\n{}\r\n", ds::TEXT),
                1,
            )
            .replacen(
                "<body lang=3D\"EN-GB\"",
                "<body <p style=3D\"font-size:small;color:#555\">The views expressed are not necessarily=\r\n those of Example Academy.</p> lang=3D\"EN-GB\"",
                1,
            ),
        ),
        (
            "the text disclaimer run into the author's line",
            good.replacen(
                &format!("Head of Year 7\r\n\r\n{}", ds::TEXT),
                &format!("Head of Year 7 {}", ds::TEXT),
                1,
            ),
        ),
        (
            "a closing tag lost",
            good.replacen("Head of Year 7<o:p></o:p></p>\r\n</div>", "Head of Year 7<o:p></o:p></p>\r\n", 1),
        ),
        (
            "the boundary damaged",
            good.replacen("--_000_", "--_000", 1),
        ),
    ];
    for (what, bad) in damaged {
        let c = ds::check_rewrite(&f.raw, bad.as_bytes(), ds::EXAMPLE);
        assert!(!c.failures.is_empty(), "the checker did not notice: {what}");
    }
}
