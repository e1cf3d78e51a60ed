//! How a configuration error is told without its value.
//!
//! The toml crate's own `Display` of a syntax error quotes the offending line, and serde's
//! messages quote the value (`invalid type: string "hunter2", expected …`): either puts a
//! secret typed without quotes, or typed into the wrong key, into the journal through
//! `check-config`. So a syntax error is told here by file, line, column and the key being set
//! (found by reading the lines around the position: the dotted path with its section), with a
//! message in fixed words chosen from the kind of error; and a value error keeps serde's
//! structure (what was expected) but drops what was found.
//!
//! Invariant: no text of the file or of a value reaches a message built here, except a key
//! (the part of a line before `=`, or a section header), which the error must name.

use std::path::Path;

use super::error::ConfigError;

/// The error for a file that is not valid TOML.
pub(super) fn syntax_error(path: &Path, text: &str, err: &toml::de::Error) -> ConfigError {
    let mut at = err.span().map_or(text.len(), |s| s.start).min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    let line_text = text[line_start..].lines().next().unwrap_or_default();
    let key = key_at(text, line - 1);
    // In a value: after the `=` of this line, or on a line that continues a list opened above.
    let in_value = before[line_start..].contains('=')
        || (key.is_some() && !line_text.contains('=') && !line_text.trim().starts_with('['));
    let header = line_text.trim_start().starts_with('[');
    ConfigError::Syntax {
        path: path.to_owned(),
        line,
        column,
        key,
        message: syntax_message(err.message(), &text[at..], in_value, header),
    }
}

/// The key being set on line `index` (0-based): the text before `=` on it, or, inside a list
/// that spans lines, on the line that opened it; with the section header above it.
fn key_at(text: &str, index: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut i = index.min(lines.len().saturating_sub(1));
    let key_line = loop {
        let line = lines.get(i)?.trim_start();
        if line.starts_with('[') {
            return None;
        }
        if let Some((key, value)) = split_at_equals(line) {
            let opens_block = ["[", "{", "\"\"\"", "'''"]
                .iter()
                .any(|o| value.trim_start().starts_with(o));
            if let Some(key) = as_key(key) {
                // A line above the error is the key only when its value goes on below.
                if i == index || opens_block {
                    break (i, key);
                }
            }
            return None;
        }
        if i == 0 {
            return None;
        }
        i -= 1;
    };
    let (found, key) = key_line;
    let section = lines[..found].iter().rev().find_map(|l| {
        let l = l.trim();
        let inner = l
            .strip_prefix("[[")
            .and_then(|r| r.split("]]").next())
            .or_else(|| l.strip_prefix('[').and_then(|r| r.split(']').next()))?;
        Some(as_key(inner))
    });
    Some(match section.flatten() {
        Some(s) => format!("{s}.{key}"),
        None => key,
    })
}

/// Where `key` (a dotted path; none inside an array of tables) is set in `text`: the 1-based
/// line and column of its value, for an error about a value that came from the file.
pub(super) fn locate(text: &str, key: &str) -> Option<(usize, usize)> {
    if key.contains('[') {
        return None;
    }
    let mut section = String::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            let inner = trimmed
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or_default();
            section = as_key(inner).unwrap_or_default();
            continue;
        }
        let Some((name, value)) = split_at_equals(line) else {
            continue;
        };
        let Some(name) = as_key(name) else {
            continue;
        };
        let full = if section.is_empty() {
            name
        } else {
            format!("{section}.{name}")
        };
        if full == key {
            let value_at = line.len() - value.trim_start().len();
            return Some((i + 1, line[..value_at].chars().count() + 1));
        }
    }
    None
}

/// `line` split at its first `=` outside quotes (a list's item may hold one).
fn split_at_equals(line: &str) -> Option<(&str, &str)> {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '=') => return Some((&line[..i], &line[i + 1..])),
            (None, '#') => return None,
            _ => {}
        }
    }
    None
}

/// `text` as a dotted key (quotes and blanks around the dots removed), or `None` when it does
/// not look like one.
fn as_key(text: &str) -> Option<String> {
    let text = text.trim();
    let ok = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '"' | '\''))
        && text.matches('"').count() % 2 == 0
        && text.matches('\'').count() % 2 == 0;
    ok.then(|| {
        text.split('.')
            .map(|part| part.trim().trim_matches(['"', '\'']))
            .collect::<Vec<_>>()
            .join(".")
    })
}

/// What is wrong, in fixed words, from the parser's kind of error and the shape (never the
/// text) of what stands at the error.
fn syntax_message(parser: &str, rest: &str, in_value: bool, header: bool) -> String {
    let word: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ']' | '}' | '#'))
        .collect();
    let literal = matches!(word.as_str(), "true" | "false" | "inf" | "nan");
    let number_like = word
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '_' | '.' | ':' | 'e' | 'E'));
    let starts_text = word
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '/' | '.' | '$'));
    if in_value && starts_text && !literal && !number_like {
        return "a value that is not a number, true or false must be quoted: key = \"…\" (a \
                list: [\"…\", \"…\"])"
            .into();
    }
    let parser = parser.to_ascii_lowercase();
    let text = if parser.contains("duplicate") && header {
        "this section is already defined above: give each [section] once"
    } else if parser.contains("duplicate key") {
        "this key is already set above: set each key once per section"
    } else if parser.contains("table") && parser.contains("defin") {
        "this section is already defined above: give each [section] once"
    } else if parser.contains("table header") {
        "a section header is [name] or [[name]], alone on its line"
    } else if parser.contains("string") {
        "a string is not closed: end it with the quote it starts with, on the same line \
         (\"\"\" for several lines)"
    } else if parser.contains("array") {
        "a list is [\"…\", \"…\"]: quoted items, separated by commas, closed with ]"
    } else if parser.contains("inline table") {
        "an inline table is { key = \"…\" }, on one line"
    } else if parser.contains("integer") || parser.contains("float") || parser.contains("number") {
        "not a valid number"
    } else if parser.contains("key") {
        "not a valid key: a key is letters, digits, _ and - (or quoted)"
    } else if parser.contains("expected newline") || parser.contains("expected `.`, `=`") {
        "unexpected text here: write one key = value per line (# starts a comment)"
    } else {
        "not valid TOML here"
    };
    text.to_owned()
}

/// A value error's message without the value: serde's `invalid type: string "…", expected X`
/// becomes `wrong type: string where X is expected`. `leaves` are the strings of the value at
/// the failing key; any still in the message are [`scrub`]bed.
pub(super) fn value_message(raw: &str, leaves: &[String]) -> String {
    let first = raw.lines().next().unwrap_or_default();
    let kind = |found: &str| {
        found
            .split(['"', '`'])
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let message = if let Some(rest) = first.strip_prefix("invalid type: ") {
        match rest.rsplit_once(", expected ") {
            Some((found, expected)) => format!(
                "wrong type: {} where {} is expected",
                kind(found),
                friendly(expected)
            ),
            None => "wrong type".to_owned(),
        }
    } else if let Some(rest) = first.strip_prefix("invalid value: ") {
        match rest.rsplit_once(", expected ") {
            Some((_, expected)) => format!("invalid value: expected {}", friendly(expected)),
            None => "invalid value".to_owned(),
        }
    } else if first.starts_with("unknown variant ") {
        match first.split_once(", expected ") {
            Some((_, expected)) => format!("not an accepted value: expected {expected}"),
            None => "not an accepted value".to_owned(),
        }
    } else if first.contains("did not match any variant") {
        "wrong type or form for this key".to_owned()
    } else {
        first.to_owned()
    };
    scrub(&message, leaves)
}

/// `message` with every one of `leaves` (the strings of the value at the failing key) replaced
/// by `…`: a reason from a parser or a section's check may quote the value, which may be a
/// secret. Strings under 4 characters are left: they would cut words, not secrets.
pub(super) fn scrub(message: &str, leaves: &[String]) -> String {
    let mut leaves: Vec<&str> = leaves
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.chars().count() >= 4)
        .collect();
    // Longest first, so that a value containing another is replaced whole.
    leaves.sort_by_key(|l| std::cmp::Reverse(l.len()));
    let mut out = message.to_owned();
    for leaf in leaves {
        out = out.replace(leaf, "…");
    }
    out
}

/// serde's name of an expected type, in the words of the documentation.
fn friendly(expected: &str) -> String {
    let e = expected.trim();
    let word = match e {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
            "a whole number"
        }
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        "a sequence" => "a list",
        "a string" => "a string",
        _ if e.starts_with("struct ") || e == "a map" => "a table ([section] or { … })",
        _ => return e.to_owned(),
    };
    word.to_owned()
}

/// The strings of the value at `path` (serde_path_to_error's `a.b[0].c`) in `root` (none when
/// the path leads nowhere), for [`value_message`] and [`scrub`].
pub(super) fn leaves(root: &toml::Table, path: &str) -> Vec<String> {
    let mut at: Option<&toml::Value> = None;
    let mut table = Some(root);
    for segment in path.split('.') {
        let (name, indexes) = segment.split_once('[').unwrap_or((segment, ""));
        let mut v = table.and_then(|t| t.get(name));
        for index in indexes.split('[') {
            if let Ok(i) = index.trim_end_matches(']').parse::<usize>() {
                v = v.and_then(|v| v.as_array()).and_then(|a| a.get(i));
            }
        }
        at = v;
        table = v.and_then(|v| v.as_table());
    }
    let mut out = Vec::new();
    let mut stack: Vec<&toml::Value> = at.into_iter().collect();
    while let Some(v) = stack.pop() {
        match v {
            toml::Value::String(s) => out.push(s.clone()),
            toml::Value::Array(items) => stack.extend(items),
            toml::Value::Table(t) => stack.extend(t.values()),
            _ => {}
        }
    }
    out
}
