//! Issue 18's target for DKIM signing: signing adds under 200 µs to a 10 KB message, with
//! RSA-2048 and with Ed25519 (`dkim_sign/rsa2048_10k`, `dkim_sign/ed25519_10k`). Each iteration
//! is what the relay does after the rewrite: find the key for the `From:` domain, hash and sign,
//! and put the header on top of a copy of the message.
//!
//! `cargo bench --bench dkim -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use schoolgate::dkim::{Algorithm, Signing, key};

/// A 10 KB reply as a school sends it: a few headers and a quoted-printable text body.
fn message_10k() -> Vec<u8> {
    let mut m = String::from(
        "From: \"Mr T Baker\" <t.baker@example-academy.sch.uk>\r\nTo: jane.parent@example.org\r\nCc: office@example-academy.sch.uk\r\nSubject: Re: Year 4 trip on Thursday\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\nMessage-ID: <bench@example-academy.sch.uk>\r\nIn-Reply-To: <q@example.org>\r\nReferences: <q@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
    );
    while m.len() < 10 * 1024 {
        m.push_str("Dear Mrs Parent, the caf=C3=A9 trip on Thursday costs =C2=A35 per pupil.\r\n");
    }
    m.into_bytes()
}

fn dkim(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let message = message_10k();
    let mut group = c.benchmark_group("dkim_sign");
    group.throughput(Throughput::Bytes(message.len() as u64));
    for (name, algorithm) in [
        ("rsa2048_10k", Algorithm::Rsa),
        ("ed25519_10k", Algorithm::Ed25519),
    ] {
        let key = key::generate(algorithm, &dir.path().join(name)).expect("a key");
        let signing = Signing::new(
            vec![("example-academy.sch.uk".into(), "sg1".into(), key)],
            "schoolgate.test",
        )
        .expect("signer");
        group.bench_function(name, |b| {
            b.iter(|| {
                let signed = signing
                    .sign(black_box(&message), None)
                    .expect("signs")
                    .expect("the domain is covered");
                let mut out = signed.headers;
                out.extend_from_slice(&message);
                black_box(out)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, dkim);
criterion_main!(benches);
