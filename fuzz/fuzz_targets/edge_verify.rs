//! The edge's whole verification path, as the HTTP layer calls it: input = the request target
//! (path, optional `?query`) line, then `name: value` header lines up to an empty line, then
//! the body. `WebhookRoute::for_path` picks the route, `Verifier::from_config` holds the keys
//! of `fixtures/hooklog.toml` (loaded once through `Config::load_from`), and
//! `Verifier::verify` runs at the fixtures' clocks and at the extremes. A request that
//! verifies must be logged under its route's provider.
#![no_main]

use std::sync::OnceLock;

use hooklog::config::Config;
use hooklog::edge::verifier::{IncomingRequest, Verifier, WebhookRoute, KEPT_HEADERS};
use hooklog::event::Micros;
use libfuzzer_sys::fuzz_target;

/// The fixtures' config: the same keys, tokens, public URLs and secret the seeds were signed
/// with.
const FIXTURES_CONFIG: &str = include_str!("../../fixtures/hooklog.toml");

/// The fixtures' clocks (Quo legacy, Standard Webhooks), in seconds, and the extremes.
const NOWS: [i64; 4] = [1_776_182_531, 1_776_266_432, i64::MIN, i64::MAX];

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let path = std::env::temp_dir().join(format!(
            "hooklog-fuzz-edge-verify-{}.toml",
            std::process::id()
        ));
        std::fs::write(&path, FIXTURES_CONFIG).expect("the temporary directory is writable");
        let (config, _) =
            Config::load_from(Some(&path), std::iter::empty()).expect("the fixtures' config loads");
        let _ = std::fs::remove_file(&path);
        Verifier::from_config(&config).expect("the fixtures' keys decode")
    })
}

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n');
    let target = lines.next().unwrap_or_default();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    // As the HTTP layer passes them: lower-case names, only the kept ones, in arrival order.
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .filter(|(n, _)| KEPT_HEADERS.contains(&n.as_str()))
        .collect();
    let Some(route) = WebhookRoute::for_path(path) else {
        return;
    };
    let req = IncomingRequest {
        path: path.to_owned(),
        query,
        headers,
        body: body.to_vec(),
    };
    for now in NOWS {
        let micros = Micros(now.saturating_mul(1_000_000));
        if let Ok(verified) = verifier().verify(route, req.clone(), micros) {
            assert_eq!(verified.source().provider(), Some(route.provider()));
            assert_eq!(verified.body(), body);
        }
    }
});
