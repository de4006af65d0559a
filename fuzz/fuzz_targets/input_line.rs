//! Fuzzes the input-line rule: any bytes give a verdict, never a panic, and an
//! accepted ID obeys the documented limits.
#![no_main]

use genledger::source::{LineKind, MAX_ID_BYTES, parse_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    if let LineKind::Id(id) = parse_line(line) {
        assert!(!id.is_empty());
        assert!(id.len() <= MAX_ID_BYTES);
        assert!(!id.chars().any(char::is_control));
        assert_eq!(id.trim_matches([' ', '\t', '\r']), id);
    }
});
