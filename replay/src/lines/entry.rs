//! The numbers a provider lists, checked, and the `[[lines]]` ids made for them.
//!
//! Provider answers are hostile input: a listed number is kept only when it is E.164 exactly
//! (no "normalising" of whatever text came back) and a Quo id only when it has the `PN…`
//! shape the configuration accepts; the rest is skipped and reported. Names are free text
//! (quotes, newlines, emoji): they never reach the TOML unescaped (toml_edit quotes values,
//! and a name in a comment has its control characters escaped), and an id is made of
//! lower-case ASCII letters, digits and `-` only.
//!
//! # Ids
//!
//! `<quo|twilio>-<slug of the name>` (NFKD, accents dropped, anything else a `-`, at most
//! 32 characters), or `<provider>-<digits of the number>` when the name gives nothing. Where
//! that collides, with another listed line or with an id the file already has, the colliding
//! lines get `-<last four digits>`, then `-<all digits>`; the last resort is a counter in number
//! order. Each step looks at the whole listing, never at which line came first, so the same
//! listing gives the same ids whatever order the provider answers in.

use std::collections::{BTreeMap, BTreeSet};

use hooklog::backfill::quo::QuoLine;
use hooklog::backfill::twilio::TwilioNumber;
use hooklog::gates::config::is_phone_number_id;
use hooklog::phone::normalize_e164;
use hooklog::provider::SendProvider;
use unicode_normalization::UnicodeNormalization;

use crate::output::one_line;

/// Longest slug taken from a name.
const MAX_SLUG: usize = 32;
/// Longest name shown (in a comment or the report).
const MAX_NAME: usize = 80;

/// A number the provider lists, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The provider it sends through.
    pub provider: SendProvider,
    /// E.164.
    pub number: String,
    /// Quo: the `PN…` id.
    pub phone_number_id: Option<String>,
    /// The provider's name for it, if any (raw: escape before showing).
    pub name: Option<String>,
}

impl Listed {
    /// The name on one line, control characters escaped, cut to a readable length.
    pub fn shown_name(&self) -> Option<String> {
        self.name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| one_line(n, Some(MAX_NAME)))
    }
}

/// A listed item left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// What the provider called it (its id or number), escaped.
    pub what: String,
    /// Why it was left out.
    pub why: String,
}

/// The provider's name for the wire and configuration spelling: `Quo`, `Twilio`.
pub fn provider_name(provider: SendProvider) -> &'static str {
    match provider {
        SendProvider::Quo => "Quo",
        SendProvider::Twilio => "Twilio",
    }
}

/// The prefix of the ids made for a provider's lines.
fn id_prefix(provider: SendProvider) -> &'static str {
    match provider {
        SendProvider::Quo => "quo",
        SendProvider::Twilio => "twilio",
    }
}

/// Quo's lines, checked.
pub fn from_quo(lines: Vec<QuoLine>) -> (Vec<Listed>, Vec<Skipped>) {
    let items = lines.into_iter().map(|l| {
        let what = one_line(&l.id, Some(40));
        let checked = if !is_phone_number_id(&l.id) {
            Err("its id is not a PN… phone-number id".to_owned())
        } else {
            Ok(Some(l.id))
        };
        (what, l.number, checked, l.name)
    });
    check(SendProvider::Quo, items)
}

/// Twilio's numbers, checked (the `PN…` sid is not kept: Twilio lines are named by number).
pub fn from_twilio(numbers: Vec<TwilioNumber>) -> (Vec<Listed>, Vec<Skipped>) {
    let items = numbers.into_iter().map(|n| {
        let what = one_line(&n.sid, Some(40));
        (what, n.phone_number, Ok(None), n.friendly_name)
    });
    check(SendProvider::Twilio, items)
}

type Item = (
    String,
    Option<String>,
    Result<Option<String>, String>,
    Option<String>,
);

fn check(provider: SendProvider, items: impl Iterator<Item = Item>) -> (Vec<Listed>, Vec<Skipped>) {
    let (mut listed, mut skipped) = (Vec::<Listed>::new(), Vec::new());
    for (what, number, id, name) in items {
        let checked = id.and_then(|id| {
            let number = number.unwrap_or_default();
            if normalize_e164(&number).as_deref() != Some(number.as_str()) {
                return Err(format!(
                    "its number `{}` is not E.164",
                    one_line(&number, Some(40))
                ));
            }
            if listed.iter().any(|l| l.number == number) {
                return Err(format!("{number} is listed twice; the first is kept"));
            }
            if id.is_some() && listed.iter().any(|l| l.phone_number_id == id) {
                return Err("its id is listed twice; the first is kept".to_owned());
            }
            Ok(Listed {
                provider,
                number,
                phone_number_id: id,
                name,
            })
        });
        match checked {
            Ok(l) => listed.push(l),
            Err(why) => skipped.push(Skipped { what, why }),
        }
    }
    (listed, skipped)
}

/// `name` as an id fragment: NFKD with the marks dropped, lower-case ASCII letters and digits,
/// every other run of characters one `-`, at most [`MAX_SLUG`] characters, no `-` at either
/// end. Empty when nothing is left.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.nfkd() {
        if c.is_ascii_alphanumeric() {
            if out.len() == MAX_SLUG {
                break;
            }
            out.push(c.to_ascii_lowercase());
        } else if unicode_normalization::char::is_combining_mark(c) {
            // The accent of a decomposed letter: "é" is "e" + U+0301.
        } else if !out.is_empty() && !out.ends_with('-') {
            if out.len() + 1 >= MAX_SLUG {
                break;
            }
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

fn digits(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

/// An id for each of `listed` (same order): unique among them and not in `taken` (the ids the
/// file already has). See the module header.
pub fn assign_ids(listed: &[Listed], taken: &BTreeSet<String>) -> Vec<String> {
    let base: Vec<String> = listed
        .iter()
        .map(|l| {
            let prefix = id_prefix(l.provider);
            match slug(l.name.as_deref().unwrap_or_default()) {
                s if s.is_empty() => format!("{prefix}-{}", digits(&l.number)),
                s => format!("{prefix}-{s}"),
            }
        })
        .collect();
    let last4 = |l: &Listed| {
        let d = digits(&l.number);
        d[d.len().saturating_sub(4)..].to_owned()
    };
    let levels: [Vec<String>; 3] = [
        base.clone(),
        base.iter()
            .zip(listed)
            .map(|(b, l)| format!("{b}-{}", last4(l)))
            .collect(),
        base.iter()
            .zip(listed)
            .map(|(b, l)| format!("{b}-{}", digits(&l.number)))
            .collect(),
    ];
    let counts: Vec<BTreeMap<&str, usize>> = levels
        .iter()
        .map(|level| {
            let mut m = BTreeMap::new();
            for id in level {
                *m.entry(id.as_str()).or_insert(0) += 1;
            }
            m
        })
        .collect();
    // The lowest level at which a line's id is unique in the listing and free in the file.
    let mut ids: Vec<String> = (0..listed.len())
        .map(|i| {
            (0..levels.len())
                .find(|&lv| {
                    let id = levels[lv][i].as_str();
                    counts[lv][id] == 1 && !taken.contains(id)
                })
                .map(|lv| levels[lv][i].clone())
                .unwrap_or_default()
        })
        .collect();
    // Lines on different levels can still meet ("Sales" on +1…0100 and a line named
    // "Sales 0100"), and the last level can be taken in the file: a counter settles those, in
    // number order so that it does not depend on the listing's order.
    let mut order: Vec<usize> = (0..listed.len()).collect();
    order.sort_by(|&a, &b| listed[a].number.cmp(&listed[b].number));
    let mut used: BTreeSet<String> = taken.clone();
    let clashing: BTreeSet<usize> = order
        .iter()
        .copied()
        .filter(|&i| ids[i].is_empty() || ids.iter().filter(|id| **id == ids[i]).count() > 1)
        .collect();
    for &i in &order {
        if !clashing.contains(&i) {
            used.insert(ids[i].clone());
        }
    }
    for &i in &order {
        if !clashing.contains(&i) {
            continue;
        }
        let stem = levels[2][i].clone();
        let mut n = 2u32;
        let mut id = stem.clone();
        while used.contains(&id) {
            id = format!("{stem}-{n}");
            n += 1;
        }
        used.insert(id.clone());
        ids[i] = id;
    }
    ids
}
