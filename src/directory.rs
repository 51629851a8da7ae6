//! Who is a pupil, who is staff, who is the headteacher: the school's people, from a CSV in the
//! shape of an MIS export (SPEC, "Directory").
//!
//! Seed 001: "'pupil' = anyone 18 or under, including former pupils until 18". This module only
//! reads and checks the file; the rules that use it live in `policy`.

pub mod oneroster;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The columns, in the order the SPEC gives them. The header row must name them all, except
/// [`CHILDREN`], which is optional.
pub const COLUMNS: [&str; 7] = [
    "role",
    "name",
    "school_email",
    "personal_emails",
    "personal_phones",
    "date_of_birth",
    "status",
];

/// The optional 8th column: on a `parent` row, the school addresses of the parent's children,
/// `;`-separated, as MIS contact exports give them.
pub const CHILDREN: &str = "children";

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
    /// On a `parent` row, the children's addresses as the file gives them (lower case); the
    /// loader has checked that each is a pupil's. Empty for everyone else.
    pub children: Vec<String>,
}

impl Person {
    /// Everyone but a pupil or a parent is staff.
    pub fn is_staff(&self) -> bool {
        self.role != "pupil" && self.role != "parent"
    }

    /// A parent or carer (role `parent`): outside the school, but known to it.
    pub fn is_parent(&self) -> bool {
        self.role == "parent"
    }

    /// Is `address` one of this person's personal addresses, compared as
    /// [`canonical_address`] compares them (a Gmail address with or without its dots)?
    pub fn has_personal_email(&self, address: &str) -> bool {
        let wanted = canonical_address(address);
        self.personal_emails
            .iter()
            .any(|e| canonical_address(e) == wanted)
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
    /// Every address (school and personal, as [`canonical_address`] gives it) to its person's
    /// index in `people`.
    by_address: HashMap<String, usize>,
    /// Every [`name_key`] to the indices in `people` of those with that name, in file order.
    by_name: HashMap<String, Vec<usize>>,
    /// The last word of every pupil's [`name_key`] (the surname, as MIS exports write names) to
    /// the indices of the pupils (current or former) with it, in file order.
    by_surname: HashMap<String, Vec<usize>>,
    /// A parent's index to their children's indices, in the order the file names them.
    children: HashMap<usize, Vec<usize>>,
    /// A pupil's index to their parents' indices, in file order.
    parents: HashMap<usize, Vec<usize>>,
    /// Every personal phone number ([`phone_key`]) to the indices of those who gave it (a
    /// family's landline may be on several rows), in file order.
    by_phone: HashMap<String, Vec<usize>>,
    /// The pupils' names indexed for the rules that read text, built on first use.
    text_indexes: crate::policy::names::TextIndexes,
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
    ///
    /// An empty `path` is no directory (nobody known): a trust's defaults without a trust-wide
    /// `[school] directory` (a single school's config must name one).
    pub fn load(path: &Path, staff_roles: &[String]) -> Result<Directory, DirectoryError> {
        if path.as_os_str().is_empty() {
            return Ok(Directory::default());
        }
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
        let text = csv_text(bytes)
            .map_err(|(line, e)| err(line, format!("not UTF-8 ({e}); export the CSV as UTF-8")))?;
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
        let mut children_column = header
            .iter()
            .enumerate()
            .filter(|(_, h)| h.trim().eq_ignore_ascii_case(CHILDREN))
            .map(|(i, _)| i);
        let children_index = children_column.next();
        if children_column.next().is_some() {
            return Err(err(
                header_line,
                format!("the header row has two \"{CHILDREN}\" columns"),
            ));
        }
        let staff_roles: Vec<String> = staff_roles.iter().map(|r| r.to_lowercase()).collect();

        let mut people: Vec<Person> = Vec::new();
        // The line each person is on, for errors that name two rows.
        let mut lines: Vec<usize> = Vec::new();
        let mut by_address: HashMap<String, usize> = HashMap::new();
        // Each row's children as written, resolved once every row is read (a child may come
        // after their parent).
        // (with the line that names each, for the error when one is not a pupil).
        let mut named_children: Vec<Vec<(usize, String)>> = Vec::new();
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
            let known = matches!(role.as_str(), "pupil" | "parent" | "staff" | "headteacher")
                || staff_roles.contains(&role);
            if !known {
                return Err(err(
                    line,
                    format!(
                        "unknown role \"{}\"; use pupil, parent, staff, headteacher or a role listed in [school] staff_roles",
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
                let key = canonical_address(&a);
                if !personal_emails.iter().any(|e| canonical_address(e) == key) {
                    personal_emails.push(a);
                }
            }
            for a in school_email.iter().chain(&personal_emails) {
                if !is_address(a) {
                    return Err(err(line, format!("\"{a}\" is not a mail address")));
                }
            }
            if let Some(s) = &school_email
                && personal_emails
                    .iter()
                    .any(|e| canonical_address(e) == canonical_address(s))
            {
                return Err(err(
                    line,
                    format!("{s} is both the school address and a personal address"),
                ));
            }
            let me = people.len();
            let mut children: Vec<String> = Vec::new();
            for a in children_index
                .map(|i| list(row[i].trim()))
                .into_iter()
                .flatten()
            {
                let a = a.to_lowercase();
                if !is_address(&a) {
                    return Err(err(
                        line,
                        format!(
                            "child \"{a}\" is not a mail address; {CHILDREN} holds the school addresses of a parent's children, separated by ;"
                        ),
                    ));
                }
                if !children.contains(&a) {
                    children.push(a);
                }
            }
            if !children.is_empty() && role == "pupil" {
                return Err(err(
                    line,
                    format!(
                        "a pupil's row has {CHILDREN}; the column is for the parent's row (or a member of staff who is also a parent)"
                    ),
                ));
            }
            let personal_phones: Vec<String> = list(cell(4)).map(str::to_string).collect();
            // A parent listed once per child, as MIS contact exports list them, is one person:
            // a parent's row whose addresses are an earlier parent's row's adds to that row
            // (its children, other addresses and numbers; a different name, a second parent
            // sharing the family's address, joins the name: "Sarah Carter & David Carter").
            let owners: Vec<usize> = school_email
                .iter()
                .chain(&personal_emails)
                .filter_map(|a| by_address.get(&canonical_address(a)).copied())
                .collect();
            if role == "parent"
                && let Some(&first) = owners.first()
                && owners.iter().all(|&o| o == first)
                && people[first].role == "parent"
                && (school_email.is_none() || school_email == people[first].school_email)
            {
                let p = &mut people[first];
                let key = name_key(name);
                if !p.name.split(" & ").any(|n| name_key(n) == key) {
                    p.name = format!("{} & {name}", p.name);
                }
                for a in personal_emails {
                    let k = canonical_address(&a);
                    if let std::collections::hash_map::Entry::Vacant(e) = by_address.entry(k) {
                        e.insert(first);
                        p.personal_emails.push(a);
                    }
                }
                for n in personal_phones {
                    if !p
                        .personal_phones
                        .iter()
                        .any(|q| phone_key(q) == phone_key(&n))
                    {
                        p.personal_phones.push(n);
                    }
                }
                p.current |= current;
                for a in children {
                    if !p.children.contains(&a) {
                        p.children.push(a.clone());
                        named_children[first].push((line, a));
                    }
                }
                continue;
            }
            for a in school_email.iter().chain(&personal_emails) {
                if let Some(&other) = by_address.get(&canonical_address(a)) {
                    let p: &Person = &people[other];
                    return Err(err(
                        line,
                        format!(
                            "{a} is already on line {} ({}); an address may belong to one person only",
                            lines[other], p.name
                        ),
                    ));
                }
                by_address.insert(canonical_address(a), me);
            }
            people.push(Person {
                role,
                name: name.to_string(),
                school_email,
                personal_emails,
                personal_phones,
                date_of_birth,
                current,
                children: children.clone(),
            });
            named_children.push(children.into_iter().map(|a| (line, a)).collect());
            lines.push(line);
        }
        let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut parents: HashMap<usize, Vec<usize>> = HashMap::new();
        for (parent, named) in named_children.iter().enumerate() {
            for (line, a) in named {
                let line = *line;
                let Some(&child) = by_address.get(&canonical_address(a)) else {
                    return Err(err(
                        line,
                        format!(
                            "child {a} is not in the directory; add the pupil's row or correct the address"
                        ),
                    ));
                };
                let c = &people[child];
                if c.role != "pupil" {
                    return Err(err(
                        line,
                        format!(
                            "child {a} is {} on line {}, who is not a pupil (role {})",
                            c.name, lines[child], c.role
                        ),
                    ));
                }
                if child == parent {
                    return Err(err(line, format!("{a} is this row's own address")));
                }
                let theirs = children.entry(parent).or_default();
                if !theirs.contains(&child) {
                    theirs.push(child);
                    parents.entry(child).or_default().push(parent);
                }
            }
        }
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::with_capacity(people.len());
        let mut by_surname: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_phone: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in people.iter().enumerate() {
            for n in &p.personal_phones {
                let key = phone_key(n);
                if !key.is_empty() {
                    let theirs = by_phone.entry(key).or_default();
                    if !theirs.contains(&i) {
                        theirs.push(i);
                    }
                }
            }
            let key = name_key(&p.name);
            if p.role == "pupil"
                && let Some(surname) = key.rsplit(' ').next()
            {
                by_surname.entry(surname.to_string()).or_default().push(i);
            }
            by_name.entry(key).or_default().push(i);
        }
        Ok(Directory {
            people,
            by_address,
            by_name,
            by_surname,
            children,
            parents,
            by_phone,
            text_indexes: Default::default(),
        })
    }

    /// The pupils by surname, for finding pupils named in a message (built once per load).
    pub fn pupil_names(&self) -> &crate::policy::names::PupilNames {
        self.text_indexes.pupil_names(self)
    }

    /// The detectors' index of the pupils on `today` (built once per load and day).
    pub fn detector_names(
        &self,
        today: jiff::civil::Date,
    ) -> std::sync::Arc<crate::policy::sensitive::detect::NameIndex> {
        self.text_indexes.detector_names(self, today)
    }

    /// A pupil (on `today`) whose name is `name`, matched case-, accent- and
    /// space-insensitively, "Smith, Jamie" as "Jamie Smith", and a display name in MIS style,
    /// "CARTER Jamie (Year 9)", as "Jamie Carter". The first in file order when several share
    /// the name.
    pub fn pupil_named(&self, name: &str, today: jiff::civil::Date) -> Option<&Person> {
        self.pupils_named(name, today).next()
    }

    /// Every pupil (on `today`) whose name is `name`, matched as [`Directory::pupil_named`]
    /// matches it, in file order: two pupils may share a name.
    pub fn pupils_named(
        &self,
        name: &str,
        today: jiff::civil::Date,
    ) -> impl Iterator<Item = &Person> {
        display_name_keys(name)
            .into_iter()
            .filter_map(|k| self.by_name.get(&k))
            .flatten()
            .map(|&i| &self.people[i])
            .filter(move |p| p.is_pupil(today))
    }

    /// The pupils (on `today`) whose surname, the last word of their name folded as
    /// [`name_key`] folds it, is `surname` (given already folded: lower case, accents removed),
    /// in file order. For the rules that find pupils named in text: look a word up here, then
    /// compare the words before it with the pupils' names, without a pass over every pupil.
    pub fn pupils_with_surname(
        &self,
        surname: &str,
        today: jiff::civil::Date,
    ) -> impl Iterator<Item = &Person> {
        self.by_surname
            .get(surname)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|&i| &self.people[i])
            .filter(move |p| p.is_pupil(today))
    }

    /// The parent with `address` (any of their addresses, compared as [`canonical_address`]
    /// compares them): a `parent` row, or a member of staff whose row names children.
    pub fn parent(&self, address: &str) -> Option<&Person> {
        let i = self.index(address)?;
        let p = &self.people[i];
        (p.is_parent() || self.children.contains_key(&i)).then_some(p)
    }

    /// The children of the parent with `address`, in the order their row names them; none
    /// when `address` is not a parent's.
    pub fn children_of(&self, address: &str) -> impl Iterator<Item = &Person> {
        self.index(address)
            .and_then(|i| self.children.get(&i))
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|&i| &self.people[i])
    }

    /// The parents of `pupil` (a person of this directory), in file order.
    pub fn parents_of(&self, pupil: &Person) -> impl Iterator<Item = &Person> {
        self.index_of(pupil)
            .and_then(|i| self.parents.get(&i))
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|&i| &self.people[i])
    }

    /// Is the person with `parent_address` a parent of `pupil` (a person of this directory)?
    pub fn is_parent_of(&self, parent_address: &str, pupil: &Person) -> bool {
        match (self.index(parent_address), self.index_of(pupil)) {
            (Some(parent), Some(child)) => self
                .children
                .get(&parent)
                .is_some_and(|c| c.contains(&child)),
            _ => false,
        }
    }

    /// Everyone who gave `number` as a personal phone, compared as [`phone_key`] compares
    /// numbers, in file order.
    pub fn people_with_phone(&self, number: &str) -> impl Iterator<Item = &Person> {
        self.by_phone
            .get(&phone_key(number))
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|&i| &self.people[i])
    }

    /// The index in `people` of the person with `address`.
    fn index(&self, address: &str) -> Option<usize> {
        self.by_address.get(&canonical_address(address)).copied()
    }

    /// The index in `people` of `person`, found through their first address.
    fn index_of(&self, person: &Person) -> Option<usize> {
        let address = person
            .school_email
            .as_ref()
            .or(person.personal_emails.first())?;
        self.index(address).filter(|&i| self.people[i] == *person)
    }

    /// Everyone who is a pupil on `today` (current, or former and 18 or under), in file order:
    /// the detectors build their name index from them once per scan.
    pub fn pupils(&self, today: jiff::civil::Date) -> impl Iterator<Item = &Person> {
        self.people.iter().filter(move |p| p.is_pupil(today))
    }

    /// The person with `address` (school or personal), compared as [`canonical_address`]
    /// compares addresses.
    pub fn person(&self, address: &str) -> Option<&Person> {
        self.index(address).map(|i| &self.people[i])
    }
}

/// An address as the mailbox it reaches, for comparing two addresses; every lookup by address
/// goes through it.
///
/// - Case never matters: the domain's by RFC 5321, and the local part's at every provider a
///   school meets, whatever the RFC allows. `Jamie.Carter@School.org.uk` is
///   `jamie.carter@school.org.uk`.
/// - Gmail ignores dots and `+tags` in the local part, and Googlemail is Gmail:
///   `Jamie.Carter.2011+school@googlemail.com` is `jamiecarter2011@gmail.com`.
/// - Outlook, Hotmail, Live and MSN, iCloud (with its older me.com and mac.com, the same
///   mailbox), Proton and Fastmail ignore `+tags`.
/// - Anywhere else the local part is kept as written (lower-cased): `a.b@council.gov.uk` and
///   `ab@council.gov.uk` may be two people.
///
/// Angle brackets and surrounding white space are dropped.
pub fn canonical_address(address: &str) -> String {
    let a = address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_lowercase();
    let Some((local, domain)) = a.rsplit_once('@') else {
        return a;
    };
    let domain = domain.trim_end_matches('.');
    let untagged = match local.split_once('+') {
        Some((before, _)) if !before.is_empty() => before,
        _ => local,
    };
    if domain == "gmail.com" || domain == "googlemail.com" {
        let local: String = untagged.chars().filter(|&c| c != '.').collect();
        return format!("{local}@gmail.com");
    }
    if matches!(domain, "icloud.com" | "me.com" | "mac.com") {
        return format!("{untagged}@icloud.com");
    }
    const TAGGED: [&str; 10] = [
        "outlook.*",
        "hotmail.*",
        "live.*",
        "msn.com",
        "windowslive.com",
        "protonmail.*",
        "proton.me",
        "pm.me",
        "fastmail.com",
        "fastmail.fm",
    ];
    if TAGGED.iter().any(|p| domain_matches(domain, p)) {
        return format!("{untagged}@{domain}");
    }
    format!("{local}@{domain}")
}

/// A phone number as its national digits, for comparing two numbers: `07700 900123`,
/// `+44 7700 900123`, `+44 (0)7700 900123` and `447700900123` are all `07700900123`. Empty
/// when there are no digits.
pub fn phone_key(number: &str) -> String {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let international = number.trim_start().starts_with('+') || digits.starts_with("44");
    match digits.strip_prefix("44") {
        Some(rest) if international && rest.starts_with('0') => rest.to_string(),
        Some(rest) if international && !rest.is_empty() => format!("0{rest}"),
        _ => digits,
    }
}

/// Does `domain` (lower case) match `pattern`: the same domain, or for `name.*` the provider
/// `name` under a country or generic ending (`hotmail.*` is hotmail.com, hotmail.co.uk,
/// hotmail.fr, but not hotmail.example.org). A pattern `*.name` matches `name` and its
/// subdomains.
pub fn domain_matches(domain: &str, pattern: &str) -> bool {
    let domain = domain.trim_end_matches('.');
    let pattern = pattern.trim().trim_end_matches('.');
    if let Some(name) = pattern.strip_suffix(".*") {
        let Some(ending) = domain
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('.'))
        else {
            return false;
        };
        let labels: Vec<&str> = ending.split('.').collect();
        return match labels.as_slice() {
            [tld] => (2..=3).contains(&tld.len()),
            [second, country] => {
                country.len() == 2 && matches!(*second, "co" | "com" | "net" | "org" | "ne")
            }
            _ => false,
        } && labels
            .iter()
            .all(|l| l.chars().all(|c| c.is_ascii_alphabetic()));
    }
    if let Some(base) = pattern.strip_prefix("*.") {
        return domain == base || domain.ends_with(&format!(".{base}"));
    }
    domain.eq_ignore_ascii_case(pattern)
}

/// The [`name_key`]s a display name may stand for, most likely first: the name as written
/// (without a trailing "(Year 9)" or "(9C)"), then, for an MIS-style "CARTER Jamie" whose
/// leading words are in capitals, the surname moved to the end ("jamie carter").
fn display_name_keys(name: &str) -> Vec<String> {
    let mut name = name.trim().trim_matches(|c| c == '"' || c == '\'').trim();
    if let Some(open) = name.rfind('(')
        && name.ends_with(')')
        && open > 0
    {
        name = name[..open].trim_end();
    }
    let mut keys = Vec::with_capacity(2);
    let key = name_key(name);
    if key.is_empty() {
        return keys;
    }
    keys.push(key);
    if !name.contains(',') {
        let words: Vec<&str> = name.split_whitespace().collect();
        let capitals =
            |w: &str| w.chars().any(char::is_alphabetic) && !w.chars().any(char::is_lowercase);
        let surname_words = words.iter().take_while(|w| capitals(w)).count();
        if surname_words > 0 && surname_words < words.len() {
            let turned = format!(
                "{} {}",
                words[surname_words..].join(" "),
                words[..surname_words].join(" ")
            );
            keys.push(name_key(&turned));
        }
    }
    keys
}

/// The non-empty, trimmed items of a `;`-separated cell.
fn list(cell: &str) -> impl Iterator<Item = &str> {
    cell.split(';').map(str::trim).filter(|s| !s.is_empty())
}

/// `local@domain`, both parts present, no white space: enough to catch a name or a phone number
/// in an address column.
pub(crate) fn is_address(a: &str) -> bool {
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
pub(crate) type CsvRow = (usize, Vec<String>);

/// RFC 4180 CSV: quoted fields may hold commas, quotes (doubled) and line breaks. Each row comes
/// with the line it starts on.
pub(crate) fn parse_csv(text: &str) -> Result<Vec<CsvRow>, (usize, String)> {
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

/// A CSV file's text without its byte-order mark, or the line of its first byte that is not
/// UTF-8 (the directory and the OneRoster import read their files the same way).
pub(crate) fn csv_text(bytes: &[u8]) -> Result<&str, (usize, std::str::Utf8Error)> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        (line, e)
    })?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
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

    const WITH_CHILDREN: &str =
        "role,name,school_email,personal_emails,personal_phones,date_of_birth,status,children\n";

    /// Jamie and Olivia, pupils; Jamie's mum (with Jamie and Olivia's brother Leo), Olivia's
    /// dad; a teacher who is also Leo's parent.
    fn family() -> Directory {
        parse(&format!(
            "{WITH_CHILDREN}parent,Sarah Carter,,Sarah.Carter+school@googlemail.com;s.carter@outlook.com,07700 900456,,,\"j.carter@p.x; L.Carter@p.x\"\n\
             pupil,Jamie Carter,j.carter@p.x,Jamie.Carter.2011@gmail.com,,2011-05-02,current,\n\
             pupil,Olivia Patel,o.patel@p.x,,,2012-01-09,current,\n\
             parent,Raj Patel,,raj.patel@council.gov.uk,,,,o.patel@p.x\n\
             pupil,Leo Carter,l.carter@p.x,,,2014-03-03,current,\n\
             staff,Tom Baker,t.baker@x,tom@icloud.com,,,current,l.carter@p.x\n"
        ))
        .unwrap()
    }

    #[test]
    fn parents_are_people_but_not_staff_or_pupils() {
        let d = family();
        let today = jiff::civil::date(2026, 11, 23);
        let mum = d.parent("sarahcarter@gmail.com").unwrap();
        assert_eq!(mum.name, "Sarah Carter");
        assert!(mum.is_parent() && !mum.is_staff() && !mum.is_pupil(today));
        assert_eq!(mum.children, vec!["j.carter@p.x", "l.carter@p.x"]);
        // Not a parent: a pupil, a member of staff without children, a stranger.
        assert!(d.parent("j.carter@p.x").is_none());
        assert!(d.parent("nobody@gmail.com").is_none());
        assert_eq!(d.people.iter().filter(|p| p.is_staff()).count(), 1);
    }

    #[test]
    fn children_and_parents_are_found_both_ways() {
        let d = family();
        let today = jiff::civil::date(2026, 11, 23);
        let names =
            |it: &mut dyn Iterator<Item = &Person>| it.map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&mut d.children_of("S.CARTER@outlook.com")),
            ["Jamie Carter", "Leo Carter"]
        );
        assert!(d.children_of("j.carter@p.x").next().is_none());
        assert!(d.children_of("nobody@x").next().is_none());
        let jamie = d.pupil_named("Jamie Carter", today).unwrap();
        let olivia = d.pupil_named("Olivia Patel", today).unwrap();
        let leo = d.pupil_named("Leo Carter", today).unwrap();
        assert!(d.is_parent_of("sarah.carter@gmail.com", jamie));
        assert!(!d.is_parent_of("sarah.carter@gmail.com", olivia));
        assert!(d.is_parent_of("Raj.Patel@Council.gov.uk", olivia));
        assert!(!d.is_parent_of("raj.patel@council.gov.uk", jamie));
        assert!(!d.is_parent_of("nobody@x", jamie));
        assert_eq!(names(&mut d.parents_of(leo)), ["Sarah Carter", "Tom Baker"]);
        assert_eq!(names(&mut d.parents_of(jamie)), ["Sarah Carter"]);
        // A member of staff who is also a parent keeps one row, with children.
        let tom = d.parent("tom+x@icloud.com").unwrap();
        assert!(tom.is_staff());
        assert!(d.is_parent_of("t.baker@x", leo));
    }

    #[test]
    fn a_parent_naming_a_child_not_in_the_directory_names_its_line() {
        let e = parse(&format!(
            "{WITH_CHILDREN}pupil,Jamie Carter,j.carter@p.x,,,2011-05-02,,\nparent,Sarah Carter,,s@gmail.com,,,,j.carter@p.x;o.patel@p.x\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(
            e.to_string(),
            "d.csv:3: child o.patel@p.x is not in the directory; add the pupil's row or correct the address"
        );
        // A child who is not a pupil.
        let e = parse(&format!(
            "{WITH_CHILDREN}parent,Sarah Carter,,s@gmail.com,,,,t@x\nstaff,T,t@x,,,,,\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("who is not a pupil"), "{e}");
        // Not an address.
        let e = parse(&format!(
            "{WITH_CHILDREN}parent,Sarah Carter,,s@gmail.com,,,,Jamie Carter\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("is not a mail address"), "{e}");
        // A pupil with children.
        let e = parse(&format!(
            "{WITH_CHILDREN}pupil,A,a@p.x,,,2011-01-01,,b@p.x\npupil,B,b@p.x,,,2011-01-01,,\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(2));
        // Two children columns.
        let e = parse("role,name,school_email,personal_emails,personal_phones,date_of_birth,status,children,Children\n").unwrap_err();
        assert!(e.message.contains("two \"children\" columns"), "{e}");
    }

    #[test]
    fn seven_column_files_keep_working_and_a_parent_may_have_no_children_listed() {
        let d = parse(&format!(
            "{HEADER}parent,Sarah Carter,,s@gmail.com,,,\npupil,J,j@p.x,,,2011-01-01,\n"
        ))
        .unwrap();
        assert!(d.parent("s@gmail.com").is_some());
        assert!(d.children_of("s@gmail.com").next().is_none());
    }

    #[test]
    fn gmail_variants_are_one_address() {
        let d = family();
        let jamie = d.person("jamiecarter2011@gmail.com").unwrap();
        assert_eq!(jamie.name, "Jamie Carter");
        assert!(jamie.has_personal_email("Jamie.Carter.2011+school@googlemail.com"));
        assert!(!jamie.has_personal_email("jamie.carter.2012@gmail.com"));
        // Two spellings of one Gmail mailbox on two rows are refused.
        let e = error(
            "pupil,A,a@p.x,a.b@gmail.com,,2011-01-01,\npupil,B,b@p.x,AB+x@googlemail.com,,2011-01-01,\n",
        );
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("already on line 2"), "{e}");
    }

    #[test]
    fn canonical_addresses() {
        for (a, b) in [
            (
                "Jamie.Carter.2011+school@googlemail.com",
                "jamiecarter2011@gmail.com",
            ),
            ("<J.Smith@GMAIL.com>", "jsmith@gmail.com"),
            ("Jo.Bloggs+pta@Outlook.com", "jo.bloggs@outlook.com"),
            ("jo+x@hotmail.co.uk", "jo@hotmail.co.uk"),
            ("jo+x@live.com", "jo@live.com"),
            ("Jo+x@me.com", "jo@icloud.com"),
            ("jo@mac.com", "jo@icloud.com"),
            ("jo+x@proton.me", "jo@proton.me"),
            // Elsewhere the local part stays as written, in lower case.
            (
                "Jo.Bloggs+pta@Example.org.uk",
                "jo.bloggs+pta@example.org.uk",
            ),
            ("j.o@council.gov.uk", "j.o@council.gov.uk"),
            // Only a tag after something.
            ("+x@gmail.com", "+x@gmail.com"),
            ("not an address", "not an address"),
        ] {
            assert_eq!(canonical_address(a), b, "{a}");
        }
        assert_ne!(
            canonical_address("jo.b@outlook.com"),
            canonical_address("job@outlook.com")
        );
    }

    #[test]
    fn provider_patterns_match_country_endings_only() {
        for d in [
            "hotmail.com",
            "hotmail.co.uk",
            "hotmail.fr",
            "hotmail.com.au",
        ] {
            assert!(domain_matches(d, "hotmail.*"), "{d}");
        }
        for d in [
            "hotmail.example.org",
            "myhotmail.com",
            "hotmail",
            "hotmail.c0m",
        ] {
            assert!(!domain_matches(d, "hotmail.*"), "{d}");
        }
        assert!(domain_matches("gmail.com", "gmail.com"));
        assert!(!domain_matches("mail.gmail.com", "gmail.com"));
        assert!(domain_matches("mail.example.org", "*.example.org"));
        assert!(domain_matches("example.org", "*.example.org"));
        assert!(!domain_matches("badexample.org", "*.example.org"));
    }

    #[test]
    fn mis_display_names_find_the_pupil() {
        let d = family();
        let today = jiff::civil::date(2026, 11, 23);
        for n in [
            "CARTER Jamie (Year 9)",
            "CARTER Jamie",
            "Carter, Jamie (9C)",
            "Jamie Carter (Year 9)",
        ] {
            assert_eq!(
                d.pupil_named(n, today).map(|p| p.name.as_str()),
                Some("Jamie Carter"),
                "{n}"
            );
        }
        assert!(d.pupil_named("CARTER Sarah", today).is_none());
        assert!(d.pupil_named("(Year 9)", today).is_none());
    }

    #[test]
    fn pupils_by_surname() {
        let d = family();
        let today = jiff::civil::date(2026, 11, 23);
        let mut found: Vec<&str> = d
            .pupils_with_surname("carter", today)
            .map(|p| p.name.as_str())
            .collect();
        found.sort();
        assert_eq!(found, ["Jamie Carter", "Leo Carter"]);
        // Parents and staff are not found.
        assert!(d.pupils_with_surname("baker", today).next().is_none());
    }

    #[test]
    fn a_large_directory_loads_with_its_parents() {
        let mut csv = String::from(WITH_CHILDREN);
        for i in 0..2000 {
            csv.push_str(&format!(
                "pupil,Pupil{i} Surname{i},p{i}@p.x,,,2012-01-01,current,\n"
            ));
        }
        for i in 0..4000 {
            csv.push_str(&format!(
                "parent,Parent{i},,parent{i}@gmail.com,,,,p{}@p.x\n",
                i / 2
            ));
        }
        let d = parse(&csv).unwrap();
        let today = jiff::civil::date(2026, 11, 23);
        let pupil = d.pupil_named("Pupil7 Surname7", today).unwrap();
        assert!(d.is_parent_of("parent14@gmail.com", pupil));
        assert!(d.is_parent_of("parent15@gmail.com", pupil));
        assert!(!d.is_parent_of("parent16@gmail.com", pupil));
        assert_eq!(d.parents_of(pupil).count(), 2);
    }

    #[test]
    fn phone_numbers_compare_by_their_national_digits() {
        for n in [
            "07700 900123",
            "+44 7700 900123",
            "+44 (0)7700 900123",
            "447700900123",
            "07700-900-123",
        ] {
            assert_eq!(phone_key(n), "07700900123", "{n}");
        }
        assert_eq!(phone_key("01632 960000"), "01632960000");
        assert_eq!(phone_key(""), "");
        let d = family();
        let found: Vec<&str> = d
            .people_with_phone("+44 7700 900456")
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(found, ["Sarah Carter"]);
        assert!(d.people_with_phone("07700 900999").next().is_none());
    }

    #[test]
    fn a_parent_listed_once_per_child_is_one_parent() {
        let d = parse(&format!(
            "{WITH_CHILDREN}pupil,Jamie Carter,j@p.x,,,2011-05-02,,\npupil,Leo Carter,l@p.x,,,2014-05-02,,\n\
             parent,Sarah Carter,,sarah@gmail.com,07700 900401,,,j@p.x\n\
             parent,Sarah Carter,,Sarah+x@gmail.com;s.c@work.example,+44 7700 900401,,,l@p.x\n\
             parent,David Carter,,sarah@gmail.com,,,,l@p.x\n"
        ))
        .unwrap();
        assert_eq!(d.people.len(), 3);
        let mum = d.parent("s.c@work.example").unwrap();
        assert_eq!(mum.name, "Sarah Carter & David Carter");
        assert_eq!(mum.personal_emails, ["sarah@gmail.com", "s.c@work.example"]);
        assert_eq!(mum.personal_phones, ["07700 900401"]);
        assert_eq!(d.children_of("sarah@gmail.com").count(), 2);
        // A bad child on the second row names the second row's line.
        let e = parse(&format!(
            "{WITH_CHILDREN}pupil,Jamie Carter,j@p.x,,,2011-05-02,,\n\
             parent,Sarah Carter,,sarah@gmail.com,,,,j@p.x\n\
             parent,Sarah Carter,,sarah@gmail.com,,,,x@p.x\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        // A parent's address on a pupil's or a member of staff's row is still refused.
        let e = parse(&format!(
            "{WITH_CHILDREN}staff,T,t@x,tom@gmail.com,,,,\nparent,Tom,,tom@gmail.com,,,,\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("already on line 2"), "{e}");
    }
}
