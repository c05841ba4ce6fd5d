//! `Repr::parse` never panics; whatever it accepts, `emit` writes back and
//! parses again to the same value.
#![no_main]
use aoefs::wire::Repr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = Repr::parse(data) else { return };
    let mut buf = vec![0u8; r.buffer_len()];
    let n = r.emit(&mut buf).expect("emit of a parsed frame");
    assert_eq!(n, buf.len());
    let again = Repr::parse(&buf).expect("parse of an emitted frame");
    assert_eq!(again, r, "emit/parse round trip");
});
