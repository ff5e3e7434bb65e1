//! Event streams, listing, tokens, metadata and agents.

use std::collections::BTreeMap;

use crate::{
    AGENTS_SCALING, AGENTS_SPAWNING, AGENTS_TERMINATING, AgentEvent, EventLog, MetaStore, NewEvent,
    TASKS_ACTIVE, TASKS_COMPLETED, TASKS_QUEUE, TaskFilter, TaskStore, TokenRecord, TokenStore,
};
use torch_core::{OutcomeKind, TaskState};

use super::*;

/// Events come back in order, filtered by stream names and prefixes.
pub async fn events_filter_and_order(h: &impl Harness) {
    let s = h.open();
    assert_eq!(s.last_event_id().await.expect("last"), 0);
    s.submit(vec![task(1, &[])], NOW).await.expect("submit");
    let joined = AgentEvent::Joined {
        id: aid(1),
        name: "a1".into(),
        skills: vec!["sh".parse().expect("skill")],
        slots: 2,
        labels: BTreeMap::new(),
    };
    s.agent_event(joined, NOW).await.expect("joined");
    let l = lease(&s, 1, 1, NOW).await;
    s.finish(vec![report(&l, OutcomeKind::Succeeded)], NOW)
        .await
        .expect("finish");
    // Appended as given: the store does not look inside the data.
    let decision = NewEvent {
        kind: EventKind::ScalingDecision,
        task: Some(tid(1)),
        agent: Some(aid(1)),
        data: r#"{"template":"x"}"#.into(),
    };
    s.append_event(decision, NOW + 1).await.expect("append");
    let left = AgentEvent::Left {
        id: aid(1),
        reason: "bye".into(),
    };
    s.agent_event(left, NOW + 2).await.expect("left");

    let all = s.events(0, vec![], 0).await.expect("events");
    let kinds: Vec<_> = all
        .iter()
        .map(|e| (e.stream.as_str(), e.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (TASKS_QUEUE, EventKind::TaskSubmitted.name()),
            (AGENTS_SPAWNING, EventKind::AgentJoined.name()),
            (TASKS_ACTIVE, EventKind::TaskAssigned.name()),
            (TASKS_COMPLETED, EventKind::TaskSucceeded.name()),
            (AGENTS_SCALING, EventKind::ScalingDecision.name()),
            (AGENTS_TERMINATING, EventKind::AgentLeft.name()),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
    assert_eq!(s.last_event_id().await.expect("last"), all[5].id);
    assert_eq!(
        (all[4].task, all[4].agent, all[4].at_ms),
        (Some(tid(1)), Some(aid(1)), NOW + 1)
    );
    assert_eq!(all[4].data, r#"{"template":"x"}"#);

    let only = |streams: &[&str]| {
        let streams = streams.iter().map(|s| s.to_string()).collect();
        let s = &s;
        async move {
            s.events(0, streams, 0)
                .await
                .expect("events")
                .into_iter()
                .map(|e| e.kind)
                .collect::<Vec<_>>()
        }
    };
    let names = |kinds: &[EventKind]| kinds.iter().map(|k| k.name()).collect::<Vec<_>>();
    use EventKind::*;
    assert_eq!(only(&[TASKS_QUEUE]).await, names(&[TaskSubmitted]));
    assert_eq!(
        only(&["nova.torch.tasks."]).await,
        names(&[TaskSubmitted, TaskAssigned, TaskSucceeded])
    );
    assert_eq!(
        only(&["nova.torch.agents.", TASKS_COMPLETED]).await,
        names(&[AgentJoined, TaskSucceeded, ScalingDecision, AgentLeft])
    );
    assert!(
        only(&["nova.torch.tasks"]).await.is_empty(),
        "no dot: exact name only"
    );

    // Paging with `after` and `limit` walks the same sequence.
    let mut cursor = 0;
    let mut paged = Vec::new();
    loop {
        let page = s.events(cursor, vec![], 2).await.expect("events");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        cursor = last.id;
        paged.extend(page);
    }
    assert_eq!(paged, all);

    // Many at once: appended in the order given, after the others.
    let batch = (0..3)
        .map(|i| NewEvent {
            kind: EventKind::ScalingDecision,
            task: None,
            agent: Some(aid(1)),
            data: format!(r#"{{"n":{i}}}"#),
        })
        .collect();
    s.append_events(batch, NOW + 3).await.expect("append many");
    let more = s.events(all[5].id, vec![], 0).await.expect("events");
    let got: Vec<_> = more.iter().map(|e| (e.data.as_str(), e.at_ms)).collect();
    assert_eq!(
        got,
        [
            (r#"{"n":0}"#, NOW + 3),
            (r#"{"n":1}"#, NOW + 3),
            (r#"{"n":2}"#, NOW + 3)
        ]
    );
}

/// Listing filters by state, label, parent and page, newest first, with counts per state.
pub async fn list_filters(h: &impl Harness) {
    let s = h.open();
    let labelled = |n: u64, team: &str| {
        let team = team.to_string();
        task_with(n, &[], move |sp| {
            sp.labels.insert("team".into(), team);
        })
    };
    let batch = vec![
        labelled(1, "a"),
        labelled(2, "b"),
        labelled(3, "a"),
        task(4, &[1]),
        labelled(5, "a"),
    ];
    s.submit(batch, NOW).await.expect("submit");
    let list = |f: TaskFilter| {
        let s = &s;
        async move {
            let page = s.list_tasks(f).await.expect("list");
            (
                page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
                page.counts,
            )
        }
    };
    let (all, counts) = list(TaskFilter::default()).await;
    assert_eq!(
        all,
        [tid(5), tid(4), tid(3), tid(2), tid(1)],
        "newest first"
    );
    assert_eq!(
        (counts[&TaskState::Queued], counts[&TaskState::Blocked]),
        (4, 1)
    );
    let (team_a, counts_a) = list(TaskFilter {
        label: Some(("team".into(), "a".into())),
        ..TaskFilter::default()
    })
    .await;
    assert_eq!(team_a, [tid(5), tid(3), tid(1)]);
    assert_eq!(counts_a, counts, "counts are over all tasks");
    let (blocked, _) = list(TaskFilter {
        states: vec![TaskState::Blocked, TaskState::Running],
        ..TaskFilter::default()
    })
    .await;
    assert_eq!(blocked, [tid(4)]);
    let first = s
        .list_tasks(TaskFilter {
            limit: 2,
            ..TaskFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        first.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        [tid(5), tid(4)]
    );
    let (next, _) = list(TaskFilter {
        limit: 2,
        before_seq: Some(first.tasks[1].seq),
        ..TaskFilter::default()
    })
    .await;
    assert_eq!(next, [tid(3), tid(2)]);
    assert_eq!(
        first.tasks[1].deps,
        vec![tid(1)],
        "listed tasks carry their deps"
    );
}

/// Listing and counting assigned and running tasks apart, through every
/// way in and out of both states (start, progress, finish, expire, cancel).
pub async fn list_leased_states(h: &impl Harness) {
    let s = h.open();
    let batch = (1..=8).map(|n| task_with(n, &[], retries(3))).collect();
    s.submit(batch, NOW).await.expect("submit");
    let mut leased = Vec::new();
    for n in 1..=7 {
        leased.push(lease(&s, n, 1, NOW).await);
    }
    let held = |ns: &[usize]| {
        ns.iter()
            .map(|&n| (tid(n as u64), leased[n - 1].fence))
            .collect()
    };
    s.start(held(&[2, 4, 6]), NOW).await.expect("start");
    s.progress(tid(7), leased[6].fence, 50.0, None, NOW)
        .await
        .expect("progress");
    let list = |states: Vec<TaskState>, limit: usize, before: Option<u64>| {
        let s = &s;
        async move {
            let page = s
                .list_tasks(TaskFilter {
                    states,
                    limit,
                    before_seq: before,
                    ..TaskFilter::default()
                })
                .await
                .expect("list");
            (
                page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
                page.counts,
            )
        }
    };
    let ids = |ns: &[u64]| ns.iter().map(|&n| tid(n)).collect::<Vec<_>>();
    let (assigned, counts) = list(vec![TaskState::Assigned], 0, None).await;
    assert_eq!(assigned, ids(&[5, 3, 1]));
    assert_eq!(
        (counts[&TaskState::Assigned], counts[&TaskState::Running]),
        (3, 4)
    );
    let (running, _) = list(vec![TaskState::Running], 0, None).await;
    assert_eq!(running, ids(&[7, 6, 4, 2]));
    let (page, _) = list(vec![TaskState::Running], 2, Some(6)).await;
    assert_eq!(page, ids(&[4, 2]), "paged by seq");
    let (both, _) = list(vec![TaskState::Assigned, TaskState::Running], 3, None).await;
    assert_eq!(both, ids(&[7, 6, 5]));
    let (mixed, _) = list(vec![TaskState::Queued, TaskState::Running], 0, None).await;
    assert_eq!(mixed, ids(&[8, 7, 6, 4, 2]));
    let (all, _) = list(Vec::new(), 0, None).await;
    assert_eq!(all, ids(&[8, 7, 6, 5, 4, 3, 2, 1]));

    // Out of running: success, retry, expiry, cancel; out of assigned: success.
    let l = |n: usize| &leased[n - 1];
    let ends = vec![
        report(l(2), OutcomeKind::Succeeded),
        report(l(4), OutcomeKind::Failed),
        report(l(1), OutcomeKind::Succeeded),
    ];
    s.finish(ends, NOW).await.expect("finish");
    s.expire(tid(6), l(6).fence, "lost".into(), NOW)
        .await
        .expect("expire");
    s.cancel(tid(7), "no".into(), NOW).await.expect("cancel");
    let (running, counts) = list(vec![TaskState::Running], 0, None).await;
    assert!(running.is_empty(), "{running:?}");
    let (assigned, _) = list(vec![TaskState::Assigned], 0, None).await;
    assert_eq!(assigned, ids(&[5, 3]));
    assert_eq!(
        (
            counts[&TaskState::Assigned],
            counts[&TaskState::Running],
            counts[&TaskState::Queued],
            counts[&TaskState::Succeeded],
            counts[&TaskState::Cancelled],
        ),
        (2, 0, 3, 2, 1)
    );
    let snapshot = s.load().await.expect("load");
    let mut held: Vec<_> = snapshot.leased.iter().map(|l| l.task).collect();
    held.sort();
    assert_eq!(held, ids(&[3, 5]));
    assert_eq!(snapshot.backlog, 5);
}

/// Tokens are found by hash and counted by role; metadata is set once.
pub async fn tokens_and_meta(h: &impl Harness) {
    let s = h.open();
    assert_eq!(s.count_tokens("admin".into()).await.expect("count"), 0);
    let tok = |hash: &str, role: &str| TokenRecord {
        hash: hash.into(),
        role: role.into(),
        name: format!("{role} token"),
        created_ms: NOW,
        ..TokenRecord::default()
    };
    s.put_token(tok("h1", "admin")).await.expect("put");
    s.put_token(tok("h2", "agent")).await.expect("put");
    s.put_token(tok("h3", "agent")).await.expect("put");
    assert_eq!(s.count_tokens("admin".into()).await.expect("count"), 1);
    assert_eq!(s.count_tokens("agent".into()).await.expect("count"), 2);
    assert_eq!(
        s.find_token("h2".into()).await.expect("find"),
        Some(tok("h2", "agent"))
    );
    assert_eq!(s.find_token("nope".into()).await.expect("find"), None);

    assert_eq!(s.get_meta("secret".into()).await.expect("get"), None);
    let v = s
        .init_meta("secret".into(), "one".into())
        .await
        .expect("init");
    assert_eq!(v, "one");
    let v = s
        .init_meta("secret".into(), "two".into())
        .await
        .expect("init");
    assert_eq!(v, "one", "init_meta keeps the first value");
    assert_eq!(
        s.get_meta("secret".into()).await.expect("get").as_deref(),
        Some("one")
    );
}
