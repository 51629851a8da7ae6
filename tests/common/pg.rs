//! A private PostgreSQL cluster for a test: `initdb` into a temporary directory, `pg_ctl start`
//! on a free loopback port (its socket in that directory too), a database `schoolgate`
//! created, and a URL for `[storage] database`. Stopped (and its files removed) on drop;
//! [`PgCluster::stop`], [`PgCluster::start`] and [`PgCluster::restart`] are for fault tests.
//!
//! Debian's `postgresql` package puts the programs in `/usr/lib/postgresql/VERSION/bin`; others
//! are looked for on PATH and in /usr/local/bin. Missing, the test FAILS saying to install
//! `postgresql` (scripts/test does). PostgreSQL refuses to run as root, so when the tests run as
//! root (CI does) the cluster's files belong to, and its programs run as, the `postgres` user
//! the package creates (or `nobody` when there is none).
//!
//! Speed over durability here: `fsync = off` (a test cluster does not survive a power cut; the
//! gateway's own commit path is the same either way).

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::free_port;

/// The database the harness creates in every cluster.
pub const DATABASE: &str = "schoolgate";

/// A running private cluster.
pub struct PgCluster {
    /// Owns the data directory, socket and log; removed on drop after the server stops.
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// `Some((uid, gid))` when the programs must run as another user (the tests run as root).
    run_as: Option<(u32, u32)>,
    running: bool,
}

/// The directory holding initdb, pg_ctl and psql; panics saying to install PostgreSQL.
pub fn pg_bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            let bin = e.path().join("bin");
            if bin.join("initdb").is_file()
                && let Some(v) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
            {
                found.push((v, bin));
            }
        }
    }
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return bin;
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/local/bin".into());
    dirs.push("/usr/local/pgsql/bin".into());
    for d in dirs {
        if d.join("initdb").is_file() && d.join("pg_ctl").is_file() {
            return d;
        }
    }
    panic!(
        "PostgreSQL's initdb and pg_ctl not found (looked in /usr/lib/postgresql/*/bin, PATH, /usr/local/bin): install the Debian package postgresql (scripts/test does)"
    );
}

/// The user a cluster runs as when this process is root: `postgres`, else `nobody`.
fn unprivileged_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    for name in ["postgres", "nobody"] {
        let Ok(c) = CString::new(name) else { continue };
        // SAFETY: a valid NUL-terminated name; the result is read at once, before any other
        // getpw* call in this thread.
        let pw = unsafe { libc::getpwnam(c.as_ptr()) };
        if !pw.is_null() {
            // SAFETY: non-null, as returned by getpwnam.
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Some((uid, gid));
        }
    }
    panic!(
        "running as root, but there is neither a postgres nor a nobody user to run PostgreSQL as"
    );
}

impl PgCluster {
    /// initdb, start, create the database. Panics with the tool's own output on failure.
    pub fn start_new() -> PgCluster {
        let bin = pg_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("schoolgate-pg")
            .tempdir()
            .expect("cannot create a temporary directory for the PostgreSQL cluster");
        let run_as = unprivileged_user();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("cannot give the cluster's directory to the postgres user");
        }
        let mut cluster = PgCluster {
            dir,
            bin,
            port: free_port(),
            run_as,
            running: false,
        };
        let data = cluster.data_dir();
        cluster.run_ok(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        cluster.start();
        cluster.run_ok(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &cluster.port.to_string(),
                "-U",
                "postgres",
                DATABASE,
            ],
        );
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The loopback port the server listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL for `[storage] database`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// A URL for another database of this cluster (created with [`PgCluster::create_database`]).
    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates another, empty database.
    pub fn create_database(&self, name: &str) {
        self.run_ok(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                name,
            ],
        );
    }

    /// Starts the server (again) on the same port; waits until it accepts connections.
    pub fn start(&mut self) {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        self.run_ok(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        self.running = true;
    }

    /// Stops the server (`-m fast`: connections are cut, as in a restart).
    pub fn stop(&mut self) {
        let data = self.data_dir();
        self.run_ok(
            "pg_ctl",
            &["-D", &data.to_string_lossy(), "-m", "fast", "-w", "stop"],
        );
        self.running = false;
    }

    /// Stops and starts it: every open connection is cut.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// Runs `sql` with psql in the harness database; returns its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(DATABASE, sql)
    }

    /// Runs `sql` with psql in `database`.
    pub fn psql_in(&self, database: &str, sql: &str) -> String {
        let out = self.run_ok(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        c.current_dir(self.dir.path())
            .env("PGHOST", "127.0.0.1")
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            c.uid(uid).gid(gid);
        }
        c
    }

    fn run_ok(&self, program: &str, args: &[&str]) -> Output {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        if !out.status.success() {
            panic!(
                "{program} {args:?} failed ({}):\n{}\n{}\nserver log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
        out
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let data = self.data_dir();
            let _ = self
                .command("pg_ctl")
                .args([
                    "-D",
                    &data.to_string_lossy(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The directory of a cluster, for tests that keep files beside it.
pub fn cluster_dir(c: &PgCluster) -> &Path {
    c.dir.path()
}
