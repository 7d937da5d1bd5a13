//! Parse utterances from stdin, one per line, and print the result as JSON.
//!
//! `echo "vis nye leads" | cargo run -p flow-voice --example parse_cli`

use std::io::BufRead;

use chrono::Local;
use flow_voice::{parse, ParseContext};

fn main() {
    let now = std::env::var("FLOW_VOICE_NOW")
        .ok()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
        .unwrap_or_else(|| Local::now().fixed_offset());
    let ctx = ParseContext::new(now);
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let parsed = parse(&line, &ctx);
        println!(
            "{line}\n  {}",
            serde_json::to_string(&parsed).unwrap_or_default()
        );
    }
}
