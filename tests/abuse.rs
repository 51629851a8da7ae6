//! Connection abuse (issue 10), against the real gateway on loopback: a thousand idle
//! connections, a slowloris client, 10 MB of header, pipelined garbage and 10,000 recipients.
//! Each test checks what the abuser is told, that the gateway's memory stays bounded
//! (`/proc/PID/status`), and that an ordinary client is served meanwhile, quickly: a session
//! that blocked the runtime would show up there as a slow greeting.
//!
//! The memory figures are printed (`cargo test --test abuse -- --nocapture`) for the README.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::smtp::Client;
use common::{Gateway, Lcg, plain_message, set};

const FROM: &str = "t.baker@example-academy.sch.uk";

/// How long an ordinary client may take for a whole transaction while the gateway is under
/// attack. Unloaded it takes milliseconds; this leaves room for a busy CI machine.
const SERVED_WITHIN: Duration = Duration::from_secs(5);

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// An ordinary member of staff's message, sent on a new connection from 127.0.0.1; returns how
/// long the whole session took.
fn ordinary_message(gw: &Gateway, id: &str) -> Duration {
    let started = Instant::now();
    let mut c = Client::ready(gw.port);
    let m = plain_message(FROM, "parent@example.org", "ordinary", id, "hello");
    let t = c.send(FROM, "", &["parent@example.org"], &m).unwrap();
    assert!(
        t.accepted(),
        "an ordinary client was not served: {:?} {}",
        t.stage,
        t.reply
    );
    c.quit();
    started.elapsed()
}

fn assert_served_in_time(what: &str, took: Duration) {
    assert!(
        took < SERVED_WITHIN,
        "{what}: an ordinary client took {took:?} (limit {SERVED_WITHIN:?})"
    );
}

/// Raises this test process's soft limit on open files to at least `needed` (the gateway,
/// started afterwards, inherits it): a thousand connections need a thousand descriptors on
/// each side, past the common default of 1024.
fn raise_open_file_limit(needed: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_none_or(|soft| soft >= needed) {
        return;
    }
    let hard = limit.maximum;
    assert!(
        hard.is_none_or(|hard| hard >= needed),
        "this test needs {needed} open files, but the hard limit is {hard:?}: raise it \
         (ulimit -Hn, or LimitNOFILE for the CI runner)"
    );
    let mut raised = limit;
    raised.current = Some(needed);
    setrlimit(Resource::Nofile, raised)
        .unwrap_or_else(|e| panic!("cannot raise the open file limit to {needed}: {e}"));
}

/// Reads what is left on `stream` until the peer closes it (or `timeout` passes).
fn read_to_close(stream: &mut TcpStream, timeout: Duration) -> (Vec<u8>, bool) {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

/// The reply codes in `bytes`, one per complete reply (continuation lines skipped).
fn reply_codes(bytes: &[u8]) -> Vec<u16> {
    String::from_utf8_lossy(bytes)
        .split("\r\n")
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
        .filter_map(|l| l[..3].parse().ok())
        .collect()
}

#[test]
fn a_thousand_idle_connections_stay_in_bounded_memory_and_are_closed_after_the_idle_timeout() {
    const IDLE: usize = 1000;
    const ADDRESSES: usize = 10;
    const TIMEOUT: Duration = Duration::from_secs(15);
    raise_open_file_limit(3 * IDLE as u64);
    // Room for exactly the thousand idle connections and one ordinary client; each address
    // keeps to the default 100 connections per client.
    let gw = Gateway::start(|cfg| {
        set(cfg, "relay.max_connections", IDLE as i64 + 1);
        set(cfg, "relay.command_timeout", "15s");
    });
    // Settle first: the gateway's own first message (opening the database, the directory).
    ordinary_message(&gw, "warm-up@test");
    let before = gw.memory();
    let fds_before = gw.open_fds();

    let opened = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let source = Ipv4Addr::new(127, 0, 0, 10 + (i % ADDRESSES) as u8);
        let c = Client::connect_from(source, gw.port)
            .unwrap_or_else(|e| panic!("idle connection {i} from {source}: {e}"));
        assert_eq!(c.greeting.code, 220, "idle connection {i}: {}", c.greeting);
        idle.push(c);
    }
    let opening_took = opened.elapsed();
    assert!(
        opening_took < TIMEOUT / 2,
        "opening {IDLE} connections took {opening_took:?}: too slow for the idle timeout used here"
    );
    let held = gw.memory();
    let fds_held = gw.open_fds();

    // Past the per-client limit: 421 at once, not a hang.
    let started = Instant::now();
    let over = Client::connect_from(Ipv4Addr::new(127, 0, 0, 10), gw.port).unwrap();
    assert_eq!(over.greeting.code, 421, "{}", over.greeting);
    assert!(
        over.greeting.text().contains("from your address"),
        "{}",
        over.greeting
    );
    // "At once" means no wait for a timeout: a generous bound, far below any of them.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the 421 took {:?}",
        started.elapsed()
    );

    // An ordinary client (its own address) is served beside the thousand...
    let mut ordinary = Client::ready(gw.port);
    let busy = Instant::now();
    let m = plain_message(
        FROM,
        "parent@example.org",
        "ordinary",
        "beside@test",
        "hello",
    );
    assert!(
        ordinary
            .send(FROM, "", &["parent@example.org"], &m)
            .unwrap()
            .accepted()
    );
    assert_served_in_time("beside 1,000 idle connections", busy.elapsed());
    // ...and with it the gateway is full: the next client anywhere gets 421.
    let full = Client::connect_from(Ipv4Addr::new(127, 0, 0, 2), gw.port).unwrap();
    assert_eq!(full.greeting.code, 421, "{}", full.greeting);
    assert!(
        full.greeting.text().contains("too many connections"),
        "{}",
        full.greeting
    );
    ordinary.quit();

    // The idle ones are told and closed after the idle timeout, not before.
    let mut early = 0;
    for (i, c) in idle.iter_mut().enumerate() {
        let (got, closed) = read_to_close(&mut c.stream().try_clone().unwrap(), TIMEOUT * 2);
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("421 4.4.2") && closed,
            "idle connection {i}: {text:?} (closed: {closed}) after {:?}",
            opened.elapsed()
        );
        if i == 0 && opened.elapsed() < TIMEOUT - Duration::from_secs(1) {
            early += 1;
        }
    }
    assert_eq!(early, 0, "the idle timeout struck early");
    let all_closed = opened.elapsed();
    drop(idle);
    assert!(
        gw.wait_for(Duration::from_secs(60), || gw.open_fds() <= fds_before + 2),
        "the gateway still holds {} descriptors ({fds_before} before the idle connections)",
        gw.open_fds()
    );
    let after = gw.memory();
    assert_served_in_time(
        "after the idle connections",
        ordinary_message(&gw, "after@test"),
    );

    println!(
        "{IDLE} idle connections: gateway {before} before, {held} holding them ({} descriptors, \
         {fds_before} before), {after} after they were closed; opened in {opening_took:?}, \
         all closed {all_closed:?} after the first",
        fds_held
    );
    let per_connection = held.rss_kib.saturating_sub(before.rss_kib) as f64 / IDLE as f64;
    assert!(
        per_connection < 32.0,
        "each idle connection costs {per_connection:.1} KiB of RSS ({before} -> {held})"
    );
    assert!(
        after.rss_kib < held.rss_kib.max(before.rss_kib + 16 * 1024),
        "memory did not come back after the idle connections closed: {held} -> {after}"
    );
}

#[test]
fn a_slowloris_client_is_cut_off_by_the_command_and_data_deadlines_while_others_are_served() {
    let gw = Gateway::start(|cfg| {
        set(cfg, "relay.command_timeout", "3s");
        set(cfg, "relay.data_timeout", "5s");
    });

    // One byte every second: every read is well inside the 3 s timeout, the command is not.
    let slow = |gw: &Gateway, prefix: &[u8], trickle: &'static [u8]| -> (String, Duration) {
        let mut c = Client::ready(gw.port);
        c.write(prefix).unwrap();
        let mut stream = c.stream().try_clone().unwrap();
        let writer = stream.try_clone().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_writer = Arc::clone(&stop);
        let started = Instant::now();
        let trickler = thread::spawn(move || {
            let mut w = writer;
            for b in trickle.iter().cycle().take(60) {
                if stop_writer.load(Ordering::SeqCst) || w.write_all(&[*b]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_secs(1));
            }
        });
        // Replies to the prefix (if any) come first; the last thing read is the verdict.
        let (got, closed) = read_to_close(&mut stream, Duration::from_secs(30));
        let took = started.elapsed();
        stop.store(true, Ordering::SeqCst);
        let _ = stream.shutdown(Shutdown::Both);
        trickler.join().unwrap();
        let text = String::from_utf8_lossy(&got).into_owned();
        assert!(closed, "the slow client was not disconnected: {text:?}");
        (text, took)
    };

    // Meanwhile, ordinary clients keep being served.
    let done = Arc::new(AtomicBool::new(false));
    let port = gw.port;
    let others = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut worst = Duration::ZERO;
            let mut n = 0;
            while !done.load(Ordering::SeqCst) {
                let started = Instant::now();
                let mut c = Client::ready(port);
                let m = plain_message(FROM, "parent@example.org", "s", &format!("o{n}@t"), "x");
                assert!(
                    c.send(FROM, "", &["parent@example.org"], &m)
                        .unwrap()
                        .accepted()
                );
                c.quit();
                worst = worst.max(started.elapsed());
                n += 1;
                thread::sleep(Duration::from_millis(200));
            }
            (n, worst)
        })
    };

    let (text, took) = slow(&gw, b"", b"EHLO slowloris.example\r\n");
    assert!(
        text.starts_with("421 4.4.2"),
        "a command trickled a byte a second: {text:?}"
    );
    assert!(
        took < Duration::from_secs(3 + 3),
        "the trickled command was cut off only after {took:?} (command_timeout 3 s)"
    );

    let prefix = format!("MAIL FROM:<{FROM}>\r\nRCPT TO:<parent@example.org>\r\nDATA\r\n");
    let (text, took) = slow(&gw, prefix.as_bytes(), b"Subject: slow\r\n");
    assert_eq!(
        reply_codes(text.as_bytes()),
        vec![250, 250, 354, 421],
        "a message trickled a byte a second: {text:?}"
    );
    assert!(
        took < Duration::from_secs(5 + 3),
        "the trickled message was cut off only after {took:?} (data_timeout 5 s)"
    );

    done.store(true, Ordering::SeqCst);
    let (n, worst) = others.join().unwrap();
    assert!(n > 0);
    assert_served_in_time("beside the slowloris clients", worst);
    assert!(
        gw.outbox_messages()
            .iter()
            .all(|m| m.header("Subject").as_deref() != Some("slow")),
        "the trickled message was delivered"
    );
    println!("slowloris: {n} ordinary messages meanwhile, the slowest took {worst:?}");
}

/// Writes `header_bytes` of header to a fresh transaction (after `MAIL ... params`), then a
/// body and the end; returns the reply to the end of data.
fn send_big_header(port: u16, params: &str, header_bytes: usize, one_line: bool) -> String {
    let mut c = Client::ready(port);
    let prefix = format!("MAIL FROM:<{FROM}> {params}\r\nRCPT TO:<parent@example.org>\r\nDATA\r\n");
    c.write(prefix.as_bytes()).unwrap();
    for want in [250, 250, 354] {
        let r = c.read_reply().unwrap();
        assert_eq!(r.code, want, "{r}");
    }
    let mut stream = c.stream().try_clone().unwrap();
    let writer = thread::spawn(move || {
        let chunk: Vec<u8> = if one_line {
            b"X-Endless: "
                .iter()
                .chain([b'a'; 65_536 - 11].iter())
                .copied()
                .collect()
        } else {
            let line = b"X-Filler: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n";
            line.iter()
                .cycle()
                .take(line.len() * 800)
                .copied()
                .collect()
        };
        let mut sent = 0;
        while sent < header_bytes {
            stream.write_all(&chunk).unwrap();
            sent += chunk.len();
        }
        stream
            .write_all(b"\r\nSubject: big header\r\n\r\nbody\r\n.\r\n")
            .unwrap();
    });
    let r = c.read_reply().unwrap();
    writer.join().unwrap();
    c.quit();
    r.to_string()
}

#[test]
fn ten_megabytes_of_header_are_refused_with_552_in_bounded_memory() {
    const TEN_MB: usize = 10 << 20;
    let gw = Gateway::start(|_| {});
    ordinary_message(&gw, "warm-up@test");
    let before = gw.memory();

    // Four at once, each announcing the largest size allowed (which must not be reserved up
    // front), one of them as a single endless header line.
    let max = 50 << 20;
    let port = gw.port;
    let abusers: Vec<_> = (0..4)
        .map(|i| {
            thread::spawn(move || send_big_header(port, &format!("SIZE={max}"), TEN_MB, i == 0))
        })
        .collect();
    let mut worst = Duration::ZERO;
    let mut n = 0;
    loop {
        worst = worst.max(ordinary_message(&gw, &format!("beside-{n}@test")));
        n += 1;
        if abusers.iter().all(|a| a.is_finished()) {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let replies: Vec<String> = abusers.into_iter().map(|a| a.join().unwrap()).collect();
    assert!(
        replies[0].starts_with("552 5.3.4") && replies[0].contains("line longer"),
        "one 10 MB header line: {}",
        replies[0]
    );
    for r in &replies[1..] {
        assert!(
            r.starts_with("552 5.3.4") && r.contains("header section is larger"),
            "10 MB of header lines: {r}"
        );
    }
    let after = gw.memory();
    assert_served_in_time("beside 10 MB headers", worst);
    assert!(
        gw.outbox_messages()
            .iter()
            .all(|m| m.header("Subject").as_deref() != Some("big header")),
        "a 10 MB header was delivered"
    );
    println!(
        "4 x 10 MB of header: gateway {before} before, {after} after; {n} ordinary sessions \
         meanwhile, the slowest {worst:?}"
    );
    let grew = after.peak_kib.saturating_sub(before.peak_kib);
    assert!(
        grew < 24 * 1024,
        "the gateway's peak RSS grew by {:.1} MiB for 4 x 10 MB of header ({before} -> {after})",
        mib(grew)
    );
}

#[test]
fn pipelined_garbage_gets_the_right_5xx_codes_and_the_session_stays_sane() {
    let gw = Gateway::start(|_| {});
    let mut c = Client::connect(gw.port).unwrap();
    assert_eq!(c.greeting.code, 220);
    let long_address = "a".repeat(1500);
    let mut batch: Vec<u8> = Vec::new();
    let mut expect: Vec<(u16, &str)> = Vec::new();
    let mut push = |line: &[u8], code: u16, why: &'static str| {
        batch.extend_from_slice(line);
        expect.push((code, why));
    };
    push(b"\x00\x01\x02\x03\r\n", 500, "binary");
    push(b"NOOP\x00\xff\r\n", 500, "NOOP run into binary");
    push(
        b"NOOP \x00\xff\r\n",
        250,
        "NOOP ignores its argument, whatever it is",
    );
    push(b"\xff\xfe\xfd\xfc\r\n", 500, "not UTF-8");
    push(b"MAIL FROM:<a@example.org>\r\n", 503, "MAIL before EHLO");
    push(b"EHLO garbage.example\r\n", 250, "EHLO");
    push(b"RCPT TO:<a@example.org>\r\n", 503, "RCPT before MAIL");
    push(b"DATA\r\n", 503, "DATA before MAIL");
    let mut overlong = b"HELP ".to_vec();
    overlong.extend(std::iter::repeat_n(b'x', 5000));
    overlong.extend_from_slice(b"\r\n");
    push(
        &overlong,
        500,
        "a 5,000-byte line, even when it comes in one read",
    );
    let ident = format!("MAIL FROM:<{FROM}>\r\n");
    push(ident.as_bytes(), 250, "MAIL");
    push(ident.as_bytes(), 503, "nested MAIL");
    push(b"DATA\r\n", 503, "DATA before RCPT");
    let long_rcpt = format!("RCPT TO:<{long_address}@example.org>\r\n");
    push(long_rcpt.as_bytes(), 501, "a 1,500-byte local part");
    push(b"RCPT TO:<parent@example.org>\r\n", 250, "RCPT");
    push(
        b"RCPT TO:<parent@example.org\x00>\r\n",
        501,
        "a NUL in an address",
    );
    push(b"BOGUS\r\n", 500, "unknown command");
    push(b"DATA\r\n", 354, "DATA");
    push(
        &common::dot_stuffed(&plain_message(
            FROM,
            "parent@example.org",
            "g",
            "garbage@test",
            "x",
        )),
        250,
        "the message",
    );
    push(b"QUIT\r\n", 221, "QUIT");
    c.write(&batch).unwrap();
    let (got, closed) = read_to_close(
        &mut c.stream().try_clone().unwrap(),
        Duration::from_secs(30),
    );
    let codes = reply_codes(&got);
    let text = String::from_utf8_lossy(&got);
    for (i, (want, why)) in expect.iter().enumerate() {
        assert_eq!(
            codes.get(i),
            Some(want),
            "reply {i} ({why}); all replies:\n{text}"
        );
    }
    assert_eq!(codes.len(), expect.len(), "{text}");
    assert!(closed);
    let out = gw.outbox_messages();
    assert_eq!(out.len(), 1, "the one good message in the garbage");
    assert_eq!(out[0].rcpt_to(), vec!["parent@example.org".to_string()]);

    // A megabyte of random bytes: 5xx after 5xx, then 421 and the connection closed.
    let mut rng = Lcg::new(10);
    let junk: Vec<u8> = (0..(1 << 20)).map(|_| rng.next_u32() as u8).collect();
    let c = Client::connect(gw.port).unwrap();
    let mut stream = c.stream().try_clone().unwrap();
    let writer = thread::spawn(move || {
        let _ = stream.write_all(&junk);
    });
    let (got, closed) = read_to_close(
        &mut c.stream().try_clone().unwrap(),
        Duration::from_secs(30),
    );
    let _ = c.stream().shutdown(Shutdown::Both);
    writer.join().unwrap();
    let codes = reply_codes(&got);
    let text = String::from_utf8_lossy(&got);
    assert!(closed, "{text}");
    assert_eq!(codes.last(), Some(&421), "{text}");
    assert!(
        codes[..codes.len() - 1]
            .iter()
            .all(|&c| (500..600).contains(&c)),
        "{text}"
    );
    assert!(
        codes.len() <= 21,
        "more replies than the error limit allows: {text}"
    );
    assert_served_in_time("after garbage", ordinary_message(&gw, "after-garbage@test"));
}

#[test]
fn ten_thousand_recipients_get_452_past_the_limit_in_bounded_memory() {
    const RCPTS: usize = 10_000;
    const LIMIT: usize = 1000; // the default relay.max_recipients
    let gw = Gateway::start(common::relay_only);
    ordinary_message(&gw, "warm-up@test");
    let before = gw.memory();
    let mut c = Client::ready(gw.port);
    let mut stream = c.stream().try_clone().unwrap();
    let writer = thread::spawn(move || {
        let mut batch = format!("MAIL FROM:<{FROM}>\r\n");
        for i in 0..RCPTS {
            batch.push_str(&format!("RCPT TO:<parent{i}@example.org>\r\n"));
        }
        batch.push_str("DATA\r\n");
        stream.write_all(batch.as_bytes()).unwrap();
    });
    let started = Instant::now();
    assert_eq!(c.read_reply().unwrap().code, 250);
    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..RCPTS {
        let r = c.read_reply().unwrap();
        match r.code {
            250 if i < LIMIT => accepted += 1,
            452 if i >= LIMIT && r.text().contains("4.5.3") => refused += 1,
            _ => panic!("RCPT {i}: {r}"),
        }
    }
    writer.join().unwrap();
    assert_eq!((accepted, refused), (LIMIT, RCPTS - LIMIT));
    assert_eq!(c.read_reply().unwrap().code, 354);
    let m = plain_message(FROM, "parents@example.org", "many", "many@test", "hello");
    c.write(&common::dot_stuffed(&m)).unwrap();
    let r = c.read_reply().unwrap();
    assert_eq!(r.code, 250, "{r}");
    let took = started.elapsed();
    c.quit();
    let after = gw.memory();
    let out = gw.outbox_messages();
    let many = out
        .iter()
        .find(|m| m.header("Subject").as_deref() == Some("many"))
        .expect("the message to 1,000 recipients was delivered");
    assert_eq!(many.rcpt_to().len(), LIMIT);
    println!(
        "{RCPTS} RCPTs: {accepted} accepted, {refused} got 452, delivered in {took:?}; \
         gateway {before} before, {after} after"
    );
    let grew = after.peak_kib.saturating_sub(before.peak_kib);
    assert!(
        grew < 16 * 1024,
        "the gateway's peak RSS grew by {:.1} MiB for 10,000 RCPTs ({before} -> {after})",
        mib(grew)
    );
    assert_served_in_time(
        "after 10,000 RCPTs",
        ordinary_message(&gw, "after-rcpts@test"),
    );
}

#[test]
fn a_client_that_only_keeps_its_connection_open_with_noop_is_disconnected() {
    let gw = Gateway::start(|_| {});
    // 100 NOOPs are allowed between messages; past them each counts as an error, and the
    // 20th error ends the session.
    let c = Client::ready(gw.port);
    let mut stream = c.stream().try_clone().unwrap();
    stream.write_all("NOOP\r\n".repeat(300).as_bytes()).unwrap();
    let (got, closed) = read_to_close(&mut stream, Duration::from_secs(30));
    let codes = reply_codes(&got);
    assert!(closed);
    assert_eq!(codes.len(), 121, "{}", String::from_utf8_lossy(&got));
    assert!(codes[..120].iter().all(|&c| c == 250));
    assert_eq!(codes[120], 421);

    // A message in between starts the count again: a client that keeps sending mail is never
    // cut off for its NOOPs and RSETs.
    let mut c = Client::ready(gw.port);
    for round in 0..3 {
        let batch = "NOOP\r\nRSET\r\n".repeat(45);
        c.write(batch.as_bytes()).unwrap();
        for _ in 0..90 {
            assert_eq!(c.read_reply().unwrap().code, 250);
        }
        let m = plain_message(
            FROM,
            "parent@example.org",
            "n",
            &format!("noop{round}@test"),
            "x",
        );
        assert!(
            c.send(FROM, "", &["parent@example.org"], &m)
                .unwrap()
                .accepted()
        );
    }
    assert_eq!(c.cmd("QUIT").unwrap().code, 221);
}

/// The runtime is not blocked: sessions are greeted and answered promptly while the largest
/// message allowed is received, checked and handed on.
#[test]
fn a_fifty_megabyte_message_does_not_hold_up_other_sessions() {
    let gw = Gateway::start(common::relay_only);
    let port = gw.port;
    let big = thread::spawn(move || {
        let mut c = Client::ready(port);
        let mut m = plain_message(FROM, "parent@example.org", "big", "big@test", "x");
        let line = [b'y'; 998];
        while m.len() < (50 << 20) - 2000 {
            m.extend_from_slice(&line);
            m.extend_from_slice(b"\r\n");
        }
        let t = c.send(FROM, "", &["parent@example.org"], &m).unwrap();
        assert!(t.accepted(), "{}", t.reply);
    });
    let mut worst = Duration::ZERO;
    let mut n = 0;
    while !big.is_finished() {
        let started = Instant::now();
        Client::ready(gw.port).quit();
        worst = worst.max(started.elapsed());
        n += 1;
        thread::sleep(Duration::from_millis(10));
    }
    big.join().unwrap();
    println!("50 MiB message: {n} sessions meanwhile, the slowest answered in {worst:?}");
    // The message is read, hashed, decided and stored while the others are greeted: none of
    // that may stall the runtime's workers.
    assert!(
        worst < Duration::from_secs(2),
        "a greeting and EHLO took {worst:?} while a 50 MiB message was handed off"
    );
}
