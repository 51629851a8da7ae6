//! Who is a pupil, who is staff, who is the headteacher: the school's people, from a CSV in the
//! shape of an MIS export (SPEC, "Directory").
//!
//! Seed 001: "'pupil' = anyone 18 or under, including former pupils until 18". This module only
//! reads and checks the file; the rules that use it live in `policy`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The columns, in the order the SPEC gives them. The header row must name them all.
pub const COLUMNS: [&str; 7] = [
    "role",
    "name",
    "school_email",
    "personal_emails",
    "personal_phones",
    "date_of_birth",
    "status",
];

/// One person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub role: String,
    pub name: String,
    pub school_email: Option<String>,
    pub personal_emails: Vec<String>,
    pub personal_phones: Vec<String>,
    pub date_of_birth: Option<jiff::civil::Date>,
    pub current: bool,
}

impl Person {
    /// Everyone but a pupil is staff.
    pub fn is_staff(&self) -> bool {
        self.role != "pupil"
    }

    /// A current pupil, or a former pupil who is 18 or under on `today` (seed 001).
    pub fn is_pupil(&self, today: jiff::civil::Date) -> bool {
        if self.role != "pupil" {
            return false;
        }
        if self.current {
            return true;
        }
        match self.date_of_birth {
            Some(dob) => match dob.checked_add(jiff::Span::new().years(19)) {
                Ok(nineteenth) => today < nineteenth,
                Err(_) => false,
            },
            // A former pupil whose age is unknown is treated as a pupil: safer to flag.
            None => true,
        }
    }
}

/// The school's people.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub people: Vec<Person>,
    /// Every address (school and personal, lower case) to its person's index in `people`.
    by_address: HashMap<String, usize>,
    /// Every [`name_key`] to the indices in `people` of those with that name, in file order.
    by_name: HashMap<String, Vec<usize>>,
}

/// A directory file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct DirectoryError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl Directory {
    /// Reads the directory at `path`; `staff_roles` are the roles allowed besides `pupil`,
    /// `staff` and `headteacher`.
    pub fn load(path: &Path, staff_roles: &[String]) -> Result<Directory, DirectoryError> {
        let bytes = std::fs::read(path).map_err(|e| DirectoryError {
            path: path.to_path_buf(),
            line: None,
            message: format!("cannot read the directory: {e}; check [school] directory"),
        })?;
        Directory::parse(path, &bytes, staff_roles)
    }

    /// Parses directory CSV `bytes` read from `path`.
    ///
    /// The first problem found stops the parse with an error naming the file and line: a row
    /// whose number of cells differs from the header's, an unknown role, an empty name, a date
    /// or status that cannot be read, something that is not a mail address, or an address
    /// (school or personal, case-insensitive) that is already on another row.
    pub fn parse(
        path: &Path,
        bytes: &[u8],
        staff_roles: &[String],
    ) -> Result<Directory, DirectoryError> {
        let err = |line: usize, message: String| DirectoryError {
            path: path.to_path_buf(),
            line: Some(line),
            message,
        };
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            err(line, format!("not UTF-8 ({e}); export the CSV as UTF-8"))
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let rows = parse_csv(text).map_err(|(line, m)| err(line, m))?;
        let mut rows = rows.into_iter();
        let Some((header_line, header)) = rows.next() else {
            return Err(err(1, "the file is empty; it needs a header row".into()));
        };
        let mut index = [0usize; COLUMNS.len()];
        for (slot, c) in index.iter_mut().zip(COLUMNS) {
            let mut found = header
                .iter()
                .enumerate()
                .filter(|(_, h)| h.trim().eq_ignore_ascii_case(c))
                .map(|(i, _)| i);
            *slot = found.next().ok_or_else(|| {
                err(
                    header_line,
                    format!(
                        "the header row has no \"{c}\" column; it needs {}",
                        COLUMNS.join(",")
                    ),
                )
            })?;
            if found.next().is_some() {
                return Err(err(
                    header_line,
                    format!("the header row has two \"{c}\" columns"),
                ));
            }
        }
        let staff_roles: Vec<String> = staff_roles.iter().map(|r| r.to_lowercase()).collect();

        let mut people = Vec::new();
        // The line each person is on, for errors that name two rows.
        let mut lines: Vec<usize> = Vec::new();
        let mut by_address: HashMap<String, usize> = HashMap::new();
        for (line, row) in rows {
            if row.iter().all(|c| c.trim().is_empty()) {
                continue;
            }
            if row.len() != header.len() {
                return Err(err(
                    line,
                    format!(
                        "{} cells, but the header row has {}; a cell holding a comma must be in double quotes",
                        row.len(),
                        header.len()
                    ),
                ));
            }
            let cell = |i: usize| row[index[i]].trim();
            let role = cell(0).to_lowercase();
            let known = matches!(role.as_str(), "pupil" | "staff" | "headteacher")
                || staff_roles.contains(&role);
            if !known {
                return Err(err(
                    line,
                    format!(
                        "unknown role \"{}\"; use pupil, staff, headteacher or a role listed in [school] staff_roles",
                        cell(0)
                    ),
                ));
            }
            let name = cell(1);
            if name.is_empty() {
                return Err(err(line, "the name is empty".into()));
            }
            let date_of_birth = match cell(5) {
                "" => None,
                d => Some(d.parse::<jiff::civil::Date>().map_err(|_| {
                    err(
                        line,
                        format!("date_of_birth \"{d}\" is not a date (YYYY-MM-DD)"),
                    )
                })?),
            };
            let current = match cell(6).to_lowercase().as_str() {
                "" | "current" => true,
                "former" | "left" => false,
                other => {
                    return Err(err(
                        line,
                        format!("status \"{other}\" is not current or former"),
                    ));
                }
            };
            let school_email = Some(cell(2).to_lowercase()).filter(|s| !s.is_empty());
            let mut personal_emails: Vec<String> = Vec::new();
            for a in list(cell(3)) {
                let a = a.to_lowercase();
                if !personal_emails.contains(&a) {
                    personal_emails.push(a);
                }
            }
            for a in school_email.iter().chain(&personal_emails) {
                if !is_address(a) {
                    return Err(err(line, format!("\"{a}\" is not a mail address")));
                }
            }
            if let Some(s) = &school_email
                && personal_emails.contains(s)
            {
                return Err(err(
                    line,
                    format!("{s} is both the school address and a personal address"),
                ));
            }
            let me = people.len();
            for a in school_email.iter().chain(&personal_emails) {
                if let Some(&other) = by_address.get(a) {
                    let p: &Person = &people[other];
                    return Err(err(
                        line,
                        format!(
                            "{a} is already on line {} ({}); an address may belong to one person only",
                            lines[other], p.name
                        ),
                    ));
                }
                by_address.insert(a.clone(), me);
            }
            people.push(Person {
                role,
                name: name.to_string(),
                school_email,
                personal_emails,
                personal_phones: list(cell(4)).map(str::to_string).collect(),
                date_of_birth,
                current,
            });
            lines.push(line);
        }
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::with_capacity(people.len());
        for (i, p) in people.iter().enumerate() {
            by_name.entry(name_key(&p.name)).or_default().push(i);
        }
        Ok(Directory {
            people,
            by_address,
            by_name,
        })
    }

    /// A pupil (on `today`) whose name is `name`, matched case-, accent- and
    /// space-insensitively, "Smith, Jamie" as "Jamie Smith".
    pub fn pupil_named(&self, name: &str, today: jiff::civil::Date) -> Option<&Person> {
        let wanted = name_key(name);
        if wanted.is_empty() {
            return None;
        }
        self.by_name
            .get(&wanted)?
            .iter()
            .map(|&i| &self.people[i])
            .find(|p| p.is_pupil(today))
    }

    /// Everyone who is a pupil on `today` (current, or former and 18 or under), in file order:
    /// the detectors build their name index from them once per scan.
    pub fn pupils(&self, today: jiff::civil::Date) -> impl Iterator<Item = &Person> {
        self.people.iter().filter(move |p| p.is_pupil(today))
    }

    /// The person with `address` (school or personal; case-insensitive).
    pub fn person(&self, address: &str) -> Option<&Person> {
        self.by_address
            .get(&address.trim().to_lowercase())
            .map(|&i| &self.people[i])
    }
}

/// The non-empty, trimmed items of a `;`-separated cell.
fn list(cell: &str) -> impl Iterator<Item = &str> {
    cell.split(';').map(str::trim).filter(|s| !s.is_empty())
}

/// `local@domain`, both parts present, no white space: enough to catch a name or a phone number
/// in an address column.
fn is_address(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && !a.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// A name folded for comparison: lower case, accents removed, typographic apostrophes and
/// hyphens made plain, words in order with "Surname, Forename" turned round, single spaces.
pub fn name_key(name: &str) -> String {
    let name = name.trim().trim_matches(|c| c == '"' || c == '\'');
    let turned = match name.split_once(',') {
        Some((surname, forenames)) if !forenames.trim().is_empty() => {
            format!("{} {}", forenames.trim(), surname.trim())
        }
        _ => name.to_string(),
    };
    let folded: String = if turned.is_ascii() {
        turned
    } else {
        turned.chars().map(fold_accent).collect()
    };
    let lower = folded.to_lowercase();
    let mut key = String::with_capacity(lower.len());
    for word in lower.split_whitespace() {
        if !key.is_empty() {
            key.push(' ');
        }
        key.push_str(word);
    }
    key
}

/// One letter folded as [`name_key`] folds it (accents removed, typographic apostrophes and
/// hyphens made plain), before lower-casing: the detectors hash words of attachment text
/// letter by letter without building a key per word.
pub fn fold_letter(c: char) -> char {
    fold_accent(c)
}

/// The base letter of an accented Latin letter (the letters of UK and European names); the
/// plain `'` for the apostrophes that word processors and phones type (O’Connor), and the plain
/// `-` for typographic hyphens.
fn fold_accent(c: char) -> char {
    const FROM: &str = "ÀÁÂÃÄÅàáâãäåĀāĂăĄąÇçĆćĈĉĊċČčĎďĐđÈÉÊËèéêëĒēĔĕĖėĘęĚěĜĝĞğĠġĢģĤĥĦħÌÍÎÏìíîïĨĩĪīĬĭĮįİıĴĵĶķĹĺĻļĽľĿŀŁłÑñŃńŅņŇňÒÓÔÕÖØòóôõöøŌōŎŏŐőŔŕŖŗŘřŚśŜŝŞşŠšŢţŤťŦŧÙÚÛÜùúûüŨũŪūŬŭŮůŰűŲųŴŵÝýÿŶŷŸŹźŻżŽž";
    const TO: &str = "AAAAAAaaaaaaAaAaAaCcCcCcCcCcDdDdEEEEeeeeEeEeEeEeEeGgGgGgGgHhHhIIIIiiiiIiIiIiIiIiJjKkLlLlLlLlLlNnNnNnNnOOOOOOooooooOoOoOoRrRrRrSsSsSsSsTtTtTtUUUUuuuuUuUuUuUuUuUuWwYyyYyYZzZzZz";
    if c.is_ascii() {
        return c;
    }
    match c {
        '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{02BC}' | '\u{00B4}' | '\u{2032}' => return '\'',
        '\u{2010}' | '\u{2011}' => return '-',
        _ => {}
    }
    match FROM.chars().position(|f| f == c) {
        Some(i) => TO.chars().nth(i).unwrap_or(c),
        None => c,
    }
}

/// A CSV row and the line it starts on.
type CsvRow = (usize, Vec<String>);

/// RFC 4180 CSV: quoted fields may hold commas, quotes (doubled) and line breaks. Each row comes
/// with the line it starts on.
fn parse_csv(text: &str) -> Result<Vec<CsvRow>, (usize, String)> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut line = 1;
    let mut row_line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.trim().is_empty() => {
                field.clear();
                in_quotes = true;
            }
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push((row_line, std::mem::take(&mut row)));
                line += 1;
                row_line = line;
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err((row_line, "a quoted field is never closed".into()));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push((row_line, row));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Directory, DirectoryError> {
        Directory::parse(Path::new("d.csv"), text.as_bytes(), &["dsl".to_string()])
    }

    #[test]
    fn the_example_directory_reads() {
        let d = parse(include_str!("../policies/example-directory.csv")).unwrap();
        let today = jiff::civil::date(2026, 11, 23);
        // Ava Jones left but is 18 until 2027-06-01: still a pupil (seed 001).
        assert_eq!(d.people.iter().filter(|p| p.is_pupil(today)).count(), 2);
        assert_eq!(d.people.iter().filter(|p| p.is_staff()).count(), 3);
    }

    #[test]
    fn a_former_pupil_is_a_pupil_until_their_nineteenth_birthday() {
        let d = parse("role,name,school_email,personal_emails,personal_phones,date_of_birth,status\npupil,A,,,,2008-06-01,former\n").unwrap();
        let p = &d.people[0];
        assert!(p.is_pupil(jiff::civil::date(2027, 5, 31)));
        assert!(!p.is_pupil(jiff::civil::date(2027, 6, 1)));
    }

    #[test]
    fn names_match_whatever_their_case_accents_spacing_and_order() {
        let d = parse("role,name,school_email,personal_emails,personal_phones,date_of_birth,status\npupil,Jamie Smíth,j@p.x,,,2012-01-01,current\n").unwrap();
        let today = jiff::civil::date(2026, 11, 23);
        for n in [
            "JAMIE  SMITH",
            "Jamie Smith",
            "Jamie Smíth",
            "Smith, Jamie",
            " \"Jamie Smith\" ",
        ] {
            assert!(d.pupil_named(n, today).is_some(), "{n}");
        }
        assert!(d.pupil_named("Jamie Smithson", today).is_none());
    }

    #[test]
    fn an_unknown_role_names_its_line() {
        let e = parse("role,name,school_email,personal_emails,personal_phones,date_of_birth,status\nstaff,A,a@x,,,,\ncaretaker,B,b@x,,,,\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().starts_with("d.csv:3: unknown role"), "{e}");
    }

    #[test]
    fn quoted_fields_and_several_addresses() {
        let d = parse("role,name,school_email,personal_emails,personal_phones,date_of_birth,status\r\nstaff,\"Baker, Tom\",t@x,\"a@g.com; b@h.com\",,,current\r\n").unwrap();
        assert_eq!(d.people[0].name, "Baker, Tom");
        assert_eq!(d.people[0].personal_emails, vec!["a@g.com", "b@h.com"]);
    }

    const HEADER: &str =
        "role,name,school_email,personal_emails,personal_phones,date_of_birth,status\n";

    /// The error for `rows` under the standard header.
    fn error(rows: &str) -> DirectoryError {
        parse(&format!("{HEADER}{rows}")).unwrap_err()
    }

    #[test]
    fn the_same_address_on_two_rows_names_both_lines() {
        // School address twice, in different case.
        let e = error("staff,A,a@x.uk,,,,\npupil,B,b@p.x.uk,,,2012-01-01,\nstaff,C,A@X.uk,,,,\n");
        assert_eq!(e.line, Some(4));
        assert_eq!(
            e.to_string(),
            "d.csv:4: a@x.uk is already on line 2 (A); an address may belong to one person only"
        );
        // One person's personal address is another's school address.
        let e =
            error("pupil,B,b@p.x.uk,mum@gmail.com,,2012-01-01,\n\nstaff,Mum,mum@gmail.com,,,,\n");
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("already on line 2 (B)"), "{e}");
        // Personal on both rows, among others.
        let e = error(
            "pupil,B,,b@g.com; shared@g.com,,2012-01-01,\npupil,C,,c@g.com;SHARED@g.com,,2012-01-01,\n",
        );
        assert_eq!(e.line, Some(3));
        assert!(
            e.message.starts_with("shared@g.com is already on line 2"),
            "{e}"
        );
    }

    #[test]
    fn an_address_twice_on_one_row_is_one_address_unless_school_and_personal() {
        let d = parse(&format!(
            "{HEADER}pupil,B,b@p.x.uk,b@g.com;B@G.com,,2012-01-01,\n"
        ))
        .unwrap();
        assert_eq!(d.people[0].personal_emails, vec!["b@g.com"]);
        let e = error("pupil,B,b@p.x.uk,B@p.x.uk,,2012-01-01,\n");
        assert_eq!(e.line, Some(2));
        assert!(
            e.message.contains("both the school address and a personal"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_date_names_its_line() {
        let e = error("pupil,A,a@p.x,,,2012-01-01,\npupil,B,b@p.x,,,14/03/2010,current\n");
        assert_eq!(
            e.to_string(),
            "d.csv:3: date_of_birth \"14/03/2010\" is not a date (YYYY-MM-DD)"
        );
        let e = error("pupil,B,b@p.x,,,2010-02-30,current\n");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn a_bad_status_names_its_line() {
        let e = error("pupil,B,b@p.x,,,2010-02-03,expelled\n");
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("\"expelled\""), "{e}");
    }

    #[test]
    fn a_row_with_the_wrong_number_of_cells_names_its_line() {
        // An unquoted comma in a name: one cell too many.
        let e = error("staff,A,a@x,,,,\nstaff,Baker, Tom,t@x,,,,current\n");
        assert_eq!(e.line, Some(3));
        assert_eq!(
            e.to_string(),
            "d.csv:3: 8 cells, but the header row has 7; a cell holding a comma must be in double quotes"
        );
        // A row cut short.
        let e = error("staff,A,a@x,,,,\nstaff,B,b@x\n");
        assert_eq!(e.line, Some(3));
        assert!(e.message.starts_with("3 cells"), "{e}");
        // A quoted line break keeps the row whole; the next row's line is still right.
        let e = error("staff,\"A\nB\",a@x,,,,\nstaff,C\n");
        assert_eq!(e.line, Some(4), "{e}");
    }

    #[test]
    fn an_empty_name_names_its_line() {
        let e = error("staff,A,a@x,,,,\npupil,  ,b@p.x,,,2012-01-01,current\n");
        assert_eq!(e.to_string(), "d.csv:3: the name is empty");
    }

    #[test]
    fn something_that_is_not_an_address_names_its_line() {
        for cell in ["07700 900123", "@x.uk", "a@", "a b@x.uk"] {
            let e = error(&format!("staff,A,a@x,\"{cell}\",,,\n"));
            assert_eq!(e.line, Some(2), "{cell}");
            assert!(e.message.contains("is not a mail address"), "{cell}: {e}");
        }
    }

    #[test]
    fn header_problems_name_line_one() {
        let e = parse("role,name,school_email,personal_emails,date_of_birth,status\n").unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains("no \"personal_phones\" column"), "{e}");
        let e = parse(
            "role,name,name,school_email,personal_emails,personal_phones,date_of_birth,status\n",
        )
        .unwrap_err();
        assert!(e.message.contains("two \"name\" columns"), "{e}");
        let e = parse("").unwrap_err();
        assert!(e.message.contains("empty"), "{e}");
        // Extra columns, in any order, with a BOM and CRLF: fine.
        let d = parse("\u{feff}Status,Name,Year,Role,School_Email,Personal_Emails,Personal_Phones,Date_of_Birth\r\ncurrent,A,7,pupil,a@p.x,,,2013-01-01\r\n").unwrap();
        assert_eq!(d.people[0].name, "A");
    }

    #[test]
    fn not_utf8_and_an_open_quote_name_their_lines() {
        let mut bytes = format!("{HEADER}staff,A,a@x,,,,\nstaff,J").into_bytes();
        bytes.extend_from_slice(b"\xe9r\xf4me,j@x,,,,\n");
        let e = Directory::parse(Path::new("d.csv"), &bytes, &[]).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("not UTF-8"), "{e}");
        let e = error("staff,A,a@x,,,,\nstaff,\"B,b@x,,,,\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("never closed"), "{e}");
    }

    #[test]
    fn blank_rows_are_skipped() {
        let d = parse(&format!("{HEADER}\nstaff,A,a@x,,,,\n,,,,,,\n\r\n")).unwrap();
        assert_eq!(d.people.len(), 1);
    }

    #[test]
    fn a_name_finds_the_first_pupil_with_it_not_staff() {
        let d = parse(&format!(
            "{HEADER}staff,Sam Lee,s.lee@x,,,,\npupil,Sam Lee,old@p.x,,,2001-01-01,former\npupil,Sám  LEE,sam@p.x,,,2012-01-01,\npupil,Sam Lee,sam2@p.x,,,2012-01-01,\n"
        ))
        .unwrap();
        let today = jiff::civil::date(2026, 11, 23);
        let p = d.pupil_named("Lee, Sam", today).unwrap();
        assert_eq!(p.school_email.as_deref(), Some("sam@p.x"));
        assert!(d.pupil_named("", today).is_none());
        assert!(d.pupil_named("Tom Lee", today).is_none());
    }

    #[test]
    fn name_keys_fold_accents_case_and_spaces() {
        assert_eq!(
            name_key("  Zoë   ŁUKASZEWSKA-Núñez "),
            "zoe lukaszewska-nunez"
        );
        assert_eq!(name_key("O'Brien, Siân"), "sian o'brien");
        assert_eq!(name_key("\"Smith, Jamie\""), "jamie smith");
        assert_eq!(name_key("Smith,"), "smith,");
        assert_eq!(name_key("Seán O\u{2019}Connor"), name_key("Sean O'Connor"));
        assert_eq!(
            name_key("Anne\u{2011}Marie O\u{02BC}Neil"),
            "anne-marie o'neil"
        );
    }
}
