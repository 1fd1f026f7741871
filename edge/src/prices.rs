//! What a model call costs: US dollars per million tokens for input, output, cache reads and
//! cache writes, by model-name prefix. Defaults for current Anthropic, OpenAI and Google models
//! are built in; `[prices."prefix"]` tables in `.horde/config.toml` add or override entries.
//! The longest matching prefix wins, config before defaults at equal length. A model no entry
//! matches costs nothing and is said to have no price: a cost is never guessed.
//!
//! Dollars per million tokens are micro-dollars per token, so a cost is a sum of products in
//! the unit `AgentDecision.cost_micro_usd` uses.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A model's list price, US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Input tokens read from the prompt cache (default: the input price).
    pub cache_read: Option<f64>,
    /// Input tokens written to the prompt cache (default: the input price).
    pub cache_write: Option<f64>,
}

impl Price {
    const fn new(input: f64, output: f64, cache_read: f64, cache_write: f64) -> Self {
        Self {
            input,
            output,
            cache_read: Some(cache_read),
            cache_write: Some(cache_write),
        }
    }

    /// Why this price cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        let all = [
            Some(self.input),
            Some(self.output),
            self.cache_read,
            self.cache_write,
        ];
        if all
            .iter()
            .flatten()
            .all(|p| p.is_finite() && (0.0..=MAX_PRICE).contains(p))
        {
            Ok(())
        } else {
            Err(format!(
                "prices are US dollars per million tokens, between 0 and {MAX_PRICE}"
            ))
        }
    }
}

/// A price above this (dollars per million tokens) is taken for a mistake in the config.
pub const MAX_PRICE: f64 = 100_000.0;

/// Token counts of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Input tokens not read from a cache.
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

/// Built-in list prices (USD per million tokens; cache writes at Anthropic's 5-minute rate).
/// Prefixes are matched against the model name as the agent reports it.
pub const DEFAULTS: &[(&str, Price)] = &[
    // Anthropic
    ("claude-opus-4-0", Price::new(15.0, 75.0, 1.5, 18.75)),
    ("claude-opus-4-1", Price::new(15.0, 75.0, 1.5, 18.75)),
    ("claude-opus-4-2025", Price::new(15.0, 75.0, 1.5, 18.75)),
    ("claude-opus", Price::new(5.0, 25.0, 0.5, 6.25)),
    ("claude-sonnet", Price::new(3.0, 15.0, 0.3, 3.75)),
    ("claude-3-5-haiku", Price::new(0.8, 4.0, 0.08, 1.0)),
    ("claude-haiku", Price::new(1.0, 5.0, 0.1, 1.25)),
    // OpenAI (cached input is the cache read; there is no cache-write charge)
    ("gpt-5-nano", Price::new(0.05, 0.4, 0.005, 0.05)),
    ("gpt-5-mini", Price::new(0.25, 2.0, 0.025, 0.25)),
    ("gpt-5-pro", Price::new(15.0, 120.0, 15.0, 15.0)),
    ("gpt-5", Price::new(1.25, 10.0, 0.125, 1.25)),
    ("gpt-5.2", Price::new(1.75, 14.0, 0.175, 1.75)),
    // Google (prompts up to 200k tokens)
    ("gemini-2.5-pro", Price::new(1.25, 10.0, 0.125, 1.25)),
    ("gemini-2.5-flash-lite", Price::new(0.1, 0.4, 0.01, 0.1)),
    ("gemini-2.5-flash", Price::new(0.3, 2.5, 0.03, 0.3)),
    ("gemini-3-pro", Price::new(2.0, 12.0, 0.2, 2.0)),
    ("gemini-3-flash", Price::new(0.5, 3.0, 0.05, 0.5)),
];

/// The price of `model`: (the entry's name, its price), or None when nothing matches.
pub fn lookup(config: &BTreeMap<String, Price>, model: &str) -> Option<(String, Price)> {
    let own = config
        .iter()
        .filter(|(p, _)| model.starts_with(p.as_str()))
        .max_by_key(|(p, _)| p.len())
        .map(|(p, price)| (format!("config: {p}"), p.len(), *price));
    let default = DEFAULTS
        .iter()
        .filter(|(p, _)| model.starts_with(p))
        .max_by_key(|(p, _)| p.len())
        .map(|(p, price)| (format!("default: {p}"), p.len(), *price));
    match (own, default) {
        (Some(o), Some(d)) if d.1 > o.1 => Some((d.0, d.2)),
        (Some(o), _) => Some((o.0, o.2)),
        (None, d) => d.map(|(n, _, p)| (n, p)),
    }
}

/// The cost of `tokens` at `price`, in micro-dollars (rounded to the nearest).
pub fn cost_micro_usd(price: &Price, tokens: &Tokens) -> u64 {
    let t = |n: u64| n as f64;
    let c = t(tokens.input) * price.input
        + t(tokens.output) * price.output
        + t(tokens.cache_read) * price.cache_read.unwrap_or(price.input)
        + t(tokens.cache_write) * price.cache_write.unwrap_or(price.input);
    debug_assert!(c.is_finite() && c >= 0.0);
    c.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_wins_and_config_overrides_defaults() {
        let none = BTreeMap::new();
        let (name, p) = lookup(&none, "claude-opus-4-1-20250805").expect("priced");
        assert_eq!((name.as_str(), p.input), ("default: claude-opus-4-1", 15.0));
        let (name, p) = lookup(&none, "claude-opus-5-5").expect("priced");
        assert_eq!((name.as_str(), p.output), ("default: claude-opus", 25.0));
        assert_eq!(
            lookup(&none, "gemini-2.5-flash-lite").expect("p").0,
            "default: gemini-2.5-flash-lite"
        );
        assert!(lookup(&none, "llama-3").is_none(), "no guess");

        let mut own = BTreeMap::new();
        own.insert("claude-opus".to_owned(), Price::new(1.0, 2.0, 0.0, 0.0));
        let (name, p) = lookup(&own, "claude-opus-5-5").expect("priced");
        assert_eq!((name.as_str(), p.input), ("config: claude-opus", 1.0));
        // A longer default entry is more specific than a shorter config one.
        assert_eq!(
            lookup(&own, "claude-opus-4-1").expect("p").0,
            "default: claude-opus-4-1"
        );
    }

    #[test]
    fn cost_is_micro_dollars_per_token_times_dollars_per_million() {
        let p = Price::new(5.0, 25.0, 0.5, 6.25);
        let t = Tokens {
            input: 1000,
            output: 100,
            cache_read: 10_000,
            cache_write: 200,
        };
        // 5000 + 2500 + 5000 + 1250 micro-dollars.
        assert_eq!(cost_micro_usd(&p, &t), 13_750);
        let bare = Price {
            input: 2.0,
            output: 0.0,
            cache_read: None,
            cache_write: None,
        };
        assert_eq!(
            cost_micro_usd(
                &bare,
                &Tokens {
                    cache_read: 3,
                    ..Default::default()
                }
            ),
            6
        );
        assert!(Price::new(-1.0, 0.0, 0.0, 0.0).check().is_err());
        assert!(Price::new(f64::NAN, 0.0, 0.0, 0.0).check().is_err());
        assert!(p.check().is_ok());
    }
}
