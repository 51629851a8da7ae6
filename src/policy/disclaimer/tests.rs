use super::*;

const TEXT: &str = "The views expressed are not necessarily those of Example Academy.";
const HTML: &str = "<p style=\"font-size:small\">The views expressed are not necessarily those of Example Academy.</p>";
const WELSH: &str = "Ysgol Enghraifft \u{2014} the views expressed are not necessarily those of the school\u{2019}s governors; caf\u{e9}.";

fn add(m: &[u8]) -> Rewrite {
    add_disclaimer(m, TEXT, HTML, OnSigned::Skip)
}

fn out(r: &Rewrite) -> &[u8] {
    r.message.as_deref().expect("the message was rewritten")
}

/// The decoded text of every text part, in order.
fn texts(m: &[u8]) -> Vec<String> {
    let msg = mail_parser::MessageParser::new().parse(m).expect("parses");
    msg.parts
        .iter()
        .filter_map(|p| match &p.body {
            mail_parser::PartType::Text(t) | mail_parser::PartType::Html(t) => Some(t.to_string()),
            _ => None,
        })
        .collect()
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[test]
fn plain_text_gets_it_at_the_end_and_nothing_else_changes() {
    let m = b"From: t.baker@example-academy.sch.uk\r\nSubject: Trip\r\n\r\nDear parents,\r\nthe trip is on.\r\n";
    let r = add(m);
    assert_eq!(r.outcome, DisclaimerOutcome::Appended);
    let o = out(&r);
    assert!(o.starts_with(b"From: t.baker@example-academy.sch.uk\r\nSubject: Trip\r\n\r\nDear parents,\r\nthe trip is on.\r\n"));
    assert_eq!(
        std::str::from_utf8(o).unwrap(),
        format!(
            "From: t.baker@example-academy.sch.uk\r\nSubject: Trip\r\n\r\nDear parents,\r\nthe trip is on.\r\n\r\n{TEXT}\r\n"
        )
    );
}

#[test]
fn it_is_added_once_however_often_the_message_passes() {
    let m = b"Subject: x\r\n\r\nhello\r\n";
    let once = add(m);
    let twice = add(out(&once));
    assert_eq!(twice.outcome, DisclaimerOutcome::AlreadyPresent);
    assert!(twice.message.is_none());
}

#[test]
fn a_disclaimer_in_the_quoted_thread_does_not_count() {
    let m = format!(
        "Subject: Re: x\r\n\r\nThanks!\r\n\r\nOn Mon, 23 Nov 2026 at 10:00, Tom <t@x> wrote:\r\n> hello\r\n> {TEXT}\r\n"
    );
    let r = add(m.as_bytes());
    assert_eq!(r.outcome, DisclaimerOutcome::Appended);
    let o = String::from_utf8(out(&r).to_vec()).unwrap();
    assert_eq!(count(&o, TEXT), 2);
    let mine = o
        .find(&format!("{TEXT}\r\n\r\nOn Mon"))
        .expect("above the attribution");
    assert!(mine < o.find("> hello").unwrap());
}

const ALTERNATIVE: &[u8] = b"From: a@example-academy.sch.uk\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"000b\"\r\n\r\n--000b\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nYes, see you there =E2=80=94 Tom\r\n\r\nOn Mon, 23 Nov 2026 at 10:00, Jo Bloggs <jo@example.org> wrote:\r\n\r\n> Are you coming?\r\n\r\n--000b\r\nContent-Type: text/html; charset=\"UTF-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<div dir=3D\"ltr\">Yes, see you there =E2=80=94 Tom</div><br><div class=3D\"gm=\r\nail_quote\"><div dir=3D\"ltr\" class=3D\"gmail_attr\">On Mon, 23 Nov 2026 at 10:0=\r\n0, Jo Bloggs wrote:<br></div><blockquote class=3D\"gmail_quote\">Are you coming?</blockquote></div>\r\n\r\n--000b--\r\n";

#[test]
fn both_alternatives_get_it_above_the_gmail_thread() {
    let r = add(ALTERNATIVE);
    assert_eq!(r.outcome, DisclaimerOutcome::Appended);
    let o = out(&r);
    let t = texts(o);
    assert_eq!(t.len(), 2);
    assert!(
        t[0].find(TEXT).unwrap() < t[0].find("On Mon").unwrap(),
        "{}",
        t[0]
    );
    assert!(
        t[1].find(HTML).unwrap() < t[1].find("gmail_quote").unwrap(),
        "{}",
        t[1]
    );
    // The original texts are intact around the insertion.
    let orig = texts(ALTERNATIVE);
    assert_eq!(t[0].replace(&format!("{TEXT}\r\n\r\n"), ""), orig[0]);
    assert_eq!(t[1].replace(&format!("\r\n{HTML}\r\n"), ""), orig[1]);
    let longest = |m: &[u8]| m.split(|&b| b == b'\n').map(<[u8]>::len).max().unwrap_or(0);
    assert!(longest(o) <= longest(ALTERNATIVE).max(77), "no line grows");
    assert_eq!(add(o).outcome, DisclaimerOutcome::AlreadyPresent);
}

#[test]
fn latin1_that_cannot_hold_the_disclaimer_becomes_utf8_and_says_so() {
    let m = b"Content-Type: text/plain; charset=iso-8859-1; format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n\r\nCaf\xe9 au lait\r\n";
    let r = add_disclaimer(m, WELSH, "", OnSigned::Skip);
    assert_eq!(r.outcome, DisclaimerOutcome::Appended);
    let o = out(&r);
    let s = std::str::from_utf8(o).expect("now UTF-8");
    assert!(
        s.starts_with("Content-Type: text/plain; charset=utf-8; format=flowed\r\n"),
        "{s}"
    );
    assert!(s.contains("Caf\u{e9} au lait\r\n\r\n"));
    assert!(s.contains(WELSH));
    assert!(!r.notes.is_empty());
    // Windows-1252 holds the em dash and the curly quote: it stays windows-1252.
    let m = b"Content-Type: text/plain; charset=windows-1252\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9\r\n";
    let r = add_disclaimer(m, WELSH, "", OnSigned::Skip);
    let o = out(&r);
    assert!(o.starts_with(b"Content-Type: text/plain; charset=windows-1252\r\n"));
    assert_eq!(texts(o)[0], format!("Caf\u{e9}\r\n\r\n{WELSH}\r\n"));
}

#[test]
fn html_in_latin1_gets_character_references() {
    let m = b"Content-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<html><body><p>Caf\xe9</p></body></html>\r\n";
    let r = add_disclaimer(m, WELSH, "", OnSigned::Skip);
    let o = out(&r);
    assert!(o.starts_with(
        b"Content-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n"
    ));
    assert!(contains(o, b"Ysgol Enghraifft &#8212; the views"));
    assert!(contains(o, b"caf\xe9."), "Latin-1 é stays a Latin-1 byte");
    let body_end = memchr::memmem::find(o, b"</body>").unwrap();
    assert!(memchr::memmem::find(o, b"Ysgol").unwrap() < body_end);
}

#[test]
fn base64_html_is_re_encoded_at_its_own_width() {
    let html = "<html><body><p>Hello from Outlook</p></body></html>\r\n".repeat(5);
    let enc = base64_encode(html.as_bytes(), 76, b"\r\n", true);
    let mut m =
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            .to_vec();
    m.extend_from_slice(&enc);
    let r = add(&m);
    let o = out(&r);
    let body = &o[memchr::memmem::find(o, b"\r\n\r\n").unwrap() + 4..];
    assert!(body.split(|&b| b == b'\n').all(|l| l.len() <= 77));
    let decoded = String::from_utf8(base64_decode(body).unwrap()).unwrap();
    assert_eq!(count(&decoded, HTML), 1);
    assert!(decoded.find(HTML).unwrap() < decoded.rfind("</body>").unwrap());
}

#[test]
fn attachments_and_attached_text_files_are_left_alone() {
    let m = b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b1\r\nContent-Type: text/plain; name=notes.txt\r\nContent-Disposition: attachment; filename=notes.txt\r\n\r\nattached notes\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n";
    let r = add(m);
    let o = out(&r);
    let s = std::str::from_utf8(o).unwrap();
    assert_eq!(count(s, TEXT), 1);
    assert!(s.contains(&format!("See attached.\r\n\r\n{TEXT}\r\n--b1\r\n")));
    assert!(s.ends_with("filename=notes.txt\r\n\r\nattached notes\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n"));
}

#[test]
fn an_attachment_only_message_gets_a_part_of_its_own() {
    let m = b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n";
    let r = add(m);
    let o = out(&r);
    let parsed = mail_parser::MessageParser::new().parse(o).unwrap();
    assert_eq!(parsed.attachments().count(), 1);
    assert_eq!(
        parsed.attachments().next().unwrap().contents(),
        b"%PDF-1.4\n"
    );
    assert_eq!(texts(o), vec![TEXT.to_string()]);
    // A lone PDF is wrapped.
    let m = b"Subject: scan\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n";
    let o = add(m).message.unwrap();
    let parsed = mail_parser::MessageParser::new().parse(&o).unwrap();
    assert_eq!(parsed.subject(), Some("scan"));
    assert_eq!(
        parsed.attachments().next().unwrap().contents(),
        b"%PDF-1.4\n"
    );
}

const SIGNED: &[u8] = b"From: a@x\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=s1\r\n\r\n--s1\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n--s1\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQE=\r\n--s1--\r\n";

#[test]
fn signed_mail_is_never_altered_and_wrap_keeps_the_entity_whole() {
    let r = add(SIGNED);
    assert_eq!(r.outcome, DisclaimerOutcome::SkippedSigned);
    assert!(r.message.is_none());
    let r = add_disclaimer(SIGNED, TEXT, HTML, OnSigned::Wrap);
    assert_eq!(r.outcome, DisclaimerOutcome::Wrapped);
    let o = out(&r);
    let entity_body = &SIGNED[memchr::memmem::find(SIGNED, b"\r\n\r\n").unwrap() + 4..];
    assert!(
        contains(o, entity_body),
        "the signed body is inside, byte for byte"
    );
    assert!(contains(o, b"\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=s1\r\n\r\n--s1\r\n"));
    assert!(o.starts_with(b"From: a@x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed;"));
    assert_eq!(
        add_disclaimer(o, TEXT, HTML, OnSigned::Wrap).outcome,
        DisclaimerOutcome::AlreadyPresent
    );
    let enc = b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAG\r\n";
    assert_eq!(add(enc).outcome, DisclaimerOutcome::SkippedEncrypted);
    let pgp = b"Subject: x\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nhi\r\n";
    assert_eq!(add(pgp).outcome, DisclaimerOutcome::SkippedSigned);
}

#[test]
fn a_message_with_no_body_gets_one() {
    let m = b"From: a@x\r\nSubject: empty\r\n\r\n";
    let o = add(m).message.unwrap();
    assert_eq!(
        o,
        format!("From: a@x\r\nSubject: empty\r\n\r\n{TEXT}\r\n").into_bytes()
    );
    let m = b"From: a@x\r\nSubject: no blank line\r\n";
    let o = add(m).message.unwrap();
    assert_eq!(
        o,
        format!("From: a@x\r\nSubject: no blank line\r\n\r\n{TEXT}\r\n").into_bytes()
    );
}

#[test]
fn no_line_grows_past_998_octets() {
    let mut m = b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<html><body>".to_vec();
    m.extend(std::iter::repeat_n(b'x', 3000));
    m.extend_from_slice(b"</body></html>\r\n");
    let o = add(&m).message.unwrap();
    assert!(o.split(|&b| b == b'\n').all(|l| l.len() <= 999));
    assert!(contains(
        &o,
        b"Content-Transfer-Encoding: quoted-printable\r\n"
    ));
    assert_eq!(count(&texts(&o)[0], HTML), 1);
}

#[test]
fn lf_messages_stay_lf() {
    let m = b"Content-Type: multipart/alternative; boundary=x\n\n--x\nContent-Type: text/plain\n\nhi\n--x\nContent-Type: text/html\n\n<p>hi</p>\n--x--\n";
    let o = add(m).message.unwrap();
    assert!(!contains(&o, b"\r\n"), "{}", String::from_utf8_lossy(&o));
    assert_eq!(texts(&o).len(), 2);
}

#[test]
fn iso_2022_jp_text_is_written_back_in_iso_2022_jp() {
    let jp = Charset::from_label("iso-2022-jp", b"").unwrap();
    let body = jp
        .encode("\u{3053}\u{3093}\u{306b}\u{3061}\u{306f}\r\n")
        .unwrap();
    let mut m =
        b"Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
            .to_vec();
    m.extend_from_slice(&body);
    let o = add(&m).message.unwrap();
    assert!(o.starts_with(
        b"Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
    ));
    let t = jp
        .decode(&o[o.len() - (o.len() - m.len() + body.len())..])
        .unwrap();
    assert_eq!(
        t,
        format!("\u{3053}\u{3093}\u{306b}\u{3061}\u{306f}\r\n\r\n{TEXT}\r\n")
    );
}

#[test]
fn malformed_structure_is_delivered_unchanged() {
    let m = b"Content-Type: multipart/mixed; boundary=gone\r\n\r\nno delimiter anywhere\r\n";
    let r = add(m);
    assert_eq!(r.outcome, DisclaimerOutcome::SkippedMalformed);
    assert!(r.message.is_none());
    let m = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nthis is not base64 at all!\r\n";
    assert_eq!(add(m).outcome, DisclaimerOutcome::SkippedMalformed);
}

#[test]
fn an_empty_disclaimer_is_off() {
    assert_eq!(
        add_disclaimer(b"Subject: x\r\n\r\nhi\r\n", " ", "", OnSigned::Skip).outcome,
        DisclaimerOutcome::Off
    );
}
