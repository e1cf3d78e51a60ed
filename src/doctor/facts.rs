//! What one check learns and a later one uses: the providers' accounts ([`Accounts`], from the
//! credential checks), the Quo lines to judge ([`quo_lines`]) and the log's window ([`Seen`],
//! from the activity reader).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::report::cut;
use crate::config::Config;
use crate::provider::SendProvider;

/// A Quo line of the workspace.
#[derive(Clone, Debug, Deserialize)]
pub struct QuoNumber {
    /// `PN…`.
    pub id: String,
    /// E.164.
    #[serde(default)]
    pub number: Option<String>,
}

/// What the credential checks learnt, for the later checks.
#[derive(Debug, Default)]
pub struct Accounts {
    /// The workspace's numbers, when the Quo key worked.
    pub quo_numbers: Option<Vec<QuoNumber>>,
    /// Whether the Twilio credentials worked.
    pub twilio_ok: bool,
}

/// What the window holds.
#[derive(Debug)]
pub struct Seen {
    /// Where it was read from, or why it could not be.
    pub from: Result<String, String>,
    /// Last Quo webhook received, by event type (the canonical dotted name).
    pub by_type: BTreeMap<String, DateTime<Utc>>,
    /// Last Quo webhook received, by line (`PN…`).
    pub by_line: BTreeMap<String, DateTime<Utc>>,
    /// Records read.
    pub records: u64,
    /// Whether the window held more than [`MAX_WINDOW_RECORDS`](super::report::MAX_WINDOW_RECORDS) (the oldest were not read).
    pub truncated: bool,
}

/// A Quo line the webhook and activity checks judge: its `PN…` id and its number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoLine {
    /// `PN…`: the configured `phone_number_id`, else the id Quo lists for the number.
    pub pn: String,
    /// E.164.
    pub number: String,
}

/// A configured Quo line the checks leave out or doubt: `(what, fix)`, a warning.
pub type LineProblem = (String, String);

/// The Quo lines to judge, given the workspace's numbers: each `[[lines]]` entry with
/// `provider = "openphone"`, by its `phone_number_id` when it has one (that is the id the
/// sender names in `from`), else by the id Quo lists for its number; every line of the
/// workspace when none is configured.
///
/// The problems: a configured line Quo does not list (left out: nothing arrives for it, and
/// the sender's messages would be refused), a `phone_number_id` that is not the id Quo lists
/// for the line's number (the sender would send from another line; judged by the configured
/// id, since that is the line hooklog uses), a number Quo lists under another id than the
/// configured one's.
pub fn quo_lines(config: &Config, numbers: &[QuoNumber]) -> (Vec<QuoLine>, Vec<LineProblem>) {
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    let configured: Vec<_> = config
        .lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.provider == SendProvider::Quo)
        .collect();
    if configured.is_empty() {
        let all = numbers.iter().map(|n| QuoLine {
            pn: n.id.clone(),
            number: n.number.clone().unwrap_or_default(),
        });
        return (all.collect(), problems);
    }
    for (i, line) in configured {
        let number = line.number.as_str();
        let by_number = numbers.iter().find(|n| n.number.as_deref() == Some(number));
        let Some(pn) = line.phone_number_id.as_deref() else {
            match by_number {
                Some(n) => lines.push(QuoLine {
                    pn: n.id.clone(),
                    number: number.to_owned(),
                }),
                None => problems.push((
                    format!("configured Quo line {number} is not a number of the workspace"),
                    "fix lines[].number, or openphone.api_key if it is another workspace's".into(),
                )),
            }
            continue;
        };
        let by_id = numbers.iter().find(|n| n.id == pn);
        match (by_id, by_number) {
            (_, Some(listed)) if listed.id != pn => problems.push((
                format!(
                    "lines[{i}] ({number}): phone_number_id {pn} is not the id Quo lists for \
                     {number} ({}): the sender would send from {}",
                    cut(&listed.id, 40),
                    if by_id.is_some() {
                        "another line of the workspace"
                    } else {
                        "a line the workspace does not have (Quo refuses it)"
                    }
                ),
                format!(
                    "set lines[{i}].phone_number_id to {} (hooklog-replay lines import --from \
                     quo prints it), or fix lines[{i}].number",
                    cut(&listed.id, 40)
                ),
            )),
            (Some(listed), None) => problems.push((
                format!(
                    "lines[{i}] ({number}): Quo lists phone_number_id {pn} as {}, not {number}",
                    cut(listed.number.as_deref().unwrap_or("no number"), 20)
                ),
                format!(
                    "fix lines[{i}].number (the sender sends from {pn} whatever the number says)"
                ),
            )),
            (None, None) => problems.push((
                format!(
                    "configured Quo line {number} (phone_number_id {pn}) is not a line of the \
                     workspace"
                ),
                "fix lines[].phone_number_id and lines[].number, or openphone.api_key if it is \
                 another workspace's"
                    .into(),
            )),
            // The number listed under the configured id: as configured. (Listed under the
            // same id yet not found by it cannot be.)
            _ => {}
        }
        // Judged by the configured id when the workspace has it: that is the line the sender
        // uses.
        if by_id.is_some() {
            lines.push(QuoLine {
                pn: pn.to_owned(),
                number: number.to_owned(),
            });
        }
    }
    (lines, problems)
}
