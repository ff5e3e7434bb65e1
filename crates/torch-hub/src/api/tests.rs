//! Router tests through `tower::ServiceExt::oneshot`: authentication and
//! roles, error bodies, the route table, and forwarding on a follower.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use serde_json::json;

use super::routes::table;
use crate::config::HubConfig;
use crate::leader::{Leader, Role};
use crate::testing::{ADMIN, TestHub};

#[tokio::test]
async fn callers_without_the_right_token_or_role_get_stable_error_codes() {
    let hub = TestHub::start(HubConfig::default()).await;
    let agent = hub.token("agent").await;
    let submitter = hub.token("submitter").await;

    let (s, j, _) = hub.call("GET", "/api/v1/tasks", None, None).await;
    assert_eq!(
        (s, j["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    assert!(
        j["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{j}"
    );

    let (s, j, _) = hub
        .call("GET", "/api/v1/tasks", Some("torch_nope"), None)
        .await;
    assert_eq!(
        (s, j["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );

    let forged = "tt1.01890000-0000-7000-8000-000000000001.3.00";
    let (s, _, _) = hub.call("GET", "/api/v1/tasks", Some(forged), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let (s, j, _) = hub.call("GET", "/api/v1/tasks", Some(&agent), None).await;
    assert_eq!(
        (s, j["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    assert!(
        j["message"].as_str().unwrap().contains("an agent token"),
        "{j}"
    );

    let body = json!({"role": "admin"});
    let (s, _, _) = hub
        .call("POST", "/api/v1/tokens", Some(&submitter), Some(body))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let (s, j, _) = hub
        .call("GET", "/api/v1/tasks", Some(&submitter), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    hub.stop().await;
}

#[tokio::test]
async fn bad_requests_name_what_is_wrong() {
    let cfg = HubConfig {
        max_body_bytes: 4096,
        ..HubConfig::default()
    };
    let hub = TestHub::start(cfg).await;
    let (s, j, _) = hub.call("GET", "/api/v1/nope", Some(ADMIN), None).await;
    assert_eq!(
        (s, j["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_such_route"))
    );

    let (s, j, _) = hub.call("DELETE", "/api/v1/tasks", Some(ADMIN), None).await;
    assert_eq!(
        (s, j["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );

    let bad = json!({"tasks": [{"command": ["true"], "priority": "high"}]});
    let (s, j, _) = hub
        .call("POST", "/api/v1/tasks", Some(ADMIN), Some(bad))
        .await;
    assert_eq!(
        (s, j["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_spec")),
        "{j}"
    );
    assert!(j["message"].as_str().unwrap().contains("priority"), "{j}");

    let big = json!({"tasks": [{"command": ["echo", "x".repeat(8192)]}]});
    let (s, j, _) = hub
        .call("POST", "/api/v1/tasks", Some(ADMIN), Some(big))
        .await;
    assert_eq!(
        (s, j["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );

    let (s, j, _) = hub
        .call("GET", "/api/v1/tasks/not-an-id", Some(ADMIN), None)
        .await;
    assert_eq!(
        (s, j["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_task_id"))
    );

    let id = "01890000-0000-7000-8000-000000000001";
    let (s, j, _) = hub
        .call("GET", &format!("/api/v1/tasks/{id}"), Some(ADMIN), None)
        .await;
    assert_eq!(
        (s, j["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("task_not_found"))
    );
    hub.stop().await;
}

#[tokio::test]
async fn every_route_is_served_and_every_mutating_route_declares_its_leader_rule() {
    let hub = TestHub::start(HubConfig::default()).await;
    let routes = table(hub.shared.clone());
    assert!(routes.len() >= 20, "the table lists the API: {routes:?}");
    for r in &routes {
        let path = r
            .path
            .replace("{id}", "01890000-0000-7000-8000-000000000001")
            .replace("{key}", "k")
            .replace("{file}", "app.js");
        // Without a token every route answers (401 or, for health, 200):
        // never "no such route" nor "method not allowed", so the table and
        // the router agree.
        let (s, j, _) = hub
            .call(r.method.method().as_str(), &path, None, None)
            .await;
        assert!(
            s != StatusCode::NOT_FOUND && s != StatusCode::METHOD_NOT_ALLOWED,
            "{r:?} answered {s} {j}"
        );
        if r.method.method() != axum::http::Method::GET {
            assert!(
                matches!(r.leader, Leader::Forward | Leader::Submit),
                "mutating route {} {} must reach the leader, declares {:?}",
                r.method.method(),
                r.path,
                r.leader
            );
        }
        if r.path.ends_with("/ws") {
            assert_eq!(r.leader, Leader::Redirect, "{r:?}");
        }
    }
    let mut seen = std::collections::HashSet::new();
    for r in &routes {
        assert!(seen.insert((r.method, r.path)), "registered twice: {r:?}");
    }
    hub.stop().await;
}

/// A stand-in leader: answers every request with 200 and counts them.
async fn fake_leader() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            axum::Json(json!({"served_by": "leader"}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

#[tokio::test]
async fn a_follower_relays_what_needs_the_leader_and_serves_reads_itself() {
    let hub = TestHub::start(HubConfig::default()).await;
    let (leader, hits) = fake_leader().await;
    hub.shared.cluster.role.send_replace(Role::Follower {
        leader: Some(leader.clone()),
    });
    let id = "01890000-0000-7000-8000-000000000001";
    let (s, j, resp) = hub
        .call(
            "POST",
            &format!("/api/v1/tasks/{id}/cancel"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (s, j["served_by"].as_str()),
        (StatusCode::OK, Some("leader"))
    );
    assert_eq!(resp.headers()["x-torch-forwarded-to"], leader.as_str());
    let (s, j, _) = hub.call("GET", "/api/v1/agents", Some(ADMIN), None).await;
    assert_eq!(
        (s, j["served_by"].as_str()),
        (StatusCode::OK, Some("leader"))
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // Reads from the store are served here.
    let (s, j, resp) = hub.call("GET", "/api/v1/tasks", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(j["tasks"].is_array(), "{j}");
    assert!(resp.headers().get("x-torch-forwarded-to").is_none());
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // No leader elected: leader routes wait (503), a submission is taken here.
    hub.shared
        .cluster
        .role
        .send_replace(Role::Follower { leader: None });
    let (s, j, resp) = hub.call("GET", "/api/v1/agents", Some(ADMIN), None).await;
    assert_eq!(
        (s, j["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("no_leader"))
    );
    assert_eq!(resp.headers()["retry-after"], "1");
    let spec = json!({"tasks": [{"command": ["true"]}]});
    let (s, j, resp) = hub
        .call("POST", "/api/v1/tasks", Some(ADMIN), Some(spec))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{j}");
    assert_eq!(resp.headers()["x-torch-handed-off"], "1");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    hub.stop().await;
}
