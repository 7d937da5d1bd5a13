//! Word lists shared by the tokenizer, entity extractors and command rules.
//!
//! Anything in the vocabulary is never taken for part of a name, which is what
//! lets lower-case speech-to-text output ("assign john smith to peter") be
//! split into names without capital letters to go on.

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::entities::{dates, numbers};
use crate::Status;

const ENGLISH: &str = "a an the and or but to of for from with at in on by about into over as is are was were be been being am
has have had do does did done can could would will should may might must not no yes yeah i me my mine myself we us our ours
you your yours he him his she her hers it its they them their this that these those there here what whats which who whom whose
where when why how many much any some all every each more most less few other another newest latest recent last next first top
just only also please thanks thank okay ok hey hello hi so well um uh umm er erm hmm again now right then than too very really
up down out off back get got give gave show list display see view let lets open pull check tell find search look lookup locate
create add make register set mark change update move flag assign reassign transfer hand allocate log record note notes write
call called calls calling phone email emailed emails mail mailed e-mail meeting meetings meet appointment appointments book
schedule arrange plan organize organise help commands command options understand know work works working say lead leads contact
contacts people person company name named details everything stats statistics summary overview report numbers count number
tonight morning afternoon evening noon midday day days week weeks month months hour hours minute minutes min mins half quarter
past o'clock am pm weekly daily monthly qualify win lose wants want needs need asked asks said says sent send spoke speak
talked talk interested follow came come coming went go doing sure since via new status regarding saying regards re detail
info information email-address address mobile cell telephone number's doing going i've i'd i'm we've recently in-person call-back
callback callbacks demo quote offer pricing price contract invoice renewal deal deals proposal deck like get's into plus
user users customer customers lead's dot underscore dash whole everybody everyone somebody someone anybody anyone list's
phone-call minute-long hour-long deadline sometime later soon earlier asap ago works worked working quick quickly short brief
belonging belongs enter sign switch phoned rang jot remind closed close take takes taken over discount";

const DANISH: &str = "en et og eller men til af fra med på om hos ved efter over under som er var være været har havde haft kan
kunne vil ville skal skulle må ikke ja nej jeg mig min mit mine vi os vores du dig din dit dine han ham hun hende hendes den
det de dem deres denne dette disse der her hvad hvilke hvilken hvilket hvem hvor hvornår hvordan mange meget nogen noget nogle
alle alt hver ny nye nyt nyeste seneste sidste næste første bare lige også venligst tak hej så nu igen vis vise viser se hent
hente åbn åbne tjek tjekke fortæl fortælle giv give lad find finde søg søge søger slå op led kig kigge opret oprette tilføj
tilføje lav lave registrer registrere sæt sætte marker markere ændr ændre opdater opdatere flyt flytte skift skifte tildel
tildele overdrag overdrage overfør overføre log logge noter note notat notatet skriv skrive ring ringe ringet ringede opkald
opkaldet telefonopkald mail mailet mailede mails sendt sendte sende møde møder mødet mødes aftale aftaler book booke planlæg
planlægge aftal indkald hjælp hjælpe kommandoer kommandoerne kommando muligheder forstår kender virker sige lead leads leadet
leadsene leadene emner emne kontakt kontakter kontakten kontakterne kontaktoplysninger folk person personer firma firmaet
virksomhed virksomheden navn navnet hedder status statussen detaljer detaljerne overblik overblikket oversigt oversigten
opsummering opsummeringen statistik statistikken tal tallene rapport rapporten ugerapport ugerapporten månedsoverblik
ugeoverblik dagsoverblik antal antallet tæl tælle dag dage dags dagens morgen morgenen morges overmorgen går gårsdagens aften
eftermiddag formiddag uge ugen ugens måned måneden månedens time timer timers minut minutter minutters kvart halv halvanden
klokken kl middag interesseret mangler ønsker spurgte sagde kom ind kommet blevet brug godt tidlig talt talte snakkede snakket
snakke tale gerne få fået fik fået ringes kontrakten tilbud tilbuddet demo pris prisen fornyelsen fakturaen faktura angående
vedrørende kigget alle telefon telefonnummer mobil mobilnummer tlf nummer nummeret mailadresse e-mailadresse snabel-a snabel
punktum bindestreg understreg stadig sat også endnu nogle kunde kunder bruger brugere hurtig hurtigt kort mødes tage handle
dig selv jer hvis skal ud ind sammen liste listen helt arbejder arbejde handle";

const FILLERS: &[&str] = &[
    "øh",
    "øhm",
    "øhh",
    "øhhh",
    "øm",
    "æh",
    "æhm",
    "hmm",
    "hm",
    "mm",
    "altså",
    "lige",
    "please",
    "pls",
    "plz",
    "um",
    "umm",
    "uh",
    "uhh",
    "uhm",
    "erm",
    "ehm",
    "eh",
    "ah",
    "just",
    "venligst",
    "tak",
    "thanks",
    "gerne",
    "bare",
    "kindly",
    "actually",
    "basically",
];

/// Phrases that only carry politeness when they open the utterance.
const LEADING_FILLERS: &[&[&str]] = &[
    &["could", "you", "please"],
    &["can", "you", "please"],
    &["would", "you", "please"],
    &["kan", "du", "ikke"],
    &["kunne", "du", "ikke"],
    &["i", "would", "like", "to"],
    &["i'd", "like", "to"],
    &["i", "want", "to"],
    &["i", "need", "to"],
    &["jeg", "vil", "gerne"],
    &["jeg", "vil"],
    &["jeg", "skal"],
    &["could", "you"],
    &["can", "you"],
    &["would", "you"],
    &["will", "you"],
    &["kan", "du"],
    &["kunne", "du"],
    &["vil", "du"],
    &["gider", "du"],
    &["hey", "flow"],
    &["hej", "flow"],
    &["okay"],
    &["ok"],
    &["hey"],
    &["hej"],
    &["hi"],
    &["hello"],
    &["so"],
    &["så"],
    &["well"],
    &["nå"],
    &["yes"],
    &["ja"],
];

/// Written-together forms that speech-to-text produces for two-word expressions.
const COMPOUNDS: &[(&str, &str, &str)] = &[
    ("idag", "i", "dag"),
    ("imorgen", "i", "morgen"),
    ("igår", "i", "går"),
    ("igaar", "i", "går"),
    ("iovermorgen", "i", "overmorgen"),
    ("iaften", "i", "aften"),
];

/// Words that are vocabulary in lower case but usually a name when capitalised mid-sentence.
const CAN_BE_NAME: &[&str] = &[
    "mark", "will", "may", "bill", "grace", "hope", "rose", "sky", "dag", "ben", "and", "else",
    "per",
];

static VOCAB: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    ENGLISH
        .split_whitespace()
        .chain(DANISH.split_whitespace())
        .collect()
});

/// Known non-name word in either language (number, date and status words included).
pub(crate) fn is_vocab(word: &str) -> bool {
    VOCAB.contains(word)
        || numbers::word_value(word).is_some()
        || dates::is_date_word(word)
        || Status::from_word(word).is_some()
        || crate::entities::source_of(word).is_some()
}

/// A vocabulary word that is a plausible first name when written with a capital letter.
pub(crate) fn can_be_name(word: &str) -> bool {
    CAN_BE_NAME.contains(&word)
}

/// Hesitation or politeness word that carries no meaning anywhere in the utterance.
pub(crate) fn is_filler(word: &str) -> bool {
    FILLERS.contains(&word)
}

/// Length of a politeness phrase opening the utterance, if any.
pub(crate) fn leading_filler_len(words: &[&str]) -> Option<usize> {
    LEADING_FILLERS
        .iter()
        .find(|phrase| words.len() >= phrase.len() && words[..phrase.len()] == phrase[..])
        .map(|phrase| phrase.len())
}

/// Split forms like "imorgen" into the two words the rules expect.
pub(crate) fn split_compound(word: &str) -> Option<(&'static str, &'static str)> {
    COMPOUNDS
        .iter()
        .find(|(whole, _, _)| *whole == word)
        .map(|(_, a, b)| (*a, *b))
}

/// Articles and determiners skipped when looking at the word before a name.
pub(crate) fn is_article(word: &str) -> bool {
    matches!(
        word,
        "a" | "an"
            | "the"
            | "en"
            | "et"
            | "det"
            | "den"
            | "de"
            | "my"
            | "our"
            | "min"
            | "mit"
            | "vores"
    )
}
