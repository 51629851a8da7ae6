//! The soak client `scripts/soak` drives: sends messages at a steady rate over a few SMTP
//! sessions and records the reply each message got, one line per message, so the script can
//! match every message against the sink and the audit trail. (smtp-source reports failures
//! but not, per message, which were accepted and which were deferred.)
//!
//! ```text
//! cargo run --release --example soak -- --server 127.0.0.1:2525 --rate 10 --seconds 600 \
//!     --sessions 8 --out replies.tsv
//! ```
//!
//! Each line of `--out` is `MESSAGE-ID <tab> STAGE <tab> CODE <tab> REPLY`: the stage is where
//! the transaction stopped (`connect`, `mail`, `rcpt`, `data`, `dot`), the code the reply there
//! (0 when the connection failed or broke and there was no reply). A summary goes to stdout.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

struct Options {
    server: String,
    rate: f64,
    seconds: u64,
    sessions: usize,
    out: String,
    from: String,
    to: String,
    run: String,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        server: "127.0.0.1:2525".into(),
        rate: 10.0,
        seconds: 600,
        sessions: 8,
        out: "replies.tsv".into(),
        from: "soak@example-academy.sch.uk".into(),
        to: "soak@example.org".into(),
        run: format!("{}", std::process::id()),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag} {value}: {what}");
        match flag.as_str() {
            "--server" => o.server = value,
            "--rate" => o.rate = value.parse().with_context(|| bad("not a number"))?,
            "--seconds" => o.seconds = value.parse().with_context(|| bad("not a number"))?,
            "--sessions" => o.sessions = value.parse().with_context(|| bad("not a number"))?,
            "--out" => o.out = value,
            "--from" => o.from = value,
            "--to" => o.to = value,
            "--run" => o.run = value,
            _ => bail!("unknown option {flag} (see the comment at the top of examples/soak.rs)"),
        }
    }
    if o.rate.is_nan() || o.rate <= 0.0 || o.sessions == 0 {
        bail!("--rate and --sessions must be positive");
    }
    Ok(o)
}

/// One reply: its code and its last line.
fn read_reply(r: &mut impl BufRead) -> io::Result<(u16, String)> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        let line = line.trim_end();
        let code = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, line.to_string()))?;
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, line.to_string()));
        }
    }
}

struct Session {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Session {
    fn open(server: &str) -> io::Result<Result<Session, (u16, String)>> {
        let stream = TcpStream::connect(server)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        stream.set_nodelay(true)?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut s = Session { stream, reader };
        let greeting = read_reply(&mut s.reader)?;
        if greeting.0 != 220 {
            return Ok(Err(greeting));
        }
        let ehlo = s.cmd("EHLO soak.example-academy.sch.uk")?;
        if ehlo.0 != 250 {
            return Ok(Err(ehlo));
        }
        Ok(Ok(s))
    }

    fn cmd(&mut self, line: &str) -> io::Result<(u16, String)> {
        self.stream.write_all(format!("{line}\r\n").as_bytes())?;
        read_reply(&mut self.reader)
    }

    /// One transaction in lock step; the stage it stopped at and the reply there.
    fn send(&mut self, o: &Options, message: &[u8]) -> io::Result<(&'static str, (u16, String))> {
        let r = self.cmd(&format!("MAIL FROM:<{}>", o.from))?;
        if r.0 != 250 {
            return Ok(("mail", r));
        }
        let r = self.cmd(&format!("RCPT TO:<{}>", o.to))?;
        if r.0 != 250 {
            let _ = self.cmd("RSET")?;
            return Ok(("rcpt", r));
        }
        let r = self.cmd("DATA")?;
        if r.0 != 354 {
            return Ok(("data", r));
        }
        self.stream.write_all(message)?;
        Ok(("dot", read_reply(&mut self.reader)?))
    }
}

fn message(o: &Options, id: &str) -> Vec<u8> {
    let mut m = format!(
        "From: Soak Test <{}>\r\nTo: <{}>\r\nSubject: soak {id}\r\nMessage-ID: <{id}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
        o.from, o.to
    );
    for i in 0..30 {
        m.push_str(&format!(
            "Line {i:02} of a message that stands in for a letter home about the school trip.\r\n"
        ));
    }
    m.push_str(&format!("soak-end {id}\r\n.\r\n"));
    m.into_bytes()
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    accepted: AtomicU64,
    tempfailed: AtomicU64,
    refused: AtomicU64,
    other: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    let o = Arc::new(options()?);
    let total = (o.rate * o.seconds as f64).round() as u64;
    let out = File::create(&o.out).with_context(|| format!("cannot create {}", o.out))?;
    let out = Arc::new(Mutex::new(BufWriter::new(out)));
    let counts = Arc::new(Counts::default());
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..o.sessions)
        .map(|_| {
            let (o, out, counts, next) = (o.clone(), out.clone(), counts.clone(), next.clone());
            thread::spawn(move || worker(&o, total, started, &next, &counts, &out))
        })
        .collect();
    for w in workers {
        if w.join().is_err() {
            bail!("a soak worker panicked");
        }
    }
    out.lock()
        .map_err(|_| anyhow::anyhow!("the reply log was poisoned"))?
        .flush()
        .context("cannot write the reply log")?;
    let c = |a: &AtomicU64| a.load(Ordering::SeqCst);
    println!(
        "sent={} accepted={} tempfailed={} refused={} other={} seconds={:.1}",
        c(&counts.sent),
        c(&counts.accepted),
        c(&counts.tempfailed),
        c(&counts.refused),
        c(&counts.other),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn worker(
    o: &Options,
    total: u64,
    started: Instant,
    next: &AtomicU64,
    counts: &Counts,
    out: &Mutex<BufWriter<File>>,
) {
    let mut session: Option<Session> = None;
    loop {
        let i = next.fetch_add(1, Ordering::SeqCst);
        if i >= total {
            break;
        }
        // Message i leaves at i / rate seconds: a steady rate, whatever the replies.
        let due = started + Duration::from_secs_f64(i as f64 / o.rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let id = format!("soak-{}-{i}@example-academy.sch.uk", o.run);
        counts.sent.fetch_add(1, Ordering::SeqCst);
        let result = match session.take() {
            Some(s) => Ok(Ok(s)),
            None => Session::open(&o.server),
        };
        let (stage, code, text) = match result {
            Err(e) => ("connect", 0, e.to_string()),
            Ok(Err((code, text))) => ("connect", code, text),
            Ok(Ok(mut s)) => match s.send(o, &message(o, &id)) {
                Ok((stage, (code, text))) => {
                    // A 421 closes the session; anything else keeps it for the next message.
                    if code != 421 {
                        session = Some(s);
                    }
                    (stage, code, text)
                }
                Err(e) => ("broken", 0, e.to_string()),
            },
        };
        let counter = match (stage, code) {
            ("dot", 250) => &counts.accepted,
            (_, 400..=499) => &counts.tempfailed,
            (_, 500..=599) => &counts.refused,
            _ => &counts.other,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        let text = text.replace(['\t', '\n', '\r'], " ");
        if let Ok(mut out) = out.lock() {
            let _ = writeln!(out, "{id}\t{stage}\t{code}\t{text}");
        }
    }
}
