//! Whether the sender of a held message may release it themselves ("override with
//! justification", issue 16): one pure rule, used by the sender notice (link or no link), the
//! release page and `schoolgate quarantine release ID --justification TEXT` alike.
//!
//! Only the data-protection rules that catch a sender's slip may be overridden by the sender:
//! `exposed-recipients`, `wrong-recipient` and `password-in-message`, each unless the school
//! switched it off (`[data_protection] allow_sender_release`). A message held by any other rule
//! (a safeguarding rule, `unencrypted-sensitive-attachment`, `unscannable-attachment`,
//! `sensitive-data-in-body`, a rule this code does not know) is never the sender's to release,
//! even when that rule only flagged: every rule named in the hold's reasons must allow it.
//!
//! What a hold is comes from its stored reasons (the flags and findings of its audit record,
//! [`crate::store::quarantine::Held::reason`]), by rule name, so the rule holds for entries
//! made before this code and for rules added after it.

use serde_json::Value;

/// The rules whose hold the sender may release themselves (unless switched off).
pub const SENDER_RELEASABLE: [&str; 3] = [
    "exposed-recipients",
    "wrong-recipient",
    "password-in-message",
];

/// The release link's token: this many random bytes from the OS (64 hex digits in the link).
pub const TOKEN_BYTES: usize = 32;

/// How long a release link works.
pub const LINK_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_hours(7 * 24);

/// The longest justification, in characters.
pub const MAX_JUSTIFICATION: usize = 1000;

/// Whether a rule (by name) is one the sender may ever release: `allowed` says whether the
/// school's config allows it for that rule.
pub fn rule_allows(rule: &str, allowed: impl Fn(&str) -> bool) -> bool {
    SENDER_RELEASABLE.contains(&rule) && allowed(rule)
}

/// Why the sender may not release a held message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotTheSenders {
    #[error(
        "it was held by {0}, which only the school can release: ask the network manager (or, for a safeguarding rule, the DSL) to review it"
    )]
    Rule(String),
    #[error(
        "the school has switched off self-release for {0} ([data_protection] allow_sender_release): ask the network manager to review it"
    )]
    SwitchedOff(String),
    #[error("the gateway cannot tell why it was held: ask the network manager to review it")]
    Unknown,
}

/// Whether the sender may release a message held for `reason` (the stored flags and findings);
/// `allowed(rule)` is the config's switch for each of [`SENDER_RELEASABLE`].
pub fn sender_may_release(
    reason: &Value,
    allowed: impl Fn(&str) -> bool,
) -> Result<(), NotTheSenders> {
    let items = match reason.as_array() {
        Some(items) if !items.is_empty() => items,
        _ => return Err(NotTheSenders::Unknown),
    };
    for item in items {
        let Some(rule) = item.get("rule").and_then(Value::as_str) else {
            return Err(NotTheSenders::Unknown);
        };
        if !SENDER_RELEASABLE.contains(&rule) {
            return Err(NotTheSenders::Rule(rule.to_string()));
        }
        if !allowed(rule) {
            return Err(NotTheSenders::SwitchedOff(rule.to_string()));
        }
    }
    Ok(())
}

/// Why a justification is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadJustification {
    #[error("say in one line why the message should go; the reason is kept in the audit trail")]
    Missing,
    #[error("the reason is {0} characters; keep it to one line of at most 1,000 characters")]
    TooLong(usize),
    #[error("the reason must be one line (no line breaks or control characters)")]
    NotOneLine,
}

/// The sender's reason, trimmed: required, one line, at most [`MAX_JUSTIFICATION`] characters.
pub fn justification(text: &str) -> Result<String, BadJustification> {
    let text = text.trim();
    if text.is_empty() {
        return Err(BadJustification::Missing);
    }
    if text.chars().any(char::is_control) {
        return Err(BadJustification::NotOneLine);
    }
    let n = text.chars().count();
    if n > MAX_JUSTIFICATION {
        return Err(BadJustification::TooLong(n));
    }
    Ok(text.to_string())
}

/// What a release link's token is, looked up: the shells read the store, this says what it
/// means at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No link has this token (mistyped, cut short, or made up).
    Unknown,
    /// Used already: a link works once.
    Used,
    /// Older than [`LINK_LIFETIME`].
    Expired,
    /// Good for one release.
    Valid,
}

/// The state of a link that expires at `expires` and was used at `used` (if it was), at `now`.
pub fn link_state(
    expires: jiff::Timestamp,
    used: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> LinkState {
    match used {
        Some(_) => LinkState::Used,
        None if now >= expires => LinkState::Expired,
        None => LinkState::Valid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flag(rule: &str, action: &str) -> Value {
        json!({"rule": rule, "detail": "d", "evidence": "e", "action": action})
    }

    fn all(_: &str) -> bool {
        true
    }

    #[test]
    fn the_three_data_protection_rules_are_the_senders_to_release() {
        for rule in SENDER_RELEASABLE {
            assert_eq!(
                sender_may_release(&json!([flag(rule, "quarantine")]), all),
                Ok(())
            );
        }
        let two = json!([
            flag("exposed-recipients", "quarantine"),
            flag("wrong-recipient", "quarantine")
        ]);
        assert_eq!(sender_may_release(&two, all), Ok(()));
    }

    #[test]
    fn any_other_rule_in_the_hold_keeps_it_the_schools() {
        for other in [
            "pupil-personal-address",
            "staff-personal-address",
            "personal-contact-shared",
            "out-of-hours-pupil-contact",
            "unencrypted-sensitive-attachment",
            "unscannable-attachment",
            "sensitive-data-in-body",
            "a-rule-added-later",
        ] {
            // Even when that rule only flagged and a releasable rule held it.
            let reason = json!([flag("wrong-recipient", "quarantine"), flag(other, "flag")]);
            assert_eq!(
                sender_may_release(&reason, all),
                Err(NotTheSenders::Rule(other.into())),
                "{other}"
            );
        }
    }

    #[test]
    fn a_rule_switched_off_or_reasons_that_cannot_be_read_are_refused() {
        let no_wrong = |r: &str| r != "wrong-recipient";
        assert_eq!(
            sender_may_release(&json!([flag("wrong-recipient", "quarantine")]), no_wrong),
            Err(NotTheSenders::SwitchedOff("wrong-recipient".into()))
        );
        assert_eq!(
            sender_may_release(&json!([flag("exposed-recipients", "quarantine")]), no_wrong),
            Ok(())
        );
        for unreadable in [
            Value::Null,
            json!([]),
            json!("wrong-recipient"),
            json!([{"detail": "no rule"}]),
        ] {
            assert_eq!(
                sender_may_release(&unreadable, all),
                Err(NotTheSenders::Unknown),
                "{unreadable}"
            );
        }
        assert!(rule_allows("password-in-message", all));
        assert!(!rule_allows("pupil-personal-address", all));
        assert!(!rule_allows("wrong-recipient", no_wrong));
    }

    #[test]
    fn a_justification_is_one_required_line_of_at_most_1000_characters() {
        assert_eq!(
            justification("  checked with the head of year  ").as_deref(),
            Ok("checked with the head of year")
        );
        assert_eq!(justification(" \t "), Err(BadJustification::Missing));
        assert_eq!(
            justification("line one\nline two"),
            Err(BadJustification::NotOneLine)
        );
        // Characters, not bytes: 1,000 Welsh letters with a circumflex are fine.
        assert!(justification(&"ŵ".repeat(1000)).is_ok());
        assert_eq!(
            justification(&"a".repeat(1001)),
            Err(BadJustification::TooLong(1001))
        );
    }

    #[test]
    fn a_link_works_once_and_for_seven_days() {
        let made: jiff::Timestamp = "2026-12-07T09:00:00Z".parse().unwrap();
        let expires = made + LINK_LIFETIME;
        assert_eq!(link_state(expires, None, made), LinkState::Valid);
        let day6: jiff::Timestamp = "2026-12-13T09:00:00Z".parse().unwrap();
        assert_eq!(link_state(expires, None, day6), LinkState::Valid);
        assert_eq!(link_state(expires, None, expires), LinkState::Expired);
        assert_eq!(link_state(expires, Some(made), day6), LinkState::Used);
    }
}
