//! Writing to stdout, and the small text helpers the subcommands share.
//!
//! Rust ignores SIGPIPE, so a closed stdout shows up as a `BrokenPipe` write error. That is
//! how `tail -f | head` ends: [`Out`] turns it into [`StdoutClosed`], which `main` maps to
//! a quiet exit 0.
//!
//! Record contents (bodies, headers) come from the outside world: everything printed in text
//! mode has its control characters escaped, so a message cannot drive the terminal.

use std::fmt::Write as _;
use std::io::{BufWriter, ErrorKind, StdoutLock, Write};

/// The reader of stdout went away; not an error for a CLI.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct StdoutClosed;

/// Whether an error is (caused by) [`StdoutClosed`].
pub fn is_stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<StdoutClosed>())
}

/// Buffered stdout. Call [`Out::flush`] when a unit of output (a page, a document) is done.
pub struct Out {
    w: BufWriter<StdoutLock<'static>>,
}

impl Out {
    /// Locks stdout for the life of the command.
    pub fn stdout() -> Out {
        Out {
            w: BufWriter::new(std::io::stdout().lock()),
        }
    }

    /// Writes `s` as it is.
    pub fn write(&mut self, s: &str) -> anyhow::Result<()> {
        self.w.write_all(s.as_bytes()).map_err(io)
    }

    /// Writes `s` and a newline.
    pub fn line(&mut self, s: &str) -> anyhow::Result<()> {
        self.write(s)?;
        self.write("\n")
    }

    /// Pushes what is buffered to the reader.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.w.flush().map_err(io)
    }
}

fn io(e: std::io::Error) -> anyhow::Error {
    if e.kind() == ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(e).context("cannot write to stdout")
    }
}

/// `12.3 MiB`: binary units, one decimal above bytes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `s` on one line: newlines, tabs and other control characters escaped, cut to `max`
/// characters (with `…`) when given.
pub fn one_line(s: &str, max: Option<usize>) -> String {
    let mut out = String::new();
    for (shown, c) in s.chars().enumerate() {
        if max.is_some_and(|max| shown >= max) {
            out.push('…');
            break;
        }
        push_escaped(&mut out, c, false);
    }
    out
}

/// `s` with newlines and tabs kept, every other control character escaped.
pub fn multi_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_escaped(&mut out, c, true);
    }
    out
}

fn push_escaped(out: &mut String, c: char, keep_layout: bool) {
    match c {
        '\n' if keep_layout => out.push('\n'),
        '\t' if keep_layout => out.push('\t'),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// Rows aligned under headers, two spaces between columns, no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = width.saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Columns a table may take: `$COLUMNS` when the shell exports it, else 100.
pub fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c >= 40)
        .unwrap_or(100)
}

/// The narrowest the last column of [`fit_last_column`] gets, however wide the others are.
const MIN_LAST_COLUMN: usize = 24;

/// Cuts the last cell of each row (raw text, escaped here) so that the table fits in `width`
/// columns; the other cells must be final. Used for free text (errors, messages) at the end
/// of a row.
pub fn fit_last_column(headers: &[&str], rows: &mut [Vec<String>], width: usize) {
    let n = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows.iter() {
        for (w, cell) in widths.iter_mut().zip(row).take(n.saturating_sub(1)) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let used: usize = widths.iter().take(n.saturating_sub(1)).map(|w| w + 2).sum();
    // `one_line` adds `…` after `max` characters: leave room for it.
    let room = width.saturating_sub(used).max(MIN_LAST_COLUMN) - 1;
    for row in rows.iter_mut() {
        if let Some(last) = row.last_mut() {
            *last = one_line(last, Some(room));
        }
    }
}

/// An RFC 3339 time as `2025-01-02T03:04:05Z` (UTC, whole seconds); other text as it is.
pub fn short_time(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        Err(_) => one_line(rfc3339, None),
    }
}

/// `1 record`, `2 records`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(12_897_485), "12.3 MiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn a_preview_is_one_line_and_cut_to_length() {
        assert_eq!(one_line("a\nb\r\tc", None), "a\\nb\\r\\tc");
        assert_eq!(one_line("abcdef", Some(3)), "abc…");
        assert_eq!(one_line("abc", Some(3)), "abc");
        assert_eq!(one_line("\u{1b}[31m", None), "\\u{1b}[31m");
    }

    #[test]
    fn multi_line_text_keeps_its_layout_but_not_terminal_escapes() {
        assert_eq!(multi_line("a\n\tb\u{1b}"), "a\n\tb\\u{1b}");
    }

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let t = table(
            &["name", "lag", "last error"],
            &[
                vec!["dedup".into(), "2".into(), "-".into()],
                vec!["postgres-sync".into(), "1234".into(), "timeout".into()],
            ],
        );
        assert_eq!(
            t,
            "name           lag   last error\n\
             dedup          2     -\n\
             postgres-sync  1234  timeout\n"
        );
    }

    #[test]
    fn the_last_column_is_cut_to_fit_the_width() {
        let mut rows = vec![
            vec!["compliance".into(), "17".into(), "x".repeat(200)],
            vec!["dedup".into(), "3".into(), "short\nerror".into()],
        ];
        fit_last_column(&["consumer", "seq", "error"], &mut rows, 60);
        let t = table(&["consumer", "seq", "error"], &rows);
        assert!(t.lines().all(|l| l.chars().count() <= 60), "{t}");
        assert!(rows[0][2].ends_with('…'));
        assert_eq!(rows[1][2], "short\\nerror");
        // However narrow the terminal, the text keeps a readable width.
        let mut rows = vec![vec!["a".repeat(100), "x".repeat(200)]];
        fit_last_column(&["a", "b"], &mut rows, 40);
        assert_eq!(rows[0][1].chars().count(), MIN_LAST_COLUMN);
    }

    #[test]
    fn times_are_shown_in_utc_to_the_second() {
        assert_eq!(
            short_time("2025-01-02T03:04:05.123456+01:00"),
            "2025-01-02T02:04:05Z"
        );
        assert_eq!(short_time("not a time"), "not a time");
    }

    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(count(1, "record", "records"), "1 record");
        assert_eq!(count(0, "record", "records"), "0 records");
    }
}
