//! Any bytes as an attachment through every extractor and encryption check (the first byte picks the name and type it was sent as).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    schoolgate_fuzz::contained_panics_are_fine();
    schoolgate_fuzz::must_not_panic(|| schoolgate_fuzz::attachment(data));
});
