//! Files and folders that hold pupils' mail and the audit trail: readable by schoolgate's user
//! only (files 0600, folders 0700), whatever the umask of whoever runs it. Outside systemd (a
//! network manager running `schoolgate quarantine export` from a shell with umask 022) they would
//! otherwise be world-readable.
//!
//! The modes are given when the file or folder is created, so nothing is ever readable by others,
//! even for a moment. SQLite gives its `-wal` and `-shm` files the database file's mode, so
//! [`ensure_file`] before SQLite opens the database covers all three.
//!
//! Existing files and folders keep their modes: a network manager may have chosen them.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// The mode of the files schoolgate creates.
pub const FILE_MODE: u32 = 0o600;
/// The mode of the folders schoolgate creates.
pub const DIR_MODE: u32 = 0o700;

/// `fs::create_dir_all`, with every folder it creates 0700.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Options that create a 0600 file.
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Creates `path` as an empty 0600 file if nothing is there (an empty file is an empty SQLite
/// database); leaves an existing file as it is.
pub fn ensure_file(path: &Path) -> io::Result<()> {
    match options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `path` as a new 0600 file: to a temporary name beside it, synced, then
/// renamed over `path`, so that `path` is whole or untouched. The folder must exist.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let tmp = path.with_file_name(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut f: File = options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    // The process umask is the test binary's (022 or 002 in a shell); the modes asked for are
    // narrower than either, so what is checked is that nothing beyond them is granted.
    #[test]
    fn folders_files_and_writes_are_private() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        for d in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&root.path().join(d)), 0o700, "{d}");
        }
        create_dir_all(&deep).unwrap();

        let db = deep.join("x.db");
        ensure_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        fs::write(&db, b"kept").unwrap();
        ensure_file(&db).unwrap();
        assert_eq!(
            fs::read(&db).unwrap(),
            b"kept",
            "an existing file is left alone"
        );

        let out = deep.join("out.eml");
        write_file(&out, b"message").unwrap();
        assert_eq!(mode(&out), 0o600);
        assert_eq!(fs::read(&out).unwrap(), b"message");
        assert_eq!(
            fs::read_dir(&deep).unwrap().count(),
            2,
            "no temporary file left"
        );
        assert!(write_file(&root.path().join("missing/out.eml"), b"x").is_err());
    }
}
