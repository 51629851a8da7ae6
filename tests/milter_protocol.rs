//! The milter spoken to directly, as a mail server would, for what a real Postfix cannot be made
//! to do on demand: abandon a message whose content the milter already has, or vanish in the
//! middle of one. Also the whole conversation for one message, reply by reply.
//!
//! The wire format (libmilter, protocol 6): each packet is a 4-byte big-endian length, a
//! command byte, and its data; strings end in NUL.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const STAFF: &str = "t.baker@example-academy.sch.uk";
const PARENT: &str = "parent@example.org";

struct Mta {
    stream: TcpStream,
}

impl Mta {
    fn connect(port: u16) -> Mta {
        Self::connect_with(port, 0x1f_ffff)
    }

    /// Offers the protocol options `opts` (e.g. without leading space, as an old Sendmail).
    fn connect_with(port: u16, opts: u32) -> Mta {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the milter");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let mut mta = Mta { stream };
        // Version 6, every action, every protocol option the milter may want.
        let mut neg = Vec::new();
        neg.extend_from_slice(&6u32.to_be_bytes());
        neg.extend_from_slice(&0x1ffu32.to_be_bytes());
        neg.extend_from_slice(&opts.to_be_bytes());
        mta.send(b'O', &neg);
        let (cmd, _) = mta.read();
        assert_eq!(cmd, b'O', "negotiation reply");
        let mut conn = b"client.example\0".to_vec();
        conn.push(b'4');
        conn.extend_from_slice(&25000u16.to_be_bytes());
        conn.extend_from_slice(b"127.0.0.1\0");
        mta.send(b'C', &conn);
        assert_eq!(mta.read().0, b'c');
        mta.send(b'H', b"client.example\0");
        assert_eq!(mta.read().0, b'c');
        mta
    }

    fn send(&mut self, cmd: u8, data: &[u8]) {
        let len = u32::try_from(data.len() + 1).expect("a small packet");
        let mut p = len.to_be_bytes().to_vec();
        p.push(cmd);
        p.extend_from_slice(data);
        self.stream.write_all(&p).expect("write to the milter");
    }

    fn read(&mut self) -> (u8, Vec<u8>) {
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .expect("a reply from the milter");
        let len = u32::from_be_bytes(len) as usize;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).expect("the reply's body");
        (body[0], body[1..].to_vec())
    }

    /// MAIL (with Postfix's queue id as the `i` macro), RCPT, the header fields, end of header.
    fn begin(&mut self, queue_id: &str, fields: &[(&str, &str)]) {
        self.send(b'D', format!("Mi\0{queue_id}\0").as_bytes());
        self.send(b'M', format!("<{STAFF}>\0").as_bytes());
        assert_eq!(self.read().0, b'c');
        self.send(b'R', format!("<{PARENT}>\0").as_bytes());
        assert_eq!(self.read().0, b'c');
        for (name, value) in fields {
            self.send(b'L', format!("{name}\0{value}\0").as_bytes());
            assert_eq!(self.read().0, b'c');
        }
        self.send(b'N', b"");
        assert_eq!(self.read().0, b'c');
    }
}

fn fields(mid: &str) -> Vec<(&'static str, String)> {
    vec![
        ("From", format!(" Tom Baker <{STAFF}>")),
        ("To", format!(" {PARENT}")),
        ("Subject", " Protocol".into()),
        ("Message-ID", format!(" <{mid}>")),
    ]
}

fn start(tweak: impl FnOnce(&mut toml::Table)) -> (Gateway, u16) {
    let port = free_port();
    let gw = Gateway::start(|cfg| {
        set(cfg, "milter.listen", format!("127.0.0.1:{port}"));
        tweak(cfg);
    });
    (gw, port)
}

fn record(gw: &Gateway, mid: &str) -> Option<AuditRow> {
    gw.message_records()
        .into_iter()
        .find(|r| r.field("message_id").as_deref() == Some(mid))
}

#[test]
fn a_message_abandoned_after_its_content_began_is_recorded_as_aborted() {
    let (gw, port) = start(|_| {});
    let mut mta = Mta::connect(port);
    let f = fields("ab1@test");
    let f: Vec<(&str, &str)> = f.iter().map(|(n, v)| (*n, v.as_str())).collect();
    mta.begin("QABORT1", &f);
    mta.send(b'B', b"The first part of the body\r\n");
    assert_eq!(mta.read().0, b'c');
    mta.send(b'A', b"");
    // The connection goes on: the next message on it is decided as usual.
    let g = fields("ab2@test");
    let g: Vec<(&str, &str)> = g.iter().map(|(n, v)| (*n, v.as_str())).collect();
    mta.begin("QNEXT2", &g);
    mta.send(b'B', b"A whole message.\r\n");
    assert_eq!(mta.read().0, b'c');
    mta.send(b'E', b"");
    let mut replies = Vec::new();
    loop {
        let (cmd, data) = mta.read();
        replies.push(cmd);
        if matches!(cmd, b'a' | b'c' | b'r' | b't' | b'd' | b'y') {
            assert_eq!(cmd, b'a', "accepted: {:?}", String::from_utf8_lossy(&data));
            break;
        }
    }
    assert!(
        replies.contains(&b'b'),
        "the body was replaced: {replies:?}"
    );

    assert!(gw.wait_for(Duration::from_secs(60), || {
        record(&gw, "ab1@test").is_some()
    }));
    let r = record(&gw, "ab1@test").expect("a record of the abandoned message");
    assert_eq!(
        r.field("outcome").as_deref(),
        Some("aborted"),
        "{}",
        r.record_json
    );
    assert_eq!(r.field("path").as_deref(), Some("milter"));
    assert_eq!(r.field("mta_queue_id").as_deref(), Some("QABORT1"));
    assert_eq!(r.field("helo").as_deref(), Some("client.example"));
    let r = record(&gw, "ab2@test").expect("a record of the next message");
    assert_eq!(r.field("outcome").as_deref(), Some("accepted"));
    assert_eq!(r.field("mta_queue_id").as_deref(), Some("QNEXT2"));
    assert_eq!(r.field("disclaimer").as_deref(), Some("appended"));
}

#[test]
fn a_mail_server_that_vanishes_mid_message_leaves_an_aborted_record() {
    let (gw, port) = start(|_| {});
    let mut mta = Mta::connect(port);
    let f = fields("gone@test");
    let f: Vec<(&str, &str)> = f.iter().map(|(n, v)| (*n, v.as_str())).collect();
    mta.begin("QGONE", &f);
    mta.send(b'B', b"Half of it\r\n");
    assert_eq!(mta.read().0, b'c');
    drop(mta);
    assert!(
        gw.wait_for(Duration::from_secs(60), || record(&gw, "gone@test")
            .is_some()),
        "no record:\n{}",
        gw.log_tail(3000)
    );
    let r = record(&gw, "gone@test").expect("a record");
    assert_eq!(
        r.field("outcome").as_deref(),
        Some("aborted"),
        "{}",
        r.record_json
    );
}

#[test]
fn on_error_accept_lets_an_oversized_message_through_and_says_so() {
    let (gw, port) = start(|cfg| {
        set(cfg, "milter.max_message_size", "1KiB");
        set(cfg, "milter.on_error", "accept");
    });
    let mut mta = Mta::connect(port);
    let f = fields("big@test");
    let f: Vec<(&str, &str)> = f.iter().map(|(n, v)| (*n, v.as_str())).collect();
    mta.begin("QBIG", &f);
    mta.send(b'B', "x".repeat(2000).as_bytes());
    assert_eq!(mta.read().0, b'a', "accepted at once, unfiltered");
    let r = record(&gw, "big@test").expect("a record");
    assert_eq!(r.field("outcome").as_deref(), Some("accepted"));
    assert_eq!(r.field("verdict").as_deref(), Some("none"));
    assert!(
        r.field("detail").is_some_and(|d| d.contains("unfiltered")),
        "{}",
        r.record_json
    );
}

/// Without the leading-space option the mail server drops the space after the colon and adds
/// one back: the message is put back together with it, and edits are sent without it.
#[test]
fn without_the_leading_space_option_one_space_is_the_mail_servers() {
    let (gw, port) = start(|cfg| {
        set(cfg, "disclaimer.text", "Views \u{2014} not the school's.");
        set(cfg, "disclaimer.html", "");
    });
    let mut mta = Mta::connect_with(port, 0x1f_ffff & !0x10_0000);
    let fields = [
        ("From", "Tom Baker <t.baker@example-academy.sch.uk>"),
        ("To", "parent@example.org"),
        ("Message-ID", "<ls@test>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=us-ascii"),
    ];
    mta.begin("QLS", &fields);
    mta.send(b'B', b"Hello.\r\n");
    assert_eq!(mta.read().0, b'c');
    mta.send(b'E', b"");
    let mut changed = Vec::new();
    loop {
        let (cmd, data) = mta.read();
        match cmd {
            b'm' | b'h' | b'i' => changed.push((cmd, String::from_utf8_lossy(&data).into_owned())),
            b'b' => {}
            _ => {
                assert_eq!(cmd, b'a');
                break;
            }
        }
    }
    assert!(
        changed
            .iter()
            .any(|(c, d)| *c == b'm' && d.contains("Content-Type\0text/plain; charset=utf-8")),
        "{changed:?}"
    );
    let sent = "From: Tom Baker <t.baker@example-academy.sch.uk>\r\nTo: parent@example.org\r\n\
                Message-ID: <ls@test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\
                \r\nHello.\r\n";
    let r = record(&gw, "ls@test").expect("a record");
    assert_eq!(
        r.field("sha256_received"),
        Some(sha256_hex(sent.as_bytes()))
    );
}

/// SIGTERM stops the milter too: a message the mail server is still sending is recorded as
/// aborted (the mail server, seeing the connection close, applies milter_default_action and
/// keeps it), and the gateway exits 0 with the stop recorded last.
#[test]
fn sigterm_stops_the_milter_cleanly() {
    let (mut gw, port) = start(|_| {});
    let mut mta = Mta::connect(port);
    let f = fields("term@test");
    let f: Vec<(&str, &str)> = f.iter().map(|(n, v)| (*n, v.as_str())).collect();
    mta.begin("QTERM", &f);
    mta.send(b'B', b"Half of it\r\n");
    assert_eq!(mta.read().0, b'c');
    let status = std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut status = gw.exited();
    while status.is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        status = gw.exited();
    }
    let exited = status.is_some_and(|s| s.success());
    assert!(exited, "the gateway did not exit 0:\n{}", gw.log_tail(4000));
    let r = record(&gw, "term@test").expect("a record of the message cut off");
    assert_eq!(r.field("outcome").as_deref(), Some("aborted"));
    let records = gw.audit_records();
    let last = records.last().expect("records");
    assert_eq!(last.kind, "stop", "{:?}", last.record);
    assert!(
        last.record.to_string().contains("stopped cleanly"),
        "{:?}",
        last.record
    );
}

/// Connects to the milter on 127.0.0.1 from the loopback address `source`.
fn connect_from(source: std::net::Ipv4Addr, port: u16) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a runtime to connect with");
    let stream = runtime
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind((source, 0).into())?;
            socket.connect(([127, 0, 0, 1], port).into()).await
        })
        .unwrap_or_else(|e| panic!("connect to the milter from {source}: {e}"));
    let stream = stream.into_std().expect("a blocking socket");
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    stream
}

#[test]
fn only_allowed_clients_may_use_the_milter() {
    let (gw, port) = start(|cfg| {
        set(
            cfg,
            "milter.allowed_clients",
            toml::Value::Array(vec!["127.0.0.1/32".into()]),
        );
    });
    // 127.0.0.2 is disconnected before option negotiation: its negotiation packet gets no
    // reply, only the end of the connection.
    let mut outsider = connect_from(std::net::Ipv4Addr::new(127, 0, 0, 2), port);
    let mut neg = 13u32.to_be_bytes().to_vec();
    neg.push(b'O');
    neg.extend_from_slice(&6u32.to_be_bytes());
    neg.extend_from_slice(&0x1ffu32.to_be_bytes());
    neg.extend_from_slice(&0x1f_ffffu32.to_be_bytes());
    let _ = outsider.write_all(&neg);
    let mut buf = [0u8; 64];
    match outsider.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("127.0.0.2 got {n} bytes from the milter: {:?}", &buf[..n]),
        Err(e) => panic!("127.0.0.2 was neither answered nor disconnected: {e}"),
    }
    assert!(
        gw.wait_for(Duration::from_secs(30), || {
            let log = gw.log();
            log.contains("milter.allowed_clients") && log.contains("127.0.0.2")
        }),
        "the refused address is logged"
    );
    // 127.0.0.1 is served: a whole message is decided.
    let mut mta = Mta::connect(port);
    let f = fields("allowed@test");
    let f: Vec<(&str, &str)> = f.iter().map(|(n, v)| (*n, v.as_str())).collect();
    mta.begin("QALLOW1", &f);
    mta.send(b'B', b"Hello.\r\n");
    assert_eq!(mta.read().0, b'c');
    mta.send(b'E', b"");
    loop {
        let (cmd, data) = mta.read();
        if matches!(cmd, b'a' | b'c' | b'r' | b't' | b'd' | b'y') {
            assert_eq!(cmd, b'a', "accepted: {:?}", String::from_utf8_lossy(&data));
            break;
        }
    }
    assert!(
        gw.wait_for(Duration::from_secs(30), || record(&gw, "allowed@test")
            .is_some()),
        "the allowed client's message is audited"
    );
}
