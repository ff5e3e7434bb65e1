//! The backend-independent conformance cases and their helpers.
//!
//! Every case is an `async fn(&impl Harness)`. A harness opens the backend
//! under test; opening it again must give a store over the same data (for
//! SQLite: the same file), which the durability cases rely on.

pub(crate) mod durability;
pub(crate) mod ends;
pub(crate) mod lease;
pub(crate) mod memory;
pub(crate) mod misc;
pub(crate) mod retention;
pub(crate) mod routing;
pub(crate) mod submit;

use std::time::Duration;

use torch_core::{AgentId, Backoff, Evidence, Outcome, OutcomeKind, TaskId, TaskSpec, TaskState};
use torch_store::{EventRecord, Finish, Grant, Leased, NewTask, Store};

/// Invokes the macro `$m` with every conformance case (`module::case`), so
/// each backend's test file runs exactly the same list.
macro_rules! every_case {
    ($m:ident) => {
        $m!(
            submit::queued_and_blocked,
            submit::idempotent,
            submit::all_or_nothing,
            lease::assign_refuses_non_queued,
            lease::concurrent_claims,
            lease::start_and_progress,
            ends::success_releases_diamond,
            ends::stale_and_duplicate,
            ends::failures_retry_then_dead,
            ends::expire_lease,
            ends::cancel_running,
            ends::retry_dead,
            misc::events_filter_and_order,
            misc::list_filters,
            misc::list_leased_states,
            misc::tokens_and_meta,
            routing::routing_round_trips,
            routing::plain_task_keeps_tenant,
            routing::failed_agents_accumulate,
            routing::explanation_stored,
            durability::reopen_keeps_everything,
            durability::fences_increase_across_reopen,
            memory::memory_put_get_list_and_limits,
            memory::memory_inherit_copies_and_audits,
            memory::parent_links_children,
            retention::purge_finished_tasks,
        );
    };
}
pub(crate) use every_case;

/// Opens the store under test.
pub(crate) trait Harness {
    /// The backend.
    type S: Store;
    /// A store over this harness's data; a second call after dropping the
    /// first sees everything the first acknowledged.
    fn open(&self) -> Self::S;
}

/// The time every case starts at (unix ms).
pub(crate) const NOW: u64 = 1_700_000_000_000;

pub(crate) fn tid(n: u64) -> TaskId {
    format!("00000000-0000-7000-8000-{n:012x}")
        .parse()
        .expect("valid uuid")
}

pub(crate) fn aid(n: u64) -> AgentId {
    format!("00000000-0000-7000-9000-{n:012x}")
        .parse()
        .expect("valid uuid")
}

/// Task `t<n>` running `true`, depending on tasks `deps`.
pub(crate) fn task(n: u64, deps: &[u64]) -> NewTask {
    NewTask {
        id: tid(n),
        name: format!("t{n}"),
        spec: TaskSpec {
            name: Some(format!("t{n}")),
            command: Some(vec!["true".into()]),
            ..TaskSpec::default()
        },
        deps: deps.iter().map(|d| tid(*d)).collect(),
        routing: None,
        analysis: None,
        parent: None,
    }
}

/// `task` with its spec adjusted.
pub(crate) fn task_with(n: u64, deps: &[u64], f: impl FnOnce(&mut TaskSpec)) -> NewTask {
    let mut t = task(n, deps);
    f(&mut t.spec);
    t
}

/// Backoff of 1s doubling, so retry times are easy to predict.
pub(crate) fn retries(max: u32) -> impl FnOnce(&mut TaskSpec) {
    move |s: &mut TaskSpec| {
        s.max_retries = Some(max);
        s.backoff = Some(Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
        });
    }
}

/// Leases task `n` to agent `agent`, which must succeed.
pub(crate) async fn lease<S: Store>(s: &S, n: u64, agent: u64, now: u64) -> Leased {
    let grant = Grant {
        task: tid(n),
        agent: aid(agent),
        expires_ms: now + 30_000,
        explanation: None,
    };
    let mut out = s.assign(vec![grant], now).await.expect("assign");
    out.pop()
        .expect("one result per grant")
        .expect("task is queued")
}

/// A report for `l` ending with `kind`.
pub(crate) fn report(l: &Leased, kind: OutcomeKind) -> Finish {
    let outcome = match kind {
        OutcomeKind::Succeeded => Outcome::succeeded(Evidence::default()),
        k => Outcome::failed(k, format!("it {}", k.as_str()), Evidence::default()),
    };
    Finish {
        task: l.task,
        fence: l.fence,
        agent: l.agent,
        outcome,
        logs: None,
    }
}

pub(crate) async fn state<S: Store>(s: &S, n: u64) -> TaskState {
    s.get_task(tid(n))
        .await
        .expect("get_task")
        .expect("task exists")
        .state
}

/// All events of `kind` about task `n`, oldest first.
pub(crate) async fn events_of<S: Store>(s: &S, kind: &str, n: u64) -> Vec<EventRecord> {
    s.events(0, Vec::new(), 10_000)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.kind == kind && e.task == Some(tid(n)))
        .collect()
}

/// Total number of stored tasks.
pub(crate) async fn total<S: Store>(s: &S) -> u64 {
    let page = s
        .list_tasks(torch_store::TaskFilter::default())
        .await
        .expect("list_tasks");
    page.counts.values().sum()
}
