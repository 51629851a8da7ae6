//! Issue 7's acceptance in a real headless Chromium (Debian's chromium and chromium-driver):
//! the network manager and the DSL use the web page the way they will at school.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::browser::{Browser, processes_using_profile};

/// A page of our own, served in-test, on which the harness itself is proved: a form that
/// posts, a page it leads to, and a CSV download.
fn serve_harness_pages() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind the test page server");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let target = request_line.split(' ').nth(1).unwrap_or("/");
            let (head, content): (String, Vec<u8>) = match target {
                "/" => (
                    "Content-Type: text/html; charset=utf-8".into(),
                    b"<!doctype html><meta name=viewport content='width=device-width'>\
                      <title>Harness</title><form id=f method=post action=/posted>\
                      <input name=q><button type=submit>Send</button></form>\
                      <a id=csv href=/export.csv>CSV</a>"
                        .to_vec(),
                ),
                "/posted" => (
                    "Content-Type: text/html; charset=utf-8".into(),
                    format!(
                        "<!doctype html><title>Posted</title><p class=echo>{}</p>",
                        String::from_utf8_lossy(&body)
                    )
                    .into_bytes(),
                ),
                "/export.csv" => (
                    "Content-Type: text/csv; charset=utf-8\r\n\
                     Content-Disposition: attachment; filename=\"harness.csv\""
                        .into(),
                    "\u{feff}name,value\r\nélève,1\r\n".as_bytes().to_vec(),
                ),
                _ => ("Content-Type: text/plain".into(), b"not found".to_vec()),
            };
            let status = if target == "/" || target == "/posted" || target == "/export.csv" {
                "200 OK"
            } else {
                "404 Not Found"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                content.len()
            );
            let _ = stream.write_all(&content);
        }
    });
    port
}

/// The harness itself: Chromium types into a form and posts it, follows to the next page,
/// saves a download where the test can read it, takes screenshots at both widths, and leaves
/// no Chromium behind when dropped.
#[test]
fn the_browser_harness_drives_headless_chromium() {
    let port = serve_harness_pages();
    let mut browser = Browser::start();
    browser.set_base(format!("http://127.0.0.1:{port}"));
    browser.goto("/");
    assert_eq!(browser.path(), "/");
    browser.fill("input[name=q]", "Year 9 list");
    browser.click("button[type=submit]");
    assert_eq!(browser.path(), "/posted");
    assert_eq!(browser.text("p.echo"), "q=Year+9+list");

    browser.goto("/");
    browser.click("a#csv");
    let csv = std::fs::read(browser.wait_for_download(".csv")).expect("read the download");
    assert_eq!(csv, "\u{feff}name,value\r\nélève,1\r\n".as_bytes());

    let [desktop, phone] = browser.screenshots("harness");
    for shot in [&desktop, &phone] {
        let png = std::fs::read(shot).expect("read the screenshot");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            shot.display()
        );
    }
    assert!(desktop.ends_with("harness-desktop.png") && phone.ends_with("harness-phone.png"));
    // The phone screenshot is 390 CSS pixels wide (PNG width: bytes 16..20 of the IHDR).
    let png = std::fs::read(&phone).expect("read the phone screenshot");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, 390, "the phone screenshot's width");

    let profile = browser.profile_dir().to_path_buf();
    assert!(
        !processes_using_profile(&profile).is_empty(),
        "no Chromium process found for the profile {}",
        profile.display()
    );
    drop(browser);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_using_profile(&profile).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        processes_using_profile(&profile),
        Vec::<i32>::new(),
        "Chromium processes left running after the browser was dropped"
    );
}
