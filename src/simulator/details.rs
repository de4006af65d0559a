//! The optional detail fields of a generation record: routing, usage, timing and extras.

use super::dice::IdDice;
use super::json::{Obj, push_dec, push_hex, text};
use super::pricing::{Model, Money, Tokens};
use super::record::SimGeneration;

fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

/// Normalised finish reason and the raw spellings providers use for it.
const FINISH: &[(&str, &[&str])] = &[
    ("stop", &["stop", "end_turn", "STOP", "eos"]),
    ("stop", &["stop", "end_turn"]),
    ("length", &["length", "max_tokens", "MAX_TOKENS"]),
    ("tool_calls", &["tool_calls", "tool_use"]),
    ("content_filter", &["content_filter", "SAFETY"]),
    ("error", &["error"]),
];

/// Fields OpenRouter may add that genledger does not know: (name, raw JSON value).
const UNKNOWN: &[(&str, &str)] = &[
    ("router_version", r#""v7""#),
    ("experimental_flags", r#"{"a":1.10,"b":[1,2]}"#),
    ("billing_tier", "null"),
    ("cache_write_tokens", "1024"),
    (
        "annotations",
        r#"[{"kind":"note","text":"caf\u00e9 \"quoted\""}]"#,
    ),
    ("quality_score", "1e-3"),
    ("is_test", "false"),
];

pub(crate) fn fill_routing(g: &mut SimGeneration, d: &mut IdDice, model: &Model) {
    let provider = d.pick(model.providers);
    g.provider_name = some(provider);
    g.api_type = some(model.api_type);
    g.router = d.percent(10).then(|| "openrouter/auto".to_owned());
    let tag = d.next_u64();
    g.upstream_id = match provider {
        "Anthropic" => Some(text("msg_01", |t| push_hex(t, tag, 16))),
        _ if d.percent(5) => None,
        _ => Some(text("chatcmpl-", |t| push_hex(t, tag, 16))),
    };
    g.external_user = d
        .percent(20)
        .then(|| text("user-", |t| push_dec(t, d.below(500), 0)));
    fill_request_ids(g, d);
    g.preset_id = d.percent(5).then(|| "@preset/summariser".to_owned());
    g.app_id = d.percent(40).then(|| d.range(1_000, 2_000_000) as i64);
    g.web_search_engine = d.percent(5).then(|| d.pick(&["exa", "native"]).to_owned());
    g.service_tier = d.percent(30).then(|| {
        d.pick(&["default", "standard", "priority", "flex"])
            .to_owned()
    });
    fill_caller(g, d);
}

/// Session, request and workspace IDs, all drawn from the same two numbers.
fn fill_request_ids(g: &mut SimGeneration, d: &mut IdDice) {
    let (a, b) = (d.next_u64(), d.next_u64());
    if !g.absent.session_id && d.percent(50) {
        g.session_id = Some(text("sess-", |t| push_hex(t, a >> 16, 12)));
    }
    if !g.absent.request_id && d.percent(70) {
        g.request_id = Some(text("req-", |t| {
            push_hex(t, a, 16);
            push_hex(t, b >> 48, 4);
        }));
    }
    g.workspace_id = d.percent(60).then(|| {
        // A version-4 UUID: 8-4-4-4-12 hex digits.
        text("", |t| {
            push_hex(t, a >> 32, 8);
            t.push('-');
            push_hex(t, a >> 16 & 0xffff, 4);
            t.push_str("-4");
            push_hex(t, a & 0xfff, 3);
            t.push_str("-a");
            push_hex(t, b >> 52, 3);
            t.push('-');
            push_hex(t, b & 0xffff_ffff_ffff, 12);
        })
    });
}

/// The calling app's referer and user agent; some need escaping or are not
/// ASCII, as a real caller's may.
fn fill_caller(g: &mut SimGeneration, d: &mut IdDice) {
    g.http_referer = d.percent(50).then(|| {
        (d.pick(&[
            "https://example-app.dev/",
            "https://例え.jp/チャット?q=1",
            "http://localhost:3000/",
        ]))
        .to_owned()
    });
    g.user_agent = d.percent(80).then(|| {
        (d.pick(&[
            "python-httpx/0.28.1",
            "OpenAI/Python 1.99.1",
            "Mozilla/5.0 (X11; Linux x86_64) \"quoted\" \\ agent",
            "genledger-test/0.1",
        ]))
        .to_owned()
    });
}

pub(crate) fn fill_usage(
    g: &mut SimGeneration,
    d: &mut IdDice,
    model: &Model,
    t: &Tokens,
    money: Money,
) {
    let count = |n: u64| Some(n as i64);
    g.tokens_prompt = count(t.prompt);
    g.tokens_completion = count(t.completion);
    g.native_tokens_prompt = count(t.native_prompt);
    g.native_tokens_completion = count(t.native_completion);
    g.native_tokens_completion_images = if d.percent(30) { None } else { count(t.images) };
    g.native_tokens_reasoning = if model.reasoning || d.percent(50) {
        count(t.reasoning)
    } else {
        None
    };
    g.native_tokens_cached = if t.cached > 0 || d.percent(50) {
        count(t.cached)
    } else {
        None
    };
    let mut often_null = |value: u64| if d.percent(40) { None } else { count(value) };
    g.num_media_prompt = often_null(u64::from(t.images > 0));
    g.num_input_audio_prompt = often_null(0);
    g.num_media_completion = often_null(0);
    let searched = g.web_search_engine.is_some();
    g.num_search_results = often_null(if searched { 5 } else { 0 });
    g.num_fetches = often_null(0);
    g.upstream_inference_cost = money.upstream;
    g.cache_discount = money.discount;
    if money.cache_hit && !g.absent.response_cache_source_id {
        let (second, tag) = (1_760_000_000 + d.below(5_000_000), d.next_u64());
        g.response_cache_source_id = Some(text("gen-", |t| {
            push_dec(t, second, 0);
            t.push_str("-cache");
            push_hex(t, tag, 16);
        }));
    }
}

pub(crate) fn fill_timing(g: &mut SimGeneration, d: &mut IdDice, t: &Tokens) {
    let mut millis = |lo: u64, hi: u64| {
        let whole = d.range(lo, hi) as f64;
        if d.percent(20) { whole + 0.5 } else { whole }
    };
    let latency = millis(150, 4_000);
    let generation_time = latency + (t.completion / 40) as f64 + millis(0, 200).floor();
    g.latency = Some(latency);
    g.generation_time = Some(generation_time);
    g.moderation_latency = d.percent(20).then(|| d.range(20, 300) as f64);
    g.streamed = Some(d.percent(60));
    g.cancelled = Some(d.percent(2));
    let (finish, natives) = d.pick(FINISH);
    g.finish_reason = some(finish);
    g.native_finish_reason = some(d.pick(natives));
}

pub(crate) fn fill_extras(g: &mut SimGeneration, d: &mut IdDice, model: &Model) {
    if d.percent(70) {
        let mut text = String::with_capacity(256);
        text.push('[');
        if d.percent(15) {
            let status = d.pick(&[429, 502, 503]);
            provider_response(&mut text, d, model, status);
            text.push(',');
        }
        provider_response(&mut text, d, model, 200);
        text.push(']');
        g.provider_responses = Some(text);
    }
    if d.percent(50) {
        let start = d.below(UNKNOWN.len() as u64) as usize;
        let take = 1 + d.below(2) as usize;
        g.unknown = UNKNOWN
            .iter()
            .cycle()
            .skip(start)
            .take(take)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    }
}

fn provider_response(out: &mut String, d: &mut IdDice, model: &Model, status: i64) {
    let mut obj = Obj::open(out);
    obj.plain_str("id", |v| {
        v.push_str("gen-attempt-");
        push_hex(v, d.next_u64() >> 16, 12);
    });
    obj.plain_str("endpoint_id", |v| push_hex(v, d.next_u64(), 16));
    obj.plain_str("model_permaslug", |v| {
        v.push_str(model.slug);
        v.push_str("-2025");
        push_dec(v, 1 + d.below(12), 2);
        push_dec(v, 1 + d.below(28), 2);
    });
    obj.str("provider_name", d.pick(model.providers));
    obj.opt_i64("status", Some(status));
    obj.opt_i64("latency", Some(d.range(80, 3_000) as i64));
    obj.opt_bool("is_byok", Some(false));
    obj.close();
}
