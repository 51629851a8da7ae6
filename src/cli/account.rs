//! `--as NAME` on the quarantine and audit commands: the person acting, for the audit trail.
//!
//! The name must be an existing web account (`schoolgate user add`) that holds the role the
//! action needs, as on the web page; otherwise the command is refused before it does anything.

use anyhow::bail;

use crate::config::Config;
use crate::store::users::{Account, Role, Users};

/// The account `--as` names, which must exist. `command` (e.g. "quarantine release") says in
/// the error what needed it.
pub(crate) fn named(config: &Config, name: Option<&str>, command: &str) -> anyhow::Result<Account> {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        bail!(
            "{command} needs --as NAME: the account of the person doing it (see schoolgate user list), kept in the audit trail"
        );
    };
    let users = Users::open(&config.storage);
    match users.get(name)? {
        Some(account) => Ok(account),
        None => bail!(
            "--as {name}: there is no account {name:?}; name an existing one (schoolgate user list) or add it with schoolgate user add {name} --role network-manager|dsl"
        ),
    }
}

/// The account `--as` names, which must exist and hold `role`.
pub(crate) fn with_role(
    config: &Config,
    name: Option<&str>,
    command: &str,
    role: Role,
) -> anyhow::Result<Account> {
    let account = named(config, name, command)?;
    require(&account, command, role)?;
    Ok(account)
}

/// Refuses unless `account` holds `role`.
pub(crate) fn require(account: &Account, command: &str, role: Role) -> anyhow::Result<()> {
    if account.has(role) {
        return Ok(());
    }
    bail!(
        "--as {}: {command} needs an account with the {role} role, and {} has {}",
        account.name,
        account.name,
        roles_text(account)
    )
}

/// Refuses unless `account` holds one of the quarantine's roles (network-manager or dsl).
pub(crate) fn require_any(account: &Account, command: &str) -> anyhow::Result<()> {
    if account.has(Role::NetworkManager) || account.has(Role::Dsl) {
        return Ok(());
    }
    bail!(
        "--as {}: {command} needs an account with the network-manager or dsl role, and {} has {}",
        account.name,
        account.name,
        roles_text(account)
    )
}

fn roles_text(account: &Account) -> String {
    if account.roles.is_empty() {
        return "no role".into();
    }
    let roles: Vec<&str> = account.roles.iter().map(|r| r.as_str()).collect();
    format!("only {}", roles.join(" and "))
}
