-- hooklog 0002: the outbound path (requests, gate decisions, send attempts and results), the
-- agent dispatch results and the line blocks, as the Postgres sync projects them.
--
-- Applied like 0001 (one transaction, search_path set to the configured schema, unqualified
-- names), and idempotent on its own: every statement is `if not exists`.
--
-- Conventions are 0001's: every row is a pure function of the log, nothing reads the clock.
-- Times are the records' own RFC 3339 stamps (null if a stamp cannot be read).

-- One row per outbound message: the fold `outbound::apply` of its records in log order
-- (request, decisions, attempts, results). `state` is that fold as JSON, read back by the sink
-- to apply the next records; the other columns mirror it for queries. A record at or below
-- `last_seq` changes nothing, so a replay or a rewind leaves the row as it is.
create table if not exists outbound_messages (
    id                   text primary key,
    idempotency_key      text,
    from_line            text not null,     -- the line as the caller gave it (id or number)
    line_id              text,              -- the resolved `[[lines]]` id, once decided
    from_number          text,              -- the sending number, once decided
    provider             text,              -- openphone | twilio
    to_number            text not null,     -- the recipient as given
    to_e164              text,              -- the recipient in E.164, once decided
    content              text not null,
    status               text not null,     -- pending | held | refused | sending | sent | failed | unknown
    approved             boolean not null,  -- cleared by the gates
    reasons              jsonb not null,    -- [{code, message}]
    hold_until           timestamptz,
    evaluations          integer not null,
    attempts             integer not null,
    provider_message_id  text,
    error                text,
    requested_at         timestamptz,
    updated_at           timestamptz,
    request_seq          bigint not null,
    last_seq             bigint not null,
    history              jsonb not null,    -- [{seq, event, at, detail?}], oldest first
    state                jsonb not null
);
create index if not exists outbound_messages_status on outbound_messages (status, updated_at);
create index if not exists outbound_messages_to on outbound_messages (to_e164, requested_at);
-- Not unique: a crash between two requests can leave two ids with one key; the API resolves it.
create index if not exists outbound_messages_idempotency_key on outbound_messages (idempotency_key)
    where idempotency_key is not null;

-- One row per dispatch result record (keyed on that record's seq): written once, never updated.
create table if not exists agent_dispatches (
    seq              bigint primary key,    -- the result record
    event_seq        bigint not null,       -- the dispatched event
    agent            text not null,
    idempotency_key  text not null,
    kind             text not null,
    outcome          text not null,         -- delivered | rejected | dead_lettered
    status           integer,               -- the gateway's HTTP status, if it answered
    attempts         integer not null,
    latency_ms       bigint not null,       -- receipt of the event to this result
    opted_out        boolean not null,
    redelivery       boolean not null,
    error            text,
    at               timestamptz
);
create index if not exists agent_dispatches_event on agent_dispatches (event_seq, agent);

-- Each line's latest block state (the record with the highest seq wins).
create table if not exists outbound_lines (
    line_id  text primary key,
    state    text not null,                 -- blocked | unblocked
    reason   text not null,
    at       timestamptz,
    seq      bigint not null
);
