//! The per-line input rules: what a line of a queue file or stdin holds
//! (an ID, plain or in a JSON object; a blank or comment; an invalid line),
//! and reading lines of bounded length.

use std::io::{self, BufRead};

/// Longest ID accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest line read; the rest of a longer line is discarded and the line is invalid.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// What one input line holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// A generation ID to fetch.
    Id(String),
    /// Blank or a `#` comment.
    Skip,
    /// Never sent; recorded as failed with reason `invalid_id`.
    Invalid(String),
}

/// Applies the input rules to one line (without its line ending).
pub fn parse_line(line: &[u8]) -> LineKind {
    let Ok(text) = std::str::from_utf8(line) else {
        return LineKind::Invalid("line is not valid UTF-8".into());
    };
    let text = text.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r');
    if text.is_empty() || text.starts_with('#') {
        return LineKind::Skip;
    }
    let id = if text.starts_with('{') {
        match id_from_json(text) {
            Ok(id) => id,
            Err(reason) => return LineKind::Invalid(reason),
        }
    } else {
        text.to_owned()
    };
    match check_id(&id) {
        Ok(()) => LineKind::Id(id),
        Err(reason) => LineKind::Invalid(reason),
    }
}

fn id_from_json(text: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Logged {
        id: Option<serde_json::Value>,
    }
    let logged: Logged =
        serde_json::from_str(text).map_err(|e| format!("line looks like JSON but is not: {e}"))?;
    match logged.id {
        Some(serde_json::Value::String(id)) => Ok(id.trim().to_owned()),
        _ => Err("JSON line has no string `id` field".into()),
    }
}

fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("empty id".into());
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "id is {} bytes long, more than {MAX_ID_BYTES}",
            id.len()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err("id contains control characters".into());
    }
    Ok(())
}

/// What a raw line read by [`read_line_capped`] holds: its ending (and a
/// leading BOM on line 1) dropped, then the input rules applied.
pub(super) fn classify(buf: &[u8], line_no: u64, overlong: bool) -> LineKind {
    if overlong {
        return LineKind::Invalid(format!("line is longer than {MAX_LINE_BYTES} bytes"));
    }
    parse_line(strip_line_end(buf, line_no == 1))
}

/// Reads up to and including the next `\n`, keeping at most `MAX_LINE_BYTES`.
/// Returns the bytes consumed, whether the line was cut, and whether it ended
/// with `\n` (else the input ended first).
pub(super) fn read_line_capped(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
) -> io::Result<(usize, bool, bool)> {
    let mut consumed = 0;
    let mut overlong = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok((consumed, overlong, false));
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (chunk.len(), false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(buf.len());
        overlong |= take > room && !(done && take - 1 <= room);
        buf.extend_from_slice(&chunk[..take.min(room)]);
        reader.consume(take);
        consumed += take;
        if done {
            return Ok((consumed, overlong, true));
        }
    }
}

/// Drops the line ending (LF or CRLF) and, on a file's first line, a UTF-8 BOM.
fn strip_line_end(buf: &[u8], first_line: bool) -> &[u8] {
    let mut line = buf.strip_suffix(b"\n").unwrap_or(buf);
    line = line.strip_suffix(b"\r").unwrap_or(line);
    if first_line {
        line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_rules() {
        assert_eq!(
            parse_line(b"  gen-1-abc \r"),
            LineKind::Id("gen-1-abc".into())
        );
        assert_eq!(parse_line(b""), LineKind::Skip);
        assert_eq!(parse_line(b"   "), LineKind::Skip);
        assert_eq!(parse_line(b"# a comment"), LineKind::Skip);
        assert_eq!(
            parse_line(br#"{"id":"gen-2","model":"x"}"#),
            LineKind::Id("gen-2".into())
        );
        assert!(matches!(
            parse_line(br#"{"model":"x"}"#),
            LineKind::Invalid(_)
        ));
        assert!(matches!(parse_line(br#"{"id":""}"#), LineKind::Invalid(_)));
        assert!(matches!(parse_line(br#"{"id":"#), LineKind::Invalid(_)));
        assert!(matches!(parse_line(b"gen-\xff"), LineKind::Invalid(_)));
        assert!(matches!(parse_line(b"gen-\x01x"), LineKind::Invalid(_)));
        assert!(matches!(parse_line(&[b'a'; 257]), LineKind::Invalid(_)));
        assert_eq!(parse_line(&[b'a'; 256]), LineKind::Id("a".repeat(256)));
    }
}
