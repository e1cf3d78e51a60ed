//! `status`: the log's bounds and size, the kill switch (on or off, from the configuration or
//! an operator's record: who, when, why), and each consumer's cursor, lag, state (running,
//! paused, retrying, stopped), dead letters, last error and pause (who, when, why). `--json` prints the admin API's
//! `GET /admin/status` document as it came. With the daemon stopped, the cursors and dead
//! letters are read from the data directory; states and last errors only exist in the daemon.

use hooklog::admin::api::Status;

use crate::context::Context;
use crate::output::{human_bytes, one_line, table, Out};

/// Runs `status`.
pub fn run(ctx: &Context) -> anyhow::Result<()> {
    let (mut backend, reply) = ctx.first(|b| b.status())?;
    backend.release()?;
    let mut out = Out::stdout();
    if ctx.json {
        out.line(&reply.json)?;
    } else {
        let text = render(&reply.status, &backend.describe(), backend.is_direct());
        out.write(&text)?;
    }
    out.flush()
}

/// The text form.
fn render(status: &Status, source: &str, direct: bool) -> String {
    let log = &status.log;
    let mut text = table(
        &["log", ""],
        &[
            vec!["source".into(), source.to_owned()],
            vec!["first seq".into(), log.first_seq.to_string()],
            vec!["last seq".into(), log.last_seq.to_string()],
            vec!["count".into(), log.count.to_string()],
            vec!["size".into(), human_bytes(log.bytes)],
        ],
    );
    text.push('\n');
    if let Some(standby) = &status.standby {
        text.push_str(&format!("standby replica: {standby}\n\n"));
    }
    text.push_str(&kill_switch(status));
    text.push_str("\n\n");
    if status.consumers.is_empty() {
        text.push_str("no consumer has stored a cursor yet\n");
        return text;
    }
    let rows: Vec<Vec<String>> = status
        .consumers
        .iter()
        .map(|c| {
            vec![
                one_line(&c.name, None),
                c.cursor.to_string(),
                c.lag.to_string(),
                one_line(&c.state, None),
                c.dead_letters.to_string(),
                c.last_error
                    .as_deref()
                    .map(|e| one_line(e, Some(80)))
                    .unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    text.push_str(&table(
        &[
            "consumer",
            "cursor",
            "lag",
            "state",
            "dead letters",
            "last error",
        ],
        &rows,
    ));
    for c in &status.consumers {
        if let Some(p) = c.pause.as_ref().filter(|p| p.paused) {
            text.push_str(&format!(
                "{} paused by {} at {} (record {}): {}\n",
                one_line(&c.name, None),
                one_line(&p.by, None),
                one_line(&p.at, None),
                p.seq,
                p.reason
                    .as_deref()
                    .map_or_else(|| "no reason given".to_owned(), |r| one_line(r, Some(120)))
            ));
        }
    }
    if direct {
        text.push_str(
            "\n(read from the data directory: with the daemon stopped the stored cursors and \
             dead letters are known, not consumer states or last errors)\n",
        );
    }
    text
}

/// `kill switch: off`, or `kill switch: ON …` with where it comes from, who, when and why.
fn kill_switch(status: &Status) -> String {
    let k = &status.kill_switch;
    let record = k.record.as_ref().map(|r| {
        format!(
            "{} by {} at {} (record {}): {}",
            if r.on { "turned on" } else { "turned off" },
            one_line(&r.by, None),
            one_line(&r.at, None),
            r.seq,
            r.reason.as_deref().map_or_else(
                || "no reason given".to_owned(),
                |why| one_line(why, Some(120))
            )
        )
    });
    match (k.on, k.config, record) {
        (true, true, record) => format!(
            "kill switch: ON by the configuration ([compliance] kill_switch = true){}",
            record
                .map(|r| format!("; last record: {r}"))
                .unwrap_or_default()
        ),
        (true, false, Some(r)) => format!("kill switch: ON, {r}"),
        (_, _, Some(r)) => format!("kill switch: off, {r}"),
        (_, _, None) => "kill switch: off".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hooklog::admin::api::ConsumerStatus;
    use hooklog::log::LogStats;

    fn status() -> Status {
        Status {
            log: LogStats {
                first_seq: 1,
                last_seq: 42,
                count: 42,
                bytes: 12_897_485,
            },
            consumers: vec![
                ConsumerStatus {
                    name: "dedup".into(),
                    cursor: 40,
                    lag: 2,
                    state: "running".into(),
                    dead_letters: 1,
                    last_error: Some("bad\nbody".into()),
                    pause: None,
                },
                ConsumerStatus {
                    name: "postgres".into(),
                    cursor: 42,
                    lag: 0,
                    state: "retrying".into(),
                    dead_letters: 0,
                    last_error: None,
                    pause: None,
                },
            ],
            standby: None,
            kill_switch: Default::default(),
        }
    }

    #[test]
    fn the_text_status_is_an_aligned_table_with_a_readable_size() {
        let text = render(&status(), "the admin API at http://x", false);
        assert!(text.contains("size       12.3 MiB\n"), "{text}");
        assert!(text.contains("last seq   42\n"), "{text}");
        assert!(text.contains(
            "consumer  cursor  lag  state     dead letters  last error\n\
             dedup     40      2    running   1             bad\\nbody\n\
             postgres  42      0    retrying  0             -\n"
        ));
    }

    #[test]
    fn a_direct_status_says_what_it_cannot_know() {
        let text = render(&status(), "/data/log (read directly)", true);
        assert!(
            text.contains("dedup     40      2    running   1"),
            "{text}"
        );
        assert!(
            text.ends_with("not consumer states or last errors)\n"),
            "{text}"
        );
    }

    #[test]
    fn the_kill_switch_and_pauses_show_who_when_and_why() {
        use hooklog::admin::api::KillSwitchStatus;
        use hooklog::consumers::controls::{KillSwitch, Pause};
        let mut st = status();
        assert!(render(&st, "x", false).contains("\nkill switch: off\n"));
        st.kill_switch = KillSwitchStatus {
            on: true,
            config: false,
            record: Some(KillSwitch {
                on: true,
                by: "operator".into(),
                at: "2026-12-07T16:00:00Z".into(),
                reason: Some("carrier complaint".into()),
                seq: 41,
            }),
        };
        st.consumers[0].pause = Some(Pause {
            paused: true,
            by: "operator".into(),
            at: "2026-12-07T16:01:00Z".into(),
            reason: None,
            seq: 42,
        });
        let text = render(&st, "x", false);
        assert!(
            text.contains(
                "kill switch: ON, turned on by operator at 2026-12-07T16:00:00Z (record 41): \
                 carrier complaint\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "dedup paused by operator at 2026-12-07T16:01:00Z (record 42): no reason given\n"
            ),
            "{text}"
        );
        st.kill_switch.config = true;
        assert!(render(&st, "x", false).contains(
            "kill switch: ON by the configuration ([compliance] kill_switch = true); last \
             record: turned on by operator"
        ));
    }

    #[test]
    fn a_standby_replica_says_who_runs_the_consumers() {
        let mut st = status();
        st.standby = Some("replica host-b:1 runs the consumers".into());
        let text = render(&st, "the admin API at http://x", false);
        assert!(
            text.contains("standby replica: replica host-b:1 runs the consumers\n"),
            "{text}"
        );
        assert!(!render(&status(), "x", false).contains("standby"));
    }
}
