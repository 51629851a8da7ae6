//! The latency client `scripts/bench-relay` drives: SESSIONS SMTP sessions at once, spread
//! round-robin over the PORTs given (two gateways: half the sessions each), each sending COUNT
//! messages of about LENGTH bytes. One message's latency is the time from the end of its data
//! (the client writing `CRLF . CRLF`) to the reply to it: what the server adds to a message,
//! without the client's own cost of composing and sending it.
//!
//! ```text
//! cargo run --release --example smtp_latency -- SESSIONS COUNT LENGTH PORT [PORT ...]
//! ```
//!
//! Prints one line: `messages seconds msgs/s p50_ms p99_ms max_ms`. Every message must get a
//! 250; any other reply, or a broken session, fails the run (exit 1) naming it.
//!
//! It is one thread of tokio with a buffered reader per session and the message composed once,
//! so its own cost per message is a few microseconds: unlike the Python client it replaced, it
//! does not dominate the figures it reports.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const FROM: &str = "a@example-academy.sch.uk";
const TO: &str = "b@example.org";
/// Longest wait for any one reply: a server this slow has failed the benchmark.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    sessions: usize,
    count: usize,
    length: usize,
    ports: Vec<u16>,
}

fn args() -> anyhow::Result<Args> {
    let usage = "usage: smtp_latency SESSIONS COUNT LENGTH PORT [PORT ...]";
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 4 {
        bail!("{usage}");
    }
    let num = |i: usize, what: &str| -> anyhow::Result<usize> {
        a[i].parse()
            .with_context(|| format!("{what} must be a whole number, not {:?}; {usage}", a[i]))
    };
    let ports = a[3..]
        .iter()
        .map(|p| {
            p.parse::<u16>()
                .with_context(|| format!("PORT must be a port number, not {p:?}; {usage}"))
        })
        .collect::<anyhow::Result<Vec<u16>>>()?;
    let args = Args {
        sessions: num(0, "SESSIONS")?,
        count: num(1, "COUNT")?,
        length: num(2, "LENGTH")?,
        ports,
    };
    if args.sessions == 0 || args.count == 0 {
        bail!("SESSIONS and COUNT must be at least 1; {usage}");
    }
    Ok(args)
}

/// The message's data as sent after `354`, dot-stuffing not needed (no line starts with a
/// dot), without the final `.CRLF` (the body ends in CRLF).
fn message(length: usize) -> Vec<u8> {
    let mut m = format!("Subject: bench\r\nFrom: {FROM}\r\nTo: {TO}\r\n\r\n").into_bytes();
    let line = format!("{}\r\n", "x".repeat(76));
    for _ in 0..(length / line.len()).max(1) {
        m.extend_from_slice(line.as_bytes());
    }
    m
}

/// Reads one (possibly multi-line) reply; returns its last line.
async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> anyhow::Result<String> {
    let mut line = String::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(REPLY_TIMEOUT, r.read_line(&mut line))
            .await
            .context("no reply within 60 s")??;
        if n == 0 {
            bail!("the server closed the connection");
        }
        // "250-..." continues; "250 ..." (or a bare code) ends the reply.
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line.trim_end().to_string());
        }
    }
}

async fn expect(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    code: &str,
    after: &str,
) -> anyhow::Result<()> {
    let got = reply(r).await.with_context(|| format!("after {after}"))?;
    if !got.starts_with(code) {
        bail!("after {after}: expected {code}, got {got:?}");
    }
    Ok(())
}

/// One session: COUNT messages; returns each one's latency.
async fn session(port: u16, count: usize, data: &[u8]) -> anyhow::Result<Vec<Duration>> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    expect(&mut r, "220", "connecting").await?;
    w.write_all(b"EHLO bench.example\r\n").await?;
    expect(&mut r, "250", "EHLO").await?;
    let envelope = format!("MAIL FROM:<{FROM}>\r\nRCPT TO:<{TO}>\r\nDATA\r\n");
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        // Sent one command at a time (no PIPELINING assumed of the server).
        for (command, code) in envelope.split_inclusive("\r\n").zip(["250", "250", "354"]) {
            w.write_all(command.as_bytes()).await?;
            expect(&mut r, code, command.trim_end()).await?;
        }
        w.write_all(data).await?;
        let start = Instant::now();
        w.write_all(b".\r\n").await?;
        expect(&mut r, "250", "the end of the data").await?;
        times.push(start.elapsed());
    }
    w.write_all(b"QUIT\r\n").await?;
    let _ = reply(&mut r).await;
    Ok(times)
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    // Nearest rank: the smallest time at least q of the messages took no longer than.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let data = std::sync::Arc::new(message(args.length));
    let started = Instant::now();
    let mut times: Vec<Duration> = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..args.sessions {
            let port = args.ports[i % args.ports.len()];
            let data = data.clone();
            let count = args.count;
            tasks.spawn(async move {
                session(port, count, &data)
                    .await
                    .with_context(|| format!("session {i} to port {port}"))
            });
        }
        let mut all = Vec::with_capacity(args.sessions * args.count);
        while let Some(done) = tasks.join_next().await {
            all.extend(done.context("a session panicked")??);
        }
        anyhow::Ok(all)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    times.sort();
    println!(
        "{} {:.3} {:.0} {:.2} {:.2} {:.2}",
        times.len(),
        elapsed,
        times.len() as f64 / elapsed,
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        percentile(&times, 1.0),
    );
    Ok(())
}
