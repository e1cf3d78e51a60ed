//! Tests of `crate::consumers::compliance::classifier`.

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

fn class(v: Intent) -> Class {
    match v {
        Intent::OptOut { confidence, .. } => match confidence {
            Confidence::Keyword => Keyword,
            Confidence::Phrase => Phrase,
            Confidence::Ambiguous => Ambiguous,
        },
        Intent::OptIn { .. } => OptIn,
        Intent::Help => Help,
        Intent::None => Class::None,
    }
}

fn reason(text: &str) -> &'static str {
    match classify(text, None) {
        Intent::OptOut { reason, .. } => reason,
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
    let stop = Intent::OptOut {
        confidence: Confidence::Keyword,
        reason: "opt_out_type:stop",
    };
    assert_eq!(classify("arrêt", Some("STOP")), stop);
    assert_eq!(classify("whatever", Some(" stop ")), stop);
    assert_eq!(classify("STOP", Some("Stop")), stop);
    assert_eq!(
        classify("STOP", Some("START")),
        Intent::OptIn { keyword: "start" }
    );
    assert_eq!(
        classify("unstop", Some("start")),
        Intent::OptIn { keyword: "unstop" }
    );
    assert_eq!(
        classify("yes", Some("START")),
        Intent::OptIn { keyword: "yes" }
    );
    assert_eq!(classify("stop", Some("HELP")), Intent::Help);
}

#[test]
fn an_unknown_or_empty_opt_out_type_falls_back_to_the_body() {
    assert_eq!(classify("STOP", Some("")), classify("STOP", None));
    assert_eq!(classify("hello", Some("UNKNOWN")), Intent::None);
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
        assert_eq!(classify(word, None), Intent::None, "{word}");
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
        serde_json::to_value(Intent::Help).unwrap(),
        serde_json::json!({"verdict": "help"})
    );
    assert_eq!(
        serde_json::to_value(Intent::None).unwrap(),
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
        prop_assert!(!matches!(classify(&longer, None), Intent::OptIn { .. }), "{longer:?}");
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
            matches!(got, Intent::OptOut { confidence: Confidence::Keyword, .. }),
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
