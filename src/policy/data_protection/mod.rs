//! The data-protection rules: personal data sent to the wrong people (issue 16). The ICO's most
//! reported school breach is mail to the wrong recipient, or a parents' mailing with every
//! address visible in To.
//!
//! Each rule's result is a [`Finding`] like an attachment's (its `attachment` empty), so the
//! verdict, `check --json`, the audit record, the web page's "Why held" and the sender notice
//! treat it as they treat the attachment rules. Its action comes from `[data_protection] rules`
//! (default `quarantine`).
//!
//! - `exposed-recipients` ([`exposed_recipients`]): more than `max_visible_recipients` outside
//!   addresses in To and Cc.

use std::collections::BTreeMap;

use crate::config::{Action, Config, DataProtectionRule};
use crate::directory::{Directory, canonical_address};
use crate::envelope::Envelope;
use crate::policy::sensitive::detect::Evidence;
use crate::policy::sensitive::{DetectorCount, Finding};

/// What the data-protection rules need to know about one message.
pub struct Message<'a> {
    pub envelope: &'a Envelope,
    /// To and Cc from the header: display name and address.
    pub header_recipients: &'a [(Option<String>, String)],
}

/// Runs the data-protection rules; returns the findings of those that matched and are not
/// `off`.
pub fn check(m: &Message<'_>, config: &Config, directory: &Directory) -> Vec<Finding> {
    let _ = directory;
    // A bounce (null sender) is the mail system speaking, not a member of staff.
    if m.envelope.mail_from.trim().is_empty() {
        return Vec::new();
    }
    let mut findings = Vec::new();
    findings.extend(exposed_recipients(m, config));
    findings
}

/// A finding of `rule`, with its action from config; `None` when the rule is `off`.
pub fn finding(
    config: &Config,
    rule: DataProtectionRule,
    detail: String,
    detectors: Vec<DetectorCount>,
    evidence: Vec<Evidence>,
) -> Option<Finding> {
    let action = config.data_protection.action(rule);
    (action != Action::Off).then(|| Finding {
        rule: rule.name(),
        attachment: String::new(),
        detail,
        detectors,
        evidence,
        action,
    })
}

/// Is `address` outside the school: in neither `[school] domains` nor `pupil_domains`?
pub fn is_outside(config: &Config, address: &str) -> bool {
    let Some((_, domain)) = address.trim().trim_end_matches('>').rsplit_once('@') else {
        // Not an address (a group name, "undisclosed-recipients"): nobody to expose.
        return false;
    };
    !config
        .school
        .domains
        .iter()
        .chain(&config.school.pupil_domains)
        .any(|d| d.0.eq_ignore_ascii_case(domain.trim_end_matches('.')))
}

/// `exposed-recipients`: more than `[data_protection] max_visible_recipients` outside addresses
/// in To and Cc, each mailbox counted once (two spellings of one Gmail address are one). Bcc
/// recipients are only in the envelope and never count; nor do the school's own addresses.
///
/// The evidence is the count, the limit and the outside domains with how many addresses each
/// (never the addresses: they are the families' personal data).
pub fn exposed_recipients(m: &Message<'_>, config: &Config) -> Option<Finding> {
    let limit = config.data_protection.max_visible_recipients;
    let mut seen: Vec<String> = Vec::new();
    let mut domains: BTreeMap<String, usize> = BTreeMap::new();
    for (_, address) in m.header_recipients {
        if !is_outside(config, address) {
            continue;
        }
        let key = canonical_address(address);
        if seen.contains(&key) {
            continue;
        }
        if let Some((_, domain)) = key.rsplit_once('@') {
            *domains.entry(domain.to_string()).or_default() += 1;
        }
        seen.push(key);
    }
    let count = seen.len();
    if count <= limit {
        return None;
    }
    let mut by_size: Vec<(String, usize)> = domains.into_iter().collect();
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let shown: Vec<String> = by_size
        .iter()
        .take(5)
        .map(|(d, n)| format!("{n} at {d}"))
        .collect();
    let more = if by_size.len() > 5 {
        format!(" and {} more domains", by_size.len() - 5)
    } else {
        String::new()
    };
    finding(
        config,
        DataProtectionRule::ExposedRecipients,
        format!(
            "{count} outside addresses are visible to every recipient in To and Cc (more than the {limit} allowed): {}{more}; put them in Bcc",
            shown.join(", ")
        ),
        vec![
            DetectorCount {
                detector: "visible-outside-recipients",
                count,
            },
            DetectorCount {
                detector: "max-visible-recipients",
                count: limit,
            },
        ],
        by_size
            .into_iter()
            .map(|(domain, n)| Evidence {
                detector: "visible-outside-recipients",
                location: "To/Cc".into(),
                sample: format!("{n} at {domain}"),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;
