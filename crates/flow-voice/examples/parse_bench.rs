//! Parse latency over both utterance tables.
//!
//! `cargo run --release -p flow-voice --example parse_bench [rounds]`

use std::time::Instant;

use chrono::DateTime;
use flow_voice::{parse, ParseContext};

fn load(name: &str) -> Vec<String> {
    let path = format!("{}/tests/utterances/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(u, _)| u.to_string()))
        .collect()
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let now = DateTime::parse_from_rfc3339("2026-11-18T09:00:00+01:00").unwrap();
    let ctx = ParseContext::new(now);
    let utterances: Vec<String> = ["en.tsv", "da.tsv"].iter().flat_map(|n| load(n)).collect();
    for u in &utterances {
        std::hint::black_box(parse(u, &ctx));
    }
    let mut samples = Vec::with_capacity(utterances.len() * rounds);
    for _ in 0..rounds {
        for u in &utterances {
            let t = Instant::now();
            std::hint::black_box(parse(std::hint::black_box(u), &ctx));
            samples.push(t.elapsed().as_nanos() as f64 / 1000.0);
        }
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    println!(
        "{} utterances x {rounds} rounds: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        utterances.len(),
        pct(0.50),
        pct(0.99),
        samples[samples.len() - 1]
    );
}
