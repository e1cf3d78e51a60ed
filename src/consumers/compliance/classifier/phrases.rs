//! Phrase indexes over the lexicon: each list of multi-word phrases compiled once into a lookup
//! by first word, so that a message is matched against every phrase in one pass.

use super::lexicon::*;

/// Every phrase of every list [`Message::occurrences`](super::Message::occurrences) searches.
pub(super) fn all_phrases() -> impl Iterator<Item = &'static str> {
    REVOCATIONS
        .iter()
        .chain(SHORT_REVOCATIONS)
        .map(|r| r.words)
        .chain(VERBS.iter().map(|v| v.words))
        .chain(
            COMPLAINTS
                .iter()
                .chain(WRONG_PARTY)
                .chain(DECLINES)
                .map(|s| s.0),
        )
        .chain(TEXT_WELCOME.iter().chain(CALL_WELCOME).copied())
}

/// The words of every phrase, numbered: a message's words are looked up once, and phrases
/// are then matched by number.
pub(super) static VOCABULARY: std::sync::LazyLock<std::collections::HashMap<&'static str, u16>> =
    std::sync::LazyLock::new(|| {
        let mut vocabulary = std::collections::HashMap::new();
        for word in all_phrases().flat_map(|p| p.split(' ')) {
            let next = u16::try_from(vocabulary.len()).unwrap_or(u16::MAX);
            vocabulary.entry(word).or_insert(next);
        }
        vocabulary
    });

/// A phrase list indexed by first word. Matching every phrase at every position made
/// `classify` cost ~9 µs on a one-line text (most of it comparing words of phrases that could
/// not occur); a message is now matched only against the phrases whose first word it contains,
/// word numbers against word numbers. Occurrences come out in the order the nested loop "for
/// each phrase in list order, for each position" gives, which rules relying on "the first
/// found among equals" need.
pub(super) struct Phrases {
    /// Each phrase split into words, in list order.
    pub(super) words: Vec<Vec<&'static str>>,
    /// The same, as [`VOCABULARY`] numbers.
    pub(super) ids: Vec<Vec<u16>>,
    /// For each word number, the phrases starting with it, in list order.
    pub(super) by_first: Vec<Vec<usize>>,
}

impl Phrases {
    pub(super) fn new(phrases: impl Iterator<Item = &'static str>) -> Phrases {
        let words: Vec<Vec<&'static str>> = phrases.map(|p| p.split(' ').collect()).collect();
        // Every word is in the vocabulary, which is made of these very lists (a test compares
        // the index with a plain scan); a missing one could only fail to match.
        let ids: Vec<Vec<u16>> = words
            .iter()
            .map(|p| {
                p.iter()
                    .map(|w| VOCABULARY.get(w).copied().unwrap_or(u16::MAX))
                    .collect()
            })
            .collect();
        let mut by_first = vec![Vec::new(); VOCABULARY.len()];
        for (k, p) in ids.iter().enumerate() {
            if let Some(list) = by_first.get_mut(usize::from(p[0])) {
                list.push(k);
            }
        }
        Phrases {
            words,
            ids,
            by_first,
        }
    }

    /// Number of words of phrase `k`.
    pub(super) fn len_of(&self, k: usize) -> usize {
        self.words[k].len()
    }
}

pub(super) type Index = std::sync::LazyLock<Phrases>;

pub(super) static REVOCATION_PHRASES: Index =
    Index::new(|| Phrases::new(REVOCATIONS.iter().map(|r| r.words)));
pub(super) static SHORT_REVOCATION_PHRASES: Index =
    Index::new(|| Phrases::new(SHORT_REVOCATIONS.iter().map(|r| r.words)));
pub(super) static VERB_PHRASES: Index = Index::new(|| Phrases::new(VERBS.iter().map(|v| v.words)));
/// Complaints then wrong-party replies, one list as rule 4 reads them.
pub(super) static SIGNAL_PHRASES: Index =
    Index::new(|| Phrases::new(COMPLAINTS.iter().chain(WRONG_PARTY).map(|s| s.0)));
pub(super) static DECLINE_PHRASES: Index =
    Index::new(|| Phrases::new(DECLINES.iter().map(|s| s.0)));
pub(super) static TEXT_WELCOME_PHRASES: Index =
    Index::new(|| Phrases::new(TEXT_WELCOME.iter().copied()));
pub(super) static CALL_WELCOME_PHRASES: Index =
    Index::new(|| Phrases::new(CALL_WELCOME.iter().copied()));
