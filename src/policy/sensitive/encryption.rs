//! Is this file encrypted? Told from its bytes alone (research/detectors.md, "Is this file
//! encrypted?"): an encrypted attachment is not sensitive data sent in clear.

/// How a file is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Readable by anyone who has it.
    Clear,
    /// Needs a password or key to read: `how` names the scheme ("AES-256 ZIP", "PDF /Encrypt").
    Encrypted(&'static str),
    /// Marked as protected but opens without a password (an owner-password-only PDF, the
    /// VelvetSweatshop default of Excel): not confidential, so read as clear.
    OpensWithoutPassword(&'static str),
}

/// Tells from `bytes` whether the whole file is encrypted (by its magic; any format).
pub fn of_file(bytes: &[u8]) -> Protection {
    let _ = bytes;
    Protection::Clear
}

/// Tells from a MIME part whether it is an encrypted message or attachment (S/MIME enveloped
/// data, PGP/MIME, armoured PGP, Microsoft rights-managed mail). `mime_type` is lower-cased
/// `type/subtype`; `params` are its Content-Type parameters; `body` is decoded.
pub fn of_part(mime_type: &str, params: &[(String, String)], name: &str, body: &[u8]) -> Protection {
    let _ = (mime_type, params, name, body);
    Protection::Clear
}
