//! Fuzzes the answer parser: any body gives a record or an error, never a
//! panic; a record is for the requested ID, its `extra` is a JSON object, and
//! its money prints as plain decimal text that parses back to the same amount.
#![no_main]

use genledger::money::Money;
use genledger::record::parse_generation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(body) = std::str::from_utf8(body) else { return };
    let Ok(record) = parse_generation(body, "gen-1", "run", 0) else { return };
    assert_eq!(record.id, "gen-1");
    if let Some(extra) = &record.extra {
        // Syntax, not range: `1e999` is valid JSON that serde_json's `Value`
        // cannot hold, and `extra` keeps the API's bytes as they are.
        let object: Result<std::collections::BTreeMap<String, Box<serde_json::value::RawValue>>, _> =
            serde_json::from_str(extra);
        assert!(object.is_ok(), "extra is a JSON object: {extra}");
    }
    for money in [record.total_cost, record.usage, record.upstream_inference_cost, record.cache_discount].into_iter().flatten() {
        let text = money.to_string();
        assert!(!text.contains(['e', 'E']));
        assert_eq!(Money::parse(&text), Ok(money));
    }
});
