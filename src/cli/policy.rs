//! `schoolgate policy check`: validate the config and the directory, print a summary.

use std::path::Path;
use std::process::ExitCode;

use crate::config::{Action, Config, ContactRule, SensitiveRule};
use crate::directory::Directory;

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let directory = Directory::load(&config.school.directory, &config.school.staff_roles)?;
    println!("config {} is valid", config_path.display());
    if config.schools.is_empty() {
        school_summary(&config, &config.school, &directory);
    } else {
        println!(
            "  trust:           {} schools; mail from no school's domain gets the trust-wide defaults ({})",
            config.schools.len(),
            config.school.name
        );
        for (i, policy) in config.schools.iter().enumerate() {
            let Some(school) = config.for_school(i) else {
                continue;
            };
            let directory = Directory::load(&school.school.directory, &school.school.staff_roles)?;
            school_summary(&school, &policy.school, &directory);
            let dsl: Vec<&str> = school
                .safeguarding
                .dsl
                .iter()
                .map(|a| a.0.as_str())
                .collect();
            println!(
                "  alerts to:       {}",
                if dsl.is_empty() {
                    "nobody: list the school's DSLs in [schools.safeguarding] dsl".to_string()
                } else {
                    dsl.join(", ")
                }
            );
            println!(
                "  its rules:       {}",
                contact_rules(&school.safeguarding).join(", ")
            );
            for line in escalation_warnings(&school, &directory) {
                println!("warning: {} ({line})", policy.school.name);
            }
        }
        if !config.school.directory.as_os_str().is_empty() {
            println!(
                "  trust directory: {} ({} people)",
                config.school.directory.display(),
                directory.people.len()
            );
        }
    }
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
    let mut rules: Vec<String> = contact_rules(&config.safeguarding);
    for rule in [
        SensitiveRule::UnencryptedSensitiveAttachment,
        SensitiveRule::UnscannableAttachment,
        SensitiveRule::SensitiveDataInBody,
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
    let b = &config.sensitive.body_thresholds;
    println!(
        "  in the text:     {} identifiers, {} dates of birth, {} pupils with special-category data (sensitive-data-in-body)",
        b.identifiers, b.birth_dates, b.special_category
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
    for line in escalation_warnings(&config, &directory)
        .into_iter()
        .filter(|_| config.schools.is_empty())
    {
        println!("warning: {line}");
    }
    if let Some(line) = config.web.insecure_warning() {
        println!("warning: {line}");
    }
    if let Err(e) = config.metrics_token() {
        println!("warning: {e}; /metrics answers only [web] metrics_allowed_clients");
    }
    dkim_summary(&config)?;
    Ok(ExitCode::SUCCESS)
}

/// The safeguarding contact rules with their actions, defaults included, by their SPEC names.
fn contact_rules(safeguarding: &crate::config::Safeguarding) -> Vec<String> {
    [
        ContactRule::PupilPersonalAddress,
        ContactRule::StaffPersonalAddress,
        ContactRule::PersonalContactShared,
        ContactRule::OutOfHoursPupilContact,
    ]
    .into_iter()
    .map(|rule| {
        let action = safeguarding
            .rules
            .get(&rule)
            .copied()
            .unwrap_or(Action::Flag);
        format!("{}={}", rule.name(), format!("{action:?}").to_lowercase())
    })
    .collect()
}

/// The lines about one school: its name, its own domains (`own`), its directory and who is
/// exempt from its disclaimer.
fn school_summary(config: &Config, own: &crate::config::School, directory: &Directory) {
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
    println!("  school:          {}", own.name);
    println!("  staff domains:   {}", domains(&own.domains));
    println!("  pupil domains:   {}", domains(&own.pupil_domains));
    println!(
        "  directory:       {} ({} people: {staff} staff, {pupils} pupils)",
        own.directory.display(),
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
}

/// `[dkim]`: each key loaded (a key that cannot be used is an error, as at start), and its
/// published record checked in DNS; a record missing, different or not checkable here is a
/// warning that says what to publish.
fn dkim_summary(config: &crate::config::Config) -> anyhow::Result<()> {
    let Some(dkim) = &config.dkim else {
        println!("  dkim:            off (mail leaves unsigned by schoolgate)");
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let resolver = crate::dkim::dns::authenticator(dkim.resolver);
    for k in dkim.all_keys() {
        let key = crate::dkim::PrivateKey::load(&k.key).map_err(|e| {
            anyhow::anyhow!(
                "{}: dkim.key ({}): {e}",
                config.source.display(),
                k.domain.0
            )
        })?;
        let (domain, selector) = (k.domain.0.as_str(), k.selector.0.as_str());
        println!(
            "  dkim:            mail from {domain} signed with {} ({} {} bits), selector {selector}{}",
            k.key.display(),
            key.algorithm.tag(),
            key.bits,
            if dkim.arc { ", ARC sets added" } else { "" }
        );
        let publish = crate::dkim::key::zone_line(selector, domain, &key.record());
        let found = match &resolver {
            Ok(r) => runtime.block_on(crate::dkim::dns::check_published(
                r,
                selector,
                domain,
                &key.public_b64,
            )),
            Err(e) => crate::dkim::dns::Published::Unknown(e.clone()),
        };
        use crate::dkim::dns::Published;
        match found {
            Published::Matches => {
                println!(
                    "                   {selector}._domainkey.{domain} is published and matches the key"
                )
            }
            Published::Other(_) => println!(
                "warning: {selector}._domainkey.{domain} publishes another key, so receivers will \
                 fail schoolgate's signatures; publish:\n{publish}"
            ),
            Published::Missing => println!(
                "warning: {selector}._domainkey.{domain} is not published, so receivers cannot \
                 check schoolgate's signatures; publish:\n{publish}"
            ),
            Published::Unknown(detail) => println!(
                "warning: {selector}._domainkey.{domain} cannot be checked here (DNS: {detail}); \
                 make sure it is published as:\n{publish}"
            ),
        }
    }
    Ok(())
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
