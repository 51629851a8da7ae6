//! A real headless Chromium, driven over W3C WebDriver through Debian's chromedriver, for the
//! tests that must prove what a person sees and clicks on the web page (issue 7).
//!
//! [`Browser::start`] runs `/usr/bin/chromedriver` on a free loopback port and opens one Chromium
//! session with a fresh profile and download directory in a temporary directory. The calls are
//! blocking (a private single-threaded tokio runtime drives `fantoccini`), so a browser test
//! reads top to bottom like the other end-to-end tests. Every failed step panics with the page's
//! address, its visible text and a screenshot, so a failure explains itself.
//!
//! Dropping a `Browser` ends the session, then kills chromedriver's process group and any
//! Chromium process still using this browser's profile: a failed test never leaves a browser
//! running on a machine five engineers share.

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::free_port;

/// Debian's chromedriver (package `chromium-driver`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian's Chromium launcher (package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The desktop window: a school office monitor.
pub const DESKTOP: (u32, u32) = (1280, 900);
/// The phone window: an iPhone 12-15's viewport in CSS pixels.
pub const PHONE: (u32, u32) = (390, 844);

/// How long chromedriver may take to listen, and a session to open.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one WebDriver step may take before the test fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// The tallest full-page screenshot taken (taller pages are cut here).
const MAX_SCREENSHOT_HEIGHT: u32 = 4000;

/// One headless Chromium session. See the module documentation.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Option<Child>,
    /// Holds the Chromium profile, the download directory and chromedriver's log.
    dir: tempfile::TempDir,
    profile: PathBuf,
    downloads: PathBuf,
    driver_log: PathBuf,
    /// Prepended to paths given to [`Browser::goto`] (e.g. `http://127.0.0.1:12345`).
    base: String,
}

/// Numbers the failure screenshots of every browser in this test process.
static FAILURES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Fails the test, naming the package to install, unless both Debian packages are installed.
fn require_chromium() {
    for (path, package) in [(CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: the browser tests need Debian's chromium and chromium-driver \
             packages (scripts/test installs them; by hand: apt-get install {package})"
        );
    }
}

/// Where screenshots go: `<target dir>/screenshots`, the target dir being `CARGO_TARGET_DIR`
/// when set, else the one this test binary was built into (`<target>/debug/deps/<binary>`).
pub fn screenshot_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => manifest.join(dir),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
            .unwrap_or_else(|| manifest.join("target")),
    };
    target.join("screenshots")
}

impl Browser {
    /// Starts chromedriver and opens a headless Chromium session at the desktop size.
    pub fn start() -> Browser {
        require_chromium();
        let dir = tempfile::Builder::new()
            .prefix("schoolgate-browser-")
            .tempdir()
            .expect("create a temporary directory for the browser");
        let profile = dir.path().join("profile");
        let downloads = dir.path().join("downloads");
        fs::create_dir_all(&profile).expect("create the Chromium profile directory");
        fs::create_dir_all(&downloads).expect("create the download directory");
        let driver_log = dir.path().join("chromedriver.log");

        let port = free_port();
        // What chromedriver prints itself (e.g. a missing library) goes beside its log file.
        let out = fs::File::create(dir.path().join("chromedriver.out"))
            .expect("create chromedriver's output file");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", driver_log.display()))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone the output handle"))
            .stderr(out)
            // Its own process group, so drop can kill chromedriver and whatever it started.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the WebDriver client");
        let mut browser = Browser {
            rt,
            client: None,
            driver: Some(driver),
            dir,
            profile,
            downloads,
            driver_log,
            base: String::new(),
        };
        browser.wait_for_driver(port);
        browser.open_session(port);
        browser
    }

    fn wait_for_driver(&mut self, port: u16) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.driver.as_mut().map(|d| d.try_wait()) {
                panic!(
                    "chromedriver exited ({status}) before listening on port {port}; its log:\n{}",
                    self.driver_log_tail()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "chromedriver did not listen on 127.0.0.1:{port} within {START_TIMEOUT:?}; its log:\n{}",
            self.driver_log_tail()
        );
    }

    fn open_session(&mut self, port: u16) {
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
            format!("--user-data-dir={}", self.profile.display()),
        ];
        let caps = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": args,
                "prefs": {
                    "download.default_directory": self.downloads.to_string_lossy(),
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "safebrowsing.enabled": false,
                },
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!("capabilities are an object")
        };
        let url = format!("http://127.0.0.1:{port}");
        let connect = async {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps)
                .connect(&url)
                .await
        };
        let client = match self
            .rt
            .block_on(async { tokio::time::timeout(START_TIMEOUT, connect).await })
        {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!(
                "chromedriver could not open a Chromium session: {e}; chromedriver's log:\n{}",
                self.driver_log_tail()
            ),
            Err(_) => panic!(
                "chromedriver did not open a Chromium session within {START_TIMEOUT:?}; its log:\n{}",
                self.driver_log_tail()
            ),
        };
        self.client = Some(client);
        self.resize(DESKTOP);
    }

    /// Sets the address paths given to [`Browser::goto`] are relative to.
    pub fn set_base(&mut self, base: impl Into<String>) {
        self.base = base.into();
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the browser session is open")
    }

    /// Runs one WebDriver step with the step timeout; fails the test on an error.
    fn step<T, E: std::fmt::Display>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, E>>,
    ) -> T {
        match self.try_step(fut) {
            Ok(v) => v,
            Err(e) => self.fail(&format!("{what}: {e}")),
        }
    }

    fn try_step<T, E: std::fmt::Display>(
        &self,
        fut: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, String> {
        match self
            .rt
            .block_on(async { tokio::time::timeout(STEP_TIMEOUT, fut).await })
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {STEP_TIMEOUT:?}")),
        }
    }

    /// Fails the test with `why`, the page's address and visible text, and a screenshot saved
    /// as `failure-N.png` beside the others (N counts failures in this test process).
    pub fn fail(&self, why: &str) -> ! {
        let n = FAILURES.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let url = self
            .try_step(self.client().current_url())
            .map(|u| u.to_string())
            .unwrap_or_else(|e| format!("(unknown: {e})"));
        let text = self
            .try_step(self.client().execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
            ))
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|e| format!("(cannot read the page: {e})"));
        let shot = match self.try_step(self.client().screenshot()) {
            Ok(png) => {
                let dir = screenshot_dir();
                let path = dir.join(format!("failure-{n}.png"));
                match fs::create_dir_all(&dir).and_then(|()| fs::write(&path, png)) {
                    Ok(()) => path.display().to_string(),
                    Err(e) => format!("(not saved: {e})"),
                }
            }
            Err(e) => format!("(none: {e})"),
        };
        let text: String = text.chars().take(3000).collect();
        panic!("browser: {why}\n  page: {url}\n  screenshot: {shot}\n  the page reads:\n{text}")
    }

    /// Opens `path` (relative to the base set with [`Browser::set_base`], or a full URL).
    pub fn goto(&self, path: &str) {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        self.step(&format!("open {url}"), self.client().goto(&url));
    }

    /// The current address's path and query (`/quarantine?q=x`).
    pub fn path(&self) -> String {
        let url = self.step("read the address", self.client().current_url());
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// The first element matching `css`; fails the test if there is none.
    pub fn find(&self, css: &str) -> El<'_> {
        let e = self.step(
            &format!("find {css:?} on the page"),
            self.client().find(Locator::Css(css)),
        );
        El {
            browser: self,
            css: css.to_string(),
            e,
        }
    }

    /// Every element matching `css` (maybe none).
    pub fn find_all(&self, css: &str) -> Vec<El<'_>> {
        self.step(
            &format!("find every {css:?}"),
            self.client().find_all(Locator::Css(css)),
        )
        .into_iter()
        .map(|e| El {
            browser: self,
            css: css.to_string(),
            e,
        })
        .collect()
    }

    /// Whether anything on the page matches `css`.
    pub fn exists(&self, css: &str) -> bool {
        !self.find_all(css).is_empty()
    }

    /// Waits up to the step timeout for `css` to appear.
    pub fn wait_for(&self, css: &str) -> El<'_> {
        let e = self.step(
            &format!("wait for {css:?}"),
            self.client()
                .wait()
                .at_most(STEP_TIMEOUT)
                .for_element(Locator::Css(css)),
        );
        El {
            browser: self,
            css: css.to_string(),
            e,
        }
    }

    /// The visible text of the first element matching `css`.
    pub fn text(&self, css: &str) -> String {
        self.find(css).text()
    }

    /// The visible text of the whole page.
    pub fn page_text(&self) -> String {
        self.text("body")
    }

    /// Clears the field matching `css` and types `value` into it.
    pub fn fill(&self, css: &str, value: &str) {
        let field = self.find(css);
        field.clear();
        field.type_text(value);
    }

    /// Sets the form field matching `css` to `value` the way a person would: picks the option
    /// of a `<select>`, otherwise clears the field and types.
    pub fn set_field(&self, css: &str, value: &str) {
        let field = self.find(css);
        let tag = self.step(&format!("read the tag of {css:?}"), field.e.tag_name());
        if tag.eq_ignore_ascii_case("select") {
            self.step(
                &format!("choose {value:?} in {css:?}"),
                field.e.select_by_value(value),
            );
        } else {
            field.clear();
            field.type_text(value);
        }
    }

    /// Submits the form matching `form_css` with its submit button, as a person clicking it
    /// would (pressing Enter in a field if the form has no button).
    pub fn submit(&self, form_css: &str) {
        let form = self.find(form_css);
        let buttons = form.find_all("button[type=submit], input[type=submit], button:not([type])");
        match buttons.first() {
            Some(button) => button.click(),
            None => {
                let field = form.find("input:not([type=hidden]), textarea, select");
                let page = self.current_page();
                field.type_text("\u{E007}"); // WebDriver's Enter key
                self.wait_for_next_page(page, &format!("submitting {form_css:?}"));
            }
        }
    }

    /// Clicks the first element matching `css` and waits for the page it leads to.
    pub fn click(&self, css: &str) {
        self.find(css).click();
    }

    /// Clicks the first element matching `css` that starts a download (the page stays).
    pub fn click_download(&self, css: &str) {
        self.find(css).click_download();
    }

    /// The current document's root element: once it is stale, another page has replaced it.
    fn current_page(&self) -> Element {
        self.step(
            "find the page's root element",
            self.client().find(Locator::Css(":root")),
        )
    }

    /// Waits until `old` (from [`Browser::current_page`]) has been replaced by a new page and
    /// that page has loaded. WebDriver's click returns as soon as the click is dispatched;
    /// without this a test may read the old page while a form is still being posted.
    fn wait_for_next_page(&self, old: Element, after: &str) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            // Any answer but the root's tag name means the old document is gone.
            let gone = !matches!(self.try_step(old.tag_name()), Ok(ref tag) if !tag.is_empty());
            if gone {
                let state =
                    self.try_step(self.client().execute("return document.readyState", vec![]));
                if matches!(state, Ok(Value::String(ref s)) if s == "complete") {
                    return;
                }
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "{after}: no new page loaded within {STEP_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `script` in the page and returns what it returns.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.step(
            &format!("run script {script:?}"),
            self.client().execute(script, args),
        )
    }

    /// Sets the browser window to `(width, height)` CSS pixels of viewport.
    pub fn resize(&self, (width, height): (u32, u32)) {
        self.step(
            &format!("resize the window to {width}x{height}"),
            self.client().set_window_size(width, height),
        );
        // The new size reaches the page a moment after WebDriver answers (seen on a loaded
        // machine: innerWidth still 1280 just after a resize to 390): wait for the width, so a
        // layout check never measures the page as it was laid out for the old size.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut inner = self.execute("return [window.innerWidth, window.innerHeight]", vec![]);
        while inner[0].as_u64().is_some_and(|w| w as u32 > width) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            inner = self.execute("return [window.innerWidth, window.innerHeight]", vec![]);
        }
        // The window may be framed (a non-headless run): grow it by the frame so the
        // viewport, which the screenshots and any layout check mean, has exactly this size.
        let (w, h) = (
            inner[0].as_u64().unwrap_or(0) as u32,
            inner[1].as_u64().unwrap_or(0) as u32,
        );
        if (w, h) != (width, height) && w > 0 && h > 0 && w <= width && h <= height {
            self.step(
                "resize the window to fit its frame",
                self.client().set_window_size(2 * width - w, 2 * height - h),
            );
        }
    }

    /// Takes a screenshot of the whole page (up to [`MAX_SCREENSHOT_HEIGHT`] pixels tall) at
    /// the desktop and then the phone width, saved as `<page>-desktop.png` and
    /// `<page>-phone.png` under [`screenshot_dir`]; leaves the window at the desktop size.
    /// Also checks the page does not scroll sideways at either width: a page that needs
    /// sideways scrolling on a phone is broken for the person holding it.
    pub fn screenshots(&self, page: &str) -> [PathBuf; 2] {
        let dir = screenshot_dir();
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let mut out = Vec::new();
        for (label, size) in [("desktop", DESKTOP), ("phone", PHONE)] {
            self.resize(size);
            let widths = self.execute(
                "return [document.documentElement.scrollWidth, window.innerWidth, \
                 document.documentElement.scrollHeight]",
                vec![],
            );
            let scroll_width = widths[0].as_u64().unwrap_or(0);
            let inner_width = widths[1].as_u64().unwrap_or(0);
            let full = widths[2].as_u64().unwrap_or(0) as u32;
            if full > size.1 {
                self.resize((size.0, full.min(MAX_SCREENSHOT_HEIGHT)));
            }
            let png = self.step(
                &format!("screenshot {page} at {label} width"),
                self.client().screenshot(),
            );
            let path = dir.join(format!("{page}-{label}.png"));
            fs::write(&path, png)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            if scroll_width > inner_width {
                self.resize(DESKTOP);
                self.fail(&format!(
                    "the {page} page scrolls sideways at {label} width: it is {scroll_width} px \
                     wide in a {inner_width} px window (see {})",
                    path.display()
                ));
            }
            out.push(path);
        }
        self.resize(DESKTOP);
        [out[0].clone(), out[1].clone()]
    }

    /// Fails the test unless every element matching `css` lies within the window's width at
    /// phone size: what a person on a phone must see without scrolling sideways. Leaves the
    /// window at the desktop size.
    pub fn assert_fits_on_a_phone(&self, css: &str) {
        self.resize(PHONE);
        let elements = self.find_all(css);
        if elements.is_empty() {
            self.fail(&format!("nothing matches {css:?}"));
        }
        for el in &elements {
            let (x, _, width, _) = el.rect();
            if x < 0.0 || x + width > f64::from(PHONE.0) + 0.5 {
                self.fail(&format!(
                    "{css:?} is not within a {} px phone screen: it spans {x:.0}..{:.0} px, so \
                     a person must scroll sideways to see it",
                    PHONE.0,
                    x + width
                ));
            }
        }
        self.resize(DESKTOP);
    }

    /// The directory Chromium saves downloads in.
    pub fn downloads_dir(&self) -> &Path {
        &self.downloads
    }

    /// Waits up to the step timeout for a finished, non-empty download whose file name ends
    /// with `suffix` and returns its path.
    pub fn wait_for_download(&self, suffix: &str) -> PathBuf {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let names: Vec<String> = fs::read_dir(&self.downloads)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            // Chromium reserves the final name with an empty file while it writes to a
            // `.crdownload` beside it, then renames that over it: done once no `.crdownload`
            // is left and the file has content.
            let in_progress = names.iter().any(|n| n.ends_with(".crdownload"));
            if let Some(name) = names.iter().find(|n| n.ends_with(suffix))
                && !in_progress
                && fs::metadata(self.downloads.join(name)).is_ok_and(|m| m.len() > 0)
            {
                return self.downloads.join(name);
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "no download ending in {suffix:?} in {} within {STEP_TIMEOUT:?}; it holds {names:?}",
                    self.downloads.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Deletes every file in the download directory.
    pub fn clear_downloads(&self) {
        if let Ok(rd) = fs::read_dir(&self.downloads) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// What chromedriver printed, then the last 20 kB of its log.
    pub fn driver_log_tail(&self) -> String {
        self.driver_log_last(20_000)
    }

    /// What chromedriver printed, then the last `max` bytes of its log (which records every
    /// command, so only its end tells about a failure).
    fn driver_log_last(&self, max: usize) -> String {
        let out = fs::read(self.dir.path().join("chromedriver.out")).unwrap_or_default();
        let log = fs::read(&self.driver_log).unwrap_or_default();
        let from = log.len().saturating_sub(max);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&log[from..])
        )
    }

    /// Chromium's profile directory (removed on drop).
    pub fn profile_dir(&self) -> &Path {
        &self.profile
    }

    /// Process ids of every Chromium process using this browser's profile.
    fn chromium_pids(&self) -> Vec<i32> {
        processes_using_profile(&self.profile)
    }
}

/// Process ids of every process whose command line has `--user-data-dir=<profile>`: the
/// Chromium (and its helpers) of one [`Browser`].
pub fn processes_using_profile(profile: &Path) -> Vec<i32> {
    let marker = format!("--user-data-dir={}", profile.display());
    let Ok(proc_dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc_dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|&b| b == 0).any(|arg| arg == marker.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Ends the session, which quits Chromium; bounded, since a wedged browser is killed
            // below anyway.
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), client.close()).await
            });
        }
        if let Some(mut driver) = self.driver.take() {
            // SAFETY: kill(2) with the process group this code created for chromedriver.
            unsafe {
                libc::kill(-(driver.id() as i32), libc::SIGKILL);
            }
            let _ = driver.wait();
        }
        // Chromium may have made its own process group; find it by its profile.
        for pid in self.chromium_pids() {
            // SAFETY: kill(2) on a process whose command line names this browser's profile.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        if std::thread::panicking() {
            let _ = writeln!(
                std::io::stderr(),
                "----- chromedriver log, its end ({}) -----\n{}\n----- end of chromedriver log -----",
                self.dir.path().display(),
                self.driver_log_last(6_000)
            );
        }
    }
}

/// One element on the page, found by `css`.
pub struct El<'a> {
    browser: &'a Browser,
    css: String,
    e: Element,
}

impl El<'_> {
    /// Its visible text.
    pub fn text(&self) -> String {
        self.browser
            .step(&format!("read the text of {:?}", self.css), self.e.text())
    }

    /// Its `name` attribute, if it has one.
    pub fn attr(&self, name: &str) -> Option<String> {
        self.browser.step(
            &format!("read attribute {name} of {:?}", self.css),
            self.e.attr(name),
        )
    }

    /// Its HTML, tags included (`outerHTML`).
    pub fn html(&self) -> String {
        self.browser.step(
            &format!("read the HTML of {:?}", self.css),
            self.e.html(false),
        )
    }

    /// Where it is and how big, in CSS pixels: `(x, y, width, height)` from the page's top left.
    pub fn rect(&self) -> (f64, f64, f64, f64) {
        self.browser.step(
            &format!("read the position of {:?}", self.css),
            self.e.rectangle(),
        )
    }

    /// Clicks it and waits for the page it leads to (a link, a form's button).
    pub fn click(&self) {
        let page = self.browser.current_page();
        self.browser
            .step(&format!("click {:?}", self.css), self.e.click());
        self.browser
            .wait_for_next_page(page, &format!("clicking {:?}", self.css));
    }

    /// Clicks it without waiting for another page: a download link, which leaves the page as
    /// it is.
    pub fn click_download(&self) {
        self.browser
            .step(&format!("click {:?}", self.css), self.e.click());
    }

    /// Clicks a checkbox or radio button: the page stays.
    pub fn tick(&self) {
        self.browser
            .step(&format!("tick {:?}", self.css), self.e.click());
    }

    /// Empties it (a text field).
    pub fn clear(&self) {
        self.browser
            .step(&format!("clear {:?}", self.css), self.e.clear());
    }

    /// Types `text` into it.
    pub fn type_text(&self, text: &str) {
        self.browser
            .step(&format!("type into {:?}", self.css), self.e.send_keys(text));
    }

    /// The elements inside it matching `css`.
    pub fn find_all(&self, css: &str) -> Vec<El<'_>> {
        self.browser
            .step(
                &format!("find every {css:?} in {:?}", self.css),
                self.e.find_all(Locator::Css(css)),
            )
            .into_iter()
            .map(|e| El {
                browser: self.browser,
                css: format!("{} {css}", self.css),
                e,
            })
            .collect()
    }

    /// The first element inside it matching `css`.
    pub fn find(&self, css: &str) -> El<'_> {
        let e = self.browser.step(
            &format!("find {css:?} in {:?}", self.css),
            self.e.find(Locator::Css(css)),
        );
        El {
            browser: self.browser,
            css: format!("{} {css}", self.css),
            e,
        }
    }
}
