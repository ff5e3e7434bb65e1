//! Agent identity over real WebSocket sessions: an agent id belongs to the
//! token that registered it, and a second session never displaces a live
//! one (regression: another agent's token took over an agent's id and its
//! running task).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;
use torch_hub::{Hub, HubConfig};
use torch_store::sqlite::{SqliteOptions, SqliteStore};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, token: &str) -> Ws {
    let mut req = format!("{url}/api/v1/agent/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// Sends a hello (claiming `id` when given) and returns the first answer.
async fn hello(ws: &mut Ws, name: &str, id: Option<&str>) -> Value {
    let mut h = json!({"type": "hello", "name": name, "skills": [{"name": "sh", "level": 1.0}],
        "slots": 1, "version": "test"});
    if let Some(id) = id {
        h["agent_id"] = json!(id);
    }
    ws.send(Message::Text(json!([h]).to_string().into()))
        .await
        .unwrap();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer")
            .expect("open")
            .unwrap();
        if let Message::Text(t) = frame {
            let msgs: Vec<Value> = serde_json::from_str(&t).unwrap();
            return msgs[0].clone();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_id_belongs_to_its_token_and_a_live_session_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("torch.db"), SqliteOptions::default()).unwrap();
    let hub = Hub::start(HubConfig::default(), store, Some("torch_admin".into()))
        .await
        .unwrap();
    let token_a = hub.create_token("agent", "a").await.unwrap();
    let token_b = hub.create_token("agent", "b").await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let server = tokio::spawn(hub.serve(listener, stop.clone()));

    // Agent A registers; the hub assigns its id.
    let mut a = connect(&url, &token_a).await;
    let welcome = hello(&mut a, "a", None).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let id = welcome["agent_id"].as_str().unwrap().to_string();

    // B's token claims A's id: refused, A undisturbed.
    let mut b = connect(&url, &token_b).await;
    let answer = hello(&mut b, "b", Some(&id)).await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["code"], "identity_refused", "{answer}");

    // A's own token, a second session, while A is live: refused too.
    let mut a2 = connect(&url, &token_a).await;
    let answer = hello(&mut a2, "a", Some(&id)).await;
    assert_eq!(answer["code"], "agent_in_use", "{answer}");

    // A is still connected and listed as such.
    // reqwest is built without a default crypto provider (the hub brings
    // its own configuration); a test client installs ring, the build's one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let agents: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/agents", url.replace("ws://", "http://")))
        .bearer_auth("torch_admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(me["state"], "idle", "{me}");

    // Once A's session is gone, A's token may reconnect as A.
    a.close(None).await.unwrap();
    drop(a);
    let mut again = None;
    for _ in 0..50 {
        let mut ws = connect(&url, &token_a).await;
        let ans = hello(&mut ws, "a", Some(&id)).await;
        if ans["type"] == "welcome" {
            again = Some(ans);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = again.expect("A reconnects after its session closed");
    assert_eq!(again["agent_id"], id.as_str());
    stop.cancel();
    server.await.unwrap().unwrap();
}
