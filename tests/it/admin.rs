//! The admin API: token, status, reading and appending.

use crate::edge::server_with;
use crate::util::{self, TestServer};

#[test]
fn admin_calls_without_the_right_token_are_refused() {
    let dir = crate::engine::tempdir();
    let s = server_with(dir.path(), &[]);
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic abc"),
        Some(format!("Bearer {}x", s.token).as_str()),
    ] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
        let r = util::request(s.admin, "GET", "/admin/status", &headers, b"");
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    assert_eq!(s.admin_get("/admin/status").0, 200);
}

#[test]
fn the_generated_admin_token_is_private_and_reused_after_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let dir = crate::engine::tempdir();
    let s = server_with(dir.path(), &[]);
    let path = dir.path().join("admin.token");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(s.token.len(), 64);
    let first = s.token.clone();
    s.stop().unwrap();
    let s = server_with(dir.path(), &[]);
    assert_eq!(s.token, first);
}

#[test]
fn a_configured_admin_token_is_used_and_nothing_is_generated() {
    let dir = crate::engine::tempdir();
    let mut s = TestServer::start(
        util::config(
            None,
            dir.path(),
            &[("HOOKLOG_SERVER_ADMIN_TOKEN", "configured-admin-token-1234")],
        ),
        None,
    );
    assert!(!dir.path().join("admin.token").exists());
    s.token = "configured-admin-token-1234".into();
    assert_eq!(s.admin_get("/admin/status").0, 200);
}

#[test]
fn events_are_appended_read_by_page_and_fetched_by_sequence() {
    let dir = crate::engine::tempdir();
    let s = server_with(dir.path(), &[]);
    let auth = format!("Bearer {}", s.token);
    for n in 0..5 {
        let body = serde_json::json!({
            "source": "backfill-twilio",
            "route": format!("/2010-04-01/Messages/SM{n}"),
            "headers": {"Content-Type": "application/json"},
            "body": format!("{{\"sid\":\"SM{n}\"}}"),
        });
        let r = util::request(
            s.admin,
            "POST",
            "/admin/events",
            &[("authorization", &auth)],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body, format!("{{\"seq\":{}}}", n + 1));
    }
    let binary = serde_json::json!({"source": "backfill-openphone", "route": "/x", "body": "AP8A", "body_encoding": "base64"});
    assert_eq!(
        util::request(
            s.admin,
            "POST",
            "/admin/events",
            &[("authorization", &auth)],
            binary.to_string().as_bytes()
        )
        .status,
        201
    );

    let (code, page) = s.admin_get("/admin/events?after=2&limit=2");
    assert_eq!(code, 200);
    let page: hooklog::admin::api::EventPage = serde_json::from_str(&page).unwrap();
    assert_eq!(
        page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(page.next_after, 4);
    assert_eq!(page.events[0].source, "backfill-twilio");
    assert_eq!(page.events[0].verified, "admin-token");
    assert_eq!(
        page.events[0]
            .headers
            .get("content-type")
            .map(String::as_str),
        Some("application/json")
    );

    let (code, ev) = s.admin_get("/admin/events/6");
    assert_eq!(code, 200);
    let ev: hooklog::admin::api::EventJson = serde_json::from_str(&ev).unwrap();
    assert_eq!(
        (ev.body_encoding.as_str(), ev.body_bytes().unwrap()),
        ("base64", vec![0, 255, 0])
    );
    assert_eq!(s.admin_get("/admin/events/99").0, 404);
    assert_eq!(s.admin_get("/admin/events/abc").0, 400);
    assert_eq!(s.admin_get("/admin/events?limit=0").0, 400);
    assert_eq!(s.admin_get("/admin/events?limit=5000").0, 400);
    assert_eq!(s.admin_get("/admin/events?frm=1").0, 400);

    let status = s.status();
    assert_eq!(
        (status.log.first_seq, status.log.last_seq, status.log.count),
        (1, 6, 6)
    );
    assert!(status.log.bytes > 0);
}

#[test]
fn the_admin_api_refuses_to_forge_webhook_events() {
    let dir = crate::engine::tempdir();
    let s = server_with(dir.path(), &[]);
    let auth = format!("Bearer {}", s.token);
    for source in ["twilio", "openphone", "salesmsg", "quo"] {
        let body = serde_json::json!({"source": source, "route": "/sms", "body": "a=b"});
        let r = util::request(
            s.admin,
            "POST",
            "/admin/events",
            &[("authorization", &auth)],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 400, "{source}: {}", r.body);
    }
    let r = util::request(
        s.admin,
        "POST",
        "/admin/events",
        &[("authorization", &auth)],
        b"not json",
    );
    assert_eq!(r.status, 400);
    assert_eq!(s.status().log.count, 0);
}
