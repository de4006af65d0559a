//! The simulated price list: models with per-token prices, token draws and money texts.

use super::dice::IdDice;
use super::json::{push_dec, text};

/// Picodollars per dollar: prices and costs stay integers until they are printed.
const PICO: u64 = 1_000_000_000_000;
/// A model the simulator bills for; prices are USD per token × 10^12.
pub(crate) struct Model {
    pub(crate) slug: &'static str,
    pub(crate) providers: &'static [&'static str],
    pub(crate) prompt_pico: u64,
    pub(crate) completion_pico: u64,
    pub(crate) api_type: &'static str,
    pub(crate) reasoning: bool,
}

const fn model(
    slug: &'static str,
    providers: &'static [&'static str],
    prompt_pico: u64,
    completion_pico: u64,
    reasoning: bool,
) -> Model {
    Model {
        slug,
        providers,
        prompt_pico,
        completion_pico,
        api_type: "completions",
        reasoning,
    }
}

pub(crate) const MODELS: &[Model] = &[
    model(
        "openai/gpt-4o-mini",
        &["OpenAI", "Azure"],
        150_000,
        600_000,
        false,
    ),
    model(
        "openai/gpt-4o",
        &["OpenAI", "Azure"],
        2_500_000,
        10_000_000,
        false,
    ),
    model("openai/gpt-5-mini", &["OpenAI"], 250_000, 2_000_000, true),
    Model {
        api_type: "embeddings",
        ..model(
            "openai/text-embedding-3-small",
            &["OpenAI"],
            20_000,
            0,
            false,
        )
    },
    model(
        "anthropic/claude-sonnet-4.5",
        &["Anthropic", "Amazon Bedrock", "Google"],
        3_000_000,
        15_000_000,
        true,
    ),
    model(
        "anthropic/claude-haiku-4.5",
        &["Anthropic", "Amazon Bedrock"],
        1_000_000,
        5_000_000,
        false,
    ),
    model(
        "google/gemini-2.5-flash",
        &["Google AI Studio", "Google"],
        300_000,
        2_500_000,
        true,
    ),
    model(
        "google/gemini-2.5-pro",
        &["Google AI Studio", "Google"],
        1_250_000,
        10_000_000,
        true,
    ),
    model(
        "meta-llama/llama-3.3-70b-instruct",
        &["DeepInfra", "Together", "Groq", "Fireworks"],
        130_000,
        400_000,
        false,
    ),
    model(
        "deepseek/deepseek-chat",
        &["DeepSeek", "DeepInfra", "Chutes"],
        300_000,
        1_200_000,
        false,
    ),
    model(
        "deepseek/deepseek-r1",
        &["DeepSeek", "Together"],
        550_000,
        2_190_000,
        true,
    ),
    model(
        "mistralai/mistral-small",
        &["Mistral"],
        75_000,
        200_000,
        false,
    ),
    model(
        "qwen/qwen3-235b-a22b-2507",
        &["Alibaba", "Cerebras", "DeepInfra"],
        130_000,
        600_000,
        false,
    ),
    model("x-ai/grok-4-fast", &["xAI"], 200_000, 500_000, true),
];

/// Money texts that stress number parsing, chosen for about 1% of IDs each.
const ODD_MONEY: &[&str] = &[
    "0.30000000000000004",
    "3e-7",
    "1.2345678901234567",
    "0",
    "2.5E-5",
];

/// Token counts drawn once per ID; costs are computed from them even when they are not shown.
pub(crate) struct Tokens {
    pub(crate) prompt: u64,
    pub(crate) completion: u64,
    pub(crate) reasoning: u64,
    pub(crate) cached: u64,
    pub(crate) native_prompt: u64,
    pub(crate) native_completion: u64,
    pub(crate) images: u64,
}

impl Tokens {
    pub(crate) fn draw(d: &mut IdDice, model: &Model) -> Self {
        let prompt = match d.below(4) {
            0 => d.range(1, 100),
            1 => d.range(100, 2_000),
            2 => d.range(2_000, 20_000),
            _ => d.range(20_000, 120_000),
        };
        let embeddings = model.api_type == "embeddings";
        let completion = if embeddings { 0 } else { d.range(0, 4_000) };
        let reasoning = if model.reasoning && d.percent(60) {
            d.range(0, 8_000)
        } else {
            0
        };
        let cached = if d.percent(25) {
            prompt * d.below(90) / 100
        } else {
            0
        };
        let images = if !embeddings && d.percent(2) {
            d.range(1, 4) * 1_290
        } else {
            0
        };
        // Providers count with their own tokenizers, a few percent off the normalised counts.
        let native_prompt = prompt + prompt * d.below(8) / 100;
        let native_completion = completion + completion * d.below(8) / 100 + reasoning;
        Self {
            prompt,
            completion,
            reasoning,
            cached,
            native_prompt,
            native_completion,
            images,
        }
    }
}

/// The four money fields as JSON number texts.
pub(crate) struct Money {
    pub(crate) total: String,
    pub(crate) upstream: Option<String>,
    pub(crate) discount: Option<String>,
    pub(crate) cache_hit: bool,
}

impl Money {
    pub(crate) fn draw(d: &mut IdDice, t: &Tokens, model: &Model, is_byok: bool) -> Self {
        let gross = t.native_prompt * model.prompt_pico
            + (t.native_completion + t.images) * model.completion_pico;
        // cached <= prompt <= native_prompt, so the discount never exceeds the gross cost.
        let discount = t.cached * model.prompt_pico / 4 * 3;
        let charged = gross - discount;
        let odd = d.below(100) as usize;
        let total = match ODD_MONEY.get(odd) {
            Some(text) => (*text).to_owned(),
            // BYOK pays OpenRouter a 5% fee; the provider bills the rest directly.
            None if is_byok => pico_text(charged / 20),
            None => pico_text(charged),
        };
        let upstream = if is_byok {
            Some(pico_text(charged))
        } else {
            d.percent(50).then(|| "0".to_owned())
        };
        let discount = if discount > 0 {
            // Cache writes are billed extra by some providers: a negative discount.
            let sign = if d.percent(20) { "-" } else { "" };
            let mut text = pico_text(discount);
            text.insert_str(0, sign);
            Some(text)
        } else {
            d.percent(30).then(|| "0".to_owned())
        };
        Self {
            total,
            upstream,
            discount,
            cache_hit: ODD_MONEY.get(odd) == Some(&"0"),
        }
    }
}

/// Prints picodollars as a plain decimal without trailing zeros: `0.00015`, `2`.
pub(crate) fn pico_text(pico: u64) -> String {
    let (whole, frac) = (pico / PICO, pico % PICO);
    text("", |t| {
        push_dec(t, whole, 0);
        if frac != 0 {
            t.push('.');
            push_dec(t, frac, 12);
            let kept = t.trim_end_matches('0').len();
            t.truncate(kept);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pico_text_is_a_plain_trimmed_decimal() {
        assert_eq!(pico_text(0), "0");
        assert_eq!(pico_text(150_000_000), "0.00015");
        assert_eq!(pico_text(2 * PICO), "2");
        assert_eq!(pico_text(PICO + 1), "1.000000000001");
    }

    #[test]
    fn byok_total_is_the_fee_and_upstream_the_provider_charge() {
        let model = &MODELS[0];
        for i in 0..2_000 {
            let mut d = IdDice::new(&format!("byok-{i}"), 3);
            let tokens = Tokens::draw(&mut d, model);
            let money = Money::draw(&mut d, &tokens, model, true);
            let upstream = money.upstream.expect("byok has an upstream cost");
            assert!(upstream.parse::<f64>().is_ok());
            if !ODD_MONEY.contains(&money.total.as_str()) {
                let total: f64 = money.total.parse().expect("decimal");
                let upstream: f64 = upstream.parse().expect("decimal");
                assert!(
                    (total - upstream / 20.0).abs() < 1e-11,
                    "{total} {upstream}"
                );
            }
        }
    }
}
