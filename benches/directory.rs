//! Issue 4's performance target for the directory: 5,000 pupils and 500 staff parse (read,
//! check and index) in under 200 ms (`directory/parse_5500`). Issue 16's: a school of 2,000
//! pupils and 4,000 parents (`directory/parse_2000_pupils_4000_parents`), and the per-message
//! lookups the data-protection rules make in it (`directory/parent_lookups`: a parent by a
//! Gmail variant of their address, their children, whether they are a named pupil's parent).
//!
//! The CSV is generated here, deterministically, in the shape of an MIS export: names with
//! accents and apostrophes, some written "Surname, Forename" in quotes, several personal
//! addresses and phones on some rows, dates of birth, former pupils, and the school's own staff
//! roles. Each iteration parses the whole file from bytes, as a reload does after reading it.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use schoolgate::directory::Directory;

const PUPILS: usize = 5_000;
const STAFF: usize = 500;

const FORENAMES: &[&str] = &[
    "Jamie",
    "Ava",
    "Oliver",
    "Amélie",
    "Zoë",
    "Noah",
    "Siân",
    "Aoife",
    "Mohammed",
    "Chloé",
    "Łukasz",
    "Renée",
    "José",
    "Freya",
    "Niamh",
    "Oskar",
    "Björn",
    "Inés",
    "Priya",
    "Dáithí",
    "Harry",
    "Isla",
    "François",
    "Maja",
    "Rhys",
    "Saoirse",
    "Tomás",
    "Élodie",
    "Kacper",
    "Ruby",
];
const SURNAMES: &[&str] = &[
    "Smith",
    "Jones",
    "O'Brien",
    "Núñez",
    "Kowalczyk",
    "Müller",
    "Hughes",
    "Shah",
    "Ní Bhriain",
    "Dubois",
    "Williams",
    "Brown",
    "Taylor",
    "Żółkiewski",
    "Davies",
    "Evans",
    "García",
    "Öztürk",
    "Wilson",
    "MacDonald",
    "Björklund",
    "Patel",
    "Thomas",
    "Roberts",
    "Çelik",
    "Johnson",
    "Lewis",
    "Walker",
    "Ó Súilleabháin",
    "Wright",
];
const MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "hotmail.co.uk",
    "outlook.com",
    "yahoo.co.uk",
    "icloud.com",
    "btinternet.com",
];
const STAFF_ROLES: &[&str] = &["staff", "staff", "staff", "staff", "dsl", "senco", "office"];

/// A 64-bit LCG (Knuth's MMIX constants): the same file every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.next() % from.len()]
    }
}

/// The local part of an address made from a name: ASCII letters only.
fn local(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_lowercase()
}

fn directory_csv() -> String {
    let mut rng = Lcg(0x5c40_01a7e);
    let mut out = String::with_capacity(PUPILS * 130);
    out.push_str("role,name,school_email,personal_emails,personal_phones,date_of_birth,status\r\n");
    out.push_str("headteacher,Margaret Hughes,head@example-academy.sch.uk,,,,current\r\n");
    for i in 0..PUPILS + STAFF - 1 {
        let pupil = i < PUPILS;
        let fore = rng.pick(FORENAMES);
        let sur = rng.pick(SURNAMES);
        // A quarter of the rows are written "Surname, Forename", as some MIS exports do.
        let name = if rng.next().is_multiple_of(4) {
            format!("\"{sur}, {fore}\"")
        } else {
            format!("{fore} {sur}")
        };
        let (role, school) = if pupil {
            (
                "pupil",
                format!(
                    "{}.{}{i}@pupils.example-academy.sch.uk",
                    &local(fore)[..1],
                    local(sur)
                ),
            )
        } else {
            (
                rng.pick(STAFF_ROLES),
                format!(
                    "{}.{}{i}@example-academy.sch.uk",
                    &local(fore)[..1],
                    local(sur)
                ),
            )
        };
        // None, one, or several personal addresses.
        let personal = (0..[0, 0, 1, 1, 1, 2, 3][rng.next() % 7])
            .map(|k| {
                format!(
                    "{}.{}{}{k}@{}",
                    local(fore),
                    local(sur),
                    i,
                    rng.pick(MAIL_DOMAINS)
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let phones = (0..[0, 0, 1, 1, 2][rng.next() % 5])
            .map(|_| format!("07700 {:06}", rng.next() % 1_000_000))
            .collect::<Vec<_>>()
            .join(";");
        let dob = if pupil {
            format!(
                "{}-{:02}-{:02}",
                2008 + rng.next() % 11,
                1 + rng.next() % 12,
                1 + rng.next() % 28
            )
        } else if rng.next().is_multiple_of(3) {
            format!(
                "{}-{:02}-{:02}",
                1960 + rng.next() % 40,
                1 + rng.next() % 12,
                1 + rng.next() % 28
            )
        } else {
            String::new()
        };
        let status = match rng.next() % 20 {
            0 => "former",
            1 => "",
            _ => "current",
        };
        let personal = if personal.contains(';') {
            format!("\"{personal}\"")
        } else {
            personal
        };
        out.push_str(&format!(
            "{role},{name},{school},{personal},{phones},{dob},{status}\r\n"
        ));
    }
    out
}

fn directory(c: &mut Criterion) {
    let csv = directory_csv();
    let roles: Vec<String> = ["dsl", "senco", "office"].map(String::from).to_vec();
    let path = Path::new("bench-directory.csv");
    let d = Directory::parse(path, csv.as_bytes(), &roles).expect("the generated CSV is valid");
    assert_eq!(d.people.len(), PUPILS + STAFF);
    assert_eq!(d.people.iter().filter(|p| !p.is_staff()).count(), PUPILS);

    let mut g = c.benchmark_group("directory");
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Bytes(csv.len() as u64));
    g.bench_function("parse_5500", |b| {
        b.iter(|| Directory::parse(path, black_box(csv.as_bytes()), &roles).unwrap())
    });
    g.finish();
}

/// 2,000 pupils and 4,000 parents (two per pupil, a few with two children), with `children`.
fn families_csv() -> String {
    let mut rng = Lcg(0x0016_0016);
    let mut out = String::from(
        "role,name,school_email,personal_emails,personal_phones,date_of_birth,status,children\n",
    );
    for i in 0..2_000 {
        out.push_str(&format!(
            "pupil,{} {},p{i}@pupils.example-academy.sch.uk,,,2012-01-01,current,\n",
            rng.pick(FORENAMES),
            rng.pick(SURNAMES)
        ));
    }
    for i in 0..4_000 {
        let child = i / 2;
        let children = if i % 50 == 0 && child + 1 < 2_000 {
            format!(
                "\"p{child}@pupils.example-academy.sch.uk; p{}@pupils.example-academy.sch.uk\"",
                child + 1
            )
        } else {
            format!("p{child}@pupils.example-academy.sch.uk")
        };
        out.push_str(&format!(
            "parent,{} {},,parent.{i}@{},07700 {:06},,current,{children}\n",
            rng.pick(FORENAMES),
            rng.pick(SURNAMES),
            rng.pick(MAIL_DOMAINS),
            rng.next() % 1_000_000
        ));
    }
    out
}

fn families(c: &mut Criterion) {
    let csv = families_csv();
    let path = Path::new("bench-families.csv");
    let d = Directory::parse(path, csv.as_bytes(), &[]).expect("the generated CSV is valid");
    assert_eq!(d.people.iter().filter(|p| p.is_parent()).count(), 4_000);
    let today = jiff::civil::date(2026, 11, 23);
    let pupils: Vec<&schoolgate::directory::Person> = d.pupils(today).collect();

    let mut g = c.benchmark_group("directory");
    g.measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Bytes(csv.len() as u64));
    g.bench_function("parse_2000_pupils_4000_parents", |b| {
        b.iter(|| Directory::parse(path, black_box(csv.as_bytes()), &[]).unwrap())
    });
    g.throughput(Throughput::Elements(1));
    let mut n = 0usize;
    g.bench_function("parent_lookups", |b| {
        b.iter(|| {
            n = (n + 7) % 4_000;
            // A Gmail parent's address written with a dot and a tag, as people type it.
            let addr = format!("parent.{n}+school@googlemail.com");
            let found = d.parent(black_box(&addr)).is_some();
            let children = d.children_of(&addr).count();
            let theirs = d.is_parent_of(&addr, pupils[n / 2]);
            (found, children, theirs)
        })
    });
    g.finish();
}

criterion_group!(benches, directory, families);
criterion_main!(benches);
