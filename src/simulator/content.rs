//! Deterministic stored content (prompts, completions, errors) for the content endpoint.

use super::dice::IdDice;
use super::json::{Obj, push_str};

const CONTENT_SALT: u64 = 0x0063_6F6E_7465_6E74;

/// Prompts chosen to exercise escaping: quotes, newlines, tabs, backslashes, CJK, emoji,
/// a control character and U+2028.
const PROMPTS: &[&str] = &[
    "Summarise the following report in three bullet points.",
    "Translate to French: \"The quick brown fox\"\nKeep the quotes.",
    "日本語で短い俳句を書いてください。🍂",
    "Explain the difference between \\n and \\r\\n line endings.\tUse a table.",
    "Ünïcödé façade — naïve café, 🚀 and a line\u{2028}separator",
    "Bell \u{7} and escape \u{1b}[0m should survive",
    "Write a SQL query: SELECT * FROM \"users\" WHERE name = 'O''Brien';",
    "",
];

const COMPLETIONS: &[&str] = &[
    "- Revenue grew 12%\n- Costs fell\n- Outlook: \"cautiously optimistic\"",
    "« Le renard brun rapide »",
    "古池や\n蛙飛び込む\n水の音",
    "Use `\\r\\n` on Windows; `\\n` elsewhere.",
    "{\"looks\": \"like JSON\", \"but\": \"is a string\"}",
    "OK",
];

const REASONING: &[&str] = &[
    "The user wants a summary; list the key numbers first.",
    "Consider edge cases: empty input, \"quoted\" names…",
    "思考: 五七五の形式を守る。",
];

const SYSTEM: &[&str] = &[
    "You are a helpful assistant.",
    "Answer in JSON only.\nNo prose.",
];

/// Stored input and output of one generation; the JSON-valued fields hold raw JSON text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimContent {
    pub input_prompt: Option<String>,
    /// Raw JSON text of the messages array.
    pub input_messages: Option<String>,
    pub output_completion: Option<String>,
    pub output_reasoning: Option<String>,
    /// Raw JSON text of the error object.
    pub error: Option<String>,
}

/// Printable ASCII but `"` and `\\`, so a sized prompt needs no JSON escaping.
const PROMPT_ALPHABET: &[u8] =
    b" !#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~";

/// Builds the stored content for `id`; it depends on nothing but the ID.
pub fn content(id: &str) -> SimContent {
    content_with_prompt(id, None)
}

/// [`content`], except that with `prompt_bytes` set every generation has a
/// prompt of exactly that many bytes of random text, still fixed by the ID
/// (as agents' long prompts are: zstd saves only what the 93-letter alphabet
/// leaves unused of each byte, about 18 %).
pub fn content_with_prompt(id: &str, prompt_bytes: Option<usize>) -> SimContent {
    let mut content = short_content(id);
    if let Some(bytes) = prompt_bytes {
        content.input_prompt = Some(sized_prompt(id, bytes));
    }
    content
}

fn sized_prompt(id: &str, bytes: usize) -> String {
    let mut d = IdDice::new(id, CONTENT_SALT ^ 0x5052_4F4D_5054);
    let mut out = String::with_capacity(bytes);
    while out.len() < bytes {
        for b in d.next_u64().to_le_bytes().iter().take(bytes - out.len()) {
            // Scales a random byte onto the alphabet, near enough to uniform.
            let letter = PROMPT_ALPHABET[(usize::from(*b) * PROMPT_ALPHABET.len()) >> 8];
            out.push(char::from(letter));
        }
    }
    out
}

fn short_content(id: &str) -> SimContent {
    let mut d = IdDice::new(id, CONTENT_SALT);
    let prompt = d.pick(PROMPTS);
    let (with_prompt, with_messages) = match d.below(10) {
        0..5 => (true, false),
        5..9 => (false, true),
        _ => (true, true),
    };
    let failed = d.percent(5);
    let messages = with_messages.then(|| messages(&mut d, prompt));
    let completion = (!failed && d.percent(92)).then(|| d.pick(COMPLETIONS).to_owned());
    let reasoning = d.percent(30).then(|| d.pick(REASONING).to_owned());
    SimContent {
        input_prompt: with_prompt.then(|| prompt.to_owned()),
        input_messages: messages,
        output_completion: completion,
        output_reasoning: reasoning,
        error: failed.then(|| error(&mut d)),
    }
}

fn messages(d: &mut IdDice, prompt: &str) -> String {
    let mut out = String::with_capacity(256);
    out.push('[');
    let mut system = Obj::open(&mut out);
    system.str("role", "system");
    system.str("content", d.pick(SYSTEM));
    system.close();
    out.push(',');
    let mut user = Obj::open(&mut out);
    user.str("role", "user");
    if d.percent(30) {
        // Multi-part content, as vision requests send it.
        let parts = user.key("content");
        parts.push_str(r#"[{"type":"text","text":"#);
        push_str(parts, prompt);
        parts.push_str(
            r#"},{"type":"image_url","image_url":{"url":"https://example.com/cat.png"}}]"#,
        );
    } else {
        user.str("content", prompt);
    }
    user.close();
    out.push(']');
    out
}

fn error(d: &mut IdDice) -> String {
    let mut out = String::with_capacity(256);
    let mut obj = Obj::open(&mut out);
    obj.opt_i64("status", Some(d.pick(&[400, 429, 500, 502])));
    obj.str(
        "message",
        d.pick(&["Provider returned error", "Upstream \"timeout\"\nafter 60s"]),
    );
    obj.str(
        "provider_name",
        d.pick(&["Together", "DeepInfra", "Anthropic"]),
    );
    obj.str(
        "raw",
        r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
    );
    let previous = obj.key("previous_errors");
    if d.percent(50) {
        previous.push_str(
            r#"[{"code":429,"message":"Rate limited","provider_name":"DeepInfra","raw":null}]"#,
        );
    } else {
        previous.push_str("[]");
    }
    obj.close();
    out
}

impl SimContent {
    /// The `data` object exactly as the content endpoint serves it.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(512);
        self.write_json(&mut out);
        out
    }

    /// Appends the `data` object to `out`.
    pub fn write_json(&self, out: &mut String) {
        let mut data = Obj::open(out);
        let mut input = Obj::open(data.key("input"));
        if let Some(prompt) = &self.input_prompt {
            input.str("prompt", prompt);
        }
        if let Some(messages) = &self.input_messages {
            input.raw("messages", messages);
        }
        input.close();
        let mut output = Obj::open(data.key("output"));
        output.opt_str("completion", self.output_completion.as_deref());
        output.opt_str("reasoning", self.output_reasoning.as_deref());
        output.close();
        data.opt_raw("error", self.error.as_deref());
        data.close();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn content_is_deterministic_and_well_formed() {
        let mut errors = 0;
        let mut both = 0;
        for i in 0..10_000 {
            let id = format!("gen-{}-{i:020}", 1_760_000_000 + i);
            let c = content(&id);
            assert_eq!(c, content(&id));
            let text = c.to_json();
            let data: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(data["input"]["prompt"].as_str(), c.input_prompt.as_deref());
            assert_eq!(
                data["output"]["completion"].as_str(),
                c.output_completion.as_deref()
            );
            assert!(data["output"].get("reasoning").is_some());
            assert!(c.input_prompt.is_some() || c.input_messages.is_some());
            if let Some(messages) = &c.input_messages {
                assert!(data["input"]["messages"].is_array(), "{messages}");
            }
            if c.error.is_some() {
                errors += 1;
                assert!(data["error"]["previous_errors"].is_array());
            } else {
                assert!(data["error"].is_null());
            }
            both += usize::from(c.input_prompt.is_some() && c.input_messages.is_some());
        }
        assert!((300..700).contains(&errors), "errors {errors}");
        assert!(both > 500);
    }

    #[test]
    fn sized_prompts_have_their_size_need_no_escaping_and_depend_on_the_id() {
        assert_eq!(PROMPT_ALPHABET.len(), 93);
        let c = content_with_prompt("gen-1-a", Some(200_000));
        let prompt = c.input_prompt.as_deref().unwrap();
        assert_eq!(prompt.len(), 200_000);
        assert_eq!(c, content_with_prompt("gen-1-a", Some(200_000)));
        assert_ne!(c, content_with_prompt("gen-1-b", Some(200_000)));
        let data: Value = serde_json::from_str(&c.to_json()).expect("valid JSON");
        assert_eq!(data["input"]["prompt"], prompt);
        let letters: std::collections::HashSet<char> = prompt.chars().collect();
        assert_eq!(letters.len(), 93, "every letter is drawn");
        assert_eq!(content_with_prompt("gen-1-a", None), content("gen-1-a"));
        assert_eq!(
            content_with_prompt("gen-1-a", Some(3))
                .input_prompt
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn prompts_round_trip_through_escaping() {
        for prompt in PROMPTS {
            let c = SimContent {
                input_prompt: Some((*prompt).to_owned()),
                ..SimContent::default()
            };
            let data: Value = serde_json::from_str(&c.to_json()).expect("valid JSON");
            assert_eq!(data["input"]["prompt"], *prompt);
        }
    }
}
