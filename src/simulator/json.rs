//! A small append-only JSON writer over `String`, with serde_json doing string escaping.

use std::fmt::Write as _;
use std::io;

/// Adapts a `String` to `io::Write` so serde_json can escape straight into it.
struct StrSink<'a>(&'a mut String);

impl io::Write for StrSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // serde_json only splits strings at ASCII escape points, so every fragment is UTF-8;
        // the lossy conversion is a borrow in that case and never panics otherwise.
        self.0.push_str(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Bytes that a JSON string cannot hold as they are.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Appends `s` as a quoted, escaped JSON string.
pub(crate) fn push_str(out: &mut String, s: &str) {
    // Most values need no escaping; serde_json would copy them unchanged, so skip it.
    if !s.bytes().any(|b| NEEDS_ESCAPE[usize::from(b)]) {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    // `StrSink::write` never fails, and serializing a `str` fails only on a write error.
    serde_json::to_writer(StrSink(out), s).expect("writing JSON into a String cannot fail");
}

/// Appends `value` in lowercase hex, zero-padded to `width` digits, as
/// `{value:0width$x}` would, without the formatting machinery (it runs for
/// several fields of every answer).
pub(crate) fn push_hex(out: &mut String, value: u64, width: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [b'0'; 16];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = DIGITS[(rest & 0xf) as usize];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    let padding = width.saturating_sub(digits.len() - start);
    out.extend(std::iter::repeat_n('0', padding));
    out.extend(digits[start..].iter().map(|&b| char::from(b)));
}

/// Appends `value` in decimal, zero-padded to `width` digits, as
/// `{value:0width$}` would.
pub(crate) fn push_dec(out: &mut String, value: u64, width: usize) {
    let mut buffer = itoa::Buffer::new();
    let text = buffer.format(value);
    out.extend(std::iter::repeat_n('0', width.saturating_sub(text.len())));
    out.push_str(text);
}

/// A new string of `prefix` followed by what `rest` appends.
pub(crate) fn text(prefix: &str, rest: impl FnOnce(&mut String)) -> String {
    let mut out = String::with_capacity(prefix.len() + 32);
    out.push_str(prefix);
    rest(&mut out);
    out
}

/// Writes the members of one JSON object, inserting commas as needed.
pub(crate) struct Obj<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Obj<'a> {
    pub(crate) fn open(out: &'a mut String) -> Self {
        out.push('{');
        Self { out, empty: true }
    }

    /// Writes `"key":` and hands back the buffer for the value. Keys are the
    /// simulator's own names, none of which needs escaping, so they are
    /// copied without the scan every value gets.
    pub(crate) fn key(&mut self, key: &str) -> &mut String {
        debug_assert!(!key.bytes().any(|b| NEEDS_ESCAPE[usize::from(b)]));
        self.next_member();
        self.out.reserve(key.len() + 3);
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
        self.out
    }

    /// A member whose name comes from data, not from the simulator: the name
    /// is escaped like any value.
    pub(crate) fn raw_named(&mut self, name: &str, raw: &str) {
        self.next_member();
        push_str(self.out, name);
        self.out.push(':');
        self.out.push_str(raw);
    }

    /// The comma before every member but the first.
    fn next_member(&mut self) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
    }

    /// A string value that `write` appends in place, for text built from
    /// digits and the simulator's own names, which needs no escaping.
    pub(crate) fn plain_str(&mut self, key: &str, write: impl FnOnce(&mut String)) {
        let out = self.key(key);
        out.push('"');
        let start = out.len();
        write(out);
        debug_assert!(!out[start..].bytes().any(|b| NEEDS_ESCAPE[usize::from(b)]));
        out.push('"');
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) {
        push_str(self.key(key), value);
    }

    pub(crate) fn opt_str(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(v) => self.str(key, v),
            None => self.raw(key, "null"),
        }
    }

    /// A value that is already JSON text (numbers kept verbatim, nested objects).
    pub(crate) fn raw(&mut self, key: &str, raw: &str) {
        self.key(key).push_str(raw);
    }

    pub(crate) fn opt_raw(&mut self, key: &str, raw: Option<&str>) {
        self.raw(key, raw.unwrap_or("null"));
    }

    pub(crate) fn opt_i64(&mut self, key: &str, value: Option<i64>) {
        match value {
            // Writing into a String cannot fail.
            Some(v) => {
                self.raw(key, itoa::Buffer::new().format(v));
            }
            None => self.raw(key, "null"),
        }
    }

    /// Rust prints finite floats in shortest round-trip form without exponent: `1234`, `1234.5`.
    pub(crate) fn opt_f64(&mut self, key: &str, value: Option<f64>) {
        match value {
            // Whole numbers are most of them, and integer printing is cheap.
            Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => {
                self.raw(key, itoa::Buffer::new().format(v as i64));
            }
            Some(v) if v.is_finite() => {
                let _ = write!(self.key(key), "{v}");
            }
            _ => self.raw(key, "null"),
        }
    }

    pub(crate) fn opt_bool(&mut self, key: &str, value: Option<bool>) {
        let text = match value {
            Some(true) => "true",
            Some(false) => "false",
            None => "null",
        };
        self.raw(key, text);
    }

    pub(crate) fn close(self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_texts_match_the_formatter() {
        for value in [
            0,
            1,
            9,
            10,
            0xabc,
            4_095,
            123_456_789,
            u64::MAX >> 12,
            u64::MAX,
        ] {
            for width in [0, 1, 3, 4, 6, 12, 16, 20] {
                let mut hex = String::new();
                push_hex(&mut hex, value, width);
                assert_eq!(hex, format!("{value:0width$x}"), "{value} {width}");
                let mut dec = String::new();
                push_dec(&mut dec, value, width);
                assert_eq!(dec, format!("{value:0width$}"), "{value} {width}");
            }
        }
    }

    #[test]
    fn writes_escaped_object() {
        let mut out = String::new();
        let mut obj = Obj::open(&mut out);
        obj.str("a", "quote \" newline \n café ✓ \u{1}");
        obj.opt_str("b", None);
        obj.opt_i64("c", Some(-3));
        obj.opt_f64("d", Some(1234.0));
        obj.opt_f64("e", Some(1234.5));
        obj.opt_bool("f", Some(true));
        obj.raw("g", "[1,2]");
        obj.raw_named("h \"x\"", "3");
        obj.close();
        let parsed: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(parsed["a"], "quote \" newline \n café ✓ \u{1}");
        assert!(parsed["b"].is_null());
        assert_eq!(parsed["c"], -3);
        assert_eq!(parsed["d"].as_f64(), Some(1234.0));
        assert!(out.contains("\"d\":1234,"));
        assert_eq!(parsed["e"].as_f64(), Some(1234.5));
        assert_eq!(parsed["f"], true);
        assert_eq!(parsed["g"][1], 2);
        assert_eq!(parsed["h \"x\""], 3);
    }
}
