//! The DSL's audit search: the filters of `schoolgate audit export` and the web page's audit
//! search, and the CSV/JSON/JSONL writers both download the same bytes from.
//!
//! JSON and JSONL carry every field: each item is `{"seq", "prev_hash", "hash", "record"}`
//! with `record` the stored JSON byte for byte, last in the item, so anyone can recompute
//! `SHA-256(seq "\n" prev_hash "\n" record)` and check the export against the chain.
//!
//! Filters: `since`/`until` by the records' time index, then exactly; `person` through the
//! address index (every address of that person in the directory, in envelope or headers);
//! `rule` through the rule index; `verdict` on the record.

use std::io::Write;

use clap::ValueEnum;

use super::csv;
use crate::config::Config;
use crate::directory::Directory;
use crate::store::{AuditEntry, AuditRecord, Backend, RecordKind, StoreError};

/// The rule names (SPEC, "Rule names").
pub const RULES: [&str; 10] = [
    "pupil-personal-address",
    "staff-personal-address",
    "personal-contact-shared",
    "out-of-hours-pupil-contact",
    "unencrypted-sensitive-attachment",
    "unscannable-attachment",
    "sensitive-data-in-body",
    "exposed-recipients",
    "wrong-recipient",
    "password-in-message",
];

/// The verdicts a search can ask for.
pub const VERDICTS: [&str; 3] = ["deliver", "quarantine", "reject"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For Excel: UTF-8 with BOM, one row per record.
    Csv,
    /// One JSON array.
    Json,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "CSV",
            Format::Json => "JSON",
            Format::Jsonl => "JSONL",
        }
    }
}

/// Why a search cannot run, in words the DSL can act on.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Directory(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// A search as typed (the CLI's flags, the web form's fields); empty means not set.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Search {
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub until: Option<String>,
    #[serde(default)]
    pub person: Option<String>,
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub verdict: Option<String>,
}

/// Whom `person` turned out to be.
#[derive(Debug, Clone)]
pub enum PersonFound {
    /// In the directory: their name and every address of theirs.
    Known {
        name: String,
        addresses: Vec<String>,
    },
    /// Not in the directory: that address only.
    Unknown { address: String },
}

/// A search ready to run.
#[derive(Debug)]
pub struct Query {
    since: Option<jiff::Timestamp>,
    until: Option<jiff::Timestamp>,
    keys: Vec<String>,
    rule: Option<String>,
    verdict: Option<String>,
    pub person: Option<PersonFound>,
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl Search {
    /// Checks the values and resolves the person through the directory.
    pub fn prepare(&self, config: &Config) -> Result<Query, SearchError> {
        let rule = set(&self.rule).map(str::to_string);
        if let Some(rule) = &rule
            && !RULES.contains(&rule.as_str())
        {
            return Err(SearchError::Invalid(format!(
                "rule {rule:?} is not a rule; the rules are {}",
                RULES.join(", ")
            )));
        }
        let verdict = set(&self.verdict).map(str::to_string);
        if let Some(v) = &verdict
            && !VERDICTS.contains(&v.as_str())
        {
            return Err(SearchError::Invalid(format!(
                "verdict {v:?} is not one of {}",
                VERDICTS.join(", ")
            )));
        }
        let since = set(&self.since)
            .map(|v| instant(v, "since", false, config))
            .transpose()?;
        // A bare date means the whole of that day.
        let until = set(&self.until)
            .map(|v| instant(v, "until", true, config))
            .transpose()?;
        if let (Some(s), Some(u)) = (since, until)
            && s >= u
        {
            return Err(SearchError::Invalid(
                "since is not before until: nothing could match".into(),
            ));
        }
        let person = set(&self.person)
            .map(|p| person_addresses(config, p))
            .transpose()?;
        let mut keys: Vec<String> = match &person {
            Some(PersonFound::Known { addresses, .. }) => {
                addresses.iter().map(|a| format!("a:{a}")).collect()
            }
            Some(PersonFound::Unknown { address }) => vec![format!("a:{address}")],
            None => Vec::new(),
        };
        if keys.is_empty()
            && let Some(rule) = &rule
        {
            keys.push(format!("r:{rule}"));
        }
        Ok(Query {
            since,
            until,
            keys,
            rule,
            verdict,
            person,
        })
    }

    /// The filters set, as `--name value` (for the audit record of an export).
    pub fn describe(&self) -> Vec<String> {
        [
            ("since", &self.since),
            ("until", &self.until),
            ("person", &self.person),
            ("rule", &self.rule),
            ("verdict", &self.verdict),
        ]
        .into_iter()
        .filter_map(|(name, v)| set(v).map(|v| format!("--{name} {v}")))
        .collect()
    }
}

/// The instant a `since`/`until` value stands for: an RFC 3339 instant, or a date (its start
/// in `[school] timezone`, or with `end_of_day` the start of the next day).
pub fn instant(
    value: &str,
    flag: &str,
    end_of_day: bool,
    config: &Config,
) -> Result<jiff::Timestamp, SearchError> {
    if let Ok(t) = value.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let date = uk_or_iso_date(value).ok_or_else(|| {
        SearchError::Invalid(format!(
            "{flag} {value:?} is not a date (DD/MM/YYYY or YYYY-MM-DD) or an RFC 3339 instant (2026-01-31T17:00:00Z)"
        ))
    })?;
    let date = if end_of_day {
        date.tomorrow()
            .map_err(|_| SearchError::Invalid(format!("{flag} {value:?} is out of range")))?
    } else {
        date
    };
    let tz = jiff::tz::TimeZone::get(&config.school.timezone).map_err(|e| {
        SearchError::Invalid(format!("{}: school.timezone: {e}", config.source.display()))
    })?;
    let zoned = date.to_zoned(tz).map_err(|_| {
        SearchError::Invalid(format!(
            "{flag} {value:?}: no such day in {}",
            config.school.timezone
        ))
    })?;
    Ok(zoned.timestamp())
}

/// A date as a UK school writes it (`31/01/2026`, `7/12/2026`) or as ISO 8601 (`2026-01-31`, what
/// a browser's date picker sends).
pub fn uk_or_iso_date(value: &str) -> Option<jiff::civil::Date> {
    let value = value.trim();
    if let Ok(d) = value.parse::<jiff::civil::Date>() {
        return Some(d);
    }
    let mut parts = value.split('/');
    let (Some(d), Some(m), Some(y), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let number = |s: &str, max_len: usize| -> Option<i16> {
        let s = s.trim();
        if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (d, m, y) = (number(d, 2)?, number(m, 2)?, number(y, 4)?);
    if y < 1000 {
        return None;
    }
    jiff::civil::Date::new(y, i8::try_from(m).ok()?, i8::try_from(d).ok()?).ok()
}

/// The stored-time bounds that include at least every record in `[since, until)`: seconds,
/// without the `Z`, so that text order cannot leave out a record with a fraction of a second.
fn bound(t: jiff::Timestamp, up: bool) -> String {
    let secs = if up && t.subsec_nanosecond() != 0 {
        t.as_second() + 1
    } else {
        t.as_second()
    };
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Who `person` means: every address of theirs in the directory.
fn person_addresses(config: &Config, addr: &str) -> Result<PersonFound, SearchError> {
    let addr = addr.trim().to_lowercase();
    if !addr.contains('@') {
        return Err(SearchError::Invalid(format!(
            "person {addr:?} is not a mail address; give any of the person's addresses"
        )));
    }
    let directory = Directory::load(&config.school.directory, &config.school.staff_roles)
        .map_err(|e| SearchError::Directory(e.to_string()))?;
    Ok(match directory.person(&addr) {
        Some(p) => {
            let mut all: Vec<String> = p
                .school_email
                .iter()
                .chain(&p.personal_emails)
                .map(|a| a.trim().to_lowercase())
                .collect();
            all.dedup();
            PersonFound::Known {
                name: p.name.clone(),
                addresses: all,
            }
        }
        None => PersonFound::Unknown { address: addr },
    })
}

impl Query {
    /// What is left to check on each record after the index did its part.
    pub fn keeps(&self, r: &AuditRecord) -> bool {
        if self.since.is_some() || self.until.is_some() {
            let Ok(t) = r.time.parse::<jiff::Timestamp>() else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        if self.rule.is_none() && self.verdict.is_none() {
            return true;
        }
        let Some(m) = &r.message else {
            return false;
        };
        if let Some(rule) = &self.rule
            && !m.flags.iter().any(|f| &f.rule == rule)
            && !m.findings.iter().any(|f| &f.rule == rule)
        {
            return false;
        }
        self.verdict.as_ref().is_none_or(|v| &m.verdict == v)
    }

    /// The index keys the scan uses (any of them).
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The sequence numbers the matching records lie in (`None`: none can match).
    pub fn range(&self, backend: &mut dyn Backend) -> Result<Option<(u64, u64)>, StoreError> {
        backend.seq_range(
            self.since.map(|t| bound(t, false)).as_deref(),
            self.until.map(|t| bound(t, true)).as_deref(),
        )
    }

    /// Calls `each` for every matching record in `range`, in sequence order, until it returns
    /// false.
    pub fn visit(
        &self,
        backend: &mut dyn Backend,
        range: Option<(u64, u64)>,
        each: &mut dyn FnMut(&AuditEntry, &AuditRecord) -> Result<bool, StoreError>,
        seen: &dyn Fn(),
    ) -> Result<(), StoreError> {
        let Some(range) = range else {
            return Ok(());
        };
        backend.scan(range, &self.keys, &mut |entry: AuditEntry| {
            seen();
            let record = entry.record()?;
            if !self.keeps(&record) {
                return Ok(true);
            }
            each(&entry, &record)
        })
    }

    /// Streams the matching records in `range` to `w` as `format`; returns how many and the
    /// last one's sequence number. `seen` is called for every record the index yields (a
    /// progress bar).
    pub fn write(
        &self,
        backend: &mut dyn Backend,
        range: Option<(u64, u64)>,
        format: Format,
        w: &mut dyn Write,
        seen: &dyn Fn(),
    ) -> Result<(u64, Option<u64>), StoreError> {
        let io = |e: std::io::Error| StoreError::Output(e.to_string());
        match format {
            Format::Csv => {
                w.write_all(csv::BOM.as_bytes()).map_err(io)?;
                w.write_all(csv::header().as_bytes()).map_err(io)?;
            }
            Format::Json => w.write_all(b"[").map_err(io)?,
            Format::Jsonl => {}
        }
        let mut count = 0u64;
        let mut last = None;
        self.visit(
            backend,
            range,
            &mut |entry, record| {
                match format {
                    Format::Csv => w
                        .write_all(csv::record_row(entry, record).as_bytes())
                        .map_err(io)?,
                    Format::Json | Format::Jsonl => {
                        if format == Format::Json {
                            w.write_all(if count == 0 { b"\n" } else { b",\n" })
                                .map_err(io)?;
                        }
                        write!(
                            w,
                            "{{\"seq\":{},\"prev_hash\":\"{}\",\"hash\":\"{}\",\"record\":{}}}",
                            entry.seq, entry.prev_hash, entry.hash, entry.record_json
                        )
                        .map_err(io)?;
                        if format == Format::Jsonl {
                            w.write_all(b"\n").map_err(io)?;
                        }
                    }
                }
                count += 1;
                last = Some(entry.seq);
                Ok(true)
            },
            seen,
        )?;
        if format == Format::Json {
            w.write_all(if count == 0 { b"]\n" } else { b"\n]\n" })
                .map_err(io)?;
        }
        Ok((count, last))
    }
}

/// The audit record of an export: who, how many, which format, where to, with which filters.
pub fn export_record(
    search: &Search,
    actor: &str,
    (count, last): (u64, Option<u64>),
    format: Format,
    target: &str,
) -> AuditRecord {
    let filters = search.describe();
    let detail = format!(
        "audit export by {actor}: {count} records{} as {} to {target}{}",
        last.map(|s| format!(" (up to record {s})"))
            .unwrap_or_default(),
        format.name(),
        if filters.is_empty() {
            String::new()
        } else {
            format!("; {}", filters.join(" "))
        }
    );
    AuditRecord::action(RecordKind::Action, actor, detail)
}

#[cfg(test)]
mod tests {
    use super::uk_or_iso_date;

    #[test]
    fn a_date_is_read_the_uk_way_or_the_iso_way() {
        let d = jiff::civil::date(2026, 12, 7);
        assert_eq!(uk_or_iso_date("07/12/2026"), Some(d));
        assert_eq!(uk_or_iso_date("7/12/2026"), Some(d));
        assert_eq!(uk_or_iso_date("2026-12-07"), Some(d));
        assert_eq!(uk_or_iso_date(" 07/12/2026 "), Some(d));
    }

    #[test]
    fn what_is_not_a_day_is_refused() {
        for bad in [
            "31/02/2026",
            "12/2026",
            "07/12/26",
            "07/12/2026/1",
            "+7/12/2026",
            "seven",
            "",
        ] {
            assert_eq!(uk_or_iso_date(bad), None, "{bad:?}");
        }
    }
}
