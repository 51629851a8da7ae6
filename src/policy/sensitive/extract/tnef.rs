//! Outlook's TNEF (`winmail.dat`, application/ms-tnef, [MS-OXTNEF]): Outlook in Rich Text mode
//! wraps a message's attachments in it, so a class list can leave inside one. The attributes are
//! walked (signature, key, then level/id/length/data/checksum records) and each attachment's
//! title and data (`attAttachTitle`, `attAttachData`) handed back to be opened like any file.
//! MAPI properties (`attAttachment`) are not decoded: attachments that carry their data only
//! there are listed in a note.

use super::{Contents, extract, inside};
use crate::policy::sensitive::limits::{Budget, Unscannable};

/// `TNEF_SIGNATURE`, little-endian at offset 0.
pub(super) const SIGNATURE: [u8; 4] = [0x78, 0x9F, 0x3E, 0x22];

const LEVEL_ATTACHMENT: u8 = 2;
/// attAttachRenddata: starts a new attachment.
const ATT_ATTACH_REND_DATA: u32 = 0x0006_9002;
const ATT_ATTACH_DATA: u32 = 0x0006_800F;
const ATT_ATTACH_TITLE: u32 = 0x0001_8010;
/// Most attributes walked; a real winmail.dat has tens.
const MAX_ATTRIBUTES: usize = 100_000;

#[derive(Default)]
struct Attached<'a> {
    title: Option<String>,
    data: Option<&'a [u8]>,
}

/// Opens each attachment inside a TNEF stream, one level deeper.
pub(super) fn open(
    location: &str,
    bytes: &[u8],
    budget: &Budget,
    depth: usize,
    out: &mut Contents,
) -> Result<(), Unscannable> {
    let attachments = attachments(bytes)?;
    let inner_depth = depth.saturating_add(1);
    for (n, a) in attachments.into_iter().enumerate() {
        let name = a.title.unwrap_or_else(|| format!("attachment {}", n + 1));
        let Some(data) = a.data else {
            out.notes.push(format!(
                "{location}: \"{name}\" has no data schoolgate can read"
            ));
            continue;
        };
        budget.enter(inner_depth)?;
        extract(
            &inside(location, &name),
            &name,
            "",
            data,
            budget,
            inner_depth,
            out,
        )?;
    }
    Ok(())
}

/// The attachments' titles and data, in order.
fn attachments(bytes: &[u8]) -> Result<Vec<Attached<'_>>, Unscannable> {
    let damaged = || Unscannable::Corrupt("a TNEF stream cut short".into());
    if bytes.get(..4) != Some(&SIGNATURE[..]) {
        return Err(Unscannable::Corrupt("not a TNEF stream".into()));
    }
    // Signature (4) and the legacy key (2).
    let mut at = 6usize;
    let mut found: Vec<Attached<'_>> = Vec::new();
    let mut count = 0usize;
    while at < bytes.len() {
        count += 1;
        if count > MAX_ATTRIBUTES {
            return Err(Unscannable::TooManyEntries(MAX_ATTRIBUTES));
        }
        let level = *bytes.get(at).ok_or_else(damaged)?;
        let id = u32_at(bytes, at + 1).ok_or_else(damaged)?;
        let len = u32_at(bytes, at + 5).ok_or_else(damaged)? as usize;
        let start = at.checked_add(9).ok_or_else(damaged)?;
        let end = start.checked_add(len).ok_or_else(damaged)?;
        let data = bytes.get(start..end).ok_or_else(damaged)?;
        // The checksum (2 bytes) follows the data.
        at = end.checked_add(2).ok_or_else(damaged)?;
        if level != LEVEL_ATTACHMENT {
            continue;
        }
        match id {
            ATT_ATTACH_REND_DATA => found.push(Attached::default()),
            ATT_ATTACH_TITLE | ATT_ATTACH_DATA => {
                if found.is_empty() {
                    found.push(Attached::default());
                }
                if let Some(last) = found.last_mut() {
                    if id == ATT_ATTACH_TITLE {
                        let title = data.split(|&b| b == 0).next().unwrap_or_default();
                        last.title = Some(String::from_utf8_lossy(title).into_owned());
                    } else {
                        last.data = Some(data);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(found)
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy::sensitive::extract::tests::{all_text, open};

    fn attribute(out: &mut Vec<u8>, level: u8, id: u32, data: &[u8]) {
        out.push(level);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        let sum: u16 = data.iter().fold(0u16, |s, &b| s.wrapping_add(u16::from(b)));
        out.extend_from_slice(&sum.to_le_bytes());
    }

    /// A winmail.dat as Outlook writes it: message attributes, then per attachment its
    /// rendering data, title and data.
    pub(crate) fn winmail(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut t = SIGNATURE.to_vec();
        t.extend_from_slice(&[0x01, 0x00]);
        attribute(&mut t, 1, 0x0008_9006, b"\x01\x00\x00\x00");
        for (name, data) in files {
            attribute(&mut t, 2, ATT_ATTACH_REND_DATA, &[0; 14]);
            let mut title = name.as_bytes().to_vec();
            title.push(0);
            attribute(&mut t, 2, ATT_ATTACH_TITLE, &title);
            attribute(&mut t, 2, ATT_ATTACH_DATA, data);
        }
        t
    }

    #[test]
    fn the_files_inside_a_winmail_dat_are_read() {
        let tnef = winmail(&[
            ("class list.csv", b"Name,UPN\nAda Lovelace,H801200001001\n"),
            ("notes.txt", b"Trip on Friday"),
        ]);
        let out = open("winmail.dat", &tnef).unwrap();
        let locations: Vec<_> = out.texts.iter().map(|t| t.location.as_str()).collect();
        assert_eq!(
            locations,
            ["winmail.dat › class list.csv", "winmail.dat › notes.txt"]
        );
        assert!(all_text(&out).contains("Ada Lovelace\tH801200001001"));
    }

    #[test]
    fn a_cut_short_winmail_dat_is_damaged() {
        let tnef = winmail(&[("class list.csv", b"Name,UPN\n")]);
        let err = open("winmail.dat", &tnef[..tnef.len() - 5]).unwrap_err();
        assert!(matches!(err, Unscannable::Corrupt(_)), "{err:?}");
    }
}
