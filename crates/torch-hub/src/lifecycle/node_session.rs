//! One node's WebSocket session (`GET /api/v1/node/ws`): Hello/Welcome, then
//! orders out and reports in, each frame a JSON array of messages.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use torch_api::node::{HubToNode, NodeHello, NodeMessage};
use torch_store::Store;
use tracing::{info, warn};

use super::LifeCmd;
use crate::auth::TokenWatch;
use crate::hub::Shared;
use crate::session::{encode, first_frame};

/// How often nodes send heartbeats (resource samples).
const NODE_HEARTBEAT: Duration = Duration::from_secs(1);
/// A node silent this long is disconnected.
const NODE_SILENCE: Duration = Duration::from_secs(15);

async fn read_hello(socket: &mut WebSocket) -> Result<NodeHello, String> {
    let msgs: Vec<NodeMessage> = first_frame(socket).await?;
    match msgs.into_iter().next() {
        Some(NodeMessage::Hello(h)) if !h.name.trim().is_empty() => Ok(h),
        Some(NodeMessage::Hello(_)) => Err("node name is empty".into()),
        _ => Err("first message must be hello".into()),
    }
}

async fn refuse(socket: &mut WebSocket, code: &str, message: String) {
    warn!(error = %message, "node session refused");
    let _ = socket
        .send(encode(&[HubToNode::Error {
            code: code.into(),
            message,
        }]))
        .await;
}

/// Runs a node session until the node disconnects, the hub stops, or the
/// token is revoked or expires (`watch`; the node is told `unauthorized`).
pub(crate) async fn run<S: Store>(
    shared: Arc<Shared<S>>,
    mut socket: WebSocket,
    mut watch: TokenWatch,
) {
    let hello = match read_hello(&mut socket).await {
        Ok(h) => h,
        Err(msg) => return refuse(&mut socket, "bad_hello", msg).await,
    };
    if let Some(torch_api::ws::HubMessage::Error { code, message }) =
        crate::leader::redirect(&shared)
    {
        return refuse(&mut socket, &code, message).await;
    }
    let session = shared.session_seq.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<HubToNode>(1024);
    let (reply_tx, reply_rx) = oneshot::channel();
    shared
        .life
        .send(LifeCmd::NodeJoined {
            hello,
            tx,
            session,
            reply: reply_tx,
        })
        .await;
    let node = match reply_rx.await {
        Ok(Ok(name)) => name,
        Ok(Err(msg)) => return refuse(&mut socket, "node_refused", msg).await,
        Err(_) => return,
    };
    let welcome = HubToNode::Welcome {
        node: node.clone(),
        heartbeat_ms: NODE_HEARTBEAT.as_millis() as u64,
    };
    if socket.send(encode(&[welcome])).await.is_err() {
        shared.life.send(LifeCmd::NodeLeft { node, session }).await;
        return;
    }
    let shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            frame = tokio::time::timeout(NODE_SILENCE, socket.next()) => {
                let text = match frame {
                    Err(_) => {
                        warn!(node = %node, "node silent; closing its session");
                        break;
                    }
                    Ok(None) | Ok(Some(Err(_))) => break,
                    Ok(Some(Ok(Message::Text(t)))) => t,
                    Ok(Some(Ok(Message::Close(_)))) => break,
                    Ok(Some(Ok(_))) => continue,
                };
                match serde_json::from_str::<Vec<NodeMessage>>(&text) {
                    Ok(msgs) => {
                        for msg in msgs {
                            shared.life.send(LifeCmd::NodeMsg { node: node.clone(), msg }).await;
                        }
                    }
                    Err(e) => warn!(node = %node, error = %e, "malformed node frame ignored"),
                }
            }
            out = rx.recv() => {
                let Some(first) = out else { break };
                let mut batch = vec![first];
                while let Ok(m) = rx.try_recv() {
                    batch.push(m);
                }
                if socket.send(encode(&batch)).await.is_err() {
                    break;
                }
            }
            end = watch.ended() => {
                let refusal = HubToNode::Error {
                    code: "unauthorized".into(),
                    message: end.message().into(),
                };
                let _ = socket.send(encode(&[refusal])).await;
                let _ = socket.send(Message::Close(None)).await;
                info!(node = %node, reason = end.message(), "node session closed");
                break;
            }
            _ = shutdown.cancelled() => break,
        }
    }
    info!(node = %node, "node session ended");
    shared.life.send(LifeCmd::NodeLeft { node, session }).await;
}
