//! Restoring records into a stream (an import, a move from the sled engine): published in
//! order with a bounded window in flight, each confirmed at the sequence it had.

use async_nats::jetstream::{self, message::PublishMessage, stream};

use super::shared::{js_err, RESTORE_IN_FLIGHT};
use crate::event::{Event, Seq};
use crate::log::LogError;

/// Publishes `events` one after another from this one task, the `n`th expecting the stream's
/// last sequence to be the one before it (`Nats-Expected-Last-Sequence`), so that each record
/// gets the sequence its position says (an export of a whole log gets its sequence numbers
/// back, and with them dedup's `duplicate of SEQ` verdicts). Publishes are pipelined, their
/// acknowledgements awaited up to [`RESTORE_IN_FLIGHT`] behind; a record stored under any
/// other sequence (another publisher got in between) fails the restore rather than being
/// misnumbered silently.
pub(super) async fn restore_in_order(
    js: &jetstream::Context,
    mut stream: stream::Stream,
    subject: &str,
    instance: &str,
    first_id: u64,
    events: Vec<Event>,
) -> Result<Vec<Seq>, LogError> {
    let mut last = stream
        .info()
        .await
        .map_err(|e| js_err("stream info", e))?
        .state
        .last_sequence;
    let mut seqs = Vec::with_capacity(events.len());
    let mut pending = std::collections::VecDeque::with_capacity(RESTORE_IN_FLIGHT);
    for (n, ev) in (first_id..).zip(events) {
        let payload: bytes::Bytes = Event { seq: Seq(0), ..ev }.encode().into();
        let mut message = PublishMessage::build()
            .payload(payload)
            .message_id(format!("{instance}-{n}"));
        // nats-server 2.9 ignores an expected last sequence of 0; the first record into an
        // empty stream is checked by its acknowledged sequence below instead.
        if last > 0 {
            message = message.expected_last_sequence(last);
        }
        let ack = js
            .send_publish(subject.to_owned(), message)
            .await
            .map_err(|e| js_err("restore publish", e))?;
        last += 1;
        pending.push_back((Seq(last), ack));
        if pending.len() >= RESTORE_IN_FLIGHT {
            if let Some((want, ack)) = pending.pop_front() {
                seqs.push(confirm_restored(want, ack).await?);
            }
        }
    }
    while let Some((want, ack)) = pending.pop_front() {
        seqs.push(confirm_restored(want, ack).await?);
    }
    Ok(seqs)
}

/// The acknowledgement of one restored record, which must carry the sequence `want`.
pub(super) async fn confirm_restored(
    want: Seq,
    ack: jetstream::context::PublishAckFuture,
) -> Result<Seq, LogError> {
    let ack = ack
        .await
        .map_err(|e| js_err(&format!("restore of record {want} not acknowledged"), e))?;
    if ack.sequence != want.0 {
        return Err(LogError::Storage(format!(
            "JetStream stored the record restored as {want} under sequence {}: something else \
             published on the stream during the restore",
            ack.sequence
        )));
    }
    Ok(want)
}

/// One record by sequence; `None` when retention purged it.
pub(super) async fn get_one(stream: stream::Stream, seq: Seq) -> Result<Option<Event>, LogError> {
    match stream.get_raw_message(seq.0).await {
        Ok(msg) => {
            let mut event =
                Event::decode(&msg.payload).map_err(|source| LogError::Corrupt { seq, source })?;
            event.seq = seq;
            Ok(Some(event))
        }
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(js_err(&format!("read of {seq}"), e)),
    }
}
