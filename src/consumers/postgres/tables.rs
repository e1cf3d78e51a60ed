//! The projected tables as data: each column's type and merge rule, and the one upsert
//! statement per table generated from them.
//!
//! A batch of rows for one table is sent as one statement: every column as an array parameter,
//! `insert … select … from unnest($1, $2, …) on conflict (key) do update set …`. The SQL text
//! is the same for every batch size, and the statement is unnamed (`execute_typed`), so the
//! Supabase transaction pooler accepts it. `unnest` flattens two-dimensional arrays, so a
//! per-row `text[]` travels as one text with its items separated by U+001F (which items never
//! contain: it is replaced by U+FFFD) and `string_to_array` splits it again.
//!
//! # Merge rules (order independence)
//!
//! A row may be reached by several events of its resource, in any order. Columns are merged
//! by rule, so the final row depends only on the set of events (and a rewind, which re-sends
//! the same events, leaves it unchanged):
//!
//! - [`Merge::Always`]: the new value (tables keyed on the event itself: `omni_events`).
//! - [`Merge::Rank`]: the precedence key of a column group. The event whose key tuple is the
//!   highest wins the group; a missing key counts as lowest.
//! - [`Merge::Fill`]: the winner's value when it has one, else the other's (events are partial
//!   views: a status callback has no body, a ringing call no duration).
//! - [`Merge::Replace`]: the winner's value, even null (a contact update is the whole contact).
//! - [`Merge::Least`] / [`Merge::Greatest`]: the smallest / largest non-null value.
//!
//! Applying one row after another with these rules is commutative and associative: the
//! result is, per group, the first non-null value in decreasing key order.

use tokio_postgres::types::Type;

/// A column's SQL type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// `text`
    Text,
    /// `bigint`
    Int8,
    /// `integer`
    Int4,
    /// `smallint`
    Int2,
    /// `boolean`
    Bool,
    /// `timestamptz`
    Ts,
    /// `jsonb`
    Json,
    /// `text[]` (each row's list sent as one text, items separated by U+001F)
    TextArray,
}

impl Ty {
    pub(super) fn array_type(self) -> Type {
        match self {
            Ty::Int8 => Type::INT8_ARRAY,
            Ty::Int4 => Type::INT4_ARRAY,
            Ty::Int2 => Type::INT2_ARRAY,
            Ty::Bool => Type::BOOL_ARRAY,
            Ty::Ts => Type::TIMESTAMPTZ_ARRAY,
            Ty::Text | Ty::TextArray => Type::TEXT_ARRAY,
            Ty::Json => Type::JSONB_ARRAY,
        }
    }

    fn sql_array(self) -> &'static str {
        match self {
            Ty::Int8 => "bigint[]",
            Ty::Int4 => "integer[]",
            Ty::Int2 => "smallint[]",
            Ty::Bool => "boolean[]",
            Ty::Ts => "timestamptz[]",
            Ty::Text | Ty::TextArray => "text[]",
            Ty::Json => "jsonb[]",
        }
    }

    /// The value a missing precedence key counts as (below every real one).
    fn lowest(self) -> &'static str {
        match self {
            Ty::Ts => "'-infinity'::timestamptz",
            Ty::Text => "''",
            _ => "-1",
        }
    }
}

/// How a column is merged into an existing row (see the module header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Part of the primary key.
    Key,
    /// Always the new value.
    Always,
    /// Precedence key of group `n`.
    Rank(u8),
    /// Group `n`'s winner's value if not null, else the other.
    Fill(u8),
    /// Group `n`'s winner's value.
    Replace(u8),
    /// The smallest non-null value.
    Least,
    /// The largest non-null value.
    Greatest,
}

/// One column.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// Name.
    pub name: &'static str,
    /// Type.
    pub ty: Ty,
    /// Merge rule.
    pub merge: Merge,
}

const fn col(name: &'static str, ty: Ty, merge: Merge) -> Column {
    Column { name, ty, merge }
}

/// One projected table.
#[derive(Debug)]
pub struct Table {
    /// Name (unqualified).
    pub name: &'static str,
    /// Columns, key first.
    pub columns: &'static [Column],
    /// Extra condition for the update (`t` is the stored row, `excluded` the new one).
    pub update_where: Option<&'static str>,
}

use Merge::*;
use Ty::*;

/// Every record of the log.
pub static OMNI_EVENTS: Table = Table {
    name: "omni_events",
    columns: &[
        col("seq", Int8, Key),
        col("source", Text, Always),
        col("route", Text, Always),
        col("provider", Text, Always),
        col("kind", Text, Always),
        col("resource_id", Text, Always),
        col("dedup_key", Text, Always),
        col("dedup_keys", TextArray, Always),
        col("duplicate", Bool, Always),
        col("duplicate_of", Int8, Always),
        col("occurred_at", Ts, Always),
        col("received_at", Ts, Always),
        col("payload", Json, Always),
        col("parse_error", Text, Always),
    ],
    update_where: None,
};

/// Dedup keys of original events. A key is taken over by a later original once the earlier
/// claim expired (as the dedup consumer does), or by an earlier record when a rewind replays
/// it (the later claim is then replayed too, in order).
pub static PROCESSED_WEBHOOK_EVENTS: Table = Table {
    name: "processed_webhook_events",
    columns: &[
        col("dedup_key", Text, Key),
        col("first_seq", Int8, Always),
        col("first_seen_at", Ts, Always),
        col("expires_at", Ts, Always),
    ],
    update_where: Some("t.first_seq > excluded.first_seq or excluded.first_seen_at > t.expires_at"),
};

/// Quo messages.
pub static OPENPHONE_MESSAGES: Table = Table {
    name: "openphone_messages",
    columns: &[
        col("id", Text, Key),
        col("direction", Text, Fill(0)),
        col("from_number", Text, Fill(0)),
        col("to_numbers", TextArray, Fill(0)),
        col("counterpart", Text, Fill(0)),
        col("body", Text, Fill(0)),
        col("status", Text, Fill(0)),
        col("line_id", Text, Fill(0)),
        col("conversation_id", Text, Fill(0)),
        col("user_id", Text, Fill(0)),
        col("contact_ids", TextArray, Fill(0)),
        col("media", TextArray, Fill(0)),
        col("created_at", Ts, Fill(0)),
        col("status_rank", Int2, Rank(0)),
        col("status_seq", Int8, Rank(0)),
        col("first_seq", Int8, Least),
        col("last_seq", Int8, Greatest),
    ],
    update_where: None,
};

/// Quo calls, with the summary (group 1) and transcript (group 2) attached.
pub static OPENPHONE_CALLS: Table = Table {
    name: "openphone_calls",
    columns: &[
        col("id", Text, Key),
        col("direction", Text, Fill(0)),
        col("from_number", Text, Fill(0)),
        col("to_number", Text, Fill(0)),
        col("participants", TextArray, Fill(0)),
        col("counterpart", Text, Fill(0)),
        col("status", Text, Fill(0)),
        col("duration_secs", Int8, Fill(0)),
        col("line_id", Text, Fill(0)),
        col("user_id", Text, Fill(0)),
        col("conversation_id", Text, Fill(0)),
        col("created_at", Ts, Fill(0)),
        col("answered_at", Ts, Fill(0)),
        col("completed_at", Ts, Fill(0)),
        col("answered_by", Text, Fill(0)),
        col("recording_url", Text, Fill(0)),
        col("voicemail_url", Text, Fill(0)),
        col("status_rank", Int2, Rank(0)),
        col("status_seq", Int8, Rank(0)),
        col("summary", TextArray, Fill(1)),
        col("next_steps", TextArray, Fill(1)),
        col("summary_seq", Int8, Rank(1)),
        col("transcript", Json, Fill(2)),
        col("transcript_seq", Int8, Rank(2)),
        col("first_seq", Int8, Least),
        col("last_seq", Int8, Greatest),
    ],
    update_where: None,
};

/// Quo call summaries.
pub static OPENPHONE_CALL_SUMMARIES: Table = Table {
    name: "openphone_call_summaries",
    columns: &[
        col("call_id", Text, Key),
        col("status", Text, Fill(0)),
        col("summary", TextArray, Fill(0)),
        col("next_steps", TextArray, Fill(0)),
        col("status_seq", Int8, Rank(0)),
        col("first_seq", Int8, Least),
        col("last_seq", Int8, Greatest),
    ],
    update_where: None,
};

/// Quo call transcripts.
pub static OPENPHONE_CALL_TRANSCRIPTS: Table = Table {
    name: "openphone_call_transcripts",
    columns: &[
        col("call_id", Text, Key),
        col("status", Text, Fill(0)),
        col("duration_secs", Int8, Fill(0)),
        col("created_at", Ts, Fill(0)),
        col("dialogue", Json, Fill(0)),
        col("status_seq", Int8, Rank(0)),
        col("first_seq", Int8, Least),
        col("last_seq", Int8, Greatest),
    ],
    update_where: None,
};

/// Quo contacts: the newest update replaces the contact; a deletion marks it.
pub static OPENPHONE_CONTACTS: Table = Table {
    name: "openphone_contacts",
    columns: &[
        col("id", Text, Key),
        col("first_name", Text, Replace(0)),
        col("last_name", Text, Replace(0)),
        col("company", Text, Replace(0)),
        col("role", Text, Replace(0)),
        col("phone_numbers", TextArray, Replace(0)),
        col("emails", TextArray, Replace(0)),
        col("user_id", Text, Replace(0)),
        col("created_at", Ts, Replace(0)),
        col("updated_at", Ts, Replace(0)),
        col("version_at", Ts, Rank(0)),
        col("version_seq", Int8, Rank(0)),
        col("deleted_at", Ts, Least),
        col("first_seq", Int8, Least),
        col("last_seq", Int8, Greatest),
    ],
    update_where: None,
};

/// Twilio messages.
pub static TWILIO_SMS: Table = Table {
    name: "twilio_sms",
    columns: &[
        col("sid", Text, Key),
        col("direction", Text, Fill(0)),
        col("from_number", Text, Fill(0)),
        col("to_number", Text, Fill(0)),
        col("counterpart", Text, Fill(0)),
        col("body", Text, Fill(0)),
        col("status", Text, Fill(0)),
        col("error_code", Text, Fill(0)),
        col("messaging_service_sid", Text, Fill(0)),
        col("media", TextArray, Fill(0)),
        col("opt_out_type", Text, Fill(0)),
        col("created_at", Ts, Least),
        col("status_rank", Int2, Rank(0)),
        col("status_seq", Int8, Rank(0)),
        col("first_seq", Int8, Least),
        col("last_seq", Int8, Greatest),
    ],
    update_where: None,
};

/// Twilio calls, with the recording (group 1) and transcription (group 2).
pub static TWILIO_CALLS: Table = Table {
    name: "twilio_calls",
    columns: &[
        col("sid", Text, Key),
        col("direction", Text, Fill(0)),
        col("from_number", Text, Fill(0)),
        col("to_number", Text, Fill(0)),
        col("counterpart", Text, Fill(0)),
        col("status", Text, Fill(0)),
        col("duration_secs", Int8, Fill(0)),
        col("created_at", Ts, Least),
        col("completed_at", Ts, Fill(0)),
        col("status_rank", Int2, Rank(0)),
        col("sequence_number", Int8, Rank(0)),
        col("status_seq", Int8, Rank(0)),
        col("recording_sid", Text, Fill(1)),
        col("recording_status", Text, Fill(1)),
        col("recording_url", Text, Fill(1)),
        col("recording_duration_secs", Int8, Fill(1)),
        col("recording_rank", Int2, Rank(1)),
        col("recording_seq", Int8, Rank(1)),
        col("transcription_sid", Text, Fill(2)),
        col("transcription_status", Text, Fill(2)),
        col("transcription_text", Text, Fill(2)),
        col("transcription_rank", Int2, Rank(2)),
        col("transcription_seq", Int8, Rank(2)),
        col("first_seq", Int8, Least),
        col("last_seq", Int8, Greatest),
    ],
    update_where: None,
};

/// SalesMsg events, keyed on their dedup key; a later original of the same key wins.
pub static SALESMSG_EVENTS: Table = Table {
    name: "salesmsg_events",
    columns: &[
        col("event_key", Text, Key),
        col("seq", Int8, Always),
        col("event", Text, Always),
        col("kind", Text, Always),
        col("message_id", Text, Always),
        col("direction", Text, Always),
        col("from_number", Text, Always),
        col("to_numbers", TextArray, Always),
        col("counterpart", Text, Always),
        col("body", Text, Always),
        col("status", Text, Always),
        col("conversation_id", Text, Always),
        col("user_id", Text, Always),
        col("created_at", Ts, Always),
        col("received_at", Ts, Always),
    ],
    update_where: Some("excluded.seq >= t.seq"),
};

/// The suppression list: each number's latest state.
pub static SMS_OPTOUTS: Table = Table {
    name: "sms_optouts",
    columns: &[
        col("number", Text, Key),
        col("state", Text, Always),
        col("seq", Int8, Always),
        col("provider", Text, Always),
        col("line", Text, Always),
        col("text", Text, Always),
        col("at", Ts, Always),
        col("how", Text, Always),
        col("reason", Text, Always),
    ],
    update_where: Some("excluded.seq >= t.seq"),
};

/// Outbound messages: the row is the fold of the message's records, computed by the sink
/// from the stored `state` and the batch's records (`crate::consumers::postgres::rows::fold_messages`),
/// so it is written whole. A row never goes back to an earlier record.
pub static OUTBOUND_MESSAGES: Table = Table {
    name: "outbound_messages",
    columns: &[
        col("id", Text, Key),
        col("idempotency_key", Text, Always),
        col("from_line", Text, Always),
        col("line_id", Text, Always),
        col("from_number", Text, Always),
        col("provider", Text, Always),
        col("to_number", Text, Always),
        col("to_e164", Text, Always),
        col("content", Text, Always),
        col("status", Text, Always),
        col("approved", Bool, Always),
        col("reasons", Json, Always),
        col("hold_until", Ts, Always),
        col("evaluations", Int4, Always),
        col("attempts", Int4, Always),
        col("provider_message_id", Text, Always),
        col("error", Text, Always),
        col("requested_at", Ts, Always),
        col("updated_at", Ts, Always),
        col("request_seq", Int8, Always),
        col("last_seq", Int8, Always),
        col("history", Json, Always),
        col("state", Json, Always),
    ],
    update_where: Some("excluded.last_seq >= t.last_seq"),
};

/// Agent dispatch results, one per result record: written once (a replay of the record
/// changes nothing).
pub static AGENT_DISPATCHES: Table = Table {
    name: "agent_dispatches",
    columns: &[
        col("seq", Int8, Key),
        col("event_seq", Int8, Always),
        col("agent", Text, Always),
        col("idempotency_key", Text, Always),
        col("kind", Text, Always),
        col("outcome", Text, Always),
        col("status", Int4, Always),
        col("attempts", Int4, Always),
        col("latency_ms", Int8, Always),
        col("opted_out", Bool, Always),
        col("redelivery", Bool, Always),
        col("error", Text, Always),
        col("at", Ts, Always),
    ],
    update_where: Some("false"),
};

/// Each line's latest block state.
pub static OUTBOUND_LINES: Table = Table {
    name: "outbound_lines",
    columns: &[
        col("line_id", Text, Key),
        col("state", Text, Always),
        col("reason", Text, Always),
        col("at", Ts, Always),
        col("seq", Int8, Always),
    ],
    update_where: Some("excluded.seq >= t.seq"),
};

/// Every projected table, in the order a batch writes them.
pub static TABLES: &[&Table] = &[
    &OMNI_EVENTS,
    &PROCESSED_WEBHOOK_EVENTS,
    &OPENPHONE_MESSAGES,
    &OPENPHONE_CALLS,
    &OPENPHONE_CALL_SUMMARIES,
    &OPENPHONE_CALL_TRANSCRIPTS,
    &OPENPHONE_CONTACTS,
    &TWILIO_SMS,
    &TWILIO_CALLS,
    &SALESMSG_EVENTS,
    &SMS_OPTOUTS,
    &OUTBOUND_MESSAGES,
    &AGENT_DISPATCHES,
    &OUTBOUND_LINES,
];

impl Table {
    /// The upsert statement for schema `q` (already quoted).
    pub fn upsert_sql(&self, q: &str) -> String {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
        let keys: Vec<&str> = self
            .columns
            .iter()
            .filter(|c| c.merge == Key)
            .map(|c| c.name)
            .collect();
        let select: Vec<String> = self
            .columns
            .iter()
            .map(|c| match c.ty {
                TextArray => format!("string_to_array(u.{}, chr(31))", c.name),
                _ => format!("u.{}", c.name),
            })
            .collect();
        let params: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::{}", i + 1, c.ty.sql_array()))
            .collect();
        let sets: Vec<String> = self
            .columns
            .iter()
            .filter(|c| c.merge != Key)
            .map(|c| format!("{} = {}", c.name, self.merge_expr(c)))
            .collect();
        let mut sql = format!(
            "insert into {q}.{table} as t ({cols}) select {select} from unnest({params}) as u({cols}) on conflict ({keys}) do update set {sets}",
            table = self.name,
            cols = names.join(", "),
            select = select.join(", "),
            params = params.join(", "),
            keys = keys.join(", "),
            sets = sets.join(", "),
        );
        if let Some(w) = self.update_where {
            sql.push_str(" where ");
            sql.push_str(w);
        }
        sql
    }

    /// Whether group `g`'s new key beats the stored one.
    fn wins(&self, g: u8) -> String {
        let ranks: Vec<&Column> = self.columns.iter().filter(|c| c.merge == Rank(g)).collect();
        let side = |s: &str| {
            ranks
                .iter()
                .map(|c| format!("coalesce({s}.{}, {})", c.name, c.ty.lowest()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!("(row({}) > row({}))", side("excluded"), side("t"))
    }

    fn merge_expr(&self, c: &Column) -> String {
        let n = c.name;
        match c.merge {
            Key | Always => format!("excluded.{n}"),
            Rank(g) | Replace(g) => {
                format!("case when {} then excluded.{n} else t.{n} end", self.wins(g))
            }
            Fill(g) => format!(
                "case when {} then coalesce(excluded.{n}, t.{n}) else coalesce(t.{n}, excluded.{n}) end",
                self.wins(g)
            ),
            Least => format!("least(t.{n}, excluded.{n})"),
            Greatest => format!("greatest(t.{n}, excluded.{n})"),
        }
    }

    /// The index of column `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

#[cfg(test)]
#[path = "tables_tests.rs"]
mod tests;
