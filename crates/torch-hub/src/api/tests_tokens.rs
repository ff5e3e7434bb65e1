//! Router tests of the token lifecycle: create with tenant and expiry, list
//! without secrets, revoke, expiry, per-token rate limits, the node role.

use axum::http::StatusCode;
use serde_json::json;

use crate::config::HubConfig;
use crate::testing::{ADMIN, TestHub};

#[tokio::test]
async fn tokens_are_listed_without_secrets_and_stop_working_once_revoked() {
    let hub = TestHub::start(HubConfig::default()).await;
    let body =
        json!({"role": "submitter", "name": "ci", "tenant": "team-a", "expires_in_ms": 3_600_000});
    let (s, created, _) = hub
        .call("POST", "/api/v1/tokens", Some(ADMIN), Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let secret = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 16);
    assert_eq!(created["tenant"], "team-a");
    let expires = created["expires_ms"].as_u64().unwrap();

    let (s, _, _) = hub.call("GET", "/api/v1/tasks", Some(&secret), None).await;
    assert_eq!(s, StatusCode::OK);

    let (s, list, _) = hub.call("GET", "/api/v1/tokens", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    assert!(!list.to_string().contains(&secret), "never the secret");
    let mine = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .cloned()
        .expect("listed");
    assert_eq!(mine["name"], "ci");
    assert_eq!(mine["role"], "submitter");
    assert_eq!(mine["tenant"], "team-a");
    assert_eq!(mine["state"], "active");
    let created_ms = mine["created_ms"].as_u64().unwrap();
    assert_eq!(expires - created_ms, 3_600_000);
    assert!(
        mine["last_used_ms"].as_u64().unwrap() >= created_ms,
        "the use was recorded: {mine}"
    );
    assert!(mine.get("token").is_none() && mine.get("hash").is_none());

    // Only an admin lists or revokes.
    let (s, _, _) = hub.call("GET", "/api/v1/tokens", Some(&secret), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let path = format!("/api/v1/tokens/{id}/revoke");
    let (s, _, _) = hub.call("POST", &path, Some(&secret), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let (s, revoked, _) = hub.call("POST", &path, Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["state"], "revoked");
    let (s, j, _) = hub.call("GET", "/api/v1/tasks", Some(&secret), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the next request is refused");
    assert!(j["message"].as_str().unwrap().contains("revoked"), "{j}");

    let (s, j, _) = hub
        .call(
            "POST",
            "/api/v1/tokens/0000000000000000/revoke",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (s, j["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("token_not_found"))
    );
    let body = json!({"role": "admin", "tenant": "team-a"});
    let (s, _, _) = hub
        .call("POST", "/api/v1/tokens", Some(ADMIN), Some(body))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "admin tokens have no tenant");
    hub.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_is_refused() {
    let hub = TestHub::start(HubConfig::default()).await;
    let body = json!({"role": "submitter", "expires_in_ms": 3_600_000});
    let (_, created, _) = hub
        .call("POST", "/api/v1/tokens", Some(ADMIN), Some(body))
        .await;
    let secret = created["token"].as_str().unwrap().to_string();
    let (s, _, _) = hub.call("GET", "/api/v1/tasks", Some(&secret), None).await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::advance(std::time::Duration::from_secs(3_600)).await;
    let (s, j, _) = hub.call("GET", "/api/v1/tasks", Some(&secret), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(j["message"].as_str().unwrap().contains("expired"), "{j}");
    let (_, list, _) = hub.call("GET", "/api/v1/tokens", Some(ADMIN), None).await;
    let state = |id: &str| {
        list["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .map(|t| t["state"].clone())
    };
    assert_eq!(
        state(created["id"].as_str().unwrap()),
        Some(json!("expired"))
    );
    assert_eq!(list["tokens"].as_array().unwrap().len(), 2);
    hub.stop().await;
}

#[tokio::test]
async fn each_token_has_its_own_request_rate() {
    let cfg = HubConfig {
        token_rate_limit: 1,
        token_rate_burst: 3,
        ..HubConfig::default()
    };
    let hub = TestHub::start(cfg).await;
    let a = hub.token("submitter").await;
    let b = hub.token("submitter").await;
    for _ in 0..3 {
        let (s, _, _) = hub.call("GET", "/api/v1/tasks", Some(&a), None).await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, j, resp) = hub.call("GET", "/api/v1/tasks", Some(&a), None).await;
    assert_eq!(
        (s, j["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{j}"
    );
    assert_eq!(resp.headers()["retry-after"], "1");
    let (s, _, _) = hub.call("GET", "/api/v1/tasks", Some(&b), None).await;
    assert_eq!(s, StatusCode::OK, "another token is not limited");
    hub.stop().await;
}

#[tokio::test]
async fn a_node_token_is_not_a_submitter() {
    let hub = TestHub::start(HubConfig::default()).await;
    let body = json!({"role": "node", "name": "rack 1"});
    let (s, created, _) = hub
        .call("POST", "/api/v1/tokens", Some(ADMIN), Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["role"], "node");
    let node = created["token"].as_str().unwrap();
    let (s, j, _) = hub.call("GET", "/api/v1/tasks", Some(node), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{j}");
    let (s, _, _) = hub
        .call(
            "POST",
            "/api/v1/tasks",
            Some(node),
            Some(json!({"tasks": []})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    hub.stop().await;
}
