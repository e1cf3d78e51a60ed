//! `[[postgres.mirror]]`: filling tables hooklog did not create (the Node handlers' tables that
//! dashboards and agents read) from hooklog's own projection, in the same transaction as the
//! projection, so each mirrored row is written exactly when the cursor passes its records.
//!
//! A mapping names a target table (schema-qualified, existing, never created or altered by
//! hooklog), the hooklog table that feeds it (`from`), the target's key column, and for each
//! target column the *field* it is filled from:
//!
//! - `NAME`: column `NAME` of the source row (its SQL type is the field's type);
//! - `payload`: the JSON body (`jsonb`) of the record that last touched the source row: the
//!   `omni_events` row whose `seq` is the source's `last_seq` (or `seq`, or for
//!   `processed_webhook_events` `first_seq`: see [`record_column`]);
//! - `payload:/json/pointer`: the value at an RFC 6901 pointer into that body: a JSON value,
//!   written as JSON into a `jsonb`/`json` column and as its text (a string without quotes)
//!   into a text column; null when absent.
//!
//! # Invariants
//!
//! - Identifiers from the configuration are letters, digits and `_` only and always quoted, so
//!   no configuration can inject SQL; pointers travel as bind parameters, never in the text.
//! - A mapping is checked twice: statically ([`validate_config`], at config load: unknown
//!   `from`, unknown field, key not mapped, bad names), and against the database ([`prepare`],
//!   whenever the sink connects and whenever the mirror is set again): the table and every
//!   column must exist, each column's type must hold its field's type ([`conversion`]), and a
//!   `NOT NULL` column without default must be mapped. A refusal stops the sink (nothing is
//!   written, the failure is transient and alerts like any other) rather than skipping rows.
//! - One statement per mapping and batch (see [`Statement`]): the source rows the batch
//!   touched, by key, become target rows by update-then-insert-where-missing, keyed on the
//!   target's key column. The Node tables may have no unique constraint on it, so `on
//!   conflict` cannot be used; in one transaction, fenced by the cursor, the update/insert
//!   pair gives exactly one target row per key. A rewind re-applies it (a row deleted by hand
//!   comes back); a duplicate record touches no resource row, and `omni_events` rows flagged
//!   duplicate are not mirrored, as the Node handlers stored only the first delivery.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use tokio_postgres::types::Type;

use super::error::describe;
use super::tables::{self, Column, Merge, Table, Ty};

/// One `[[postgres.mirror]]` mapping.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// The target, `schema.table` (an existing table; hooklog never creates it).
    pub table: String,
    /// The hooklog table that feeds it (`omni_events`, `openphone_messages`, …).
    pub from: String,
    /// The target's key column: a source row is written to the target rows whose key equals
    /// the field mapped to it.
    pub key: String,
    /// Target column ← field (see the module header for the field language).
    pub columns: BTreeMap<String, String>,
}

/// Longest identifier Postgres keeps (NAMEDATALEN - 1).
const MAX_IDENT: usize = 63;

/// `name` as a quoted identifier: letters, digits and `_`, not starting with a digit, at most
/// 63 bytes. Case is kept (the quotes make it exact), and nothing else can break out of the
/// quotes.
pub fn quote_ident(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IDENT
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(format!("\"{name}\""))
    } else {
        Err(format!(
            "`{}` is not an identifier hooklog accepts: use letters, digits and `_`, not starting \
             with a digit, at most 63 characters (written as in the database, case included)",
            name.escape_debug()
        ))
    }
}

/// `schema.table`, both parts checked.
fn split_table(table: &str) -> Result<(&str, &str), String> {
    let Some((schema, name)) = table.split_once('.') else {
        return Err(format!(
            "`{}` must be schema-qualified, e.g. `public.openphone_messages`",
            table.escape_debug()
        ));
    };
    quote_ident(schema)?;
    quote_ident(name)?;
    Ok((schema, name))
}

/// The column of the source row that names the record whose body is its `payload`: the last
/// record that touched it (`last_seq`), the record itself (`seq`), or for
/// `processed_webhook_events` the original that claimed the key (`first_seq`).
pub fn record_column(table: &Table) -> Option<&'static str> {
    ["last_seq", "seq", "first_seq"]
        .into_iter()
        .find(|c| table.index(c).is_some())
}

/// The source table's single key column.
fn key_column(table: &Table) -> Option<&'static Column> {
    let mut keys = table.columns.iter().filter(|c| c.merge == Merge::Key);
    match (keys.next(), keys.next()) {
        (Some(k), None) => Some(k),
        _ => None,
    }
}

/// What fills a target column.
#[derive(Clone, Debug)]
pub enum Field {
    /// A column of the source row.
    Column(&'static Column),
    /// The JSON body of the source row's record.
    Payload,
    /// The value at a pointer into it: the pointer's reference tokens, unescaped.
    Pointer(Vec<String>),
}

/// The type of a field, as the compatibility rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A source column's type.
    Sql(Ty),
    /// A JSON value taken by a pointer.
    JsonValue,
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldType::Sql(Ty::Text) => "text",
            FieldType::Sql(Ty::Int8) => "bigint",
            FieldType::Sql(Ty::Int4) => "integer",
            FieldType::Sql(Ty::Int2) => "smallint",
            FieldType::Sql(Ty::Bool) => "boolean",
            FieldType::Sql(Ty::Ts) => "timestamptz",
            FieldType::Sql(Ty::Json) => "jsonb",
            FieldType::Sql(Ty::TextArray) => "text[]",
            FieldType::JsonValue => "a JSON value",
        })
    }
}

impl PartialEq for Field {
    fn eq(&self, other: &Field) -> bool {
        match (self, other) {
            // Columns of one table: the name decides.
            (Field::Column(a), Field::Column(b)) => a.name == b.name,
            (Field::Payload, Field::Payload) => true,
            (Field::Pointer(a), Field::Pointer(b)) => a == b,
            _ => false,
        }
    }
}

impl Field {
    /// Parses `field` for source table `from`.
    pub fn parse(from: &Table, field: &str) -> Result<Field, String> {
        if field == "payload" {
            return Ok(Field::Payload);
        }
        if let Some(pointer) = field.strip_prefix("payload:") {
            if pointer.is_empty() {
                return Ok(Field::Payload);
            }
            let Some(rest) = pointer.strip_prefix('/') else {
                return Err(format!(
                    "`{}`: a JSON pointer starts with `/`, e.g. `payload:/data/object/id`",
                    field.escape_debug()
                ));
            };
            if pointer.len() > 1000 {
                return Err("the JSON pointer is longer than 1000 characters".into());
            }
            let tokens = rest
                .split('/')
                .map(unescape_token)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    format!(
                        "`{}`: in a JSON pointer `~` is only `~0` (for ~) or `~1` (for /)",
                        field.escape_debug()
                    )
                })?;
            return Ok(Field::Pointer(tokens));
        }
        match from.columns.iter().find(|c| c.name == field) {
            Some(c) => Ok(Field::Column(c)),
            None => {
                let names: Vec<&str> = from.columns.iter().map(|c| c.name).collect();
                Err(format!(
                    "`{}` is not a field of `{}`: use one of its columns ({}), `payload`, or \
                     `payload:/json/pointer`",
                    field.escape_debug(),
                    from.name,
                    names.join(", ")
                ))
            }
        }
    }

    /// Its type.
    pub fn ty(&self) -> FieldType {
        match self {
            Field::Column(c) => FieldType::Sql(c.ty),
            Field::Payload => FieldType::Sql(Ty::Json),
            Field::Pointer(_) => FieldType::JsonValue,
        }
    }
}

/// RFC 6901: `~1` is `/`, `~0` is `~`, any other `~` is an error.
fn unescape_token(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// A mapping after the static checks.
#[derive(Clone, Debug)]
pub struct Mapping {
    /// `schema`, `table` of the target (valid identifiers).
    pub schema: String,
    /// See `schema`.
    pub name: String,
    /// The source.
    pub from: &'static Table,
    /// The target's key column.
    pub key: String,
    /// Target column ← field, key first, then by name.
    pub columns: Vec<(String, Field)>,
}

impl Mapping {
    /// `schema.table`, as configured.
    pub fn target(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    fn parse(m: &MirrorConfig) -> Result<Mapping, (&'static str, String)> {
        let (schema, name) = split_table(&m.table).map_err(|e| ("table", e))?;
        let from = tables::TABLES
            .iter()
            .find(|t| t.name == m.from)
            .copied()
            .ok_or_else(|| {
                let names: Vec<&str> = tables::TABLES.iter().map(|t| t.name).collect();
                (
                    "from",
                    format!(
                        "`{}` is not one of hooklog's tables ({})",
                        m.from.escape_debug(),
                        names.join(", ")
                    ),
                )
            })?;
        quote_ident(&m.key).map_err(|e| ("key", e))?;
        if m.columns.is_empty() {
            return Err(("columns", "map at least the key column".into()));
        }
        let mut columns = Vec::with_capacity(m.columns.len());
        for (column, field) in &m.columns {
            quote_ident(column).map_err(|e| ("columns", e))?;
            let parsed = Field::parse(from, field)
                .map_err(|e| ("columns", format!("{}: {e}", column.escape_debug())))?;
            columns.push((column.clone(), parsed));
        }
        let Some(at) = columns.iter().position(|(c, _)| *c == m.key) else {
            return Err((
                "key",
                format!(
                    "`{}` is not mapped in columns: map it (e.g. `{} = \"{}\"`), every row needs \
                     its key",
                    m.key,
                    m.key,
                    key_column(from).map_or("id", |c| c.name)
                ),
            ));
        };
        let key = columns.remove(at);
        columns.insert(0, key);
        Ok(Mapping {
            schema: schema.to_owned(),
            name: name.to_owned(),
            from,
            key: m.key.clone(),
            columns,
        })
    }
}

/// The static checks of `[[postgres.mirror]]`. The message starts with the key it is about
/// (`mirror[0].columns: …`), as the other sections' messages do.
pub fn validate_config(mirrors: &[MirrorConfig]) -> Result<Vec<Mapping>, String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(mirrors.len());
    for (i, m) in mirrors.iter().enumerate() {
        let mapping = Mapping::parse(m).map_err(|(key, e)| format!("mirror[{i}].{key}: {e}"))?;
        if !seen.insert(mapping.target()) {
            return Err(format!(
                "mirror[{i}].table: `{}` is already the target of an earlier mapping: one \
                 mapping per table (each would write its own rows)",
                mapping.target()
            ));
        }
        out.push(mapping);
    }
    Ok(out)
}

/// A column of a target table, as `information_schema.columns` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetColumn {
    /// Its name.
    pub name: String,
    /// `data_type` (`text`, `character varying`, `ARRAY`, `USER-DEFINED`, …).
    pub data_type: String,
    /// `udt_name` (`text`, `varchar`, `_text`, `int8`, …).
    pub udt_name: String,
    /// `is_nullable = 'YES'`.
    pub nullable: bool,
    /// A default, an identity or a generated column: the database fills it.
    pub filled: bool,
    /// A generated column: it cannot be written.
    pub generated: bool,
}

impl TargetColumn {
    /// Its type as a person would write it.
    pub fn type_name(&self) -> String {
        match self.data_type.as_str() {
            "ARRAY" => format!("{}[]", self.udt_name.trim_start_matches('_')),
            "USER-DEFINED" => self.udt_name.clone(),
            other => other.to_owned(),
        }
    }
}

/// How a field's value becomes a target column's (`{}` is the field's expression).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    /// As is; Postgres' assignment cast does the rest (text → varchar, bigint → numeric, …).
    Same,
    /// `timestamptz` → `timestamp`: the UTC wall time, whatever the session's time zone.
    Utc,
    /// → `json`.
    ToJson,
    /// `text[]` → `jsonb`: a JSON array of strings.
    ArrayToJsonb,
    /// `text[]` → `json`.
    ArrayToJson,
    /// A pointer's value as `jsonb`.
    PointerJsonb,
    /// A pointer's value as `json`.
    PointerJson,
    /// A pointer's value as text.
    PointerText,
}

const TEXTS: &[&str] = &["text", "varchar", "bpchar"];

/// Whether a column of type `udt_name` can hold a field of type `field`, and how. The pairs
/// are the documented ones (docs/configuration.md, `[[postgres.mirror]]`).
pub fn conversion(field: FieldType, udt_name: &str) -> Option<Conversion> {
    use Conversion::*;
    let text = TEXTS.contains(&udt_name);
    match field {
        FieldType::Sql(Ty::Text) if text => Some(Same),
        FieldType::Sql(Ty::Int8) if matches!(udt_name, "int8" | "numeric") => Some(Same),
        FieldType::Sql(Ty::Int4) if matches!(udt_name, "int4" | "int8" | "numeric") => Some(Same),
        FieldType::Sql(Ty::Int2) if matches!(udt_name, "int2" | "int4" | "int8" | "numeric") => {
            Some(Same)
        }
        FieldType::Sql(Ty::Bool) if udt_name == "bool" => Some(Same),
        FieldType::Sql(Ty::Ts) => match udt_name {
            "timestamptz" => Some(Same),
            "timestamp" => Some(Utc),
            _ => None,
        },
        FieldType::Sql(Ty::Json) => match udt_name {
            "jsonb" => Some(Same),
            "json" => Some(ToJson),
            _ => None,
        },
        FieldType::Sql(Ty::TextArray) => match udt_name {
            "_text" | "_varchar" => Some(Same),
            "jsonb" => Some(ArrayToJsonb),
            "json" => Some(ArrayToJson),
            _ => None,
        },
        FieldType::JsonValue => match udt_name {
            "jsonb" => Some(PointerJsonb),
            "json" => Some(PointerJson),
            _ if text => Some(PointerText),
            _ => None,
        },
        _ => None,
    }
}

/// What the compatible target types are, for a refusal's message.
fn accepted(field: FieldType) -> &'static str {
    match field {
        FieldType::Sql(Ty::Text) => "text, varchar or char",
        FieldType::Sql(Ty::Int8) => "bigint or numeric",
        FieldType::Sql(Ty::Int4) => "integer, bigint or numeric",
        FieldType::Sql(Ty::Int2) => "smallint, integer, bigint or numeric",
        FieldType::Sql(Ty::Bool) => "boolean",
        FieldType::Sql(Ty::Ts) => "timestamptz or timestamp",
        FieldType::Sql(Ty::Json) => "jsonb or json",
        FieldType::Sql(Ty::TextArray) => "text[], varchar[], jsonb or json",
        FieldType::JsonValue => "jsonb, json, text, varchar or char",
    }
}

/// Why a mapping does not fit its target table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorProblem {
    /// The target, `schema.table`.
    pub table: String,
    /// The column, when the problem is one column's.
    pub column: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for MirrorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(c) => write!(f, "{}.{c}: {}", self.table, self.message),
            None => write!(f, "{}: {}", self.table, self.message),
        }
    }
}

/// Problems in one line each, for an error or an alert.
pub fn describe_problems(problems: &[MirrorProblem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    format!(
        "postgres.mirror refused, the sink writes nothing until it is fixed (in the table or in \
         [[postgres.mirror]]): {}",
        lines.join("; ")
    )
}

/// Checks `mapping` against its target's columns (empty: the table does not exist or cannot be
/// seen); on success, the conversion of each mapped column.
pub fn fit(
    mapping: &Mapping,
    target: &[TargetColumn],
) -> Result<Vec<Conversion>, Vec<MirrorProblem>> {
    let table = mapping.target();
    let problem = |column: Option<&str>, message: String| MirrorProblem {
        table: table.clone(),
        column: column.map(str::to_owned),
        message,
    };
    if target.is_empty() {
        return Err(vec![problem(
            None,
            "no such table (or this role cannot see its columns): hooklog never creates a \
             mirror's table; create it, grant the sink's role access, or fix `table`"
                .into(),
        )]);
    }
    let mut problems = Vec::new();
    let mut conversions = Vec::with_capacity(mapping.columns.len());
    for (name, field) in &mapping.columns {
        let Some(col) = target.iter().find(|c| c.name == *name) else {
            problems.push(problem(
                Some(name),
                format!(
                    "no such column (the table has {}): add it to the table or remove it from \
                     the mapping",
                    target
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
            continue;
        };
        if col.generated {
            problems.push(problem(
                Some(name),
                "a generated column cannot be written: remove it from the mapping".into(),
            ));
            continue;
        }
        match conversion(field.ty(), &col.udt_name) {
            Some(c) => conversions.push(c),
            None => problems.push(problem(
                Some(name),
                format!(
                    "its type {} cannot hold the field's type {} ({}): map a field of a \
                     fitting type, or change the column to {}",
                    col.type_name(),
                    field.ty(),
                    describe_field(field),
                    accepted(field.ty())
                ),
            )),
        }
    }
    for col in target {
        let mapped = mapping.columns.iter().any(|(n, _)| *n == col.name);
        if !mapped && !col.nullable && !col.filled {
            problems.push(problem(
                Some(&col.name),
                format!(
                    "NOT NULL without a default and not mapped: an inserted row would be \
                     refused; map it to a field (type {}) or give it a default",
                    col.type_name()
                ),
            ));
        }
    }
    if problems.is_empty() {
        Ok(conversions)
    } else {
        Err(problems)
    }
}

fn describe_field(field: &Field) -> String {
    match field {
        Field::Column(c) => format!("column {}", c.name),
        Field::Payload => "payload".into(),
        Field::Pointer(tokens) => format!("payload:/{}", tokens.join("/")),
    }
}

/// One mapping's statement for a batch: parameter `$1` is the keys of the source rows the
/// batch touched, `$2…` the pointers. It answers the number of target rows written.
#[derive(Clone, Debug)]
pub struct Statement {
    /// `schema.table` (the metric's label).
    pub target: String,
    /// The source table.
    pub from: &'static Table,
    /// The source's key column.
    pub source_key: &'static Column,
    /// The SQL.
    pub sql: String,
    /// The pointers' tokens, parameters `$2…` in order.
    pub pointers: Vec<Vec<String>>,
}

impl Statement {
    /// The parameter types (keys, then one `text[]` per pointer).
    pub fn types(&self) -> Vec<Type> {
        let key = match self.source_key.ty {
            Ty::Int8 => Type::INT8_ARRAY,
            _ => Type::TEXT_ARRAY,
        };
        std::iter::once(key)
            .chain(self.pointers.iter().map(|_| Type::TEXT_ARRAY))
            .collect()
    }
}

/// The statement of `mapping` (already fitted: `conversions` from [`fit`]), for hooklog's
/// schema `q` (quoted).
///
/// ```sql
/// with src as (                        -- one row per target key: the latest record's
///   select distinct on (x.c0) x.* from (
///     select <field 0> as c0, …, s.<record column> as o
///       from <q>.<from> s left join <q>.omni_events e on e.seq = s.<record column>
///      where s.<source key> = any($1)
///   ) x where x.c0 is not null order by x.c0, x.o desc),
/// upd as (update <target> t set "k" = src.c0, … from src where t."k" = src.c0 returning t."k" as k),
/// ins as (insert into <target> ("k", …) select c0, … from src
///          where not exists (select 1 from upd where upd.k = src.c0) returning 1)
/// select (select count(*) from upd) + (select count(*) from ins)
/// ```
pub fn statement(
    q: &str,
    mapping: &Mapping,
    conversions: &[Conversion],
) -> Result<Statement, String> {
    if mapping.columns.is_empty() || mapping.columns.len() != conversions.len() {
        return Err(format!(
            "{}: {} columns and {} conversions (fit the mapping first)",
            mapping.target(),
            mapping.columns.len(),
            conversions.len()
        ));
    }
    let from = mapping.from;
    let source_key =
        key_column(from).ok_or_else(|| format!("{} has no single key column", from.name))?;
    let record =
        record_column(from).ok_or_else(|| format!("{} has no record column", from.name))?;
    let target = format!(
        "{}.{}",
        quote_ident(&mapping.schema)?,
        quote_ident(&mapping.name)?
    );
    // The body of the row's record: omni_events has it in the row.
    let own_payload = from.name == tables::OMNI_EVENTS.name;
    let payload = if own_payload {
        "s.payload"
    } else {
        "e.payload"
    };
    let mut pointers = Vec::new();
    let mut exprs = Vec::with_capacity(mapping.columns.len());
    let mut quoted = Vec::with_capacity(mapping.columns.len());
    let mut needs_join = false;
    for (i, ((column, field), conv)) in mapping.columns.iter().zip(conversions).enumerate() {
        quoted.push(quote_ident(column)?);
        let value = match field {
            Field::Column(c) => format!("s.{}", c.name),
            Field::Payload => {
                needs_join |= !own_payload;
                payload.to_owned()
            }
            Field::Pointer(tokens) => {
                needs_join |= !own_payload;
                pointers.push(tokens.clone());
                // $1 is the keys.
                format!("${}::text[]", pointers.len() + 1)
            }
        };
        let expr = match conv {
            Conversion::Same => value,
            Conversion::Utc => format!("({value} at time zone 'UTC')"),
            Conversion::ToJson => format!("({value})::json"),
            Conversion::ArrayToJsonb => format!("to_jsonb({value})"),
            Conversion::ArrayToJson => format!("to_json({value})"),
            Conversion::PointerJsonb => format!("({payload} #> {value})"),
            Conversion::PointerJson => format!("({payload} #> {value})::json"),
            Conversion::PointerText => format!("({payload} #>> {value})"),
        };
        exprs.push(format!("{expr} as c{i}"));
    }
    let join = if needs_join {
        format!(" left join {q}.omni_events e on e.seq = s.{record}")
    } else {
        String::new()
    };
    let only_originals = if own_payload {
        " and not s.duplicate"
    } else {
        ""
    };
    let key_ty = match source_key.ty {
        Ty::Int8 => "bigint[]",
        _ => "text[]",
    };
    let sets: Vec<String> = quoted
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = src.c{i}"))
        .collect();
    let cs: Vec<String> = (0..quoted.len()).map(|i| format!("c{i}")).collect();
    let key = &quoted[0];
    let sql = format!(
        "with src as (select distinct on (x.c0) x.* from (select {exprs}, s.{record} as o from {q}.{from} s{join} where s.{skey} = any($1::{key_ty}){only_originals}) x where x.c0 is not null order by x.c0, x.o desc), \
         upd as (update {target} t set {sets} from src where t.{key} = src.c0 returning t.{key} as k), \
         ins as (insert into {target} ({cols}) select {cs} from src where not exists (select 1 from upd where upd.k = src.c0) returning 1) \
         select (select count(*) from upd) + (select count(*) from ins)",
        exprs = exprs.join(", "),
        from = from.name,
        skey = source_key.name,
        sets = sets.join(", "),
        cols = quoted.join(", "),
        cs = cs.join(", "),
    );
    Ok(Statement {
        target: mapping.target(),
        from,
        source_key,
        sql,
        pointers,
    })
}

/// Reads the target's columns.
async fn target_columns(
    client: &tokio_postgres::Client,
    mapping: &Mapping,
) -> Result<Vec<TargetColumn>, tokio_postgres::Error> {
    let rows = client
        .query_typed(
            "select column_name::text, data_type::text, udt_name::text, is_nullable::text, \
             column_default is not null or is_identity = 'YES' or is_generated = 'ALWAYS', \
             is_generated = 'ALWAYS' \
             from information_schema.columns where table_schema = $1 and table_name = $2 \
             order by ordinal_position",
            &[(&mapping.schema, Type::TEXT), (&mapping.name, Type::TEXT)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(TargetColumn {
                name: r.try_get(0)?,
                data_type: r.try_get(1)?,
                udt_name: r.try_get(2)?,
                nullable: r.try_get::<_, String>(3)? == "YES",
                filled: r.try_get(4)?,
                generated: r.try_get(5)?,
            })
        })
        .collect()
}

/// Why the mirror cannot run.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The configuration itself is invalid (the static checks; the message names the key).
    #[error("postgres.{0}")]
    Config(String),
    /// A mapping does not fit its table (each problem names the table, column and types).
    #[error("{}", describe_problems(.0))]
    Refused(Vec<MirrorProblem>),
    /// The columns could not be read (connection or server error): retried.
    #[error("postgres: reading the mirror's tables: {0}")]
    Db(String),
}

/// Checks every mapping against the database and builds its statement for hooklog's schema
/// `q` (quoted). Every mapping is checked, so all problems are reported at once.
pub async fn prepare(
    client: &tokio_postgres::Client,
    q: &str,
    mirrors: &[MirrorConfig],
) -> Result<Vec<Statement>, MirrorError> {
    let mappings = validate_config(mirrors).map_err(MirrorError::Config)?;
    let mut problems = Vec::new();
    let mut statements = Vec::with_capacity(mappings.len());
    for mapping in &mappings {
        let columns = target_columns(client, mapping)
            .await
            .map_err(|e| MirrorError::Db(describe(&e)))?;
        match fit(mapping, &columns) {
            Ok(conversions) => {
                statements.push(statement(q, mapping, &conversions).map_err(MirrorError::Config)?)
            }
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() {
        Ok(statements)
    } else {
        Err(MirrorError::Refused(problems))
    }
}

/// Whether `mirrors` fit the database `client` is connected to (for `hooklog doctor`): every
/// problem, one per table or column; a configuration or connection error is one problem too.
pub async fn validate(
    client: &tokio_postgres::Client,
    mirrors: &[MirrorConfig],
) -> Result<(), Vec<MirrorProblem>> {
    // The schema only goes into the statements' text, which is not used here.
    match prepare(client, "\"hooklog\"", mirrors).await {
        Ok(_) => Ok(()),
        Err(MirrorError::Refused(p)) => Err(p),
        Err(e) => Err(vec![MirrorProblem {
            table: "postgres.mirror".into(),
            column: None,
            message: e.to_string(),
        }]),
    }
}

#[cfg(test)]
#[path = "mirror_tests.rs"]
mod tests;
