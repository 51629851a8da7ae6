//! The SMTP envelope: who the message is from and to, as the client said in MAIL and RCPT.

use serde::{Deserialize, Serialize};

/// The envelope of one message as the school's mail server gave it to us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The reverse path from `MAIL FROM`; empty for the null sender `<>` (bounces).
    pub mail_from: String,
    /// The forward paths from each accepted `RCPT TO`, in order.
    pub rcpt_to: Vec<String>,
    /// The client asked for `SMTPUTF8`: addresses or headers may hold UTF-8.
    #[serde(default)]
    pub smtputf8: bool,
    /// The client declared `BODY=8BITMIME`.
    #[serde(default)]
    pub body_8bit: bool,
}
