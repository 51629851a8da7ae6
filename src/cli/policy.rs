//! `schoolgate policy check`: validate the config and the directory, print a summary.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{Action, ContactRule, SensitiveRule};
use crate::directory::Directory;

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let directory = Directory::load(&config.school.directory, &config.school.staff_roles)?;
    let today = jiff::Zoned::now().date();
    let pupils = directory
        .people
        .iter()
        .filter(|p| p.is_pupil(today))
        .count();
    let staff = directory.people.iter().filter(|p| p.is_staff()).count();
    let exempt: Vec<String> = directory
        .people
        .iter()
        .filter(|p| config.disclaimer.exempt_roles.contains(&p.role))
        .filter_map(|p| p.school_email.clone())
        .chain(
            config
                .disclaimer
                .exempt_addresses
                .iter()
                .map(|a| a.0.clone()),
        )
        .collect();
    let domains = |d: &[crate::config::Domain]| {
        d.iter()
            .map(|d| d.0.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("config {} is valid", config_path.display());
    println!("  school:          {}", config.school.name);
    println!("  staff domains:   {}", domains(&config.school.domains));
    println!(
        "  pupil domains:   {}",
        domains(&config.school.pupil_domains)
    );
    println!(
        "  directory:       {} ({} people: {staff} staff, {pupils} pupils)",
        config.school.directory.display(),
        directory.people.len()
    );
    println!(
        "  disclaimer:      exempt senders: {}",
        if exempt.is_empty() {
            "none".to_string()
        } else {
            exempt.join(", ")
        }
    );
    println!(
        "  relay:           {} -> {}",
        config
            .relay
            .listen
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        config.relay.next_hop.0
    );
    if let Some(listen) = &config.milter.listen {
        let lower = |s: String| s.to_lowercase();
        println!(
            "  milter:          {listen}; quarantine {}; on error {}; up to {} octets",
            lower(format!("{:?}", config.milter.quarantine)),
            lower(format!("{:?}", config.milter.on_error)),
            config.milter_max_message_size()
        );
    }
    // Every rule with its action, defaults included, by its SPEC name.
    let lower = |a: Action| format!("{a:?}").to_lowercase();
    let mut rules: Vec<String> = Vec::new();
    for rule in [
        ContactRule::PupilPersonalAddress,
        ContactRule::StaffPersonalAddress,
        ContactRule::PersonalContactShared,
        ContactRule::OutOfHoursPupilContact,
    ] {
        let action = config
            .safeguarding
            .rules
            .get(&rule)
            .copied()
            .unwrap_or(Action::Flag);
        rules.push(format!("{}={}", rule.name(), lower(action)));
    }
    for rule in [
        SensitiveRule::UnencryptedSensitiveAttachment,
        SensitiveRule::UnscannableAttachment,
    ] {
        let action = config
            .sensitive
            .rules
            .get(&rule)
            .copied()
            .unwrap_or(Action::Quarantine);
        rules.push(format!("{}={}", rule.name(), lower(action)));
    }
    for rule in crate::config::DataProtectionRule::ALL {
        let action = config.data_protection.action(rule);
        rules.push(format!("{}={}", rule.name(), lower(action)));
    }
    let t = &config.sensitive.thresholds;
    let l = &config.sensitive.limits;
    println!(
        "  sensitive when:  {} identifiers, {} dates of birth, {} pupils with special-category data, or a marking ({})",
        t.identifiers,
        t.birth_dates,
        t.special_category,
        config.sensitive.markings.join(", ")
    );
    println!(
        "  scan limits:     depth {}, {} bytes expanded, {} entries, ratio {}, {} s",
        l.max_depth,
        l.max_expanded_size.0,
        l.max_entries,
        l.max_ratio,
        l.max_scan_time.0.as_secs()
    );
    println!("  rules:           {}", rules.join(", "));
    for line in escalation_warnings(&config, &directory) {
        println!("warning: {line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What `policy check` warns about alerts that must be escalated (a flag on the headteacher or a
/// DSL) when `[safeguarding] escalate_to` is empty: they then go to the other DSLs, or nowhere.
pub fn escalation_warnings(config: &crate::config::Config, directory: &Directory) -> Vec<String> {
    let s = &config.safeguarding;
    if !s.escalate_to.is_empty() {
        return Vec::new();
    }
    let mut about: Vec<String> = directory
        .people
        .iter()
        .filter(|p| p.role.eq_ignore_ascii_case("headteacher"))
        .filter_map(|p| p.school_email.clone())
        .collect();
    about.extend(s.dsl.iter().map(|d| d.0.clone()));
    about.dedup();
    let mut out = Vec::new();
    for who in about {
        let to = crate::alerts::alert_recipients(config, directory, &who);
        out.push(if to.is_empty() {
            format!(
                "[safeguarding] escalate_to is empty: an alert about {who} would reach nobody (it must never go to them); list who is told instead, e.g. the chair of governors"
            )
        } else {
            format!(
                "[safeguarding] escalate_to is empty: alerts about {who} go to {}; list who is told instead, e.g. the chair of governors",
                to.join(", ")
            )
        });
    }
    out
}
