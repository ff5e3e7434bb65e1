//! The agent against an in-test hub: handshake, batching, reports with
//! fences, resend after reconnect, auth refusal, reconnect after failures.

mod common;

use tokio_tungstenite::tungstenite::http::StatusCode;

use torch_agent::AgentError;
use torch_api::ws::{AckStatus, AgentMessage, HubMessage};
use torch_core::OutcomeKind;

use common::*;

#[tokio::test]
async fn reports_carry_fences_and_survive_a_reconnect() {
    let hub = Hub::start().await;
    let root = tempfile::tempdir().unwrap();
    let mut cfg = config(&hub, root.path());
    cfg.keep_workdirs = false;
    cfg.slots = 3;
    let agent = Agent::start(cfg);

    let mut conn = hub.accept().await;
    assert_eq!(conn.hello.name, "test-agent");
    assert_eq!(conn.hello.agent_id, None);
    assert_eq!(conn.hello.slots, 3);
    assert!(conn.hello.running.is_empty());
    conn.welcome(agent_id()).await;

    let mut noop = assign(&["@noop"]);
    noop.fence = 7;
    let mut echo = sh("echo hi");
    echo.fence = 9;
    echo.attempt = 2;
    conn.send(vec![
        HubMessage::Assign(noop.clone()),
        HubMessage::Assign(echo.clone()),
    ])
    .await;

    let r_noop = conn.finished(noop.task_id).await;
    assert_eq!((r_noop.fence, r_noop.attempt), (7, 1));
    assert_eq!(r_noop.outcome.kind, OutcomeKind::Succeeded);
    assert!(r_noop.logs.is_none());
    let r_echo = conn.finished(echo.task_id).await;
    assert_eq!((r_echo.fence, r_echo.attempt), (9, 2));
    assert_eq!(
        r_echo.outcome.kind,
        OutcomeKind::Succeeded,
        "{:?}",
        r_echo.outcome
    );
    assert_eq!(r_echo.outcome.evidence.exit_code, Some(0));
    assert_eq!(r_echo.logs.as_ref().unwrap().stdout, "hi\n");
    assert_eq!(r_echo.outcome.evidence.stdout_tail, "hi\n");
    // Started only for the real process, before its Finished, with its fence.
    assert!(!conn.saw_started(noop.task_id), "no Started for @noop");
    let started_at = conn
        .log
        .iter()
        .position(
            |m| matches!(m, AgentMessage::Started(h) if h.task_id == echo.task_id && h.fence == 9),
        )
        .expect("Started for the command");
    let finished_at = conn
        .log
        .iter()
        .position(|m| matches!(m, AgentMessage::Finished(r) if r.task_id == echo.task_id))
        .unwrap();
    assert!(started_at < finished_at);
    // No work dir for @noop; one for the command, kept until acked.
    assert!(!workdir(root.path(), &noop).exists());
    let echo_dir = workdir(root.path(), &echo);
    assert_eq!(
        std::fs::read_to_string(echo_dir.join("stdout.log")).unwrap(),
        "hi\n"
    );

    // The hub goes away before acking anything.
    drop(conn);
    let mut conn = hub.accept().await;
    assert_eq!(
        conn.hello.agent_id,
        Some(agent_id()),
        "reconnect reuses the id"
    );
    assert!(conn.hello.running.is_empty());
    conn.welcome(agent_id()).await;
    let again_noop = conn.finished(noop.task_id).await;
    let again_echo = conn.finished(echo.task_id).await;
    assert_eq!(again_noop, r_noop, "resent unchanged, same fence");
    assert_eq!(again_echo, r_echo, "resent unchanged, same fence");

    conn.send(vec![
        HubMessage::Ack {
            task_id: noop.task_id,
            fence: 7,
            status: AckStatus::Duplicate,
        },
        HubMessage::Ack {
            task_id: echo.task_id,
            fence: 9,
            status: AckStatus::Recorded,
        },
    ])
    .await;
    eventually("work dir removed after the ack", || !echo_dir.exists()).await;

    // Acked reports are not resent on the next session.
    drop(conn);
    let mut conn = hub.accept().await;
    conn.welcome(agent_id()).await;
    let probe = assign(&["@noop"]);
    conn.send(vec![HubMessage::Assign(probe.clone())]).await;
    conn.finished(probe.task_id).await;
    let finished: Vec<_> = conn
        .log
        .iter()
        .filter_map(|m| match m {
            AgentMessage::Finished(r) => Some(r.task_id),
            _ => None,
        })
        .collect();
    assert_eq!(finished, vec![probe.task_id]);
    assert_eq!(agent.stop().await.map_err(|e| e.to_string()), Ok(()));
}

#[tokio::test]
async fn heartbeats_list_running_tasks_and_many_reports_share_frames() {
    let hub = Hub::start().await;
    let root = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&hub, root.path()));
    let mut conn = hub.accept().await;
    conn.welcome(agent_id()).await;

    let slow = sh("sleep 30");
    let noops: Vec<_> = (0..500).map(|_| assign(&["@noop"])).collect();
    let mut batch = vec![HubMessage::Assign(slow.clone())];
    batch.extend(noops.iter().cloned().map(HubMessage::Assign));
    let frames_before = conn.frames;
    conn.send(batch).await;
    for n in &noops {
        assert_eq!(
            conn.finished(n.task_id).await.outcome.kind,
            OutcomeKind::Succeeded
        );
    }
    let frames = conn.frames - frames_before;
    assert!(
        frames < 20,
        "500 reports took {frames} frames: the writer does not batch"
    );
    // A heartbeat naming the slow task arrives.
    let mut seen = 0;
    let held = loop {
        if let AgentMessage::Heartbeat { running } = conn.next_raw().await
            && !running.is_empty()
        {
            break running;
        }
        seen += 1;
        assert!(seen < 1000, "no heartbeat with the running task");
    };
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].task_id, held[0].fence), (slow.task_id, slow.fence));

    conn.send(vec![HubMessage::Cancel {
        task_id: slow.task_id,
        fence: slow.fence,
        reason: "test".into(),
    }])
    .await;
    let r = conn.finished(slow.task_id).await;
    assert_eq!(r.outcome.kind, OutcomeKind::Cancelled);
    assert_eq!(r.outcome.reason.as_deref(), Some("cancelled: test"));
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_token_ends_the_agent() {
    let hub = Hub::start().await;
    let root = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&hub, root.path()));
    hub.refuse(StatusCode::UNAUTHORIZED).await;
    match agent.join().await {
        Err(AgentError::Auth { detail }) => assert!(detail.contains("401"), "{detail}"),
        other => panic!("expected an auth error, got {other:?}"),
    }
}

#[tokio::test]
async fn keeps_reconnecting_until_the_hub_answers() {
    let hub = Hub::start().await;
    let root = tempfile::tempdir().unwrap();
    let agent = Agent::start(config(&hub, root.path()));
    for _ in 0..3 {
        hub.drop_next().await;
    }
    hub.refuse(StatusCode::SERVICE_UNAVAILABLE).await;
    let mut conn = hub.accept().await;
    conn.welcome(agent_id()).await;
    let t = assign(&["@noop"]);
    conn.send(vec![HubMessage::Assign(t.clone())]).await;
    assert_eq!(
        conn.finished(t.task_id).await.outcome.kind,
        OutcomeKind::Succeeded
    );
    agent.stop().await.unwrap();
}
