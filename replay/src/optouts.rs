//! `optouts`: the suppression list (docs/api.md#suppression-list): each number with its state,
//! the evidence of what holds it there (or lifted it) with the time it was written, and the
//! lines a re-subscription lifted it on. Through the admin API, or the data directory when the
//! daemon is stopped. Text: a table with the message text cut to the terminal's width;
//! `--json`: one `OptOutEntry` per line (its facts included).

use hooklog::consumers::compliance::OptOutEntry;

use crate::backend::Item;
use crate::context::Context;
use crate::output::{fit_last_column, one_line, short_time, table, terminal_width, Out};

const HEADERS: [&str; 8] = [
    "number",
    "state",
    "how",
    "seq",
    "provider",
    "written",
    "lifted on",
    "text",
];

/// Runs `optouts`.
pub fn run(ctx: &Context) -> anyhow::Result<()> {
    let (mut backend, entries) = ctx.first(|b| b.optouts())?;
    backend.release()?;
    let mut out = Out::stdout();
    if ctx.json {
        for item in &entries {
            out.line(&item.json)?;
        }
    } else {
        out.write(&render(&entries, terminal_width()))?;
    }
    out.flush()
}

/// The text form.
fn render(entries: &[Item<OptOutEntry>], width: usize) -> String {
    if entries.is_empty() {
        return "no opt-outs\n".to_owned();
    }
    let mut rows: Vec<Vec<String>> = entries
        .iter()
        .map(|item| {
            let e = &item.value;
            vec![
                one_line(&e.number, None),
                one_line(&e.state, None),
                one_line(&e.how, None),
                e.seq.to_string(),
                one_line(&e.provider, None),
                e.event_at
                    .map_or_else(|| short_time(&e.at), |t| short_time(&t.to_rfc3339())),
                if e.lifted_on.is_empty() {
                    "-".to_owned()
                } else {
                    one_line(&e.lifted_on.join(","), None)
                },
                if e.text.is_empty() {
                    "-".to_owned()
                } else {
                    e.text.clone()
                },
            ]
        })
        .collect();
    fit_last_column(&HEADERS, &mut rows, width);
    let mut text = table(&HEADERS, &rows);
    let suppressed = entries.iter().filter(|e| e.value.is_suppressed()).count();
    text.push_str(&format!(
        "\n{suppressed} suppressed, {} resubscribed\n",
        entries.len() - suppressed
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    use chrono::{DateTime, Utc};
    use hooklog::consumers::compliance::{Fact, FactKind, Facts};

    fn fact(at: &str, how: &str, text: &str, line: Option<&str>) -> Fact {
        Fact {
            event_at: DateTime::parse_from_rfc3339(at)
                .unwrap_or_else(|e| panic!("{e}"))
                .with_timezone(&Utc),
            received_at: "2025-01-02T03:04:05.000006Z".into(),
            seq: 7,
            source: "twilio".into(),
            provider: "twilio".into(),
            line: line.map(str::to_owned),
            text: text.into(),
            how: how.into(),
            reason: format!("{how}:x"),
        }
    }

    #[test]
    fn the_suppression_list_reads_as_a_table_with_the_written_time_and_the_lifted_lines() {
        let entry = |number: &str, facts: &[(FactKind, Fact)]| {
            let mut f = Facts::default();
            for (kind, fact) in facts {
                f.apply(*kind, fact.clone());
            }
            Item::new(OptOutEntry::of(number.into(), f)).unwrap_or_else(|e| panic!("{e}"))
        };
        let stop = fact("2025-01-01T14:00:00Z", "keyword", "STOP\nplease", None);
        let start = fact(
            "2025-01-01T15:00:00Z",
            "opt_in",
            "START",
            Some("+15555550100"),
        );
        let lift = fact("2025-01-01T16:00:00Z", "admin", "", None);
        let text = render(
            &[
                entry(
                    "+15555550123",
                    &[(FactKind::OptOut, stop.clone()), (FactKind::OptIn, start)],
                ),
                entry(
                    "+15555550124",
                    &[(FactKind::OptOut, stop), (FactKind::OperatorLift, lift)],
                ),
            ],
            120,
        );
        assert_eq!(
            text,
            "number        state         how      seq  provider  written               lifted on     text\n\
             +15555550123  opted_out     keyword  7    twilio    2025-01-01T14:00:00Z  +15555550100  STOP\\nplease\n\
             +15555550124  resubscribed  admin    7    twilio    2025-01-01T16:00:00Z  -             -\n\
             \n1 suppressed, 1 resubscribed\n"
        );
        assert_eq!(render(&[], 100), "no opt-outs\n");
    }
}
