//! `schoolgate audit …`: the DSL's view of the audit trail.

use std::path::Path;
use std::process::ExitCode;

use crate::store::sqlite::{DATABASE_FILE, SqliteBackend};
use crate::store::{StoreError, verify_chain};

/// `audit verify`: exit 0 with the count and head hash, or 1 naming the first broken record.
pub fn verify(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let state_dir = &config.storage.state_dir;
    if !state_dir.join(DATABASE_FILE).exists() {
        anyhow::bail!(
            "no audit trail at {}: storage.state_dir in {} points at a directory schoolgate has not used",
            state_dir.join(DATABASE_FILE).display(),
            config_path.display()
        );
    }
    let mut backend = SqliteBackend::open_read_only(state_dir)?;
    match verify_chain(&mut backend) {
        Ok(Some(head)) => {
            println!(
                "audit trail intact: {} records, head {}",
                head.seq, head.hash
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => {
            println!("audit trail intact: 0 records");
            Ok(ExitCode::SUCCESS)
        }
        Err(StoreError::ChainBroken { seq, reason }) => {
            println!("audit trail BROKEN at record {seq}: {reason}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}
