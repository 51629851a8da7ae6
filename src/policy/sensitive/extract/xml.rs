//! A streaming walk over an XML part read from an archive entry through [`Metered`], so a
//! 100 MB sheet is never held in memory twice and every byte is charged to the budget.

use std::io::{BufReader, Read};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::policy::sensitive::limits::{Budget, Compressed, Metered, Unscannable};

/// One step of the walk: an element opens (an empty element opens then closes), closes, or
/// text arrives (entities already resolved).
pub(super) enum Ev<'a> {
    Open(&'a BytesStart<'a>),
    Close(&'a [u8]),
    Text(&'a str),
}

/// Whether the walk goes on.
#[derive(PartialEq, Eq)]
pub(super) enum Flow {
    Go,
    Stop,
}

/// Walks the XML read from `source` (`compressed` bytes in the archive), calling `on` for each
/// step. The deadline is checked every few thousand steps.
pub(super) fn walk<R: Read>(
    source: R,
    compressed: impl Into<Compressed>,
    budget: &Budget,
    mut on: impl FnMut(Ev<'_>) -> Flow,
) -> Result<(), Unscannable> {
    let metered = Metered::new(source, budget, compressed);
    let mut reader = Reader::from_reader(BufReader::with_capacity(64 << 10, metered));
    reader.config_mut().check_end_names = false;
    let mut buf = Vec::new();
    let mut steps: u32 = 0;
    loop {
        steps = steps.wrapping_add(1);
        if steps.is_multiple_of(4096) {
            budget.check_time()?;
        }
        buf.clear();
        let event = match reader.read_event_into(&mut buf) {
            Ok(e) => e,
            Err(e) => {
                let stopped = reader.get_mut().get_mut().stopped.take();
                return Err(
                    stopped.unwrap_or_else(|| Unscannable::Corrupt(format!("bad XML: {e}")))
                );
            }
        };
        let flow = match &event {
            Event::Start(e) => on(Ev::Open(e)),
            Event::Empty(e) => {
                if on(Ev::Open(e)) == Flow::Stop {
                    Flow::Stop
                } else {
                    on(Ev::Close(e.local_name().into_inner().as_bytes()))
                }
            }
            Event::End(e) => on(Ev::Close(e.local_name().into_inner().as_bytes())),
            Event::Text(t) => on(Ev::Text(&t.xml10_content())),
            Event::CData(t) => on(Ev::Text(&t.xml10_content())),
            Event::GeneralRef(r) => match entity(&r.xml10_content()) {
                Some(c) => {
                    let mut b = [0u8; 4];
                    on(Ev::Text(c.encode_utf8(&mut b)))
                }
                None => Flow::Go,
            },
            Event::Eof => return Ok(()),
            _ => Flow::Go,
        };
        if flow == Flow::Stop {
            return Ok(());
        }
    }
}

/// The five XML entities and numeric character references.
pub(super) fn entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

/// The value of attribute `local` (any prefix), entities resolved.
pub(super) fn attr(e: &BytesStart<'_>, local: &[u8]) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        (a.key.local_name().into_inner().as_bytes() == local)
            .then(|| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .ok()
                    .map(|v| v.into_owned())
            })
            .flatten()
    })
}

/// The local name of an opening element ("p" for `w:p`).
pub(super) fn name<'a>(e: &'a BytesStart<'a>) -> &'a [u8] {
    e.local_name().into_inner().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_and_character_references_are_resolved() {
        let xml = b"<a x='1 &amp; 2'>Smith &amp; Jones &#163;5 &#x20AC;3 &unknown;</a>";
        let budget = crate::policy::sensitive::extract::tests::budget();
        let mut text = String::new();
        let mut x = None;
        walk(&xml[..], xml.len() as u64, &budget, |ev| {
            match ev {
                Ev::Text(t) => text.push_str(t),
                Ev::Open(e) => x = attr(e, b"x"),
                Ev::Close(_) => {}
            }
            Flow::Go
        })
        .unwrap();
        assert_eq!(text, "Smith & Jones £5 €3 ");
        assert_eq!(x.unwrap(), "1 & 2");
    }
}
