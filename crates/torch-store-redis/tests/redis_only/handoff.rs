//! Hand-offs: a follower's submission is recorded for the leader with the
//! tasks; the leader reads it through the `leader` consumer group, and a
//! new leader claims what a dead one received but never acknowledged.

use std::time::Duration;

use torch_core::{EventData, EventKind, TaskState};
use torch_store::{EventLog, HUBS_HANDOFF, SharedStore, TASKS_QUEUE, TaskStore};

use crate::Redis;
use torch_store::conformance::{NOW, task, tid};

const WAIT: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followers_submission_reaches_the_leader_and_survives_its_death() {
    let Some(h) = Redis::start(&[]) else { return };
    let follower = h.store().await;
    let leader_a = h.store().await;
    let leader_b = h.store().await;

    // An ordinary submission is no hand-off.
    leader_a
        .submit(vec![task(1, &[])], NOW)
        .await
        .expect("submit");
    // A follower's: task 3 depends on 2, so it is blocked.
    let subs = follower
        .submit_handoff(vec![task(2, &[]), task(3, &[2])], NOW, "f#1".into())
        .await
        .expect("submit with a hand-off");
    assert_eq!(
        subs.iter().map(|s| s.state).collect::<Vec<_>>(),
        [TaskState::Queued, TaskState::Blocked]
    );
    // The tasks are ordinary tasks, with their usual queue events.
    let queue = follower
        .events(0, vec![TASKS_QUEUE.into()], 0)
        .await
        .expect("events");
    assert_eq!(queue.len(), 3, "{queue:?}");

    // Leader A receives the one hand-off, naming the follower and both
    // new tasks, and dies before acknowledging it.
    let got = leader_a
        .handoffs("a#1".into(), true, WAIT)
        .await
        .expect("read hand-offs");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].hub, "f#1");
    assert_eq!(got[0].tasks, [tid(2), tid(3)]);
    let events = follower
        .events(0, vec![HUBS_HANDOFF.into()], 0)
        .await
        .expect("hand-off events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, got[0].id, "a hand-off's id is its event id");
    assert_eq!(events[0].kind, EventKind::TasksHandedOff.name());
    let data: serde_json::Value = serde_json::from_str(&events[0].data).expect("JSON data");
    assert!(
        EventData::read(EventKind::TasksHandedOff, &data).is_some(),
        "the data is the declared payload: {data}"
    );
    assert!(
        leader_a
            .handoffs("a#1".into(), false, WAIT)
            .await
            .expect("read again")
            .is_empty(),
        "delivered once"
    );
    drop(leader_a);

    // Leader B takes over: without reclaiming it sees nothing new; with,
    // it gets the same hand-off, and after acknowledging it nothing.
    assert!(
        leader_b
            .handoffs("b#1".into(), false, WAIT)
            .await
            .expect("read")
            .is_empty()
    );
    let claimed = leader_b
        .handoffs("b#1".into(), true, WAIT)
        .await
        .expect("reclaim");
    assert_eq!(claimed, got, "the dead leader's hand-off, claimed");
    leader_b
        .ack_handoffs("b#1".into(), vec![claimed[0].id])
        .await
        .expect("ack");
    assert!(
        leader_b
            .handoffs("b#1".into(), true, WAIT)
            .await
            .expect("read")
            .is_empty(),
        "nothing left once acknowledged"
    );

    // The dead leader's consumer is gone from the group once it held nothing.
    let mut c = h
        .store()
        .await
        .consumer(
            "leader",
            "probe",
            &[HUBS_HANDOFF],
            torch_store_redis::StartFrom::New,
        )
        .await
        .expect("probe consumer");
    assert_eq!(c.pending().await.expect("pending"), 0);

    // A duplicate (idempotency key already stored) is not handed off again.
    let mut again = task(4, &[]);
    again.spec.idempotency_key = Some("k".into());
    follower
        .submit_handoff(vec![again.clone()], NOW, "f#1".into())
        .await
        .expect("first");
    let mut dup = again;
    dup.id = tid(5);
    let res = follower
        .submit_handoff(vec![dup], NOW, "f#1".into())
        .await
        .expect("duplicate");
    assert!(res[0].duplicate);
    let got = leader_b
        .handoffs("b#1".into(), false, WAIT)
        .await
        .expect("read");
    assert_eq!(got.len(), 1, "only the first wrote anything: {got:?}");
    assert_eq!(got[0].tasks, [tid(4)]);

    // Many tasks at once read back in order.
    let all = follower
        .get_tasks(vec![tid(3), tid(99), tid(1)])
        .await
        .expect("get tasks");
    assert_eq!(
        all.iter().map(|t| t.id).collect::<Vec<_>>(),
        [tid(3), tid(1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_needs_a_hub_id() {
    let Some(h) = Redis::start(&[]) else { return };
    let s = h.store().await;
    let err = s
        .submit_handoff(vec![task(1, &[])], NOW, String::new())
        .await
        .expect_err("no hub id");
    assert!(err.to_string().contains("hub"), "{err}");
    assert!(
        s.get_task(tid(1)).await.expect("read").is_none(),
        "nothing written"
    );
}
