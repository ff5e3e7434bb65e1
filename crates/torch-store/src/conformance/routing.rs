//! Routing data: the stored `Routing` in every queued task the store hands
//! back, the agents a task failed on, analyses and assignment explanations.

use std::collections::BTreeMap;

use crate::{Effect, FinishResult, Grant, Routing, Store, TaskStore};
use torch_core::scheduler::QueuedTask;
use torch_core::{OutcomeKind, SkillReq, TaskContext, TaskState};

use super::*;

fn recorded(r: &FinishResult) -> &Effect {
    match r {
        FinishResult::Recorded(e) => e,
        other => panic!("expected Recorded, got {other:?}"),
    }
}

async fn end<S: Store>(s: &S, l: &Leased, kind: OutcomeKind, now: u64) -> Effect {
    let mut out = s.finish(vec![report(l, kind)], now).await.expect("finish");
    recorded(&out.pop().expect("one result")).clone()
}

fn skill(s: &str) -> SkillReq {
    s.parse().expect("skill")
}

/// A routing that differs from anything `QueuedTask::from_spec` would derive
/// from [`task`]'s spec.
fn routing(n: u64) -> Routing {
    Routing {
        skills: vec![skill("rust:0.5"), skill(&format!("skill{n}"))],
        preferred: vec![skill("tokio"), skill("sqlite:0.3")],
        agent_labels: BTreeMap::from([("gpu".to_string(), "a100".to_string())]),
        context: Some(TaskContext {
            repository: Some("git@example.com:nova/torch.git".into()),
            paths: vec!["crates/torch-store".into()],
            parent: None,
            branch: None,
        }),
        tenant: "team-a".into(),
    }
}

/// Task `n` with [`routing`], an analysis, and un-normalised spec skills.
fn routed(n: u64, deps: &[u64]) -> NewTask {
    let mut t = task_with(n, deps, |sp| {
        sp.skills = vec![skill("Rustlang")];
        sp.tenant = Some("team-a".into());
        sp.priority = 2;
    });
    t.routing = Some(routing(n));
    t.analysis = Some(format!(r#"{{"task":{n},"required":["rust"]}}"#));
    t
}

/// Asserts `q` is task `n`'s routing with these scheduling fields.
fn assert_routed(q: &QueuedTask, n: u64, not_before: u64, avoid: &[AgentId], what: &str) {
    let r = routing(n);
    assert_eq!(q.id, tid(n), "{what}");
    assert_eq!(q.priority, 2, "{what}");
    assert_eq!(q.skills, r.skills, "{what}: normalised skills");
    assert_eq!(q.preferred, r.preferred, "{what}: preferred");
    assert_eq!(q.agent_labels, r.agent_labels, "{what}: agent labels");
    assert_eq!(q.context, r.context, "{what}: context");
    assert_eq!(q.tenant, "team-a", "{what}: tenant");
    assert_eq!(q.not_before, not_before, "{what}: not_before");
    assert_eq!(q.avoid, avoid, "{what}: avoid");
    assert_eq!(
        *q,
        r.queued(tid(n), 2, q.seq, not_before, avoid.to_vec()),
        "{what}"
    );
}

async fn loaded<S: Store>(s: &S, n: u64) -> QueuedTask {
    let snap = s.load().await.expect("load");
    snap.queued
        .into_iter()
        .find(|q| q.id == tid(n))
        .expect("queued in load")
}

/// Submit, load, requeue, release, retry and reopen all give back the
/// submitted routing, with `avoid` = the agents the task failed on.
pub async fn routing_round_trips(h: &impl Harness) {
    let seq;
    {
        let s = h.open();
        let batch = vec![
            task_with(1, &[], retries(1)),
            {
                let mut t = routed(2, &[]);
                retries(1)(&mut t.spec);
                t
            },
            routed(3, &[1]),
        ];
        let out = s.submit(batch, NOW).await.expect("submit");
        // Submit: ready from the routing (not the spec); blocked has none.
        let ready = out[1].ready.clone().expect("2 is ready");
        assert_routed(&ready, 2, 0, &[], "submit");
        seq = ready.seq;
        assert_eq!(out[2].state, TaskState::Blocked);
        assert!(out[2].ready.is_none());
        // Without routing: derived from the spec, as before.
        let plain = out[0].ready.clone().expect("1 is ready");
        assert_eq!(
            plain,
            QueuedTask::from_spec(tid(1), plain.seq, &task_with(1, &[], retries(1)).spec)
        );

        let rec = s.get_task(tid(2)).await.expect("get").expect("exists");
        assert_eq!(
            rec.analysis.as_deref(),
            Some(r#"{"task":2,"required":["rust"]}"#)
        );
        assert_eq!((rec.explanation, rec.failed_agents), (None, vec![]));
        assert_eq!(
            rec.spec.skills,
            vec![skill("rustlang")],
            "spec kept as given"
        );
        assert!(
            s.get_task(tid(1))
                .await
                .expect("get")
                .expect("exists")
                .analysis
                .is_none()
        );

        // Load.
        assert_routed(&loaded(&s, 2).await, 2, 0, &[], "load");

        // Requeue after a failure on agent 7: avoids it.
        let l = lease(&s, 2, 7, NOW).await;
        let e = end(&s, &l, OutcomeKind::Failed, NOW).await;
        assert_eq!(e.state, TaskState::Queued);
        let rq = e.requeued.expect("requeued");
        assert_routed(&rq, 2, NOW + 1000, &[aid(7)], "requeue");
        assert_eq!(rq.seq, seq);
        assert_routed(
            &loaded(&s, 2).await,
            2,
            NOW + 1000,
            &[aid(7)],
            "load after fail",
        );

        // Dead after a failure on agent 8, then retried by hand: still avoids both.
        let l = lease(&s, 2, 8, NOW + 1000).await;
        let e = end(&s, &l, OutcomeKind::Failed, NOW + 1000).await;
        assert_eq!((e.state, e.requeued), (TaskState::Dead, None));
        let r = s.retry(tid(2), NOW + 2000).await.expect("retry");
        assert_eq!(r.state, TaskState::Queued);
        let rq = r.ready.expect("ready");
        assert_routed(&rq, 2, 0, &[aid(7), aid(8)], "retry");
        let rec = s.get_task(tid(2)).await.expect("get").expect("exists");
        assert_eq!(rec.failed_agents, vec![aid(7), aid(8)], "retry keeps them");

        // Release: 3 (routed) waits for 1 (plain).
        let l = lease(&s, 1, 1, NOW).await;
        let e = end(&s, &l, OutcomeKind::Succeeded, NOW).await;
        assert_eq!(e.released.len(), 1);
        assert_routed(&e.released[0], 3, 0, &[], "release");
    }
    // Reopen: load still routes the same way.
    let s = h.open();
    assert_routed(&loaded(&s, 2).await, 2, 0, &[aid(7), aid(8)], "reopen");
    assert_routed(&loaded(&s, 3).await, 3, 0, &[], "reopen released");
}

/// A task submitted without routing keeps its spec's tenant when requeued.
pub async fn plain_task_keeps_tenant(h: &impl Harness) {
    let s = h.open();
    let t = task_with(1, &[], |sp| {
        sp.tenant = Some("team-b".into());
        sp.skills = vec![skill("sh")];
    });
    let out = s.submit(vec![t], NOW).await.expect("submit");
    assert_eq!(
        out[0].ready.as_ref().map(|q| q.tenant.as_str()),
        Some("team-b")
    );
    let l = lease(&s, 1, 1, NOW).await;
    let rq = end(&s, &l, OutcomeKind::Failed, NOW)
        .await
        .requeued
        .expect("requeued");
    assert_eq!(
        (rq.tenant.as_str(), rq.skills.clone(), rq.avoid.clone()),
        ("team-b", vec![skill("sh")], vec![aid(1)])
    );
    let q = loaded(&s, 1).await;
    assert_eq!((q.tenant.as_str(), q.avoid), ("team-b", vec![aid(1)]));
}

/// Failures on A, then B, then an expiry on A: A and B once each, in order;
/// the dead reason counts distinct agents.
pub async fn failed_agents_accumulate(h: &impl Harness) {
    let s = h.open();
    let batch = vec![
        task_with(1, &[], retries(3)),
        task_with(2, &[], retries(0)),
        task_with(3, &[], retries(5)),
    ];
    s.submit(batch, NOW).await.expect("submit");
    let (a, b, c) = (1, 2, 3);

    let l = lease(&s, 1, a, NOW).await;
    let e = end(&s, &l, OutcomeKind::Failed, NOW).await;
    assert_eq!(e.requeued.expect("requeued").avoid, vec![aid(a)]);
    let now = NOW + 1000;
    let l = lease(&s, 1, b, now).await;
    let e = end(&s, &l, OutcomeKind::TimedOut, now).await;
    assert_eq!(e.requeued.expect("requeued").avoid, vec![aid(a), aid(b)]);
    let now = now + 2000;
    let l = lease(&s, 1, a, now).await;
    let out = s
        .expire(tid(1), l.fence, "agent lost".into(), now)
        .await
        .expect("expire");
    let rq = recorded(&out).requeued.clone().expect("requeued");
    assert_eq!(rq.avoid, vec![aid(a), aid(b)], "a is not added twice");
    let rec = s.get_task(tid(1)).await.expect("get").expect("exists");
    assert_eq!(rec.failed_agents, vec![aid(a), aid(b)]);
    assert_eq!(rec.last_agent, Some(aid(a)));

    // A fourth failure, on C, exhausts the budget.
    let now = now + 4000;
    let l = lease(&s, 1, c, now).await;
    let e = end(&s, &l, OutcomeKind::Failed, now).await;
    assert_eq!(e.state, TaskState::Dead);
    let rec = s.get_task(tid(1)).await.expect("get").expect("exists");
    assert_eq!(rec.failed_agents, vec![aid(a), aid(b), aid(c)]);
    assert_eq!(rec.reason.as_deref(), Some("failed on 3 agents: it failed"));
    let dead = events_of(&s, EventKind::TaskDead, 1).await;
    assert_eq!(dead.len(), 1);
    let data: serde_json::Value = serde_json::from_str(&dead[0].data).expect("json");
    assert_eq!(data["reason"], "failed on 3 agents: it failed");
    assert_eq!(
        data["failed_agents"],
        serde_json::json!([aid(a), aid(b), aid(c)])
    );
    assert_eq!(data["cause"], "failed");

    // Fatal on the first attempt: one agent, singular.
    let l = lease(&s, 2, b, NOW).await;
    let e = end(&s, &l, OutcomeKind::Fatal, NOW).await;
    assert_eq!(e.state, TaskState::Dead);
    let rec = s.get_task(tid(2)).await.expect("get").expect("exists");
    assert_eq!(rec.reason.as_deref(), Some("failed on 1 agent: it fatal"));
    assert_eq!(rec.failed_agents, vec![aid(b)]);

    // A success records nothing and keeps earlier failures.
    let l = lease(&s, 3, c, NOW).await;
    end(&s, &l, OutcomeKind::Failed, NOW).await;
    let l = lease(&s, 3, a, NOW + 1000).await;
    let e = end(&s, &l, OutcomeKind::Succeeded, NOW + 1000).await;
    assert_eq!(e.state, TaskState::Succeeded);
    let page = s
        .list_tasks(crate::TaskFilter::default())
        .await
        .expect("list");
    let rec = page.tasks.iter().find(|t| t.id == tid(3)).expect("listed");
    assert_eq!(
        (rec.failed_agents.clone(), rec.reason.clone()),
        (vec![aid(c)], None)
    );
}

/// The explanation is stored with the task and embedded in `task.assigned`
/// as JSON (as a string when it is not JSON); a grant without one clears it.
pub async fn explanation_stored(h: &impl Harness) {
    let s = h.open();
    let batch = vec![task_with(1, &[], retries(2)), task(2, &[])];
    s.submit(batch, NOW).await.expect("submit");
    let explain = r#"{"agent":"a1","score":0.75,"factors":[{"name":"skill","value":1.0}]}"#;
    let grant = |n: u64, explanation: Option<&str>, now: u64| Grant {
        task: tid(n),
        agent: aid(1),
        expires_ms: now + 30_000,
        explanation: explanation.map(str::to_owned),
    };
    let out = s
        .assign(
            vec![
                grant(1, Some(explain), NOW),
                grant(2, Some("not json {"), NOW),
            ],
            NOW,
        )
        .await
        .expect("assign");
    let l1 = out[0].clone().expect("leased");
    assert!(out[1].is_ok());

    let rec = s.get_task(tid(1)).await.expect("get").expect("exists");
    assert_eq!(rec.explanation.as_deref(), Some(explain));
    let ev = events_of(&s, EventKind::TaskAssigned, 1).await;
    let data: serde_json::Value = serde_json::from_str(&ev[0].data).expect("json");
    let want: serde_json::Value = serde_json::from_str(explain).expect("json");
    assert!(data["explanation"].is_object());
    assert_eq!(data["explanation"], want);
    assert_eq!(
        (data["fence"].clone(), data["attempt"].clone()),
        (l1.fence.into(), 1.into())
    );
    assert_eq!(data["agent"], serde_json::json!(aid(1)));

    let rec = s.get_task(tid(2)).await.expect("get").expect("exists");
    assert_eq!(rec.explanation.as_deref(), Some("not json {"));
    let ev = events_of(&s, EventKind::TaskAssigned, 2).await;
    let data: serde_json::Value = serde_json::from_str(&ev[0].data).expect("json");
    assert_eq!(data["explanation"], "not json {");

    // Next attempt without an explanation: none stored, none in the event.
    end(&s, &l1, OutcomeKind::Failed, NOW).await;
    let l = s
        .assign(vec![grant(1, None, NOW + 1000)], NOW + 1000)
        .await
        .expect("assign")
        .pop()
        .expect("one")
        .expect("leased");
    assert_eq!(l.attempt, 2);
    let rec = s.get_task(tid(1)).await.expect("get").expect("exists");
    assert_eq!(rec.explanation, None);
    let ev = events_of(&s, EventKind::TaskAssigned, 1).await;
    let data: serde_json::Value = serde_json::from_str(&ev[1].data).expect("json");
    assert!(data.get("explanation").is_none(), "{data}");
}
