//! A generation's stored content (prompt, messages, completion, reasoning,
//! error): one row of the `content` table, built from a
//! `GET /generation/content` answer.
//!
//! The answer carries no ID and no time, so the caller stamps both from the
//! generation's metadata record. Parsing is lenient like the metadata parser:
//! every field may be missing or null, unknown fields are ignored, and a value
//! of an unexpected type is kept as its JSON text rather than dropped.

use serde_json::value::RawValue;

use crate::schema::{Column, ColumnType as T, Row, Value};

/// One generation's stored input and output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Content {
    pub id: String,
    /// The generation's `created_at` (from its metadata record), microseconds
    /// since the epoch, UTC.
    pub created_at: Option<i64>,
    /// `input.prompt`.
    pub input_prompt: Option<String>,
    /// `input.messages` as JSON text, as sent.
    pub input_messages: Option<String>,
    /// `output.completion`.
    pub output_completion: Option<String>,
    /// `output.reasoning`.
    pub output_reasoning: Option<String>,
    /// The `error` object as JSON text, as sent.
    pub error: Option<String>,
    /// When the content was fetched, microseconds since the epoch, UTC.
    pub fetched_at: i64,
}

macro_rules! text_col {
    ($name:ident, $ty:expr) => {
        Column {
            name: stringify!($name),
            ty: $ty,
            nullable: true,
            get: |c: &Content| c.$name.as_deref().into(),
        }
    };
}

const COLUMNS: &[Column<Content>] = &[
    Column {
        name: "id",
        ty: T::Text,
        nullable: false,
        get: |c| Value::Text(&c.id),
    },
    Column {
        name: "created_at",
        ty: T::Timestamp,
        nullable: true,
        get: |c| c.created_at.map_or(Value::Null, Value::Timestamp),
    },
    text_col!(input_prompt, T::Text),
    text_col!(input_messages, T::Json),
    text_col!(output_completion, T::Text),
    text_col!(output_reasoning, T::Text),
    text_col!(error, T::Json),
    Column {
        name: "fetched_at",
        ty: T::Timestamp,
        nullable: false,
        get: |c| Value::Timestamp(c.fetched_at),
    },
];

impl Row for Content {
    const COLUMNS: &'static [Column<Self>] = COLUMNS;
    const TABLE: &'static str = "content";
    /// Prompts and completions: owner-only files.
    const SENSITIVE: bool = true;
    const PRUNING_COLUMNS: &'static [&'static str] = &["created_at", "fetched_at"];
    /// Prompts and completions are free text: a dictionary rarely pays off.
    /// `error` stays dictionary-encoded, being mostly null and often repeated.
    const UNIQUE_COLUMNS: &'static [&'static str] = &[
        "id",
        "created_at",
        "input_prompt",
        "input_messages",
        "output_completion",
        "output_reasoning",
        "fetched_at",
    ];

    /// The same day as the generation's metadata row; content of a record
    /// without `created_at` is filed under the day it was fetched.
    fn partition_micros(&self) -> i64 {
        self.created_at.unwrap_or(self.fetched_at)
    }
}

/// Why a content answer could not be turned into a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("content answer for `{id}` is not JSON: {message}")]
    NotJson { id: String, message: String },
    #[error("content answer for `{id}` has no `data` object")]
    NoData { id: String },
    #[error("content answer for `{id}`: `{field}` is {found}, not a plain object")]
    UnexpectedType {
        id: String,
        field: &'static str,
        found: &'static str,
    },
}

impl ContentError {
    /// A cut or garbled body is worth fetching again; a complete answer of an
    /// unknown shape is not.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ContentError::NotJson { .. } | ContentError::NoData { .. }
        )
    }
}

#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// The fields of `data`, `input` and `output` alike: each taken raw, so that a
/// value of any type parses and JSON-valued ones keep their exact text.
#[derive(serde::Deserialize, Default)]
struct Fields<'a> {
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    output: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
    #[serde(borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow)]
    completion: Option<&'a RawValue>,
    #[serde(borrow)]
    reasoning: Option<&'a RawValue>,
}

/// Parses a content answer body for the generation `id`.
///
/// `created_at` comes from the generation's metadata record (the content
/// answer has none) and `fetched_at` is when the answer arrived.
pub fn parse_content(
    body: &str,
    id: &str,
    created_at: Option<i64>,
    fetched_at: i64,
) -> Result<Content, ContentError> {
    let envelope: Envelope<'_> = serde_json::from_str(body).map_err(|e| ContentError::NotJson {
        id: id.to_owned(),
        message: e.to_string(),
    })?;
    let data = envelope
        .data
        .and_then(|raw| object(raw).ok().flatten())
        .ok_or_else(|| ContentError::NoData { id: id.to_owned() })?;
    let unexpected = |field: &'static str, found: &'static str| ContentError::UnexpectedType {
        id: id.to_owned(),
        field,
        found,
    };

    let mut content = Content {
        id: id.to_owned(),
        created_at,
        error: json(data.error),
        fetched_at,
        ..Content::default()
    };
    // `input` is `{"prompt": …}`, `{"messages": […]}` or both; a bare string
    // or array is taken for what it plainly is.
    if let Some(raw) = data.input {
        match kind(raw) {
            Kind::Null => {}
            Kind::String => content.input_prompt = text(Some(raw)),
            Kind::Array => content.input_messages = json(Some(raw)),
            Kind::Object => {
                let input = object(raw).map_err(|found| unexpected("input", found))?;
                let input = input.unwrap_or_default();
                content.input_prompt = text(input.prompt);
                content.input_messages = json(input.messages);
            }
            Kind::Other(found) => return Err(unexpected("input", found)),
        }
    }
    if let Some(raw) = data.output {
        match object(raw) {
            Ok(output) => {
                let output = output.unwrap_or_default();
                content.output_completion = text(output.completion);
                content.output_reasoning = text(output.reasoning);
            }
            Err(found) => return Err(unexpected("output", found)),
        }
    }
    Ok(content)
}

enum Kind {
    Null,
    String,
    Array,
    Object,
    Other(&'static str),
}

fn kind(raw: &RawValue) -> Kind {
    match raw.get().as_bytes().first() {
        Some(b'n') => Kind::Null,
        Some(b'"') => Kind::String,
        Some(b'[') => Kind::Array,
        Some(b'{') => Kind::Object,
        Some(b't' | b'f') => Kind::Other("a boolean"),
        _ => Kind::Other("a number"),
    }
}

/// The fields of an object (`None` for null), or what the value is instead.
fn object(raw: &RawValue) -> Result<Option<Fields<'_>>, &'static str> {
    match kind(raw) {
        Kind::Null => Ok(None),
        // Keys repeated within one object are the only way this parse fails.
        Kind::Object => serde_json::from_str(raw.get())
            .map(Some)
            .map_err(|_| "an object with a repeated key"),
        Kind::String => Err("a string"),
        Kind::Array => Err("an array"),
        Kind::Other(found) => Err(found),
    }
}

/// A text field: a string unescaped, null as `None`, and any other value as
/// its JSON text (a number or an object where a string was expected is still
/// what the API sent).
fn text(raw: Option<&RawValue>) -> Option<String> {
    let raw = raw?;
    match kind(raw) {
        Kind::Null => None,
        Kind::String => serde_json::from_str(raw.get()).ok(),
        _ => Some(raw.get().to_owned()),
    }
}

/// A JSON-valued field as its exact text; null as `None`.
fn json(raw: Option<&RawValue>) -> Option<String> {
    raw.filter(|raw| raw.get() != "null")
        .map(|raw| raw.get().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::column_names;
    use crate::simulator::content as sim_content;

    const CREATED: i64 = 1_764_704_027_000_000;
    const FETCHED: i64 = 1_764_704_100_000_000;

    fn parse(body: &str) -> Result<Content, ContentError> {
        parse_content(body, "gen-1", Some(CREATED), FETCHED)
    }

    #[test]
    fn columns_follow_the_contract_order() {
        assert_eq!(
            column_names::<Content>().join(", "),
            "id, created_at, input_prompt, input_messages, output_completion, \
             output_reasoning, error, fetched_at"
        );
    }

    #[test]
    fn parses_every_simulator_answer_field_for_field() {
        for i in 0..2_000 {
            let id = format!("gen-{}-{i:020}", 1_760_000_000 + i);
            let sim = sim_content(&id);
            let body = format!("{{\"data\":{}}}", sim.to_json());
            let c = parse_content(&body, &id, Some(CREATED), FETCHED).unwrap();
            let want = Content {
                id: id.clone(),
                created_at: Some(CREATED),
                input_prompt: sim.input_prompt,
                input_messages: sim.input_messages,
                output_completion: sim.output_completion,
                output_reasoning: sim.output_reasoning,
                error: sim.error,
                fetched_at: FETCHED,
            };
            assert_eq!(c, want, "{body}");
        }
    }

    #[test]
    fn takes_both_input_keys_and_keeps_json_text_exactly() {
        let body = r#"{"data": {"input": {"prompt": "a \"b\"\n", "messages": [{"role":"user", "n": 1.50}]},
            "output": {"completion": "ok", "reasoning": null, "new_field": 1},
            "error": {"status": 502, "previous_errors": []}, "also_new": [1]}, "meta": {}}"#;
        let c = parse(body).unwrap();
        assert_eq!(c.input_prompt.as_deref(), Some("a \"b\"\n"));
        assert_eq!(
            c.input_messages.as_deref(),
            Some(r#"[{"role":"user", "n": 1.50}]"#)
        );
        assert_eq!(c.output_completion.as_deref(), Some("ok"));
        assert_eq!(c.output_reasoning, None);
        assert_eq!(
            c.error.as_deref(),
            Some(r#"{"status": 502, "previous_errors": []}"#)
        );
    }

    #[test]
    fn missing_and_null_parts_are_none() {
        let empty = Content {
            id: "gen-1".into(),
            created_at: Some(CREATED),
            fetched_at: FETCHED,
            ..Content::default()
        };
        for body in [
            r#"{"data": {}}"#,
            r#"{"data": {"input": null, "output": null, "error": null}}"#,
            r#"{"data": {"input": {}, "output": {}}}"#,
            r#"{"data": {"input": {"prompt": null, "messages": null}, "output": {"completion": null}}}"#,
        ] {
            assert_eq!(parse(body).unwrap(), empty, "{body}");
        }
        let bare = parse(r#"{"data": {"input": "just text", "output": {"completion": 42}}}"#);
        let bare = bare.unwrap();
        assert_eq!(bare.input_prompt.as_deref(), Some("just text"));
        assert_eq!(bare.output_completion.as_deref(), Some("42"));
    }

    #[test]
    fn unusable_bodies_are_errors_never_panics() {
        let no_data = |body: &str| matches!(parse(body), Err(ContentError::NoData { .. }));
        let not_json = |body: &str| matches!(parse(body), Err(ContentError::NotJson { .. }));
        assert!(not_json(""));
        assert!(not_json(r#"{"data": {"input": {"prompt": "cut"#));
        assert!(not_json("<html>502 Bad Gateway</html>"));
        assert!(not_json("[1, 2]"));
        assert!(no_data("{}"));
        assert!(no_data(r#"{"data": null}"#));
        assert!(no_data(r#"{"data": [1]}"#));
        assert!(no_data(r#"{"error": {"code": 403, "message": "no"}}"#));
        let err = parse(r#"{"data": {"output": "text"}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "content answer for `gen-1`: `output` is a string, not a plain object"
        );
        assert!(!err.is_transient());
        assert!(matches!(
            parse(r#"{"data": {"input": 3}}"#),
            Err(ContentError::UnexpectedType { field: "input", .. })
        ));
    }

    #[test]
    fn partitions_by_the_generation_day() {
        let mut c = parse(r#"{"data": {}}"#).unwrap();
        assert_eq!(c.partition_micros(), CREATED);
        c.created_at = None;
        assert_eq!(c.partition_micros(), FETCHED);
    }
}
