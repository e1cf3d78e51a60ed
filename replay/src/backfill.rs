//! `backfill (openphone|twilio) --since DAY [--until DAY] [--line PN…] [--dry-run]
//! [--checkpoint FILE]`: fetch a range of days from the provider's REST API (the library's
//! [`hooklog::backfill`]) and append every resource to the log as a `backfill-*` record.
//!
//! # Where records go
//!
//! - The daemon runs: `POST /admin/events` (docs/api.md#post-adminevents), one record per resource. Dedup then
//!   marks the resources that had arrived by webhook as duplicates; at the end the command
//!   waits (up to [`VERDICT_WAIT`]) for dedup to reach the last appended record and counts
//!   the verdicts of the records it appended.
//! - The daemon is stopped (connection refused) or `--direct`: the data directory is opened
//!   and the records appended to it directly. Dedup runs when the daemon starts, so the
//!   duplicates are not known yet and the summary says so.
//! - `--dry-run`: nothing is appended and no checkpoint is written; the counts say what would
//!   have been.
//!
//! # Output
//!
//! Progress goes to stderr: a progress bar when stderr is a terminal, else a plain line at
//! each stage and at most once a second. With `--json`, stdout has one JSON object per line
//! instead: `{"type":"progress",…}` lines, then one `{"type":"summary",…}`. The text summary
//! goes to stdout.
//!
//! # Checkpoint
//!
//! `--checkpoint FILE`, default `<data_dir>/backfill-<provider>-<since>-<until>.json` (with
//! `-lines-<hash>` before `.json` when `--line` is given). An
//! interrupted run prints where its progress is kept; the same command resumes it. A finished
//! run deletes it. Exit codes: 0 ok, 1 error (one line, e.g. `the Quo API key was refused
//! (401): check [openphone] api_key`).

use std::collections::{BTreeMap, HashSet};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{NaiveDate, Utc};
use hooklog::admin::api::{EventJson, EventPage};
use hooklog::backfill::{
    self, quo, twilio, Checkpoint, Progress, Range, Sink, SinkError, BACKFILL_RATE, BACKFILL_RETRY,
};
use hooklog::event::Source;
use hooklog::log::{Log, LogError};
use hooklog::send::limiter::Limiter;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::backend::api::Token;
use crate::backend::{is_unreachable, Backend};
use crate::cli::{BackfillArgs, BackfillProvider};
use crate::context::Context;
use crate::output::Out;

/// How long to wait for dedup to give its verdicts on the appended records.
const VERDICT_WAIT: Duration = Duration::from_secs(30);

/// Runs the subcommand.
pub fn run(ctx: &Context, args: &BackfillArgs) -> anyhow::Result<()> {
    let until = args
        .until
        .unwrap_or_else(|| Utc::now().date_naive().succ_opt().unwrap_or(NaiveDate::MAX));
    let range = Range::new(args.since, until).map_err(anyhow::Error::msg)?;
    if matches!(args.provider, BackfillProvider::Twilio) && !args.lines.is_empty() {
        anyhow::bail!("--line applies to openphone only (Twilio is fetched per account)");
    }
    let provider = match args.provider {
        BackfillProvider::Openphone => "openphone",
        BackfillProvider::Twilio => "twilio",
    };

    let target = if args.dry_run {
        Target::None
    } else {
        choose_target(ctx)?
    };
    let checkpoint_path = if args.dry_run {
        None
    } else {
        Some(args.checkpoint.clone().unwrap_or_else(|| {
            // Runs for other lines get other files.
            let mut lines = args.lines.clone();
            lines.sort();
            lines.dedup();
            let lines = if lines.is_empty() {
                String::new()
            } else {
                format!("-lines-{}", backfill::fingerprint(&lines.join(" ")))
            };
            ctx.data_dir().join(format!(
                "backfill-{provider}-{}-{until}{lines}.json",
                args.since
            ))
        }))
    };

    let display = Display::new(ctx.json, provider);
    let mut sink = CliSink {
        target,
        appended: Vec::new(),
        display,
        last: Progress::default(),
    };
    let limiter = Arc::new(Limiter::new(BACKFILL_RATE));

    let (cp, result): (_, Result<Progress, anyhow::Error>) = match args.provider {
        BackfillProvider::Openphone => {
            let opts = quo::Options {
                api_base: ctx.config.openphone.api_base.clone(),
                api_key: ctx
                    .config
                    .openphone
                    .api_key
                    .as_ref()
                    .map(|k| k.expose().to_owned())
                    .unwrap_or_default(),
                range,
                lines: args.lines.clone(),
                retry: BACKFILL_RETRY,
                workspace_messages: ctx.config.openphone.workspace_messages,
            };
            let mut cp = Checkpoint::open(checkpoint_path.as_deref(), opts.run_key())?;
            sink.resumed(&cp);
            let r = quo::backfill(&opts, limiter, &mut cp, &mut sink).map_err(anyhow::Error::new);
            (cp, r)
        }
        BackfillProvider::Twilio => {
            let opts = twilio::Options {
                api_base: ctx.config.twilio.api_base.clone(),
                account_sid: ctx.config.twilio.account_sid.clone().unwrap_or_default(),
                auth_token: ctx
                    .config
                    .twilio
                    .auth_tokens
                    .first()
                    .map(|t| t.expose().to_owned())
                    .unwrap_or_default(),
                range,
                page_size: 1000,
                retry: BACKFILL_RETRY,
            };
            let mut cp = Checkpoint::open(checkpoint_path.as_deref(), opts.run_key())?;
            sink.resumed(&cp);
            let r =
                twilio::backfill(&opts, limiter, &mut cp, &mut sink).map_err(anyhow::Error::new);
            (cp, r)
        }
    };
    sink.display.finish();

    let progress = match result {
        Ok(p) => p,
        Err(e) => {
            if cp.is_empty() {
                // Nothing to resume: leave no file behind (the error is what matters).
                let _ = cp.finish();
            } else if let Some(path) = cp.path() {
                eprintln!(
                    "hooklog-replay: progress is kept in {}: run the same command again to \
                     resume",
                    path.display()
                );
            }
            return Err(e);
        }
    };
    cp.finish()?;

    let duplicates = sink.target.duplicates(&sink.appended);
    let summary = Summary {
        provider,
        range,
        dry_run: args.dry_run,
        target: sink.target.describe(),
        progress,
        appended: sink.appended.len() as u64,
        first_seq: sink.appended.iter().min().copied(),
        last_seq: sink.appended.iter().max().copied(),
        duplicates,
    };
    let mut out = Out::stdout();
    if ctx.json {
        out.line(&summary.json().to_string())?;
    } else {
        out.line(&summary.text())?;
    }
    out.flush()
}

/// Picks the admin API if the daemon answers, else the data directory (as the read commands
/// do: only a refused connection means the daemon is stopped).
fn choose_target(ctx: &Context) -> anyhow::Result<Target> {
    if !ctx.direct_only {
        let mut api = ctx.api();
        match api.status() {
            Ok(_) => {
                return Ok(Target::Api(AdminClient::new(
                    &ctx.admin_url,
                    ctx.token.clone(),
                )))
            }
            Err(e) if is_unreachable(&e) => {
                eprintln!(
                    "hooklog-replay: daemon not reachable at {}; appending to {} directly",
                    ctx.admin_url,
                    ctx.store().location()
                );
            }
            Err(e) => return Err(e),
        }
    }
    let store = ctx.store();
    store.check_exists()?;
    let dir = store.location();
    let log = store.open().map_err(|e| match e {
        LogError::Locked(detail) => anyhow::anyhow!(
            "cannot open {dir}: the daemon seems to be running (it holds the data directory) \
             but its admin API at {} is unreachable: check {} or pass --admin-url ({detail})",
            ctx.admin_url,
            ctx.admin_url_origin
        ),
        other => anyhow::Error::new(other).context(format!("cannot open the log in {dir}")),
    })?;
    Ok(Target::Direct { log, dir })
}

/// Where resources are appended.
enum Target {
    /// `--dry-run`.
    None,
    /// The running daemon's admin API.
    Api(AdminClient),
    /// The data directory, the daemon being stopped.
    Direct {
        log: Arc<dyn Log>,
        /// The log in messages ([`crate::store::Store::location`]).
        dir: String,
    },
}

impl Target {
    fn describe(&self) -> Value {
        match self {
            Target::None => json!({"kind": "dry-run"}),
            Target::Api(c) => json!({"kind": "admin-api", "url": c.base}),
            Target::Direct { dir, .. } => {
                json!({"kind": "direct", "dir": dir})
            }
        }
    }

    fn append(&mut self, source: Source, route: &str, body: &[u8]) -> anyhow::Result<Option<u64>> {
        match self {
            Target::None => Ok(None),
            Target::Api(c) => c.append(source, route, body).map(Some),
            Target::Direct { log, dir } => {
                backfill::append_direct(log.as_ref(), source, route, body)
                    .map(|seq| Some(seq.0))
                    .with_context(|| format!("cannot append to the log in {dir}"))
            }
        }
    }

    /// How many of `seqs` dedup marked duplicate, once it has judged them all; `None` when
    /// that cannot be known now.
    fn duplicates(&mut self, seqs: &[u64]) -> Duplicates {
        match self {
            Target::None => Duplicates::NotApplicable,
            Target::Direct { log, .. } => {
                // Flushed per append already; closing lets the daemon start at once.
                let _ = log.close();
                Duplicates::AfterStart
            }
            Target::Api(c) => match c.verdicts(seqs) {
                Ok(Some(n)) => Duplicates::Known(n),
                Ok(None) => Duplicates::Pending,
                Err(e) => Duplicates::Failed(format!("{e:#}")),
            },
        }
    }
}

/// What is known of the duplicates among the appended records.
enum Duplicates {
    NotApplicable,
    Known(u64),
    /// Dedup had not judged every record within [`VERDICT_WAIT`].
    Pending,
    /// Appended directly: dedup judges them when the daemon starts.
    AfterStart,
    Failed(String),
}

/// `POST /admin/events` and the verdict look-up.
struct AdminClient {
    base: String,
    token: Token,
    agent: ureq::Agent,
}

impl AdminClient {
    fn new(base: &str, token: Token) -> AdminClient {
        AdminClient {
            base: base.to_owned(),
            token,
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .timeout_read(Duration::from_secs(60))
                .user_agent(concat!("hooklog-replay/", env!("CARGO_PKG_VERSION")))
                .build(),
        }
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let req = self.agent.request(method, &format!("{}{path}", self.base));
        match &self.token {
            Token::Found { value, .. } => req.set("Authorization", &format!("Bearer {value}")),
            Token::Missing { .. } => req,
        }
    }

    fn explain(&self, what: &str, e: ureq::Error) -> anyhow::Error {
        match e {
            ureq::Error::Status(401, _) => match &self.token {
                Token::Found { origin, .. } => anyhow::anyhow!(
                    "the admin API at {} refused the token from {origin} (401 Unauthorized): \
                     pass the daemon's token with --token",
                    self.base
                ),
                Token::Missing { reason } => anyhow::anyhow!(
                    "the admin API at {} needs a token (401 Unauthorized) and none was found: \
                     {reason}",
                    self.base
                ),
            },
            ureq::Error::Status(code, resp) => {
                let body = resp.into_string().unwrap_or_default();
                let message = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or(body);
                anyhow::anyhow!("the admin API answered {what} with {code}: {message}")
            }
            ureq::Error::Transport(t) => {
                anyhow::anyhow!("cannot reach the admin API at {} ({what}): {t}", self.base)
            }
        }
    }

    fn append(&self, source: Source, route: &str, body: &[u8]) -> anyhow::Result<u64> {
        let (text, encoding) = match std::str::from_utf8(body) {
            Ok(s) => (s.to_owned(), "utf8"),
            Err(_) => {
                use base64::Engine;
                (
                    base64::engine::general_purpose::STANDARD.encode(body),
                    "base64",
                )
            }
        };
        let answer: Value = self
            .request("POST", "/admin/events")
            .send_json(json!({
                "source": source.as_str(),
                "route": route,
                "headers": {},
                "body": text,
                "body_encoding": encoding,
            }))
            .map_err(|e| self.explain("POST /admin/events", e))?
            .into_json()
            .context("cannot decode the answer to POST /admin/events")?;
        answer
            .get("seq")
            .and_then(Value::as_u64)
            .context("the answer to POST /admin/events has no seq")
    }

    fn event(&self, seq: u64) -> anyhow::Result<EventJson> {
        let path = format!("/admin/events/{seq}");
        self.request("GET", &path)
            .call()
            .map_err(|e| self.explain(&format!("GET {path}"), e))?
            .into_json()
            .with_context(|| format!("cannot decode the answer to GET {path}"))
    }

    /// Waits for dedup to judge the last of `seqs`, then counts the duplicates among them.
    fn verdicts(&self, seqs: &[u64]) -> anyhow::Result<Option<u64>> {
        let (Some(&first), Some(&last)) = (seqs.iter().min(), seqs.iter().max()) else {
            return Ok(Some(0));
        };
        let deadline = Instant::now() + VERDICT_WAIT;
        // Dedup processes in order: once the last one has a verdict, they all have.
        while self.event(last)?.dedup.is_none() {
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let ours: HashSet<u64> = seqs.iter().copied().collect();
        let mut duplicates = 0;
        let mut after = first - 1;
        while after < last {
            let path = format!(
                "/admin/events?after={after}&limit={}",
                hooklog::admin::MAX_PAGE
            );
            let page: EventPage = self
                .request("GET", &path)
                .call()
                .map_err(|e| self.explain(&format!("GET {path}"), e))?
                .into_json()
                .with_context(|| format!("cannot decode the answer to GET {path}"))?;
            if page.events.is_empty() {
                break;
            }
            for ev in &page.events {
                let dup = ev
                    .dedup
                    .as_ref()
                    .and_then(|d| d.get("verdict"))
                    .and_then(Value::as_str)
                    == Some("duplicate");
                if ours.contains(&ev.seq) && ev.seq <= last && dup {
                    duplicates += 1;
                }
            }
            after = page.events.last().map_or(last, |e| e.seq);
        }
        Ok(Some(duplicates))
    }
}

/// The sink the library fetches into: appends, counts, shows progress.
struct CliSink {
    target: Target,
    appended: Vec<u64>,
    display: Display,
    last: Progress,
}

impl CliSink {
    fn resumed(&mut self, cp: &Checkpoint) {
        if cp.resumed() {
            if let Some(path) = cp.path() {
                self.display.note(&format!(
                    "resuming the interrupted run kept in {}",
                    path.display()
                ));
            }
        }
    }
}

impl Sink for CliSink {
    fn put(&mut self, source: Source, route: &str, body: &[u8]) -> Result<(), SinkError> {
        if let Some(seq) = self.target.append(source, route, body)? {
            self.appended.push(seq);
        }
        Ok(())
    }

    fn progress(&mut self, p: &Progress) {
        self.last = p.clone();
        self.display.show(p, self.appended.len() as u64);
    }
}

/// Progress output: a bar on a terminal, plain lines otherwise, JSON lines with `--json`.
struct Display {
    mode: Mode,
    provider: &'static str,
    last_line: Option<Instant>,
    last_stage: String,
}

enum Mode {
    Bar(ProgressBar),
    Lines,
    Json,
}

impl Display {
    fn new(json: bool, provider: &'static str) -> Display {
        let mode = if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} units  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            Mode::Bar(bar)
        } else {
            Mode::Lines
        };
        Display {
            mode,
            provider,
            last_line: None,
            last_stage: String::new(),
        }
    }

    fn note(&mut self, text: &str) {
        match &self.mode {
            Mode::Bar(bar) => bar.println(text),
            Mode::Lines => eprintln!("hooklog-replay: {text}"),
            Mode::Json => {
                println!("{}", json!({"type": "note", "message": text}));
            }
        }
    }

    fn show(&mut self, p: &Progress, appended: u64) {
        let text = format!(
            "{} requests ({} retries), {} resources, {} appended, {}",
            p.requests, p.retries, p.resources, appended, p.stage
        );
        if let Mode::Bar(bar) = &self.mode {
            bar.set_length(p.units_total);
            bar.set_position(p.units_done);
            bar.set_message(text);
            return;
        }
        let stage_changed = p.stage != self.last_stage;
        let due = self
            .last_line
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if !stage_changed && !due {
            return;
        }
        self.last_stage.clone_from(&p.stage);
        self.last_line = Some(Instant::now());
        match &self.mode {
            Mode::Json => println!(
                "{}",
                json!({
                    "type": "progress", "provider": self.provider, "stage": p.stage,
                    "requests": p.requests, "retries": p.retries, "resources": p.resources,
                    "appended": appended, "units_done": p.units_done,
                    "units_total": p.units_total,
                })
            ),
            _ => eprintln!("backfill {}: {text}", self.provider),
        }
    }

    fn finish(&mut self) {
        if let Mode::Bar(bar) = &self.mode {
            bar.finish_and_clear();
        }
    }
}

struct Summary {
    provider: &'static str,
    range: Range,
    dry_run: bool,
    target: Value,
    progress: Progress,
    appended: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    duplicates: Duplicates,
}

impl Summary {
    fn json(&self) -> Value {
        let (duplicates, new, note) = match &self.duplicates {
            Duplicates::Known(n) => (json!(n), json!(self.appended - n), Value::Null),
            Duplicates::NotApplicable => (Value::Null, Value::Null, Value::Null),
            Duplicates::Pending => (
                Value::Null,
                Value::Null,
                json!("dedup has not judged every appended record yet: see `tail`"),
            ),
            Duplicates::AfterStart => (
                Value::Null,
                Value::Null,
                json!("appended directly: dedup marks duplicates when the daemon starts"),
            ),
            Duplicates::Failed(e) => (Value::Null, Value::Null, json!(e)),
        };
        json!({
            "type": "summary",
            "provider": self.provider,
            "since": self.range.since.to_string(),
            "until": self.range.until.to_string(),
            "dry_run": self.dry_run,
            "target": self.target,
            "requests": self.progress.requests,
            "retries": self.progress.retries,
            "resources": self.progress.resources,
            "by_kind": self.progress.by_kind,
            "skipped": self.progress.skipped,
            "appended": self.appended,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "duplicates": duplicates,
            "new": new,
            "note": note,
        })
    }

    fn text(&self) -> String {
        let kinds: BTreeMap<_, _> = self.progress.by_kind.iter().collect();
        let kinds = kinds
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut s = format!(
            "backfill {} {} to {} (until excluded): {} requests ({} retries), {} resources{}",
            self.provider,
            self.range.since,
            self.range.until,
            self.progress.requests,
            self.progress.retries,
            self.progress.resources,
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({kinds})")
            },
        );
        if !self.progress.skipped.is_empty() {
            s.push_str(&format!(
                "; {} skipped (refused by the API): {}",
                self.progress.skipped.len(),
                self.progress.skipped.join("; ")
            ));
        }
        if self.dry_run {
            s.push_str("; dry run: nothing appended");
            return s;
        }
        s.push_str(&format!("; {} appended", self.appended));
        if let (Some(a), Some(b)) = (self.first_seq, self.last_seq) {
            s.push_str(&format!(" (seq {a}..{b})"));
        }
        match &self.duplicates {
            Duplicates::Known(n) => s.push_str(&format!(
                ", {n} duplicates (already in the log), {} new",
                self.appended - n
            )),
            Duplicates::Pending => {
                s.push_str(", duplicates not known yet (dedup is behind: see `status`)")
            }
            Duplicates::AfterStart => {
                s.push_str(" directly, duplicates are marked by dedup when the daemon starts")
            }
            Duplicates::Failed(e) => s.push_str(&format!(", duplicates unknown: {e}")),
            Duplicates::NotApplicable => {}
        }
        s
    }
}
