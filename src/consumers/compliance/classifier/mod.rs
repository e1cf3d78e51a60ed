//! Inbound opt-out classifier: says whether one inbound SMS body revokes consent, re-subscribes,
//! asks for help, or is ordinary conversation.
//!
//! Pure: no I/O, no state, no clock. The gate stores the returned [`Intent`] (serialised) as
//! evidence on the suppression list, so every opt-out names the rule that fired in `reason`
//! (`keyword:stop`, `phrase:remove me`, `ambiguous:stop+negation`, ...).
//!
//! # Why more than the provider keyword match
//!
//! Twilio and Quo (OpenPhone) act only on a body that is exactly one keyword
//! (docs/reference/compliance.md#what-the-providers-do, docs/reference/twilio.md#opt-out). Since FCC 24-24
//! (47 CFR 64.1200(a)(10)) consent can be revoked by any reasonable means: any wording a
//! reasonable person reads as a revocation counts, typos and other languages included
//! (docs/reference/compliance.md#what-the-law-requires-beyond-keywords). Missing a revocation is a
//! TCPA violation per later text; suppressing by mistake costs one lead. So the classifier
//! fails closed: a message that is neither clearly benign nor clearly a revocation is an
//! opt-out with [`Confidence::Ambiguous`], which the gate suppresses at once (gate rule 5) and
//! flags for a human (gate rule 3). The gate rules are numbered as in
//! docs/reference/compliance.md#rules-for-the-inbound-classifier.
//!
//! # Normalisation (gate rule 1), see [`normalize`]
//!
//! NFKC (fullwidth `ＳＴＯＰ` and `𝐒𝐓𝐎𝐏` become `stop`), lowercase, Latin diacritics dropped
//! (`no más` = `no mas`), apostrophes, hyphens and censoring asterisks inside a word deleted
//! (`don't` → `dont`, `opt-out` → `optout`, `f**k` → `fk`), zero-width characters deleted,
//! every other punctuation mark, symbol and emoji turned into a space, spelled-out letters
//! joined (`S.T.O.P` → `stop`), whitespace collapsed, and `opt out` → `optout`,
//! `stop all` → `stopall`. [`classify`] also remembers where sentence punctuation was, so a
//! negation does not reach across it (`Don't! Stop!` is not `don't stop`), and reads letters
//! stretched three times or more as the plain word (`STOOOOP` = `stop`, `pleeease` = `please`).
//!
//! # Rules
//!
//! Rules 1 and 2 decide alone when they apply. Otherwise every rule of 3 to 5 is evaluated and
//! the strongest opt-out wins (`Phrase` over `Ambiguous`, the first found among equals); a
//! benign context (rule 5) only silences the trigger word it surrounds.
//!
//! 1. **Twilio `OptOutType`** wins when present (case-insensitive): `STOP` → opt-out
//!    ([`Confidence::Keyword`], `opt_out_type:stop`), `START` → opt-in, `HELP` → help. Twilio
//!    sends it only with Advanced Opt-Out, where custom keywords may be configured, so the
//!    provider's reading beats ours. Any other value is ignored.
//! 2. **Whole-message keyword** (gate rule 2). The normalised message is exactly one of the
//!    union of the FCC per-se words and both providers' lists: `stop stopall unsubscribe cancel
//!    end quit revoke optout` → [`Confidence::Keyword`] (`keyword:<word>`). Opt-in: the body,
//!    after NFKC, trimming and lowercasing only, is exactly `start`, `unstop` or `yes` (gate
//!    rule 4: punctuation is *not* forgiven here, `Yes!` is conversation). Help: normalised
//!    `help` or `info`.
//! 3. **Free-text revocation** ([`Confidence::Phrase`]), anywhere in the message:
//!    - a revocation phrase (`remove me`, `take me off`, `don't text`, `do not call`,
//!      `leave me alone`, `lose my number`, `wrong number`, `opt me out`, `revoke my consent`,
//!      `f off`, Spanish `no más`, `deja de`, `no me escribas`, `número equivocado`, ...;
//!      the full list is `REVOCATIONS`);
//!    - a stop verb before a messaging noun, up to three filler words apart
//!      (`stop texting`, `quit calling`, `stop the f***ing texts`, `no more messages`,
//!      `end these texts`, `stop sending me offers`);
//!    - in a short message (at most [`SHORT_MAX_WORDS`] words): a trigger word
//!      (`TRIGGERS`: the keywords plus `remove`, `unsub`) with only filler around it
//!      (`STOP!!` is already rule 2; `stop please`, `please stop`, `STOP STOP STOP`, `Stop it`,
//!      `end this`, `I said stop`), with profanity, or opening a sentence (`Stop, who is this`);
//!      `go away`, `get lost`, `no more`; Spanish `alto`, `para`, `basta`, `baja`, ... with only
//!      filler (`basta ya`, `para por favor`);
//!    - in a longer message: a trigger opening a sentence or right after `please`, `just`,
//!      `said`, `(want|like|you) to` (`Please stop, I'm not selling`), or any trigger together
//!      with profanity.
//! 4. **Ambiguous** ([`Confidence::Ambiguous`], an opt-out flagged for a human):
//!    - a trigger in a longer message outside a benign context (`can you stop`,
//!      `how do I unsubscribe`, `who is this stop`) — except `end`, which in a longer message
//!      counts only through rule 3;
//!    - a trigger or revocation phrase negated in a short message (`don't stop`,
//!      `ambiguous:stop+negation`): with punctuation stripped, `Don't. Stop.` looks the same;
//!    - a typo of stop (one edit: `stp`, `stip`, `sotp`, `stoo`, `stopp`, minus real words
//!      such as `step`, `shop`, `top`) or unsubscribe (two edits) in a short message;
//!    - complaints (`why do you keep`, `how did you get my number`, `spam`, `scam`,
//!      `reporting you`, `blocking you`, `never signed up`), wrong-party replies
//!      (`not the owner`, `no one by that name`), declines (`not interested`, `no thanks`,
//!      `not selling`, `no me interesa`) unless followed by a contrast (`not interested at 200k
//!      but would take 250k`), strong profanity aimed at someone (`wtf`, `who the fuck is
//!      this`; not `holy shit`), and a stop emoji (🛑 ⛔ 🚫 🖕) in a short message;
//!    - `don't call me, just text` (and the reverse): a channel preference, not a clear
//!      revocation of texts (`ambiguous:channel preference`).
//! 5. **Benign contexts** (→ [`Intent::None`]); each applies only inside one clause:
//!    `stop by|over|in|at|off`, `bus|pit|truck|next|last|a|the stop`, `stop sign|light`;
//!    `end of|up|date|unit`, `the|dead|back|month end`; `cancel` with an appointment word
//!    within three words (`cancel the appointment|showing|closing|contract`, `cancel Friday`:
//!    cancelling a meeting is not revoking consent) and `cancel that` ("never mind");
//!    `quit my|his|her job`, `quit|stop playing|joking|lowballing|thinking`;
//!    `remove the|a|that <object>` unless a number or name follows; and in a longer message a
//!    trigger after `don't`, `do not`, `don't want (you) to`, or `I|we can't|won't|never`
//!    (`don't stop the offer`, `I can't quit thinking about the house`, `I won't stop until I
//!    sell`). A negated revocation phrase in a longer message (`please don't stop texting me`)
//!    is benign too.
//!    Words that merely contain a trigger are not triggers (`weekend`, `nonstop`, `stopped`).
//! 6. **Resubscribe only on an exact keyword** (gate rule 4): `yes please`, `start texting me
//!    again`, `yes I'm interested` are [`Intent::None`]; later chatty replies are not
//!    re-consent.
//!
//! [`Confidence::Keyword`] means "the normalised message is exactly one keyword"; the provider
//! may not have matched it (it compares the raw body, so `S.T.O.P` escaped it). Gate rule 6
//! confirms only non-keyword opt-outs, so erring towards `Keyword` errs towards sending no
//! confirmation rather than a second one: 64.1200(a)(12) permits one confirmation text and
//! requires none.
//! Provider-specific keywords (OpenPhone does not act on `revoke` or `optout`) are told apart by
//! the `reason`.

mod lexicon;
mod phrases;
mod tokenize;

use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

// The lexicon is data the rules below read by name: a glob keeps the rules readable.
pub use lexicon::SHORT_MAX_WORDS;
use lexicon::*;
use phrases::*;
use tokenize::*;

/// What an inbound message means for the sender's consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Intent {
    /// Consent is revoked: suppress the number before the next outbound check.
    OptOut {
        /// How the revocation was recognised; `Ambiguous` needs a human look.
        confidence: Confidence,
        /// The rule that fired, `<rule>:<detail>`, kept as evidence.
        reason: &'static str,
    },
    /// An exact re-subscribe keyword (or Twilio's `OptOutType=START`).
    OptIn {
        /// `start`, `unstop` or `yes`, lowercase.
        keyword: &'static str,
    },
    /// `HELP` or `INFO`: answer with brand, contact details and STOP instructions.
    Help,
    /// Ordinary conversation.
    None,
}

impl Intent {
    /// Whether the number must be suppressed.
    pub fn is_opt_out(&self) -> bool {
        matches!(self, Intent::OptOut { .. })
    }
}

/// How sure the classifier is that an opt-out is one. Ordered from most to least sure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// The normalised message is exactly one provider or FCC keyword.
    Keyword,
    /// A clear free-text revocation.
    Phrase,
    /// Treated as an opt-out because compliance fails closed; flag for a human.
    Ambiguous,
}

impl Confidence {
    /// Whether a human should review the suppression.
    pub fn needs_review(self) -> bool {
        self == Confidence::Ambiguous
    }
}

/// Classifies one inbound message body. `opt_out_type` is Twilio's `OptOutType` parameter, when
/// the webhook carried one. Never panics.
pub fn classify(text: &str, opt_out_type: Option<&str>) -> Intent {
    if let Some(verdict) = opt_out_type.and_then(|t| from_opt_out_type(t, text)) {
        return verdict;
    }
    let tokens = tokenize(text);
    if let [only] = tokens.as_slice() {
        if let Some(t) = trigger(&only.text) {
            if matches!(t.scope, Scope::Keyword | Scope::End) {
                return Intent::OptOut {
                    confidence: Confidence::Keyword,
                    reason: t.keyword,
                };
            }
        }
    }
    if let Some(keyword) = exact_opt_in(text) {
        return Intent::OptIn { keyword };
    }
    if let [only] = tokens.as_slice() {
        if HELP_KEYWORDS.contains(&only.text.as_str()) {
            return Intent::Help;
        }
    }
    let message = Message::new(&tokens);
    let mut best = Best::default();
    message.revocation_phrases(&mut best);
    message.verb_and_noun(&mut best);
    message.triggers(&mut best);
    message.typos(&mut best);
    message.signals(text, &mut best);
    match best.0 {
        Some((confidence, reason)) => Intent::OptOut { confidence, reason },
        None => Intent::None,
    }
}

/// The normalised form used for matching: NFKC, lowercase, Latin diacritics dropped,
/// apostrophes, hyphens and censoring asterisks inside words deleted, other punctuation,
/// symbols and emoji removed, spelled-out letters joined (`s.t.o.p` → `stop`), whitespace
/// collapsed to single spaces, and `opt out` → `optout`, `stop all` → `stopall`. Idempotent.
pub fn normalize(text: &str) -> String {
    tokenize(text)
        .into_iter()
        .map(|t| t.text)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// Lexicon. Every entry is in normalised form (a test checks it).

fn from_opt_out_type(opt_out_type: &str, text: &str) -> Option<Intent> {
    let t = opt_out_type.trim();
    if t.eq_ignore_ascii_case("stop") {
        Some(Intent::OptOut {
            confidence: Confidence::Keyword,
            reason: "opt_out_type:stop",
        })
    } else if t.eq_ignore_ascii_case("start") {
        // Twilio also reports custom opt-in keywords as START; name ours when it is one.
        Some(Intent::OptIn {
            keyword: exact_opt_in(text).unwrap_or("start"),
        })
    } else if t.eq_ignore_ascii_case("help") {
        Some(Intent::Help)
    } else {
        None
    }
}

/// Re-consent must be unmistakable: NFKC, trim and case are forgiven, nothing else.
fn exact_opt_in(text: &str) -> Option<&'static str> {
    let folded: String = text.nfkc().collect();
    let folded = folded.trim().to_lowercase();
    OPT_IN_KEYWORDS.iter().copied().find(|k| *k == folded)
}

// ---------------------------------------------------------------------------------------------
// Tokenizer behind `normalize`.

/// The strongest opt-out seen so far; among equals, the first.
#[derive(Default)]
struct Best(Option<(Confidence, &'static str)>);

impl Best {
    fn offer(&mut self, confidence: Confidence, reason: &'static str) {
        match self.0 {
            Some((have, _)) if have <= confidence => {}
            _ => self.0 = Some((confidence, reason)),
        }
    }
}

struct Message<'a> {
    /// Normalised words, elongations read as the plain word.
    words: Vec<&'a str>,
    /// `breaks[i]`: sentence punctuation precedes word `i`.
    breaks: Vec<bool>,
    /// Each word's [`VOCABULARY`] number, if it occurs in a phrase.
    ids: Vec<Option<u16>>,
    /// Computed once: per-trigger scans would make long messages quadratic.
    profane: bool,
    texts_welcome: bool,
    calls_welcome: bool,
}

impl<'a> Message<'a> {
    fn new(tokens: &'a [Token]) -> Self {
        let mut m = Message {
            words: tokens.iter().map(|t| unstretch(&t.text)).collect(),
            breaks: tokens.iter().map(|t| t.brk).collect(),
            ids: Vec::new(),
            profane: false,
            texts_welcome: false,
            calls_welcome: false,
        };
        m.ids = m.words.iter().map(|w| VOCABULARY.get(w).copied()).collect();
        m.profane = m.words.iter().any(|w| is_profane(w));
        m.texts_welcome = m.welcomes(&TEXT_WELCOME_PHRASES);
        m.calls_welcome = m.welcomes(&CALL_WELCOME_PHRASES);
        m
    }

    fn is_short(&self) -> bool {
        self.words.len() <= SHORT_MAX_WORDS
    }

    /// The word `back` places before word `i`, if no sentence break lies between.
    fn before(&self, i: usize, back: usize) -> Option<&'a str> {
        let j = i.checked_sub(back)?;
        if self.breaks[j + 1..=i].iter().any(|&b| b) {
            return None;
        }
        Some(self.words[j])
    }

    /// The word `ahead` places after word `i`, if no sentence break lies between.
    fn after(&self, i: usize, ahead: usize) -> Option<&'a str> {
        let j = i + ahead;
        if j >= self.words.len() || self.breaks[i + 1..=j].iter().any(|&b| b) {
            return None;
        }
        Some(self.words[j])
    }

    fn before_in(&self, i: usize, back: usize, set: &[&str]) -> bool {
        self.before(i, back).is_some_and(|w| set.contains(&w))
    }

    fn after_in(&self, i: usize, ahead: usize, set: &[&str]) -> bool {
        self.after(i, ahead).is_some_and(|w| set.contains(&w))
    }

    /// Every occurrence `(phrase index, position)` of a phrase of `phrases`, ordered by phrase
    /// then position.
    fn occurrences(&self, phrases: &Phrases) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        for (i, id) in self.ids.iter().enumerate() {
            let Some(id) = id else { continue };
            for &k in phrases.by_first.get(usize::from(*id)).into_iter().flatten() {
                let matches = phrases.ids[k][1..]
                    .iter()
                    .enumerate()
                    .all(|(n, p)| self.ids.get(i + 1 + n) == Some(&Some(*p)));
                if matches {
                    found.push((k, i));
                }
            }
        }
        found.sort_unstable();
        found
    }

    /// Whether a phrase of `phrases` occurs, not right after `or`, `and` or a negation
    /// (`don't call or text me` does not welcome texts).
    fn welcomes(&self, phrases: &Phrases) -> bool {
        self.occurrences(phrases)
            .into_iter()
            .any(|(_, i)| !self.before_in(i, 1, &["or", "nor", "and", "dont", "not", "never"]))
    }

    /// `don't X`, `do not X`, `don't want (you) to X`, `never told you to X`.
    fn negated(&self, i: usize) -> bool {
        if self.before_in(i, 1, &["dont"])
            || (self.before_in(i, 2, &["do"]) && self.before_in(i, 1, &["not"]))
        {
            return true;
        }
        self.before_in(i, 1, &["to"])
            && (2..=5).any(|k| self.before_in(i, k, &["dont", "not", "never", "didnt", "doesnt"]))
    }

    /// `I can't quit thinking`, `we won't stop until we close`.
    fn first_person_cannot(&self, i: usize) -> bool {
        self.before_in(
            i,
            1,
            &[
                "wont", "cant", "cannot", "couldnt", "didnt", "never", "wouldnt",
            ],
        ) && self.before_in(i, 2, &["i", "we", "ill", "id"])
    }

    /// Opens a sentence, or follows `please`, `just`, `said`, `(want|like|you) to`.
    fn imperative(&self, i: usize, t: &Trigger) -> bool {
        if i == 0 || self.breaks[i] || self.before_in(i, 1, IMPERATIVE_BEFORE) {
            return true;
        }
        // "I need to cancel" is usually about a meeting, so `cancel` takes only the plain forms.
        let wants = self.before_in(i, 1, &["wanna"])
            || (self.before_in(i, 1, &["to"])
                && self.before_in(i, 2, &["you", "u", "want", "like", "wish"]));
        wants && t.word != "cancel" && !self.negated(i)
    }

    fn benign_context(&self, i: usize, t: &Trigger) -> bool {
        match t.word {
            "stop" | "stopall" => {
                self.before_in(i, 1, STOP_BENIGN_BEFORE)
                    || (self.after_in(i, 1, STOP_BENIGN_AFTER)
                        && !(self.after_in(i, 1, &["at"]) && self.after_in(i, 2, &["once"])))
                    || self.after_in(i, 1, GERUND_BENIGN_AFTER)
            }
            "quit" => {
                self.after_in(i, 1, QUIT_BENIGN_AFTER) || self.after_in(i, 1, GERUND_BENIGN_AFTER)
            }
            "end" => {
                self.before_in(i, 1, END_BENIGN_BEFORE) || self.after_in(i, 1, END_BENIGN_AFTER)
            }
            // `cancel that` is "never mind".
            "cancel" | "cancelar" => {
                self.after_in(i, 1, &["that"])
                    || (1..=3).any(|k| self.after_in(i, k, APPOINTMENT_WORDS))
            }
            "remove" => {
                self.after_in(i, 1, REMOVE_BENIGN_AFTER)
                    && !(2..=3).any(|k| self.after_in(i, k, REMOVE_PERSONAL))
            }
            _ => false,
        }
    }

    fn channel_preference(&self, channel: Channel) -> bool {
        match channel {
            Channel::Any => false,
            Channel::Text => self.calls_welcome,
            Channel::Call => self.texts_welcome,
        }
    }

    /// A revocation matched at `i`: negated, a channel preference, or a clear phrase.
    fn offer_revocation(
        &self,
        best: &mut Best,
        i: usize,
        reason: &'static str,
        negated: &'static str,
        channel: Channel,
    ) {
        if self.negated(i) {
            if self.is_short() {
                best.offer(Confidence::Ambiguous, negated);
            }
        } else if self.channel_preference(channel) {
            best.offer(Confidence::Ambiguous, "ambiguous:channel preference");
        } else {
            best.offer(Confidence::Phrase, reason);
        }
    }

    fn revocation_phrases(&self, best: &mut Best) {
        let mut lists: Vec<(&[Revocation], &Phrases)> = vec![(REVOCATIONS, &REVOCATION_PHRASES)];
        if self.is_short() {
            lists.push((SHORT_REVOCATIONS, &SHORT_REVOCATION_PHRASES));
        }
        for (list, phrases) in lists {
            for (k, i) in self.occurrences(phrases) {
                let r = &list[k];
                if self.after_in(i + phrases.len_of(k) - 1, 1, r.not_before) {
                    continue;
                }
                self.offer_revocation(best, i, r.reason, r.negated, r.channel);
            }
        }
    }

    /// `stop` [up to three filler words] `texts`.
    fn verb_and_noun(&self, best: &mut Best) {
        for (k, i) in self.occurrences(&VERB_PHRASES) {
            let v = &VERBS[k];
            let last = i + VERB_PHRASES.len_of(k) - 1;
            let noun = (1..=4)
                .map_while(|n| self.after(last, n))
                .find(|w| !VERB_SKIP.contains(w) && !is_profane(w));
            let channel = match noun {
                Some(w) if TEXT_NOUNS.contains(&w) => Channel::Text,
                Some(w) if CALL_NOUNS.contains(&w) && v.calls => Channel::Call,
                Some(w) if OTHER_NOUNS.contains(&w) && (v.calls || w != "offers") => Channel::Any,
                _ => continue,
            };
            self.offer_revocation(best, i, v.reason, v.negated, channel);
        }
    }

    fn triggers(&self, best: &mut Best) {
        for (i, w) in self.words.iter().enumerate() {
            let Some(t) = trigger(w) else { continue };
            if self.benign_context(i, t) {
                continue;
            }
            if self.is_short() {
                self.short_trigger(best, i, t);
            } else {
                self.long_trigger(best, i, t);
            }
        }
    }

    fn short_trigger(&self, best: &mut Best, i: usize, t: &Trigger) {
        let spanish = t.scope == Scope::Spanish;
        if self.before_in(i, 1, NEGATORS) || self.negated(i) {
            if !spanish {
                best.offer(Confidence::Ambiguous, t.negated);
            }
            return;
        }
        let only_filler =
            self.words.iter().enumerate().all(|(j, w)| {
                j == i || FILLER.contains(w) || trigger(w).is_some() || is_profane(w)
            });
        if only_filler {
            best.offer(Confidence::Phrase, t.short);
        } else if spanish {
            // `para mañana` is "for tomorrow".
        } else if self.profane {
            best.offer(Confidence::Phrase, t.profanity);
        } else if self.imperative(i, t) {
            best.offer(Confidence::Phrase, t.imperative);
        } else {
            best.offer(Confidence::Ambiguous, t.ambiguous);
        }
    }

    fn long_trigger(&self, best: &mut Best, i: usize, t: &Trigger) {
        if t.scope == Scope::Spanish || self.negated(i) || self.first_person_cannot(i) {
            return;
        }
        if self.imperative(i, t) {
            best.offer(Confidence::Phrase, t.imperative);
        } else if t.scope == Scope::End {
            // `end` inside a longer message is nearly always about a date or a place.
        } else if self.profane {
            best.offer(Confidence::Phrase, t.profanity);
        } else {
            best.offer(Confidence::Ambiguous, t.ambiguous);
        }
    }

    fn typos(&self, best: &mut Best) {
        if !self.is_short() {
            return;
        }
        for w in &self.words {
            if let Some(reason) = typo(w) {
                best.offer(Confidence::Ambiguous, reason);
            }
        }
    }

    fn signals(&self, text: &str, best: &mut Best) {
        let mut last_phrase = None;
        for (k, _) in self.occurrences(&SIGNAL_PHRASES) {
            if last_phrase != Some(k) {
                let reason = match COMPLAINTS.get(k) {
                    Some(c) => c.1,
                    None => WRONG_PARTY[k - COMPLAINTS.len()].1,
                };
                best.offer(Confidence::Ambiguous, reason);
                last_phrase = Some(k);
            }
        }
        let declines = self.occurrences(&DECLINE_PHRASES);
        for (n, &(k, i)) in declines.iter().enumerate() {
            // Only the last occurrence of each phrase counts: it has the fewest words after
            // it, so if any occurrence lacks a contrast after it, that one does.
            if declines.get(n + 1).is_some_and(|&(next, _)| next == k) {
                continue;
            }
            let rest = self
                .words
                .get(i + DECLINE_PHRASES.len_of(k)..)
                .unwrap_or_default();
            let declined = !rest.iter().enumerate().any(|(m, w)| {
                CONTRAST.contains(w) && !rest.get(m + 1).is_some_and(|n| THANKS.contains(n))
            });
            if declined {
                best.offer(Confidence::Ambiguous, DECLINES[k].1);
            }
        }
        if self.words.iter().any(|w| STRONG_PROFANITY.contains(w)) {
            best.offer(Confidence::Ambiguous, "ambiguous:profanity");
        }
        if self.is_short() && text.chars().any(|c| STOP_EMOJI.contains(&c)) {
            best.offer(Confidence::Ambiguous, "ambiguous:stop emoji");
        }
    }
}

fn is_profane(w: &str) -> bool {
    STRONG_PROFANITY.contains(&w) || MILD_PROFANITY.contains(&w)
}

/// A word stretched three times or more (`stooop`, `pleeease`) read as the vocabulary word it
/// stands for, if any.
fn unstretch(word: &str) -> &str {
    let chars: Vec<char> = word.chars().collect();
    if !chars.windows(3).any(|w| w[0] == w[1] && w[1] == w[2]) {
        return word;
    }
    for keep in [1, 2] {
        let squeezed = squeeze(&chars, keep);
        if let Some(t) = trigger(&squeezed) {
            return t.word;
        }
        if let Some(v) = ELONGATION_TARGETS
            .iter()
            .flat_map(|list| list.iter())
            .find(|v| **v == squeezed)
        {
            return v;
        }
    }
    word
}

/// Runs of three or more equal characters cut to `keep`.
fn squeeze(chars: &[char], keep: usize) -> String {
    let mut out = String::with_capacity(chars.len());
    let mut k = 0;
    while k < chars.len() {
        let run = chars[k..].iter().take_while(|&&c| c == chars[k]).count();
        let n = if run >= 3 { keep } else { run };
        out.extend(std::iter::repeat_n(chars[k], n));
        k += run;
    }
    out
}

/// A typo of `stop` (one edit) or `unsubscribe` (two edits), minus real words.
fn typo(word: &str) -> Option<&'static str> {
    let len = word.chars().count();
    if (3..=5).contains(&len)
        && word != "stop"
        && !STOP_LOOKALIKES.contains(&word)
        && edit_distance(word, "stop") == 1
    {
        return Some("typo:stop");
    }
    if (8..=13).contains(&len)
        && word != "unsubscribe"
        && !UNSUBSCRIBE_LOOKALIKES.contains(&word)
        && edit_distance(word, "unsubscribe") <= 2
    {
        return Some("typo:unsubscribe");
    }
    None
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of two
/// neighbouring letters (`sotp`) each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests;
