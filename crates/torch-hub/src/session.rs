//! One agent's WebSocket session.
//!
//! The agent opens with `Hello`; we check its identity (an id belongs to
//! the token that registered it), register it with the engine (which
//! refuses to displace a live session of the same id) and answer `Welcome`. Outgoing messages are batched: one frame carries everything
//! queued. Incoming `Started`/`Finished` reports go to a per-session recorder
//! that writes them to the store in arrival order (coalescing what queued up
//! meanwhile into one store call), then acks the agent and tells the engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use torch_api::ws::{
    AckStatus, AgentMessage, FinishReport, HeldTask, Hello, HubMessage, ProgressReport,
};
use torch_core::events::payload::StaleReportRefused;
use torch_core::{AgentId, EventData, OutcomeKind, TaskId, TaskState};
use torch_store::{AgentEvent, FenceCheck, Finish, FinishResult, NewEvent, Store};
use tracing::{debug, info, warn};

use crate::auth::TokenWatch;
use crate::engine::{Command, EndReport, Outbound, RecordedReport, Registration};
use crate::hub::Shared;
use crate::lifecycle::LifeCmd;
use crate::metrics::{Failure, Metrics, StoreOp};

const OUTBOX: usize = 8192;

/// One text frame holding `msgs` as a JSON array (`[]` if encoding fails).
pub(crate) fn encode<T: serde::Serialize>(msgs: &[T]) -> Message {
    match serde_json::to_string(msgs) {
        Ok(s) => Message::Text(s.into()),
        Err(e) => {
            warn!(error = %e, "could not encode outgoing messages");
            Message::Text("[]".into())
        }
    }
}

/// The first frame's messages (a JSON array), within 10 s.
pub(crate) async fn first_frame<T: serde::de::DeserializeOwned>(
    socket: &mut WebSocket,
) -> Result<Vec<T>, String> {
    let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .map_err(|_| "no hello within 10 s".to_string())?
        .ok_or("connection closed before hello")?
        .map_err(|e| format!("websocket error before hello: {e}"))?;
    let Message::Text(text) = frame else {
        return Err("first frame must be a text frame holding [hello]".into());
    };
    serde_json::from_str(&text).map_err(|e| format!("malformed hello: {e}"))
}

async fn read_hello(socket: &mut WebSocket) -> Result<Hello, String> {
    let mut msgs: Vec<AgentMessage> = first_frame(socket).await?;
    match msgs.drain(..).next() {
        Some(AgentMessage::Hello(h)) => {
            if h.slots == 0 || h.slots > 10_000 {
                return Err(format!("slots must be 1..=10000, got {}", h.slots));
            }
            Ok(h)
        }
        _ => Err("first message must be hello".into()),
    }
}

/// Refuses a session with an `Error` frame.
async fn refuse(socket: &mut WebSocket, code: &str, message: String) {
    warn!(code, error = %message, "agent session refused");
    let _ = socket
        .send(encode(&[HubMessage::Error {
            code: code.into(),
            message,
        }]))
        .await;
}

/// Runs a session opened with the token whose hash is `token`, until the
/// agent disconnects, the hub stops, a newer session replaces it, or the
/// token is revoked or expires (`watch`; the agent is then told
/// `unauthorized`, which it takes as final).
pub(crate) async fn run<S: Store>(
    shared: Arc<Shared<S>>,
    mut socket: WebSocket,
    token: String,
    mut watch: TokenWatch,
) {
    let hello = match read_hello(&mut socket).await {
        Ok(h) => h,
        Err(msg) => return refuse(&mut socket, "bad_hello", msg).await,
    };
    if let Some(err) = crate::leader::redirect(&shared) {
        let _ = socket.send(encode(&[err])).await;
        return;
    }
    let agent = match hello.agent_id {
        Some(id) => id,
        None => AgentId::from_uuid(uuid::Uuid::now_v7()),
    };
    if let Err(e) = crate::identity::claim(&*shared.store, agent, &token).await {
        let code = match e {
            crate::identity::ClaimError::Taken(_) => {
                identity_refused(&shared, agent, &e.to_string()).await;
                "identity_refused"
            }
            crate::identity::ClaimError::Store(_) => "store_unavailable",
        };
        return refuse(&mut socket, code, e.to_string()).await;
    }
    let key =
        match crate::identity::bind_key(&*shared.store, agent, hello.public_key.as_deref()).await {
            Ok(k) => k,
            Err(crate::identity::KeyError::Store(e)) => {
                return refuse(&mut socket, "store_unavailable", e.to_string()).await;
            }
            Err(e) => {
                identity_refused(&shared, agent, &e.to_string()).await;
                return refuse(&mut socket, "identity_refused", e.to_string()).await;
            }
        };
    let (endpoint, public_key) = (
        hello.endpoint.clone(),
        key.map(|k| torch_api::msg::public_key_hex(&k)),
    );
    // With a key, Welcome carries a challenge and the agent's first message
    // after it must sign it: nothing of the session counts before that.
    let mut early = Vec::new();
    if let Some(key) = key {
        let challenge = crate::identity::challenge();
        if socket
            .send(encode(&[welcome(&shared, agent, Some(challenge.clone()))]))
            .await
            .is_err()
        {
            return;
        }
        match read_proof(&mut socket, agent, &key, &challenge).await {
            Ok(rest) => early = rest,
            Err(why) => {
                identity_refused(&shared, agent, &why).await;
                return refuse(&mut socket, "identity_refused", why).await;
            }
        }
    }
    let session = shared.session_seq.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Outbound>(OUTBOX);
    let replaced = CancellationToken::new();
    let (name, skills, slots, labels) = (
        hello.name.clone(),
        hello.skills.clone(),
        hello.slots,
        hello.labels.clone(),
    );
    let registration = Registration {
        hello,
        id: agent,
        tx: tx.clone(),
        session,
        close: replaced.clone(),
    };
    let joined = shared
        .engine
        .call(|reply| Command::Join {
            agent: registration,
            reply,
        })
        .await;
    match joined {
        None => return,
        Some(Err(refused)) => {
            return refuse(&mut socket, "agent_in_use", refused.to_string()).await;
        }
        Some(Ok(())) => {}
    }
    if key.is_none()
        && socket
            .send(encode(&[welcome(&shared, agent, None)]))
            .await
            .is_err()
    {
        shared.engine.send(Command::Leave { agent, session }).await;
        return;
    }
    shared
        .msg
        .joined(agent, session, endpoint, public_key, tx.clone());
    shared.msg.deliver_pending(&shared, agent).await;
    info!(agent_id = %agent, name = %name, "agent connected");
    shared.autonomy.agent_joined(agent, shared.now_ms());
    shared.life.send(LifeCmd::AgentJoined { agent }).await;
    let ev = AgentEvent::Joined {
        id: agent,
        name,
        skills,
        slots,
        labels,
    };
    if let Err(e) = shared.store.agent_event(ev, shared.now_ms()).await {
        warn!(error = %e, "could not record agent join");
    }
    shared.bump();

    let (rec_tx, rec_rx) = mpsc::channel::<Vec<AgentMessage>>(1024);
    let close = CancellationToken::new();
    let recorder = tokio::spawn(record(
        shared.clone(),
        agent,
        close.clone(),
        rec_rx,
        tx.clone(),
    ));
    drop(tx);
    // When each assigned task became ready, until the agent reports its
    // start (schedule-to-start) or its end.
    let mut unstarted: HashMap<TaskId, Instant> = HashMap::new();
    if !early.is_empty() && !dispatch(&shared, agent, early, &rec_tx, &mut unstarted).await {
        drop(rec_tx);
        let _ = recorder.await;
        shared.msg.left(agent, session);
        shared.engine.send(Command::Leave { agent, session }).await;
        return;
    }
    let (mut sink, mut stream) = socket.split();
    let reason = loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(first) = msg else { break "hub stopping".to_string() };
                let mut batch = Vec::new();
                let mut readies: Vec<Instant> = Vec::new();
                let mut probe = false;
                let mut next = Some(first);
                while let Some(m) = next.take() {
                    match m {
                        Outbound::Message { msg, ready } => {
                            if let (Some(r), HubMessage::Assign(a)) = (ready, &msg) {
                                unstarted.insert(a.task_id, r);
                            }
                            readies.extend(ready);
                            batch.push(msg);
                        }
                        Outbound::Probe => probe = true,
                    }
                    if batch.len() < 1024 {
                        next = rx.try_recv().ok();
                    }
                }
                if probe && let Err(e) = sink.send(Message::Ping(Default::default())).await {
                    break format!("connection probe failed: {e}");
                }
                if !batch.is_empty() && let Err(e) = sink.send(encode(&batch)).await {
                    break format!("send failed: {e}");
                }
                if !readies.is_empty() {
                    let lat: Vec<u64> = readies.iter().map(|t| t.elapsed().as_micros() as u64).collect();
                    shared.stats.record_assign(&lat);
                    shared.metrics.assignments(&lat);
                }
            }
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => break "agent closed the connection".to_string(),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break format!("connection error: {e}"),
                };
                let msgs: Vec<AgentMessage> = match serde_json::from_str(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        warn!(agent_id = %agent, error = %e, "malformed frame from agent ignored");
                        continue;
                    }
                };
                if !dispatch(&shared, agent, msgs, &rec_tx, &mut unstarted).await {
                    break "hub stopping".to_string();
                }
            }
            _ = close.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                break "store could not record reports; agent must resend".to_string();
            }
            end = watch.ended() => {
                let refusal = HubMessage::Error {
                    code: "unauthorized".into(),
                    message: end.message().into(),
                };
                let _ = sink.send(encode(&[refusal])).await;
                let _ = sink.send(Message::Close(None)).await;
                break end.message().to_string();
            }
            _ = replaced.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                break "replaced by a newer session (this one was silent)".to_string();
            }
            _ = shared.shutdown.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                break "hub stopping".to_string();
            }
        }
    };
    drop(rec_tx);
    if let Err(e) = recorder.await {
        warn!(error = %e, "session recorder failed");
    }
    info!(agent_id = %agent, reason = %reason, "agent session ended");
    shared.msg.left(agent, session);
    shared.engine.send(Command::Leave { agent, session }).await;
    shared.autonomy.agent_left(agent, shared.now_ms());
    shared.life.send(LifeCmd::AgentLeft { agent }).await;
    if let Err(e) = shared
        .store
        .agent_event(AgentEvent::Left { id: agent, reason }, shared.now_ms())
        .await
    {
        debug!(error = %e, "could not record agent leave");
    }
    shared.bump();
}

/// The Welcome of this hub for `agent`.
fn welcome<S: Store>(shared: &Shared<S>, agent: AgentId, challenge: Option<String>) -> HubMessage {
    HubMessage::Welcome {
        agent_id: agent,
        heartbeat_ms: shared.cfg.heartbeat.as_millis() as u64,
        lease_ms: shared.cfg.lease.as_millis() as u64,
        challenge,
        hub_key: Some(shared.msg.hub_key_hex()),
    }
}

/// Reads the agent's first frame after a challenge: its first message must
/// be a `Proof` that verifies; the rest of the frame is returned.
async fn read_proof(
    socket: &mut WebSocket,
    agent: AgentId,
    key: &ed25519_dalek::VerifyingKey,
    challenge: &str,
) -> Result<Vec<AgentMessage>, String> {
    let mut msgs: Vec<AgentMessage> = first_frame(socket).await?;
    if msgs.is_empty() {
        return Err(format!("agent {agent} sent no proof of its key"));
    }
    match msgs.remove(0) {
        AgentMessage::Proof { signature } => {
            torch_api::msg::verify_challenge(key, agent, challenge, &signature)
                .map_err(|e| format!("agent {agent} did not prove it holds its key: {e}"))?;
            Ok(msgs)
        }
        _ => Err(format!(
            "agent {agent} must answer the challenge before anything else"
        )),
    }
}

/// Records an `identity.refused` event.
async fn identity_refused<S: Store>(shared: &Arc<Shared<S>>, claimed: AgentId, reason: &str) {
    let data = EventData::IdentityRefused(torch_core::events::payload::IdentityRefused {
        claimed: claimed.to_string(),
        reason: reason.to_string(),
    });
    shared.event(Some(claimed), None, data).await;
}

/// Routes one frame's messages; false when the hub is going away.
async fn dispatch<S: Store>(
    shared: &Arc<Shared<S>>,
    agent: AgentId,
    msgs: Vec<AgentMessage>,
    rec_tx: &mpsc::Sender<Vec<AgentMessage>>,
    unstarted: &mut HashMap<TaskId, Instant>,
) -> bool {
    let mut reports = Vec::new();
    let mut ended = Vec::new();
    for m in msgs {
        match m {
            AgentMessage::Heartbeat { running } => {
                if !shared
                    .engine
                    .send(Command::Heartbeat { agent, running })
                    .await
                {
                    return false;
                }
            }
            AgentMessage::Finished(f) => {
                unstarted.remove(&f.task_id);
                ended.push(end_report(&f));
                reports.push(AgentMessage::Finished(f));
            }
            AgentMessage::Started(h) => {
                if let Some(ready) = unstarted.remove(&h.task_id) {
                    shared.metrics.started(ready.elapsed());
                }
                reports.push(AgentMessage::Started(h));
            }
            AgentMessage::Progress(p) => {
                if !record_progress(shared, agent, p).await {
                    return false;
                }
            }
            AgentMessage::Hello(_) => warn!(agent_id = %agent, "repeated hello ignored"),
            AgentMessage::Proof { .. } => debug!(agent_id = %agent, "late proof ignored"),
            AgentMessage::Delivered { ids } => shared.msg.delivered(shared, agent, ids).await,
            AgentMessage::PeerEvents { events } => {
                crate::messaging::record_events(shared, agent, events).await;
            }
            AgentMessage::Unknown => debug!(agent_id = %agent, "unknown message ignored"),
        }
    }
    if !ended.is_empty()
        && !shared
            .engine
            .send(Command::Ended {
                agent,
                reports: ended,
            })
            .await
    {
        return false;
    }
    reports.is_empty() || rec_tx.send(reports).await.is_ok()
}

/// Records a progress report the agent made from its task's output, as
/// `POST …/progress` does; false when the hub is going away.
async fn record_progress<S: Store>(
    shared: &Arc<Shared<S>>,
    agent: AgentId,
    p: ProgressReport,
) -> bool {
    if !(0.0..=100.0).contains(&p.percent) {
        debug!(agent_id = %agent, task_id = %p.task_id, "progress outside 0..=100 ignored");
        return true;
    }
    let mut message = p.message;
    if message.len() > 1024 {
        let mut cut = 1024;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    let stream = p.live.activity.as_ref().map_or(0, |a| a.tokens_so_far);
    match shared
        .store
        .progress_live(
            p.task_id,
            p.fence,
            p.percent,
            Some(message),
            Some(p.live).filter(|l| !l.is_empty()),
            shared.now_ms(),
        )
        .await
    {
        Ok(FenceCheck::Ok) => {
            shared.bump();
            let held = (p.task_id, p.fence, agent);
            crate::usage::enforce_stream(shared, held, stream).await;
            shared
                .engine
                .send(Command::Progress { task: p.task_id })
                .await
        }
        Ok(_) => {
            debug!(agent_id = %agent, task_id = %p.task_id, "progress for a stale lease ignored");
            true
        }
        Err(e) => {
            warn!(agent_id = %agent, task_id = %p.task_id, error = %e, "cannot record progress");
            true
        }
    }
}

/// What the engine learns from a finished report the moment it arrives.
fn end_report(f: &FinishReport) -> EndReport {
    let telling = matches!(
        f.outcome.kind,
        OutcomeKind::Succeeded | OutcomeKind::Failed | OutcomeKind::TimedOut
    ) && f.outcome.reason.as_deref() != Some("agent shutting down");
    EndReport {
        held: HeldTask {
            task_id: f.task_id,
            fence: f.fence,
        },
        succeeded: f.outcome.kind == OutcomeKind::Succeeded,
        telling,
        duration_ms: f.outcome.evidence.duration_ms,
    }
}

/// Writes reports to the store in order; acks the agent; informs the engine.
async fn record<S: Store>(
    shared: Arc<Shared<S>>,
    agent: AgentId,
    close: CancellationToken,
    mut rx: mpsc::Receiver<Vec<AgentMessage>>,
    tx: mpsc::Sender<Outbound>,
) {
    while let Some(first) = rx.recv().await {
        let mut msgs = first;
        while let Ok(more) = rx.try_recv() {
            msgs.extend(more);
        }
        let mut starts = Vec::new();
        let mut finishes = Vec::new();
        for m in msgs {
            match m {
                AgentMessage::Started(h) => starts.push(h),
                AgentMessage::Finished(f) => finishes.push(f),
                _ => {}
            }
        }
        // A start immediately followed by its finish needs no separate write.
        starts.retain(|s| {
            !finishes
                .iter()
                .any(|f| f.task_id == s.task_id && f.fence == s.fence)
        });
        let now = shared.now_ms();
        if !starts.is_empty() {
            let held: Vec<_> = starts.iter().map(|h| (h.task_id, h.fence)).collect();
            let res = match &shared.batcher {
                Some(b) => b.start(held, now).await,
                None => shared.store.start(held, now).await,
            };
            match res {
                Ok(checks) => {
                    let mut started = Vec::new();
                    for (h, c) in starts.iter().zip(&checks) {
                        if *c == torch_store::FenceCheck::Ok {
                            started
                                .push(serde_json::json!({ "task": h.task_id, "fence": h.fence }));
                        } else {
                            crate::audit::agent_act(
                                &shared.audit,
                                now,
                                agent,
                                "task.started",
                                h.task_id,
                                h.fence,
                                Some(format!("{c:?}")),
                                "",
                            );
                        }
                    }
                    crate::audit::batch(
                        &shared.audit,
                        crate::audit::agent_entry(now, agent, "task.started"),
                        started,
                    );
                    for (h, c) in starts.iter().zip(checks) {
                        if c != torch_store::FenceCheck::Ok {
                            debug!(task_id = %h.task_id, fence = h.fence, check = ?c, "start report refused");
                        }
                    }
                }
                Err(e) => {
                    shared.metrics.counters.store_error(StoreOp::Start);
                    warn!(error = %e, "could not record task starts")
                }
            }
        }
        if finishes.is_empty() {
            shared.bump();
            continue;
        }
        let held: Vec<HeldTask> = finishes
            .iter()
            .map(|f| HeldTask {
                task_id: f.task_id,
                fence: f.fence,
            })
            .collect();
        for f in &mut finishes {
            shared.usage.settle(f.task_id, f.fence, &mut f.outcome);
        }
        let killed: Vec<bool> = finishes
            .iter()
            .map(|f| f.outcome.kind == OutcomeKind::Cancelled)
            .collect();
        let kinds: Vec<OutcomeKind> = finishes.iter().map(|f| f.outcome.kind).collect();
        let durations: Vec<u64> = finishes
            .iter()
            .map(|f| f.outcome.evidence.duration_ms)
            .collect();
        let batch: Vec<Finish> = finishes
            .into_iter()
            .map(|f| Finish {
                task: f.task_id,
                fence: f.fence,
                agent,
                outcome: f.outcome,
                logs: f.logs.map(|l| (l.stdout, l.stderr, l.truncated)),
            })
            .collect();
        let res = match &shared.batcher {
            Some(b) => b.finish(batch, now).await,
            None => shared.store.finish(batch, now).await,
        };
        let results: Vec<Result<FinishResult, String>> = match res {
            Ok(r) => r.into_iter().map(Ok).collect(),
            Err(e) => {
                shared.metrics.counters.store_error(StoreOp::Finish);
                held.iter().map(|_| Err(e.to_string())).collect()
            }
        };
        count_finishes(&shared.metrics, &kinds, &durations, &results);
        shared.bump();
        let mut acks = Vec::with_capacity(held.len());
        let mut lost = false;
        let mut finished = Vec::new();
        for ((h, r), kind) in held.iter().zip(&results).zip(&kinds) {
            let action = if *kind == OutcomeKind::SandboxDenied {
                "sandbox.denied"
            } else {
                "task.finished"
            };
            let refused = match r {
                Ok(FinishResult::Recorded(_)) | Ok(FinishResult::Duplicate) => None,
                Ok(other) => Some(format!("{other:?}")),
                Err(e) => Some(e.clone()),
            };
            if refused.is_none() && *kind != OutcomeKind::SandboxDenied {
                if shared.audit.enabled() {
                    finished.push(serde_json::json!({
                        "task": h.task_id, "fence": h.fence, "outcome": kind.as_str()
                    }));
                }
                continue;
            }
            crate::audit::agent_act(
                &shared.audit,
                now,
                agent,
                action,
                h.task_id,
                h.fence,
                refused,
                kind.as_str(),
            );
        }
        crate::audit::batch(
            &shared.audit,
            crate::audit::agent_entry(now, agent, "task.finished"),
            finished,
        );
        for ((h, r), killed) in held.iter().zip(&results).zip(killed) {
            let status = match r {
                Ok(FinishResult::Recorded(effect)) => {
                    shared.stats.finished.fetch_add(1, Ordering::Relaxed);
                    if effect.state == TaskState::Succeeded {
                        shared.autonomy.task_succeeded(h.task_id, agent);
                    }
                    Some(AckStatus::Recorded)
                }
                Ok(FinishResult::Duplicate) => Some(AckStatus::Duplicate),
                Ok(FinishResult::Stale {
                    state: TaskState::Cancelled,
                    ..
                }) if killed => {
                    // The agent confirms the kill of a task we cancelled: expected.
                    debug!(task_id = %h.task_id, "cancelled task's process was stopped");
                    Some(AckStatus::Stale)
                }
                Ok(FinishResult::Stale {
                    current_fence,
                    state,
                }) => {
                    refuse_stale(&shared, agent, *h, *current_fence, &state.to_string()).await;
                    Some(AckStatus::Stale)
                }
                Ok(FinishResult::NotFound) => {
                    refuse_stale(&shared, agent, *h, 0, "unknown").await;
                    Some(AckStatus::Stale)
                }
                Err(_) => {
                    // Not durable: no ack. Closing the session makes the agent
                    // reconnect and resend its unacked reports.
                    lost = true;
                    None
                }
            };
            if let Some(status) = status {
                acks.push(HubMessage::Ack {
                    task_id: h.task_id,
                    fence: h.fence,
                    status,
                });
            }
        }
        shared
            .engine
            .send(Command::Recorded {
                agent,
                results: held
                    .into_iter()
                    .zip(results)
                    .zip(durations)
                    .map(|((held, result), duration_ms)| RecordedReport {
                        held,
                        result,
                        duration_ms,
                    })
                    .collect(),
            })
            .await;
        for a in acks {
            if tx.send(a.into()).await.is_err() {
                break;
            }
        }
        if lost {
            warn!(agent_id = %agent, "finished reports could not be recorded; closing the session so the agent resends them");
            close.cancel();
        }
    }
}

/// Counts recorded attempts in the metrics: durations by outcome, and
/// completions, failures, retries and deaths by what the store made of them.
fn count_finishes(
    metrics: &Metrics,
    kinds: &[OutcomeKind],
    durations: &[u64],
    results: &[Result<FinishResult, String>],
) {
    for ((kind, ms), r) in kinds.iter().zip(durations).zip(results) {
        let Ok(FinishResult::Recorded(effect)) = r else {
            continue;
        };
        metrics.attempt(*kind, *ms);
        let why = match kind {
            OutcomeKind::Succeeded => {
                metrics.counters.completed();
                continue;
            }
            OutcomeKind::Cancelled => continue,
            OutcomeKind::Failed => Failure::Failed,
            OutcomeKind::TimedOut => Failure::TimedOut,
            OutcomeKind::Fatal | OutcomeKind::BudgetExceeded => Failure::Fatal,
            // Limits the sandbox enforced count as failures of the attempt.
            OutcomeKind::Oom
            | OutcomeKind::PidsExceeded
            | OutcomeKind::CpuTime
            | OutcomeKind::SandboxDenied => Failure::Failed,
        };
        metrics.counters.failed(
            why,
            effect.state == TaskState::Queued,
            effect.state == TaskState::Dead,
        );
    }
}

async fn refuse_stale<S: Store>(
    shared: &Arc<Shared<S>>,
    agent: AgentId,
    h: HeldTask,
    current_fence: u64,
    state: &str,
) {
    shared.stats.stale_refused.fetch_add(1, Ordering::Relaxed);
    warn!(task_id = %h.task_id, agent_id = %agent, fence = h.fence, current_fence, state, "stale report refused");
    let refused = EventData::TaskStaleReportRefused(StaleReportRefused {
        current_fence,
        fence: h.fence,
        state: state.to_string(),
    });
    let appended = match NewEvent::of(&refused, Some(h.task_id), Some(agent)) {
        Ok(ev) => shared.store.append_event(ev, shared.now_ms()).await,
        Err(e) => Err(e),
    };
    if let Err(e) = appended {
        debug!(error = %e, "could not record stale report event");
    }
}
