//! From a message body to tokens: NFKC, lowercase, Latin diacritics dropped, apostrophes,
//! hyphens and censoring asterisks inside a word deleted, spelled-out letters joined, and where
//! sentence punctuation was (see the normalisation section of [`super`]).

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token {
    pub(super) text: String,
    /// Sentence punctuation (`.`, `!`, `,`, a dash, a line break, ...) precedes this token.
    pub(super) brk: bool,
}

pub(super) fn tokenize(text: &str) -> Vec<Token> {
    // Before NFKD because ´ decomposes into a space and an accent; after it because NFKD
    // produces ʼ (`ŉ` → `ʼn`).
    let chars = if text.is_ascii() {
        ascii_chars(text)
    } else {
        unicode_chars(text)
    };

    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut brk = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || (!word.is_empty() && is_combining_mark(c)) {
            word.push(c);
            i += 1;
            continue;
        }
        if !word.is_empty() {
            let end = joiner_end(&chars, i);
            if end > i && chars.get(end).is_some_and(|n| n.is_alphanumeric()) {
                i = end;
                continue;
            }
            tokens.push(Token {
                text: std::mem::take(&mut word),
                brk,
            });
            brk = false;
        }
        brk |= is_break(c);
        i += 1;
    }
    if !word.is_empty() {
        tokens.push(Token { text: word, brk });
    }
    let mut tokens = fold_pairs(join_spelled(tokens));
    // Deleting an in-word joiner can put two combining marks side by side out of canonical
    // order; recompose so that `normalize` is idempotent.
    for t in tokens.iter_mut().filter(|t| !t.text.is_ascii()) {
        t.text = t.text.nfc().collect();
    }
    tokens
}

/// The characters of `text` folded for matching.
pub(super) fn unicode_chars(text: &str) -> Vec<char> {
    text.chars()
        .map(unify_apostrophe)
        .nfkd()
        .map(unify_apostrophe)
        .flat_map(char::to_lowercase)
        .filter(|&c| !is_latin_diacritic(c) && !is_ignorable(c))
        .nfc()
        .collect()
}

/// [`unicode_chars`] for the common all-ASCII text: NFKD and NFC leave ASCII as it is, and no
/// ASCII character is a diacritic or ignorable, so only the case and the backtick change. The
/// Unicode passes took a third of `classify`'s time on ordinary texts.
pub(super) fn ascii_chars(text: &str) -> Vec<char> {
    text.chars()
        .map(|c| unify_apostrophe(c.to_ascii_lowercase()))
        .collect()
}

pub(super) fn unify_apostrophe(c: char) -> char {
    match c {
        '\u{2018}' | '\u{2019}' | '\u{02BC}' | '\u{00B4}' | '`' | '\u{2032}' => '\'',
        c => c,
    }
}

/// Combining Diacritical Marks: dropping them folds `más` into `mas`, `número` into `numero`.
pub(super) fn is_latin_diacritic(c: char) -> bool {
    ('\u{0300}'..='\u{036F}').contains(&c)
}

/// Invisible characters deleted outright, so `st\u{200B}op` is `stop`.
pub(super) fn is_ignorable(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{FE00}'..='\u{FE0F}'
        | '\u{20D0}'..='\u{20FF}' | '\u{E0000}'..='\u{E007F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Where a run of in-word joiners starting at `i` ends (`i` if there is none): one apostrophe
/// or hyphen, or any number of censoring asterisks.
pub(super) fn joiner_end(chars: &[char], i: usize) -> usize {
    match chars[i] {
        '\'' | '-' | '\u{2010}' => i + 1,
        '*' => i + chars[i..].iter().take_while(|&&c| c == '*').count(),
        _ => i,
    }
}

pub(super) fn is_break(c: char) -> bool {
    matches!(
        c,
        '.' | '!'
            | '?'
            | ';'
            | ':'
            | ','
            | '\n'
            | '\r'
            | '¡'
            | '¿'
            | '-'
            | '/'
            | '|'
            | '('
            | ')'
            | '\u{2010}'..='\u{2015}' | '\u{3002}'
    )
}

/// Joins runs of three or more single ASCII letters: `s t o p` → `stop`.
pub(super) fn join_spelled(tokens: Vec<Token>) -> Vec<Token> {
    fn flush(out: &mut Vec<Token>, run: &mut Vec<Token>) {
        if run.len() >= 3 {
            let brk = run.first().is_some_and(|t| t.brk);
            let text = run.iter().map(|t| t.text.as_str()).collect();
            out.push(Token { text, brk });
            run.clear();
        } else {
            out.append(run);
        }
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut run = Vec::new();
    for token in tokens {
        let mut chars = token.text.chars();
        let single =
            matches!((chars.next(), chars.next()), (Some(c), None) if c.is_ascii_alphabetic());
        if single {
            run.push(token);
        } else {
            flush(&mut out, &mut run);
            out.push(token);
        }
    }
    flush(&mut out, &mut run);
    out
}

/// `opt out` → `optout`, `stop all` → `stopall`, `un subscribe` → `unsubscribe`.
pub(super) fn fold_pairs(tokens: Vec<Token>) -> Vec<Token> {
    const FOLDS: [(&str, &str, &str); 3] = [
        ("opt", "out", "optout"),
        ("stop", "all", "stopall"),
        ("un", "subscribe", "unsubscribe"),
    ];
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    for token in tokens {
        if let Some(prev) = out.last_mut() {
            if let Some((_, _, folded)) = FOLDS
                .iter()
                .find(|(a, b, _)| prev.text == *a && token.text == *b)
            {
                prev.text = (*folded).to_owned();
                continue;
            }
        }
        out.push(token);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Rules 3 to 5.
