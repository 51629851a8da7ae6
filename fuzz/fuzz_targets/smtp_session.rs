//! A client's byte stream into a real SMTP session (over an in-memory duplex).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    schoolgate_fuzz::contained_panics_are_fine();
    schoolgate_fuzz::must_not_panic(|| schoolgate_fuzz::smtp_session(data));
});
