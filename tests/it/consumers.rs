//! The consumers running inside the real server: fixtures through dedup and compliance, and a
//! rewind to zero that reproduces the same verdicts and suppression list.

use std::time::{Duration, Instant};

use hooklog::fixture::Fixture;

use crate::util::{self, TestServer};

fn caught_up(s: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = s.status();
        let behind: Vec<String> = st
            .consumers
            .iter()
            .filter(|c| c.cursor < st.log.last_seq)
            .map(|c| format!("{}@{}", c.name, c.cursor))
            .collect();
        if behind.is_empty() && st.consumers.len() >= 3 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "consumers behind {}: {behind:?}",
            st.log.last_seq
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn snapshot(s: &TestServer) -> (Vec<Option<serde_json::Value>>, String) {
    let verdicts = s.events().into_iter().map(|e| e.dedup).collect();
    let (code, optouts) = s.admin_get("/admin/optouts");
    assert_eq!(code, 200);
    (verdicts, optouts)
}

#[test]
fn fixtures_flow_through_dedup_and_compliance_and_a_rewind_to_zero_reproduces_them() {
    let s = TestServer::start_fixtures();
    let fixtures = Fixture::load_dir(&util::fixtures_dir()).unwrap();
    let accepted: Vec<&Fixture> = fixtures
        .iter()
        .map(|(_, f)| f)
        .filter(|f| f.expect.logged)
        .collect();
    for f in &accepted {
        assert_eq!(s.send_fixture(f).status, 200, "{}", f.description);
    }
    // Provider retries: every Quo fixture again (same envelope, signed two seconds later, so a
    // new signature), and the Twilio STOP again byte for byte, which is a replay of the
    // stored one: answered, not stored again.
    let retried: Vec<&&Fixture> = accepted
        .iter()
        .filter(|f| f.provider == "openphone" || f.body.contains("OptOutType=STOP"))
        .collect();
    let before_retries = s.status().log.count;
    for f in &retried {
        assert_eq!(s.send_fixture_at(f, util::now() + 2).status, 200);
    }
    let resigned = retried.iter().filter(|f| f.provider == "openphone").count() as u64;
    assert_eq!(s.status().log.count, before_retries + resigned);
    caught_up(&s);

    let events = s.events();
    let originals = accepted.len() as u64;
    for e in &events {
        let verdict = e
            .dedup
            .as_ref()
            .unwrap_or_else(|| panic!("no verdict for {}", e.seq));
        if e.seq <= originals {
            // Fixtures that are the same fact twice (the same event on both routes) are the
            // only duplicates among the first sends.
            continue;
        }
        assert_eq!(
            verdict["verdict"], "duplicate",
            "retry {} not flagged: {verdict}",
            e.seq
        );
        assert!(verdict["of"].as_u64().unwrap() <= originals);
    }

    let (code, body) = s.admin_get("/admin/optouts");
    assert_eq!(code, 200);
    let optouts: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = optouts["optouts"].as_array().unwrap();
    let stop = list
        .iter()
        .find(|o| o["how"] == "opt_out_type")
        .expect("the Twilio STOP is on the list");
    assert_eq!(stop["state"], "opted_out");
    assert_eq!(stop["provider"], "twilio");
    let (code, dl) = s.admin_get("/admin/dead-letters");
    assert_eq!(code, 200);
    assert_eq!(dl, r#"{"dead_letters":[]}"#, "every fixture parses");

    let before = snapshot(&s);
    let auth = format!("Bearer {}", s.token);
    for consumer in ["dedup", "compliance"] {
        let r = util::request(
            s.admin,
            "POST",
            &format!("/admin/consumers/{consumer}/rewind"),
            &[("authorization", &auth)],
            br#"{"to_seq": 0}"#,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let report: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(report["rebuild"], true);
    }
    caught_up(&s);
    // Wait for verdicts to be back for every record before comparing.
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.events().iter().any(|e| e.dedup.is_none()) {
        assert!(Instant::now() < deadline, "dedup never rebuilt");
        std::thread::sleep(Duration::from_millis(50));
    }
    caught_up(&s);
    assert_eq!(
        snapshot(&s),
        before,
        "a rewind to 0 reproduces the verdicts and the suppression list"
    );
}

#[test]
fn operator_opt_outs_go_through_the_log_and_show_in_the_list() {
    let dir = crate::engine::tempdir();
    let s = crate::edge::server_with(dir.path(), &[]);
    let auth = format!("Bearer {}", s.token);
    let r = util::request(
        s.admin,
        "POST",
        "/admin/optouts",
        &[("authorization", &auth)],
        br#"{"number":"(555) 555-0142","reason":"asked on the phone"}"#,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        util::request(
            s.admin,
            "POST",
            "/admin/optouts",
            &[("authorization", &auth)],
            br#"{"number":"not a number"}"#
        )
        .status,
        400
    );
    caught_up(&s);
    let (_, body) = s.admin_get("/admin/optouts");
    assert!(
        body.contains(r#""number":"+15555550142""#) && body.contains(r#""state":"opted_out""#),
        "{body}"
    );
    let ev = s.events().pop().unwrap();
    assert_eq!(
        (ev.source.as_str(), ev.route.as_str()),
        ("internal", "/internal/optouts")
    );
    let r = util::request(
        s.admin,
        "DELETE",
        "/admin/optouts/+15555550142",
        &[("authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 202, "{}", r.body);
    caught_up(&s);
    let (_, body) = s.admin_get("/admin/optouts");
    assert!(body.contains(r#""state":"resubscribed""#), "{body}");
}

#[test]
fn a_corrupt_record_does_not_stop_the_daemon_is_dead_lettered_counted_and_passed() {
    let tmp = crate::engine::tempdir();
    // The damage is done inside sled's files, so this test is about sled and runs on it in
    // the JetStream pass too.
    let config = util::config(
        Some(&util::fixtures_dir().join("hooklog.toml")),
        tmp.path(),
        &[("HOOKLOG_LOG_BACKEND", "sled")],
    );
    let fixtures = Fixture::load_dir(&util::fixtures_dir()).unwrap();
    let accepted: Vec<&Fixture> = fixtures
        .iter()
        .map(|(_, f)| f)
        .filter(|f| f.expect.logged)
        .take(3)
        .collect();
    let s = TestServer::start(config.clone(), None);
    for f in &accepted {
        assert_eq!(s.send_fixture(f).status, 200, "{}", f.description);
    }
    caught_up(&s);
    s.stop().unwrap();

    // The disk (or a bug) damaged record 2 while the daemon was stopped.
    {
        // sled's background threads hold the file lock for a moment after the daemon's
        // handle is dropped (SledLog::open retries for the same reason).
        let mut attempts = 0;
        let db = loop {
            match sled::open(hooklog::log_dir(&config.data_dir)) {
                Ok(db) => break db,
                Err(e) if attempts < 40 && e.to_string().contains("lock") => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("cannot open the stopped daemon's log: {e}"),
            }
        };
        let events = db.open_tree("events").unwrap();
        assert!(events.get(2u64.to_be_bytes()).unwrap().is_some());
        events
            .insert(2u64.to_be_bytes(), b"\x01\xff\xff garbage".as_ref())
            .unwrap();
        db.flush().unwrap();
    }

    let s = TestServer::start(config, None);
    // Reading it through the API says what is wrong instead of skipping it.
    let (code, body) = s.admin_get("/admin/events/2");
    assert_ne!(code, 200, "{body}");
    assert!(body.contains('2'), "{body}");
    // dedup reads the log again from the first record: record 2 is quarantined, 3 is judged.
    let (code, report) = s.admin_send("POST", "/admin/consumers/dedup/rewind", r#"{"to_seq":0}"#);
    assert_eq!(code, 200, "{report}");
    let dl = s.admin_until("/admin/dead-letters?consumer=dedup", |v| {
        v["dead_letters"]
            .as_array()
            .is_some_and(|a| a.iter().any(|d| d["seq"] == 2))
    });
    let entry = dl["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["seq"] == 2)
        .unwrap()
        .clone();
    assert!(
        entry["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot be decoded"),
        "{entry}"
    );
    caught_up(&s);
    let (code, third) = s.admin_get("/admin/events/3");
    assert_eq!(code, 200);
    let third: serde_json::Value = serde_json::from_str(&third).unwrap();
    assert!(third["dedup"].is_object(), "record 3 was judged: {third}");
    let (_, metrics) = s.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hooklog_consumer_dead_letters{consumer=\"dedup\"} 1")),
        "the dead letter is counted"
    );
}
