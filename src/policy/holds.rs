//! Whose decision a held message is, and who may do what to it: one pure rule, used by the web
//! page and the command line alike.
//!
//! A message held by a safeguarding (contact) rule belongs to the DSL: only a `dsl` account may
//! read its text, download it, release it or delete it, and a release or delete needs a reason.
//! The network manager sees only that it exists (its time, its size, "held by a safeguarding
//! rule"). A message held for a sensitive attachment as well as a safeguarding rule is the
//! DSL's. Every other hold is the network manager's to release or delete; a DSL may read it.
//!
//! What a hold is comes from its stored reasons (the flags and findings of its audit record,
//! [`crate::store::quarantine::Held::reason`]), the same for entries made before this rule
//! existed. What cannot be read as a known non-safeguarding reason counts as safeguarding: an
//! entry whose reasons are missing or unknown is the DSL's, never shown by mistake.

use serde::Serialize;
use serde_json::Value;

use crate::config::ContactRule;
use crate::store::users::Role;

/// The safeguarding (contact) rules, by their stable names.
pub const SAFEGUARDING_RULES: [ContactRule; 4] = [
    ContactRule::PupilPersonalAddress,
    ContactRule::StaffPersonalAddress,
    ContactRule::PersonalContactShared,
    ContactRule::OutOfHoursPupilContact,
];

/// Rules that are not safeguarding: the sensitive-attachment rules and the data-protection
/// rules (SPEC, "Round two").
const OTHER_RULES: [&str; 6] = [
    "unencrypted-sensitive-attachment",
    "unscannable-attachment",
    "sensitive-data-in-body",
    "exposed-recipients",
    "wrong-recipient",
    "password-in-message",
];

/// What kind of hold an entry is, from why it is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hold {
    /// Held by (at least) one safeguarding rule: the DSL's decision.
    Safeguarding,
    /// Held for a sensitive attachment or data protection only: the network manager's.
    Sensitive,
}

impl Hold {
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::Safeguarding => "safeguarding",
            Hold::Sensitive => "sensitive",
        }
    }

    /// The role that decides a hold of this kind (release, delete).
    pub fn decided_by(self) -> Role {
        match self {
            Hold::Safeguarding => Role::Dsl,
            Hold::Sensitive => Role::NetworkManager,
        }
    }
}

/// Whether `rule` (a stable rule name) is a safeguarding rule.
pub fn is_safeguarding_rule(rule: &str) -> bool {
    SAFEGUARDING_RULES.iter().any(|r| r.name() == rule)
}

/// The kind of hold whose stored reasons are `reason` (a JSON array of flags and findings).
///
/// Safeguarding when any item names a safeguarding rule; also when the reasons cannot be read
/// (not an array, an item without a rule) or an item names an unknown rule and no attachment:
/// what the gateway cannot place is shown to the DSL only.
pub fn kind(reason: &Value) -> Hold {
    let Some(items) = reason.as_array() else {
        return Hold::Safeguarding;
    };
    let unplaced = |item: &Value| match item.get("rule").and_then(Value::as_str) {
        None => true,
        Some(rule) if is_safeguarding_rule(rule) => true,
        Some(rule) if OTHER_RULES.contains(&rule) => false,
        // An unknown rule about an attachment is a sensitive-attachment finding.
        Some(_) => item
            .get("attachment")
            .and_then(Value::as_str)
            .is_none_or(|a| a.is_empty()),
    };
    if items.iter().any(unplaced) {
        Hold::Safeguarding
    } else {
        Hold::Sensitive
    }
}

/// Something a person does to a held message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// See that it exists: its id, time, size and what kind of hold it is.
    See,
    /// Read it: addresses, subject, reasons, headers, text, attachments.
    Read,
    /// Download its bytes (`.eml`, `quarantine export`).
    Download,
    /// Deliver it to its recipients.
    Release,
    /// Delete it.
    Delete,
}

impl Act {
    pub fn as_str(self) -> &'static str {
        match self {
            Act::See => "see",
            Act::Read => "read",
            Act::Download => "download",
            Act::Release => "release",
            Act::Delete => "delete",
        }
    }
}

/// The role `act` on a hold of kind `hold` needs; `None` when either role will do.
pub fn needs(hold: Hold, act: Act) -> Option<Role> {
    match (hold, act) {
        (_, Act::See) => None,
        (Hold::Safeguarding, _) => Some(Role::Dsl),
        (Hold::Sensitive, Act::Read | Act::Download) => None,
        (Hold::Sensitive, Act::Release | Act::Delete) => Some(Role::NetworkManager),
    }
}

/// Whether an account with `roles` may `act` on a hold of kind `hold`.
pub fn may(hold: Hold, roles: &[Role], act: Act) -> bool {
    match needs(hold, act) {
        Some(role) => roles.contains(&role),
        None => roles.contains(&Role::Dsl) || roles.contains(&Role::NetworkManager),
    }
}

/// Whether `act` on a hold of kind `hold` must give a reason (kept in the audit trail): every
/// release and every delete, whoever decides the hold (issue 17: "Require a reason on release").
pub fn needs_reason(_hold: Hold, act: Act) -> bool {
    match act {
        Act::Delete | Act::Release => true,
        Act::See | Act::Read | Act::Download => false,
    }
}

/// The longest reason a release or delete may give, in characters: enough for what happened
/// and who was spoken to, not a place to paste a document.
pub const MAX_REASON_CHARS: usize = 1_000;

/// Why a reason given for an action was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadReason {
    /// None given (or only spaces) where one is needed.
    Missing,
    /// Longer than [`MAX_REASON_CHARS`]: how many characters it has.
    TooLong(usize),
}

/// The reason for `act` on a hold of kind `hold`, trimmed: `None` when none was given and none
/// is needed; refused when one is needed and blank, or longer than [`MAX_REASON_CHARS`].
pub fn reason(hold: Hold, act: Act, given: Option<&str>) -> Result<Option<String>, BadReason> {
    let given = given.map(str::trim).filter(|r| !r.is_empty());
    match given {
        None if needs_reason(hold, act) => Err(BadReason::Missing),
        None => Ok(None),
        Some(r) => match r.chars().count() {
            n if n > MAX_REASON_CHARS => Err(BadReason::TooLong(n)),
            _ => Ok(Some(r.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NM: &[Role] = &[Role::NetworkManager];
    const DSL: &[Role] = &[Role::Dsl];
    const BOTH: &[Role] = &[Role::NetworkManager, Role::Dsl];
    const NONE: &[Role] = &[];

    fn flag(rule: &str) -> Value {
        json!({"rule": rule, "detail": "d", "evidence": "e", "action": "quarantine"})
    }

    fn finding(rule: &str) -> Value {
        json!({"rule": rule, "attachment": "list.xlsx", "detail": "d", "action": "quarantine"})
    }

    #[test]
    fn a_contact_rule_makes_the_hold_the_dsls_even_beside_a_finding() {
        for r in SAFEGUARDING_RULES {
            assert_eq!(kind(&json!([flag(r.name())])), Hold::Safeguarding);
        }
        let both = json!([
            finding("unencrypted-sensitive-attachment"),
            flag("out-of-hours-pupil-contact")
        ]);
        assert_eq!(kind(&both), Hold::Safeguarding);
        // A safeguarding flag that only flagged (the finding held it) still makes it the DSL's.
        let mut flagged = flag("pupil-personal-address");
        flagged["action"] = json!("flag");
        assert_eq!(
            kind(&json!([finding("unscannable-attachment"), flagged])),
            Hold::Safeguarding
        );
    }

    #[test]
    fn attachment_and_data_protection_holds_are_the_network_managers() {
        assert_eq!(
            kind(&json!([finding("unencrypted-sensitive-attachment")])),
            Hold::Sensitive
        );
        assert_eq!(
            kind(&json!([
                flag("exposed-recipients"),
                flag("wrong-recipient")
            ])),
            Hold::Sensitive
        );
        // A rule added later that names an attachment is a finding.
        assert_eq!(
            kind(&json!([finding("macro-in-attachment")])),
            Hold::Sensitive
        );
        assert_eq!(kind(&json!([])), Hold::Sensitive);
    }

    #[test]
    fn reasons_that_cannot_be_placed_are_the_dsls() {
        assert_eq!(kind(&Value::Null), Hold::Safeguarding);
        assert_eq!(kind(&json!("pupil-personal-address")), Hold::Safeguarding);
        assert_eq!(kind(&json!([{"detail": "no rule"}])), Hold::Safeguarding);
        assert_eq!(
            kind(&json!([flag("some-new-contact-rule")])),
            Hold::Safeguarding
        );
        assert_eq!(
            kind(&json!([{"rule": "x", "attachment": ""}])),
            Hold::Safeguarding
        );
    }

    #[test]
    fn only_a_dsl_reads_downloads_releases_or_deletes_a_safeguarding_hold() {
        let s = Hold::Safeguarding;
        for act in [Act::Read, Act::Download, Act::Release, Act::Delete] {
            assert!(!may(s, NM, act), "{act:?}");
            assert!(may(s, DSL, act), "{act:?}");
            assert!(may(s, BOTH, act), "{act:?}");
            assert!(!may(s, NONE, act), "{act:?}");
        }
        assert!(may(s, NM, Act::See) && may(s, DSL, Act::See) && !may(s, NONE, Act::See));
        assert!(needs_reason(s, Act::Release) && needs_reason(s, Act::Delete));
        assert_eq!(needs(s, Act::Release), Some(Role::Dsl));
        assert_eq!(s.decided_by(), Role::Dsl);
    }

    #[test]
    fn the_network_manager_decides_a_sensitive_hold_and_a_dsl_may_read_it() {
        let h = Hold::Sensitive;
        for act in [Act::See, Act::Read, Act::Download] {
            assert!(may(h, NM, act) && may(h, DSL, act) && !may(h, NONE, act));
        }
        for act in [Act::Release, Act::Delete] {
            assert!(may(h, NM, act) && !may(h, DSL, act) && may(h, BOTH, act));
        }
        assert!(needs_reason(h, Act::Release) && needs_reason(h, Act::Delete));
        assert!(!needs_reason(h, Act::Read) && !needs_reason(h, Act::Download));
        assert_eq!(needs(h, Act::Delete), Some(Role::NetworkManager));
    }

    #[test]
    fn a_release_or_delete_needs_a_reason_of_at_most_a_thousand_characters() {
        for hold in [Hold::Safeguarding, Hold::Sensitive] {
            for act in [Act::Release, Act::Delete] {
                for blank in [None, Some(""), Some(" \t\r\n ")] {
                    assert_eq!(reason(hold, act, blank), Err(BadReason::Missing));
                }
                assert_eq!(
                    reason(hold, act, Some("  spoke to the parent ")),
                    Ok(Some("spoke to the parent".into()))
                );
                // Characters, not bytes: 1,000 accented letters are 2,000 bytes and allowed.
                let most = "é".repeat(MAX_REASON_CHARS);
                assert_eq!(reason(hold, act, Some(&most)), Ok(Some(most.clone())));
                let over = "x".repeat(100_000);
                assert_eq!(
                    reason(hold, act, Some(&over)),
                    Err(BadReason::TooLong(100_000))
                );
                // Spaces around it do not count.
                let padded = format!("  {}  ", "y".repeat(MAX_REASON_CHARS));
                assert!(reason(hold, act, Some(&padded)).is_ok());
            }
        }
        assert_eq!(reason(Hold::Sensitive, Act::Read, None), Ok(None));
    }
}
