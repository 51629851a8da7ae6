//! `schoolgate migrate --from sqlite:PATH`: copies a single-school store into the PostgreSQL
//! database `[storage] database` names (see [`crate::store::postgres::migrate`]).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::store::postgres::audit::{AUDIT_LOCK, PgAudit};
use crate::store::postgres::migrate::{self, Copied};
use crate::store::postgres::{Pg, PgTx};
use crate::store::{StoreError, Verified, verify};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The store to copy: sqlite:PATH, PATH being the old storage.state_dir (its schoolgate.db
    /// is read) or the database file itself. It is only read.
    #[arg(long, value_name = "sqlite:PATH")]
    pub from: String,
}

pub fn run(config_path: &Path, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let Some(url) = &config.storage.database else {
        anyhow::bail!(
            "{}: [storage] database is not set; set it to the PostgreSQL database to copy into, e.g. database = \"postgres://schoolgate@db.trust.example/schoolgate\"",
            config.source.display()
        );
    };
    let file = migrate::source_file(&args.from).map_err(anyhow::Error::msg)?;
    let mut source = crate::store::sqlite::SqliteBackend::open_file_read_only(&file)?;
    let before = checked(
        verify(&mut source, &[]),
        &format!("the source ({})", file.display()),
        "nothing was copied (run schoolgate audit verify on it, and keep it as evidence)",
    )?;
    println!(
        "source {}: audit trail intact, {} records{}",
        file.display(),
        before.records,
        head_text(&before)
    );

    let pg = Pg::connect(url)?;
    let mut tx = PgTx::begin(&pg, &[AUDIT_LOCK])?;
    let full = migrate::target_rows(&mut tx)?;
    if !full.is_empty() {
        let said: Vec<String> = full.iter().map(|(t, n)| format!("{t}: {n} rows")).collect();
        anyhow::bail!(
            "the PostgreSQL database {} is not empty ({}); migrate copies only into an empty database: give storage.database a new, empty one",
            pg.database(),
            said.join(", ")
        );
    }
    crate::store::Backend::begin_read(&mut source)?;
    let mut copied: Vec<Copied> = Vec::new();
    copied.extend(migrate::copy_audit(&mut source, &mut tx)?);
    copied.extend(crate::store::postgres::shared::copy_from_sqlite(
        &file, &mut tx,
    )?);
    crate::store::Backend::end_read(&mut source)?;
    tx.commit()
        .context("the copy could not be committed; the target is unchanged")?;

    let after = checked(
        verify(&mut PgAudit::new(pg.clone()), &[]),
        &format!("the copy in {}", pg.database()),
        "empty the database and run migrate again",
    )?;
    if after.head != before.head || after.records != before.records {
        anyhow::bail!(
            "the copy in {} does not match the source: {} records{} against {} records{}",
            pg.database(),
            after.records,
            head_text(&after),
            before.records,
            head_text(&before)
        );
    }
    for c in &copied {
        println!("copied {} {}", c.rows, c.what);
    }
    println!(
        "target {}: audit trail intact, {} records{}",
        pg.database(),
        after.records,
        head_text(&after)
    );
    Ok(ExitCode::SUCCESS)
}

fn head_text(v: &Verified) -> String {
    match &v.head {
        Some(h) if v.first_seq > 1 => format!(" ({} to {}), head {}", v.first_seq, h.seq, h.hash),
        Some(h) => format!(", head {}:{}", h.seq, h.hash),
        None => String::new(),
    }
}

fn checked(
    result: Result<Verified, StoreError>,
    what: &str,
    then: &str,
) -> anyhow::Result<Verified> {
    match result {
        Ok(v) => Ok(v),
        Err(StoreError::ChainBroken { seq, reason }) => {
            anyhow::bail!("{what} does not verify: BROKEN at record {seq}: {reason}; {then}")
        }
        Err(e) => Err(e.into()),
    }
}
