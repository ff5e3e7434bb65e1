//! Engine tests under paused tokio time, on the real embedded store, with
//! agent sessions made of the engine's own commands (`testing::FakeAgent`).

use std::time::Duration;

use serde_json::json;
use torch_api::ws::{HeldTask, HubMessage};
use torch_core::routing::RoutingConfig;
use torch_core::{TaskId, TaskState};
use torch_store::{EventLog, TaskStore};

use super::JoinRefused;
use crate::config::HubConfig;
use crate::testing::{FakeAgent, TestHub, agent_id, finish, record};

fn cfg() -> HubConfig {
    HubConfig {
        lease: Duration::from_secs(10),
        heartbeat: Duration::from_secs(2),
        ..HubConfig::default()
    }
}

async fn state(hub: &TestHub, id: &str) -> TaskState {
    let id: TaskId = id.parse().unwrap();
    hub.shared.store.get_task(id).await.unwrap().unwrap().state
}

#[tokio::test(start_paused = true)]
async fn a_lease_that_runs_out_is_requeued_once_and_runs_elsewhere() {
    let hub = TestHub::start(cfg()).await;
    let mut a = FakeAgent::join(&hub, agent_id(1), 1, &["sh"], 1)
        .await
        .unwrap();
    let ids = hub
        .submit(json!([{"command": ["true"], "skills": ["sh"]}]))
        .await;
    let first = a.next_assign().await;
    let granted_ms = hub.shared.now_ms();
    assert_eq!(
        (first.task_id.to_string(), first.attempt),
        (ids[0].clone(), 1)
    );
    let mut b = FakeAgent::join(&hub, agent_id(2), 2, &["sh"], 1)
        .await
        .unwrap();
    // `a` goes silent. Time runs (paused, it jumps to each timer) until
    // its lease runs out and `b` gets the task.
    let second = b.next_assign().await;
    let waited = hub.shared.now_ms() - granted_ms;
    assert!(
        waited >= 10_000,
        "not before the lease ran out: {waited} ms"
    );
    assert_eq!(second.task_id, first.task_id);
    assert_eq!(second.attempt, 2);
    assert!(second.fence > first.fence);
    // `b` holds it from now on, heartbeating.
    let heartbeats = {
        let engine = hub.shared.engine.clone();
        let (id, held) = (
            b.id,
            HeldTask {
                task_id: second.task_id,
                fence: second.fence,
            },
        );
        tokio::spawn(async move {
            loop {
                engine
                    .send(crate::engine::Command::Heartbeat {
                        agent: id,
                        running: vec![held],
                    })
                    .await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    // A late report under the old fence changes nothing.
    finish(&hub, a.id, &first, true).await;
    assert_eq!(state(&hub, &ids[0]).await, TaskState::Assigned);
    finish(&hub, b.id, &second, true).await;
    heartbeats.abort();
    assert_eq!(state(&hub, &ids[0]).await, TaskState::Succeeded);
    let events = hub.shared.store.events(0, Vec::new(), 1000).await.unwrap();
    let expired = events
        .iter()
        .filter(|e| e.kind == "task.lease_expired")
        .count();
    assert_eq!(expired, 1, "one expiry, one requeue");
    // The silent agent's heartbeat now cancels what is no longer its.
    a.heartbeat(
        &hub,
        vec![HeldTask {
            task_id: first.task_id,
            fence: first.fence,
        }],
    )
    .await;
    match a.next().await {
        HubMessage::Cancel { task_id, .. } => assert_eq!(task_id, first.task_id),
        other => panic!("expected a cancel, got {other:?}"),
    }
    hub.stop().await;
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_a_long_task_leased() {
    let hub = TestHub::start(cfg()).await;
    let mut a = FakeAgent::join(&hub, agent_id(1), 1, &["sh"], 1)
        .await
        .unwrap();
    let ids = hub
        .submit(json!([{"command": ["true"], "skills": ["sh"]}]))
        .await;
    let task = a.next_assign().await;
    let held = vec![HeldTask {
        task_id: task.task_id,
        fence: task.fence,
    }];
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        a.heartbeat(&hub, held.clone()).await;
    }
    // Ten minutes later: still the same attempt.
    assert_eq!(state(&hub, &ids[0]).await, TaskState::Assigned);
    finish(&hub, a.id, &task, true).await;
    assert_eq!(state(&hub, &ids[0]).await, TaskState::Succeeded);
    hub.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_live_session_is_not_displaced_by_a_second_one() {
    let hub = TestHub::start(cfg()).await;
    let id = agent_id(7);
    let mut first = FakeAgent::join(&hub, id, 1, &["sh"], 1).await.unwrap();
    let refused = FakeAgent::join(&hub, id, 2, &["sh"], 1).await.err();
    assert!(
        matches!(refused, Some(JoinRefused::InUse { .. })),
        "{refused:?}"
    );
    // The live session was probed (a dead connection would notice now).
    assert!(matches!(
        first.rx.recv().await,
        Some(crate::engine::Outbound::Probe)
    ));
    assert!(!first.close.is_cancelled());
    // Silent for two heartbeats: the first session is taken as gone.
    tokio::time::advance(Duration::from_secs(5)).await;
    let second = FakeAgent::join(&hub, id, 3, &["sh"], 1).await.unwrap();
    assert!(first.close.is_cancelled(), "the silent session is closed");
    assert_eq!(second.session, 3);
    hub.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_breaker_counts_a_failure_before_its_slot_is_offered_again() {
    let mut cfg = cfg();
    cfg.routing = RoutingConfig::default();
    cfg.routing.breaker.failure_threshold = 3;
    cfg.routing.breaker.cooldown = Duration::from_secs(3600);
    let hub = TestHub::start(cfg).await;
    let mut flaky = FakeAgent::join(&hub, agent_id(1), 1, &["sh"], 1)
        .await
        .unwrap();
    let specs: Vec<_> = (0..8)
        .map(|i| json!({"name": format!("t{i}"), "command": ["true"], "skills": ["sh"], "max_retries": 0}))
        .collect();
    hub.submit(json!(specs)).await;
    // The flaky agent reports each failure at once and the store records it
    // a moment later: in that window its slot is free and, unless the
    // breaker already counted the failure, a scheduling pass hands it more.
    for _ in 0..3 {
        let a = flaky.next_assign().await;
        hub.shared
            .engine
            .send(crate::engine::Command::Ended {
                agent: flaky.id,
                reports: vec![crate::engine::EndReport {
                    held: HeldTask {
                        task_id: a.task_id,
                        fence: a.fence,
                    },
                    succeeded: false,
                    telling: true,
                    duration_ms: 5,
                }],
            })
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        record(&hub, flaky.id, &a, false).await;
    }
    // Another agent joins; wait until nothing is queued any more.
    let mut good = FakeAgent::join(&hub, agent_id(2), 2, &["sh"], 8)
        .await
        .unwrap();
    loop {
        let page = hub
            .shared
            .store
            .list_tasks(torch_store::TaskFilter {
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        if page
            .counts
            .iter()
            .all(|(s, n)| *s != TaskState::Queued || *n == 0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut more = 0;
    while let Ok(m) = flaky.rx.try_recv() {
        if let crate::engine::Outbound::Message {
            msg: HubMessage::Assign(_),
            ..
        } = m
        {
            more += 1;
        }
    }
    assert_eq!(
        more, 0,
        "the breaker opens at the third failure: no fourth task"
    );
    for _ in 0..5 {
        let a = good.next_assign().await;
        finish(&hub, good.id, &a, true).await;
    }
    hub.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_assignment_names_the_repository_to_check_out() {
    let hub = TestHub::start(cfg()).await;
    let mut a = FakeAgent::join(&hub, agent_id(1), 1, &["sh"], 2)
        .await
        .unwrap();
    hub.submit(json!([
        {"command": ["true"], "skills": ["sh"],
         "context": {"repository": "/srv/repo", "branch": "team/x", "paths": ["src"]}},
        {"command": ["true"], "skills": ["sh"], "context": {"paths": ["src"]}},
    ]))
    .await;
    let mut got = [a.next_assign().await, a.next_assign().await];
    got.sort_by_key(|g| g.checkout.is_none());
    assert_eq!(
        got[0].checkout,
        Some(torch_api::ws::Checkout {
            repository: "/srv/repo".into(),
            base: Some("team/x".into()),
        })
    );
    assert_eq!(got[1].checkout, None, "no repository, no checkout");
}

#[tokio::test(start_paused = true)]
async fn a_stale_read_of_a_lease_for_a_queued_task_is_not_adopted() {
    let hub = TestHub::start(cfg()).await;
    let ids = hub
        .submit(json!([{"command": ["true"], "skills": ["sh"]}]))
        .await;
    let task: TaskId = ids[0].parse().unwrap();
    // A reconcile whose store read predates the lease's end: it still
    // shows the task leased, while this engine has it queued.
    let stale = torch_store::Snapshot {
        queued: Vec::new(),
        leased: vec![torch_store::LeaseRecord {
            task,
            agent: agent_id(9),
            fence: 1,
            attempt: 1,
        }],
        backlog: 1,
    };
    hub.shared
        .engine
        .send(crate::engine::Command::Reconcile(stale))
        .await;
    // The task is placed once, on the agent that joins (before the fix the
    // lease table refused the placement and the engine's debug assertion
    // stopped it).
    let mut a = FakeAgent::join(&hub, agent_id(1), 1, &["sh"], 1)
        .await
        .unwrap();
    let got = a.next_assign().await;
    assert_eq!(got.task_id, task);
    finish(&hub, a.id, &got, true).await;
    assert_eq!(state(&hub, &ids[0]).await, TaskState::Succeeded);
    hub.stop().await;
}
