//! `split_iflist` never panics and returns non-empty, distinct names without
//! separators (whitespace, commas).
#![no_main]
use aoefs::link::{split_iflist, valid_ifname};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let v = split_iflist(&s);
    for (i, n) in v.iter().enumerate() {
        assert!(!n.is_empty());
        assert!(!n.chars().any(|c| c.is_whitespace() || c == ','), "{n:?}");
        assert!(!v[..i].contains(n), "duplicate {n:?}");
        let _ = valid_ifname(n);
    }
});
