//! Who may send through the relay, decided from what the client told us (pure, no I/O).
//!
//! - [`sender_allowed`]: the MAIL FROM domain against `[relay] allowed_senders`. With the cloud
//!   recipe the allowed clients are Microsoft's and Google's shared ranges, so any tenant of
//!   theirs could otherwise relay through the school's gateway.
//! - [`check_tenant`]: the `X-MS-Exchange-CrossTenant-Id` header Exchange Online stamps on
//!   every message it sends, against `[relay] m365_tenant_id`, as gateway vendors pin a tenant.

use crate::config::{AllowedSender, TenantId};
use crate::mime::header;

/// The header Exchange Online stamps with the sending tenant's id.
pub const TENANT_HEADER: &str = "X-MS-Exchange-CrossTenant-Id";

/// Whether `mail_from` may send through the relay. The null sender (bounces) always may; a
/// domain matches case-insensitively, exactly (`"school.sch.uk"`) or as a subdomain of a
/// `"*.school.sch.uk"` entry.
pub fn sender_allowed(allowed: &[AllowedSender], mail_from: &str) -> bool {
    if mail_from.is_empty() {
        return true;
    }
    let domain = sender_domain(mail_from);
    allowed.iter().any(|a| match a {
        AllowedSender::Anyone => true,
        AllowedSender::Domain(d) => domain == *d,
        AllowedSender::Subdomains(d) => domain
            .strip_suffix(d.as_str())
            .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
    })
}

/// The domain of `address` (after its last `@`), in lower case and without a trailing dot.
pub fn sender_domain(address: &str) -> String {
    let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
    domain.trim_end_matches('.').to_lowercase()
}

/// Why a message was not accepted as coming from the pinned Microsoft 365 tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantProblem {
    /// No `X-MS-Exchange-CrossTenant-Id` header: not sent through Exchange Online.
    Missing,
    /// A header naming another tenant (its value, cleaned for display).
    Other(String),
}

impl TenantProblem {
    /// The reply the client gets (after the final dot).
    pub fn reply(&self) -> String {
        match self {
            TenantProblem::Missing => format!(
                "550 5.7.1 Message refused: it was not sent from this school's Microsoft 365 \
                 tenant (no {TENANT_HEADER} header)"
            ),
            TenantProblem::Other(_) => format!(
                "550 5.7.1 Message refused: it was sent from another Microsoft 365 tenant \
                 ({TENANT_HEADER} is not relay.m365_tenant_id)"
            ),
        }
    }

    /// The same, in words for the audit trail.
    pub fn detail(&self) -> String {
        match self {
            TenantProblem::Missing => format!(
                "no {TENANT_HEADER} header, and relay.m365_tenant_id pins the school's tenant"
            ),
            TenantProblem::Other(id) => {
                format!("{TENANT_HEADER} names tenant \"{id}\", not relay.m365_tenant_id")
            }
        }
    }
}

/// Checks that `message` was sent from the tenant `pinned`: it must carry the header, and
/// every copy of it must name that tenant. A message with several copies is refused if any
/// names another tenant: a sender in another tenant could write ours into its message, but
/// Exchange Online adds its own beside it, so the only safe reading is that all must agree.
pub fn check_tenant(pinned: &TenantId, message: &[u8]) -> Result<(), TenantProblem> {
    let head = header::parse(message, 0, message.len());
    let mut seen = false;
    for field in head
        .fields
        .iter()
        .filter(|f| f.name.trim().eq_ignore_ascii_case(TENANT_HEADER))
    {
        let value = header::unfold(&message[field.value.clone()]);
        let value = value.trim();
        if !value.eq_ignore_ascii_case(&pinned.0) {
            let shown: String = value.chars().filter(|c| !c.is_control()).take(64).collect();
            return Err(TenantProblem::Other(shown));
        }
        seen = true;
    }
    if seen {
        Ok(())
    } else {
        Err(TenantProblem::Missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Vec<AllowedSender> {
        entries.iter().map(|e| e.parse().unwrap()).collect()
    }

    #[test]
    fn only_the_listed_domains_may_send() {
        let allowed = list(&["school.sch.uk", "pupils.school.sch.uk"]);
        assert!(sender_allowed(&allowed, "head@school.sch.uk"));
        assert!(sender_allowed(&allowed, "Head@SCHOOL.sch.UK"));
        assert!(sender_allowed(&allowed, "j.smith@pupils.school.sch.uk"));
        assert!(!sender_allowed(&allowed, "x@outside.example"));
        assert!(!sender_allowed(&allowed, "x@notschool.sch.uk"));
        assert!(!sender_allowed(&allowed, "x@school.sch.uk.evil.example"));
        // Exact: a subdomain is not the domain.
        assert!(!sender_allowed(&allowed, "x@sub.school.sch.uk"));
        assert!(!sender_allowed(&allowed, "x@[127.0.0.1]"));
        // A quoted local part holding an @ does not change the domain.
        assert!(!sender_allowed(
            &allowed,
            "\"a@school.sch.uk\"@evil.example"
        ));
        assert!(sender_allowed(&allowed, "\"a@evil.example\"@school.sch.uk"));
    }

    #[test]
    fn the_null_sender_and_the_wildcard_pass() {
        let allowed = list(&["school.sch.uk"]);
        assert!(sender_allowed(&allowed, ""));
        assert!(sender_allowed(&list(&["*"]), "anyone@anywhere.example"));
    }

    #[test]
    fn a_subdomain_entry_admits_subdomains_only() {
        let allowed = list(&["*.school.sch.uk"]);
        assert!(sender_allowed(&allowed, "x@sub.school.sch.uk"));
        assert!(sender_allowed(&allowed, "x@a.b.school.sch.uk"));
        assert!(!sender_allowed(&allowed, "x@school.sch.uk"));
        assert!(!sender_allowed(&allowed, "x@evilschool.sch.uk"));
    }

    const OURS: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const THEIRS: &str = "0b0c0d0e-1111-2222-3333-444455556666";

    fn message(headers: &[&str]) -> Vec<u8> {
        let mut m = String::from("From: a@school.sch.uk\r\nSubject: hi\r\n");
        for h in headers {
            m.push_str(h);
            m.push_str("\r\n");
        }
        m.push_str("\r\nbody\r\n");
        m.into_bytes()
    }

    #[test]
    fn the_pinned_tenant_passes_and_others_do_not() {
        let pinned: TenantId = OURS.parse().unwrap();
        let ok = message(&[&format!("X-MS-Exchange-CrossTenant-Id: {OURS}")]);
        assert_eq!(check_tenant(&pinned, &ok), Ok(()));
        let upper = message(&[&format!(
            "x-ms-exchange-crosstenant-id:\r\n {}",
            OURS.to_uppercase()
        )]);
        assert_eq!(check_tenant(&pinned, &upper), Ok(()));
        assert_eq!(
            check_tenant(&pinned, &message(&[])),
            Err(TenantProblem::Missing)
        );
        let other = message(&[&format!("X-MS-Exchange-CrossTenant-Id: {THEIRS}")]);
        assert_eq!(
            check_tenant(&pinned, &other),
            Err(TenantProblem::Other(THEIRS.into()))
        );
    }

    #[test]
    fn several_tenant_headers_must_all_name_ours() {
        let pinned: TenantId = OURS.parse().unwrap();
        for order in [[OURS, THEIRS], [THEIRS, OURS]] {
            let m = message(&[
                &format!("X-MS-Exchange-CrossTenant-Id: {}", order[0]),
                &format!("X-MS-Exchange-CrossTenant-Id: {}", order[1]),
            ]);
            assert_eq!(
                check_tenant(&pinned, &m),
                Err(TenantProblem::Other(THEIRS.into()))
            );
        }
        let twice = message(&[
            &format!("X-MS-Exchange-CrossTenant-Id: {OURS}"),
            &format!("X-MS-Exchange-CrossTenant-Id: {OURS}"),
        ]);
        assert_eq!(check_tenant(&pinned, &twice), Ok(()));
    }

    #[test]
    fn a_header_in_the_body_does_not_count() {
        let pinned: TenantId = OURS.parse().unwrap();
        let m = format!("Subject: x\r\n\r\nX-MS-Exchange-CrossTenant-Id: {OURS}\r\n");
        assert_eq!(
            check_tenant(&pinned, m.as_bytes()),
            Err(TenantProblem::Missing)
        );
    }
}
