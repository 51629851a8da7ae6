//! `schoolgate user …`: the web page's accounts.
//!
//! The password is read from the terminal without echo (asked twice), or as one line of
//! standard input when that is not a terminal (for scripts). Only its argon2id hash is kept.
//! Every change is audited (`user-change`) with the acting user (`--as NAME`, default the OS
//! user); the password never is.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::Config;
use crate::store::logins::Logins;
use crate::store::users::{Role, Users};
use crate::store::{AuditLog, AuditRecord, RecordKind};
use crate::web::auth::hash_password;

/// The shortest password accepted.
const MIN_PASSWORD: usize = 10;

#[derive(Debug, Args)]
pub struct UserArgs {
    /// Who is acting, for the audit trail (default: the OS user).
    #[arg(long = "as", value_name = "NAME", global = true)]
    pub actor: Option<String>,
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account for the web page (asks for its password).
    Add {
        name: String,
        /// network-manager (the quarantine) or dsl (flags, audit search); repeat for both.
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        /// Also ask for a code from an authenticator app at each login (TOTP, RFC 6238); the
        /// secret is printed once, as an otpauth:// URI to add to the app.
        #[arg(long)]
        totp: bool,
        /// In a multi-academy trust, restrict the account to this school (`[[schools]] name`);
        /// repeat for several. Without it the account is trust-wide.
        #[arg(long = "school", value_name = "NAME")]
        schools: Vec<String>,
    },
    /// Set an account's password (and lift its lock-outs).
    Passwd { name: String },
    /// Remove an account.
    Remove { name: String },
    /// The accounts, their roles and any lock-out.
    List,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

pub fn run(config_path: &Path, args: UserArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let actor = args
        .actor
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(super::quarantine::os_user);
    crate::store::private::create_dir_all(&config.storage.state_dir).with_context(|| {
        format!(
            "{}: storage.state_dir: cannot create {}",
            config.source.display(),
            config.storage.state_dir.display()
        )
    })?;
    let users = Users::open(&config.storage);
    match args.command {
        UserCommand::Add {
            name,
            roles,
            totp,
            schools,
        } => {
            check_name(&name)?;
            let schools = known_schools(&config, &schools)?;
            if users.get(&name)?.is_some() {
                anyhow::bail!(
                    "there is already an account {name}; use schoolgate user passwd {name} to set its password"
                );
            }
            let password = read_password(&name)?;
            let hash = hash_password(&password)?;
            if !users.add(&name, &roles, &hash)? {
                anyhow::bail!("there is already an account {name}");
            }
            if !schools.is_empty() {
                users.set_schools(&name, &schools)?;
            }
            let secret = if totp {
                let secret = crate::web::totp::new_secret()
                    .context("the operating system gave no random numbers for the TOTP secret")?;
                users.set_totp(&name, Some(&hex::encode(&secret)))?;
                Some(secret)
            } else {
                None
            };
            let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            audit(
                &config,
                &actor,
                format!(
                    "user add {name} by {actor}: roles {}{}{}",
                    roles.join(", "),
                    school_list(&schools),
                    if totp {
                        "; with an authenticator code (TOTP)"
                    } else {
                        ""
                    }
                ),
            )?;
            println!(
                "added {name} ({}{})",
                roles.join(", "),
                school_list(&schools)
            );
            if let Some(secret) = secret {
                println!(
                    "{name} logs in with a password and a 6-digit code from an authenticator app. \
                     Add this to the app now (it is not shown again):"
                );
                println!(
                    "{}",
                    crate::web::totp::uri(&config.school.name, &name, &secret)
                );
                println!("secret: {}", crate::web::totp::base32(&secret));
            }
        }
        UserCommand::Passwd { name } => {
            if users.get(&name)?.is_none() {
                anyhow::bail!("no account {name}; see schoolgate user list");
            }
            let password = read_password(&name)?;
            let hash = hash_password(&password)?;
            if !users.set_hash(&name, &hash)? {
                anyhow::bail!("no account {name}; see schoolgate user list");
            }
            Logins::open(&config.storage).clear(&name)?;
            audit(&config, &actor, format!("user passwd {name} by {actor}"))?;
            println!("password of {name} changed");
        }
        UserCommand::Remove { name } => {
            if !users.remove(&name)? {
                anyhow::bail!("no account {name}; see schoolgate user list");
            }
            audit(&config, &actor, format!("user remove {name} by {actor}"))?;
            println!("removed {name}");
        }
        UserCommand::List => {
            let all = users.list()?;
            if all.is_empty() {
                println!(
                    "no accounts; add one with schoolgate user add NAME --role network-manager"
                );
            }
            let now = jiff::Timestamp::now();
            let logins = Logins::open(&config.storage);
            for a in all {
                let roles: Vec<&str> = a.roles.iter().map(|r| r.as_str()).collect();
                let totp = if a.totp_secret.is_some() {
                    "  code"
                } else {
                    ""
                };
                let locked: String = logins
                    .locks(&a.name, now.as_second())?
                    .iter()
                    .map(|l| {
                        let until = jiff::Timestamp::from_second(l.until)
                            .map(|t| t.to_string())
                            .unwrap_or_else(|_| l.until.to_string());
                        format!("  locked until {until} from {}", l.client)
                    })
                    .collect();
                let schools = if a.schools.is_empty() {
                    String::new()
                } else {
                    format!("  schools: {}", a.schools.join("; "))
                };
                println!("{}  {}{schools}{totp}{locked}", a.name, roles.join(","));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `--school` names as `[[schools]]` spells them; an unknown name (or any, for a single
/// school) is refused naming the schools there are.
fn known_schools(config: &Config, wanted: &[String]) -> anyhow::Result<Vec<String>> {
    let names: Vec<&str> = config
        .schools
        .iter()
        .map(|s| s.school.name.as_str())
        .collect();
    let mut out: Vec<String> = Vec::new();
    for w in wanted {
        let Some(found) = names.iter().find(|n| n.eq_ignore_ascii_case(w.trim())) else {
            if names.is_empty() {
                anyhow::bail!(
                    "--school \"{w}\": {} has no [[schools]] (a single school's accounts see \
                     all of it); leave --school out",
                    config.source.display()
                );
            }
            anyhow::bail!(
                "--school \"{w}\" is not a school of {}; the schools are: {}",
                config.source.display(),
                names
                    .iter()
                    .map(|n| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        if !out.iter().any(|o| o == found) {
            out.push(found.to_string());
        }
    }
    Ok(out)
}

/// "; schools A, B" for an account restricted to schools, or nothing for a trust-wide one.
fn school_list(schools: &[String]) -> String {
    if schools.is_empty() {
        String::new()
    } else {
        format!("; schools {}", schools.join(", "))
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
    {
        anyhow::bail!(
            "{name:?} is not a usable account name: use 1 to 64 letters, digits, '.', '_', '-' or '@'"
        );
    }
    Ok(())
}

fn audit(config: &Config, actor: &str, detail: String) -> anyhow::Result<()> {
    let log = AuditLog::start(crate::store::open_audit(&config.storage)?)?;
    log.append_blocking(AuditRecord::action(RecordKind::UserChange, actor, detail))
        .context("the account was changed but the audit record could not be written")?;
    Ok(())
}

/// The new password: from the terminal twice without echo, else one line of stdin.
fn read_password(name: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt_hidden(&format!("new password for {name}: "))?;
        let again = prompt_hidden("again: ")?;
        if first != again {
            anyhow::bail!("the two passwords differ; nothing changed");
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.chars().count() < MIN_PASSWORD {
        anyhow::bail!("the password is shorter than {MIN_PASSWORD} characters; nothing changed");
    }
    Ok(password)
}

/// One line from the terminal with echo off (restored afterwards, whatever happens).
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    let mut err = std::io::stderr();
    let _ = write!(err, "{prompt}");
    let _ = err.flush();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it or fails, and we only use it on success.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is stdin, `saved` is a valid termios to write into.
    let have = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if have {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: fd is stdin and `quiet` a termios derived from the one read.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if have {
        // SAFETY: restores exactly what tcgetattr returned.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    read.context("cannot read the password from the terminal")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
