//! The config parser (first byte even) and the directory CSV parser (odd).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    schoolgate_fuzz::contained_panics_are_fine();
    schoolgate_fuzz::must_not_panic(|| schoolgate_fuzz::config_or_directory(data));
});
