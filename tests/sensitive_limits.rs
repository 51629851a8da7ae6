//! Issue 15, items 1 and 2, through the real gateway: what lies past a limit of the attachment
//! walk is held as `unscannable-attachment`, never delivered unread, on the relay path and on
//! the milter path alike (they share `policy::evaluate`). The messages are the committed
//! fixtures `scripts/make-bomb-samples` writes: a CSV of pupils' UPNs 40 multipart levels
//! down, and a PDF whose object stream holds 200,000 tiny objects.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use common::smtp::Client;
use common::{AuditRow, Gateway, free_port, set};

const FROM: &str = "t.baker@example-academy.sch.uk";
const TO: &str = "admissions@county.gov.example";

fn bomb(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/sensitive/bombs");
    std::fs::read(path.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

fn record(gw: &Gateway, mid: &str) -> AuditRow {
    gw.message_records()
        .into_iter()
        .find(|r| r.field("message_id").as_deref() == Some(mid))
        .unwrap_or_else(|| panic!("no audit record for {mid}:\n{}", gw.log_tail(40)))
}

fn assert_held_unscannable(gw: &Gateway, mid: &str, attachment: &str) {
    let r = record(gw, mid);
    assert_eq!(
        r.field("verdict").as_deref(),
        Some("quarantine"),
        "{}",
        r.record_json
    );
    assert_eq!(
        r.field("outcome").as_deref(),
        Some("quarantined"),
        "{}",
        r.record_json
    );
    let findings = r.message()["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        findings
            .iter()
            .any(|f| f["rule"] == "unscannable-attachment" && f["attachment"] == attachment),
        "{}",
        r.record_json
    );
}

/// Sends `message` through the relay: it is taken (250, held for review) and reaches nothing.
fn through_relay(gw: &Gateway, message: &[u8]) {
    let mut c = Client::ready(gw.port);
    let t = c
        .send(FROM, "", &[TO], message)
        .expect("the relay takes the message");
    assert!(t.accepted(), "{:?}", t.reply);
    assert!(t.reply.text().contains("held for review"), "{:?}", t.reply);
}

#[test]
fn a_csv_40_levels_deep_is_held_by_the_relay_and_reaches_nothing() {
    let gw = Gateway::start(|_| {});
    through_relay(&gw, &bomb("csv-nested-40.eml"));
    assert!(
        gw.outbox_messages().is_empty(),
        "nothing may reach the next hop"
    );
    assert_held_unscannable(
        &gw,
        "csv-nested-40@example-academy.sch.uk",
        "(parts nested too deep)",
    );
    let held = std::fs::read_dir(gw.state_dir.join("quarantine"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(held >= 1, "the message is in the quarantine");
}

#[test]
fn a_pdf_of_200k_objects_is_held_by_the_relay_with_one_scan_at_a_time() {
    let gw = Gateway::start(|cfg| set(cfg, "sensitive.limits.max_parallel_scans", 1));
    through_relay(&gw, &bomb("pdf-object-stream-200k.eml"));
    // A second message after it: the one permit was given back.
    through_relay(&gw, &bomb("csv-nested-40.eml"));
    assert!(gw.outbox_messages().is_empty());
    assert_held_unscannable(
        &gw,
        "pdf-object-stream-200k.pdf@example-academy.sch.uk",
        "pdf-object-stream-200k.pdf",
    );
}

/// Just enough of a mail server's side of the milter protocol (libmilter, version 6) to hand
/// over one message: each packet a 4-byte big-endian length, a command byte, its data.
struct Mta {
    stream: TcpStream,
}

impl Mta {
    fn connect(port: u16) -> Mta {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the milter");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("read timeout");
        let mut mta = Mta { stream };
        let mut neg = 6u32.to_be_bytes().to_vec();
        neg.extend_from_slice(&0x1ffu32.to_be_bytes());
        neg.extend_from_slice(&0x1f_ffffu32.to_be_bytes());
        mta.send(b'O', &neg);
        assert_eq!(mta.read().0, b'O', "negotiation reply");
        let mut conn = b"client.example\0".to_vec();
        conn.push(b'4');
        conn.extend_from_slice(&25000u16.to_be_bytes());
        conn.extend_from_slice(b"127.0.0.1\0");
        mta.send(b'C', &conn);
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
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).expect("the reply's body");
        (body[0], body[1..].to_vec())
    }

    /// The whole message: envelope, each header field, the body in chunks, end of message.
    /// Returns the final reply's command byte.
    fn message(&mut self, queue_id: &str, message: &[u8]) -> u8 {
        self.send(b'D', format!("Mi\0{queue_id}\0").as_bytes());
        self.send(b'M', format!("<{FROM}>\0").as_bytes());
        assert_eq!(self.read().0, b'c');
        self.send(b'R', format!("<{TO}>\0").as_bytes());
        assert_eq!(self.read().0, b'c');
        let split = message
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a header section");
        let header = String::from_utf8_lossy(&message[..split]).replace("\r\n ", " ");
        for line in header.split("\r\n") {
            let (name, value) = line.split_once(':').expect("a header field");
            self.send(b'L', format!("{name}\0{value}\0").as_bytes());
            assert_eq!(self.read().0, b'c');
        }
        self.send(b'N', b"");
        assert_eq!(self.read().0, b'c');
        for chunk in message[split + 4..].chunks(60_000) {
            self.send(b'B', chunk);
            assert_eq!(self.read().0, b'c');
        }
        self.send(b'E', b"");
        loop {
            let (cmd, _) = self.read();
            if matches!(cmd, b'a' | b'c' | b'd' | b'r' | b't' | b'y') {
                return cmd;
            }
        }
    }
}

#[test]
fn the_milter_holds_them_too() {
    let port = free_port();
    let gw = Gateway::start(|cfg| {
        set(cfg, "milter.listen", format!("127.0.0.1:{port}"));
        set(cfg, "milter.quarantine", "schoolgate");
    });
    let mut mta = Mta::connect(port);
    let reply = mta.message("QDEEP", &bomb("csv-nested-40.eml"));
    assert_eq!(
        reply, b'd',
        "held in schoolgate's quarantine: discarded from the mail server's queue"
    );
    assert_held_unscannable(
        &gw,
        "csv-nested-40@example-academy.sch.uk",
        "(parts nested too deep)",
    );
    let mut mta = Mta::connect(port);
    let reply = mta.message("QPDF", &bomb("pdf-object-stream-200k.eml"));
    assert_eq!(reply, b'd');
    assert_held_unscannable(
        &gw,
        "pdf-object-stream-200k.pdf@example-academy.sch.uk",
        "pdf-object-stream-200k.pdf",
    );
}
