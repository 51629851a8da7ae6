use std::path::Path;

use super::*;
use crate::config::Config;

fn config(extra: &str) -> Config {
    let text = format!(
        "{}\n{extra}",
        include_str!("../../../policies/example.toml")
            .split("\n[data_protection]")
            .next()
            .unwrap_or_default()
    );
    Config::parse(Path::new("example.toml"), &text).unwrap()
}

fn run(config: &Config, to: &[String], cc: &[String], bcc: &[String]) -> Vec<Finding> {
    let envelope = Envelope {
        mail_from: "t.baker@example-academy.sch.uk".into(),
        rcpt_to: to.iter().chain(cc).chain(bcc).cloned().collect(),
        smtputf8: false,
        body_8bit: false,
    };
    let header: Vec<(Option<String>, String)> =
        to.iter().chain(cc).map(|a| (None, a.clone())).collect();
    check(
        &Message {
            envelope: &envelope,
            header_recipients: &header,
        },
        config,
        &Directory::default(),
    )
}

fn parents(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 3 {
            0 => format!("parent{i}@gmail.com"),
            1 => format!("parent{i}@hotmail.co.uk"),
            _ => format!("parent{i}@btinternet.com"),
        })
        .collect()
}

#[test]
fn twelve_parents_in_to_are_held_and_the_notice_says_bcc() {
    let c = config("");
    let f = run(&c, &parents(12), &[], &[]);
    assert_eq!(f.len(), 1, "{f:?}");
    let f = &f[0];
    assert_eq!(f.rule, "exposed-recipients");
    assert_eq!(f.action, Action::Quarantine);
    assert_eq!(f.detectors[0].count, 12);
    assert_eq!(f.detectors[1].count, 10);
    assert!(f.detail.starts_with("12 outside addresses"), "{}", f.detail);
    assert!(f.detail.contains("4 at gmail.com"), "{}", f.detail);
    assert!(f.detail.contains("Bcc"), "{}", f.detail);
    // The evidence names domains, never the families' addresses.
    assert!(!f.detail.contains("parent0@"), "{}", f.detail);
    assert!(f.evidence.iter().all(|e| !e.sample.contains('@')));
}

#[test]
fn the_same_parents_in_bcc_are_clean() {
    let c = config("");
    let me = vec!["t.baker@example-academy.sch.uk".to_string()];
    assert!(run(&c, &me, &[], &parents(12)).is_empty());
    // Ten visible is the limit, not over it.
    assert!(run(&c, &parents(10), &[], &parents(30)[10..]).is_empty());
}

#[test]
fn to_and_cc_count_together_and_school_addresses_do_not() {
    let c = config("");
    let all = parents(11);
    let f = run(&c, &all[..6], &all[6..], &[]);
    assert_eq!(f.len(), 1);
    let mut staff: Vec<String> = (0..20)
        .map(|i| format!("teacher{i}@example-academy.sch.uk"))
        .collect();
    staff.extend((0..20).map(|i| format!("pupil{i}@pupils.example-academy.sch.uk")));
    staff.extend(parents(10));
    assert!(run(&c, &staff, &[], &[]).is_empty());
}

#[test]
fn one_mailbox_written_twice_counts_once() {
    let c = config("");
    let mut to = parents(10);
    to.push("Parent0+school@googlemail.com".into());
    to.push("PARENT1@HOTMAIL.CO.UK".into());
    assert!(run(&c, &to, &[], &[]).is_empty());
}

#[test]
fn the_limit_and_the_action_come_from_config() {
    let c = config(
        "[data_protection]\nmax_visible_recipients = 3\nrules = { exposed-recipients = \"flag\" }\n",
    );
    let f = run(&c, &parents(4), &[], &[]);
    assert_eq!(f[0].action, Action::Flag);
    assert_eq!(f[0].detectors[1].count, 3);
    let c = config("[data_protection]\nrules = { exposed-recipients = \"off\" }\n");
    assert!(run(&c, &parents(40), &[], &[]).is_empty());
    let e = Config::parse(
        Path::new("x.toml"),
        &format!(
            "{}\n[data_protection]\nmax_visible_recipients = 0\n",
            include_str!("../../../policies/example.toml")
                .split("\n[data_protection]")
                .next()
                .unwrap_or_default()
        ),
    )
    .unwrap_err();
    assert!(e.to_string().contains("max_visible_recipients"), "{e}");
}

#[test]
fn many_domains_are_summarised() {
    let c = config("");
    let to: Vec<String> = (0..12).map(|i| format!("a@family{i}.example")).collect();
    let f = run(&c, &to, &[], &[]);
    assert!(
        f[0].detail.contains("and 7 more domains"),
        "{}",
        f[0].detail
    );
    assert_eq!(f[0].evidence.len(), 12);
}

#[test]
fn a_bounce_is_not_checked() {
    let c = config("");
    let envelope = Envelope {
        mail_from: String::new(),
        rcpt_to: Vec::new(),
        smtputf8: false,
        body_8bit: false,
    };
    let header: Vec<(Option<String>, String)> =
        parents(20).into_iter().map(|a| (None, a)).collect();
    let m = Message {
        envelope: &envelope,
        header_recipients: &header,
    };
    assert!(check(&m, &c, &Directory::default()).is_empty());
}
