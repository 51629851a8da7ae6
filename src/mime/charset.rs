//! Writing text in a part's own charset (RFC 2046 §4.1.2), so that a disclaimer added to an
//! iso-8859-1 or ISO-2022-JP part reads right in every client.

use encoding_rs::Encoding;

/// A charset we can read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// `us-ascii` (the default for text): 7-bit only.
    Ascii,
    /// `iso-8859-1`: U+0000–U+00FF exactly (the WHATWG mapping to windows-1252 would write
    /// C1 control codes into a part that declared Latin-1).
    Latin1,
    Utf8,
    /// UTF-16, big- or little-endian.
    Utf16 {
        big_endian: bool,
    },
    /// Any other charset encoding_rs knows (windows-125x, iso-8859-x, ISO-2022-JP, Shift_JIS…).
    Other(&'static Encoding),
}

impl Charset {
    /// The charset for a `charset=` label, or `None` for one we do not know. `bom` is the
    /// start of the decoded body, for `utf-16` without an endianness.
    pub fn from_label(label: &str, bom: &[u8]) -> Option<Charset> {
        let l = label.trim().trim_matches('"').to_ascii_lowercase();
        Some(match l.as_str() {
            "" | "us-ascii" | "ascii" | "ansi_x3.4-1968" | "iso646-us" | "us" => Charset::Ascii,
            "iso-8859-1" | "iso8859-1" | "latin1" | "l1" | "iso_8859-1" | "iso-ir-100" => {
                Charset::Latin1
            }
            "utf-8" | "utf8" | "unicode-1-1-utf-8" => Charset::Utf8,
            "utf-16be" => Charset::Utf16 { big_endian: true },
            "utf-16le" => Charset::Utf16 { big_endian: false },
            "utf-16" => Charset::Utf16 {
                big_endian: !bom.starts_with(&[0xff, 0xfe]),
            },
            _ => {
                let enc = Encoding::for_label(l.as_bytes())?;
                if enc == encoding_rs::UTF_8 {
                    Charset::Utf8
                } else if enc == encoding_rs::REPLACEMENT {
                    return None;
                } else {
                    Charset::Other(enc)
                }
            }
        })
    }

    /// Does an ASCII byte always mean that ASCII character (so markers like `>` and `</body>`
    /// can be searched for in the raw bytes and new bytes spliced in at a line start)?
    pub fn ascii_compatible(&self) -> bool {
        match self {
            Charset::Ascii | Charset::Latin1 | Charset::Utf8 => true,
            Charset::Utf16 { .. } => false,
            Charset::Other(e) => e.is_ascii_compatible(),
        }
    }

    /// Decodes `bytes`; `None` when they are not valid in this charset.
    pub fn decode(&self, bytes: &[u8]) -> Option<String> {
        match self {
            Charset::Ascii => {
                // Much mail labelled us-ascii holds 8-bit text; read it as UTF-8 or Latin-1.
                match std::str::from_utf8(bytes) {
                    Ok(s) => Some(s.to_string()),
                    Err(_) => Some(bytes.iter().map(|&b| b as char).collect()),
                }
            }
            // Read as every mail client reads it: Windows-1252, whose ’ “ ” € Outlook writes into
            // parts labelled iso-8859-1 (writing stays strict Latin-1, see `encode`).
            Charset::Latin1 => Some(
                encoding_rs::WINDOWS_1252
                    .decode_without_bom_handling(bytes)
                    .0
                    .into_owned(),
            ),
            Charset::Utf8 => std::str::from_utf8(bytes).ok().map(str::to_string),
            Charset::Utf16 { big_endian } => {
                let enc = if *big_endian {
                    encoding_rs::UTF_16BE
                } else {
                    encoding_rs::UTF_16LE
                };
                enc.decode_without_bom_handling_and_without_replacement(bytes)
                    .map(|c| c.into_owned())
            }
            Charset::Other(enc) => enc
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(|c| c.into_owned()),
        }
    }

    /// Decodes `bytes`, replacing what is not valid (for searching, never for output).
    pub fn decode_lossy(&self, bytes: &[u8]) -> String {
        match self.decode(bytes) {
            Some(s) => s,
            None => match self {
                Charset::Other(enc) => enc.decode_without_bom_handling(bytes).0.into_owned(),
                _ => String::from_utf8_lossy(bytes).into_owned(),
            },
        }
    }

    /// `text` in this charset, or `None` when it cannot be represented.
    pub fn encode(&self, text: &str) -> Option<Vec<u8>> {
        match self {
            Charset::Ascii => text.is_ascii().then(|| text.as_bytes().to_vec()),
            Charset::Latin1 => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect(),
            Charset::Utf8 => Some(text.as_bytes().to_vec()),
            Charset::Utf16 { big_endian } => Some(utf16(text, *big_endian)),
            Charset::Other(enc) => {
                let (bytes, _, unmappable) = enc.encode(text);
                (!unmappable).then(|| bytes.into_owned())
            }
        }
    }

    /// `html` in this charset, characters it cannot represent written as `&#N;`.
    pub fn encode_html(&self, html: &str) -> Vec<u8> {
        if let Some(b) = self.encode(html) {
            return b;
        }
        let mut out = String::with_capacity(html.len() + 16);
        for c in html.chars() {
            let mut buf = [0u8; 4];
            if self.encode(c.encode_utf8(&mut buf)).is_some() {
                out.push(c);
            } else {
                out.push_str(&format!("&#{};", u32::from(c)));
            }
        }
        // Every character is now ASCII or representable.
        self.encode(&out).unwrap_or_else(|| out.into_bytes())
    }
}

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 2);
    for unit in text.encode_utf16() {
        let b = if big_endian {
            unit.to_be_bytes()
        } else {
            unit.to_le_bytes()
        };
        out.extend_from_slice(&b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_is_latin1_not_windows_1252() {
        let c = Charset::from_label("ISO-8859-1", b"").unwrap();
        assert_eq!(c.encode("caf\u{e9}"), Some(b"caf\xe9".to_vec()));
        assert_eq!(c.encode("\u{2014}"), None, "no em dash in Latin-1");
        let w = Charset::from_label("windows-1252", b"").unwrap();
        assert_eq!(w.encode("\u{2014}"), Some(vec![0x97]));
    }

    #[test]
    fn latin1_is_read_as_clients_read_it() {
        let c = Charset::from_label("iso-8859-1", b"").unwrap();
        assert_eq!(
            c.decode(b"It\x92s \x80 5").unwrap(),
            "It\u{2019}s \u{20ac} 5"
        );
    }

    #[test]
    fn html_gets_character_references_where_needed() {
        let c = Charset::from_label("iso-8859-1", b"").unwrap();
        assert_eq!(
            c.encode_html("caf\u{e9} \u{2014}"),
            b"caf\xe9 &#8212;".to_vec()
        );
    }

    #[test]
    fn iso_2022_jp_round_trips_and_ends_in_ascii() {
        let c = Charset::from_label("iso-2022-jp", b"").unwrap();
        assert!(!c.ascii_compatible());
        let enc = c.encode("\u{65e5}\u{672c} views").unwrap();
        assert_eq!(c.decode(&enc).unwrap(), "\u{65e5}\u{672c} views");
        assert_eq!(c.encode("caf\u{e9}"), None);
    }

    #[test]
    fn unknown_charsets_are_unknown() {
        assert!(Charset::from_label("x-made-up", b"").is_none());
        assert_eq!(Charset::from_label("", b""), Some(Charset::Ascii));
    }
}
