//! `Identify::parse` never panics on any buffer.
#![no_main]
use aoefs::wire::Identify;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = Identify::parse(data) {
        let _ = format!("{id:?}");
    }
});
