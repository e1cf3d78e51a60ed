//! `fire FIXTURE --url URL`: a deployment smoke test. The fixture (a file of `fixtures/`, see
//! its README) is signed at the current time with the keys of the configuration the daemon
//! reads (the library's [`Fixture::request_configured`]) and sent to `URL` + the fixture's path
//! and query. Prints the status and the body (`--json`: one object); exits 0 on 2xx, 1
//! otherwise.
//!
//! Twilio signs the full URL a request is sent to, and a Twilio signature has no timestamp: a
//! request signed for one URL is valid there for good. So `fire` signs for exactly the URL it
//! sends to, never for another: a signed request sent to a wrong or hostile `--url` is only
//! good at that address. The daemon accepts it when `--url` is one of its
//! `server.public_urls` (usually the public URL, through the proxy or tunnel: the real smoke
//! test); `fire` warns before sending when it is not one of them in its own configuration.

use std::time::Duration;

use anyhow::Context as _;
use hooklog::fixture::{Fixture, SigningConfig};
use serde_json::json;

use crate::cli::FireArgs;
use crate::context::Context;
use crate::output::{multi_line, Out};

/// Bodies printed are cut to this many bytes (webhook answers are small: TwiML, `{}`).
const MAX_BODY: u64 = 64 * 1024;

/// Runs `fire`.
pub fn run(ctx: &Context, args: &FireArgs) -> anyhow::Result<()> {
    let fixture = Fixture::load(&args.fixture)?;
    let base = args.url.trim().trim_end_matches('/');
    if !base.starts_with("http://") && !base.starts_with("https://") {
        anyhow::bail!("--url must start with http:// or https://, e.g. https://hooks.example.com");
    }
    if let Some(other) = &args.public_url {
        anyhow::bail!(
            "--public-url {other} is no longer accepted: fire signs Twilio fixtures for the URL \
             it sends to (a signature for one URL sent to another would be valid for good at \
             the first). Pass the public URL as --url (e.g. --url {other}), or add the address \
             you fire at to server.public_urls"
        );
    }
    let public = &ctx.config.server.public_urls;
    if fixture.provider == "twilio" && !public.iter().any(|u| u.trim_end_matches('/') == base) {
        eprintln!(
            "warning: {base} is not one of server.public_urls ({}): the Twilio signature is \
             made for {base}, which hooklog accepts only if it is one of its public URLs",
            if public.is_empty() {
                "none set".to_owned()
            } else {
                public.join(", ")
            }
        );
    }
    // Twilio signs the full URL: sign for the one the request goes to.
    let twilio_base_url = Some(base.to_owned());
    let keys = SigningConfig {
        quo_key: ctx
            .config
            .openphone
            .signing_keys
            .first()
            .map(|k| k.expose().to_owned()),
        twilio_token: ctx
            .config
            .twilio
            .auth_tokens
            .first()
            .map(|k| k.expose().to_owned()),
        twilio_base_url,
        salesmsg_secret: ctx
            .config
            .salesmsg
            .secrets
            .first()
            .map(|k| k.expose().to_owned()),
    };
    let req = fixture
        .request_configured(&keys, chrono::Utc::now().timestamp())
        .with_context(|| format!("cannot sign {}", args.fixture.display()))?;
    let url = format!("{base}{}", req.path);

    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(30))
        .user_agent(concat!("hooklog-replay/", env!("CARGO_PKG_VERSION")))
        .build();
    let mut r = agent.request(&req.method, &url);
    for (k, v) in &req.headers {
        r = r.set(k, v);
    }
    let resp = match r.send_bytes(&req.body) {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
        Err(ureq::Error::Transport(t)) => {
            anyhow::bail!("cannot send {} to {url}: {t}", args.fixture.display())
        }
    };
    let status = resp.status();
    let content_type = resp.header("content-type").map(str::to_owned);
    let mut body = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(resp.into_reader(), MAX_BODY),
        &mut body,
    )
    .with_context(|| format!("cannot read the answer from {url}"))?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let ok = (200..300).contains(&status);

    let mut out = Out::stdout();
    if ctx.json {
        out.line(
            &json!({
                "fixture": args.fixture.display().to_string(),
                "provider": fixture.provider,
                "method": req.method,
                "url": url,
                "status": status,
                "content_type": content_type,
                "body": body,
                "ok": ok,
            })
            .to_string(),
        )?;
    } else {
        out.line(&format!("{} {url}: {status}", req.method))?;
        if !body.is_empty() {
            out.line(multi_line(body.trim_end()).as_str())?;
        }
    }
    out.flush()?;
    if ok {
        Ok(())
    } else {
        anyhow::bail!("{url} answered {status}")
    }
}
