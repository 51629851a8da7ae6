//! The detectors over the files schools really send: class lists, SEN registers, referral
//! forms, payroll, medical lists — and the newsletters, timetables and worksheets that must not
//! trip them.

use std::path::Path;

use super::*;

const FORENAMES: [&str; 30] = [
    "Jamie", "Ava", "Oliver", "Amelia", "Noah", "Isla", "Leo", "Mia", "Arthur", "Freya", "Oscar",
    "Zoë", "Harry", "Grace", "Muhammad", "Lily", "George", "Sophia", "Theo", "Evie", "Jack",
    "Poppy", "Alfie", "Ivy", "Finley", "Ella", "Henry", "Rosie", "Archie", "Siân",
];
const SURNAMES: [&str; 30] = [
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Patel",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "Khan",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Clarke",
    "Hughes",
    "Edwards",
    "Lewis",
    "Nowak",
    "Harris",
    "Ali",
    "O'Brien",
    "Kowalczyk",
];

fn today() -> Date {
    jiff::civil::date(2026, 11, 23)
}

fn pupil(i: usize) -> String {
    format!("{} {}", FORENAMES[i], SURNAMES[i])
}

fn birthday(i: usize) -> Date {
    jiff::civil::date(2014, 9, 1)
        .checked_add(jiff::Span::new().days(i as i64 * 11))
        .unwrap()
}

/// The 30 pupils of 7B, two members of staff, and a former pupil now over 18.
fn directory() -> Directory {
    let mut csv = String::from(
        "role,name,school_email,personal_emails,personal_phones,date_of_birth,status\n\
         headteacher,Margaret Hughes,head@school.sch.uk,,,,current\n\
         staff,Tom Baker,t.baker@school.sch.uk,,,,current\n\
         pupil,Old Boy,o.boy@pupils.school.sch.uk,,,2001-01-01,former\n",
    );
    for i in 0..30 {
        csv.push_str(&format!(
            "pupil,\"{}\",p{i}@pupils.school.sch.uk,,,{},current\n",
            pupil(i),
            birthday(i)
        ));
    }
    Directory::parse(Path::new("d.csv"), csv.as_bytes(), &[]).unwrap()
}

/// A valid UPN for school 801/2000, allocated in 2014, serial `i`.
fn upn(i: usize) -> String {
    let body = format!("8012000{:02}{:03}", 14, i + 1);
    let sum: usize = body
        .bytes()
        .zip(2..)
        .map(|(d, pos)| usize::from(d - b'0') * pos)
        .sum();
    let letter = b"ABCDEFGHJKLMNPQRTUVWXYZ"[sum % 23] as char;
    let u = format!("{letter}{body}");
    assert!(ids::upn_valid(&u));
    u
}

fn scan_texts(texts: &[(&str, String)]) -> Tally {
    let texts: Vec<Text> = texts
        .iter()
        .map(|(l, t)| Text {
            location: l.to_string(),
            text: t.clone(),
        })
        .collect();
    scan(
        &texts,
        &directory(),
        today(),
        &Vocabulary::new(&[], &["OFFICIAL-SENSITIVE".into()]),
    )
}

fn scan_one(location: &str, text: &str) -> Tally {
    scan_texts(&[(location, text.to_string())])
}

/// Nothing unmasked in the evidence: no identifier, date or name of the fixture.
fn assert_masked(t: &Tally) {
    for e in &t.evidence {
        for (i, surname) in SURNAMES.iter().enumerate() {
            assert!(!e.sample.contains(&upn(i)), "{e:?}");
            assert!(!e.sample.contains(surname), "{e:?}");
            assert!(
                !e.sample
                    .contains(&birthday(i).strftime("%d/%m/%Y").to_string()),
                "{e:?}"
            );
        }
    }
}

fn count(t: &Tally, detector: &str) -> usize {
    t.by_detector
        .iter()
        .find(|(d, _)| *d == detector)
        .map_or(0, |&(_, n)| n)
}

#[test]
fn a_class_list_counts_every_upn_and_every_date_of_birth() {
    let mut sheet = String::from("Name\tUPN\tDOB\tTutor group\n");
    for i in 0..30 {
        sheet.push_str(&format!(
            "{}\t{}\t{}\t7B\n",
            pupil(i),
            upn(i),
            birthday(i).strftime("%d/%m/%Y")
        ));
    }
    let t = scan_one("7B.xlsx › Sheet1", &sheet);
    assert_eq!(t.identifiers, 30);
    assert_eq!(t.birth_dates, 30);
    assert_eq!(t.pupils_named, 30);
    assert_eq!(t.special_category, 0);
    assert_eq!(count(&t, "upn"), 30);
    assert_eq!(count(&t, "date-of-birth"), 30);
    assert!(t.markings.is_empty());
    let upns: Vec<&Evidence> = t.evidence.iter().filter(|e| e.detector == "upn").collect();
    assert_eq!(upns.len(), 3);
    assert_eq!(upns[0].location, "7B.xlsx › Sheet1 › row 2");
    assert_eq!(upns[0].sample, ids::mask(&upn(0)));
    let dob = t
        .evidence
        .iter()
        .find(|e| e.detector == "date-of-birth")
        .unwrap();
    assert_eq!(dob.sample, "••/••/2014");
    let name = t
        .evidence
        .iter()
        .find(|e| e.detector == "pupil-name")
        .unwrap();
    assert_eq!(name.sample, "J. S.");
    assert_masked(&t);
}

#[test]
fn a_sheet_without_a_header_row_loses_no_row() {
    let t = scan_one(
        "export.csv",
        &format!(
            "Jamie Smith\t{}\tSEMH\nAva Jones\t{}\tEHCP\n",
            upn(0),
            upn(1)
        ),
    );
    assert_eq!(t.identifiers, 2);
    assert_eq!(t.pupils_named, 2);
    assert_eq!(t.special_category, 2);
}

#[test]
fn two_pupils_born_on_the_same_day_are_two_dates_of_birth() {
    let t = scan_one(
        "twins.csv",
        "Forename\tSurname\tDate of birth\nJamie\tSmith\t14/03/2014\nAva\tJones\t14/03/2014\nJamie\tSmith\t14/03/2014\n",
    );
    assert_eq!(t.birth_dates, 2);
    assert_eq!(t.pupils_named, 2);
}

#[test]
fn a_sen_register_counts_every_pupil_on_it() {
    let needs = [
        "SEMH",
        "SpLD",
        "ASD",
        "SLCN",
        "MLD",
        "Cognition and learning",
    ];
    let mut sheet = String::from("SEN register 2026-27\t\t\t\nName\tYear\tNeed\tEHCP\n");
    for i in 0..12 {
        let ehcp = if i % 3 == 0 { "Yes" } else { "No" };
        sheet.push_str(&format!(
            "{}\t7\t{}\t{ehcp}\n",
            pupil(i),
            needs[i % needs.len()]
        ));
    }
    let t = scan_one("SEN register.xlsx › Register", &sheet);
    assert_eq!(t.special_category, 12);
    assert_eq!(t.pupils_named, 12);
    assert_eq!(t.identifiers, 0);
    let e = t
        .evidence
        .iter()
        .find(|e| e.detector == "special-category")
        .unwrap();
    assert_eq!(e.sample, "EHCP — J. S.");
    assert_masked(&t);
}

#[test]
fn a_register_of_names_not_in_the_directory_still_counts_with_a_need_column() {
    let t = scan_one(
        "register.csv",
        "Pupil\tPrimary need\nSam Other\tSEMH\nAlex Else\t\nKim New\tASD\n",
    );
    assert_eq!(t.special_category, 2);
    assert_eq!(t.pupils_named, 0);
    let e = t
        .evidence
        .iter()
        .find(|e| e.detector == "special-category")
        .unwrap();
    // The column's header, never the cell: a need cell may be free text about the child.
    assert_eq!(e.sample, "primary need — S. O.");
}

#[test]
fn an_mis_export_with_flag_columns_counts_the_pupils_flagged() {
    let mut sheet = String::from("Surname\tForename\tDOB\tUPN\tGender\tFSM\tPP\tSEN\n");
    for i in 0..20 {
        let (fsm, sen) = match i % 5 {
            0 => ("Y", "N"),
            1 => ("N", "K"),
            2 => ("N", "E"),
            _ => ("N", "N"),
        };
        sheet.push_str(&format!(
            "{}\t{}\t{}\t{}\tF\t{fsm}\t{fsm}\t{sen}\n",
            SURNAMES[i],
            FORENAMES[i],
            birthday(i).strftime("%Y-%m-%d"),
            upn(i)
        ));
    }
    let t = scan_one("SIMS export.csv", &sheet);
    assert_eq!(t.identifiers, 20);
    assert_eq!(t.birth_dates, 20);
    assert_eq!(t.pupils_named, 20);
    // Rows 0, 1, 2 of every five: a yes in FSM/PP or an SEN code.
    assert_eq!(t.special_category, 12);
    assert_masked(&t);
}

#[test]
fn an_incident_log_counts_every_pupil_in_a_row() {
    let sheet = "Date\tPupils involved\tIncident\tAction\n\
                 12/11/2026\tJamie Smith, Ava Jones\tFight at lunch\tSuspension (1 day) for both\n\
                 13/11/2026\tOliver Taylor\tLate to lesson\tDetention\n";
    let t = scan_one("behaviour.xlsx", sheet);
    assert_eq!(t.special_category, 2);
    assert_eq!(t.pupils_named, 3);
    assert_eq!(t.birth_dates, 0);
}

#[test]
fn a_child_protection_referral_form_is_one_child() {
    let form = "\
MULTI-AGENCY REFERRAL FORM
OFFICIAL-SENSITIVE: PERSONAL
Child's name: Jamie Smith
Date of birth: 01/09/2014
Address: 12 Acacia Avenue, Anytown
Parent/carer: Sarah Smith
School: Anytown Academy, Year 7
Reason for referral
Jamie disclosed to his form tutor that there is often no food at home and he is left alone overnight.
We are concerned about neglect. The DSL has spoken to children's social care.
Outcome: section 47 enquiry and strategy meeting arranged for 30/11/2026.
Referrer: Tom Baker, DSL";
    let t = scan_one("referral.docx", form);
    assert_eq!(t.special_category, 1);
    assert_eq!(t.birth_dates, 1);
    assert_eq!(t.pupils_named, 1);
    assert_eq!(t.markings, ["OFFICIAL-SENSITIVE [PERSONAL]"]);
    assert_eq!(count(&t, "protective-marking"), 1);
    let e = t
        .evidence
        .iter()
        .find(|e| e.detector == "special-category")
        .unwrap();
    assert!(e.sample.ends_with("— J. S."), "{e:?}");
    assert!(e.location.starts_with("referral.docx › line "), "{e:?}");
    assert_masked(&t);
}

#[test]
fn a_referral_form_laid_out_as_a_table_is_one_child() {
    let form = "Child's name\tKim Newcomer\nD.O.B.\t3rd May 2015\nUPN\tH801200001001\nConcerns\tDomestic abuse at home; Operation Encompass notification received\n";
    let t = scan_one("referral.docx", form);
    assert_eq!(t.special_category, 1);
    assert_eq!(t.birth_dates, 1);
    assert_eq!(t.identifiers, 1);
    assert_eq!(t.pupils_named, 0);
}

#[test]
fn a_form_with_each_label_above_its_value_is_one_child() {
    let form = "Name of child:\nKim Newcomer\nDate of birth:\n3 May 2015\nHome address:\n1 High Street\nSchool:\nAnytown Academy\nDetails of concern:\nBruising seen on arms; suspected physical abuse.\n";
    let t = scan_one("referral.docx", form);
    assert_eq!(t.birth_dates, 1);
    assert_eq!(t.special_category, 1);
    let e = t
        .evidence
        .iter()
        .find(|e| e.detector == "special-category")
        .unwrap();
    assert_eq!(e.sample, "physical abuse — K. N.");
}

#[test]
fn two_forms_in_one_document_are_two_children() {
    let form = "\
Pupil name: Jamie Smith
DOB: 01/09/2014
Concern: self harm
Pupil name: Ava Jones
DOB: 12/09/2014
Concern: eating disorder";
    let t = scan_one("log.docx", form);
    assert_eq!(t.special_category, 2);
    assert_eq!(t.birth_dates, 2);
}

#[test]
fn a_payroll_sheet_counts_national_insurance_numbers() {
    let mut sheet = String::from("Employee\tNI number\tSalary\tTax code\n");
    let prefixes = ["AB", "CE", "JK", "PR", "WX"];
    for i in 0..10 {
        let ni = if i % 2 == 0 {
            format!(
                "{}{:06}{}",
                prefixes[i % 5],
                123456 + i * 7,
                ['A', 'B', 'C', 'D'][i % 4]
            )
        } else {
            let d = format!("{:06}", 200000 + i * 13);
            format!(
                "{} {} {} {} {}",
                prefixes[i % 5],
                &d[0..2],
                &d[2..4],
                &d[4..6],
                'C'
            )
        };
        sheet.push_str(&format!("Staff Member {i}\t{ni}\t£32,000\t1257L\n"));
    }
    // An unallocated prefix and a bad suffix are not numbers.
    sheet.push_str("Test Person\tZZ123456A\t£0\t\nOther Person\tAB123456E\t£0\t\n");
    let t = scan_one("payroll.xlsx › Nov", &sheet);
    assert_eq!(t.identifiers, 10);
    assert_eq!(count(&t, "ni-number"), 10);
    assert_eq!(t.special_category, 0);
    assert!(
        t.evidence.iter().any(|e| e.sample == "AB••••••A"),
        "{:?}",
        t.evidence
    );
}

#[test]
fn a_medical_needs_list_counts_each_pupil() {
    let sheet = "\
Name\tClass\tCondition\tMedication\tLocation
Jamie Smith\t7B\tAsthma\tSalbutamol inhaler\tBag
Ava Jones\t7B\tNut allergy - anaphylaxis\tEpiPen x2\tMedical room
Oliver Taylor\t7C\tType 1 diabetes\tInsulin pump\tOffice
Amelia Brown\t7C\t\t\t
Noah Williams\t7D\tEpilepsy\tBuccal midazolam\tOffice
";
    let t = scan_one("medical.xlsx › Sheet1", sheet);
    assert_eq!(t.special_category, 4);
    assert_eq!(t.pupils_named, 5);
    assert_masked(&t);
}

#[test]
fn a_newsletter_names_pupils_and_nothing_else() {
    let letter = "\
Anytown Academy Newsletter — Friday 20 November 2026
Congratulations to Jamie Smith and Ava Jones, who won the Year 6 chess tournament on 14/11/2026!
Well done to Zoe Thompson for her poem, read at the Remembrance assembly on 11 November 2026.
Our SENCO, Mrs Patel, runs a coffee morning for parents on Tuesday 1 December 2026 at 9am.
You can read our pupil premium strategy statement on the school website.
Please remember that medicines must be handed in at the medical room.
Religious education: Year 6 SATs revision starts in January; Year 5 visit the mosque.
Children in Need day raised £412. Safeguarding is everyone's business: if you are worried,
speak to our designated safeguarding lead. Call the office on 01632 960 123 (ext. 4012345678).
The school was founded on 1 September 1965 and was born of a merger; term dates are online.";
    let t = scan_one("newsletter.pdf", letter);
    assert_eq!(t.pupils_named, 3);
    assert_eq!(t.identifiers, 0);
    assert_eq!(t.birth_dates, 0);
    assert_eq!(t.special_category, 0);
    assert!(t.markings.is_empty());
    assert_eq!(t.by_detector, vec![("pupil-name", 3)]);
}

#[test]
fn a_timetable_and_a_worksheet_have_no_identifiers_or_birth_dates() {
    let timetable = "\
Week beginning\tMonday\tTuesday\tWednesday
14/09/2026\tMaths 7B (Room 12)\tEnglish\tScience
21/09/2026\tPE\tHistory 1234567890\tArt
Cover code\t9434765918\t0123456789\t1111111111
";
    let worksheet = "\
Maths worksheet — Year 8 — 14th March 2026
1. Write 9876543210 in words.
2. Which is bigger: 1234567890 or 1234567899? Learners may use a calculator.
3. 943 476 5919 + 401 023 2137 = ?
4. Shakespeare was born on 23 April 1564. How many years ago was that?
5. A pupil was born in 2012. How old are they on 01/09/2026?
6. Simplify 3.14 × 10 / 2 and round 12.5 to the nearest 5.";
    let t = scan_texts(&[
        ("timetable.xlsx › Autumn", timetable.to_string()),
        ("worksheet.docx", worksheet.to_string()),
    ]);
    // 1234567899 is a valid ULN and 943 476 5919 a valid NHS number, but nothing says so.
    assert_eq!(t.identifiers, 0);
    assert_eq!(t.birth_dates, 0);
    assert_eq!(t.special_category, 0);
}

#[test]
fn ten_digit_numbers_count_only_beside_their_keyword_or_column() {
    let nhs = "NHS number: 943 476 5919\n\nReference 401 023 2137\n";
    let t = scan_one("a.txt", nhs);
    assert_eq!(count(&t, "nhs-number"), 1);
    // On the line under its label.
    let t = scan_one("a.txt", "NHS No:\n4010232137\n");
    assert_eq!(count(&t, "nhs-number"), 1);
    let t = scan_one(
        "a.xlsx",
        "Name\tNHS No\tULN\nJamie Smith\t9434765919\t1234567899\nAva Jones\t9434765918\t1234567890\n",
    );
    assert_eq!(count(&t, "nhs-number"), 1);
    assert_eq!(count(&t, "uln"), 1);
    // The test range is never issued, but test data uses it: counted with its keyword.
    let t = scan_one("a.txt", "NHS number 999 000 0018");
    assert_eq!(t.identifiers, 1);
    let t = scan_one("a.txt", "Order number 999 000 0018");
    assert_eq!(t.identifiers, 0, "no NHS context");
    // An 11-digit phone number is not an NHS number with a digit beside it.
    let t = scan_one("a.txt", "NHS 111 or 0 943 476 5919");
    assert_eq!(t.identifiers, 0);
}

#[test]
fn the_worked_examples_are_found_in_text() {
    let t = scan_one(
        "ids.txt",
        "UPN H801200001001, temporary X00180001701A, not A801200005001 or h801200001001\n\
         NI: AB 12 34 56 C and ab123456c and CE123456D, not QQ123456A or BG123456A or AB123456E\n\
         ULN 1234567899 / 0000000042 / 1000000000, not 1234567890\n",
    );
    assert_eq!(count(&t, "upn"), 2);
    assert_eq!(
        count(&t, "ni-number"),
        2,
        "AB 12 34 56 C and ab123456c are one number"
    );
    assert_eq!(count(&t, "uln"), 3);
    assert_eq!(t.identifiers, 7);
}

#[test]
fn acronyms_need_a_pupil_identifier_a_date_of_birth_or_a_directory_pupil() {
    // A stranger's name beside CP: nothing; a directory pupil beside CP: one.
    let t = scan_one(
        "notes.docx",
        "Sam Stranger — CP\nJamie Smith: CP, LAC, PEP due\n",
    );
    assert_eq!(t.special_category, 1);
    // A name field with no identifier: a weak word does not count.
    let t = scan_one("notes.docx", "Name: Sam Stranger\nMedical: see office\n");
    assert_eq!(t.special_category, 0);
    // …but with a date of birth it does.
    let t = scan_one(
        "notes.docx",
        "Name: Sam Stranger\nDOB: 02/02/2015\nMedical: see office\n",
    );
    assert_eq!(t.special_category, 1);
    assert_eq!(t.birth_dates, 1);
    // On their own, acronyms and weak words are nothing.
    let t = scan_one(
        "notes.docx",
        "CP, CIN, LAC, FSM, PP, SEND and medical matters\n",
    );
    assert_eq!(t.special_category, 0);
}

#[test]
fn names_are_found_however_they_are_written() {
    let t = scan_one(
        "a.txt",
        "SMITH, Jamie; jones ava; Zoe Thompson; O’Brien, Archie; Sian Kowalczyk's coat\n",
    );
    assert_eq!(t.pupils_named, 4, "{:?}", t.evidence);
    // Surname then forename in their own columns.
    let t = scan_one("a.csv", "Surname\tForename\nSmith\tJamie\nPatel\tArthur\n");
    assert_eq!(t.pupils_named, 2);
    // Staff, former pupils over 18 and one-word names are not pupils named.
    let t = scan_one(
        "a.txt",
        "Tom Baker, Margaret Hughes and Old Boy met Jamie.\n",
    );
    assert_eq!(t.pupils_named, 0);
}

#[test]
fn the_schools_own_keywords_and_markings() {
    let vocabulary = Vocabulary::new(
        &["nurture group".into()],
        &["OFFICIAL-SENSITIVE".into(), "RESTRICTED".into()],
    );
    let texts = [Text {
        location: "a.docx".into(),
        text: "RESTRICTED\nJamie Smith joins the Nurture Group on Monday.\nThis is restricted to staff.\n".into(),
    }];
    let t = scan(&texts, &directory(), today(), &vocabulary);
    assert_eq!(t.special_category, 1);
    assert_eq!(t.markings, ["RESTRICTED"]);
    // Without the school's list, neither counts.
    let t = scan(&texts, &directory(), today(), &Vocabulary::new(&[], &[]));
    assert_eq!(t.special_category, 0);
    assert!(t.markings.is_empty());
}

#[test]
fn nothing_in_an_empty_attachment() {
    assert_eq!(
        scan(&[], &directory(), today(), &Vocabulary::new(&[], &[])),
        Tally::default()
    );
    let t = scan_one("a.txt", "");
    assert_eq!(t, Tally::default());
}

#[test]
fn hostile_lines_and_headers_stay_linear() {
    // One paragraph of 40,000 labelled dates beside names, and a sheet with a 20,000-column
    // header above 2,000 rows: quadratic work here would not finish.
    let line = "DOB: 01/09/2014 Jamie Smith CP ".repeat(40_000);
    let mut sheet = (0..20_000)
        .map(|i| format!("Col{i}"))
        .collect::<Vec<_>>()
        .join("\t");
    sheet.insert_str(0, "Name\tDOB\t");
    sheet.push('\n');
    for i in 0..2_000 {
        sheet.push_str(&format!("{}\t01/09/2014\tx\n", pupil(i % 30)));
    }
    let started = std::time::Instant::now();
    let t = scan_texts(&[("a.txt", line), ("b.xlsx", sheet)]);
    assert_eq!(t.birth_dates, 30);
    assert_eq!(t.special_category, 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// Release-build speed on 2,000 pupils and ~50 MB of mixed text:
/// `cargo test --release --lib detect::tests::speed -- --ignored --nocapture`.
#[test]
#[ignore]
fn speed() {
    let mut csv = String::from(
        "role,name,school_email,personal_emails,personal_phones,date_of_birth,status\n",
    );
    for i in 0..2000 {
        csv.push_str(&format!(
            "pupil,{} {}{},p{i}@p.x,,,2014-01-01,current\n",
            FORENAMES[i % 30],
            ["", "Lee ", "Rose "][i / 900],
            SURNAMES[(i / 30) % 30]
        ));
    }
    let directory = Directory::parse(Path::new("d.csv"), csv.as_bytes(), &[]).unwrap();
    let prose = "Congratulations to Jamie Smith and Ava Jones, who won the chess tournament on 14/11/2026! Our SENCO runs a coffee morning for parents; call 01632 960 123. The pupil premium strategy is online and Grace will read a poem.\n";
    let mut sheet = String::from("Name\tUPN\tDOB\tNeed\n");
    for i in 0..30 {
        sheet.push_str(&format!(
            "{}\t{}\t{}\tSEMH\n",
            pupil(i),
            upn(i),
            birthday(i).strftime("%d/%m/%Y")
        ));
    }
    let mut big = String::new();
    while big.len() < 25_000_000 {
        big.push_str(prose);
    }
    let mut table = String::new();
    while table.len() < 25_000_000 {
        table.push_str(&sheet);
    }
    let texts = [
        Text {
            location: "a".into(),
            text: big,
        },
        Text {
            location: "b".into(),
            text: table,
        },
    ];
    let bytes: usize = texts.iter().map(|t| t.text.len()).sum();
    let vocabulary = Vocabulary::new(&[], &[]);
    // Time on the CPU as well as on the clock: other builds share this machine.
    let cpu = || {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |ns| ns / 1e9)
    };
    let mut t = Tally::default();
    for one in texts.iter().chain([&texts[0], &texts[1]]) {
        let (wall, on_cpu) = (std::time::Instant::now(), cpu());
        t = scan(std::slice::from_ref(one), &directory, today(), &vocabulary);
        let mb = one.text.len() as f64 / 1e6;
        println!(
            "{}: {:.0} MB/s on the clock, {:.0} MB/s on the CPU",
            one.location,
            mb / wall.elapsed().as_secs_f64(),
            mb / (cpu() - on_cpu)
        );
    }
    let (wall, on_cpu) = (std::time::Instant::now(), cpu());
    let all = scan(&texts, &directory, today(), &vocabulary);
    let mb = bytes as f64 / 1e6;
    println!(
        "all {mb:.0} MB: {:.0} MB/s on the clock, {:.0} MB/s on the CPU",
        mb / wall.elapsed().as_secs_f64(),
        mb / (cpu() - on_cpu)
    );
    assert_eq!(all.identifiers, 30);
    assert_eq!(all.special_category, 30);
    assert!(t.identifiers >= 30);
}

#[test]
fn a_job_title_in_a_staff_table_is_not_a_pupils_special_category_data() {
    // The newsletter's staff table, however it was read: cells, a PDF line, prose.
    for text in [
        "Role\tName\tTelephone\nHeadteacher\tMrs R Okonjo\t01632 960100\nSENCO\tMrs G D'Arcy\t01632 960123\nDSL\tMr A Khan\t01632 960101\n",
        "Name\tRole\tEmail\nMrs G D'Arcy\tSENCO\tg.darcy@school.sch.uk\nMr A Khan\tDeputy DSL\ta.khan@school.sch.uk\n",
        "SENCO\tMrs G D'Arcy\t01632 960123\n",
        "SENCO | Mrs G D'Arcy | 01632 960123\n",
        "SENCO: Mrs G D'Arcy, telephone 01632 960123\nName: Mrs G D'Arcy\nRole: SENCO\n",
        "Congratulations to Jamie Smith on the chess cup. Our SENCO, Mrs D'Arcy, runs a coffee \
         morning; Mr Khan (DSL) is at the gate every morning.\n",
    ] {
        let t = scan_one("newsletter.pdf", text);
        assert_eq!(t.special_category, 0, "{text:?}: {:?}", t.evidence);
    }
    // Beside a pupil, the same words still count.
    let t = scan_one(
        "notes.docx",
        "Jamie Smith has been referred to the SENCO for a dyslexia assessment.\n",
    );
    assert_eq!(t.special_category, 1);
    let t = scan_one(
        "register.csv",
        "Name\tDOB\tNeeds\nKim Newcomer\t03/05/2015\tAutism; SENCO monitoring\n",
    );
    assert_eq!(t.special_category, 1);
}

#[test]
fn a_special_category_word_counts_only_beside_a_pupil() {
    // A name with nothing saying it is a pupil's: a member of staff, a governor.
    let t = scan_one(
        "staff.xlsx",
        "Name\tRole\tNotes\nSam Stranger\tTeaching assistant\tFirst aid: asthma and EpiPen trained\n",
    );
    assert_eq!(t.special_category, 0);
    // A staff member's own date of birth is not a pupil's either.
    let t = scan_one(
        "hr.docx",
        "Name: Sam Stranger\nDate of birth: 02/02/1980\nRole: SENCO; EHCP reviews\n",
    );
    assert_eq!(t.special_category, 0);
    // The label says the name is a pupil's, or the record has a pupil's date of birth or UPN.
    for text in [
        "Pupil\tNotes\nSam Stranger\tEHCP; autism\n",
        "Child's name: Sam Stranger\nConcern: self harm\n",
        "Name\tDOB\tNotes\nSam Stranger\t02/02/2015\tEHCP\n",
        "Name\tUPN\tNotes\nSam Stranger\tH801200001001\tEHCP\n",
    ] {
        assert_eq!(scan_one("a.xlsx", text).special_category, 1, "{text:?}");
    }
}

/// What `nothing_to_count` promises: a full scan of the text counts nothing a body threshold
/// looks at.
fn assert_nothing_counted(text: &str) {
    let t = scan_one("", text);
    assert_eq!(
        (
            t.identifiers,
            t.birth_dates,
            t.special_category,
            t.markings.len()
        ),
        (0, 0, 0, 0),
        "nothing_to_count said yes, but the scan counted {t:?} in {text:?}"
    );
}

#[test]
fn a_plain_letter_home_needs_no_full_scan_and_the_scan_agrees() {
    let vocabulary = Vocabulary::new(&[], &["OFFICIAL-SENSITIVE".into()]);
    let letter = format!(
        "Dear Mr Jones,\r\n\r\nThank you for coming on Thursday. {} and {} worked well on the \
         science project. Our open morning is on 14 December at 9.30 am (room 12) and \
         the concert is on 18/12/2026.\r\n\r\nKind regards,\r\nTom Baker\r\n",
        pupil(0),
        pupil(1)
    );
    assert!(nothing_to_count(&letter, &vocabulary));
    assert_nothing_counted(&letter);
    assert!(scan_one("", &letter).pupils_named >= 2);
}

#[test]
fn anything_a_body_threshold_counts_makes_the_full_scan_run() {
    let vocabulary = Vocabulary::new(&["Nurture group".into()], &["PROTECT".into()]);
    for text in [
        format!("{} {}", pupil(0), upn(0)),
        "NHS number 943 476 5919".into(),
        "NHS 943-476-5919".into(),
        "ULN 1234567899".into(),
        "learner 0000000042 and more".into(),
        "office 01632 960123; NHS number 943 476 5919".into(),
        "NI number AB 12 34 56 C".into(),
        "NI number AB123456C".into(),
        "her DOB is unknown".into(),
        "date of birth".into(),
        "she was born then".into(),
        "D.O.B. then".into(),
        "has an EHCP".into(),
        "talked about self-harm".into(),
        "Jamie is in the nurture group".into(),
        "OFFICIAL-SENSITIVE".into(),
        "PROTECT".into(),
        "Name\tUPN\nJamie Smith\tnone".into(),
    ] {
        assert!(!nothing_to_count(&text, &vocabulary), "{text:?}");
    }
}

#[test]
fn when_no_full_scan_is_needed_the_full_scan_never_counts_anything() {
    // Sentences built from words that do and do not matter, in every order: wherever
    // `nothing_to_count` says yes, the scan agrees.
    let words = [
        "Jamie Smith",
        "Ava Jones",
        "the",
        "class",
        "EHCP",
        "SENCO",
        "child",
        "protection",
        "DOB",
        "born",
        "on",
        "14/03/2015",
        "14 March 2015",
        "943 476",
        "5919",
        "AB 12",
        "34 56 C",
        "medical",
        "room",
        "needs",
        "self",
        "harm",
        "OFFICIAL",
        "SENSITIVE",
        "Mrs Patel",
        "dyslexia",
        "9.30",
        "2026",
        "asthma",
        "pupil premium",
        "strategy",
        "free school meals",
        ":",
        "\n",
        "Date of birth:",
        "Child's name:",
        "\n\n",
    ];
    let vocabulary = Vocabulary::new(&[], &["OFFICIAL-SENSITIVE".into()]);
    let mut seed: u64 = 0x5eed;
    let mut skipped = 0;
    for _ in 0..5000 {
        let mut text = String::new();
        for _ in 0..6 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let w = words[(seed >> 33) as usize % words.len()];
            text.push_str(w);
            text.push(' ');
        }
        if nothing_to_count(&text, &vocabulary) {
            skipped += 1;
            assert_nothing_counted(&text);
        }
    }
    assert!(
        skipped > 50,
        "too few texts skipped to test anything: {skipped}"
    );
}

#[test]
fn the_repository_text_fixtures_that_need_no_full_scan_count_nothing() {
    let vocabulary = Vocabulary::new(&[], &["OFFICIAL-SENSITIVE".into()]);
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")];
    let mut read = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "txt" || e == "eml")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                read += 1;
                if nothing_to_count(&text, &vocabulary) {
                    assert_nothing_counted(&text);
                }
            }
        }
    }
    assert!(read > 10, "the fixtures were not found: {read} read");
}

/// What [`line_cues`] promises: a line it lets go has no word the word-by-word check of
/// `nothing_to_count` stops at.
fn assert_letters_agree(line: &str, vocabulary: &Vocabulary) {
    let cues = Cues::new();
    let birth = [cues.dob, cues.birthdate, cues.born, cues.birth, cues.d];
    let mut toks = Vec::new();
    tokenize(line, &mut toks);
    let words_say =
        toks.iter().any(|t| birth.contains(&t.hash)) || vocabulary.patterns.may_find(line, &toks);
    if words_say {
        assert!(
            line_cues(line, &vocabulary.patterns, &mut Vec::new()).word,
            "the letters let go of {line:?}"
        );
    }
}

#[test]
fn the_letter_check_lets_through_every_term_marking_and_birth_label() {
    let vocabulary = Vocabulary::new(
        &[
            "Nurture group".into(),
            "Ysgol Feithrin".into(),
            "Pŵer".into(),
        ],
        &["OFFICIAL-SENSITIVE".into(), "PROTECT".into()],
    );
    let mut lines: Vec<String> = Vec::new();
    let terms: Vec<String> = vocabulary
        .patterns
        .terms
        .iter()
        .map(|(t, _)| t.clone())
        .chain(
            [
                "OFFICIAL-SENSITIVE",
                "official sensitive",
                "OfficialSensitive",
                "PROTECT",
                "DOB",
                "d.o.b.",
                "Date of Birth",
                "birthdate",
                "Born",
                "Pwer",
                "PŴER",
            ]
            .map(String::from),
        )
        .collect();
    for t in &terms {
        for form in [t.clone(), t.to_uppercase(), t.to_lowercase()] {
            lines.push(form.clone());
            lines.push(format!("Notes: {form}."));
            lines.push(format!(
                "\u{201c}{form}\u{201d} \u{2013} see Jamie\u{2019}s plan"
            ));
            lines.push(format!("x{form}x {form}9"));
        }
    }
    for line in &lines {
        assert_letters_agree(line, &vocabulary);
    }
    // A letter's ordinary lines are let go without hashing their words.
    for line in [
        "Thank you for coming to parents\u{2019} evening on Thursday \u{2013} it was lovely.",
        "Homework is set on Mondays and due the following Monday.",
        "Call the office on 01632 960123 with any questions.",
    ] {
        assert!(
            !line_cues(line, &vocabulary.patterns, &mut Vec::new()).word,
            "{line:?}"
        );
    }
    // A word with a letter outside ASCII is read in full.
    assert!(
        line_cues(
            "Diolch yn fawr, Siân",
            &vocabulary.patterns,
            &mut Vec::new()
        )
        .word
    );
}

#[test]
fn an_ascii_word_hashes_as_the_line_reader_hashes_it() {
    let mut toks = Vec::new();
    for w in ["Carter", "EHCP", "ehcp", "self", "9", "Year7", "OFFICIAL"] {
        tokenize(w, &mut toks);
        assert_eq!(toks.len(), 1, "{w}");
        assert_eq!(words::ascii_hash(w.as_bytes()), toks[0].hash, "{w}");
    }
}

#[test]
fn a_number_that_is_no_identifier_needs_no_full_scan_and_the_scan_agrees() {
    // Telephone numbers, an invalid ULN or NHS number, an order number, a date and a time: six
    // digits in a row, but nothing the scan's identifier reader counts.
    let vocabulary = Vocabulary::new(&[], &["OFFICIAL-SENSITIVE".into()]);
    for text in [
        "Call the office on 01632 960123 with any questions.",
        "Mobile 07700 900123, or 0161-496-0000 after 4 pm.",
        "ULN 1234567890 was typed wrongly.",
        "Booking ref 943 476 5917",
        "Invoice 20261207-114 for the trip, order 998877.",
        "Term starts 07/01/2027 at 08.45; room 123456 is the hall.",
        "Thank you.\r\nOur number is +44 1632 960 123.\r\n",
    ] {
        assert!(nothing_to_count(text, &vocabulary), "{text:?}");
        assert_nothing_counted(text);
    }
}

#[test]
fn the_one_pass_digit_count_is_the_six_digits_rule() {
    // Wherever the letters say nothing matters, the digits the one pass counted are what
    // `six_digits` counts, for every mix of digits and the characters that join or part them.
    let vocabulary = Vocabulary::new(&[], &[]);
    let pieces = [
        "1", "23", "456", " ", "-", "  ", "--", "a", "B", ".", "/", "é", "\u{2013}",
    ];
    let mut checked = 0;
    let mut line = String::new();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..20_000 {
        line.clear();
        for _ in 0..8 {
            xorshift(&mut seed);
            line.push_str(pieces[(seed % pieces.len() as u64) as usize]);
        }
        let mut runs = Vec::new();
        let look = line_cues(&line, &vocabulary.patterns, &mut runs);
        if !look.word {
            assert_eq!(look.six_digits, six_digits(&line), "{line:?}");
            let mut expected = Vec::new();
            six_digit_runs(&line, &mut expected);
            assert_eq!(runs, expected, "{line:?}");
            assert_eq!(look.six_digits, !runs.is_empty(), "{line:?}");
            checked += 1;
        }
    }
    assert!(checked > 5_000, "too few lines checked: {checked}");
}

#[test]
fn the_words_around_each_long_number_hold_every_identifier_the_whole_line_holds() {
    // Lines of identifiers, their look-alikes and the words around them, in random orders:
    // wherever the whole line has an identifier candidate, so do the parts `around` reads.
    let pieces = [
        "H801200001001",
        "B801200005001",
        "1234567899",
        "9434765919",
        "943 476 5919",
        "943-476-5919",
        "AB 12 34 56 C",
        "AB123456C",
        "ab123456c",
        "AB123456 C",
        "01632 960123",
        "1234567890",
        "12",
        "34",
        "56",
        "C",
        "AB",
        "ULN",
        "NHS",
        "Jamie Carter",
        "the",
        ",",
        " ",
        "-",
        "\u{2013}",
        "é",
        "x",
        "123456",
        "0000000042",
    ];
    let (mut full, mut near, mut runs) = (Vec::new(), Vec::new(), Vec::new());
    let mut toks = Vec::new();
    let mut line = String::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut with_ids = 0;
    for _ in 0..20_000 {
        line.clear();
        for _ in 0..10 {
            xorshift(&mut seed);
            line.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            if seed & 0x300 != 0 {
                line.push(' ');
            }
        }
        tokenize(&line, &mut toks);
        id_candidates(&line, &toks, &mut full);
        if full.is_empty() {
            continue;
        }
        with_ids += 1;
        six_digit_runs(&line, &mut runs);
        let found = runs.iter().any(|&(start, end)| {
            let part = around(&line, start, end);
            tokenize(part, &mut toks);
            id_candidates(part, &toks, &mut near);
            !near.is_empty()
        });
        assert!(
            found,
            "the parts around the numbers lost the identifier in {line:?}"
        );
    }
    assert!(
        with_ids > 5_000,
        "too few lines with identifiers: {with_ids}"
    );
}

#[test]
fn the_eight_byte_word_reader_ends_words_where_the_byte_reader_does() {
    let pieces = [
        "a", "Z", "9", "0", "abcdefgh", "12345678", " ", "-", "@", "[", "`", "{", "/", ":", "é",
        "\u{2019}", "\u{7f}", "x1",
    ];
    let mut seed: u64 = 0x1234_5678_9abc_def1;
    let mut text = String::new();
    for _ in 0..20_000 {
        text.clear();
        for _ in 0..6 {
            xorshift(&mut seed);
            text.push_str(pieces[(seed % pieces.len() as u64) as usize]);
        }
        let b = text.as_bytes();
        for from in 0..b.len() {
            let end = b[from..]
                .iter()
                .position(|c| !c.is_ascii_alphanumeric())
                .map_or(b.len(), |k| from + k);
            let digits = b[from..end].iter().any(u8::is_ascii_digit);
            assert_eq!(
                ascii_word_end(b, from),
                (end, digits),
                "{text:?} from {from}"
            );
        }
    }
}

/// The next number of a xorshift sequence: random enough to mix test pieces, and the same on
/// every run.
fn xorshift(seed: &mut u64) {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
}

#[test]
fn the_skim_reads_every_line_the_line_by_line_check_would_stop_at() {
    // Texts of words that do and do not matter, numbers, letters outside ASCII, typographic
    // punctuation and line ends, long enough to cross many 64-byte blocks: the skim says
    // what reading every line says.
    let vocabulary = Vocabulary::new(&["Nurture group".into()], &["OFFICIAL-SENSITIVE".into()]);
    let pieces = [
        "the",
        "class",
        "trip",
        "Thursday",
        "museum",
        "homework",
        "EHCP",
        "SENCO",
        "DOB",
        "born",
        "nurture group",
        "OFFICIAL-SENSITIVE",
        "asthma",
        "child protection",
        "Jamie",
        "Siân",
        "Zoë",
        "\u{2019}",
        "\u{201c}",
        "\u{2013}",
        "é",
        "9.30",
        "14/03/2015",
        "12",
        "943 476 5919",
        "943",
        "476",
        "5919",
        "01632 960123",
        "1234567899",
        "AB 12 34 56 C",
        "H801200001001",
        "123",
        "45",
        "6",
        "-",
        " ",
        ", ",
        ".",
        "\n",
        "\r\n",
        "\n\n",
        "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklm",
    ];
    let mut seed: u64 = 0x51ce_b10c;
    let (mut yes, mut no) = (0, 0);
    let mut text = String::new();
    for round in 0..6_000 {
        text.clear();
        // Mostly ordinary words, so that many texts need nothing read.
        let n = 5 + round % 120;
        for _ in 0..n {
            xorshift(&mut seed);
            let k = (seed % pieces.len() as u64) as usize;
            let piece = if seed & 0x7000 == 0 {
                pieces[k]
            } else {
                ["the", "class", "trip", "Thursday", "homework", "12"][k % 6]
            };
            text.push_str(piece);
            if seed & 0x300 != 0 {
                text.push(' ');
            }
        }
        let skimmed = nothing_to_count(&text, &vocabulary);
        assert_eq!(
            skimmed,
            nothing_to_count_line_by_line(&text, &vocabulary),
            "{text:?}"
        );
        if skimmed { yes += 1 } else { no += 1 }
    }
    assert!(
        yes > 500 && no > 500,
        "too one-sided to test anything: {yes} yes, {no} no"
    );
}
