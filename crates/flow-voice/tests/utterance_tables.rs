//! Accuracy on the utterance tables: the main tables must stay at 98 % or
//! better; the held-out tables (written before tuning) measure how well the
//! parser generalises to phrasings it was not tuned on.

mod common;

fn report(name: &str, bar: f64) -> bool {
    let (ok, total, failures) = common::score(name);
    let pct = 100.0 * ok as f64 / total as f64;
    eprintln!("{name}: {ok}/{total} exact ({pct:.1}%)");
    for f in &failures {
        eprintln!("{f}");
    }
    pct >= bar
}

#[test]
fn utterance_tables() {
    let en = report("en.tsv", 98.0);
    let da = report("da.tsv", 98.0);
    assert!(en && da, "accuracy below 98 % (see failures above)");
}

#[test]
fn heldout_tables() {
    let en = report("heldout_en.tsv", 85.0);
    let da = report("heldout_da.tsv", 85.0);
    assert!(
        en && da,
        "held-out accuracy below 85 % (see failures above)"
    );
}

#[test]
fn tables_are_big_enough() {
    assert!(common::load_table("en.tsv").len() >= 300);
    assert!(common::load_table("da.tsv").len() >= 300);
}
