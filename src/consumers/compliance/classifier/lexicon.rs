//! The classifier's lexicon: every keyword, phrase, word list and benign context the rules of
//! [`super`] look for, as data. Changing what counts as an opt-out is an edit here; how the
//! lists are used is the logic in `mod.rs`.

/// A message of at most this many words is "short": a trigger in it is read as a command.
pub const SHORT_MAX_WORDS: usize = 4;

pub(super) const OPT_IN_KEYWORDS: [&str; 3] = ["start", "unstop", "yes"];
pub(super) const HELP_KEYWORDS: [&str; 2] = ["help", "info"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
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
pub(super) struct Trigger {
    pub(super) word: &'static str,
    pub(super) scope: Scope,
    pub(super) keyword: &'static str,
    pub(super) short: &'static str,
    pub(super) imperative: &'static str,
    pub(super) profanity: &'static str,
    pub(super) ambiguous: &'static str,
    pub(super) negated: &'static str,
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
pub(super) const TRIGGERS: &[Trigger] = &[
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

pub(super) fn trigger(word: &str) -> Option<&'static Trigger> {
    TRIGGERS.iter().find(|t| t.word == word)
}

/// Which channel a phrase refuses, for `don't call me, just text` (a preference, not a
/// revocation of texts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Channel {
    Any,
    Text,
    Call,
}

/// A phrase that revokes consent wherever it appears.
#[derive(Debug)]
pub(super) struct Revocation {
    pub(super) words: &'static str,
    pub(super) reason: &'static str,
    pub(super) negated: &'static str,
    pub(super) channel: Channel,
    /// The phrase does not count when one of these words follows (`no más de 200` = "no more
    /// than 200").
    pub(super) not_before: &'static [&'static str],
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
pub(super) const REVOCATIONS: &[Revocation] = &[
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
pub(super) const SHORT_REVOCATIONS: &[Revocation] = &[
    revocation!("go away"),
    revocation!("get lost"),
    revocation!("back off"),
    revocation!("buzz off"),
    revocation!("no more"),
    revocation!("knock it off"),
    revocation!("cut it out"),
];

/// A verb that revokes consent when a messaging noun follows (`stop` … `texts`).
pub(super) struct Verb {
    pub(super) words: &'static str,
    pub(super) reason: &'static str,
    pub(super) negated: &'static str,
    /// `cancel the call` is about an appointment; `cancel the texts` is a revocation.
    pub(super) calls: bool,
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

pub(super) const VERBS: &[Verb] = &[
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
pub(super) const VERB_SKIP: &[&str] = &[
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

pub(super) const TEXT_NOUNS: &[&str] = &[
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

pub(super) const CALL_NOUNS: &[&str] = &["call", "calls", "calling", "robocall", "robocalls"];

pub(super) const OTHER_NOUNS: &[&str] = &[
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
pub(super) const FILLER: &[&str] = &[
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
pub(super) const IMPERATIVE_BEFORE: &[&str] = &[
    "please", "pls", "plz", "pleas", "just", "kindly", "said", "ok", "okay", "no", "nope", "nah",
];

/// Short-message negators (`never stop`, `not stop`, `can't stop`).
pub(super) const NEGATORS: &[&str] = &[
    "dont", "didnt", "doesnt", "never", "not", "wont", "cant", "cannot", "couldnt", "wouldnt",
    "shouldnt", "nunca",
];

pub(super) const STRONG_PROFANITY: &[&str] = &[
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
pub(super) const MILD_PROFANITY: &[&str] = &[
    "shit", "shitty", "bullshit", "sht", "damn", "dammit", "damnit", "goddamn", "hell", "crap",
    "crappy", "freaking", "freakin", "frickin", "fricking", "frigging", "friggin", "effing",
    "bloody", "bs", "piss", "pissed", "heck",
];

/// Benign neighbours of `stop`: `bus stop`, `stop by`.
pub(super) const STOP_BENIGN_BEFORE: &[&str] = &[
    "bus", "a", "the", "one", "pit", "truck", "last", "next", "first", "rest", "gas", "quick",
    "full", "non", "whistle",
];
pub(super) const STOP_BENIGN_AFTER: &[&str] = &[
    "by", "over", "in", "at", "off", "sign", "signs", "light", "lights", "loss",
];
/// `stop|quit playing`: haggling, not revoking.
pub(super) const GERUND_BENIGN_AFTER: &[&str] = &[
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
pub(super) const QUIT_BENIGN_AFTER: &[&str] = &[
    "my", "his", "her", "their", "our", "job", "work", "smoking", "drinking",
];
pub(super) const END_BENIGN_BEFORE: &[&str] = &[
    "the", "an", "week", "month", "year", "quarter", "back", "front", "high", "low", "dead",
    "deep", "west", "east", "north", "south", "tail", "rear", "far", "other", "upper", "lower",
    "no", "loose", "split", "lease",
];
pub(super) const END_BENIGN_AFTER: &[&str] = &[
    "of", "up", "date", "unit", "units", "table", "tables", "lot", "result", "game", "user",
    "goal", "point", "zone", "cap", "caps", "loan", "buyer", "buyers", "tenant", "tenants", "line",
];
/// `cancel` with one of these within three words is about a meeting or a deal.
pub(super) const APPOINTMENT_WORDS: &[&str] = &[
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
pub(super) const REMOVE_BENIGN_AFTER: &[&str] = &[
    "the", "a", "an", "that", "those", "some", "any", "his", "her", "their",
];
pub(super) const REMOVE_PERSONAL: &[&str] = &[
    "number", "numbers", "name", "names", "info", "contact", "phone", "cell", "me", "us",
];

/// `(phrase, "ambiguous:<phrase>")` pairs.
macro_rules! signals {
    ($($p:literal),* $(,)?) => { &[$(($p, concat!("ambiguous:", $p))),*] };
}

/// Complaints: someone annoyed at being texted. Ambiguous.
pub(super) const COMPLAINTS: &[(&str, &str)] = signals![
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
pub(super) const WRONG_PARTY: &[(&str, &str)] = signals![
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
pub(super) const DECLINES: &[(&str, &str)] = signals![
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
pub(super) const CONTRAST: &[&str] = &[
    "but", "unless", "however", "though", "although", "except", "maybe", "if", "pero",
];
pub(super) const THANKS: &[&str] = &["thanks", "thank", "thx", "ty", "gracias"];

/// `don't call me, just text`: texts are welcome.
pub(super) const TEXT_WELCOME: &[&str] = &[
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
pub(super) const CALL_WELCOME: &[&str] = &[
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
pub(super) const STOP_EMOJI: &[char] = &['\u{1F6D1}', '\u{26D4}', '\u{1F6AB}', '\u{1F595}'];

/// Real words one edit away from `stop` that are not typos of it.
pub(super) const STOP_LOOKALIKES: &[&str] = &[
    "top", "sop", "shop", "step", "stow", "slop", "atop", "stoop", "stomp", "strop", "swop",
    "stoep", "stoa", "stops",
];
pub(super) const UNSUBSCRIBE_LOOKALIKES: &[&str] = &["subscribe", "subscribed", "resubscribe"];

/// Words an elongation (`pleeease`) may stand for.
pub(super) const ELONGATION_TARGETS: &[&[&str]] = &[
    FILLER,
    TEXT_NOUNS,
    CALL_NOUNS,
    OTHER_NOUNS,
    STRONG_PROFANITY,
    MILD_PROFANITY,
];

// ---------------------------------------------------------------------------------------------
// Rules 1 and 2.
