//! Any bytes as a message through policy::evaluate and the disclaimer rewrite.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    schoolgate_fuzz::contained_panics_are_fine();
    schoolgate_fuzz::must_not_panic(|| schoolgate_fuzz::mime_rewrite(data));
});
