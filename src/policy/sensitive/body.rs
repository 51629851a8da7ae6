//! `sensitive-data-in-body`: personal data pasted into the text of a message, going outside the
//! school.
//!
//! Seed 000: "where personal data is transferred outside the secure school network, it must be
//! encrypted" — the text of a mail is not encrypted any more than an attachment is. The text the
//! author wrote ([`crate::policy::author`], the quoted thread left out) is read by the same
//! detectors as an attachment ([`super::detect`]) and judged by its own thresholds,
//! `[sensitive.body_thresholds]`, which by default look for a list (two or more pupils with an
//! identifier, a date of birth, or special-category data).
//!
//! A teacher writing to a pupil's own parents about that pupil is not held, SEN support and
//! EHCP included: that is the school's daily work. The data then concerns only pupils the text
//! names, and every outside recipient is a parent (in the directory) of every pupil named.

use super::detect::{self, Vocabulary};
use super::extract::Text;
use super::{DetectorCount, Finding, and_list, judge};
use crate::config::{Action, Config, SensitiveRule};
use crate::directory::Directory;

/// Where the findings of this rule say the data is.
pub const LOCATION: &str = "the message text";

/// Who the message goes to, as this rule needs it.
pub struct Recipients<'a> {
    /// The recipients outside the school (not in `[school] domains` or `pupil_domains`).
    pub outside: &'a [String],
    /// Whether `recipient` is, in the directory, a parent of the pupil at `people[pupil]`.
    pub is_parent_of: &'a dyn Fn(&str, usize) -> bool,
}

/// The finding for `author_text`, if it holds personal data going outside the school.
/// `named` gives the pupils the text names (indices into [`Directory::people`]); it is asked
/// only when the data reaches a threshold.
pub fn check(
    author_text: &str,
    recipients: &Recipients<'_>,
    named: &dyn Fn() -> Vec<usize>,
    config: &Config,
    directory: &Directory,
    today: jiff::civil::Date,
    vocabulary: &Vocabulary,
) -> Option<Finding> {
    let action = config
        .sensitive
        .rules
        .get(&SensitiveRule::SensitiveDataInBody)
        .copied()
        .unwrap_or(Action::Quarantine);
    if action == Action::Off || recipients.outside.is_empty() || author_text.trim().is_empty() {
        return None;
    }
    // The common case, a letter with no identifier, date of birth, special-category word or
    // marking in it: nothing can reach a threshold (each needs a count of at least one), so
    // the full scan is skipped. The decision is the same either way.
    if detect::nothing_to_count(author_text, vocabulary) {
        return None;
    }
    let texts = [Text {
        location: LOCATION.to_string(),
        text: author_text.to_string(),
    }];
    let names = directory.detector_names(today);
    let tally = detect::scan_named(&texts, &names, today, vocabulary);
    let reasons = judge(&tally, &config.sensitive.body_thresholds, None, None);
    if reasons.is_empty() {
        return None;
    }
    // The people the data is about, at most: each counter counts distinct people.
    let named = named();
    let subjects = tally
        .identifiers
        .max(tally.birth_dates)
        .max(tally.special_category);
    let to_own_parents = !named.is_empty()
        && subjects <= named.len()
        && tally.markings.is_empty()
        && recipients.outside.iter().all(|r| {
            named
                .iter()
                .all(|&pupil| (recipients.is_parent_of)(r.as_str(), pupil))
        });
    if to_own_parents {
        return None;
    }
    Some(Finding {
        rule: SensitiveRule::SensitiveDataInBody.name(),
        // Not an attachment: the web page and the quarantine list show no file for it.
        attachment: String::new(),
        part: None,
        detail: format!(
            "the text of the message goes outside the school and holds {}",
            and_list(&reasons)
        ),
        detectors: tally
            .by_detector
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|&(detector, count)| DetectorCount { detector, count })
            .collect(),
        evidence: tally.evidence,
        action,
    })
}
