//! `optouts`: the suppression list (docs/api.md#suppression-list): each number with its state and the
//! evidence of its latest change. Through the admin API, or the data directory when the
//! daemon is stopped. Text: a table with the message text cut to the terminal's width;
//! `--json`: one `OptOutEntry` per line.

use hooklog::consumers::compliance::OptOutEntry;

use crate::backend::Item;
use crate::context::Context;
use crate::output::{fit_last_column, one_line, short_time, table, terminal_width, Out};

const HEADERS: [&str; 7] = ["number", "state", "how", "seq", "provider", "at", "text"];

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
                short_time(&e.at),
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

    #[test]
    fn the_suppression_list_reads_as_a_table_with_a_count() {
        let entry = |number: &str, state: &str, text: &str| {
            Item::new(OptOutEntry {
                number: number.into(),
                state: state.into(),
                seq: 7,
                provider: "twilio".into(),
                line: None,
                text: text.into(),
                at: "2025-01-02T03:04:05.000006Z".into(),
                how: "keyword".into(),
                reason: "keyword:STOP".into(),
            })
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let text = render(
            &[
                entry("+15555550123", "opted_out", "STOP\nplease"),
                entry("+15555550124", "resubscribed", ""),
            ],
            100,
        );
        assert_eq!(
            text,
            "number        state         how      seq  provider  at                    text\n\
             +15555550123  opted_out     keyword  7    twilio    2025-01-02T03:04:05Z  STOP\\nplease\n\
             +15555550124  resubscribed  keyword  7    twilio    2025-01-02T03:04:05Z  -\n\
             \n1 suppressed, 1 resubscribed\n"
        );
        assert_eq!(render(&[], 100), "no opt-outs\n");
    }
}
