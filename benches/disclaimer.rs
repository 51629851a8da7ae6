//! Issue 3's performance targets for the disclaimer engine:
//!
//! * a 10 KB multipart/alternative message: rewrite in under 50 µs (`add_disclaimer/alternative_10k`);
//! * a message with a 20 MB attachment: under 20 ms (`add_disclaimer/attachment_20m`), and no
//!   copy of the attachment beyond the output buffer (`examples/disclaimer_peak.rs`, which needs
//!   a counting allocator this benchmark must not carry);
//! * for comparison, no target: a 10 KB 7bit text/plain message (`plain_10k`) and the 10 KB
//!   reply with base64 parts (`alternative_b64_10k`);
//! * the header summary of the audit trail must not read the attachment:
//!   `summarise/attachment_20m` against `summarise/attachment_20m_head` (the same headers and
//!   short body without the attachment) should be the same time.
//!
//! The messages are built in `fixtures/bench/messages.rs`. Each iteration is one call on the
//! whole message and includes freeing the returned buffer, as the gateway does after delivery.
//! `scripts/bench-disclaimer` runs this, altermime on the same messages, and prints the table.

#[path = "../fixtures/bench/messages.rs"]
mod messages;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use schoolgate::config::OnSigned;
use schoolgate::policy::disclaimer::add_disclaimer;
use schoolgate::policy::summarise;

use messages::{DISCLAIMER_HTML, DISCLAIMER_TEXT};

fn disclaimer(c: &mut Criterion) {
    let samples = messages::all();
    for s in &samples {
        let r = add_disclaimer(&s.bytes, DISCLAIMER_TEXT, DISCLAIMER_HTML, OnSigned::Skip);
        eprintln!(
            "{}: {} bytes in, outcome {:?}, {}",
            s.name,
            s.bytes.len(),
            r.outcome,
            r.message
                .as_ref()
                .map_or("unchanged".to_string(), |m| format!(
                    "{} bytes out",
                    m.len()
                ))
        );
        if r.message.is_none() {
            eprintln!(
                "warning: {} was not rewritten: these figures do not measure a rewrite",
                s.name
            );
        }
    }

    for s in &samples {
        let large = s.bytes.len() > 1 << 20;
        // The same group name twice: the large message gets fewer, longer samples.
        let mut group = c.benchmark_group("add_disclaimer");
        group.throughput(Throughput::Bytes(s.bytes.len() as u64));
        if large {
            group
                .sample_size(20)
                .measurement_time(Duration::from_secs(10));
        }
        group.bench_function(s.name, |b| {
            b.iter(|| {
                add_disclaimer(
                    black_box(&s.bytes),
                    DISCLAIMER_TEXT,
                    DISCLAIMER_HTML,
                    OnSigned::Skip,
                )
            })
        });
        group.finish();
    }

    let big = &samples
        .iter()
        .find(|s| s.name == "attachment_20m")
        .expect("attachment_20m")
        .bytes;
    let head = messages::attachment_20m_head();
    let small = &samples
        .iter()
        .find(|s| s.name == "alternative_10k")
        .expect("alternative_10k")
        .bytes;
    assert_eq!(
        summarise(big),
        summarise(&head),
        "the summary of the head alone differs"
    );
    let mut group = c.benchmark_group("summarise");
    group.bench_function("attachment_20m", |b| b.iter(|| summarise(black_box(big))));
    group.bench_function("attachment_20m_head", |b| {
        b.iter(|| summarise(black_box(&head)))
    });
    group.bench_function("alternative_10k", |b| {
        b.iter(|| summarise(black_box(small)))
    });
    group.finish();
}

criterion_group!(benches, disclaimer);
criterion_main!(benches);
