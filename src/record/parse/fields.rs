//! The lenient split of an answer's `data` object into fields, in one pass
//! that borrows from the body: the known ones by [`Key`], the others kept
//! byte for byte for `extra`; and the readers that convert a known field,
//! keeping it for `extra` when its type is unexpected.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{Key, ParseError};
use crate::money::Money;

/// The answer's top level: only `data` is read, in the same pass that splits
/// it into fields. `None` when `data` is missing, null or not an object.
pub(super) struct Envelope<'a>(pub(super) Option<Fields<'a>>);

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut data = None;
                while let Some(key) = map.next_key::<Name<'de>>()? {
                    if key.0 == "data" {
                        data = map.next_value::<Data<'de>>()?.0;
                    } else {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
                Ok(Envelope(data))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// The `data` value: its fields when it is an object.
struct Data<'a>(Option<Fields<'a>>);

impl<'de> Deserialize<'de> for Data<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Data<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Fields::new();
                while let Some(key) = map.next_key::<Name<'de>>()? {
                    let raw: &'de RawValue = map.next_value()?;
                    match Key::from_name(&key.0) {
                        // The last of repeated keys wins, as in a map.
                        Some(known) => fields.known[known as usize] = Some(raw),
                        None => fields.rest.push((key.0, raw)),
                    }
                }
                Ok(Data(Some(fields)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Data(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Data(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Data(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Data(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Data(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Data(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Data(None))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// A key, borrowed unless it had escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

/// The answer's fields: the known ones by [`Key`] (the last of repeated keys),
/// the others in order, and the known ones that had the wrong type.
pub(super) struct Fields<'a> {
    known: [Option<&'a RawValue>; Key::COUNT],
    rest: Vec<(Cow<'a, str>, &'a RawValue)>,
    mismatched: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Fields<'a> {
    fn new() -> Fields<'a> {
        Fields {
            known: [None; Key::COUNT],
            rest: Vec::new(),
            mismatched: Vec::new(),
        }
    }

    /// Takes `key`; `None` when absent or null.
    fn take(&mut self, key: Key) -> Option<&'a RawValue> {
        self.known[key as usize]
            .take()
            .filter(|raw| raw.get() != "null")
    }

    /// Takes `key` and converts it, keeping the raw value in `extra` when the
    /// conversion fails.
    fn convert<T>(&mut self, key: Key, convert: impl FnOnce(&str) -> Option<T>) -> Option<T> {
        let raw = self.take(key)?;
        let value = convert(raw.get());
        if value.is_none() {
            self.mismatched.push((Cow::Borrowed(key.name()), raw));
        }
        value
    }

    pub(super) fn text(&mut self, key: Key) -> Option<String> {
        // Enums are open strings, and a number where a string was expected is
        // still the value the API meant.
        self.convert(key, |raw| match raw.as_bytes().first() {
            Some(b'"') => string(raw).map(Cow::into_owned),
            Some(b'[' | b'{') | None => None,
            Some(_) => Some(raw.to_owned()),
        })
    }

    pub(super) fn int(&mut self, key: Key) -> Option<i64> {
        self.convert(key, |raw| {
            let text = unquote(raw)?;
            text.parse::<i64>().ok().or_else(|| {
                let float: f64 = text.parse().ok()?;
                let integral = float.fract() == 0.0 && float.abs() < 9.0e15;
                integral.then_some(float as i64)
            })
        })
    }

    pub(super) fn float(&mut self, key: Key) -> Option<f64> {
        self.convert(key, |raw| {
            unquote(raw)?.parse::<f64>().ok().filter(|f| f.is_finite())
        })
    }

    pub(super) fn bool(&mut self, key: Key) -> Option<bool> {
        self.convert(key, |raw| match unquote(raw)? {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
    }

    pub(super) fn timestamp(&mut self, key: Key) -> Option<i64> {
        self.convert(key, |raw| {
            let text = string(raw)?;
            let parsed = chrono::DateTime::parse_from_rfc3339(text.trim()).ok()?;
            Some(parsed.timestamp_micros())
        })
    }

    pub(super) fn json(&mut self, key: Key) -> Option<String> {
        self.take(key).map(|raw| raw.get().to_owned())
    }

    /// Money must be exact: a value that is not a number, or that needs more
    /// than 18 decimals, fails the record instead of being guessed.
    pub(super) fn money(&mut self, key: Key) -> Result<Option<Money>, ParseError> {
        let Some(raw) = self.take(key) else {
            return Ok(None);
        };
        let text = unquote(raw.get()).unwrap_or(raw.get());
        Money::parse(text)
            .map(Some)
            .map_err(|source| ParseError::Money {
                field: key.name(),
                source,
            })
    }

    /// The leftovers as one JSON object, keys sorted, values byte for byte as
    /// the API sent them; null values are left out.
    pub(super) fn into_extra(self) -> Option<String> {
        let mut others = self.rest;
        // Stable, so repeated keys stay in answer order and the last one wins,
        // as in a map. A null carries nothing worth a place in `extra`.
        others.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rest: Vec<(Cow<'_, str>, &RawValue)> = Vec::with_capacity(others.len());
        let mut others = others.into_iter().peekable();
        while let Some((key, raw)) = others.next() {
            let repeated = others.peek().is_some_and(|(next, _)| *next == key);
            if !repeated && raw.get() != "null" {
                rest.push((key, raw));
            }
        }
        rest.extend(self.mismatched);
        if rest.is_empty() {
            return None;
        }
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        let size: usize = rest
            .iter()
            .map(|(k, raw)| k.len() + raw.get().len() + 4)
            .sum();
        let mut out = String::with_capacity(size + 2);
        out.push('{');
        for (i, (key, raw)) in rest.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if key.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
                // Serialising a `&str` cannot fail.
                out.push_str(&serde_json::to_string(key).unwrap_or_default());
            } else {
                out.push('"');
                out.push_str(key);
                out.push('"');
            }
            out.push(':');
            out.push_str(raw.get());
        }
        out.push('}');
        Some(out)
    }
}

/// A JSON string's value, borrowed when it needs no unescaping; `None` for
/// anything that is not a string.
fn string(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.starts_with('"') {
        return None;
    }
    match unquote(raw) {
        Some(plain) => Some(Cow::Borrowed(plain)),
        None => serde_json::from_str::<String>(raw).ok().map(Cow::Owned),
    }
}

/// A scalar's text: numbers and literals as they are, strings without quotes
/// (only when they need no unescaping). `None` for objects and arrays.
fn unquote(raw: &str) -> Option<&str> {
    match raw.as_bytes().first()? {
        b'[' | b'{' => None,
        b'"' => raw
            .strip_prefix('"')?
            .strip_suffix('"')
            .filter(|s| !s.contains('\\')),
        _ => Some(raw),
    }
}
