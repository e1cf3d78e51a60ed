//! The values of a projected row and how a batch of rows becomes the parameters of one upsert:
//! each column as an array, `text[]` items joined with U+001F (see [`super::tables`]).

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::types::{ToSql, Type};

use super::tables::{Merge, Table, Ty};

/// One value of a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// `text`
    Text(Option<String>),
    /// `bigint`
    Int8(Option<i64>),
    /// `integer`
    Int4(Option<i32>),
    /// `smallint`
    Int2(Option<i16>),
    /// `boolean`
    Bool(Option<bool>),
    /// `timestamptz`
    Ts(Option<DateTime<Utc>>),
    /// `jsonb`
    Json(Option<JsonDoc>),
    /// `text[]`; an empty list is stored as null (nothing known), so it never hides a value
    /// another event has.
    TextArray(Option<Vec<String>>),
}

impl Cell {
    fn null(ty: Ty) -> Cell {
        match ty {
            Ty::Text => Cell::Text(None),
            Ty::Int8 => Cell::Int8(None),
            Ty::Int4 => Cell::Int4(None),
            Ty::Int2 => Cell::Int2(None),
            Ty::Bool => Cell::Bool(None),
            Ty::Ts => Cell::Ts(None),
            Ty::Json => Cell::Json(None),
            Ty::TextArray => Cell::TextArray(None),
        }
    }

    fn ty(&self) -> Ty {
        match self {
            Cell::Text(_) => Ty::Text,
            Cell::Int8(_) => Ty::Int8,
            Cell::Int4(_) => Ty::Int4,
            Cell::Int2(_) => Ty::Int2,
            Cell::Bool(_) => Ty::Bool,
            Cell::Ts(_) => Ty::Ts,
            Cell::Json(_) => Ty::Json,
            Cell::TextArray(_) => Ty::TextArray,
        }
    }

    fn key_text(&self) -> String {
        match self {
            Cell::Text(v) => v.clone().unwrap_or_default(),
            Cell::Int8(v) => v.map(|n| n.to_string()).unwrap_or_default(),
            other => format!("{other:?}"),
        }
    }
}

/// A row of one table, built by column name.
#[derive(Clone, Debug)]
pub struct Row {
    /// The table.
    pub table: &'static Table,
    cells: Vec<Cell>,
}

impl PartialEq for Row {
    fn eq(&self, other: &Row) -> bool {
        self.table.name == other.table.name && self.cells == other.cells
    }
}

impl Row {
    /// A row of nulls.
    pub fn new(table: &'static Table) -> Row {
        Row {
            table,
            cells: table.columns.iter().map(|c| Cell::null(c.ty)).collect(),
        }
    }

    /// Sets column `name`. The names and types are fixed by this crate's code, and the unit
    /// tests build every kind of row, so a mismatch is a bug caught there.
    pub fn set(mut self, name: &str, cell: Cell) -> Row {
        match self.table.index(name) {
            Some(i) if self.table.columns[i].ty == cell.ty() => {
                self.cells[i] = match cell {
                    Cell::TextArray(Some(v)) if v.is_empty() => Cell::TextArray(None),
                    Cell::TextArray(Some(v)) if v.iter().any(|i| i.contains('\u{1f}')) => {
                        Cell::TextArray(Some(
                            v.into_iter()
                                .map(|i| i.replace('\u{1f}', "\u{fffd}"))
                                .collect(),
                        ))
                    }
                    other => other,
                }
            }
            _ => debug_assert!(
                false,
                "{}.{name}: no such column of that type",
                self.table.name
            ),
        }
        self
    }

    /// The value of column `name`.
    pub fn get(&self, name: &str) -> Option<&Cell> {
        self.table.index(name).map(|i| &self.cells[i])
    }

    /// The primary key as text (rows with the same key cannot share one statement).
    pub fn key(&self) -> String {
        self.table
            .columns
            .iter()
            .zip(&self.cells)
            .filter(|(c, _)| c.merge == Merge::Key)
            .map(|(_, v)| v.key_text())
            .collect::<Vec<_>>()
            .join("\u{1f}")
    }
}

/// Shorthands for building cells.
pub fn text(v: impl Into<Option<String>>) -> Cell {
    Cell::Text(v.into())
}
/// `bigint`
pub fn int8(v: impl Into<Option<i64>>) -> Cell {
    Cell::Int8(v.into())
}
/// `timestamptz`
pub fn ts(v: Option<DateTime<Utc>>) -> Cell {
    Cell::Ts(v)
}
/// `text[]`
pub fn texts(v: Vec<String>) -> Cell {
    Cell::TextArray(Some(v))
}

/// A JSON document for a `jsonb` column: a value built here, or text already known to be
/// valid JSON (a webhook body), sent as is so that it is not parsed into a tree and written
/// out again.
#[derive(Clone, Debug)]
pub enum JsonDoc {
    /// A value.
    Value(Value),
    /// Valid JSON text.
    Raw(Box<serde_json::value::RawValue>),
}

impl PartialEq for JsonDoc {
    fn eq(&self, other: &JsonDoc) -> bool {
        match (self, other) {
            (JsonDoc::Value(a), JsonDoc::Value(b)) => a == b,
            (JsonDoc::Raw(a), JsonDoc::Raw(b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

/// A `jsonb` parameter borrowed from a row.
#[derive(Debug)]
pub struct JsonParam<'a>(&'a JsonDoc);

impl ToSql for JsonParam<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use bytes::BufMut;
        if *ty == Type::JSONB {
            // jsonb's binary format: a version byte, then the text.
            out.put_u8(1);
        }
        match self.0 {
            JsonDoc::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
            JsonDoc::Value(v) => serde_json::to_writer(out.writer(), v)?,
        }
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The columns of several rows of one table, as array parameters borrowed from the rows.
pub enum Params<'a> {
    /// `text[]`
    Text(Vec<Option<&'a str>>),
    /// `text[]` of joined lists
    Joined(Vec<Option<String>>),
    /// `bigint[]`
    Int8(Vec<Option<i64>>),
    /// `integer[]`
    Int4(Vec<Option<i32>>),
    /// `smallint[]`
    Int2(Vec<Option<i16>>),
    /// `boolean[]`
    Bool(Vec<Option<bool>>),
    /// `timestamptz[]`
    Ts(Vec<Option<DateTime<Utc>>>),
    /// `jsonb[]`
    Json(Vec<Option<JsonParam<'a>>>),
}

impl<'a> Params<'a> {
    /// Transposes `rows` (all of `table`) into one array per column.
    pub fn columns(table: &Table, rows: &[&'a Row]) -> Vec<(Params<'a>, Type)> {
        table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let cells = rows.iter().map(|r| &r.cells[i]);
                let p = match c.ty {
                    Ty::Text => Params::Text(
                        cells
                            .map(|cell| match cell {
                                Cell::Text(v) => v.as_deref(),
                                _ => None,
                            })
                            .collect(),
                    ),
                    Ty::Int8 => Params::Int8(
                        cells
                            .map(|cell| match cell {
                                Cell::Int8(v) => *v,
                                _ => None,
                            })
                            .collect(),
                    ),
                    Ty::Int4 => Params::Int4(
                        cells
                            .map(|cell| match cell {
                                Cell::Int4(v) => *v,
                                _ => None,
                            })
                            .collect(),
                    ),
                    Ty::Int2 => Params::Int2(
                        cells
                            .map(|cell| match cell {
                                Cell::Int2(v) => *v,
                                _ => None,
                            })
                            .collect(),
                    ),
                    Ty::Bool => Params::Bool(
                        cells
                            .map(|cell| match cell {
                                Cell::Bool(v) => *v,
                                _ => None,
                            })
                            .collect(),
                    ),
                    Ty::Ts => Params::Ts(
                        cells
                            .map(|cell| match cell {
                                Cell::Ts(v) => *v,
                                _ => None,
                            })
                            .collect(),
                    ),
                    Ty::TextArray => Params::Joined(
                        cells
                            .map(|cell| match cell {
                                Cell::TextArray(v) => v.as_ref().map(|items| items.join("\u{1f}")),
                                _ => None,
                            })
                            .collect(),
                    ),
                    Ty::Json => Params::Json(
                        cells
                            .map(|cell| match cell {
                                Cell::Json(v) => v.as_ref().map(JsonParam),
                                _ => None,
                            })
                            .collect(),
                    ),
                };
                (p, c.ty.array_type())
            })
            .collect()
    }

    /// As a parameter.
    pub fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Params::Text(v) => v,
            Params::Joined(v) => v,
            Params::Int8(v) => v,
            Params::Int4(v) => v,
            Params::Int2(v) => v,
            Params::Bool(v) => v,
            Params::Ts(v) => v,
            Params::Json(v) => v,
        }
    }
}

/// Splits rows into rounds in which each key appears once (Postgres refuses to update one row
/// twice in a statement). Rows keep their order, so the rounds apply them in log order.
pub fn rounds<'a>(rows: &[&'a Row]) -> Vec<Vec<&'a Row>> {
    let mut out: Vec<Vec<&'a Row>> = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for &row in rows {
        let n = seen.entry(row.key()).or_insert(0);
        if out.len() <= *n {
            out.push(Vec::new());
        }
        out[*n].push(row);
        *n += 1;
    }
    out
}
