//! `parse_dev_name` never panics; what it accepts is a valid shelf.slot that
//! prints back to a name it accepts again.
#![no_main]
use aoefs::blockfs::parse_dev_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Some((shelf, slot)) = parse_dev_name(&s) {
        assert!(shelf < 0xFFFF && slot < 0xFF, "{shelf}.{slot} from {s:?}");
        assert_eq!(parse_dev_name(&format!("e{shelf}.{slot}")), Some((shelf, slot)));
    }
});
