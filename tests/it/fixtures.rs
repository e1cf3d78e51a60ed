//! Every fixture in `fixtures/`, sent to the real server configured by `fixtures/hooklog.toml`.

use hooklog::fixture::Fixture;

use crate::util::{self, TestServer};

#[test]
fn every_fixture_gets_its_expected_verdict_and_only_accepted_ones_are_logged() {
    let s = TestServer::start_fixtures();
    let fixtures = Fixture::load_dir(&util::fixtures_dir()).unwrap();
    assert!(
        fixtures.len() >= 30,
        "expected the full fixture set, found {}",
        fixtures.len()
    );
    let mut providers = std::collections::BTreeSet::new();
    for (path, f) in &fixtures {
        let name = path
            .strip_prefix(util::fixtures_dir())
            .unwrap()
            .display()
            .to_string();
        providers.insert(f.provider.clone());
        let before = s.status().log.last_seq;
        let req = f.request_at(util::now()).unwrap();
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = s.send(&req.method, &req.path, &headers, &req.body);
        assert_eq!(r.status, f.expect.status, "{name}: {}", r.body);
        if let Some(ct) = &f.expect.content_type {
            assert_eq!(r.header("content-type"), Some(ct.as_str()), "{name}");
        }
        if let Some(needle) = &f.expect.body_contains {
            assert!(
                r.body.contains(needle.as_str()),
                "{name}: {} lacks {needle}",
                r.body
            );
        }
        let after = s.status().log.last_seq;
        if f.expect.logged {
            assert_eq!(after, before + 1, "{name} was acknowledged but not logged");
            let (code, ev) = s.admin_get(&format!("/admin/events/{after}"));
            assert_eq!(code, 200);
            let ev: hooklog::admin::api::EventJson = serde_json::from_str(&ev).unwrap();
            assert_eq!(
                ev.body_bytes().unwrap(),
                req.body,
                "{name}: body not stored byte for byte"
            );
            if let Some(src) = &f.expect.source {
                assert_eq!(&ev.source, src, "{name}");
            }
            for sig in [
                "openphone-signature",
                "webhook-signature",
                "x-twilio-signature",
            ] {
                if let Some((_, v)) = req.headers.iter().find(|(k, _)| k == sig) {
                    assert_eq!(ev.headers.get(sig), Some(v), "{name}: {sig} not kept");
                }
            }
        } else {
            assert_eq!(after, before, "{name} was rejected but reached the log");
        }
    }
    assert_eq!(
        providers.into_iter().collect::<Vec<_>>(),
        ["openphone", "salesmsg", "twilio"]
    );
}

#[test]
fn stored_quo_fixture_signatures_verify_at_their_own_timestamp() {
    use hooklog::signature::{quo_legacy, standard_webhooks, HmacKey};
    for (path, f) in Fixture::load_dir(&util::fixtures_dir()).unwrap() {
        if f.tamper.is_some() || !f.expect.logged || !f.resign {
            continue;
        }
        let key = HmacKey::from_quo_secret(&f.signing.key).unwrap();
        let ts = f.signing.timestamp.clone().unwrap();
        let secs: i64 = if ts.len() >= 12 {
            ts.parse::<i64>().unwrap() / 1000
        } else {
            ts.parse().unwrap()
        };
        let body = f.body.as_bytes();
        let ok = match f.signing.scheme.as_str() {
            "openphone-legacy" => {
                quo_legacy::verify(&f.headers["openphone-signature"], body, &[key], secs, 300)
            }
            "standard-webhooks" => standard_webhooks::verify(
                &f.headers["webhook-id"],
                &f.headers["webhook-timestamp"],
                &f.headers["webhook-signature"],
                body,
                &[key],
                secs,
                300,
            ),
            other => panic!("{}: unexpected scheme {other}", path.display()),
        };
        assert_eq!(ok, Ok(0), "{}", path.display());
    }
}
