//! SMTP on the wire, both sides: a raw client that does exactly what a test tells it (so the
//! protocol-level cases can be driven precisely), and a sink that stands in for the school's
//! smarthost, answers as the test configures, and records every message byte for byte.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::dot_stuffed;

/// One SMTP reply: its code and the text of each line (after `NNN-` / `NNN `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// All lines joined with newlines.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

/// Reads one reply, multi-line or not.
pub fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let mut lines = Vec::new();
    loop {
        let mut raw = Vec::new();
        let n = reader.read_until(b'\n', &mut raw)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                if lines.is_empty() {
                    "connection closed before a reply".to_string()
                } else {
                    format!("connection closed inside a reply: {lines:?}")
                },
            ));
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\r', '\n']);
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an SMTP reply line: {line:?}"),
            )
        };
        if line.len() < 3 || !line.is_char_boundary(3) {
            return Err(bad());
        }
        let code: u16 = line[..3].parse().map_err(|_| bad())?;
        let sep = line.as_bytes().get(3).copied();
        lines.push(line.get(4..).unwrap_or("").to_string());
        match sep {
            Some(b'-') => continue,
            None | Some(b' ') => return Ok(Reply { code, lines }),
            Some(_) => return Err(bad()),
        }
    }
}

/// Where a transaction stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Mail,
    Rcpt,
    Data,
    /// The reply after the message's final `.`.
    Dot,
}

/// The outcome of [`Client::send`]: the stage the transaction reached and the reply there.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub stage: Stage,
    pub reply: Reply,
}

impl Transaction {
    /// Accepted: 250 after the final dot.
    pub fn accepted(&self) -> bool {
        self.stage == Stage::Dot && self.reply.code == 250
    }
}

/// A raw SMTP client over a blocking socket (60 s read timeout).
pub struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// The greeting.
    pub greeting: Reply,
    /// The last EHLO reply.
    pub ehlo: Option<Reply>,
}

impl Client {
    /// Connects and reads the greeting (whatever its code).
    pub fn connect(port: u16) -> io::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_write_timeout(Some(Duration::from_secs(60)))?;
        stream.set_nodelay(true)?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let greeting = read_reply(&mut reader)?;
        Ok(Client {
            stream,
            reader,
            greeting,
            ehlo: None,
        })
    }

    /// Connects from the loopback address `source` (e.g. 127.0.0.7, so that one test can be
    /// several clients as far as per-client limits go) and reads the greeting.
    pub fn connect_from(source: std::net::Ipv4Addr, port: u16) -> io::Result<Client> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let stream = runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind((source, 0).into())?;
            socket.connect(([127, 0, 0, 1], port).into()).await
        })?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        Client::from_stream(stream)
    }

    fn from_stream(stream: TcpStream) -> io::Result<Client> {
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_write_timeout(Some(Duration::from_secs(60)))?;
        stream.set_nodelay(true)?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let greeting = read_reply(&mut reader)?;
        Ok(Client {
            stream,
            reader,
            greeting,
            ehlo: None,
        })
    }

    /// The socket itself, for tests that must write and read on their own schedule.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Connects, expects 220, says EHLO and expects 250.
    pub fn ready(port: u16) -> Client {
        let mut c =
            Client::connect(port).unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        assert_eq!(c.greeting.code, 220, "greeting: {}", c.greeting);
        let r = c.cmd("EHLO client.example-academy.sch.uk").expect("EHLO");
        assert_eq!(r.code, 250, "EHLO: {r}");
        c
    }

    /// Waits up to `timeout` for each reply from now on (a client that waits as long as
    /// RFC 5321 §4.5.3.2 allows: 5 minutes for MAIL and RCPT, 10 for the end of the data).
    pub fn wait_up_to(&mut self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set the read timeout");
    }

    /// Does the last EHLO reply advertise `keyword` (e.g. `SIZE`, `SMTPUTF8`)?
    pub fn has_extension(&self, keyword: &str) -> bool {
        self.ehlo.as_ref().is_some_and(|r| {
            r.lines.iter().skip(1).any(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case(keyword))
            })
        })
    }

    /// Sends raw bytes.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads one reply.
    pub fn read_reply(&mut self) -> io::Result<Reply> {
        read_reply(&mut self.reader)
    }

    /// Sends one command line (CRLF added) and reads its reply.
    pub fn cmd(&mut self, line: &str) -> io::Result<Reply> {
        self.write(format!("{line}\r\n").as_bytes())?;
        let r = self.read_reply()?;
        if line
            .get(..4)
            .is_some_and(|v| v.eq_ignore_ascii_case("EHLO"))
        {
            self.ehlo = Some(r.clone());
        }
        Ok(r)
    }

    /// One whole transaction in lock step: MAIL (with `params` after the address, may be
    /// empty), RCPT for each recipient, DATA, the message (which must end in CRLF; it is
    /// dot-stuffed here). Stops at the first refusal.
    pub fn send(
        &mut self,
        from: &str,
        params: &str,
        to: &[&str],
        message: &[u8],
    ) -> io::Result<Transaction> {
        let mail = if params.is_empty() {
            format!("MAIL FROM:<{from}>")
        } else {
            format!("MAIL FROM:<{from}> {params}")
        };
        let r = self.cmd(&mail)?;
        if r.code != 250 {
            return Ok(Transaction {
                stage: Stage::Mail,
                reply: r,
            });
        }
        let mut last = None;
        let mut any = false;
        for rcpt in to {
            let r = self.cmd(&format!("RCPT TO:<{rcpt}>"))?;
            any |= r.code == 250 || r.code == 251;
            last = Some(r);
        }
        if !any {
            let reply = last.expect("at least one recipient");
            let _ = self.cmd("RSET");
            return Ok(Transaction {
                stage: Stage::Rcpt,
                reply,
            });
        }
        let r = self.cmd("DATA")?;
        if r.code != 354 {
            return Ok(Transaction {
                stage: Stage::Data,
                reply: r,
            });
        }
        self.write(&dot_stuffed(message))?;
        let r = self.read_reply()?;
        Ok(Transaction {
            stage: Stage::Dot,
            reply: r,
        })
    }

    /// Closes the connection at once, without QUIT.
    pub fn drop_connection(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Says QUIT and closes.
    pub fn quit(mut self) {
        let _ = self.cmd("QUIT");
    }
}

/// How the sink answers. Each field is a full reply line (or lines joined by `\r\n`) without
/// the final CRLF.
#[derive(Debug, Clone)]
pub struct SinkBehaviour {
    pub greeting: String,
    pub mail: String,
    pub rcpt: String,
    /// The answer to DATA; anything but 354 refuses it.
    pub data: String,
    /// After the message's final dot.
    pub dot: String,
    /// How long the sink waits before each reply, the greeting included (a slow next hop).
    pub delay: Duration,
    /// Where the sink closes the connection instead of answering (a next hop that dies).
    pub hang_up: Option<HangUp>,
}

/// Where a sink hangs up: it closes the connection at that point without a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangUp {
    /// On connecting, before any greeting.
    Greeting,
    /// On EHLO or HELO.
    Ehlo,
    Mail,
    Rcpt,
    /// On DATA, before its 354.
    Data,
    /// After 354, once some of the message has arrived: the connection closed mid-DATA.
    MidData,
    /// After the final dot has arrived, before the reply. The message is recorded as received
    /// but not accepted (the sink never said 2xx).
    AfterDot,
}

impl HangUp {
    pub const ALL: [HangUp; 7] = [
        HangUp::Greeting,
        HangUp::Ehlo,
        HangUp::Mail,
        HangUp::Rcpt,
        HangUp::Data,
        HangUp::MidData,
        HangUp::AfterDot,
    ];
}

impl SinkBehaviour {
    /// Accepts everything.
    pub fn accept() -> SinkBehaviour {
        SinkBehaviour {
            greeting: "220 sink.example.org ESMTP test sink".into(),
            mail: "250 2.1.0 Ok".into(),
            rcpt: "250 2.1.5 Ok".into(),
            data: "354 End data with <CR><LF>.<CR><LF>".into(),
            dot: "250 2.0.0 Ok: queued as SINK".into(),
            delay: Duration::ZERO,
            hang_up: None,
        }
    }

    /// Greets with `reply` (e.g. `421 ...` or `554 ...`) and then answers as usual.
    pub fn greeting_reply(reply: &str) -> SinkBehaviour {
        SinkBehaviour {
            greeting: reply.into(),
            ..Self::accept()
        }
    }

    /// Answers DATA with `reply`.
    pub fn data_reply(reply: &str) -> SinkBehaviour {
        SinkBehaviour {
            data: reply.into(),
            ..Self::accept()
        }
    }

    /// Accepts everything, but waits `delay` before every reply.
    pub fn slow(delay: Duration) -> SinkBehaviour {
        SinkBehaviour {
            delay,
            ..Self::accept()
        }
    }

    /// Closes the connection at `stage` without answering.
    pub fn hang_up(stage: HangUp) -> SinkBehaviour {
        SinkBehaviour {
            hang_up: Some(stage),
            ..Self::accept()
        }
    }

    /// Refuses every recipient with `reply`.
    pub fn rcpt_reply(reply: &str) -> SinkBehaviour {
        SinkBehaviour {
            rcpt: reply.into(),
            ..Self::accept()
        }
    }

    /// Answers every message's final dot with `reply`.
    pub fn dot_reply(reply: &str) -> SinkBehaviour {
        SinkBehaviour {
            dot: reply.into(),
            ..Self::accept()
        }
    }

    /// Answers MAIL with `reply`.
    pub fn mail_reply(reply: &str) -> SinkBehaviour {
        SinkBehaviour {
            mail: reply.into(),
            ..Self::accept()
        }
    }
}

/// A message the sink received (whether or not it accepted it).
#[derive(Debug, Clone)]
pub struct SinkMessage {
    pub helo: String,
    pub mail_from: String,
    /// What followed `MAIL FROM:<...>` (e.g. `BODY=8BITMIME SMTPUTF8 SIZE=123`).
    pub mail_params: String,
    pub rcpt_to: Vec<String>,
    /// The message exactly as received, dot-unstuffed, without the final `.CRLF`.
    pub data: Vec<u8>,
    /// Did the sink answer the final dot with 2xx?
    pub accepted: bool,
}

impl SinkMessage {
    /// Was `param` (e.g. `BODY=8BITMIME`, `SMTPUTF8`) among the MAIL parameters?
    pub fn has_param(&self, param: &str) -> bool {
        self.mail_params
            .split_whitespace()
            .any(|p| p.eq_ignore_ascii_case(param))
    }
}

#[derive(Default)]
struct SinkState {
    messages: Vec<SinkMessage>,
    transcript: Vec<String>,
}

/// An SMTP server on 127.0.0.1 that stands in for the next hop. One thread per connection.
///
/// Dropping it is the next hop going down: the port is closed and every open connection cut.
/// [`Sink::start_on`] brings one up again on the same port.
pub struct Sink {
    pub port: u16,
    state: Arc<Mutex<SinkState>>,
    behaviour: Arc<Mutex<SinkBehaviour>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// The open connections, to cut when the sink goes down.
    open: Arc<Mutex<Vec<TcpStream>>>,
    accepting: Option<thread::JoinHandle<()>>,
}

impl Sink {
    pub fn start(behaviour: SinkBehaviour) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
        Self::serve_on(listener, behaviour)
    }

    /// Starts a sink on `port` (a next hop coming back where it was). Waits up to 5 s for the
    /// port to be free.
    pub fn start_on(port: u16, behaviour: SinkBehaviour) -> Sink {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(listener) => return Self::serve_on(listener, behaviour),
                Err(e) if std::time::Instant::now() >= deadline => {
                    panic!("cannot start the sink again on port {port}: {e}")
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn serve_on(listener: TcpListener, behaviour: SinkBehaviour) -> Sink {
        let port = listener.local_addr().expect("sink address").port();
        let mut sink = Sink {
            port,
            state: Arc::default(),
            behaviour: Arc::new(Mutex::new(behaviour)),
            connections: Arc::default(),
            stop: Arc::default(),
            open: Arc::default(),
            accepting: None,
        };
        let (state, behaviour, connections, stop, open) = (
            sink.state.clone(),
            sink.behaviour.clone(),
            sink.connections.clone(),
            sink.stop.clone(),
            sink.open.clone(),
        );
        sink.accepting = Some(thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                connections.fetch_add(1, Ordering::SeqCst);
                if let Ok(clone) = stream.try_clone() {
                    open.lock().unwrap().push(clone);
                }
                let state = state.clone();
                let behaviour = behaviour.lock().unwrap().clone();
                let closer = stream.try_clone();
                thread::spawn(move || {
                    let _ = serve(stream, &behaviour, &state);
                    // The list of open connections holds a copy: closing is explicit.
                    if let Ok(closer) = closer {
                        let _ = closer.shutdown(Shutdown::Both);
                    }
                });
            }
        }));
        sink
    }

    /// `smtp://127.0.0.1:PORT`, for `relay.next_hop`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Changes how later connections are answered.
    pub fn set_behaviour(&self, behaviour: SinkBehaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    /// Every message that reached the end of DATA, accepted or not.
    pub fn messages(&self) -> Vec<SinkMessage> {
        self.state.lock().unwrap().messages.clone()
    }

    /// The messages the sink said 2xx to.
    pub fn accepted(&self) -> Vec<SinkMessage> {
        self.messages().into_iter().filter(|m| m.accepted).collect()
    }

    /// How many connections were made to the sink.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The commands the sink received (not message contents), for failure messages.
    pub fn transcript(&self) -> String {
        self.state.lock().unwrap().transcript.join("\n")
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag, and wait for it to close the port.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accepting) = self.accepting.take() {
            let _ = accepting.join();
        }
        for stream in self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn angle_addr(arg: &str) -> (String, String) {
    // "FROM:<a@b> PARAMS" / "TO:<a@b>"
    let after_colon = arg.split_once(':').map(|x| x.1).unwrap_or("").trim_start();
    if let Some(rest) = after_colon.strip_prefix('<')
        && let Some((addr, params)) = rest.split_once('>')
    {
        return (addr.to_string(), params.trim().to_string());
    }
    let mut it = after_colon.splitn(2, ' ');
    let addr = it.next().unwrap_or("").to_string();
    (addr, it.next().unwrap_or("").trim().to_string())
}

fn serve(stream: TcpStream, b: &SinkBehaviour, state: &Mutex<SinkState>) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut say = |text: &str| -> io::Result<()> {
        thread::sleep(b.delay);
        out.write_all(text.as_bytes())?;
        out.write_all(b"\r\n")?;
        out.flush()
    };
    // Hanging up is returning: the connection is closed as the stream is dropped.
    let hangs_up = |at: HangUp| b.hang_up == Some(at);
    if hangs_up(HangUp::Greeting) {
        return Ok(());
    }
    say(&b.greeting)?;
    let (mut helo, mut from, mut params) = (String::new(), None::<String>, String::new());
    let mut rcpts: Vec<String> = Vec::new();
    loop {
        let mut raw = Vec::new();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&raw)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        state.lock().unwrap().transcript.push(line.clone());
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let arg = line.get(verb.len()..).unwrap_or("").trim().to_string();
        match verb.as_str() {
            "EHLO" | "HELO" if hangs_up(HangUp::Ehlo) => return Ok(()),
            "MAIL" if hangs_up(HangUp::Mail) => return Ok(()),
            "RCPT" if hangs_up(HangUp::Rcpt) => return Ok(()),
            "DATA" if hangs_up(HangUp::Data) => return Ok(()),
            "EHLO" => {
                helo = arg;
                say(
                    "250-sink.example.org\r\n250-PIPELINING\r\n250-SIZE 209715200\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES",
                )?;
            }
            "HELO" => {
                helo = arg;
                say("250 sink.example.org")?;
            }
            "MAIL" => {
                let (addr, p) = angle_addr(&arg);
                if b.mail.starts_with('2') {
                    from = Some(addr);
                    params = p;
                    rcpts.clear();
                }
                say(&b.mail)?;
            }
            "RCPT" => {
                if from.is_none() {
                    say("503 5.5.1 MAIL first")?;
                } else {
                    if b.rcpt.starts_with('2') {
                        rcpts.push(angle_addr(&arg).0);
                    }
                    say(&b.rcpt)?;
                }
            }
            "DATA" => {
                if from.is_none() || rcpts.is_empty() {
                    say("554 5.5.1 No valid recipients")?;
                    continue;
                }
                say(&b.data)?;
                if !b.data.starts_with('3') {
                    from = None;
                    rcpts.clear();
                    continue;
                }
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if reader.read_until(b'\n', &mut l)? == 0 {
                        return Ok(()); // dropped mid-DATA: nothing recorded
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    if l.first() == Some(&b'.') {
                        data.extend_from_slice(&l[1..]);
                    } else {
                        data.extend_from_slice(&l);
                    }
                    if hangs_up(HangUp::MidData) {
                        return Ok(()); // some of the message came; nothing recorded
                    }
                }
                let accepted = b.dot.starts_with('2') && !hangs_up(HangUp::AfterDot);
                state.lock().unwrap().messages.push(SinkMessage {
                    helo: helo.clone(),
                    mail_from: from.take().unwrap_or_default(),
                    mail_params: std::mem::take(&mut params),
                    rcpt_to: std::mem::take(&mut rcpts),
                    data,
                    accepted,
                });
                if hangs_up(HangUp::AfterDot) {
                    return Ok(());
                }
                say(&b.dot)?;
            }
            "RSET" => {
                from = None;
                rcpts.clear();
                say("250 2.0.0 Ok")?;
            }
            "NOOP" => say("250 2.0.0 Ok")?,
            "QUIT" => {
                say("221 2.0.0 Bye")?;
                return Ok(());
            }
            _ => say("502 5.5.2 Command not recognised")?,
        }
    }
}
