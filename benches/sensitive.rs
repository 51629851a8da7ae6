//! Issue 5's performance targets for the sensitive-attachment rules: the whole decision
//! (`policy::evaluate`: attachment walk, encryption check, text extraction, detectors,
//! disclaimer) on a message with
//!
//! * a 10 MB XLSX (a pupil data export): under 1 s (`decision/xlsx_10m`);
//! * a 10 MB PDF (report pages with photographs): under 2 s (`decision/pdf_10m`).
//!
//! Criterion reports MB/s of attachment per format (throughput = the attachment's size). The
//! files are built in `fixtures/bench/attachments.rs`.

#[path = "../fixtures/bench/attachments.rs"]
mod attachments;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use schoolgate::config::Config;
use schoolgate::directory::Directory;
use schoolgate::envelope::Envelope;
use schoolgate::policy;

fn decision(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::load(&root.join("policies/example.toml")).expect("example config");
    let directory = Directory::load(
        &root.join("policies/example-directory.csv"),
        &config.school.staff_roles,
    )
    .expect("example directory");
    let envelope = Envelope {
        mail_from: "t.baker@example-academy.sch.uk".into(),
        rcpt_to: vec!["admissions@county.gov.example".into()],
        smtputf8: false,
        body_8bit: false,
    };
    let now = "2026-11-23T10:00:00Z".parse().expect("a time");
    let xlsx = attachments::xlsx(10 << 20);
    let pdf = attachments::pdf(10 << 20);
    let cases = [
        (
            "xlsx_10m",
            "pupils.xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            &xlsx,
        ),
        ("pdf_10m", "report.pdf", "application/pdf", &pdf),
    ];
    let mut group = c.benchmark_group("decision");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (label, name, mime, file) in cases {
        let message = attachments::message_with(name, mime, file);
        let d = policy::evaluate(&envelope, &message, &config, &directory, now);
        eprintln!(
            "{label}: attachment {} bytes, verdict {:?}, findings {:?}",
            file.len(),
            d.verdict,
            d.findings
                .iter()
                .map(|f| format!("{}: {}", f.rule, f.detail))
                .collect::<Vec<_>>()
        );
        group.throughput(Throughput::Bytes(file.len() as u64));
        group.bench_function(label, |b| {
            b.iter(|| {
                black_box(policy::evaluate(
                    &envelope,
                    black_box(&message),
                    &config,
                    &directory,
                    now,
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
