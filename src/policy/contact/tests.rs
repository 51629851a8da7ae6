use std::path::Path;

use super::*;
use crate::config::Config;
use crate::directory::Directory;

const DIRECTORY: &str = "role,name,school_email,personal_emails,personal_phones,date_of_birth,status
headteacher,Margaret Hughes,head@example-academy.sch.uk,,,,current
staff,Tom Baker,t.baker@example-academy.sch.uk,tombaker77@gmail.com,07700 900123,,current
pupil,Jamie Smith,j.smith@pupils.example-academy.sch.uk,jamie.smith2010@gmail.com,,2010-03-14,current
pupil,Ava Jones,a.jones@pupils.example-academy.sch.uk,ava.j@hotmail.co.uk,,2008-06-01,former
pupil,Old Boy,o.boy@pupils.example-academy.sch.uk,oldboy@gmail.com,,2007-01-01,former
staff,Sue Green,s.green@example-academy.sch.uk,sue@greenfamily.org.uk,01632 960777,,current
parent,Helen Smith,,helen.smith@gmail.com,07700 900555,,current
";

fn setup() -> (Config, Directory) {
    let config = Config::parse(
        Path::new("example.toml"),
        include_str!("../../../policies/example.toml"),
    )
    .unwrap();
    let dir = Directory::parse(
        Path::new("d.csv"),
        DIRECTORY.as_bytes(),
        &config.school.staff_roles,
    )
    .unwrap();
    (config, dir)
}

/// Monday 23 November 2026, 10:00 in London (GMT).
fn monday_morning() -> jiff::Timestamp {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

fn run(
    from: &str,
    to: &[&str],
    header: &[(Option<&str>, &str)],
    text: &str,
    at: jiff::Timestamp,
) -> Vec<Flag> {
    let (config, dir) = setup();
    run_in(&config, &dir, from, to, header, text, at)
}

fn run_in(
    config: &Config,
    dir: &Directory,
    from: &str,
    to: &[&str],
    header: &[(Option<&str>, &str)],
    text: &str,
    at: jiff::Timestamp,
) -> Vec<Flag> {
    let envelope = Envelope {
        mail_from: from.into(),
        rcpt_to: to.iter().map(|s| s.to_string()).collect(),
        smtputf8: false,
        body_8bit: false,
    };
    let header: Vec<(Option<String>, String)> = header
        .iter()
        .map(|(n, a)| (n.map(str::to_string), a.to_string()))
        .collect();
    check(
        &Message {
            envelope: &envelope,
            header_recipients: &header,
            new_text: &|| text.to_string(),
            received: at,
        },
        config,
        dir,
    )
}

fn rules(flags: &[Flag]) -> Vec<(&str, &str)> {
    flags
        .iter()
        .map(|f| (f.rule, f.evidence.as_str()))
        .collect()
}

const TOM: &str = "t.baker@example-academy.sch.uk";
const JAMIE: &str = "j.smith@pupils.example-academy.sch.uk";

#[test]
fn a_pupils_school_address_in_hours_is_fine() {
    let f = run(
        TOM,
        &[JAMIE],
        &[],
        "Your homework is due Friday.\nMr Baker\nt.baker@example-academy.sch.uk\n",
        monday_morning(),
    );
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn a_pupils_personal_address_is_flagged() {
    let f = run(
        TOM,
        &["jamie.smith2010@gmail.com"],
        &[],
        "hi",
        monday_morning(),
    );
    assert_eq!(
        rules(&f),
        vec![("pupil-personal-address", "jamie.smith2010@gmail.com")]
    );
    assert!(f[0].detail.contains("Jamie Smith"));
}

#[test]
fn a_non_school_address_with_a_pupils_name_is_flagged_however_the_name_is_written() {
    for name in ["JAMIE  SMITH", "Smith, Jamie", "Jamie Smíth"] {
        let f = run(
            TOM,
            &["jsmith.new@outlook.com"],
            &[(Some(name), "jsmith.new@outlook.com")],
            "hi",
            monday_morning(),
        );
        assert_eq!(f.len(), 1, "{name}: {f:?}");
        assert_eq!(f[0].rule, "pupil-personal-address");
    }
    // A parent is not a pupil.
    let f = run(
        TOM,
        &["mrs.smith@example.org"],
        &[(Some("Helen Smith"), "mrs.smith@example.org")],
        "hi",
        monday_morning(),
    );
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn a_former_pupil_is_a_pupil_until_18_and_not_at_19() {
    let f = run(TOM, &["ava.j@hotmail.co.uk"], &[], "hi", monday_morning());
    assert_eq!(f.len(), 1, "Ava is 18: {f:?}");
    let f = run(TOM, &["oldboy@gmail.com"], &[], "hi", monday_morning());
    assert!(f.is_empty(), "a former pupil now 19 is not a pupil: {f:?}");
}

#[test]
fn a_staff_personal_address_beside_a_pupil_or_a_personal_sender_is_flagged() {
    let f = run(
        TOM,
        &[JAMIE, "tombaker77@gmail.com"],
        &[],
        "hi",
        monday_morning(),
    );
    assert_eq!(
        rules(&f),
        vec![("staff-personal-address", "tombaker77@gmail.com")]
    );
    let f = run(
        "tombaker77@gmail.com",
        &[JAMIE],
        &[],
        "hi",
        monday_morning(),
    );
    assert_eq!(
        rules(&f),
        vec![("staff-personal-address", "tombaker77@gmail.com")]
    );
    assert!(f[0].detail.contains("Tom Baker"));
    // The same personal address to a colleague is not a safeguarding matter.
    let f = run(
        TOM,
        &["head@example-academy.sch.uk", "tombaker77@gmail.com"],
        &[],
        "hi",
        monday_morning(),
    );
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn personal_contact_details_in_the_new_text_are_flagged_but_not_in_the_quote() {
    let f = run(
        TOM,
        &[JAMIE],
        &[],
        "Text me on 07700 900123 or mail tombaker77@gmail.com\n",
        monday_morning(),
    );
    assert_eq!(
        rules(&f),
        vec![
            ("personal-contact-shared", "tombaker77@gmail.com"),
            ("personal-contact-shared", "07700 900123")
        ]
    );
    assert!(f[1].detail.contains("own personal phone"));
    let f = run(
        TOM,
        &[JAMIE],
        &[],
        "Call +44 7911 123456 if lost.\n",
        monday_morning(),
    );
    assert_eq!(
        rules(&f),
        vec![("personal-contact-shared", "+44 7911 123456")]
    );
    // The school's number and a landline are not mobiles.
    let f = run(
        TOM,
        &[JAMIE],
        &[],
        "Ring the office on 01632 960000.\n",
        monday_morning(),
    );
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn contact_out_of_hours_is_flagged_in_the_schools_time_zone() {
    let evening: jiff::Timestamp = "2026-11-23T18:30:00Z".parse().unwrap();
    let f = run(TOM, &[JAMIE], &[], "hi", evening);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rule, "out-of-hours-pupil-contact");
    assert!(
        f[0].evidence.contains("Mon 23 Nov 2026 18:30"),
        "{}",
        f[0].evidence
    );
    // 17:30 UTC in June is 18:30 in London (BST): out of hours.
    let june: jiff::Timestamp = "2026-06-15T17:30:00Z".parse().unwrap();
    assert_eq!(run(TOM, &[JAMIE], &[], "hi", june).len(), 1);
    // Saturday morning.
    let saturday: jiff::Timestamp = "2026-11-28T10:00:00Z".parse().unwrap();
    assert_eq!(run(TOM, &[JAMIE], &[], "hi", saturday).len(), 1);
    // The same evening message to a colleague is fine.
    assert!(run(TOM, &["head@example-academy.sch.uk"], &[], "hi", evening).is_empty());
}

#[test]
fn addresses_and_mobiles_are_found_in_free_text() {
    assert_eq!(
        addresses_in("write to (Tom.Baker@Gmail.com), or a@b."),
        vec!["tom.baker@gmail.com"]
    );
    assert_eq!(
        mobiles_in("07700-900-123, 0770090012, 077009001234"),
        vec!["07700-900-123"]
    );
}

#[test]
fn a_number_in_the_quoted_earlier_message_is_not_a_share() {
    let m = b"From: t.baker@example-academy.sch.uk\r\nTo: j.smith@pupils.example-academy.sch.uk\r\nSubject: Re: trip\r\n\r\nSee you there.\r\n\r\nOn Mon, 23 Nov 2026 at 09:00, Jamie Smith <j.smith@pupils.example-academy.sch.uk> wrote:\r\n> my mum's number is 07700 900456\r\n";
    let text = crate::policy::disclaimer::new_text(m);
    assert!(text.contains("See you there."));
    assert!(!text.contains("07700"), "{text}");
    assert!(run(TOM, &[JAMIE], &[], &text, monday_morning()).is_empty());
    let m2 = b"Content-Type: text/html\r\n\r\n<p>Ring me on 07700 900123</p><div class=\"gmail_quote\">mum: 07700 900456</div>";
    let f = run(
        TOM,
        &[JAMIE],
        &[],
        &crate::policy::disclaimer::new_text(m2),
        monday_morning(),
    );
    assert_eq!(rules(&f), vec![("personal-contact-shared", "07700 900123")]);
}

#[test]
fn an_international_number_with_its_trunk_zero_is_a_mobile() {
    assert_eq!(
        mobiles_in("call me on +44 (0)7700 900789.\r\n"),
        vec!["+44 (0)7700 900789"]
    );
}

#[test]
fn a_gmail_variant_of_a_pupils_known_address_is_flagged() {
    for variant in [
        "Jamie.Smith.2010@gmail.com",
        "jamiesmith2010+school@googlemail.com",
        "JAMIE.SMITH2010@GMAIL.COM",
    ] {
        let f = run(TOM, &[variant], &[], "hi", monday_morning());
        assert_eq!(
            rules(&f),
            vec![("pupil-personal-address", variant.to_lowercase().as_str())],
            "{variant}"
        );
    }
    // The same with dots at a provider that does not ignore them is another mailbox.
    let f = run(TOM, &["ava.j@hotmail.co.uk"], &[], "hi", monday_morning());
    assert_eq!(f.len(), 1);
    let f = run(TOM, &["avaj@hotmail.co.uk"], &[], "hi", monday_morning());
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn an_mis_display_name_at_a_non_school_address_finds_the_pupil() {
    for name in ["SMITH Jamie (Year 9)", "SMITH Jamie", "Smith, Jamie (9C)"] {
        let f = run(
            TOM,
            &["js.new@outlook.com"],
            &[(Some(name), "js.new@outlook.com")],
            "hi",
            monday_morning(),
        );
        assert_eq!(f.len(), 1, "{name}: {f:?}");
        assert_eq!(f[0].rule, "pupil-personal-address");
    }
}

#[test]
fn an_organisations_address_to_a_pupil_is_not_personal() {
    for text in [
        "For your remark request write to eos@aqa.org.uk.\n",
        "The council's admissions team is admissions@northshire.gov.uk.\n",
        "Email the exams officer, exams@example-academy.sch.uk, or UCAS at enquiries@ucas.ac.uk.\n",
        "Ring the office on 01632 960000.\n",
    ] {
        let f = run(TOM, &[JAMIE], &[], text, monday_morning());
        assert!(f.is_empty(), "{text}: {f:?}");
    }
}

#[test]
fn a_consumer_mail_address_or_a_staff_members_personal_details_to_a_pupil_are_flagged() {
    // Another teacher's personal Gmail (a variant of it), not the sender's.
    let f = run(
        "s.green@example-academy.sch.uk",
        &[JAMIE],
        &[],
        "Mr Baker says mail him at Tom.Baker77+x@gmail.com\n",
        monday_morning(),
    );
    assert_eq!(
        rules(&f),
        vec![("personal-contact-shared", "tom.baker77+x@gmail.com")]
    );
    assert!(
        f[0].detail
            .contains("a personal address of Tom Baker, a member of staff"),
        "{}",
        f[0].detail
    );
    // A staff member's personal address and landline at no consumer provider.
    let f = run(
        TOM,
        &[JAMIE],
        &[],
        "Mrs Green is on sue@greenfamily.org.uk or 01632 960777\n",
        monday_morning(),
    );
    assert_eq!(
        rules(&f),
        vec![
            ("personal-contact-shared", "sue@greenfamily.org.uk"),
            ("personal-contact-shared", "01632 960777")
        ]
    );
    // The sender's own.
    let f = run(
        "s.green@example-academy.sch.uk",
        &[JAMIE],
        &[],
        "ring me on +44 1632 960777\n",
        monday_morning(),
    );
    assert!(f[0].detail.contains("sender's own personal phone"), "{f:?}");
    // Any address at a consumer provider, hotmail under any country ending.
    for addr in [
        "someone@hotmail.fr",
        "x@yahoo.co.uk",
        "y@icloud.com",
        "z@btinternet.com",
    ] {
        let f = run(
            TOM,
            &[JAMIE],
            &[],
            &format!("write to {addr}\n"),
            monday_morning(),
        );
        assert_eq!(rules(&f), vec![("personal-contact-shared", addr)], "{addr}");
        assert!(f[0].detail.contains("consumer mail provider"), "{f:?}");
    }
}

#[test]
fn a_parents_own_address_is_not_a_staff_members_personal_contact() {
    let f = run(
        TOM,
        &[JAMIE],
        &[],
        "I have told your mum at helen.smith@gmail.com\n",
        monday_morning(),
    );
    assert!(f.is_empty(), "{f:?}");
    // But any mobile number is, unless it is the school's.
    let f = run(
        TOM,
        &[JAMIE],
        &[],
        "or ring 07700 900555\n",
        monday_morning(),
    );
    assert_eq!(rules(&f), vec![("personal-contact-shared", "07700 900555")]);
}

#[test]
fn the_schools_own_mobile_is_not_personal() {
    let (_, dir) = setup();
    let text = include_str!("../../../policies/example.toml").replace(
        "phones = []",
        "phones = [\"07700 900999\", \"+44 1632 960000\"]",
    );
    let config = Config::parse(Path::new("example.toml"), &text).unwrap();
    let f = run_in(
        &config,
        &dir,
        TOM,
        &[JAMIE],
        &[],
        "The trip phone is +44 (0)7700 900999; the office 01632 960000.\n",
        monday_morning(),
    );
    assert!(f.is_empty(), "{f:?}");
    let f = run_in(
        &config,
        &dir,
        TOM,
        &[JAMIE],
        &[],
        "Or me on 07700 900123.\n",
        monday_morning(),
    );
    assert_eq!(f.len(), 1, "{f:?}");
}
