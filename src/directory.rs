//! Who is a pupil, who is staff, who is the headteacher: the school's people, from a CSV in the
//! shape of an MIS export (SPEC, "Directory").
//!
//! Seed 001: "'pupil' = anyone 18 or under, including former pupils until 18". This module only
//! reads and checks the file; the rules that use it live in `policy`.

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
    by_address: std::collections::HashMap<String, usize>,
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
        let text = std::str::from_utf8(bytes)
            .map_err(|e| err(1, format!("not UTF-8 ({e}); export the CSV as UTF-8")))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let rows = parse_csv(text).map_err(|(line, m)| err(line, m))?;
        let mut rows = rows.into_iter();
        let Some((_, header)) = rows.next() else {
            return Err(err(1, "the file is empty; it needs a header row".into()));
        };
        let index: Vec<usize> = COLUMNS
            .iter()
            .map(|c| {
                header
                    .iter()
                    .position(|h| h.trim().eq_ignore_ascii_case(c))
                    .ok_or_else(|| err(1, format!("the header row has no \"{c}\" column")))
            })
            .collect::<Result<_, _>>()?;
        let mut people = Vec::new();
        for (line, row) in rows {
            if row.iter().all(|c| c.trim().is_empty()) {
                continue;
            }
            let cell = |i: usize| row.get(index[i]).map(|s| s.trim()).unwrap_or("");
            let role = cell(0).to_lowercase();
            let known = matches!(role.as_str(), "pupil" | "staff" | "headteacher")
                || staff_roles.iter().any(|r| r.eq_ignore_ascii_case(&role));
            if !known {
                return Err(err(
                    line,
                    format!(
                        "unknown role \"{}\"; use pupil, staff, headteacher or a role listed in [school] staff_roles",
                        cell(0)
                    ),
                ));
            }
            let list = |s: &str| -> Vec<String> {
                s.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            };
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
            for a in school_email.iter().chain(list(cell(3)).iter()) {
                if !a.contains('@') {
                    return Err(err(line, format!("\"{a}\" is not a mail address")));
                }
            }
            people.push(Person {
                role,
                name: cell(1).to_string(),
                school_email,
                personal_emails: list(cell(3))
                    .into_iter()
                    .map(|s| s.to_lowercase())
                    .collect(),
                personal_phones: list(cell(4)),
                date_of_birth,
                current,
            });
        }
        let mut by_address = std::collections::HashMap::new();
        for (i, p) in people.iter().enumerate() {
            for a in p.school_email.iter().chain(&p.personal_emails) {
                by_address.entry(a.clone()).or_insert(i);
            }
        }
        Ok(Directory { people, by_address })
    }

    /// A pupil (on `today`) whose name is `name`, matched case-, accent- and
    /// space-insensitively, "Smith, Jamie" as "Jamie Smith".
    pub fn pupil_named(&self, name: &str, today: jiff::civil::Date) -> Option<&Person> {
        let wanted = name_key(name);
        if wanted.is_empty() {
            return None;
        }
        self.people
            .iter()
            .find(|p| p.is_pupil(today) && name_key(&p.name) == wanted)
    }

    /// The person with `address` (school or personal; case-insensitive).
    pub fn person(&self, address: &str) -> Option<&Person> {
        self.by_address
            .get(&address.trim().to_lowercase())
            .map(|&i| &self.people[i])
    }
}

/// A name folded for comparison: lower case, accents removed, words in order with
/// "Surname, Forename" turned round, single spaces.
pub fn name_key(name: &str) -> String {
    let name = name.trim().trim_matches(|c| c == '"' || c == '\'');
    let turned = match name.split_once(',') {
        Some((surname, forenames)) if !forenames.trim().is_empty() => {
            format!("{} {}", forenames.trim(), surname.trim())
        }
        _ => name.to_string(),
    };
    turned
        .chars()
        .map(fold_accent)
        .collect::<String>()
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The base letter of an accented Latin letter (the letters of UK and European names).
fn fold_accent(c: char) -> char {
    const FROM: &str = "ÀÁÂÃÄÅàáâãäåĀāĂăĄąÇçĆćĈĉĊċČčĎďĐđÈÉÊËèéêëĒēĔĕĖėĘęĚěĜĝĞğĠġĢģĤĥĦħÌÍÎÏìíîïĨĩĪīĬĭĮįİıĴĵĶķĹĺĻļĽľĿŀŁłÑñŃńŅņŇňÒÓÔÕÖØòóôõöøŌōŎŏŐőŔŕŖŗŘřŚśŜŝŞşŠšŢţŤťŦŧÙÚÛÜùúûüŨũŪūŬŭŮůŰűŲųŴŵÝýÿŶŷŸŹźŻżŽž";
    const TO: &str = "AAAAAAaaaaaaAaAaAaCcCcCcCcCcDdDdEEEEeeeeEeEeEeEeEeGgGgGgGgHhHhIIIIiiiiIiIiIiIiIiJjKkLlLlLlLlLlNnNnNnNnOOOOOOooooooOoOoOoRrRrRrSsSsSsSsTtTtTtUUUUuuuuUuUuUuUuUuUuWwYyyYyYZzZzZz";
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
}
