//! One mail server connection: the protocol's callbacks, collecting what the policy needs.
//!
//! The envelope comes from MAIL and RCPT, the message from the header fields and body chunks.
//! Header fields arrive one by one, name and value apart; with the protocol's leading-space
//! option (which Postfix and Sendmail 8.14+ offer) the value is exactly as written after the
//! colon, so the message is put back together byte for byte (folds as CRLF, as on the wire).

use std::ffi::{CStr, CString};
use std::sync::Arc;

use indymilter::{
    Actions, Callbacks, Context, EomContext, MacroStage, NegotiateContext, ProtoOpts,
    SetErrorReply, SocketInfo, Status,
};

use super::decide;
use crate::config::MilterOnError;
use crate::envelope::Envelope;
use crate::smtp::server::Relay;

/// What is known of one connection from the mail server.
#[derive(Debug, Default)]
pub struct Connection {
    /// The SMTP client's address, as the mail server saw it.
    pub client: String,
    pub helo: String,
    /// The SMTP client's TLS protocol and cipher, when the mail server reported them.
    pub tls: Option<String>,
    /// The message in progress.
    pub message: Option<Message>,
    /// Header values come (and go back) exactly as written after the colon. Without it (an
    /// old Sendmail) the mail server drops the space after the colon and adds one back to what
    /// we send.
    pub leading_space: bool,
}

/// One message in progress.
#[derive(Debug)]
pub struct Message {
    /// Our own id for it (logs, audit record, quarantine).
    pub queue_id: String,
    pub envelope: Envelope,
    /// The header fields, then (after the end of the header) the blank line and the body.
    pub bytes: Vec<u8>,
    /// Octets of the message so far (counted on past the limit, where nothing is kept).
    pub size: u64,
    /// The size limit in force when the message began.
    pub limit: u64,
}

/// The protocol's callbacks, each a thin step onto [`Connection`] or [`decide`].
pub fn callbacks(relay: Arc<Relay>) -> Callbacks<Connection> {
    let r = |relay: &Arc<Relay>| Arc::clone(relay);
    let (r1, r2, r3, r4, r5) = (r(&relay), r(&relay), r(&relay), r(&relay), r(&relay));
    Callbacks::new()
        .on_negotiate(|cx, actions, opts| Box::pin(async move { negotiate(cx, actions, opts) }))
        .on_connect(|cx, hostname, socket| Box::pin(async move { connect(cx, hostname, socket) }))
        .on_helo(|cx, name| Box::pin(async move { helo(cx, name) }))
        .on_mail(move |cx, args| {
            let relay = Arc::clone(&r1);
            Box::pin(async move { mail(&relay, cx, args) })
        })
        .on_rcpt(|cx, args| Box::pin(async move { rcpt(cx, args) }))
        .on_header(move |cx, name, value| {
            let relay = Arc::clone(&r2);
            Box::pin(async move { header(&relay, cx, name, value).await })
        })
        .on_eoh(|cx| Box::pin(async move { eoh(cx) }))
        .on_body(move |cx, chunk| {
            let relay = Arc::clone(&r3);
            // The chunk is the protocol's own buffer type; only its bytes matter here.
            Box::pin(async move { take(&relay, cx, &chunk).await })
        })
        .on_eom(move |cx| {
            let relay = Arc::clone(&r4);
            Box::pin(async move { eom(&relay, cx).await })
        })
        .on_abort(move |cx| {
            let relay = Arc::clone(&r5);
            Box::pin(async move { abort(&relay, cx).await })
        })
}

fn negotiate(cx: &mut NegotiateContext<Connection>, actions: Actions, opts: ProtoOpts) -> Status {
    // Only what the mail server offers can be asked for; a missing action (an old Sendmail
    // without quarantine) is found when it is needed and the message is then tempfailed.
    cx.requested_actions = super::ACTIONS & actions;
    let leading_space = opts.contains(ProtoOpts::LEADING_SPACE);
    if leading_space {
        cx.requested_opts |= ProtoOpts::LEADING_SPACE;
    }
    cx.data = Some(Connection {
        leading_space,
        ..Connection::default()
    });
    // The mail server's queue id, and the client's TLS (Postfix honours the request; a server
    // that does not sends its own defaults, which carry the queue id too).
    for (stage, names) in [
        (MacroStage::Helo, "{tls_version} {cipher}"),
        (MacroStage::Mail, "i"),
        (MacroStage::Eoh, "i"),
        (MacroStage::Eom, "i"),
    ] {
        if let Ok(names) = CString::new(names) {
            cx.requested_macros.insert(stage, names);
        }
    }
    Status::Continue
}

fn connect(cx: &mut Context<Connection>, hostname: CString, socket: SocketInfo) -> Status {
    let client = match socket {
        SocketInfo::Inet(addr) => addr.to_string(),
        SocketInfo::Unix(path) => format!("unix:{}", path.to_string_lossy()),
        SocketInfo::Unknown => hostname.to_string_lossy().into_owned(),
    };
    let conn = cx.data.get_or_insert_with(Connection::default);
    conn.client = client;
    conn.helo.clear();
    conn.tls = None;
    conn.message = None;
    Status::Continue
}

fn helo(cx: &mut Context<Connection>, name: CString) -> Status {
    let tls = match (
        macro_value(&cx.macros, c"{tls_version}"),
        macro_value(&cx.macros, c"{cipher}"),
    ) {
        (Some(v), Some(c)) => Some(format!("{v} {c}")),
        (Some(v), None) => Some(v),
        _ => None,
    };
    let conn = cx.data.get_or_insert_with(Connection::default);
    conn.helo = name.to_string_lossy().into_owned();
    conn.tls = tls;
    Status::Continue
}

fn mail(relay: &Relay, cx: &mut Context<Connection>, args: Vec<CString>) -> Status {
    let config = relay.config();
    let mut args = args.iter().map(|a| a.to_string_lossy().into_owned());
    let mail_from = args.next().map(|a| bare_address(&a)).unwrap_or_default();
    let mut envelope = Envelope {
        mail_from,
        rcpt_to: Vec::new(),
        smtputf8: false,
        body_8bit: false,
    };
    for param in args {
        if param.eq_ignore_ascii_case("SMTPUTF8") {
            envelope.smtputf8 = true;
        } else if param.eq_ignore_ascii_case("BODY=8BITMIME") {
            envelope.body_8bit = true;
        }
    }
    let conn = cx.data.get_or_insert_with(Connection::default);
    conn.message = Some(Message {
        queue_id: crate::smtp::session::new_queue_id(),
        envelope,
        bytes: Vec::new(),
        size: 0,
        limit: config.milter_max_message_size(),
    });
    Status::Continue
}

fn rcpt(cx: &mut Context<Connection>, args: Vec<CString>) -> Status {
    if let Some(m) = cx.data.as_mut().and_then(|c| c.message.as_mut())
        && let Some(to) = args.first()
    {
        m.envelope.rcpt_to.push(bare_address(&to.to_string_lossy()));
    }
    Status::Continue
}

async fn header(
    relay: &Relay,
    cx: &mut Context<Connection>,
    name: CString,
    value: CString,
) -> Status {
    let Some(conn) = cx.data.as_ref().filter(|c| c.message.is_some()) else {
        return Status::Continue;
    };
    let mut field = Vec::with_capacity(name.as_bytes().len() + value.as_bytes().len() + 4);
    field.extend_from_slice(name.as_bytes());
    field.push(b':');
    if !conn.leading_space {
        field.push(b' ');
    }
    // Folds come as LF (or CRLF); on the wire, and so to the policy, they are CRLF.
    let v = value.as_bytes();
    for (i, &b) in v.iter().enumerate() {
        if b == b'\n' && (i == 0 || v[i - 1] != b'\r') {
            field.push(b'\r');
        }
        field.push(b);
    }
    field.extend_from_slice(b"\r\n");
    take(relay, cx, &field).await
}

/// The blank line between header and body.
fn eoh(cx: &mut Context<Connection>) -> Status {
    if let Some(m) = cx.data.as_mut().and_then(|c| c.message.as_mut()) {
        m.size += 2;
        if m.size <= m.limit {
            m.bytes.extend_from_slice(b"\r\n");
        }
    }
    Status::Continue
}

/// Adds `bytes` to the message, or, past the size limit, ends it with `on_error`.
async fn take(relay: &Relay, cx: &mut Context<Connection>, bytes: &[u8]) -> Status {
    let Some(conn) = cx.data.as_mut() else {
        return Status::Continue;
    };
    let Some(m) = conn.message.as_mut() else {
        return Status::Continue;
    };
    m.size += bytes.len() as u64;
    if m.size <= m.limit {
        m.bytes.extend_from_slice(bytes);
        return Status::Continue;
    }
    // Too large to inspect: the message ends here, as the network manager chose.
    let Some(message) = conn.message.take() else {
        return Status::Continue;
    };
    let config = relay.config();
    let on_error = config.milter.on_error;
    let detail = format!(
        "larger than the milter's size limit of {} octets",
        message.limit
    );
    let (status, reply) = on_error_reply(
        on_error,
        Some(("552", "5.3.4", "452", "4.3.4")),
        "Message too big for the school's mail filter",
    );
    set_reply(&mut cx.reply, &reply);
    let mta_queue_id = macro_value(&cx.macros, c"i");
    let conn = cx.data.as_ref();
    decide::record_undecided(
        relay,
        conn,
        &message,
        mta_queue_id,
        on_error,
        &detail,
        &reply,
    )
    .await;
    status
}

async fn eom(relay: &Relay, cx: &mut EomContext<Connection>) -> Status {
    let mta_queue_id = macro_value(&cx.macros, c"i");
    let Some(message) = cx.data.as_mut().and_then(|c| c.message.take()) else {
        // A message that was never begun (the server skipped MAIL), or was already ended.
        let on_error = relay.config().milter.on_error;
        let (status, reply) = on_error_reply(
            on_error,
            None,
            "The school's mail filter lost track of this message",
        );
        tracing::warn!("milter: end of a message that was never begun");
        set_reply(&mut cx.reply, &reply);
        return status;
    };
    let (status, reply) = decide::end_of_message(relay, cx, message, mta_queue_id).await;
    if let Some(reply) = reply {
        set_reply(&mut cx.reply, &reply);
    }
    status
}

async fn abort(relay: &Relay, cx: &mut Context<Connection>) -> Status {
    let Some(message) = cx.data.as_mut().and_then(|c| c.message.take()) else {
        return Status::Continue;
    };
    // Abort also ends a transaction that never reached DATA (a refused recipient, RSET): only
    // a message whose content had begun is worth a record.
    if message.size > 0 {
        let mta_queue_id = macro_value(&cx.macros, c"i");
        tracing::info!(queue_id = %message.queue_id, mta_queue_id = mta_queue_id.as_deref().unwrap_or("-"),
            bytes = message.size, "milter: the mail server abandoned the message");
        decide::record_aborted(relay, cx.data.as_ref(), &message, mta_queue_id).await;
    }
    Status::Continue
}

/// `on_error`'s status and reply. `sizes` are the codes to use for a message that is too big
/// (permanent code and enhanced code, temporary code and enhanced code).
pub(crate) fn on_error_reply(
    on_error: MilterOnError,
    sizes: Option<(&str, &str, &str, &str)>,
    text: &str,
) -> (Status, String) {
    match on_error {
        MilterOnError::Tempfail => {
            let (code, x) = sizes.map_or(("451", "4.3.0"), |s| (s.2, s.3));
            (
                Status::Tempfail,
                format!("{code} {x} {text}, try again later"),
            )
        }
        MilterOnError::Reject => {
            let (code, x) = sizes.map_or(("554", "5.3.0"), |s| (s.0, s.1));
            (Status::Reject, format!("{code} {x} {text}"))
        }
        MilterOnError::Accept => (
            Status::Accept,
            "accept (unfiltered: milter.on_error = \"accept\")".into(),
        ),
    }
}

/// Sets the custom reply for a 4xx or 5xx `reply` ("451 4.3.0 text"); other replies (accept)
/// need none.
pub(crate) fn set_reply(smtp: &mut indymilter::SmtpReply, reply: &str) {
    let mut words = reply.splitn(3, ' ');
    let (Some(code), Some(x), Some(text)) = (words.next(), words.next(), words.next()) else {
        return;
    };
    if !(code.starts_with('4') || code.starts_with('5')) {
        return;
    }
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(900)
        .collect();
    if let Err(e) = smtp.set_error_reply(code, Some(x), [text]) {
        tracing::warn!(error = %e, reply, "milter: the reply could not be set; the mail server's own words are used");
    }
}

/// A macro's value, if the mail server sent it.
pub(crate) fn macro_value(macros: &indymilter::Macros, name: &CStr) -> Option<String> {
    macros
        .get(name)
        .map(|v| v.to_string_lossy().trim().to_string())
        .filter(|v| !v.is_empty())
}

/// `<a@b>` as `a@b` (the mail server gives MAIL and RCPT arguments with their brackets).
fn bare_address(arg: &str) -> String {
    let a = arg.trim();
    a.strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(a)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_lose_their_brackets() {
        assert_eq!(bare_address("<a@b>"), "a@b");
        assert_eq!(bare_address("<>"), "");
        assert_eq!(bare_address("a@b"), "a@b");
    }

    #[test]
    fn on_error_says_what_the_network_manager_chose() {
        let (s, r) = on_error_reply(MilterOnError::Tempfail, None, "x");
        assert_eq!(
            (s, r.as_str()),
            (Status::Tempfail, "451 4.3.0 x, try again later")
        );
        let (s, r) = on_error_reply(
            MilterOnError::Reject,
            Some(("552", "5.3.4", "452", "4.3.4")),
            "too big",
        );
        assert_eq!((s, r.as_str()), (Status::Reject, "552 5.3.4 too big"));
        assert_eq!(
            on_error_reply(MilterOnError::Accept, None, "x").0,
            Status::Accept
        );
    }
}
