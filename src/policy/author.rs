//! The text the author of a message wrote, for the rules that read a message's own words
//! (personal data pasted into the body, pupils named, a password written beside its file).
//!
//! What the author wrote now is the message's own text part with the quoted thread taken out:
//! `>` lines and the attribution above them ("On … wrote:", Welsh "Ar … ysgrifennodd:"),
//! Outlook's unmarked quote ("From: … Sent: …", Welsh "Oddi wrth: … Anfonwyd: …",
//! "-----Original Message-----", "-----Neges Wreiddiol-----") and everything below it. A reply
//! that quotes a colleague's list is not the sender pasting it; an answer written between the
//! quotes is the sender's.
//!
//! The text/plain part is read when there is one (a client's HTML alternative says the same
//! again); text/html, converted to text with its lines, table rows and cells kept, only when
//! there is no plain part.

use super::disclaimer::{self, placement};
use super::sensitive::extract::html;

/// The text the author of `raw` wrote: see the module's doc. Pure; reads at most the first MiB
/// of each text part.
pub fn author_text(raw: &[u8]) -> String {
    let parts = disclaimer::main_texts(raw);
    let plain = parts.iter().any(|(_, is_html)| !is_html);
    let mut out = String::new();
    for (text, is_html) in parts {
        if is_html && plain {
            continue;
        }
        let text = if is_html {
            let html = placement::without_blockquotes(disclaimer::quote_cut(&text));
            html::strip(&html)
        } else {
            text
        };
        // The converted HTML can still hold a quote written as text (Outlook's older reply
        // header, a forward pasted into the editor).
        out.push_str(&placement::unquoted_text(&text));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(body: &str) -> Vec<u8> {
        format!(
            "From: t.baker@school.example\r\nTo: x@county.example\r\nSubject: s\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
        )
        .into_bytes()
    }

    #[test]
    fn a_gmail_reply_keeps_only_the_answer() {
        let m = plain(
            "Thanks, that's fine.\r\n\r\nOn Mon, 23 Nov 2026 at 10:00, Jo Bloggs <jo@county.example> wrote:\r\n\
             > Jamie Carter UPN H801200001001\r\n> Olivia Smith UPN B801200005001\r\n",
        );
        let t = author_text(&m);
        assert!(t.contains("Thanks, that's fine."), "{t}");
        assert!(!t.contains("UPN"), "{t}");
        assert!(!t.contains("wrote:"), "{t}");
    }

    #[test]
    fn an_outlook_reply_stops_at_its_header_block() {
        let m = plain(
            "Please see my answers.\r\n\r\n________________________________\r\n\
             From: Jo Bloggs <jo@county.example>\r\nSent: 23 November 2026 10:00\r\n\
             To: Tom Baker\r\nSubject: list\r\n\r\nJamie Carter 14/03/2011 EHCP\r\n",
        );
        let t = author_text(&m);
        assert!(t.contains("Please see my answers."));
        assert!(!t.contains("EHCP"), "{t}");
        let m = plain(
            "See below.\r\n\r\n-----Original Message-----\r\nFrom: Jo\r\nJamie Carter EHCP\r\n",
        );
        assert!(!author_text(&m).contains("EHCP"));
        let m = plain("See below.\r\n\r\nFrom: Jo\r\nDate: Mon\r\n\r\nJamie Carter EHCP\r\n");
        assert!(!author_text(&m).contains("EHCP"));
    }

    #[test]
    fn welsh_threads_are_quotes_too() {
        let m = plain(
            "Diolch yn fawr.\r\n\r\nAr Llun, 23 Tach 2026 am 10:00, Siân Jones <s@cyngor.example> ysgrifennodd:\r\n\
             > Y cyfrinair yw Draig2026\r\n",
        );
        let t = author_text(&m);
        assert!(t.contains("Diolch yn fawr."));
        assert!(!t.contains("Draig2026"), "{t}");
        let m = plain(
            "Gweler isod.\r\n\r\nOddi wrth: Siân Jones <s@cyngor.example>\r\nAnfonwyd: 23 Tachwedd 2026 10:00\r\n\
             At: Tom\r\n\r\nJamie Carter EHCP\r\n",
        );
        assert!(!author_text(&m).contains("EHCP"));
        let m = plain("Gweler isod.\r\n\r\n-----Neges Wreiddiol-----\r\nJamie Carter EHCP\r\n");
        assert!(!author_text(&m).contains("EHCP"));
    }

    #[test]
    fn answers_written_between_quotes_are_the_authors() {
        let m = plain("> Which pupils?\r\nJamie Carter and Olivia Smith.\r\n> Thanks\r\n");
        let t = author_text(&m);
        assert!(t.contains("Jamie Carter and Olivia Smith."));
        assert!(!t.contains("Which pupils"));
    }

    #[test]
    fn the_plain_part_is_read_and_not_its_html_twin() {
        let m = b"From: t@school.example\r\nTo: x@y.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\r\nPlain words\r\n--b\r\n\
            Content-Type: text/html; charset=utf-8\r\n\r\n<p>Html words</p>\r\n--b--\r\n";
        let t = author_text(m);
        assert!(t.contains("Plain words"));
        assert!(!t.contains("Html words"));
    }

    #[test]
    fn html_alone_is_converted_with_its_rows_and_without_its_quote() {
        let m = b"From: t@school.example\r\nTo: x@y.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
            Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Here is the list:</p>\
            <table><tr><td>Jamie Carter</td><td>H801200001001</td></tr>\
            <tr><td>Olivia Smith</td><td>B801200005001</td></tr></table>\
            <div class=\"gmail_quote\"><div>On Mon, Jo wrote:</div><blockquote>old &amp; quoted</blockquote></div>\
            </body></html>\r\n";
        let t = author_text(m);
        assert!(t.contains("Here is the list:\n"), "{t:?}");
        assert!(t.contains("Jamie Carter\tH801200001001\n"), "{t:?}");
        assert!(!t.contains("quoted"), "{t:?}");
        let outlook = b"From: t@school.example\r\nTo: x@y.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
            Content-Type: text/html; charset=utf-8\r\n\r\n<p>New words</p><p>-----Original Message-----<br>From: x</p><p>Old words</p>\r\n";
        let t = author_text(outlook);
        assert!(t.contains("New words") && !t.contains("Old words"), "{t:?}");
    }

    #[test]
    fn base64_and_quoted_printable_are_decoded() {
        let m = b"From: t@school.example\r\nTo: x@y.example\r\nSubject: s\r\n\
            Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
            Si=C3=A2n's password is here=\r\n now\r\n";
        assert!(author_text(m).contains("Siân's password is here now"));
    }

    #[test]
    fn attachments_are_not_the_authors_text() {
        let m = b"From: t@school.example\r\nTo: x@y.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
            Content-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\n\
            Content-Type: text/plain; name=list.txt\r\nContent-Disposition: attachment; filename=list.txt\r\n\r\n\
            Jamie Carter H801200001001\r\n--b--\r\n";
        let t = author_text(m);
        assert!(t.contains("See attached."));
        assert!(!t.contains("H801200001001"));
    }

    #[test]
    fn every_corpus_message_is_read_without_its_quoted_lines() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/corpus");
        let mut read = 0;
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                let text = author_text(&bytes);
                // No line the author's text keeps is a `>` quote followed only by quotes.
                let lines: Vec<&str> = text.lines().collect();
                if let Some(last) = lines.iter().rposition(|l| !l.trim().is_empty()) {
                    assert!(
                        !lines[last].trim_start().starts_with('>'),
                        "{}: the text ends in a quote: {:?}",
                        path.display(),
                        lines[last]
                    );
                }
                read += 1;
            }
        }
        assert!(read > 100, "the corpus holds {read} files");
    }
}
