-- hooklog 0001: the tables the Postgres sync projects the log into.
--
-- Applied by `hooklog migrate` (or `hooklog serve` with postgres.migrate_on_start) inside one
-- transaction whose search_path is the configured schema, so names here are unqualified.
--
-- Conventions:
-- - Every table is a pure function of the log: a rewind re-applies the same upserts and leaves
--   every row as it was. Nothing here reads the clock (no `default now()` in projected tables).
-- - Resource tables are keyed on the provider's stable id. A resource is reported by several
--   events (a message sent, then delivered; a call ringing, completed, then summarised). Each
--   group of columns has its own precedence key (`*_rank`, `*_seq`): the event with the
--   highest key wins that group, and a column the winner lacks is filled from the others.
--   That rule is commutative, so the row is the same whatever order the events arrive in.
-- - `first_seq`/`last_seq`: the first and last log records that touched the row.
-- - Phone numbers are as the provider sent them (E.164 for both providers). `counterpart` is
--   the other party's number (the sender of an inbound message or call, the first recipient of
--   an outbound one): the column a "conversation with this number" view filters on.

-- Every record of the log, duplicates included.
create table if not exists omni_events (
    seq           bigint primary key,
    source        text not null,          -- openphone, twilio, salesmsg, backfill-*, outbound, internal
    route         text not null,
    provider      text not null,          -- openphone, twilio, salesmsg, hooklog
    kind          text not null,          -- message.received, call.completed, …; `unparsed` when unreadable
    resource_id   text,                   -- message / call / contact id the event is about
    dedup_key     text not null,          -- the first dedup key (the event's identity)
    dedup_keys    text[] not null,
    duplicate     boolean not null,
    duplicate_of  bigint,
    occurred_at   timestamptz,            -- the provider's time for the event, when it says
    received_at   timestamptz not null,   -- when hooklog acknowledged it
    payload       jsonb not null,         -- the body: JSON as sent, form fields as an object, else {"body_base64": …}
    parse_error   text
);
create index if not exists omni_events_received_at on omni_events (received_at);
create index if not exists omni_events_resource_id on omni_events (resource_id) where resource_id is not null;

-- Dedup keys of original events, as the old handlers' dedup table had them.
create table if not exists processed_webhook_events (
    dedup_key      text primary key,
    first_seq      bigint not null,
    first_seen_at  timestamptz not null,
    expires_at     timestamptz not null
);

create table if not exists openphone_messages (
    id               text primary key,
    direction        text,
    from_number      text,
    to_numbers       text[],
    counterpart      text,
    body             text,
    status           text,
    line_id          text,
    conversation_id  text,
    user_id          text,
    contact_ids      text[],
    media            text[],
    created_at       timestamptz,
    status_rank      smallint,
    status_seq       bigint,
    first_seq        bigint not null,
    last_seq         bigint not null
);
create index if not exists openphone_messages_counterpart on openphone_messages (counterpart, created_at);
create index if not exists openphone_messages_created_at on openphone_messages (created_at);
create index if not exists openphone_messages_conversation on openphone_messages (conversation_id);

create table if not exists openphone_calls (
    id               text primary key,
    direction        text,
    from_number      text,
    to_number        text,
    participants     text[],
    counterpart      text,
    status           text,
    duration_secs    bigint,
    line_id          text,
    user_id          text,
    conversation_id  text,
    created_at       timestamptz,
    answered_at      timestamptz,
    completed_at     timestamptz,
    answered_by      text,
    recording_url    text,
    voicemail_url    text,
    status_rank      smallint,
    status_seq       bigint,
    -- The AI summary and the transcript attach to the call whichever arrives first.
    summary          text[],
    next_steps       text[],
    summary_seq      bigint,
    transcript       jsonb,
    transcript_seq   bigint,
    first_seq        bigint not null,
    last_seq         bigint not null
);
create index if not exists openphone_calls_counterpart on openphone_calls (counterpart, created_at);
create index if not exists openphone_calls_created_at on openphone_calls (created_at);
create index if not exists openphone_calls_participants on openphone_calls using gin (participants);

create table if not exists openphone_call_summaries (
    call_id      text primary key,
    status       text,
    summary      text[],
    next_steps   text[],
    status_seq   bigint,
    first_seq    bigint not null,
    last_seq     bigint not null
);

create table if not exists openphone_call_transcripts (
    call_id        text primary key,
    status         text,
    duration_secs  bigint,
    created_at     timestamptz,
    dialogue       jsonb,                 -- [{content, start, end, identifier, user_id}]
    status_seq     bigint,
    first_seq      bigint not null,
    last_seq       bigint not null
);

create table if not exists openphone_contacts (
    id             text primary key,
    first_name     text,
    last_name      text,
    company        text,
    role           text,
    phone_numbers  text[],
    emails         text[],
    user_id        text,
    created_at     timestamptz,
    updated_at     timestamptz,
    -- The newest version replaces the contact: ordered by its updatedAt, then the log; a
    -- deletion counts as a version without updatedAt (it fills a contact never seen updated).
    version_at     timestamptz,
    version_seq    bigint,
    deleted_at     timestamptz,           -- receipt time of the first contact.deleted
    first_seq      bigint not null,
    last_seq       bigint not null
);
create index if not exists openphone_contacts_phone_numbers on openphone_contacts using gin (phone_numbers);

create table if not exists twilio_sms (
    sid                    text primary key,
    direction              text,
    from_number            text,
    to_number              text,
    counterpart            text,
    body                   text,
    status                 text,
    error_code             text,
    messaging_service_sid  text,
    media                  text[],
    opt_out_type           text,
    created_at             timestamptz,  -- resource creation time (backfill), else first receipt
    status_rank            smallint,
    status_seq             bigint,
    first_seq              bigint not null,
    last_seq               bigint not null
);
create index if not exists twilio_sms_counterpart on twilio_sms (counterpart, created_at);
create index if not exists twilio_sms_created_at on twilio_sms (created_at);

create table if not exists twilio_calls (
    sid                      text primary key,
    direction                text,
    from_number              text,
    to_number                text,
    counterpart              text,
    status                   text,
    duration_secs            bigint,
    created_at               timestamptz,  -- resource start time (backfill), else first receipt
    completed_at             timestamptz,
    status_rank              smallint,
    sequence_number          bigint,       -- Twilio's SequenceNumber orders callbacks of equal rank
    status_seq               bigint,
    recording_sid            text,
    recording_status         text,
    recording_url            text,
    recording_duration_secs  bigint,
    recording_rank           smallint,
    recording_seq            bigint,
    transcription_sid        text,
    transcription_status     text,
    transcription_text       text,
    transcription_rank       smallint,
    transcription_seq        bigint,
    first_seq                bigint not null,
    last_seq                 bigint not null
);
create index if not exists twilio_calls_counterpart on twilio_calls (counterpart, created_at);
create index if not exists twilio_calls_created_at on twilio_calls (created_at);

-- One row per SalesMsg event (keyed on its dedup key: a retry is the same row).
create table if not exists salesmsg_events (
    event_key        text primary key,
    seq              bigint not null,
    event            text not null,
    kind             text not null,
    message_id       text,
    direction        text,
    from_number      text,
    to_numbers       text[],
    counterpart      text,
    body             text,
    status           text,
    conversation_id  text,
    user_id          text,
    created_at       timestamptz,
    received_at      timestamptz not null
);
create index if not exists salesmsg_events_counterpart on salesmsg_events (counterpart, received_at);
create index if not exists salesmsg_events_message_id on salesmsg_events (message_id);

-- The suppression list as the compliance consumer keeps it: each number's latest state.
create table if not exists sms_optouts (
    number    text primary key,
    state     text not null,                -- opted_out | resubscribed
    seq       bigint not null,              -- the record that set this state
    provider  text not null,
    line      text,
    text      text not null,
    at        timestamptz not null,
    how       text not null,                -- keyword, phrase, ambiguous, opt_out_type, admin, opt_in
    reason    text not null
);
create index if not exists sms_optouts_state on sms_optouts (state);

-- The sink's cursor, committed in the same transaction as the rows it covers. `epoch` grows
-- on every rewind, so a writer that planned a batch before it cannot commit after it.
create table if not exists hooklog_cursors (
    name        text primary key,
    seq         bigint not null,
    epoch       bigint not null,
    updated_at  timestamptz not null default now()
);
