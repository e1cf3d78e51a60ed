//! What a migration file creates: its objects (tables, indexes, columns), read from its SQL by a
//! deliberately small parser of the statement forms `schema/` uses. [`migrate`](super::migrate)
//! looks each object up in the target schema before applying a pending migration: one that is
//! already there was not created by hooklog (a pending migration never ran), so it is a
//! conflict, and hooklog refuses rather than let `if not exists` skip it silently.
//!
//! Recognised forms (case-insensitive, comments and whitespace free):
//!
//! - `create table [if not exists] NAME (…)`
//! - `create [unique] index [if not exists] NAME on [only] TABLE …`
//! - `alter table [if exists] [only] TABLE add [column] [if not exists] NAME …`
//!
//! Anything else is an [`UnknownStatement`] error: a new migration with a form not listed here
//! fails the unit test that parses every embedded file, so the parser is extended (and the
//! conflict check stays complete) before that migration can be released. Names are plain
//! unquoted identifiers; a quoted or schema-qualified name is refused too (migrations run with
//! the configured schema as their search path and must not name another).

use std::fmt;

use serde::Serialize;

/// The kind of an object a migration creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// `create table`.
    Table,
    /// `create [unique] index`.
    Index,
    /// `alter table … add column`.
    Column,
}

/// One object a migration creates.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Object {
    /// Table, index or column.
    pub kind: ObjectKind,
    /// Its name (for a column, the column's).
    pub name: String,
    /// The table an index is on, or a column is added to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, &self.table) {
            (ObjectKind::Table, _) => write!(f, "table {}", self.name),
            (ObjectKind::Index, Some(t)) => write!(f, "index {} on {t}", self.name),
            (ObjectKind::Index, None) => write!(f, "index {}", self.name),
            (ObjectKind::Column, Some(t)) => write!(f, "column {t}.{}", self.name),
            (ObjectKind::Column, None) => write!(f, "column {}", self.name),
        }
    }
}

/// A statement of a migration file that is not one of the recognised forms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("statement {index} is not a form the migration parser knows (create table, create [unique] index, alter table … add column): `{statement}`; extend src/consumers/postgres/objects.rs so the conflict check covers it")]
pub struct UnknownStatement {
    /// 1-based position of the statement in the file.
    pub index: usize,
    /// The statement, whitespace collapsed (cut at 120 characters).
    pub statement: String,
}

/// The objects `sql` creates, in file order.
pub fn objects(sql: &str) -> Result<Vec<Object>, UnknownStatement> {
    let mut out = Vec::new();
    for (i, statement) in statements(sql).iter().enumerate() {
        // `(` is a word of its own: `create table t(` and `create table t (` read the same.
        let words: Vec<String> = statement
            .replace('(', " ( ")
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        let object = parse(&words).ok_or_else(|| UnknownStatement {
            index: i + 1,
            statement: statement.chars().take(120).collect(),
        })?;
        out.push(object);
    }
    Ok(out)
}

/// The statements of `sql`: `--` comments removed, split on `;`, whitespace collapsed, empty
/// ones dropped. The files hold no string literal or dollar quote with a `;` or `--` in it
/// (the parser would then fail the unit test rather than mis-split silently: a cut statement is
/// not a known form).
fn statements(sql: &str) -> Vec<String> {
    let stripped: String = sql
        .lines()
        .map(|line| match line.find("--") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    stripped
        .split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect()
}

/// A plain identifier: what `quote_schema` accepts for schemas, the same rule for objects.
fn ident(word: &str) -> Option<String> {
    let ok = !word.is_empty()
        && word.len() <= 63
        && word
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    ok.then(|| word.to_owned())
}

/// Skips `words` if `rest` starts with them.
fn skip<'a>(rest: &'a [String], words: &[&str]) -> &'a [String] {
    let matches = rest.len() >= words.len() && rest.iter().zip(words).all(|(a, b)| a == b);
    if matches {
        &rest[words.len()..]
    } else {
        rest
    }
}

fn parse(words: &[String]) -> Option<Object> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["create", "table", ..] => {
            let rest = skip(&words[2..], &["if", "not", "exists"]);
            // A table is followed by its column list; `create table x as …` is not a form.
            let name = ident(rest.first()?)?;
            (rest.get(1).map(String::as_str) == Some("(")).then_some(Object {
                kind: ObjectKind::Table,
                name,
                table: None,
            })
        }
        ["create", "index", ..] | ["create", "unique", "index", ..] => {
            let start = if w[1] == "unique" { 3 } else { 2 };
            let rest = skip(&words[start..], &["if", "not", "exists"]);
            let name = ident(rest.first()?)?;
            let rest = &rest[1..];
            if rest.first().map(String::as_str) != Some("on") {
                return None;
            }
            let rest = skip(&rest[1..], &["only"]);
            let table = ident(rest.first()?)?;
            Some(Object {
                kind: ObjectKind::Index,
                name,
                table: Some(table),
            })
        }
        ["alter", "table", ..] => {
            let rest = skip(&words[2..], &["if", "exists"]);
            let rest = skip(rest, &["only"]);
            let table = ident(rest.first()?)?;
            let rest = &rest[1..];
            if rest.first().map(String::as_str) != Some("add") {
                return None;
            }
            let rest = skip(&rest[1..], &["column"]);
            let rest = skip(rest, &["if", "not", "exists"]);
            // `add constraint`, `add primary key`, … are other forms.
            let name = ident(rest.first()?)?;
            if matches!(
                name.as_str(),
                "constraint" | "primary" | "unique" | "check" | "foreign" | "exclude"
            ) {
                return None;
            }
            Some(Object {
                kind: ObjectKind::Column,
                name,
                table: Some(table),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::migrate::MIGRATIONS;
    use super::*;

    fn table(name: &str) -> Object {
        Object {
            kind: ObjectKind::Table,
            name: name.into(),
            table: None,
        }
    }

    fn index(name: &str, on: &str) -> Object {
        Object {
            kind: ObjectKind::Index,
            name: name.into(),
            table: Some(on.into()),
        }
    }

    #[test]
    fn every_statement_of_every_migration_is_a_known_form() {
        for m in MIGRATIONS {
            let found = objects(m.sql).unwrap_or_else(|e| panic!("{}: {e}", m.name));
            // One object per statement: the parser accounted for every statement of the file.
            assert_eq!(found.len(), statements(m.sql).len(), "{}", m.name);
            assert!(!found.is_empty(), "{}", m.name);
        }
    }

    #[test]
    fn the_objects_of_0001_and_0002_are_every_table_and_index_they_create() {
        let names = |i: usize| -> Vec<String> {
            objects(MIGRATIONS[i].sql)
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        let first = names(0);
        for t in [
            "omni_events",
            "processed_webhook_events",
            "openphone_messages",
            "openphone_calls",
            "openphone_call_summaries",
            "openphone_call_transcripts",
            "openphone_contacts",
            "twilio_sms",
            "twilio_calls",
            "salesmsg_events",
            "sms_optouts",
            "hooklog_cursors",
        ] {
            assert!(first.contains(&format!("table {t}")), "{t}: {first:?}");
        }
        assert!(first.contains(&"index openphone_calls_participants on openphone_calls".into()));
        assert!(first.contains(&"index sms_optouts_state on sms_optouts".into()));
        assert_eq!(first.iter().filter(|o| o.starts_with("table ")).count(), 12);
        assert_eq!(first.iter().filter(|o| o.starts_with("index ")).count(), 16);
        assert_eq!(
            objects(MIGRATIONS[1].sql).unwrap(),
            vec![
                table("outbound_messages"),
                index("outbound_messages_status", "outbound_messages"),
                index("outbound_messages_to", "outbound_messages"),
                index("outbound_messages_idempotency_key", "outbound_messages"),
                table("agent_dispatches"),
                index("agent_dispatches_event", "agent_dispatches"),
                table("outbound_lines"),
            ]
        );
    }

    #[test]
    fn every_index_and_added_column_is_on_a_table_a_migration_created() {
        let all: Vec<Object> = MIGRATIONS
            .iter()
            .flat_map(|m| objects(m.sql).unwrap())
            .collect();
        for o in all.iter().filter(|o| o.kind != ObjectKind::Table) {
            let on = o.table.as_deref().unwrap();
            assert!(all.contains(&table(on)), "{o}");
        }
    }

    #[test]
    fn the_recognised_forms_are_parsed_whatever_the_case_and_layout() {
        let sql = "-- a comment; with a semicolon\n\
                   CREATE TABLE t1(a int);\n\
                   create unique index if not exists t1_a on only t1 using btree (a) where a > 0;\n\
                   create index t1_b\n   on t1 (b);\n\
                   alter table if exists only t1 add column if not exists c text;\n\
                   alter table t1 add d bigint not null default 0;";
        assert_eq!(
            objects(sql).unwrap(),
            vec![
                table("t1"),
                index("t1_a", "t1"),
                index("t1_b", "t1"),
                Object {
                    kind: ObjectKind::Column,
                    name: "c".into(),
                    table: Some("t1".into())
                },
                Object {
                    kind: ObjectKind::Column,
                    name: "d".into(),
                    table: Some("t1".into())
                },
            ]
        );
    }

    #[test]
    fn any_other_statement_form_is_refused_with_its_position() {
        for bad in [
            "create view v as select 1",
            "create table t as select 1",
            "create table other.t (a int)",
            "create table \"T\" (a int)",
            "create index on t (a)",
            "create index i t (a)",
            "alter table t add constraint c unique (a)",
            "alter table t drop column a",
            "drop table t",
            "insert into t values (1)",
            "create sequence s",
            "create extension pgcrypto",
        ] {
            let sql = format!("create table ok (a int);\n{bad};");
            let e = objects(&sql).unwrap_err();
            assert_eq!(e.index, 2, "{bad}");
            assert!(e.to_string().contains("extend"), "{e}");
        }
    }
}
