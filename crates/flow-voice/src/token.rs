//! One word of an utterance: the type the tokenizer makes and the entity readers take,
//! kept apart from both so that neither depends on the other through it.

/// One word of the utterance, normalised for matching but remembering how it was written.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    /// Lower-case, accent-folded, ASCII fallbacks resolved: what matching uses.
    pub norm: String,
    /// Original spelling without surrounding punctuation: what names are built from.
    pub raw: String,
    /// Byte offset of the token in the original text, for slicing descriptions.
    pub start: usize,
    /// First letter written in upper case.
    pub capitalized: bool,
    /// A comma, semicolon, colon, `!` or `?` followed the token: a name never spans it.
    pub clause_end: bool,
    /// A colon followed the token: what comes next is free text.
    pub colon: bool,
    /// Written with a possessive `'s` (or trailing `'`), which was stripped.
    pub possessive: bool,
}
