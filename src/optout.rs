//! Inbound opt-out classifier: says whether one inbound SMS body revokes consent, re-subscribes,
//! asks for help, or is ordinary conversation.
//!
//! Pure: no I/O, no state, no clock. The gate stores the returned [`Verdict`] (serialised) as
//! evidence on the suppression list, so every opt-out names the rule that fired in `reason`
//! (`keyword:stop`, `phrase:remove me`, `ambiguous:stop+negation`, ...).
//!
//! # Why more than the provider keyword match
//!
//! Twilio and Quo (OpenPhone) act only on a body that is exactly one keyword
//! (ref/compliance.md §1 "What the providers do", ref/twilio.md §6). Since FCC 24-24
//! (47 CFR 64.1200(a)(10)) consent can be revoked by any reasonable means: any wording a
//! reasonable person reads as a revocation counts, typos and other languages included
//! (ref/compliance.md §1 "What the law requires beyond keywords"). Missing a revocation is a
//! TCPA violation per later text; suppressing by mistake costs one lead. So the classifier
//! fails closed: a message that is neither clearly benign nor clearly a revocation is an
//! opt-out with [`Confidence::Ambiguous`], which the gate suppresses at once (gate rule 5) and
//! flags for a human (gate rule 3).
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
//! 5. **Benign contexts** (→ [`Verdict::None`]); each applies only inside one clause:
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
//!    again`, `yes I'm interested` are [`Verdict::None`]; later chatty replies are not
//!    re-consent.
//!
//! [`Confidence::Keyword`] means "the normalised message is exactly one keyword"; the provider
//! may not have matched it (it compares the raw body, so `S.T.O.P` escaped it). Gate rule 6
//! confirms only non-keyword opt-outs, so erring towards `Keyword` errs towards sending no
//! confirmation rather than a second one: 64.1200(a)(12) permits one confirmation text and
//! requires none.
//! Provider-specific keywords (OpenPhone does not act on `revoke` or `optout`) are told apart by
//! the `reason`.

use serde::Serialize;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// What an inbound message means for the sender's consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
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

impl Verdict {
    /// Whether the number must be suppressed.
    pub fn is_opt_out(&self) -> bool {
        matches!(self, Verdict::OptOut { .. })
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
pub fn classify(text: &str, opt_out_type: Option<&str>) -> Verdict {
    if let Some(verdict) = opt_out_type.and_then(|t| from_opt_out_type(t, text)) {
        return verdict;
    }
    let tokens = tokenize(text);
    if let [only] = tokens.as_slice() {
        if let Some(t) = trigger(&only.text) {
            if matches!(t.scope, Scope::Keyword | Scope::End) {
                return Verdict::OptOut {
                    confidence: Confidence::Keyword,
                    reason: t.keyword,
                };
            }
        }
    }
    if let Some(keyword) = exact_opt_in(text) {
        return Verdict::OptIn { keyword };
    }
    if let [only] = tokens.as_slice() {
        if HELP_KEYWORDS.contains(&only.text.as_str()) {
            return Verdict::Help;
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
        Some((confidence, reason)) => Verdict::OptOut { confidence, reason },
        None => Verdict::None,
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

/// A message of at most this many words is "short": a trigger in it is read as a command.
pub const SHORT_MAX_WORDS: usize = 4;

const OPT_IN_KEYWORDS: [&str; 3] = ["start", "unstop", "yes"];
const HELP_KEYWORDS: [&str; 2] = ["help", "info"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// A provider or FCC keyword: `Keyword` alone, `Ambiguous` in a longer message.
    Keyword,
    /// `end`: a keyword alone, but too common in longer messages to mean anything by itself.
    End,
    /// Not a keyword but read like one (`remove`, `unsub`).
    Word,
    /// Spanish: an opt-out only alone or with filler (`para` also means "for").
    Spanish,
}

/// A word that, used as a command, revokes consent; with its precomputed reasons.
#[derive(Debug)]
struct Trigger {
    word: &'static str,
    scope: Scope,
    keyword: &'static str,
    short: &'static str,
    imperative: &'static str,
    profanity: &'static str,
    ambiguous: &'static str,
    negated: &'static str,
}

macro_rules! trigger {
    ($word:literal, $scope:ident) => {
        trigger!($word, $scope, "short:")
    };
    ($word:literal, $scope:ident, $short:literal) => {
        Trigger {
            word: $word,
            scope: Scope::$scope,
            keyword: concat!("keyword:", $word),
            short: concat!($short, $word),
            imperative: concat!("imperative:", $word),
            profanity: concat!("profanity+", $word),
            ambiguous: concat!("ambiguous:", $word),
            negated: concat!("ambiguous:", $word, "+negation"),
        }
    };
}

/// Trigger words: FCC per-se words ∪ Twilio ∪ Quo opt-out keywords, then look-alikes.
const TRIGGERS: &[Trigger] = &[
    trigger!("stop", Keyword),
    trigger!("stopall", Keyword),
    trigger!("unsubscribe", Keyword),
    trigger!("cancel", Keyword),
    trigger!("quit", Keyword),
    trigger!("revoke", Keyword),
    trigger!("optout", Keyword),
    trigger!("end", End),
    trigger!("remove", Word),
    trigger!("unsub", Word),
    trigger!("alto", Spanish, "spanish:"),
    trigger!("para", Spanish, "spanish:"),
    trigger!("pare", Spanish, "spanish:"),
    trigger!("paren", Spanish, "spanish:"),
    trigger!("parar", Spanish, "spanish:"),
    trigger!("basta", Spanish, "spanish:"),
    trigger!("baja", Spanish, "spanish:"),
    trigger!("cancelar", Spanish, "spanish:"),
    trigger!("detener", Spanish, "spanish:"),
    trigger!("detente", Spanish, "spanish:"),
];

fn trigger(word: &str) -> Option<&'static Trigger> {
    TRIGGERS.iter().find(|t| t.word == word)
}

/// Which channel a phrase refuses, for `don't call me, just text` (a preference, not a
/// revocation of texts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Any,
    Text,
    Call,
}

/// A phrase that revokes consent wherever it appears.
#[derive(Debug)]
struct Revocation {
    words: &'static str,
    reason: &'static str,
    negated: &'static str,
    channel: Channel,
    /// The phrase does not count when one of these words follows (`no más de 200` = "no more
    /// than 200").
    not_before: &'static [&'static str],
}

macro_rules! revocation {
    ($p:literal) => {
        revocation!($p, Any, &[])
    };
    ($p:literal, $channel:ident) => {
        revocation!($p, $channel, &[])
    };
    ($p:literal, $channel:ident, $not_before:expr) => {
        Revocation {
            words: $p,
            reason: concat!("phrase:", $p),
            negated: concat!("ambiguous:", $p, "+negation"),
            channel: Channel::$channel,
            not_before: $not_before,
        }
    };
}

/// Free-text revocations, matched word by word on the normalised text anywhere in a message.
const REVOCATIONS: &[Revocation] = &[
    revocation!("remove me"),
    revocation!("remove my"),
    revocation!("remove us"),
    revocation!("remove our"),
    revocation!("remove this number"),
    revocation!("remove that number"),
    revocation!("remove the number"),
    revocation!("remove number"),
    revocation!("remove from"),
    revocation!("take me off"),
    revocation!("take us off"),
    revocation!("take my number off"),
    revocation!("take my name off"),
    revocation!("take this number off"),
    revocation!("unsubscribe me"),
    revocation!("unsubscribe us"),
    revocation!("unsubscribe my"),
    revocation!("opt me out"),
    revocation!("opt us out"),
    revocation!("optout me"),
    revocation!("dont text", Text),
    revocation!("do not text", Text),
    revocation!("dont txt", Text),
    revocation!("dont message", Text),
    revocation!("do not message", Text),
    revocation!("dont msg", Text),
    revocation!("dont contact"),
    revocation!("do not contact"),
    revocation!("dont call", Call),
    revocation!("do not call", Call),
    revocation!("dont call or text"),
    revocation!("do not call or text"),
    revocation!("dont text or call"),
    revocation!("do not text or call"),
    revocation!("dont ever text"),
    revocation!("dont ever contact"),
    revocation!("dont ever call", Call),
    revocation!("never text me"),
    revocation!("never contact me"),
    revocation!("leave me alone"),
    revocation!("leave us alone"),
    revocation!("lose my number"),
    revocation!("lose this number"),
    revocation!("delete my number"),
    revocation!("delete this number"),
    revocation!("delete my info"),
    revocation!("erase my number"),
    revocation!("forget my number"),
    revocation!("wrong number"),
    revocation!("wrong person"),
    revocation!("not interested stop"),
    revocation!("stop not interested"),
    revocation!("stop sending"),
    revocation!("put a stop to"),
    revocation!("dnc"),
    revocation!("donotcall"),
    revocation!("revoke consent"),
    revocation!("revoke my consent"),
    revocation!("revoking my consent"),
    revocation!("withdraw consent"),
    revocation!("withdraw my consent"),
    revocation!("i revoke"),
    revocation!("cease and desist"),
    revocation!("fuck off"),
    revocation!("f off"),
    revocation!("fk off"),
    revocation!("fck off"),
    revocation!("eff off"),
    revocation!("fuck you"),
    revocation!("f you"),
    revocation!("f u"),
    revocation!("screw you"),
    revocation!("piss off"),
    revocation!("go to hell"),
    revocation!("get fucked"),
    revocation!("stfu"),
    revocation!("gtfo"),
    revocation!("bugger off"),
    revocation!("sod off"),
    // Spanish.
    revocation!("no mas", Any, &["de", "que"]),
    revocation!("basta de"),
    revocation!("deja de"),
    revocation!("dejen de"),
    revocation!("deje de"),
    revocation!("para de"),
    revocation!("paren de"),
    revocation!("pare de"),
    revocation!("no me escribas"),
    revocation!("no me escriba"),
    revocation!("no me escriban"),
    revocation!("no me envies"),
    revocation!("no me envie"),
    revocation!("no me envien"),
    revocation!("no me mandes"),
    revocation!("no me mande"),
    revocation!("no me manden"),
    revocation!("no me contactes"),
    revocation!("no me contacte"),
    revocation!("no me contacten"),
    revocation!("no me llames"),
    revocation!("no me llame"),
    revocation!("no me llamen"),
    revocation!("no me molestes"),
    revocation!("no me moleste"),
    revocation!("no me molesten"),
    revocation!("dejame en paz"),
    revocation!("dejenme en paz"),
    revocation!("borra mi numero"),
    revocation!("borre mi numero"),
    revocation!("borren mi numero"),
    revocation!("numero equivocado"),
    revocation!("darme de baja"),
    revocation!("dar de baja"),
    revocation!("dame de baja"),
    revocation!("deme de baja"),
    revocation!("denme de baja"),
    revocation!("quitame de"),
    revocation!("quiteme de"),
    revocation!("quitenme de"),
    revocation!("sacame de"),
    revocation!("saqueme de"),
    revocation!("saquenme de"),
    revocation!("no quiero mensajes"),
];

/// Revocations only in a short message (`go away` in a longer one is about something else).
const SHORT_REVOCATIONS: &[Revocation] = &[
    revocation!("go away"),
    revocation!("get lost"),
    revocation!("back off"),
    revocation!("buzz off"),
    revocation!("no more"),
    revocation!("knock it off"),
    revocation!("cut it out"),
];

/// A verb that revokes consent when a messaging noun follows (`stop` … `texts`).
struct Verb {
    words: &'static str,
    reason: &'static str,
    negated: &'static str,
    /// `cancel the call` is about an appointment; `cancel the texts` is a revocation.
    calls: bool,
}

macro_rules! verb {
    ($v:literal) => {
        verb!($v, true)
    };
    ($v:literal, $calls:literal) => {
        Verb {
            words: $v,
            reason: concat!("phrase:", $v, "+messages"),
            negated: concat!("ambiguous:", $v, "+messages+negation"),
            calls: $calls,
        }
    };
}

const VERBS: &[Verb] = &[
    verb!("stop"),
    verb!("stopall"),
    verb!("quit"),
    verb!("cancel", false),
    verb!("end"),
    verb!("halt"),
    verb!("cease"),
    verb!("no more"),
    verb!("dont send"),
    verb!("do not send"),
    verb!("enough"),
    verb!("done with"),
    verb!("unsubscribe"),
    verb!("optout"),
    verb!("unsub"),
];

/// Words allowed between a verb and its noun (`stop` *sending me these* `texts`).
const VERB_SKIP: &[&str] = &[
    "the",
    "these",
    "those",
    "this",
    "that",
    "all",
    "your",
    "ur",
    "any",
    "with",
    "me",
    "us",
    "my",
    "of",
    "from",
    "to",
    "sending",
    "send",
    "getting",
    "receiving",
    "more",
    "constant",
    "automated",
    "random",
    "unwanted",
    "unsolicited",
    "stupid",
    "annoying",
    "spam",
    "robo",
    "repeated",
    "daily",
];

const TEXT_NOUNS: &[&str] = &[
    "text",
    "texts",
    "texting",
    "txt",
    "txts",
    "txting",
    "message",
    "messages",
    "messaging",
    "msg",
    "msgs",
    "sms",
];

const CALL_NOUNS: &[&str] = &["call", "calls", "calling", "robocall", "robocalls"];

const OTHER_NOUNS: &[&str] = &[
    "contact",
    "contacting",
    "email",
    "emails",
    "emailing",
    "communication",
    "communications",
    "spam",
    "spamming",
    "harassing",
    "harassment",
    "bothering",
    "bugging",
    "pestering",
    "hounding",
    "badgering",
    "soliciting",
    "solicitation",
    "solicitations",
    "hitting",
    "blowing",
    "reaching",
    "offers",
    "ads",
    "marketing",
    "promotions",
    "junk",
    "crap",
    "garbage",
    "nonsense",
    "outreach",
    "notifications",
    "alerts",
];

/// Words that may surround a trigger in a short message without changing what it means.
const FILLER: &[&str] = &[
    "please",
    "pls",
    "plz",
    "pleas",
    "now",
    "right",
    "immediately",
    "asap",
    "already",
    "again",
    "anymore",
    "it",
    "this",
    "that",
    "all",
    "everything",
    "them",
    "these",
    "those",
    "i",
    "im",
    "ive",
    "said",
    "say",
    "told",
    "just",
    "ok",
    "okay",
    "k",
    "thanks",
    "thank",
    "thx",
    "ty",
    "you",
    "u",
    "ya",
    "yall",
    "guys",
    "the",
    "no",
    "nope",
    "nah",
    "sir",
    "maam",
    "man",
    "dude",
    "bro",
    "lol",
    "ugh",
    "omg",
    "seriously",
    "really",
    "want",
    "wanna",
    "to",
    "id",
    "would",
    "like",
    "me",
    "us",
    "for",
    "good",
    "forever",
    "permanently",
    "completely",
    "done",
    "sorry",
    "dont",
    "do",
    "not",
    "never",
    "didnt",
    "wont",
    "cant",
    "ever",
    "por",
    "favor",
    "porfavor",
    "porfa",
    "ahora",
    "mismo",
    "ahi",
    "gracias",
    "mas",
];

/// Words before a trigger that make it a command in a longer message.
const IMPERATIVE_BEFORE: &[&str] = &[
    "please", "pls", "plz", "pleas", "just", "kindly", "said", "ok", "okay", "no", "nope", "nah",
];

/// Short-message negators (`never stop`, `not stop`, `can't stop`).
const NEGATORS: &[&str] = &[
    "dont", "didnt", "doesnt", "never", "not", "wont", "cant", "cannot", "couldnt", "wouldnt",
    "shouldnt", "nunca",
];

const STRONG_PROFANITY: &[&str] = &[
    "fuck",
    "fucking",
    "fuckin",
    "fucken",
    "fucker",
    "fuckers",
    "fucked",
    "fck",
    "fcking",
    "fk",
    "fking",
    "fkn",
    "fkin",
    "fuk",
    "fukin",
    "fuking",
    "fuq",
    "fing",
    "motherfucker",
    "motherfuckers",
    "mofo",
    "wtf",
    "stfu",
    "gtfo",
    "asshole",
    "assholes",
    "bitch",
    "bitches",
    "cunt",
    "dickhead",
    "jackass",
    "dumbass",
    "prick",
    "twat",
    "bastard",
    "bastards",
];

/// Profanity that adds force to a stop but on its own is not aimed at the sender
/// (`holy shit that's a good offer`).
const MILD_PROFANITY: &[&str] = &[
    "shit", "shitty", "bullshit", "sht", "damn", "dammit", "damnit", "goddamn", "hell", "crap",
    "crappy", "freaking", "freakin", "frickin", "fricking", "frigging", "friggin", "effing",
    "bloody", "bs", "piss", "pissed", "heck",
];

/// Benign neighbours of `stop`: `bus stop`, `stop by`.
const STOP_BENIGN_BEFORE: &[&str] = &[
    "bus", "a", "the", "one", "pit", "truck", "last", "next", "first", "rest", "gas", "quick",
    "full", "non", "whistle",
];
const STOP_BENIGN_AFTER: &[&str] = &[
    "by", "over", "in", "at", "off", "sign", "signs", "light", "lights", "loss",
];
/// `stop|quit playing`: haggling, not revoking.
const GERUND_BENIGN_AFTER: &[&str] = &[
    "playing",
    "playin",
    "joking",
    "kidding",
    "lowballing",
    "worrying",
    "thinking",
    "stalling",
    "procrastinating",
];
const QUIT_BENIGN_AFTER: &[&str] = &[
    "my", "his", "her", "their", "our", "job", "work", "smoking", "drinking",
];
const END_BENIGN_BEFORE: &[&str] = &[
    "the", "an", "week", "month", "year", "quarter", "back", "front", "high", "low", "dead",
    "deep", "west", "east", "north", "south", "tail", "rear", "far", "other", "upper", "lower",
    "no", "loose", "split", "lease",
];
const END_BENIGN_AFTER: &[&str] = &[
    "of", "up", "date", "unit", "units", "table", "tables", "lot", "result", "game", "user",
    "goal", "point", "zone", "cap", "caps", "loan", "buyer", "buyers", "tenant", "tenants", "line",
];
/// `cancel` with one of these within three words is about a meeting or a deal.
const APPOINTMENT_WORDS: &[&str] = &[
    "appointment",
    "appointments",
    "appt",
    "appts",
    "meeting",
    "meetings",
    "showing",
    "showings",
    "visit",
    "tour",
    "inspection",
    "appraisal",
    "closing",
    "contract",
    "listing",
    "order",
    "walkthrough",
    "viewing",
    "escrow",
    "deal",
    "sale",
    "agreement",
    "lease",
    "offer",
    "call",
    "today",
    "tomorrow",
    "tonight",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "reservation",
    "plans",
    "trip",
    "cita",
    "manana",
];
/// `remove the shed`: an object, unless a number or a name follows.
const REMOVE_BENIGN_AFTER: &[&str] = &[
    "the", "a", "an", "that", "those", "some", "any", "his", "her", "their",
];
const REMOVE_PERSONAL: &[&str] = &[
    "number", "numbers", "name", "names", "info", "contact", "phone", "cell", "me", "us",
];

/// `(phrase, "ambiguous:<phrase>")` pairs.
macro_rules! signals {
    ($($p:literal),* $(,)?) => { &[$(($p, concat!("ambiguous:", $p))),*] };
}

/// Complaints: someone annoyed at being texted. Ambiguous.
const COMPLAINTS: &[(&str, &str)] = signals![
    "why do you keep",
    "you keep texting",
    "you keep messaging",
    "you keep calling",
    "why are you texting",
    "why are you still",
    "why you texting",
    "why do you text",
    "why are you messaging",
    "why is this number",
    "how did you get my",
    "how did you get this",
    "how did u get my",
    "how do you have my",
    "how you get my",
    "how u get my",
    "where did you get my",
    "where did you get this",
    "who gave you my",
    "who gave you this",
    "never signed up",
    "didnt sign up",
    "did not sign up",
    "never gave you",
    "never opted in",
    "never agreed",
    "didnt ask for",
    "did not ask for",
    "never asked for",
    "spam",
    "spammer",
    "spammers",
    "spamming",
    "scam",
    "scammer",
    "scammers",
    "harass",
    "harassing",
    "harassment",
    "harassed",
    "report you",
    "reported you",
    "reporting you",
    "reporting this",
    "report this number",
    "reported this",
    "block you",
    "blocked you",
    "blocking you",
    "blocking this",
    "block this number",
    "blocked this",
    "im blocking",
    "tcpa",
    "sue you",
    "suing you",
    "lawsuit",
    "what the f",
];

/// Wrong-party replies: the consent, if any, was not this person's. Ambiguous.
const WRONG_PARTY: &[(&str, &str)] = signals![
    "not the owner",
    "dont own",
    "do not own",
    "never owned",
    "no longer own",
    "dont live there",
    "no one by that name",
    "nobody by that name",
    "no one named",
    "nobody named",
    "not my house",
    "not my property",
];

/// Declines of the solicitation. Ambiguous, unless a contrast follows.
const DECLINES: &[(&str, &str)] = signals![
    "not interested",
    "no thanks",
    "no thank you",
    "no thx",
    "not selling",
    "not for sale",
    "not looking to sell",
    "dont want to sell",
    "do not want to sell",
    "no me interesa",
    "no estoy interesado",
    "no estoy interesada",
    "no gracias",
];
/// `not interested at that price, but ...` is negotiation.
const CONTRAST: &[&str] = &[
    "but", "unless", "however", "though", "although", "except", "maybe", "if", "pero",
];
const THANKS: &[&str] = &["thanks", "thank", "thx", "ty", "gracias"];

/// `don't call me, just text`: texts are welcome.
const TEXT_WELCOME: &[&str] = &[
    "text me",
    "just text",
    "text only",
    "only text",
    "text instead",
    "prefer text",
    "prefer texts",
    "prefer texting",
    "texting is fine",
    "text is fine",
    "texting is better",
    "text is better",
    "texting only",
    "via text",
    "by text",
    "send me a text",
    "shoot me a text",
];
/// `don't text me, call me`: calls are welcome.
const CALL_WELCOME: &[&str] = &[
    "call me",
    "just call",
    "call instead",
    "give me a call",
    "prefer a call",
    "prefer calls",
    "call only",
    "only call",
    "phone call",
    "rather talk",
];

/// Stop sign, no entry, prohibited, middle finger.
const STOP_EMOJI: &[char] = &['\u{1F6D1}', '\u{26D4}', '\u{1F6AB}', '\u{1F595}'];

/// Real words one edit away from `stop` that are not typos of it.
const STOP_LOOKALIKES: &[&str] = &[
    "top", "sop", "shop", "step", "stow", "slop", "atop", "stoop", "stomp", "strop", "swop",
    "stoep", "stoa", "stops",
];
const UNSUBSCRIBE_LOOKALIKES: &[&str] = &["subscribe", "subscribed", "resubscribe"];

/// Words an elongation (`pleeease`) may stand for.
const ELONGATION_TARGETS: &[&[&str]] = &[
    FILLER,
    TEXT_NOUNS,
    CALL_NOUNS,
    OTHER_NOUNS,
    STRONG_PROFANITY,
    MILD_PROFANITY,
];

// ---------------------------------------------------------------------------------------------
// Rules 1 and 2.

fn from_opt_out_type(opt_out_type: &str, text: &str) -> Option<Verdict> {
    let t = opt_out_type.trim();
    if t.eq_ignore_ascii_case("stop") {
        Some(Verdict::OptOut {
            confidence: Confidence::Keyword,
            reason: "opt_out_type:stop",
        })
    } else if t.eq_ignore_ascii_case("start") {
        // Twilio also reports custom opt-in keywords as START; name ours when it is one.
        Some(Verdict::OptIn {
            keyword: exact_opt_in(text).unwrap_or("start"),
        })
    } else if t.eq_ignore_ascii_case("help") {
        Some(Verdict::Help)
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

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    text: String,
    /// Sentence punctuation (`.`, `!`, `,`, a dash, a line break, ...) precedes this token.
    brk: bool,
}

fn tokenize(text: &str) -> Vec<Token> {
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
fn unicode_chars(text: &str) -> Vec<char> {
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
fn ascii_chars(text: &str) -> Vec<char> {
    text.chars()
        .map(|c| unify_apostrophe(c.to_ascii_lowercase()))
        .collect()
}

fn unify_apostrophe(c: char) -> char {
    match c {
        '\u{2018}' | '\u{2019}' | '\u{02BC}' | '\u{00B4}' | '`' | '\u{2032}' => '\'',
        c => c,
    }
}

/// Combining Diacritical Marks: dropping them folds `más` into `mas`, `número` into `numero`.
fn is_latin_diacritic(c: char) -> bool {
    ('\u{0300}'..='\u{036F}').contains(&c)
}

/// Invisible characters deleted outright, so `st\u{200B}op` is `stop`.
fn is_ignorable(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{FE00}'..='\u{FE0F}'
        | '\u{20D0}'..='\u{20FF}' | '\u{E0000}'..='\u{E007F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Where a run of in-word joiners starting at `i` ends (`i` if there is none): one apostrophe
/// or hyphen, or any number of censoring asterisks.
fn joiner_end(chars: &[char], i: usize) -> usize {
    match chars[i] {
        '\'' | '-' | '\u{2010}' => i + 1,
        '*' => i + chars[i..].iter().take_while(|&&c| c == '*').count(),
        _ => i,
    }
}

fn is_break(c: char) -> bool {
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
fn join_spelled(tokens: Vec<Token>) -> Vec<Token> {
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
fn fold_pairs(tokens: Vec<Token>) -> Vec<Token> {
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

/// Every phrase of every list [`Message::occurrences`] searches.
fn all_phrases() -> impl Iterator<Item = &'static str> {
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
static VOCABULARY: std::sync::LazyLock<std::collections::HashMap<&'static str, u16>> =
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
struct Phrases {
    /// Each phrase split into words, in list order.
    words: Vec<Vec<&'static str>>,
    /// The same, as [`VOCABULARY`] numbers.
    ids: Vec<Vec<u16>>,
    /// For each word number, the phrases starting with it, in list order.
    by_first: Vec<Vec<usize>>,
}

impl Phrases {
    fn new(phrases: impl Iterator<Item = &'static str>) -> Phrases {
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
    fn len_of(&self, k: usize) -> usize {
        self.words[k].len()
    }
}

type Index = std::sync::LazyLock<Phrases>;

static REVOCATION_PHRASES: Index = Index::new(|| Phrases::new(REVOCATIONS.iter().map(|r| r.words)));
static SHORT_REVOCATION_PHRASES: Index =
    Index::new(|| Phrases::new(SHORT_REVOCATIONS.iter().map(|r| r.words)));
static VERB_PHRASES: Index = Index::new(|| Phrases::new(VERBS.iter().map(|v| v.words)));
/// Complaints then wrong-party replies, one list as rule 4 reads them.
static SIGNAL_PHRASES: Index =
    Index::new(|| Phrases::new(COMPLAINTS.iter().chain(WRONG_PARTY).map(|s| s.0)));
static DECLINE_PHRASES: Index = Index::new(|| Phrases::new(DECLINES.iter().map(|s| s.0)));
static TEXT_WELCOME_PHRASES: Index = Index::new(|| Phrases::new(TEXT_WELCOME.iter().copied()));
static CALL_WELCOME_PHRASES: Index = Index::new(|| Phrases::new(CALL_WELCOME.iter().copied()));

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
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The verdict without its details, for the table.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Class {
        Keyword,
        Phrase,
        Ambiguous,
        OptIn,
        Help,
        None,
    }
    use Class::{Ambiguous, Help, Keyword, OptIn, Phrase};

    fn class(v: Verdict) -> Class {
        match v {
            Verdict::OptOut { confidence, .. } => match confidence {
                Confidence::Keyword => Keyword,
                Confidence::Phrase => Phrase,
                Confidence::Ambiguous => Ambiguous,
            },
            Verdict::OptIn { .. } => OptIn,
            Verdict::Help => Help,
            Verdict::None => Class::None,
        }
    }

    fn reason(text: &str) -> &'static str {
        match classify(text, None) {
            Verdict::OptOut { reason, .. } => reason,
            other => panic!("{text:?} is not an opt-out: {other:?}"),
        }
    }

    /// Real-world phrasings and the verdict class each must get.
    const TABLE: &[(&str, Class)] = &[
        // Rule 2: every opt-out keyword, in any case, padded, punctuated, decorated.
        ("STOP", Keyword),
        ("stop", Keyword),
        ("Stop", Keyword),
        ("sToP", Keyword),
        ("  stop \n", Keyword),
        ("STOP.", Keyword),
        ("stop!!!", Keyword),
        ("Stop 🛑", Keyword),
        ("\"STOP\"", Keyword),
        ("*stop*", Keyword),
        ("S.T.O.P", Keyword),
        ("s t o p", Keyword),
        ("ＳＴＯＰ", Keyword),
        ("Ｓｔｏｐ！", Keyword),
        ("𝐒𝐓𝐎𝐏", Keyword),
        ("st\u{200B}op", Keyword),
        ("STOPALL", Keyword),
        ("stop all", Keyword),
        ("Stop All.", Keyword),
        ("UNSUBSCRIBE", Keyword),
        ("Unsubscribe", Keyword),
        ("un-subscribe", Keyword),
        ("CANCEL", Keyword),
        ("cancel.", Keyword),
        ("END", Keyword),
        ("End", Keyword),
        ("QUIT", Keyword),
        ("quit!", Keyword),
        ("REVOKE", Keyword),
        ("Revoke.", Keyword),
        ("OPTOUT", Keyword),
        ("opt-out", Keyword),
        ("Opt Out", Keyword),
        ("opt out!", Keyword),
        ("OPT–OUT", Keyword),
        // Rule 2: opt-in is exact; help is normalised.
        ("START", OptIn),
        ("start", OptIn),
        (" Unstop ", OptIn),
        ("YES", OptIn),
        ("yes", OptIn),
        ("ＹＥＳ", OptIn),
        ("HELP", Help),
        ("help?", Help),
        ("Info", Help),
        // Rule 6: chatty replies are not re-consent.
        ("Yes!", Class::None),
        ("yes please", Class::None),
        ("yes I'm interested", Class::None),
        ("start texting me again", Class::None),
        ("Start.", Class::None),
        ("help me sell my house", Class::None),
        // Rule 3: short messages built around a keyword.
        ("STOP!!", Keyword),
        ("stop please", Phrase),
        ("Please stop", Phrase),
        ("PLEASE STOP!!!", Phrase),
        ("STOP STOP STOP", Phrase),
        ("Stop it", Phrase),
        ("end this", Phrase),
        ("I said stop", Phrase),
        ("stop now", Phrase),
        ("no stop", Phrase),
        ("Don't! Stop!", Phrase),
        ("STOOOOP", Phrase),
        ("pleeease stop", Phrase),
        ("Remove", Phrase),
        ("remove please", Phrase),
        ("unsubscribe please", Phrase),
        ("I want to opt out", Phrase),
        ("cancel it", Phrase),
        ("I quit", Phrase),
        ("Stop for good", Phrase),
        ("Stop at once", Phrase),
        ("STOP means STOP", Phrase),
        ("No. Remove me.", Phrase),
        ("fuuuuck off", Phrase),
        ("I'm done with these texts", Phrase),
        ("We're done here. End.", Phrase),
        ("Why won't you stop texting me", Phrase),
        ("Remove his number too please", Phrase),
        ("Stop, who is this?", Phrase),
        ("go away", Phrase),
        ("no more", Phrase),
        // Rule 3: free-text revocations.
        ("Stop texting me", Phrase),
        ("please stop messaging me", Phrase),
        ("Stop contacting me.", Phrase),
        ("stop calling me", Phrase),
        ("Stop sending me this stuff", Phrase),
        ("Stop sending me offers on my house", Phrase),
        ("quit texting me", Phrase),
        ("No more texts please", Phrase),
        ("no more messages", Phrase),
        ("end these texts", Phrase),
        ("Stop all texts", Phrase),
        ("I'd like to stop receiving these messages", Phrase),
        ("Remove me from your list", Phrase),
        ("please remove my number", Phrase),
        ("Take me off your list", Phrase),
        ("take me off this list now", Phrase),
        ("Unsubscribe me", Phrase),
        ("opt me out", Phrase),
        ("Don't text me", Phrase),
        ("do not text this number", Phrase),
        ("dont text me anymore", Phrase),
        ("Don’t contact me again", Phrase),
        ("do not contact", Phrase),
        ("don't call me", Phrase),
        ("Do not call or text me again", Phrase),
        ("Put me on your do not call list", Phrase),
        ("Leave me alone", Phrase),
        ("Lose my number", Phrase),
        ("delete my number", Phrase),
        ("Wrong number", Phrase),
        ("You have the wrong number", Phrase),
        ("sorry wrong person", Phrase),
        ("Not interested stop", Phrase),
        ("Not interested, STOP", Phrase),
        ("I revoke my consent to be contacted", Phrase),
        ("Please stop, I am not selling my house", Phrase),
        ("I am not selling. Stop.", Phrase),
        ("I already told you to stop", Phrase),
        ("Please don't. Stop texting me now.", Phrase),
        (
            "Not interested. Please remove my number from your list.",
            Phrase,
        ),
        ("How did you get my number? Stop texting me.", Phrase),
        ("STOP\n-- Sent from my iPhone", Phrase),
        ("don't call me or text me", Phrase),
        // Rule 3: profanity.
        ("stop f***ing texting me", Phrase),
        ("Stop fucking texting me", Phrase),
        ("f*** off", Phrase),
        ("fuck off", Phrase),
        ("STOP TEXTING ME ASSHOLE", Phrase),
        ("what the hell stop", Phrase),
        ("stop this shit", Phrase),
        // Rule 3: Spanish.
        ("alto", Phrase),
        ("ALTO!", Phrase),
        ("Para", Phrase),
        ("basta", Phrase),
        ("Basta ya", Phrase),
        ("para por favor", Phrase),
        ("No más", Phrase),
        ("no mas", Phrase),
        ("No más mensajes por favor", Phrase),
        ("Deja de escribirme", Phrase),
        ("no me escribas más", Phrase),
        ("No me envíes mensajes", Phrase),
        ("Número equivocado", Phrase),
        ("quiero darme de baja", Phrase),
        ("stop por favor", Phrase),
        ("basta de mensajes", Phrase),
        ("alto ahí", Phrase),
        ("No me llames", Phrase),
        // Rule 4: ambiguous, an opt-out flagged for a human.
        ("stp", Ambiguous),
        ("STIP", Ambiguous),
        ("sotp", Ambiguous),
        ("stoo", Ambiguous),
        ("Stopp", Ambiguous),
        ("stpo", Ambiguous),
        ("st0p", Ambiguous),
        ("stp pls", Ambiguous),
        ("Unsubcribe", Ambiguous),
        ("unsuscribe", Ambiguous),
        ("can you stop", Ambiguous),
        ("who is this stop", Ambiguous),
        ("how do I unsubscribe", Ambiguous),
        ("don't stop", Ambiguous),
        ("please don't stop", Ambiguous),
        ("don't remove me", Ambiguous),
        ("why do you keep texting", Ambiguous),
        ("Why do you keep texting me?", Ambiguous),
        ("how did you get my number", Ambiguous),
        ("Who gave you my number?", Ambiguous),
        ("I never signed up for this", Ambiguous),
        ("This is spam", Ambiguous),
        ("is this a scam?", Ambiguous),
        ("I'm reporting you to the FCC", Ambiguous),
        (
            "I can see you keep texting me, I will stop answering",
            Ambiguous,
        ),
        ("I'm not the owner", Ambiguous),
        ("Not interested", Ambiguous),
        ("not interested thanks", Ambiguous),
        ("No thanks", Ambiguous),
        ("not for sale", Ambiguous),
        ("No me interesa", Ambiguous),
        ("wtf", Ambiguous),
        ("🖕", Ambiguous),
        ("🛑 texting me", Ambiguous),
        ("I'm not interested in selling right now", Ambiguous),
        ("unsubscribed", Ambiguous),
        ("I don't own that property anymore", Ambiguous),
        ("u r a scammer", Ambiguous),
        ("dont stop texting me", Ambiguous),
        ("you never stop", Ambiguous),
        ("who the fuck is this", Ambiguous),
        ("🛑", Ambiguous),
        ("⛔⛔", Ambiguous),
        ("Don't call me, just text", Ambiguous),
        ("don't text me, call me instead", Ambiguous),
        ("you guys won't stop", Ambiguous),
        ("I asked you to cancel", Ambiguous),
        ("can we stop this, my wife handles the house", Ambiguous),
        (
            "Did you get my message about the unsubscribe link",
            Ambiguous,
        ),
        // Rule 5: benign uses of stop, end, cancel, quit, remove. Must be None.
        ("don't stop the offer, I'm interested", Class::None),
        ("I'll stop by tomorrow", Class::None),
        ("Stop by anytime after 5", Class::None),
        ("can we meet at the bus stop", Class::None),
        ("The bus stop is right in front of the house", Class::None),
        ("the end of the month works", Class::None),
        ("At the end of the day I want a fair price", Class::None),
        ("It's the last house on a dead end street", Class::None),
        ("end of day works", Class::None),
        ("Did the seller end up accepting?", Class::None),
        ("We can end the lease early if you buy", Class::None),
        (
            "I can't quit thinking about the house, let's talk",
            Class::None,
        ),
        ("I quit my job so I need to sell fast", Class::None),
        ("Quit playing, what's your real offer?", Class::None),
        (
            "Can we cancel the appointment and do Friday instead?",
            Class::None,
        ),
        ("Please cancel the showing on Tuesday", Class::None),
        ("cancel tomorrow, something came up", Class::None),
        ("What happens if I cancel the contract later?", Class::None),
        ("I need to remove the old shed before closing", Class::None),
        (
            "Remove the tenant first, then we can talk price",
            Class::None,
        ),
        ("I won't stop until I get a fair price", Class::None),
        ("please don't stop texting me, I want updates", Class::None),
        ("we drove non-stop from Dallas to see it", Class::None),
        ("the weekend works for me", Class::None),
        ("I stopped by the house yesterday", Class::None),
        ("El precio es muy alto", Class::None),
        ("para mañana?", Class::None),
        ("No más de 200 mil", Class::None),
        ("Not interested at 200k, but I'd take 250k", Class::None),
        // Rule 5: ordinary conversation.
        ("Is 3pm ok?", Class::None),
        ("call me back", Class::None),
        ("what's your best offer", Class::None),
        ("please send the contract", Class::None),
        ("Who is this?", Class::None),
        ("No", Class::None),
        ("Sounds good 👍", Class::None),
        ("holy shit that's a good offer", Class::None),
        ("Cancel that, I'll come at 5 instead", Class::None),
        ("stop lowballing me, 300k or nothing", Class::None),
        ("Stop worrying, we'll get it done", Class::None),
        ("I don't want you to stop texting me", Class::None),
        ("Please stop by the house at 5", Class::None),
        (
            "not interested in selling now, maybe next year",
            Class::None,
        ),
        ("subscribe", Class::None),
        ("step", Class::None),
        ("top", Class::None),
        ("", Class::None),
        ("   ", Class::None),
        ("🙂", Class::None),
    ];

    #[test]
    fn every_table_phrasing_gets_its_verdict_class() {
        let wrong: Vec<String> = TABLE
            .iter()
            .filter_map(|&(text, want)| {
                let got = classify(text, None);
                (class(got) != want).then(|| format!("{text:?}: want {want:?}, got {got:?}"))
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{} wrong:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }

    #[test]
    fn the_table_has_at_least_sixty_rows_and_fifteen_benign_trigger_words() {
        assert!(TABLE.len() >= 60, "{}", TABLE.len());
        let benign_with_trigger = TABLE
            .iter()
            .filter(|(text, want)| {
                *want == Class::None
                    && normalize(text)
                        .split(' ')
                        .any(|w| ["stop", "end", "cancel", "quit", "remove"].contains(&w))
            })
            .count();
        assert!(benign_with_trigger >= 15, "{benign_with_trigger}");
    }

    #[test]
    fn reasons_name_the_rule_that_fired() {
        assert_eq!(reason("STOP"), "keyword:stop");
        assert_eq!(reason("opt-out"), "keyword:optout");
        assert_eq!(reason("stop all"), "keyword:stopall");
        assert_eq!(reason("remove me"), "phrase:remove me");
        assert_eq!(reason("stop texting me"), "phrase:stop+messages");
        assert_eq!(reason("stop please"), "short:stop");
        assert_eq!(reason("don't stop"), "ambiguous:stop+negation");
        assert_eq!(reason("stip"), "typo:stop");
        assert_eq!(reason("alto"), "spanish:alto");
        assert_eq!(
            reason("how did you get my number"),
            "ambiguous:how did you get my"
        );
        assert_eq!(
            reason("why is this so hard, stop it already"),
            "imperative:stop"
        );
        assert_eq!(reason("can you stop"), "ambiguous:stop");
    }

    #[test]
    fn twilio_opt_out_type_wins_over_the_body() {
        let stop = Verdict::OptOut {
            confidence: Confidence::Keyword,
            reason: "opt_out_type:stop",
        };
        assert_eq!(classify("arrêt", Some("STOP")), stop);
        assert_eq!(classify("whatever", Some(" stop ")), stop);
        assert_eq!(classify("STOP", Some("Stop")), stop);
        assert_eq!(
            classify("STOP", Some("START")),
            Verdict::OptIn { keyword: "start" }
        );
        assert_eq!(
            classify("unstop", Some("start")),
            Verdict::OptIn { keyword: "unstop" }
        );
        assert_eq!(
            classify("yes", Some("START")),
            Verdict::OptIn { keyword: "yes" }
        );
        assert_eq!(classify("stop", Some("HELP")), Verdict::Help);
    }

    #[test]
    fn an_unknown_or_empty_opt_out_type_falls_back_to_the_body() {
        assert_eq!(classify("STOP", Some("")), classify("STOP", None));
        assert_eq!(classify("hello", Some("UNKNOWN")), Verdict::None);
        assert_eq!(class(classify("remove me", Some("  "))), Phrase);
    }

    #[test]
    fn normalize_folds_case_width_punctuation_and_emoji() {
        let cases = [
            ("  STOP!!! ", "stop"),
            ("Ｓｔｏｐ 🛑", "stop"),
            ("𝐒𝐓𝐎𝐏", "stop"),
            ("S.T.O.P.", "stop"),
            ("opt-out", "optout"),
            ("Opt Out", "optout"),
            ("OPTOUT", "optout"),
            ("opt‐out", "optout"),
            ("STOP ALL", "stopall"),
            ("stop   all\tnow", "stopall now"),
            ("Don’t text me!", "dont text me"),
            ("don't", "dont"),
            ("No más", "no mas"),
            ("número equivocado", "numero equivocado"),
            ("f***ing", "fing"),
            ("f*** off", "f off"),
            ("non-stop", "nonstop"),
            ("stop -- please", "stop please"),
            ("st\u{00AD}op", "stop"),
            ("1️⃣ 2", "1 2"),
            ("a b", "a b"),
            ("", ""),
            ("🙂🙂", ""),
            ("ﬁne", "fine"),
            ("İstanbul", "istanbul"),
            ("안녕하세요", "안녕하세요"),
            ("停止", "停止"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "{input:?}");
        }
    }

    #[test]
    fn normalize_is_idempotent_on_past_proptest_failures() {
        // `ŉ` decomposes into `ʼn`; the second input once joined combining marks out of order.
        for text in ["ŉ", "\u{1e008} \u{1bc9e}🂱𐘀", "a\u{1e008}'\u{1bc9e}b"] {
            let once = normalize(text);
            assert_eq!(normalize(&once), once, "{text:?}");
        }
    }

    #[test]
    fn every_lexicon_entry_is_already_normalised() {
        let mut entries: Vec<&str> = Vec::new();
        entries.extend(TRIGGERS.iter().map(|t| t.word));
        entries.extend(REVOCATIONS.iter().chain(SHORT_REVOCATIONS).map(|r| r.words));
        entries.extend(VERBS.iter().map(|v| v.words));
        entries.extend(
            COMPLAINTS
                .iter()
                .chain(WRONG_PARTY)
                .chain(DECLINES)
                .map(|(p, _)| *p),
        );
        for list in [
            FILLER,
            VERB_SKIP,
            TEXT_NOUNS,
            CALL_NOUNS,
            OTHER_NOUNS,
            STRONG_PROFANITY,
            MILD_PROFANITY,
            NEGATORS,
            IMPERATIVE_BEFORE,
            TEXT_WELCOME,
            CALL_WELCOME,
            STOP_LOOKALIKES,
            APPOINTMENT_WORDS,
        ] {
            entries.extend(list);
        }
        for e in entries {
            assert_eq!(
                normalize(e),
                e,
                "lexicon entry {e:?} is not in normalised form"
            );
        }
    }

    #[test]
    fn every_typo_of_stop_one_keyboard_slip_away_is_ambiguous() {
        for typo in [
            "stp", "stip", "sotp", "stoo", "stopp", "tsop", "sstop", "srop", "stlp",
        ] {
            assert_eq!(reason(typo), "typo:stop", "{typo}");
        }
        for word in STOP_LOOKALIKES {
            assert_eq!(classify(word, None), Verdict::None, "{word}");
        }
    }

    #[test]
    fn verdicts_serialise_as_snake_case_evidence() {
        let v = classify("STOP", None);
        assert_eq!(
            serde_json::to_value(v).unwrap(),
            serde_json::json!({
                "verdict": "opt_out",
                "confidence": "keyword",
                "reason": "keyword:stop",
            })
        );
        assert_eq!(
            serde_json::to_value(classify("yes", None)).unwrap(),
            serde_json::json!({"verdict": "opt_in", "keyword": "yes"})
        );
        assert_eq!(
            serde_json::to_value(Verdict::Help).unwrap(),
            serde_json::json!({"verdict": "help"})
        );
        assert_eq!(
            serde_json::to_value(Verdict::None).unwrap(),
            serde_json::json!({"verdict": "none"})
        );
        assert_eq!(
            serde_json::to_value(Confidence::Ambiguous).unwrap(),
            serde_json::json!("ambiguous")
        );
    }

    #[test]
    fn only_ambiguous_opt_outs_need_review() {
        assert!(Confidence::Ambiguous.needs_review());
        assert!(!Confidence::Phrase.needs_review());
        assert!(!Confidence::Keyword.needs_review());
        assert!(classify("can you stop", None).is_opt_out());
        assert!(!classify("yes", None).is_opt_out());
    }

    /// Words the rules look at, to build messages that reach deep into them.
    fn lexicon_word() -> impl Strategy<Value = String> {
        let mut words: Vec<&str> = TRIGGERS.iter().map(|t| t.word).collect();
        for list in [
            FILLER,
            TEXT_NOUNS,
            NEGATORS,
            STOP_BENIGN_AFTER,
            STRONG_PROFANITY,
        ] {
            words.extend(list);
        }
        words.extend([
            "yes",
            "start",
            "help",
            "but",
            "interested",
            "my",
            "number",
            "me",
        ]);
        prop_oneof![
            4 => prop::sample::select(words).prop_map(str::to_owned),
            1 => "[a-zA-Z]{1,6}",
            1 => "[ .,!?*'\\-🛑]{1,3}",
        ]
    }

    const BENIGN_SUFFIXES: &[&str] = &[
        "",
        " ",
        "!",
        ".",
        " 🙏",
        " please",
        " thanks",
        " now",
        " yes",
        " start",
        " unstop",
        "\nSent from my iPhone",
        " I'm interested",
        " yes please start",
    ];

    fn indexes() -> [&'static Phrases; 7] {
        [
            &REVOCATION_PHRASES,
            &SHORT_REVOCATION_PHRASES,
            &VERB_PHRASES,
            &SIGNAL_PHRASES,
            &DECLINE_PHRASES,
            &TEXT_WELCOME_PHRASES,
            &CALL_WELCOME_PHRASES,
        ]
    }

    #[test]
    fn every_phrase_word_has_a_number() {
        assert!(VOCABULARY.len() < usize::from(u16::MAX));
        for phrases in indexes() {
            assert!(phrases.ids.iter().flatten().all(|&id| id != u16::MAX));
        }
    }

    /// A word of some phrase (so that messages hold many whole phrases), or any word.
    fn phrase_word() -> impl Strategy<Value = String> {
        let mut words: Vec<&'static str> = Vec::new();
        for phrases in indexes() {
            words.extend(phrases.words.iter().flatten());
        }
        prop_oneof![
            6 => prop::sample::select(words).prop_map(str::to_owned),
            1 => "[a-z]{1,6}",
        ]
    }

    /// The nested loop the phrase index replaced: every phrase at every position.
    fn occurrences_by_scanning(m: &Message, phrases: &Phrases) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        for (k, words) in phrases.words.iter().enumerate() {
            for i in 0..m.words.len() {
                if words
                    .iter()
                    .enumerate()
                    .all(|(n, p)| m.words.get(i + n) == Some(p))
                {
                    found.push((k, i));
                }
            }
        }
        found
    }

    proptest! {
        #[test]
        fn the_ascii_shortcut_folds_like_the_unicode_passes(text in "[ -~\t\n\r]{0,80}") {
            prop_assert_eq!(ascii_chars(&text), unicode_chars(&text));
        }

        #[test]
        fn the_phrase_index_finds_what_scanning_every_phrase_finds(
            words in prop::collection::vec(phrase_word(), 0..14),
            sep in prop::sample::select(vec![" ", ", ", ". "]),
        ) {
            let tokens = tokenize(&words.join(sep));
            let m = Message::new(&tokens);
            for phrases in indexes() {
                prop_assert_eq!(m.occurrences(phrases), occurrences_by_scanning(&m, phrases));
            }
        }

        #[test]
        fn classify_never_panics(
            text in any::<String>(),
            kind in proptest::option::of(any::<String>()),
        ) {
            let _ = classify(&text, kind.as_deref());
        }

        #[test]
        fn classify_never_panics_on_messages_made_of_rule_words(
            words in prop::collection::vec(lexicon_word(), 0..12),
            sep in prop::sample::select(vec![" ", ", ", ". ", "! ", "-", "\n"]),
        ) {
            let _ = classify(&words.join(sep), None);
        }

        #[test]
        fn appending_text_to_stop_never_turns_it_into_an_opt_in(
            suffix in prop::sample::select(BENIGN_SUFFIXES.to_vec()),
            tail in ".{0,40}",
            stop in prop::sample::select(vec!["STOP", "stop", "Stop", "STOPALL", "UNSUBSCRIBE"]),
        ) {
            let text = format!("{stop}{suffix}");
            prop_assert!(classify(&text, None).is_opt_out(), "{text:?}");
            let longer = format!("{stop}{suffix} {tail}");
            prop_assert!(!matches!(classify(&longer, None), Verdict::OptIn { .. }), "{longer:?}");
        }

        #[test]
        fn a_keyword_with_only_punctuation_and_emoji_around_it_stays_a_keyword(
            before in "[ \\t\\n.!?\"'*🛑✋🙏]{0,4}",
            after in "[ \\t\\n.!?\"'*🛑✋🙏]{0,4}",
            i in 0usize..8,
        ) {
            let keywords =
                ["stop", "STOPALL", "Unsubscribe", "cancel", "END", "quit", "revoke", "OPTOUT"];
            let keyword = keywords[i];
            let text = format!("{before}{keyword}{after}");
            let got = classify(&text, None);
            prop_assert!(
                matches!(got, Verdict::OptOut { confidence: Confidence::Keyword, .. }),
                "{:?} gave {:?}", text, got
            );
        }

        #[test]
        fn ascii_case_does_not_change_the_verdict(text in "[ -~]{0,40}") {
            prop_assert_eq!(
                classify(&text.to_ascii_uppercase(), None),
                classify(&text.to_ascii_lowercase(), None)
            );
        }

        #[test]
        fn normalize_is_idempotent(text in any::<String>()) {
            let once = normalize(&text);
            prop_assert_eq!(normalize(&once), once.clone());
            prop_assert!(!once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "));
        }
    }
}
