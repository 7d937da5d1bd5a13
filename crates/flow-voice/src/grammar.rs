//! JSGF grammar for PocketSphinx keyword-constrained recognition (English).
//!
//! A closed grammar makes offline recognition far more accurate than free
//! dictation, at the price of only hearing these phrasings; names come from
//! the caller's CRM so the recogniser can hear them.

use std::collections::BTreeSet;

const RULES: &str = "\
<status> = new | contacted | qualified | converted | won | lost;
<period> = today | yesterday | this week | last week | this month;
<polite> = please | could you | can you;
<show_leads> = [<polite>] (show | list) [me] [the | all] [<status>] leads [<period>];
<create_lead> = [<polite>] (create | add) a [new] lead for <name>;
<mark_lead> = [<polite>] mark <name> as <status>;
<assign_lead> = [<polite>] assign <name> to <name>;
<count_leads> = how many [<status>] leads [do we have] [<period>];
<summary> = give me a summary | give me an overview;
<help> = help | what can you do;
<search_contacts> = [<polite>] search contacts for <name>;
<log_activity> = [<polite>] log a (call | note | meeting) with <name>;
<meeting> = [<polite>] book a meeting with <name> (today | tomorrow) [at <hour>];
<hour> = one | two | three | four | five | six | seven | eight | nine | ten | eleven | twelve;
";

/// A JSGF grammar covering the English command phrasings, with `<name>` drawn from `names`.
pub fn jsgf_grammar(names: &[String]) -> String {
    let mut out = String::from("#JSGF V1.0;\n\ngrammar flow;\n\n");
    out.push_str(
        "public <command> = <show_leads> | <create_lead> | <mark_lead> | <assign_lead> | <count_leads> \
         | <summary> | <help> | <search_contacts> | <log_activity> | <meeting>;\n\n",
    );
    out.push_str(RULES);
    out.push_str(&format!("<name> = {};\n", name_alternatives(names)));
    out
}

/// Names as lower-case letter-only words; `<NULL>` when there are none, so the grammar stays
/// valid (PocketSphinx recognises nothing at all once a grammar contains `<VOID>`).
fn name_alternatives(names: &[String]) -> String {
    let cleaned: BTreeSet<String> = names
        .iter()
        .map(|n| {
            n.to_lowercase()
                .split(|c: char| !c.is_alphabetic())
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|n| !n.is_empty())
        .collect();
    if cleaned.is_empty() {
        return "<NULL>".to_string();
    }
    cleaned.into_iter().collect::<Vec<_>>().join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_is_plausible_jsgf() {
        let g = jsgf_grammar(&["John Smith".into(), "Anna-Marie O'Neil".into(), "  ".into()]);
        assert!(g.starts_with("#JSGF V1.0;"));
        assert!(g.contains("public <command> ="));
        assert!(g.contains("<name> = anna marie o neil | john smith;"));
        for line in g
            .lines()
            .filter(|l| l.starts_with('<') || l.starts_with("public"))
        {
            assert!(line.ends_with(';'), "rule not terminated: {line}");
            assert_eq!(line.matches('(').count(), line.matches(')').count());
            assert_eq!(line.matches('[').count(), line.matches(']').count());
        }
        for rule in [
            "<show_leads>",
            "<create_lead>",
            "<mark_lead>",
            "<count_leads>",
            "<help>",
            "<search_contacts>",
            "<log_activity>",
        ] {
            assert!(g.contains(&format!("{rule} =")), "missing {rule}");
        }
    }

    #[test]
    fn empty_names_keep_grammar_valid() {
        assert!(jsgf_grammar(&[]).contains("<name> = <NULL>;"));
    }
}
