//! The compliance consumer, inbound half: the suppression list.
//!
//! Every inbound message (Quo, Twilio, SalesMsg; any line) is classified by
//! [`crate::optout::classify`]. An opt-out suppresses the sender's E.164 number across every
//! line and both providers from the moment it is projected; an exact START/UNSTOP/YES from a
//! suppressed number resubscribes it; HELP is recognised and logged. Ambiguous messages count
//! as opt-outs (compliance fails closed) and raise an alert so a human can review them.
//! Operators add and remove entries through the admin API, which appends `internal` events
//! (route [`ADMIN_ROUTE`]): the log stays the source of truth and a rebuild reproduces the list.
//! The `sender` appends the same kind of record ([`OptOutChange`], naming the provider and
//! line) when Twilio refuses a send with 21610.
//!
//! Records flagged duplicate by dedup (its upstream) are skipped. A record that cannot be
//! parsed is poison (dead-lettered).
//!
//! Key layout (trees of consumer `compliance`):
//!
//! | tree          | key                  | value                       |
//! |---------------|----------------------|-----------------------------|
//! | `suppression` | E.164 number, UTF-8  | JSON [`OptOutEntry`]        |

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::dedup::{self, RangeVerdicts, Verdicts};
use super::{Batch, BatchError, Consumer, Record};
use crate::alerts::{Alert, Alerter, Severity};
use crate::event::{Event, Source};
use crate::optout::{self, Confidence, Verdict};
use crate::parse::{Data, Direction, Kind};
use crate::state::{for_each, KvTree, StateError, StateStore};

/// The consumer's name.
pub const NAME: &str = "compliance";
/// Route of the `internal` events the admin API appends for manual list changes.
pub const ADMIN_ROUTE: &str = "/internal/optouts";

/// One number on the suppression list, with the evidence of its latest change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptOutEntry {
    /// E.164.
    pub number: String,
    /// `opted_out` (suppressed) or `resubscribed`.
    pub state: String,
    /// The record that set this state.
    pub seq: u64,
    /// `openphone`, `twilio`, `salesmsg`, or `admin`.
    pub provider: String,
    /// The line (number or provider line id) the message was sent to, if known.
    pub line: Option<String>,
    /// The message text (or the operator's reason).
    pub text: String,
    /// When the record was received (RFC 3339).
    pub at: String,
    /// `keyword`, `phrase`, `ambiguous`, `opt_out_type`, `admin`, `opt_in`.
    pub how: String,
    /// The classifier's reason.
    pub reason: String,
}

impl OptOutEntry {
    /// Whether the number must not be messaged.
    pub fn is_suppressed(&self) -> bool {
        self.state == "opted_out"
    }
}

/// A manual change appended through the admin API.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdminChange {
    /// `add` (suppress) or `remove` (lift).
    pub action: String,
    /// The number.
    pub number: String,
    /// Why (kept as evidence).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The body of an [`ADMIN_ROUTE`] record as this consumer reads it: an [`AdminChange`]
/// (same JSON fields), plus where the change came from when hooklog itself appended it. The
/// `sender` appends one when Twilio refuses a send with 21610 (the recipient unsubscribed at
/// Twilio), so the evidence names the provider and the line rather than an operator. Both
/// extra fields default to absent, so every record the admin API wrote reads as before.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OptOutChange {
    /// `add` (suppress) or `remove` (lift).
    pub action: String,
    /// The number.
    pub number: String,
    /// Why (kept as evidence).
    #[serde(default)]
    pub reason: Option<String>,
    /// The provider that reported the opt-out (`twilio`); absent: an operator (`admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The line the refused message was sent from, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
}

/// Normalises a phone number to E.164; US numbers may come without `+1`.
pub fn normalize_e164(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(|c| c.is_ascii_digit()).collect();
    let plus = raw.trim_start().starts_with('+');
    let e164 = match (plus, digits.len()) {
        (true, 8..=15) => format!("+{digits}"),
        (false, 10) => format!("+1{digits}"),
        (false, 11) if digits.starts_with('1') => format!("+{digits}"),
        _ => return None,
    };
    Some(e164)
}

/// The whole suppression list (suppressed and resubscribed entries), by number.
pub fn list(store: &dyn StateStore) -> Result<Vec<OptOutEntry>, StateError> {
    let tree = store.tree(NAME, "suppression")?;
    let mut out = Vec::new();
    for_each(tree.as_ref(), &[], |_, v| {
        out.push(decode(v)?);
        Ok(true)
    })?;
    Ok(out)
}

/// Whether `number` is suppressed.
pub fn is_suppressed(store: &dyn StateStore, number: &str) -> Result<bool, StateError> {
    Ok(entry(store, number)?.is_some_and(|e| e.is_suppressed()))
}

/// The list's entry for `number` (suppressed or resubscribed), if any.
pub fn entry(store: &dyn StateStore, number: &str) -> Result<Option<OptOutEntry>, StateError> {
    let Some(n) = normalize_e164(number) else {
        return Ok(None);
    };
    let tree = store.tree(NAME, "suppression")?;
    tree.get(n.as_bytes())?.map(|v| decode(&v)).transpose()
}

fn decode(v: &[u8]) -> Result<OptOutEntry, StateError> {
    serde_json::from_slice(v).map_err(|e| StateError::Corrupt {
        tree: "compliance/suppression".into(),
        message: e.to_string(),
    })
}

/// The compliance consumer.
pub struct Compliance {
    suppression: Arc<dyn KvTree>,
    verdicts: Verdicts,
    alerter: Alerter,
}

impl Compliance {
    /// Opens its trees in `store`.
    pub fn new(store: &dyn StateStore, alerter: Alerter) -> Result<Compliance, StateError> {
        Ok(Compliance {
            suppression: store.tree(NAME, "suppression")?,
            verdicts: Verdicts::open(store)?,
            alerter,
        })
    }

    fn get(&self, number: &str) -> Result<Option<OptOutEntry>, StateError> {
        self.suppression
            .get(number.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    fn put(&self, entry: &OptOutEntry) -> Result<(), StateError> {
        let json = crate::state::to_json(entry)?;
        self.suppression.insert(entry.number.as_bytes(), &json)
    }

    fn process(&self, record: Record<'_>, verdicts: &RangeVerdicts) -> Result<(), BatchError> {
        let event = record.event;
        if !verdicts.is_original(event.seq)? {
            return Ok(());
        }
        if event.source == Source::Internal && event.route == ADMIN_ROUTE {
            return self.admin_change(event);
        }
        let parsed = record.parsed().map_err(|e| BatchError::Poison {
            seq: event.seq,
            error: e.to_string(),
        })?;
        let Data::Message(msg) = &parsed.data else {
            return Ok(());
        };
        if parsed.kind != Kind::MessageReceived || msg.direction != Direction::Inbound {
            return Ok(());
        }
        let Some(number) = normalize_e164(&msg.from) else {
            tracing::warn!(seq = event.seq.0, from = %msg.from, "inbound message from a number that is not E.164; not classified");
            return Ok(());
        };
        let text = msg.text.clone().unwrap_or_default();
        let verdict = optout::classify(&text, msg.opt_out_type.as_deref());
        let line = msg.line_id.clone().or_else(|| msg.to.first().cloned());
        let evidence = |state: &str, how: &str, reason: String| OptOutEntry {
            number: number.clone(),
            state: state.to_owned(),
            seq: event.seq.0,
            provider: parsed.provider.as_str().to_owned(),
            line: line.clone(),
            text: text.clone(),
            at: event.received_at.to_rfc3339(),
            how: how.to_owned(),
            reason,
        };
        match verdict {
            Verdict::OptOut { confidence, reason } => {
                let how = match (confidence, msg.opt_out_type.is_some()) {
                    (_, true) => "opt_out_type",
                    (Confidence::Keyword, _) => "keyword",
                    (Confidence::Phrase, _) => "phrase",
                    (Confidence::Ambiguous, _) => "ambiguous",
                };
                self.put(&evidence("opted_out", how, reason.to_owned()))?;
                tracing::info!(seq = event.seq.0, number = %number, how, "opt-out recorded");
                if confidence == Confidence::Ambiguous {
                    self.alerter.raise(Alert {
                        key: "optout_review".into(),
                        severity: Severity::Warning,
                        title: format!("Ambiguous reply from {number} treated as an opt-out"),
                        reason: format!("record {}: \"{}\" ({reason})", event.seq, truncate(&text, 200)),
                        next_step: format!(
                            "review it; if it is not an opt-out, `curl -X DELETE …/admin/optouts/{number}` (the suppression stays until then)"
                        ),
                    });
                }
            }
            Verdict::OptIn { keyword } => {
                if self.get(&number)?.is_some_and(|e| e.is_suppressed()) {
                    self.put(&evidence(
                        "resubscribed",
                        "opt_in",
                        format!("keyword:{keyword}"),
                    ))?;
                    tracing::info!(seq = event.seq.0, number = %number, "resubscribed");
                }
            }
            Verdict::Help => {
                tracing::info!(seq = event.seq.0, number = %number, "HELP received");
            }
            Verdict::None => {}
        }
        Ok(())
    }

    fn admin_change(&self, event: &Event) -> Result<(), BatchError> {
        let poison = |error: String| BatchError::Poison {
            seq: event.seq,
            error,
        };
        let change: OptOutChange = serde_json::from_slice(&event.body)
            .map_err(|e| poison(format!("invalid opt-out change: {e}")))?;
        let number = normalize_e164(&change.number)
            .ok_or_else(|| poison(format!("`{}` is not a phone number", change.number)))?;
        let state = match change.action.as_str() {
            "add" => "opted_out",
            "remove" => "resubscribed",
            other => return Err(poison(format!("unknown action `{other}`"))),
        };
        let (provider, how) = match change.provider {
            Some(p) => (p, "provider"),
            None => ("admin".to_owned(), "admin"),
        };
        self.put(&OptOutEntry {
            number,
            state: state.to_owned(),
            seq: event.seq.0,
            reason: format!("{provider}:{}", change.action),
            provider,
            line: change.line,
            text: change.reason.unwrap_or_default(),
            at: event.received_at.to_rfc3339(),
            how: how.into(),
        })?;
        Ok(())
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

impl Consumer for Compliance {
    fn name(&self) -> &'static str {
        NAME
    }

    fn upstreams(&self) -> &'static [&'static str] {
        &[dedup::NAME]
    }

    fn reset(&mut self) -> Result<(), BatchError> {
        self.suppression.clear()?;
        Ok(())
    }

    async fn handle_batch(&mut self, batch: &Arc<Batch>) -> Result<(), BatchError> {
        let verdicts = self.verdicts.of_batch(batch.events())?;
        for record in batch.records() {
            // On a poison record the earlier ones are applied; the driver records that one.
            self.process(record, &verdicts)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::dedup::Dedup;
    use crate::consumers::testutil::{dump, event, from_fixture, quo_inbound, HOUR};
    use crate::event::{Micros, Seq};
    use crate::state::MemState;
    use futures_util::FutureExt;

    fn project(store: &MemState, events: &[Event]) -> Result<(), BatchError> {
        project_alerting(store, events, &Alerter::disabled())
    }

    fn project_alerting(
        store: &MemState,
        events: &[Event],
        alerter: &Alerter,
    ) -> Result<(), BatchError> {
        let mut dedup = Dedup::new(store, 72).unwrap();
        dedup.handle(events).now_or_never().unwrap()?;
        let mut c = Compliance::new(store, alerter.clone()).unwrap();
        c.handle(events).now_or_never().unwrap()
    }

    fn state_of(store: &MemState, number: &str) -> Option<String> {
        list(store)
            .unwrap()
            .into_iter()
            .find(|e| e.number == number)
            .map(|e| e.state)
    }

    const T0: i64 = 1_776_000_000_000_000;

    #[test]
    fn a_twilio_stop_suppresses_the_sender_on_every_line_with_its_evidence() {
        let store = MemState::default();
        project(
            &store,
            &[from_fixture("twilio/sms_inbound_stop.json", 1, T0)],
        )
        .unwrap();
        let entries = list(&store).unwrap();
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert!(e.is_suppressed());
        assert_eq!(
            (e.seq, e.provider.as_str(), e.how.as_str()),
            (1, "twilio", "opt_out_type")
        );
        assert_eq!(e.text, "STOP");
        assert!(e.line.is_some());
        assert!(is_suppressed(&store, &e.number).unwrap());
    }

    #[test]
    fn free_text_opt_outs_suppress_and_only_an_exact_start_resubscribes() {
        let store = MemState::default();
        let n = "+15555550177";
        let events = vec![
            quo_inbound(1, T0, "EV1", "AC1", n, "Is 3pm ok?"),
            quo_inbound(2, T0 + HOUR, "EV2", "AC2", n, "please stop texting me"),
            quo_inbound(3, T0 + 2 * HOUR, "EV3", "AC3", n, "yes please"),
        ];
        project(&store, &events).unwrap();
        assert_eq!(state_of(&store, n).as_deref(), Some("opted_out"));
        assert!(
            is_suppressed(&store, "(555) 555-0177").unwrap(),
            "numbers are normalised"
        );
        project(
            &store,
            &[quo_inbound(4, T0 + 3 * HOUR, "EV4", "AC4", n, "START")],
        )
        .unwrap();
        assert_eq!(state_of(&store, n).as_deref(), Some("resubscribed"));
        assert!(!is_suppressed(&store, n).unwrap());
    }

    #[test]
    fn a_duplicate_is_skipped_so_a_retried_stop_does_not_undo_a_later_start() {
        let store = MemState::default();
        let n = "+15555550178";
        let stop = quo_inbound(1, T0, "EVs", "ACs", n, "STOP");
        let start = quo_inbound(2, T0 + HOUR, "EVt", "ACt", n, "START");
        let mut retried_stop = stop.clone();
        retried_stop.seq = Seq(3);
        retried_stop.received_at = Micros(T0 + 2 * HOUR);
        project(&store, &[stop, start, retried_stop]).unwrap();
        assert_eq!(state_of(&store, n).as_deref(), Some("resubscribed"));
    }

    #[test]
    fn an_ambiguous_reply_raises_one_review_alert_naming_the_number_the_record_and_the_text() {
        let store = MemState::default();
        let alerter = Alerter::disabled();
        let (vague, clear) = ("+15555550179", "+15555550180");
        let ambiguous = quo_inbound(1, T0, "EVv", "ACv", vague, "can you stop");
        let mut retried = ambiguous.clone();
        retried.seq = Seq(3);
        retried.received_at = Micros(T0 + HOUR);
        project_alerting(
            &store,
            &[
                ambiguous,
                quo_inbound(2, T0, "EVc", "ACc", clear, "STOP"),
                retried,
            ],
            &alerter,
        )
        .unwrap();
        assert_eq!(state_of(&store, vague).as_deref(), Some("opted_out"));
        assert_eq!(state_of(&store, clear).as_deref(), Some("opted_out"));
        // One alert: none for the clear STOP, none for the provider's retry (a duplicate).
        let alerts = alerter.raised();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let a = &alerts[0];
        assert_eq!(a.key, "optout_review");
        assert_eq!(a.severity, Severity::Warning);
        assert!(a.title.contains(vague), "{a:?}");
        assert!(
            a.reason
                .starts_with("record 1: \"can you stop\" (ambiguous:"),
            "{a:?}"
        );
        assert!(
            a.next_step.contains(&format!("/admin/optouts/{vague}")),
            "{a:?}"
        );
    }

    #[test]
    fn operator_changes_arrive_as_log_events() {
        let store = MemState::default();
        let add = event(
            1,
            T0,
            Source::Internal,
            ADMIN_ROUTE,
            r#"{"action":"add","number":"5555550190","reason":"asked by phone"}"#,
        );
        project(&store, &[add]).unwrap();
        let e = &list(&store).unwrap()[0];
        assert_eq!(
            (e.number.as_str(), e.state.as_str(), e.how.as_str()),
            ("+15555550190", "opted_out", "admin")
        );
        let remove = event(
            2,
            T0 + 1,
            Source::Internal,
            ADMIN_ROUTE,
            r#"{"action":"remove","number":"+15555550190"}"#,
        );
        project(&store, &[remove]).unwrap();
        assert_eq!(
            state_of(&store, "+15555550190").as_deref(),
            Some("resubscribed")
        );
    }

    #[test]
    fn an_opt_out_reported_by_a_provider_keeps_the_provider_and_line_as_evidence() {
        let store = MemState::default();
        let change = OptOutChange {
            action: "add".into(),
            number: "+15555550191".into(),
            reason: Some("Twilio 21610: unsubscribed recipient".into()),
            provider: Some("twilio".into()),
            line: Some("tw-main".into()),
        };
        let body = serde_json::to_string(&change).unwrap();
        project(
            &store,
            &[event(1, T0, Source::Internal, ADMIN_ROUTE, &body)],
        )
        .unwrap();
        let e = entry(&store, "+15555550191").unwrap().unwrap();
        assert!(e.is_suppressed());
        assert_eq!(
            (e.provider.as_str(), e.line.as_deref(), e.how.as_str()),
            ("twilio", Some("tw-main"), "provider")
        );
        assert!(e.text.contains("21610"), "{}", e.text);
        // What the admin API writes has neither field and still reads as an operator's change.
        let admin = serde_json::to_string(&AdminChange {
            action: "add".into(),
            number: "+15555550192".into(),
            reason: None,
        })
        .unwrap();
        project(
            &store,
            &[event(2, T0 + 1, Source::Internal, ADMIN_ROUTE, &admin)],
        )
        .unwrap();
        let e = entry(&store, "+15555550192").unwrap().unwrap();
        assert_eq!((e.provider.as_str(), e.line.as_deref()), ("admin", None));
    }

    #[test]
    fn a_poison_record_is_reported_after_the_records_before_it_are_applied() {
        let store = MemState::default();
        let events = vec![
            quo_inbound(1, T0, "EV1", "AC1", "+15555550181", "STOP"),
            event(
                2,
                T0 + 1,
                Source::OpenPhone,
                "/webhook/openphone",
                "{not json",
            ),
            quo_inbound(3, T0 + 2, "EV3", "AC3", "+15555550182", "STOP"),
        ];
        let err = project(&store, &events).unwrap_err();
        assert!(
            matches!(err, BatchError::Poison { seq: Seq(2), .. }),
            "{err:?}"
        );
        assert_eq!(
            state_of(&store, "+15555550181").as_deref(),
            Some("opted_out")
        );
        assert_eq!(
            state_of(&store, "+15555550182"),
            None,
            "nothing after the poison record yet"
        );
    }

    #[test]
    fn a_rebuild_from_zero_gives_the_same_suppression_list() {
        let store = MemState::default();
        let texts = [
            "STOP",
            "hello",
            "remove me",
            "START",
            "not interested",
            "stop by tomorrow?",
            "Unsubscribe",
            "yes",
        ];
        let events: Vec<Event> = (1..=200u64)
            .map(|s| {
                let n = format!("+1555555{:04}", s % 17);
                quo_inbound(
                    s,
                    T0 + s as i64 * 1000,
                    &format!("EV{s}"),
                    &format!("AC{s}"),
                    &n,
                    texts[s as usize % texts.len()],
                )
            })
            .collect();
        project(&store, &events).unwrap();
        let before = dump(&store, NAME, &["suppression"]);
        assert!(!before.is_empty());
        let mut c = Compliance::new(&store, Alerter::disabled()).unwrap();
        c.reset().unwrap();
        c.handle(&events).now_or_never().unwrap().unwrap();
        assert_eq!(dump(&store, NAME, &["suppression"]), before);
    }

    #[test]
    fn e164_normalisation() {
        assert_eq!(
            normalize_e164("+1 (555) 555-0123").as_deref(),
            Some("+15555550123")
        );
        assert_eq!(
            normalize_e164("5555550123").as_deref(),
            Some("+15555550123")
        );
        assert_eq!(
            normalize_e164("15555550123").as_deref(),
            Some("+15555550123")
        );
        assert_eq!(
            normalize_e164("+447700900123").as_deref(),
            Some("+447700900123")
        );
        assert_eq!(normalize_e164("USu5AsEHuQ"), None);
        assert_eq!(normalize_e164("123"), None);
    }
}
