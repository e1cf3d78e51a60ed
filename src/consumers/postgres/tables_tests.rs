//! Tests of the table definitions: the generated upserts and the merge rules.

use super::*;
use crate::consumers::postgres::cells::{int8, rounds, text, texts, Cell, Row};

#[test]
fn every_table_has_a_key_and_every_group_has_a_precedence_key() {
    for t in TABLES {
        assert!(t.columns.iter().any(|c| c.merge == Key), "{}", t.name);
        for c in t.columns {
            if let Fill(g) | Replace(g) = c.merge {
                assert!(
                    t.columns.iter().any(|k| k.merge == Rank(g)),
                    "{}.{}: group {g} has no rank",
                    t.name,
                    c.name
                );
            }
        }
        let sql = t.upsert_sql("\"s\"");
        assert!(sql.starts_with(&format!("insert into \"s\".{} as t", t.name)));
        assert_eq!(sql.matches('$').count(), t.columns.len(), "{sql}");
    }
}

#[test]
fn a_fill_column_prefers_the_winner_and_falls_back_to_the_stored_value() {
    let sql = OPENPHONE_MESSAGES.upsert_sql("\"s\"");
    assert!(sql.contains(
        "body = case when (row(coalesce(excluded.status_rank, -1), coalesce(excluded.status_seq, -1)) > row(coalesce(t.status_rank, -1), coalesce(t.status_seq, -1))) then coalesce(excluded.body, t.body) else coalesce(t.body, excluded.body) end"
    ), "{sql}");
    assert!(sql.contains("to_numbers = case when"));
    assert!(sql.contains("string_to_array(u.to_numbers, chr(31))"));
}

#[test]
fn rows_with_the_same_key_go_to_successive_rounds_in_order() {
    let row = |id: &str, seq: i64| {
        Row::new(&TWILIO_SMS)
            .set("sid", text(id.to_owned()))
            .set("first_seq", int8(seq))
    };
    let rows = [
        row("a", 1),
        row("b", 2),
        row("a", 3),
        row("a", 4),
        row("c", 5),
    ];
    let refs: Vec<&Row> = rows.iter().collect();
    let r = rounds(&refs);
    let seqs: Vec<Vec<&Cell>> = r
        .iter()
        .map(|round| round.iter().map(|x| x.get("first_seq").unwrap()).collect())
        .collect();
    assert_eq!(
        seqs,
        vec![
            vec![&int8(1), &int8(2), &int8(5)],
            vec![&int8(3)],
            vec![&int8(4)]
        ]
    );
}

#[test]
fn an_empty_list_is_stored_as_null() {
    let r = Row::new(&TWILIO_SMS).set("media", texts(vec![]));
    assert_eq!(r.get("media"), Some(&Cell::TextArray(None)));
}
