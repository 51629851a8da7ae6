//! Every message of the shared corpus (../shared/corpus: real-world and hostile mail from
//! fourteen mail libraries) through the sensitive-attachment rules: none panics, none is lost
//! to an internal error, and what is held is listed with why, so a change that starts holding
//! ordinary mail shows here.

mod common;

use schoolgate::config::Config;
use schoolgate::directory::Directory;
use schoolgate::policy::sensitive;

/// Corpus attachments unscannable today, each looked at, all PDFs no reader can open:
/// mikel-mail/attachment_pdf.eml and attachment_pdf_lf.eml ("broken.pdf", cut off after 1 KB,
/// no xref or trailer) and mime4j/boundary-name-clash.msg (a 31-byte stand-in with a bogus
/// startxref). More means the extractors fail on mail they should read.
const MAX_UNSCANNABLE: usize = 3;

#[test]
fn the_corpus_passes_without_panics_and_ordinary_mail_is_not_held() {
    let config = Config::load(&common::example_config()).unwrap();
    let directory =
        Directory::load(&common::example_directory(), &config.school.staff_roles).unwrap();
    let today = jiff::civil::date(2026, 11, 23);
    let mut unscannable = Vec::new();
    let mut sensitive_found = Vec::new();
    for path in common::corpus_files() {
        let message = std::fs::read(&path).unwrap();
        let name = path
            .strip_prefix(common::corpus_dir())
            .unwrap_or(&path)
            .display()
            .to_string();
        let findings =
            std::panic::catch_unwind(|| sensitive::check(&message, &config, &directory, today))
                .unwrap_or_else(|_| panic!("{name}: the sensitive-attachment check panicked"));
        for f in findings {
            assert!(!f.detail.contains("internal error"), "{name}: {}", f.detail);
            let line = format!("{name}: {} — {}", f.rule, f.detail);
            if f.rule == "unscannable-attachment" {
                unscannable.push(line);
            } else {
                sensitive_found.push(line);
            }
        }
    }
    println!("unscannable:\n{}", unscannable.join("\n"));
    println!("sensitive:\n{}", sensitive_found.join("\n"));
    assert!(
        sensitive_found.is_empty(),
        "ordinary corpus mail found sensitive:\n{}",
        sensitive_found.join("\n")
    );
    assert!(
        unscannable.len() <= MAX_UNSCANNABLE,
        "{} corpus attachments unscannable:\n{}",
        unscannable.len(),
        unscannable.join("\n")
    );
}
