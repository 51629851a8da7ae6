//! `schoolgate directory import --from oneroster DIR`: the directory CSV from a OneRoster 1.1
//! CSV bundle, the format Groupcall Xporter, Wonde and most MIS exporters produce.
//!
//! Read: `users.csv` (required) and `demographics.csv` (optional, for pupils' `birthDate`).
//! Roles: `student` is a pupil; `teacher`, `administrator`, `aide` and `proctor` are staff;
//! `parent`, `guardian` and `relative` are parents. A parent's children come from
//! `agentSourcedIds`, on the parent's row (its students) or the student's (its parents), either
//! or both. A user with `enabledUser` false is former; a row with `status` `tobedeleted` is left
//! out.
//!
//! Families often share one address: parents with the same address become one row ("Sarah
//! Carter & David Carter"), with all their children. A parent whose address is a member of
//! staff's school address is that member of staff, who keeps one row with the children.
//!
//! Pure: bytes in, the CSV text out. The command reads and writes the files.

use std::collections::HashMap;
use std::path::Path;

use super::{CsvRow, Directory, canonical_address, is_address, parse_csv};

/// A bundle that cannot be converted: the file, the line when there is one, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ImportError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

/// The directory made from a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    /// The directory CSV, with the optional `children` column.
    pub csv: String,
    pub staff: usize,
    pub pupils: usize,
    /// Parents' rows (after those sharing an address became one).
    pub parents: usize,
    /// Rows left out (`status` `tobedeleted`).
    pub skipped: usize,
    /// What was converted but may need a look (a child without an address, an unknown
    /// `agentSourcedIds` entry); each names its file and line.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pupil,
    Staff,
    Parent,
}

#[derive(Debug)]
struct User {
    line: usize,
    id: String,
    kind: Kind,
    name: String,
    email: Option<String>,
    phones: Vec<String>,
    enabled: bool,
    agents: Vec<String>,
}

/// Reads `users.csv` and, when present, `demographics.csv` in `dir`, and converts them.
pub fn import(dir: &Path) -> Result<Conversion, ImportError> {
    let read = |name: &str| -> Result<Option<Vec<u8>>, ImportError> {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImportError {
                file: path.display().to_string(),
                line: None,
                message: format!("cannot read it: {e}"),
            }),
        }
    };
    let users = read("users.csv")?.ok_or_else(|| ImportError {
        file: dir.join("users.csv").display().to_string(),
        line: None,
        message: "not found; give the folder of the unzipped OneRoster CSV bundle (it holds users.csv, orgs.csv, …)".into(),
    })?;
    let demographics = read("demographics.csv")?;
    convert(&users, demographics.as_deref())
}

/// Converts a bundle's `users.csv` (and `demographics.csv`) into the directory CSV.
pub fn convert(users: &[u8], demographics: Option<&[u8]>) -> Result<Conversion, ImportError> {
    let births = match demographics {
        Some(d) => birth_dates(d)?,
        None => HashMap::new(),
    };
    let mut warnings = Vec::new();
    let mut skipped = 0;
    let (users, by_id) = read_users(users, &mut skipped)?;

    // Children, from either side of the link, in the order first seen.
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut link = |parent: usize, child: usize| {
        let c = children.entry(parent).or_default();
        if !c.contains(&child) {
            c.push(child);
        }
    };
    for (i, u) in users.iter().enumerate() {
        for agent in &u.agents {
            let Some(&j) = by_id.get(agent.as_str()) else {
                warnings.push(format!(
                    "users.csv:{}: agentSourcedIds names \"{agent}\", who is not in users.csv; the link is left out",
                    u.line
                ));
                continue;
            };
            match (u.kind, users[j].kind) {
                (Kind::Parent, Kind::Pupil) => link(i, j),
                (Kind::Pupil, Kind::Parent) => link(j, i),
                _ => {}
            }
        }
    }

    // One row per mailbox: staff and pupils must not share one; parents sharing one become one
    // row, and a parent with a member of staff's address is that member of staff.
    let mut owner: HashMap<String, usize> = HashMap::new();
    for (i, u) in users
        .iter()
        .enumerate()
        .filter(|(_, u)| u.kind != Kind::Parent)
    {
        if let Some(e) = &u.email
            && let Some(&j) = owner.get(&canonical_address(e))
        {
            return Err(ImportError {
                file: "users.csv".into(),
                line: Some(u.line),
                message: format!(
                    "{e} is also the address of {} on line {}; an address may belong to one person only (a pupil or member of staff)",
                    users[j].name, users[j].line
                ),
            });
        }
        if let Some(e) = &u.email {
            owner.insert(canonical_address(e), i);
        }
    }
    // Each parent's row: the first parent with an address stands for everyone sharing it.
    let mut row_of: Vec<usize> = (0..users.len()).collect();
    let mut parent_email: Vec<Option<String>> = users.iter().map(|u| u.email.clone()).collect();
    for (i, u) in users
        .iter()
        .enumerate()
        .filter(|(_, u)| u.kind == Kind::Parent)
    {
        let Some(e) = &u.email else { continue };
        match owner.get(&canonical_address(e)) {
            Some(&j) if users[j].kind == Kind::Pupil => {
                warnings.push(format!(
                    "users.csv:{}: the parent {} has the address {e} of the pupil {} (line {}); the parent is written without it",
                    u.line, u.name, users[j].name, users[j].line
                ));
                parent_email[i] = None;
            }
            Some(&j) => row_of[i] = j,
            None => {
                owner.insert(canonical_address(e), i);
            }
        }
    }

    // Gather each row's names, phones and children.
    let mut names: HashMap<usize, Vec<String>> = HashMap::new();
    let mut phones: HashMap<usize, Vec<String>> = HashMap::new();
    let mut kids: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, u) in users.iter().enumerate() {
        let row = row_of[i];
        if row != i && users[row].kind == Kind::Parent {
            let n = names
                .entry(row)
                .or_insert_with(|| vec![users[row].name.clone()]);
            if !n.contains(&u.name) {
                n.push(u.name.clone());
            }
        }
        if users[row].kind == Kind::Parent {
            let p = phones.entry(row).or_default();
            for ph in &u.phones {
                if !p.contains(ph) {
                    p.push(ph.clone());
                }
            }
        }
        for &c in children.get(&i).map(Vec::as_slice).unwrap_or_default() {
            let k = kids.entry(row).or_default();
            if !k.contains(&c) {
                k.push(c);
            }
        }
    }

    let mut csv = String::from(
        "role,name,school_email,personal_emails,personal_phones,date_of_birth,status,children\n",
    );
    let (mut staff, mut pupils, mut parents) = (0, 0, 0);
    for kind in [Kind::Staff, Kind::Pupil, Kind::Parent] {
        for (i, u) in users.iter().enumerate() {
            if u.kind != kind || row_of[i] != i {
                continue;
            }
            let mut child_addresses: Vec<&str> = Vec::new();
            for &c in kids.get(&i).map(Vec::as_slice).unwrap_or_default() {
                match &users[c].email {
                    Some(e) => child_addresses.push(e),
                    None => warnings.push(format!(
                        "users.csv:{}: the pupil {} has no email, so cannot be listed as {}'s child",
                        users[c].line, users[c].name, u.name
                    )),
                }
            }
            let (role, school, personal, phone_list, dob) = match kind {
                Kind::Staff => {
                    staff += 1;
                    ("staff", u.email.as_deref(), None, u.phones.clone(), None)
                }
                Kind::Pupil => {
                    pupils += 1;
                    let dob = births.get(u.id.as_str()).map(|d| d.to_string());
                    ("pupil", u.email.as_deref(), None, u.phones.clone(), dob)
                }
                Kind::Parent => {
                    parents += 1;
                    let p = phones.get(&i).cloned().unwrap_or_default();
                    ("parent", None, parent_email[i].as_deref(), p, None)
                }
            };
            let name = names
                .get(&i)
                .map(|n| n.join(" & "))
                .unwrap_or_else(|| u.name.clone());
            let cells = [
                role.to_string(),
                name,
                school.unwrap_or_default().to_string(),
                personal.unwrap_or_default().to_string(),
                phone_list.join("; "),
                dob.unwrap_or_default(),
                if u.enabled { "current" } else { "former" }.to_string(),
                child_addresses.join("; "),
            ];
            let line: Vec<String> = cells.iter().map(|c| quote(c)).collect();
            csv.push_str(&line.join(","));
            csv.push('\n');
        }
    }
    // What is written must load.
    Directory::parse(Path::new("the converted directory"), csv.as_bytes(), &[]).map_err(|e| {
        ImportError {
            file: "users.csv".into(),
            line: None,
            message: format!("the converted directory does not load ({e}); please report this"),
        }
    })?;
    Ok(Conversion {
        csv,
        staff,
        pupils,
        parents,
        skipped,
        warnings,
    })
}

/// The rows of a bundle file: text, header and the index of each wanted column.
fn table(file: &str, bytes: &[u8]) -> Result<(Vec<String>, Vec<CsvRow>), ImportError> {
    let err = |line: usize, message: String| ImportError {
        file: file.into(),
        line: Some(line),
        message,
    };
    let text = super::csv_text(bytes)
        .map_err(|(line, e)| err(line, format!("not UTF-8 ({e}); OneRoster files are UTF-8")))?;
    let mut rows = parse_csv(text).map_err(|(l, m)| err(l, m))?.into_iter();
    let Some((_, header)) = rows.next() else {
        return Err(err(1, "the file is empty; it needs a header row".into()));
    };
    let header: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let mut body = Vec::new();
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
        body.push((line, row));
    }
    Ok((header, body))
}

/// The index of `name` in `header`, or an error naming the file when it is `required`.
fn column(
    file: &str,
    header: &[String],
    name: &str,
    required: bool,
) -> Result<Option<usize>, ImportError> {
    match header.iter().position(|h| h.eq_ignore_ascii_case(name)) {
        Some(i) => Ok(Some(i)),
        None if required => Err(ImportError {
            file: file.into(),
            line: Some(1),
            message: format!(
                "the header row has no \"{name}\" column; a OneRoster 1.1 {file} has sourcedId, role, givenName, familyName, email, …"
            ),
        }),
        None => Ok(None),
    }
}

/// The users, and each `sourcedId` to its index.
fn read_users(
    bytes: &[u8],
    skipped: &mut usize,
) -> Result<(Vec<User>, HashMap<String, usize>), ImportError> {
    const FILE: &str = "users.csv";
    let err = |line: usize, message: String| ImportError {
        file: FILE.into(),
        line: Some(line),
        message,
    };
    let (header, rows) = table(FILE, bytes)?;
    let col = |name: &str, required: bool| column(FILE, &header, name, required);
    let id_col = col("sourcedId", true)?.unwrap_or_default();
    let role_col = col("role", true)?.unwrap_or_default();
    let given_col = col("givenName", true)?.unwrap_or_default();
    let family_col = col("familyName", true)?.unwrap_or_default();
    let email_col = col("email", false)?;
    let sms_col = col("sms", false)?;
    let phone_col = col("phone", false)?;
    let agents_col = col("agentSourcedIds", false)?;
    let enabled_col = col("enabledUser", false)?;
    let status_col = col("status", false)?;

    let mut users: Vec<User> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for (line, row) in rows {
        let cell = |i: Option<usize>| i.map_or("", |i| row[i].trim());
        if cell(status_col).eq_ignore_ascii_case("tobedeleted") {
            *skipped += 1;
            continue;
        }
        let id = cell(Some(id_col)).to_string();
        if id.is_empty() {
            return Err(err(line, "the sourcedId is empty".into()));
        }
        let kind = match cell(Some(role_col)).to_ascii_lowercase().as_str() {
            "student" => Kind::Pupil,
            "teacher" | "administrator" | "aide" | "proctor" => Kind::Staff,
            "parent" | "guardian" | "relative" => Kind::Parent,
            other => {
                return Err(err(
                    line,
                    format!(
                        "unknown role \"{other}\"; OneRoster 1.1 roles are student, teacher, administrator, aide, proctor, parent, guardian and relative"
                    ),
                ));
            }
        };
        let name = format!("{} {}", cell(Some(given_col)), cell(Some(family_col)))
            .trim()
            .to_string();
        if name.is_empty() {
            return Err(err(line, "givenName and familyName are both empty".into()));
        }
        let email = Some(cell(email_col).to_lowercase()).filter(|e| !e.is_empty());
        if let Some(e) = &email
            && !is_address(e)
        {
            return Err(err(line, format!("email \"{e}\" is not a mail address")));
        }
        let mut phones: Vec<String> = Vec::new();
        for p in [cell(sms_col), cell(phone_col)] {
            if !p.is_empty() && !phones.iter().any(|q| q == p) {
                phones.push(p.to_string());
            }
        }
        let enabled = !matches!(
            cell(enabled_col).to_ascii_lowercase().as_str(),
            "false" | "0" | "no"
        );
        let agents = cell(agents_col)
            .split([',', ';'])
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(&other) = by_id.get(&id) {
            return Err(err(
                line,
                format!(
                    "sourcedId \"{id}\" is already on line {}; each user needs their own",
                    users[other].line
                ),
            ));
        }
        by_id.insert(id.clone(), users.len());
        users.push(User {
            line,
            id,
            kind,
            name,
            email,
            phones,
            enabled,
            agents,
        });
    }
    Ok((users, by_id))
}

/// `sourcedId` to `birthDate` from `demographics.csv`.
fn birth_dates(bytes: &[u8]) -> Result<HashMap<String, jiff::civil::Date>, ImportError> {
    const FILE: &str = "demographics.csv";
    let (header, rows) = table(FILE, bytes)?;
    let id_col = column(FILE, &header, "sourcedId", true)?.unwrap_or_default();
    let Some(birth_col) = column(FILE, &header, "birthDate", false)? else {
        return Ok(HashMap::new());
    };
    let mut out = HashMap::new();
    for (line, row) in rows {
        let date = row[birth_col].trim();
        if date.is_empty() {
            continue;
        }
        let parsed = date
            .get(..10)
            .and_then(|d| d.parse::<jiff::civil::Date>().ok())
            .ok_or_else(|| ImportError {
                file: FILE.into(),
                line: Some(line),
                message: format!("birthDate \"{date}\" is not a date (YYYY-MM-DD)"),
            })?;
        out.insert(row[id_col].trim().to_string(), parsed);
    }
    Ok(out)
}

/// One CSV cell, in double quotes when it holds a comma, a quote or a line break.
fn quote(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: &str = "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password
t1,,,true,org1,teacher,tbaker,,Tom,Baker,,,t.baker@example-academy.sch.uk,07700 900123,,,,
s1,,,true,org1,student,jcarter,,Jamie,Carter,,UPN1,j.carter@pupils.example-academy.sch.uk,,,\"p1,p2\",09,
s2,,,true,org1,student,opatel,,Olivia,Patel,,UPN2,o.patel@pupils.example-academy.sch.uk,,,,08,
s3,,,false,org1,student,lcarter,,Leo,Carter,,UPN3,l.carter@pupils.example-academy.sch.uk,,,p1,11,
p1,,,true,org1,parent,,,Sarah,Carter,,,carters@gmail.com,07700 900456,,s1,,
p2,,,true,org1,guardian,,,David,Carter,,,Carters@Gmail.com,,01632 960111,,,
p3,,,true,org1,parent,,,Raj,Patel,,,raj.patel@outlook.com,,,s2,,
p4,,,true,org1,relative,,,Tom,Baker,,,t.baker@example-academy.sch.uk,,,s3,,
x1,tobedeleted,,true,org1,student,gone,,Gone,Pupil,,,gone@pupils.example-academy.sch.uk,,,,,
";
    const DEMOGRAPHICS: &str = "sourcedId,status,dateLastModified,birthDate,sex\ns1,,,2011-05-02,male\ns3,,,2008-03-03,male\n";

    #[test]
    fn a_bundle_becomes_a_directory_with_families() {
        let c = convert(USERS.as_bytes(), Some(DEMOGRAPHICS.as_bytes())).unwrap();
        assert_eq!((c.staff, c.pupils, c.parents, c.skipped), (1, 3, 2, 1));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let lines: Vec<&str> = c.csv.lines().collect();
        assert_eq!(
            lines,
            [
                "role,name,school_email,personal_emails,personal_phones,date_of_birth,status,children",
                "staff,Tom Baker,t.baker@example-academy.sch.uk,,07700 900123,,current,l.carter@pupils.example-academy.sch.uk",
                "pupil,Jamie Carter,j.carter@pupils.example-academy.sch.uk,,,2011-05-02,current,",
                "pupil,Olivia Patel,o.patel@pupils.example-academy.sch.uk,,,,current,",
                "pupil,Leo Carter,l.carter@pupils.example-academy.sch.uk,,,2008-03-03,former,",
                "parent,Sarah Carter & David Carter,,carters@gmail.com,07700 900456; 01632 960111,,current,j.carter@pupils.example-academy.sch.uk; l.carter@pupils.example-academy.sch.uk",
                "parent,Raj Patel,,raj.patel@outlook.com,,,current,o.patel@pupils.example-academy.sch.uk",
            ]
        );
        let d = Directory::parse(Path::new("d.csv"), c.csv.as_bytes(), &[]).unwrap();
        let today = jiff::civil::date(2026, 11, 23);
        let jamie = d.pupil_named("Jamie Carter", today).unwrap();
        assert!(d.is_parent_of("carters@gmail.com", jamie));
        assert!(!d.is_parent_of("raj.patel@outlook.com", jamie));
    }

    #[test]
    fn problems_name_the_file_and_line() {
        let header = USERS.lines().next().unwrap_or_default();
        let e = convert(
            format!("{header}\nt1,,,true,org1,caretaker,,,A,B,,,a@x.uk,,,,,\n").as_bytes(),
            None,
        )
        .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(
            e.to_string()
                .starts_with("users.csv:2: unknown role \"caretaker\""),
            "{e}"
        );
        let e = convert(
            format!("{header}\nt1,,,true,org1,teacher,,,A,B,,,a@x.uk,,,,,\nt1,,,true,org1,teacher,,,C,D,,,c@x.uk,,,,,\n")
                .as_bytes(),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "users.csv:3: sourcedId \"t1\" is already on line 2; each user needs their own"
        );
        let e = convert(
            format!("{header}\nt1,,,true,org1,teacher,,,A,B,,,a@x.uk,,,,,\ns1,,,true,org1,student,,,C,D,,,A@x.uk,,,,,\n")
                .as_bytes(),
            None,
        )
        .unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(
            e.message.contains("also the address of A B on line 2"),
            "{e}"
        );
        let e = convert(
            format!("{header}\nt1,,,true,org1,teacher,,,A,B,,,not an address,,,,,\n").as_bytes(),
            None,
        )
        .unwrap_err();
        assert!(e.message.contains("is not a mail address"), "{e}");
        let e = convert(b"sourcedId,givenName,familyName\n1,A,B\n", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "users.csv:1: the header row has no \"role\" column; a OneRoster 1.1 users.csv has sourcedId, role, givenName, familyName, email, …"
        );
        let e = convert(
            USERS.as_bytes(),
            Some(b"sourcedId,birthDate\ns1,02/05/2011\n"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "demographics.csv:2: birthDate \"02/05/2011\" is not a date (YYYY-MM-DD)"
        );
        let e = convert(format!("{header}\nt1,,,true\n").as_bytes(), None).unwrap_err();
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn links_to_unknown_users_and_children_without_addresses_are_warned_about() {
        let header = USERS.lines().next().unwrap_or_default();
        let c = convert(
            format!("{header}\ns1,,,true,org1,student,,,Jamie,Carter,,,,,,p1,,\np1,,,true,org1,parent,,,Sarah,Carter,,,s@gmail.com,,,\"s1,zz\",,\n")
                .as_bytes(),
            None,
        )
        .unwrap();
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].starts_with("users.csv:3: agentSourcedIds names \"zz\""));
        assert!(c.warnings[1].contains("Jamie Carter has no email"));
        assert!(
            c.csv
                .ends_with("parent,Sarah Carter,,s@gmail.com,,,current,\n"),
            "{}",
            c.csv
        );
    }

    #[test]
    fn cells_with_commas_are_quoted() {
        assert_eq!(quote("Carter, Jamie"), "\"Carter, Jamie\"");
        assert_eq!(quote("O\"Neil"), "\"O\"\"Neil\"");
        assert_eq!(quote("plain"), "plain");
    }
}
