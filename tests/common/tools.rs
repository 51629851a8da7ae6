//! The outside programs the issue names: swaks (the sending client) and Postfix (a real MTA in
//! front of schoolgate, plus its smtp-sink and smtp-source). Missing tools fail the test with a
//! message saying how to get them; they never make a test skip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// Finds `name` on PATH or in the sbin directories Debian puts Postfix's programs in; fails
/// the test if it is not installed.
pub fn require_tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in [
        "/usr/sbin",
        "/sbin",
        "/usr/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ] {
        dirs.push(PathBuf::from(extra));
    }
    for dir in dirs {
        let candidate = dir.join(name);
        if let Ok(meta) = fs::metadata(&candidate)
            && meta.is_file()
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o111 != 0 {
                return candidate;
            }
        }
    }
    let package = match name {
        "postfix" | "postconf" | "smtp-sink" | "smtp-source" => "postfix",
        other => other,
    };
    panic!("{name} not found: run scripts/test, which installs it (Debian package {package})");
}

/// What one swaks run did.
#[derive(Debug)]
pub struct SwaksRun {
    pub status: ExitStatus,
    /// stdout then stderr: the SMTP transcript and any error.
    pub transcript: String,
}

impl SwaksRun {
    pub fn ok(&self) -> bool {
        self.status.success()
    }

    /// Panics with the transcript unless swaks succeeded (250 after the final dot).
    pub fn assert_ok(&self, what: &str) {
        assert!(
            self.ok(),
            "{what}: swaks failed ({}); transcript:\n{}",
            self.status,
            self.transcript
        );
    }

    /// The server's reply lines (those swaks shows as `<-` or `<**`).
    pub fn server_lines(&self) -> Vec<String> {
        self.transcript
            .lines()
            .filter_map(|l| {
                l.strip_prefix("<** ")
                    .or_else(|| l.strip_prefix("<-  "))
                    .or_else(|| l.strip_prefix("<~  "))
                    .or_else(|| l.strip_prefix("<~* "))
            })
            .map(str::to_string)
            .collect()
    }
}

/// Runs swaks with `args` (plus `--timeout 120 --suppress-data`), waits for it, and returns its
/// exit status and transcript.
pub fn swaks<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> SwaksRun {
    let bin = require_tool("swaks");
    let out = Command::new(bin)
        .args(args)
        .args(["--timeout", "120", "--suppress-data"])
        .stdin(Stdio::null())
        .output()
        .expect("run swaks");
    let mut transcript = String::from_utf8_lossy(&out.stdout).into_owned();
    transcript.push_str(&String::from_utf8_lossy(&out.stderr));
    SwaksRun {
        status: out.status,
        transcript,
    }
}

/// Writes `message` (CRLF line endings, ending in CRLF) as a swaks `--data` file for use with
/// `--no-data-fixup`: dot-stuffed, ending in the final `.` (swaks adds the last CRLF), so
/// swaks puts exactly these bytes on the wire and the server receives exactly `message`.
pub fn swaks_data_file(dir: &Path, name: &str, message: &[u8]) -> PathBuf {
    let mut wire = super::dot_stuffed(message);
    wire.truncate(wire.len() - 2); // swaks sends the CRLF after the final dot itself
    let path = dir.join(name);
    fs::write(&path, wire).expect("write the swaks data file");
    path
}

/// A private Postfix instance: its own config directory, queue and data directories and log,
/// all under a temporary directory; smtpd on 127.0.0.1:`port`; everything relayed to
/// `[127.0.0.1]:relay_port`. Stopped (and its master killed if need be) on drop.
///
/// Postfix's master must start as root (it drops to the `postfix` user for its daemons).
pub struct Postfix {
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    pub config_dir: PathBuf,
    pub queue_dir: PathBuf,
    pub maillog: PathBuf,
}

impl Postfix {
    pub fn start(relay_port: u16) -> Postfix {
        Self::start_with(relay_port, "")
    }

    /// As [`Postfix::start`], with `extra` lines appended to main.cf (e.g. `smtpd_milters`).
    pub fn start_with(relay_port: u16, extra: &str) -> Postfix {
        Self::start_with_services(relay_port, extra, "")
    }

    /// As [`Postfix::start_with`], with `services` appended to master.cf (e.g. a content
    /// filter's transport and its re-injection smtpd).
    pub fn start_with_services(relay_port: u16, extra: &str, services: &str) -> Postfix {
        let postfix = require_tool("postfix");
        require_tool("postconf");
        let uid = Command::new("id").arg("-u").output().expect("run id -u");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "the Postfix interop test must run as root: Postfix's master starts as root"
        );
        let user = Command::new("id")
            .arg("postfix")
            .output()
            .expect("run id postfix");
        assert!(
            user.status.success(),
            "there is no postfix user: the postfix package is not installed properly; run scripts/test"
        );

        let dir = tempfile::Builder::new()
            .prefix("schoolgate-postfix-")
            .tempdir()
            .expect("temporary directory for Postfix");
        let root = dir.path().to_path_buf();
        // The daemons run as postfix and must reach their queue and data directories.
        set_mode(&root, 0o755);
        let config_dir = root.join("etc");
        let queue_dir = root.join("spool");
        let data_dir = root.join("data");
        for d in [&config_dir, &queue_dir, &data_dir] {
            fs::create_dir_all(d).expect("create a Postfix directory");
            set_mode(d, 0o755);
        }
        let chown = Command::new("chown")
            .args(["postfix:postfix"])
            .arg(&data_dir)
            .status()
            .expect("run chown");
        assert!(
            chown.success(),
            "chown postfix {} failed",
            data_dir.display()
        );
        let maillog = root.join("maillog");
        let port = free_port();

        let main_cf = format!(
            "# A private test instance; see tests/common/tools.rs.
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.example-academy.sch.uk
mydomain = example-academy.sch.uk
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relayhost = [127.0.0.1]:{relay_port}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file = {maillog}
maillog_file_prefixes = {root}
biff = no
smtputf8_enable = yes
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtp_connect_timeout = 5s
{extra}
",
            queue = queue_dir.display(),
            data = data_dir.display(),
            maillog = maillog.display(),
            root = root.display(),
        );
        // No chroot anywhere (the fifth column): the queue is not a chroot jail here.
        let master_cf = format!(
            "127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
{services}"
        );
        fs::write(config_dir.join("main.cf"), main_cf).expect("write main.cf");
        fs::write(config_dir.join("master.cf"), master_cf).expect("write master.cf");

        let pf = Postfix {
            bin: postfix.clone(),
            dir,
            port,
            config_dir,
            queue_dir,
            maillog,
        };
        // `start` runs `postfix check`, which creates the queue's subdirectories with the
        // right owners (post-install create-missing) before the master starts.
        let out = Command::new(&postfix)
            .arg("-c")
            .arg(&pf.config_dir)
            .arg("start")
            .output()
            .expect("run postfix start");
        assert!(
            out.status.success(),
            "postfix -c {} start failed ({}):\n{}{}\nmaillog:\n{}",
            pf.config_dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            pf.maillog()
        );
        pf.wait_ready();
        pf
    }

    /// Postfix's log so far.
    pub fn maillog(&self) -> String {
        fs::read_to_string(&self.maillog).unwrap_or_else(|e| format!("(no maillog: {e})"))
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut c) = super::smtp::Client::connect(self.port)
                && c.greeting.code == 220
            {
                let _ = c.cmd("QUIT");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "Postfix's smtpd did not greet on 127.0.0.1:{} within 20 s; maillog:\n{}",
            self.port,
            self.maillog()
        );
    }

    fn master_pid(&self) -> Option<String> {
        let pid = fs::read_to_string(self.queue_dir.join("pid/master.pid")).ok()?;
        let pid = pid.trim().to_string();
        (!pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit())).then_some(pid)
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- Postfix maillog ({}) -----\n{}\n----- end of Postfix maillog -----",
                self.maillog.display(),
                self.maillog()
            );
        }
        let pid = self.master_pid();
        let _ = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config_dir)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(pid) = pid {
            // Our own master, by its pid file: make sure it is gone before its directory is.
            let proc_dir = PathBuf::from(format!("/proc/{pid}"));
            let deadline = Instant::now() + Duration::from_secs(5);
            while proc_dir.exists() && Instant::now() < deadline {
                if is_zombie(&proc_dir) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if proc_dir.exists() && !is_zombie(&proc_dir) {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
    }
}

fn is_zombie(proc_dir: &Path) -> bool {
    fs::read_to_string(proc_dir.join("stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Writes a self-signed certificate for `common_name` (RSA 2048, valid for two days) and its
/// key, both PEM, with openssl; fails the test if openssl is missing or fails.
pub fn self_signed_certificate(common_name: &str, cert: &Path, key: &Path) {
    let made = Command::new(require_tool("openssl"))
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-subj")
        .arg(format!("/CN={common_name}"))
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("run openssl");
    assert!(
        made.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&made.stderr)
    );
}
