//! Shared helpers for the utterance-table tests and the benchmark.

#![allow(dead_code)]

use chrono::{DateTime, FixedOffset};
use flow_voice::{parse, ParseContext, Parsed};
use serde_json::{json, Value};

/// Wednesday 2026-11-18 09:00 in Copenhagen winter time: every table date is relative to it.
pub fn reference_now() -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339("2026-11-18T09:00:00+01:00").unwrap()
}

/// `(utterance, expected)` rows of a table file under `tests/utterances/`.
pub fn load_table(name: &str) -> Vec<(String, Value)> {
    let path = format!("{}/tests/utterances/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (utterance, expected) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("no tab: {line}"));
            let expected = serde_json::from_str(expected).unwrap_or_else(|e| panic!("{line}: {e}"));
            (utterance.to_string(), expected)
        })
        .collect()
}

/// The parse result in the table's format.
pub fn as_table_value(parsed: &Parsed) -> Value {
    match parsed {
        Parsed::Command(c) => json!({"command": c.command.as_str(), "parameters": c.parameters}),
        Parsed::Clarify(_) => json!({"clarify": true}),
    }
}

/// Exact-match accuracy of one table: (correct, total, failure descriptions).
pub fn score(name: &str) -> (usize, usize, Vec<String>) {
    let ctx = ParseContext::new(reference_now());
    let rows = load_table(name);
    let mut failures = Vec::new();
    for (utterance, expected) in &rows {
        let actual = as_table_value(&parse(utterance, &ctx));
        if &actual != expected {
            failures.push(format!(
                "  {utterance}\n    expected {expected}\n    actual   {actual}"
            ));
        }
    }
    (rows.len() - failures.len(), rows.len(), failures)
}
