//! Revoking a token closes the agent sessions opened with it, over real
//! WebSockets, and the token cannot open another.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;
use torch_hub::{Hub, HubConfig};
use torch_store::sqlite::{SqliteOptions, SqliteStore};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, token: &str) -> Result<Ws, WsError> {
    let mut req = format!("{url}/api/v1/agent/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.map(|c| c.0)
}

/// The next text frame's first message, or `None` once the socket closes.
async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer within 10 s");
        match frame {
            Some(Ok(Message::Text(t))) => {
                let msgs: Vec<Value> = serde_json::from_str(&t).unwrap();
                return Some(msgs[0].clone());
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_token_closes_its_session_and_it_cannot_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("torch.db"), SqliteOptions::default()).unwrap();
    let hub = Hub::start(HubConfig::default(), store, Some("torch_admin".into()))
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = format!("http://{}", listener.local_addr().unwrap());
    let url = http.replace("http://", "ws://");
    let stop = CancellationToken::new();
    let server = tokio::spawn(hub.serve(listener, stop.clone()));
    // reqwest is built without a default crypto provider; install ring,
    // the build's one, for this test client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{http}/api/v1/tokens"))
        .bearer_auth("torch_admin")
        .json(&json!({"role": "agent", "name": "doomed"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = created["token"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();

    let mut ws = connect(&url, token).await.unwrap();
    let hello = json!([{"type": "hello", "name": "a", "skills": [{"name": "sh", "level": 1.0}],
        "slots": 1, "version": "test"}]);
    ws.send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    let welcome = next(&mut ws).await.unwrap();
    assert_eq!(welcome["type"], "welcome", "{welcome}");

    let revoked_at = Instant::now();
    let resp = client
        .post(format!("{http}/api/v1/tokens/{id}/revoke"))
        .bearer_auth("torch_admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Heartbeat requests and the like may come first; then the refusal.
    let refusal = loop {
        match next(&mut ws).await {
            Some(m) if m["type"] == "error" => break m,
            Some(_) => continue,
            None => panic!("closed without saying why"),
        }
    };
    let closed_after = revoked_at.elapsed();
    assert_eq!(refusal["code"], "unauthorized", "{refusal}");
    assert!(
        refusal["message"].as_str().unwrap().contains("revoked"),
        "{refusal}"
    );
    assert!(next(&mut ws).await.is_none(), "then the socket closes");
    eprintln!("session closed {closed_after:?} after the revocation");

    match connect(&url, token).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 401),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a revoked token opened a session"),
    }
    stop.cancel();
    server.await.unwrap().unwrap();
}
