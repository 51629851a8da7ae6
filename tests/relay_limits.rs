//! The limits a client is held to, each seen from the client's side: the reply it gets, that
//! nothing was delivered, and that the gateway goes on serving.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::smtp::Client;
use common::{Gateway, plain_message, set};

const FROM: &str = "t.baker@example-academy.sch.uk";

fn message(id: &str) -> Vec<u8> {
    plain_message(FROM, "parent@example.org", "limits", id, "hello")
}

#[test]
fn too_many_recipients_get_452_and_the_rest_are_delivered() {
    let gw = Gateway::start(|cfg| set(cfg, "relay.max_recipients", 3));
    let mut c = Client::ready(gw.port);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{FROM}>")).unwrap().code, 250);
    for i in 0..3 {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<p{i}@example.org>")).unwrap().code,
            250
        );
    }
    let r = c.cmd("RCPT TO:<p3@example.org>").unwrap();
    assert_eq!(r.code, 452, "{r}");
    assert!(r.text().contains("4.5.3"), "{r}");
    assert_eq!(c.cmd("DATA").unwrap().code, 354);
    c.write(&common::dot_stuffed(&message("rcpts@test")))
        .unwrap();
    assert_eq!(c.read_reply().unwrap().code, 250);
    let out = gw.outbox_messages();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].rcpt_to().len(), 3, "only the accepted recipients");
}

#[test]
fn a_line_over_the_limit_is_refused_with_552_and_nothing_is_delivered() {
    let gw = Gateway::start(|cfg| set(cfg, "relay.max_line_length", "2KiB"));
    let mut c = Client::ready(gw.port);
    let mut m = message("long@test");
    m.extend(std::iter::repeat_n(b'x', 5000));
    m.extend_from_slice(b"\r\n");
    let t = c.send(FROM, "", &["parent@example.org"], &m).unwrap();
    assert_eq!(t.reply.code, 552, "{}", t.reply);
    assert!(
        t.reply.text().contains("line longer than 2048"),
        "{}",
        t.reply
    );
    // The session goes on: the next message is fine.
    assert!(
        c.send(FROM, "", &["parent@example.org"], &message("ok@test"))
            .unwrap()
            .accepted()
    );
    assert_eq!(gw.outbox_messages().len(), 1);
    let rejected: Vec<_> = gw
        .message_records()
        .into_iter()
        .filter(|r| r.outcome.as_deref() == Some("rejected"))
        .collect();
    assert_eq!(rejected.len(), 1, "the refusal is audited");
}

#[test]
fn an_endless_header_section_is_refused() {
    let gw = Gateway::start(|cfg| set(cfg, "relay.max_header_size", "8KiB"));
    let mut c = Client::ready(gw.port);
    let mut m = Vec::new();
    for i in 0..400 {
        m.extend_from_slice(
            format!("X-Filler-{i}: 0123456789012345678901234567890123456789\r\n").as_bytes(),
        );
    }
    m.extend_from_slice(&message("hdr@test"));
    let t = c.send(FROM, "", &["parent@example.org"], &m).unwrap();
    assert_eq!(t.reply.code, 552, "{}", t.reply);
    assert!(t.reply.text().contains("header"), "{}", t.reply);
    assert!(gw.outbox_messages().is_empty());
}

#[test]
fn an_idle_client_is_timed_out_with_421() {
    let gw = Gateway::start(|cfg| set(cfg, "relay.command_timeout", "1s"));
    let mut c = Client::ready(gw.port);
    let started = Instant::now();
    let r = c.read_reply().unwrap();
    assert_eq!(r.code, 421, "{r}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // And others are still served.
    let mut c2 = Client::ready(gw.port);
    assert!(
        c2.send(
            FROM,
            "",
            &["parent@example.org"],
            &message("after-timeout@test")
        )
        .unwrap()
        .accepted()
    );
}

#[test]
fn a_client_over_its_connection_limit_gets_421_and_a_freed_place_is_reused() {
    let gw = Gateway::start(|cfg| set(cfg, "relay.max_connections_per_client", 2));
    let a = Client::ready(gw.port);
    let _b = Client::ready(gw.port);
    let c = Client::connect(gw.port).unwrap();
    assert_eq!(c.greeting.code, 421, "{}", c.greeting);
    a.drop_connection();
    let ok = gw.wait_for(Duration::from_secs(60), || {
        Client::connect(gw.port)
            .map(|c| c.greeting.code == 220)
            .unwrap_or(false)
    });
    assert!(
        ok,
        "a freed place is not given back:\n{}",
        gw.log_tail(3000)
    );
}

#[test]
fn pipelined_transactions_are_answered_in_order() {
    let gw = Gateway::start(|_| {});
    let mut c = Client::ready(gw.port);
    assert!(c.has_extension("PIPELINING"));
    let m1 = common::dot_stuffed(&message("p1@test"));
    let m2 = common::dot_stuffed(&message("p2@test"));
    let mut batch = format!(
        "MAIL FROM:<{FROM}>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
    )
    .into_bytes();
    c.write(&batch).unwrap();
    let codes: Vec<u16> = (0..4).map(|_| c.read_reply().unwrap().code).collect();
    assert_eq!(codes, vec![250, 250, 250, 354]);
    // The message, then the next transaction, in one write.
    batch = m1.clone();
    batch.extend_from_slice(
        format!("MAIL FROM:<{FROM}>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n").as_bytes(),
    );
    c.write(&batch).unwrap();
    let codes: Vec<u16> = (0..4).map(|_| c.read_reply().unwrap().code).collect();
    assert_eq!(codes, vec![250, 250, 250, 354]);
    c.write(&m2).unwrap();
    assert_eq!(c.read_reply().unwrap().code, 250);
    assert_eq!(c.cmd("QUIT").unwrap().code, 221);
    assert_eq!(gw.outbox_messages().len(), 2);
}

#[test]
fn bare_lf_lines_are_answered_and_nothing_is_smuggled() {
    let gw = Gateway::start(|cfg| {
        set(cfg, "disclaimer.text", "");
        set(cfg, "disclaimer.html", "");
    });
    let mut c = Client::ready(gw.port);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{FROM}>")).unwrap().code, 250);
    assert_eq!(c.cmd("RCPT TO:<parent@example.org>").unwrap().code, 250);
    assert_eq!(c.cmd("DATA").unwrap().code, 354);
    // "\n.\n" is not the end of the message; what follows it is not a second transaction.
    // (A NUL byte is refused outright: tests/relay_access.rs.)
    c.write(
        b"Subject: smuggle\r\n\r\nline one\n.\nMAIL FROM:<evil@example.org>\r\nlast line\r\n.\r\n",
    )
    .unwrap();
    let r = c.read_reply().unwrap();
    assert_eq!(r.code, 250, "{r}");
    let out = gw.outbox_messages();
    assert_eq!(out.len(), 1, "one message, not two");
    let body = common::strip_received(&out[0].bytes);
    assert_eq!(
        body,
        b"Subject: smuggle\r\n\r\nline one\r\n\r\nMAIL FROM:<evil@example.org>\r\nlast line\r\n"
            .to_vec()
    );
}

#[test]
fn a_client_that_sends_a_flood_without_line_ends_is_cut_off_cleanly() {
    let gw = Gateway::start(|_| {});
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 512];
    let _ = s.read(&mut greeting).unwrap();
    use std::io::Write;
    let junk = vec![b'A'; 1 << 20];
    let _ = s.write_all(&junk);
    let _ = s.write_all(b"\r\n");
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    assert!(
        String::from_utf8_lossy(&reply).starts_with("500 5.5.2"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    let mut c = Client::ready(gw.port);
    assert!(
        c.send(
            FROM,
            "",
            &["parent@example.org"],
            &message("after-flood@test")
        )
        .unwrap()
        .accepted()
    );
}

#[test]
fn lf_dot_crlf_does_not_end_the_message_so_nothing_is_smuggled() {
    let gw = Gateway::start(|cfg| {
        set(cfg, "disclaimer.text", "");
        set(cfg, "disclaimer.html", "");
    });
    let mut c = Client::ready(gw.port);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{FROM}>")).unwrap().code, 250);
    assert_eq!(c.cmd("RCPT TO:<parent@example.org>").unwrap().code, 250);
    assert_eq!(c.cmd("DATA").unwrap().code, 354);
    c.write(b"Subject: smuggle\r\n\r\nline1\nfoo\n.\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n.\r\n").unwrap();
    let r = c.read_reply().unwrap();
    assert_eq!(r.code, 250, "{r}");
    assert_eq!(
        c.cmd("QUIT").unwrap().code,
        221,
        "no smuggled replies are queued"
    );
    let out = gw.outbox_messages();
    assert_eq!(out.len(), 1, "one message, not two");
    assert!(
        String::from_utf8_lossy(&out[0].bytes)
            .contains("foo\r\n\r\nMAIL FROM:<evil@example.org>\r\n")
    );
}

#[test]
fn a_client_trickling_data_past_data_timeout_gets_421_and_nothing_is_delivered() {
    let gw = Gateway::start(|cfg| set(cfg, "relay.data_timeout", "2s"));
    let mut c = Client::ready(gw.port);
    assert_eq!(c.cmd(&format!("MAIL FROM:<{FROM}>")).unwrap().code, 250);
    assert_eq!(c.cmd("RCPT TO:<parent@example.org>").unwrap().code, 250);
    assert_eq!(c.cmd("DATA").unwrap().code, 354);
    c.write(b"Subject: slow\r\n\r\n").unwrap();
    // A line every 300 ms: each read is quick, but the whole transfer overruns. Up to a minute
    // for the 2 s limit to strike, however busy the machine.
    let mut reply = None;
    for _ in 0..200 {
        if c.write(b"still typing\r\n").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if gw.log().contains("timeout during DATA") {
            reply = c.read_reply().ok();
            break;
        }
    }
    let r = reply.expect("the gateway gave up on the slow client");
    assert_eq!(r.code, 421, "{r}");
    assert!(gw.outbox_messages().is_empty());
    let aborted: Vec<_> = gw
        .message_records()
        .into_iter()
        .filter(|r| r.outcome.as_deref() == Some("aborted"))
        .collect();
    assert_eq!(aborted.len(), 1, "the abandoned transfer is audited");
}
