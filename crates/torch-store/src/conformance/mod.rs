//! The conformance suite (feature `conformance`): the cases every backend
//! must pass, written against the capability traits, and their helpers.
//!
//! Every case is an `async fn(&impl Harness)`. A harness opens the backend
//! under test; opening it again must give a store over the same data (for
//! SQLite: the same file), which the durability cases rely on.
//!
//! A backend's test crate implements [`Harness`] and turns every case into
//! a test with [`every_case!`], so all backends run exactly the same list:
//!
//! ```no_run
//! use torch_store::conformance::{Harness, every_case};
//! use torch_store::sqlite::{SqliteOptions, SqliteStore};
//!
//! /// A store in its own file.
//! struct Sqlite(std::path::PathBuf);
//!
//! impl Harness for Sqlite {
//!     type S = SqliteStore;
//!     fn open(&self) -> SqliteStore {
//!         SqliteStore::open(&self.0, SqliteOptions::default()).expect("open")
//!     }
//! }
//!
//! macro_rules! conformance {
//!     ($($module:ident :: $case:ident),* $(,)?) => {$(
//!         #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//!         async fn $case() {
//!             let dir = std::env::temp_dir().join(stringify!($case));
//!             let h = Sqlite(dir.join("torch.db"));
//!             torch_store::conformance::$module::$case(&h).await;
//!         }
//!     )*};
//! }
//!
//! every_case!(conformance);
//! # fn main() {}
//! ```
//!
//! The cases panic on the first broken expectation, as tests do.

pub mod audit;
pub mod coord;
pub mod durability;
pub mod ends;
pub mod events;
pub mod lease;
pub mod memory;
pub mod misc;
pub mod relay;
pub mod retention;
pub mod routing;
pub mod submit;
pub mod tokens;

use std::time::Duration;

use torch_core::{
    AgentId, Backoff, EventKind, Evidence, Outcome, OutcomeKind, TaskId, TaskSpec, TaskState,
};

use crate::{EventRecord, Finish, Grant, Leased, NewTask, Store};

/// Invokes the macro `$m` with every conformance case (`module::case`, a
/// module of [`conformance`](crate::conformance)), so each backend's test
/// file runs exactly the same list.
#[macro_export]
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
            events::every_kind_reads_as_declared,
            misc::list_filters,
            misc::list_leased_states,
            misc::tokens_and_meta,
            tokens::token_lifecycle,
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
            coord::locks_fenced_and_durable,
            coord::help_first_accept_wins,
            coord::help_concurrent_accepts,
            relay::relay_keeps_orders_and_expires,
            audit::audit_chain_and_checkpoints,
            audit::audit_concurrent_appends,
        );
    };
}
pub use crate::every_case;

/// Opens the store under test.
pub trait Harness {
    /// The backend.
    type S: Store;
    /// A store over this harness's data; a second call after dropping the
    /// first sees everything the first acknowledged.
    fn open(&self) -> Self::S;
}

/// The time every case starts at (unix ms).
pub const NOW: u64 = 1_700_000_000_000;

/// Task id number `n` (the same on every run).
pub fn tid(n: u64) -> TaskId {
    format!("00000000-0000-7000-8000-{n:012x}")
        .parse()
        .expect("valid uuid")
}

/// Agent id number `n` (the same on every run).
pub fn aid(n: u64) -> AgentId {
    format!("00000000-0000-7000-9000-{n:012x}")
        .parse()
        .expect("valid uuid")
}

/// Task `t<n>` running `true`, depending on tasks `deps`.
pub fn task(n: u64, deps: &[u64]) -> NewTask {
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
pub fn task_with(n: u64, deps: &[u64], f: impl FnOnce(&mut TaskSpec)) -> NewTask {
    let mut t = task(n, deps);
    f(&mut t.spec);
    t
}

/// Backoff of 1s doubling, so retry times are easy to predict.
pub fn retries(max: u32) -> impl FnOnce(&mut TaskSpec) {
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
pub async fn lease<S: Store>(s: &S, n: u64, agent: u64, now: u64) -> Leased {
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
pub fn report(l: &Leased, kind: OutcomeKind) -> Finish {
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

/// The state of task `n`, which must exist.
pub async fn state<S: Store>(s: &S, n: u64) -> TaskState {
    s.get_task(tid(n))
        .await
        .expect("get_task")
        .expect("task exists")
        .state
}

/// All events of `kind` about task `n`, oldest first.
pub async fn events_of<S: Store>(s: &S, kind: EventKind, n: u64) -> Vec<EventRecord> {
    s.events(0, Vec::new(), 10_000)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.kind == kind.name() && e.task == Some(tid(n)))
        .collect()
}

/// Total number of stored tasks.
pub async fn total<S: Store>(s: &S) -> u64 {
    let page = s
        .list_tasks(crate::TaskFilter::default())
        .await
        .expect("list_tasks");
    page.counts.values().sum()
}
