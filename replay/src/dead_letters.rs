//! `dead-letters [--consumer NAME]`: the records consumers could not process. Through the
//! admin API, or the data directory when the daemon is stopped (the lists are stored). Text:
//! a table with each error cut to the terminal's width; `--json`: one `DeadLetter` per line.

use hooklog::consumers::DeadLetter;

use crate::backend::{Backend, Item};
use crate::cli::DeadLettersArgs;
use crate::context::Context;
use crate::output::{fit_last_column, one_line, short_time, table, terminal_width, Out};

const HEADERS: [&str; 5] = ["consumer", "seq", "attempts", "at", "error"];

/// Runs `dead-letters`.
pub fn run(ctx: &Context, args: &DeadLettersArgs) -> anyhow::Result<()> {
    let (mut backend, letters) = ctx.first(|b| {
        if let Some(name) = &args.consumer {
            // The daemon answers an empty list for a name it does not know: a typo would
            // read as "no dead letters".
            known(b, name)?;
        }
        b.dead_letters(args.consumer.as_deref())
    })?;
    backend.release()?;
    let mut out = Out::stdout();
    if ctx.json {
        for item in &letters {
            out.line(&item.json)?;
        }
    } else {
        out.write(&render(&letters, terminal_width()))?;
    }
    out.flush()
}

/// Fails unless `name` is a consumer the backend knows (running, or with a stored cursor).
pub fn known(b: &mut dyn Backend, name: &str) -> anyhow::Result<()> {
    let status = b.status()?.status;
    if status.consumers.iter().any(|c| c.name == name) {
        return Ok(());
    }
    let names: Vec<&str> = status.consumers.iter().map(|c| c.name.as_str()).collect();
    anyhow::bail!(
        "no consumer named `{}` (known: {})",
        one_line(name, None),
        if names.is_empty() {
            "none yet".to_owned()
        } else {
            names.join(", ")
        }
    );
}

/// The text form.
fn render(letters: &[Item<DeadLetter>], width: usize) -> String {
    if letters.is_empty() {
        return "no dead letters\n".to_owned();
    }
    let mut rows: Vec<Vec<String>> = letters
        .iter()
        .map(|item| {
            let d = &item.value;
            vec![
                one_line(&d.consumer, None),
                d.seq.to_string(),
                d.attempts.to_string(),
                short_time(&d.at),
                d.error.clone(),
            ]
        })
        .collect();
    fit_last_column(&HEADERS, &mut rows, width);
    let mut text = table(&HEADERS, &rows);
    let n = letters.len();
    text.push_str(&format!(
        "\n{n} dead letter{}: `hooklog-replay show SEQ` shows the record, `hooklog-replay \
         redrive --consumer NAME` runs them again once the cause is fixed\n",
        if n == 1 { "" } else { "s" }
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_read_as_a_table_that_fits_the_terminal() {
        let item = |seq, error: &str| {
            Item::new(DeadLetter {
                consumer: "compliance".into(),
                seq,
                error: error.into(),
                at: "2025-01-02T03:04:05.000006Z".into(),
                attempts: 1,
            })
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let text = render(
            &[
                item(3, "unknown action `explode`"),
                item(40, &"y".repeat(300)),
            ],
            80,
        );
        assert!(text.starts_with(
            "consumer    seq  attempts  at                    error\n\
             compliance  3    1         2025-01-02T03:04:05Z  unknown action `explode`\n"
        ));
        let table: Vec<&str> = text.lines().take(3).collect();
        assert!(table.iter().all(|l| l.chars().count() <= 80), "{text}");
        assert!(text.contains("2 dead letters: "), "{text}");
        assert_eq!(render(&[], 80), "no dead letters\n");
    }
}
