//! The directory's parents and the data-protection and contact cases of issue 16, through the
//! real binary: `schoolgate directory import --from oneroster` on a small OneRoster bundle
//! (fixtures/oneroster/), and `schoolgate check --json` on the "Done when" cases that
//! are about recipients and addresses (fixtures/data-protection/, built by
//! scripts/make-data-protection-fixtures).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn run(args: &[&str]) -> Output {
    Command::new(common::bin())
        .args(args)
        .output()
        .expect("run schoolgate")
}

/// The example config, pointed at the fixtures' directory and `dir` for state, with contact
/// hours all day every day (these cases are not about the clock).
fn write_config(dir: &Path, directory: &Path) -> PathBuf {
    let mut cfg: toml::Table = std::fs::read_to_string(common::example_config())
        .expect("read policies/example.toml")
        .parse()
        .expect("policies/example.toml is TOML");
    let path = |p: &Path| p.to_string_lossy().into_owned();
    common::set(&mut cfg, "school.directory", path(directory));
    common::set(&mut cfg, "storage.state_dir", path(&dir.join("var")));
    common::set(
        &mut cfg,
        "relay.next_hop",
        format!("outbox:{}", path(&dir.join("outbox"))),
    );
    let mut hours = toml::Table::new();
    hours.insert("start".into(), "00:00".into());
    hours.insert("end".into(), "24:00".into());
    hours.insert("days".into(), "Mon-Sun".into());
    common::set(&mut cfg, "safeguarding.contact_hours", hours);
    let file = dir.join("schoolgate.toml");
    std::fs::write(&file, toml::to_string(&cfg).expect("serialise the config")).unwrap();
    file
}

/// `check --json` of fixtures/data-protection/NAME.eml, with `to` as the envelope when given.
fn check(name: &str, to: &[&str]) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(
        tmp.path(),
        &fixtures().join("data-protection/directory.csv"),
    );
    let eml = fixtures().join(format!("data-protection/{name}.eml"));
    let mut args: Vec<String> = vec![
        "check".into(),
        "--config".into(),
        config.to_string_lossy().into_owned(),
        "--json".into(),
        eml.to_string_lossy().into_owned(),
    ];
    for t in to {
        args.push("--to".into());
        args.push(t.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args);
    assert!(
        out.status.success(),
        "check {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check {name} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The rule names of a verdict's flags and findings.
fn rules(v: &Value) -> Vec<String> {
    ["flags", "findings"]
        .iter()
        .flat_map(|k| v[k].as_array().cloned().unwrap_or_default())
        .map(|f| f["rule"].as_str().unwrap_or("").to_string())
        .collect()
}

const PARENTS: [&str; 12] = [
    "sarah.carter@gmail.com",
    "raj.patel@outlook.com",
    "claire.hughes@btinternet.com",
    "g.evans@hotmail.co.uk",
    "meganjones@yahoo.co.uk",
    "ayesha.khan@icloud.com",
    "emma.wilson@gmail.com",
    "rhys.thomas@live.co.uk",
    "sian.roberts@gmail.com",
    "dan.lewis@aol.com",
    "kate.walker@outlook.com",
    "tom.green@sky.com",
];

#[test]
fn twelve_parents_in_to_are_held_and_the_same_in_bcc_are_clean() {
    let v = check("twelve-parents-in-to", &[]);
    assert_eq!(v["verdict"], "quarantine", "{v}");
    assert_eq!(rules(&v), ["exposed-recipients"], "{v}");
    let f = &v["findings"][0];
    assert_eq!(f["detectors"][0]["detector"], "visible-outside-recipients");
    assert_eq!(f["detectors"][0]["count"], 12);
    assert_eq!(f["detectors"][1]["detector"], "max-visible-recipients");
    assert_eq!(f["detectors"][1]["count"], 10);
    let detail = f["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("3 at gmail.com"), "{detail}");
    assert!(detail.contains("Bcc"), "{detail}");
    // No family's address is repeated in the evidence.
    assert!(!v["findings"].to_string().contains("sarah.carter"), "{v}");

    // The same message with the parents in Bcc (the envelope only).
    let mut to = vec!["t.baker@example-academy.sch.uk"];
    to.extend(PARENTS);
    let v = check("twelve-parents-in-bcc", &to);
    assert_eq!(v["verdict"], "deliver", "{v}");
    assert!(rules(&v).is_empty(), "{v}");
}

#[test]
fn a_gmail_variant_of_a_pupils_known_address_is_flagged() {
    let v = check("gmail-variant-of-a-pupils-address", &[]);
    assert_eq!(rules(&v), ["pupil-personal-address"], "{v}");
    assert_eq!(
        v["flags"][0]["evidence"],
        "jamie.carter.2011+school@googlemail.com"
    );
    assert!(
        v["flags"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("Jamie Carter"),
        "{v}"
    );
}

#[test]
fn an_mis_display_name_at_a_personal_address_is_the_pupil() {
    let v = check("mis-display-name-at-a-personal-address", &[]);
    assert_eq!(rules(&v), ["pupil-personal-address"], "{v}");
    assert!(
        v["flags"][0]["evidence"]
            .as_str()
            .unwrap_or_default()
            .contains("CARTER Jamie (Year 9)")
    );
}

#[test]
fn an_exam_boards_address_to_a_pupil_is_not_flagged_but_a_teachers_personal_gmail_is() {
    let v = check("exam-board-address-to-a-pupil", &[]);
    assert_eq!(v["verdict"], "deliver", "{v}");
    assert!(rules(&v).is_empty(), "{v}");

    let v = check("teachers-personal-gmail-to-a-pupil", &[]);
    assert_eq!(rules(&v), ["personal-contact-shared"], "{v}");
    assert_eq!(v["flags"][0]["evidence"], "tom.baker77@gmail.com");
    let detail = v["flags"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("a personal address of Tom Baker, a member of staff"),
        "{detail}"
    );
}

#[test]
fn a_oneroster_bundle_becomes_a_directory_that_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("directory.csv");
    let o = run(&[
        "directory",
        "import",
        "--from",
        "oneroster",
        &fixtures().join("oneroster").to_string_lossy(),
        "--out",
        &out.to_string_lossy(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("3 staff, 5 pupils, 4 parents' rows (1 rows marked tobedeleted left out)"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(&out).unwrap();
    assert!(csv.starts_with(
        "role,name,school_email,personal_emails,personal_phones,date_of_birth,status,children\n"
    ));
    // Two parents sharing an address are one row with both names; the link from either side.
    assert!(
        csv.contains("parent,Sarah Carter & David Carter,,sarah.carter@gmail.com,07700 900401; 01632 960111,,current,j.carter@pupils.example-academy.sch.uk\n"),
        "{csv}"
    );
    assert!(
        csv.contains("parent,Claire Hughes,,claire.hughes@btinternet.com,07700 900403,,current,a.hughes@pupils.example-academy.sch.uk\n"),
        "{csv}"
    );
    assert!(
        csv.contains(
            "pupil,Ava Jones,a.jones@pupils.example-academy.sch.uk,,,2008-06-01,former,\n"
        ),
        "{csv}"
    );
    assert!(!csv.contains("Gone Pupil"), "{csv}");

    // The written file is the directory of a config that `policy check` accepts.
    let config = write_config(tmp.path(), &out);
    let o = run(&["policy", "check", "--config", &config.to_string_lossy()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("(12 people: 3 staff, "), "{stdout}");
    assert!(stdout.contains("exposed-recipients=quarantine"), "{stdout}");
}

#[test]
fn a_bad_bundle_is_refused_naming_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    let users = std::fs::read_to_string(fixtures().join("oneroster/users.csv")).unwrap();
    std::fs::write(
        bundle.join("users.csv"),
        users.replacen(",teacher,", ",caretaker,", 1),
    )
    .unwrap();
    let out = tmp.path().join("directory.csv");
    let args = [
        "directory",
        "import",
        "--from",
        "oneroster",
        &bundle.to_string_lossy(),
        "--out",
        &out.to_string_lossy(),
    ];
    let o = run(&args);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("users.csv:2: unknown role \"caretaker\""),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing is written from a bad bundle");

    // A folder without users.csv.
    std::fs::remove_file(bundle.join("users.csv")).unwrap();
    let o = run(&args);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("users.csv: not found"), "{stderr}");
}

#[test]
fn a_parent_naming_a_child_not_in_the_directory_is_refused_with_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let directory = tmp.path().join("directory.csv");
    let csv = std::fs::read_to_string(fixtures().join("data-protection/directory.csv")).unwrap();
    std::fs::write(
        &directory,
        csv.replace(
            "current,o.patel@pupils.example-academy.sch.uk",
            "current,o.patell@pupils.example-academy.sch.uk",
        ),
    )
    .unwrap();
    let config = write_config(tmp.path(), &directory);
    let o = run(&["policy", "check", "--config", &config.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(
            "directory.csv:19: child o.patell@pupils.example-academy.sch.uk is not in the directory"
        ),
        "{stderr}"
    );
}

#[test]
fn through_the_relay_exposed_recipients_are_held_audited_and_the_sender_told_to_use_bcc() {
    const FROM: &str = "t.baker@example-academy.sch.uk";
    let gw = common::Gateway::start(|_| {});
    let message =
        std::fs::read(fixtures().join("data-protection/twelve-parents-in-to.eml")).unwrap();
    let mut c = common::smtp::Client::ready(gw.port);
    let t = c.send(FROM, "", &PARENTS, &message).unwrap();
    assert!(t.accepted(), "{:?}", t.reply);
    let text = t.reply.text();
    assert!(text.contains("held for review"), "{text}");
    let id = text
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();

    // The audit record: the rule, the count and the limit.
    let records = gw.message_records();
    let rec = records.last().unwrap();
    assert_eq!(rec.field("outcome").as_deref(), Some("quarantined"));
    let findings = &rec.message()["findings"];
    assert_eq!(findings[0]["rule"], "exposed-recipients", "{findings}");
    assert!(
        findings[0]["detectors"]
            .to_string()
            .contains("visible-outside-recipients"),
        "{findings}"
    );

    // Nothing reached the parents; the sender is told to use Bcc.
    let to = |who: &str| {
        gw.outbox_messages()
            .into_iter()
            .filter(|m| m.rcpt_to().iter().any(|r| r == who))
            .collect::<Vec<_>>()
    };
    assert!(
        PARENTS.iter().all(|p| to(p).is_empty()),
        "nothing delivered"
    );
    assert!(
        gw.wait_for(Duration::from_secs(10), || !to(FROM).is_empty()),
        "the sender notice never reached the outbox\n{}",
        gw.log_tail(40)
    );
    let notice = String::from_utf8_lossy(&to(FROM)[0].bytes).into_owned();
    for needle in [
        id.as_str(),
        "12 outside addresses",
        "Bcc",
        "network manager",
    ] {
        assert!(notice.contains(needle), "{needle} missing:\n{notice}");
    }
    assert!(
        !notice.contains("encrypted"),
        "no encryption advice here:\n{notice}"
    );

    // The quarantine (the web page's "Why held" reads the same reasons) names the rule.
    gw.add_user("netman", &["network-manager"], "netman password 1");
    let list = gw.cli_ok(&["quarantine", "list", "--json", "--as", "netman"]);
    assert!(list.contains("exposed-recipients"), "{list}");
}
