//! Property tests over generated MIME trees: multipart/mixed, alternative and related nested up
//! to three deep; text/plain and text/html leaves in utf-8 or iso-8859-1 under every transfer
//! encoding (7bit, 8bit, quoted-printable, base64), some of them attachments; binary attachments
//! in base64; random boundaries; CRLF throughout. For every tree, add_disclaimer must keep the
//! tree (the same content types in the same order, checked with mail-parser as well as with the
//! tests' own reader), keep every attachment's bytes, and put the disclaimer exactly once in
//! every main part.

mod disclaimer_support;

use disclaimer_support as ds;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use schoolgate::config::OnSigned;
use schoolgate::policy::disclaimer::add_disclaimer;

#[derive(Debug, Clone, Copy)]
enum Charset {
    Utf8,
    Latin1,
}

#[derive(Debug, Clone, Copy)]
enum Cte {
    SevenBit,
    EightBit,
    Qp,
    Base64,
}

#[derive(Debug, Clone)]
enum Node {
    Text {
        html: bool,
        charset: Charset,
        cte: Cte,
        /// With LF line breaks; serialised as CRLF.
        text: String,
        attachment: bool,
    },
    Binary {
        data: Vec<u8>,
        name: String,
    },
    Multi {
        kind: &'static str,
        boundary: String,
        children: Vec<Node>,
    },
}

/// Words to build text from: ASCII, Latin-1 and wider UTF-8, nothing that could start a quote
/// marker, a boundary or markup.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-zA-Z0-9]{1,10}",
        1 => prop::sample::select(vec![
            "caf\u{e9}", "na\u{ef}ve", "\u{a3}12.50", "Stra\u{df}e", "r\u{e9}sum\u{e9}",
            "\u{2014}", "it\u{2019}s", "\u{20ac}5", "\u{65e5}\u{672c}", "\u{1f600}", "Ysgol",
            "e.g.", "50%", "(ok)", "a,b;c", "x-y", "\"q\"", "tab\there",
        ])
        .prop_map(str::to_string),
    ]
}

fn line() -> impl Strategy<Value = String> {
    prop::collection::vec(word(), 0..12).prop_map(|w| w.join(" "))
}

fn text_body() -> impl Strategy<Value = String> {
    prop::collection::vec(line(), 0..8).prop_map(|lines| {
        let mut s = lines.join("\n");
        if !s.is_empty() {
            s.push('\n');
        }
        s
    })
}

fn charset() -> impl Strategy<Value = Charset> {
    prop_oneof![Just(Charset::Utf8), Just(Charset::Latin1)]
}

fn cte() -> impl Strategy<Value = Cte> {
    prop_oneof![
        Just(Cte::SevenBit),
        Just(Cte::EightBit),
        Just(Cte::Qp),
        Just(Cte::Base64)
    ]
}

/// Makes `text` fit its charset and transfer encoding.
fn fit(text: &str, charset: Charset, cte: Cte) -> String {
    text.chars()
        .map(|c| match (charset, cte) {
            (_, Cte::SevenBit) if !c.is_ascii() => '?',
            (Charset::Latin1, _) if c as u32 > 0xFF => '?',
            _ => c,
        })
        .collect()
}

fn leaf() -> impl Strategy<Value = Node> {
    prop_oneof![
        4 => (any::<bool>(), charset(), cte(), text_body(), prop::bool::weighted(0.15)).prop_map(
            |(html, charset, cte, text, attachment)| Node::Text {
                html,
                charset,
                cte,
                text: fit(&text, charset, cte),
                attachment,
            }
        ),
        1 => (prop::collection::vec(any::<u8>(), 0..600), "[a-z]{1,8}").prop_map(|(data, name)| {
            Node::Binary {
                data,
                name: format!("{name}.bin"),
            }
        }),
    ]
}

fn tree() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        (
            prop::sample::select(vec!["mixed", "alternative", "related"]),
            "[A-Za-z0-9'()+_,./:=?-]{8,30}",
            prop::collection::vec(inner, 1..4),
        )
            .prop_map(|(kind, boundary, children)| Node::Multi {
                kind,
                boundary: format!("=_{boundary}"),
                children,
            })
    })
}

/// Trees with no main part: a binary or attached text root, or a multipart/mixed whose first
/// part is an attachment.
fn attachment() -> impl Strategy<Value = Node> {
    (
        prop::collection::vec(any::<u8>(), 0..300),
        charset(),
        text_body(),
        any::<bool>(),
    )
        .prop_map(|(data, charset, text, binary)| {
            if binary {
                Node::Binary {
                    data,
                    name: "report.bin".into(),
                }
            } else {
                Node::Text {
                    html: false,
                    charset,
                    cte: Cte::Base64,
                    text: fit(&text, charset, Cte::Base64),
                    attachment: true,
                }
            }
        })
}

fn tree_without_main() -> impl Strategy<Value = Node> {
    prop_oneof![
        attachment(),
        (
            attachment(),
            prop::collection::vec(tree(), 0..3),
            "[A-Za-z0-9]{8,20}"
        )
            .prop_map(|(first, rest, boundary)| Node::Multi {
                kind: "mixed",
                boundary: format!("=_{boundary}"),
                children: std::iter::once(first).chain(rest).collect(),
            }),
    ]
}

/// Makes boundaries unique within the tree (an inner part must never hold its parent's
/// delimiter).
fn uniquify(node: &mut Node, counter: &mut usize) {
    if let Node::Multi {
        boundary, children, ..
    } = node
    {
        *counter += 1;
        boundary.push_str(&format!(".{counter}"));
        for c in children {
            uniquify(c, counter);
        }
    }
}

fn serialise(node: &Node, out: &mut Vec<u8>) {
    match node {
        Node::Text {
            html,
            charset,
            cte,
            text,
            attachment,
        } => {
            let (cs, bytes): (&str, Vec<u8>) = match charset {
                Charset::Utf8 => ("utf-8", text.as_bytes().to_vec()),
                Charset::Latin1 => ("iso-8859-1", text.chars().map(|c| c as u8).collect()),
            };
            let body_text: Vec<u8> = if *html {
                let mut h = b"<html><body>\r\n<p>".to_vec();
                h.extend(bytes.iter().flat_map(|&b| {
                    if b == b'\n' {
                        b"<br>\r\n".to_vec()
                    } else {
                        vec![b]
                    }
                }));
                h.extend_from_slice(b"</p>\r\n</body></html>\r\n");
                h
            } else {
                crlf(&bytes)
            };
            let subtype = if *html { "html" } else { "plain" };
            out.extend_from_slice(
                format!("Content-Type: text/{subtype}; charset={cs}\r\n").as_bytes(),
            );
            let (cte_name, body) = match cte {
                Cte::SevenBit => ("7bit", body_text),
                Cte::EightBit => ("8bit", body_text),
                Cte::Qp => ("quoted-printable", ds::encode_qp(&body_text)),
                Cte::Base64 => ("base64", ds::encode_base64(&body_text, 76)),
            };
            out.extend_from_slice(format!("Content-Transfer-Encoding: {cte_name}\r\n").as_bytes());
            if *attachment {
                let ext = if *html { "html" } else { "txt" };
                out.extend_from_slice(
                    format!("Content-Disposition: attachment; filename=\"file.{ext}\"\r\n")
                        .as_bytes(),
                );
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
        }
        Node::Binary { data, name } => {
            out.extend_from_slice(
                format!(
                    "Content-Type: application/octet-stream; name=\"{name}\"\r\n\
                     Content-Disposition: attachment; filename=\"{name}\"\r\n\
                     Content-Transfer-Encoding: base64\r\n\r\n"
                )
                .as_bytes(),
            );
            out.extend_from_slice(&ds::encode_base64(data, 76));
        }
        Node::Multi {
            kind,
            boundary,
            children,
        } => {
            out.extend_from_slice(
                format!("Content-Type: multipart/{kind}; boundary=\"{boundary}\"\r\n\r\n")
                    .as_bytes(),
            );
            for c in children {
                out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                serialise(c, out);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        }
    }
}

fn crlf(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + b.len() / 16);
    for &x in b {
        if x == b'\n' {
            out.push(b'\r');
        }
        out.push(x);
    }
    out
}

fn message(root: &Node) -> Vec<u8> {
    let mut m = b"From: Tom Baker <t.baker@example-academy.sch.uk>\r\n\
To: Jane Parent <jane.parent@example.org>\r\n\
Subject: Generated\r\n\
Date: Mon, 23 Nov 2026 10:42:17 +0000\r\n\
Message-ID: <prop@example-academy.sch.uk>\r\n\
MIME-Version: 1.0\r\n"
        .to_vec();
    serialise(root, &mut m);
    m
}

/// The content types mail-parser sees, in order (nested messages not entered).
fn mail_parser_types(raw: &[u8]) -> Option<Vec<String>> {
    let m = mail_parser::MessageParser::new().parse(raw)?;
    Some(
        m.parts
            .iter()
            .map(|p| {
                use mail_parser::MimeHeaders;
                p.content_type()
                    .map(|ct| {
                        format!(
                            "{}/{}",
                            ct.ctype().to_ascii_lowercase(),
                            ct.subtype().unwrap_or("").to_ascii_lowercase()
                        )
                    })
                    .unwrap_or_else(|| "text/plain".into())
            })
            .collect(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // Failing cases are kept beside the fixtures (proptest cannot find a lib.rs for an
        // integration test's default location).
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "fixtures/disclaimer/props.proptest-regressions"
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_rewrite_keeps_the_tree_and_the_attachments(mut root in tree()) {
        uniquify(&mut root, &mut 0);
        let raw = message(&root);
        let r = add_disclaimer(&raw, ds::TEXT, ds::HTML, OnSigned::Skip);
        let outcome = ds::outcome_name(r.outcome);
        prop_assert_eq!(&outcome, "appended", "a well-formed message must get the disclaimer");
        let out = r.message.clone();
        prop_assert!(out.is_some(), "appended but no rewritten message");
        let out = out.unwrap();

        let checked = ds::check_rewrite(&raw, &out, ds::EXAMPLE);
        prop_assert!(
            checked.failures.is_empty(),
            "{}\n--- original ---\n{}\n--- rewritten ---\n{}",
            checked.failures.join("\n"),
            String::from_utf8_lossy(&raw),
            String::from_utf8_lossy(&out)
        );

        // mail-parser sees the same tree (plus the added part when there was no main part).
        let orig = ds::parse(&raw);
        let analysis = ds::analyse(&orig);
        let before = mail_parser_types(&raw);
        let after = mail_parser_types(&out);
        prop_assert!(after.is_some(), "mail-parser cannot parse the output");
        if let (Some(before), Some(after)) = (before, after) {
            match ds::expected_shape(&orig, &analysis) {
                ds::Shape::Same => prop_assert_eq!(&before, &after),
                ds::Shape::AddedPart => {
                    prop_assert_eq!(after.len(), before.len() + 1);
                    prop_assert_eq!(&after[..before.len()], &before[..]);
                }
                ds::Shape::Wrapped => prop_assert_eq!(after.len(), before.len() + 2),
            }
        }
    }

    #[test]
    fn a_second_pass_adds_nothing(mut root in tree()) {
        uniquify(&mut root, &mut 0);
        let raw = message(&root);
        prop_assume!(!ds::analyse(&ds::parse(&raw)).main.is_empty());
        let once = add_disclaimer(&raw, ds::TEXT, ds::HTML, OnSigned::Skip);
        prop_assume!(once.message.is_some());
        let once = once.message.unwrap_or_default();
        let again = add_disclaimer(&once, ds::TEXT, ds::HTML, OnSigned::Skip);
        prop_assert_eq!(
            ds::outcome_name(again.outcome),
            "already-present",
            "--- after one pass ---\n{}",
            String::from_utf8_lossy(&once)
        );
        prop_assert!(again.message.is_none());
    }

    /// A message with no main part gets a disclaimer part of its own; a second pass must
    /// recognise that part and not add another.
    #[test]
    fn a_second_pass_adds_no_second_disclaimer_part(mut root in tree_without_main()) {
        uniquify(&mut root, &mut 0);
        let raw = message(&root);
        prop_assume!(ds::analyse(&ds::parse(&raw)).main.is_empty());
        let once = add_disclaimer(&raw, ds::TEXT, ds::HTML, OnSigned::Skip);
        prop_assume!(once.message.is_some());
        let once = once.message.unwrap_or_default();
        let again = add_disclaimer(&once, ds::TEXT, ds::HTML, OnSigned::Skip);
        prop_assert_eq!(
            ds::outcome_name(again.outcome),
            "already-present",
            "--- after one pass ---\n{}",
            String::from_utf8_lossy(&once)
        );
        prop_assert!(again.message.is_none());
    }

    #[test]
    fn a_non_ascii_disclaimer_keeps_the_tree_too(mut root in tree()) {
        uniquify(&mut root, &mut 0);
        let raw = message(&root);
        let r = add_disclaimer(&raw, ds::TEXT_NONASCII, ds::HTML_NONASCII, OnSigned::Skip);
        prop_assert_eq!(ds::outcome_name(r.outcome), "appended");
        let out = r.message.clone().unwrap_or_default();
        let checked = ds::check_rewrite(&raw, &out, ds::NONASCII);
        prop_assert!(
            checked.failures.is_empty(),
            "{}\n--- original ---\n{}\n--- rewritten ---\n{}",
            checked.failures.join("\n"),
            String::from_utf8_lossy(&raw),
            String::from_utf8_lossy(&out)
        );
        // A text part in iso-8859-1 cannot hold an em dash: it must have become utf-8.
        for m in &checked.mains {
            if m.mime == "text/plain" {
                prop_assert!(
                    m.charset_after.as_deref() == Some("utf-8"),
                    "{}text/plain: charset {:?} cannot hold the disclaimer",
                    ds::show_path(&m.path),
                    m.charset_after
                );
            }
        }
    }
}
