//! Nova Torch domain model: what a task is, how it moves through its states,
//! and how ready tasks are placed on agents.
//!
//! This crate is pure: no I/O, no async runtime, and it never reads the clock.
//! Every function that depends on time takes `now` (unix milliseconds) from the
//! caller, so the hub, the store and the tests all drive it the same way.
//!
//! # Layout
//! - [`alerts`]: alert rules, their defaults and the firing/resolving state machine.
//! - [`capacity`]: pool sizing from arrival and service rates (Erlang C).
//! - [`ids`]: `TaskId` and `AgentId` newtypes.
//! - [`events`]: the event protocol: every event kind with its stream and
//!   its data, and the stream names.
//! - [`skill`]: skills, proficiency levels and the requirement check.
//! - [`spec`]: the user-facing `TaskSpec` and its parsing from TOML and JSON.
//! - [`validate`]: batch validation (names, dependencies, cycles) with located errors.
//! - [`state`]: the task state machine and retry/backoff arithmetic.
//! - [`lease`]: the lease state machine and the slot accounting it owns.
//! - [`outcome`]: what an agent reports when a run ends (with retry meaning).
//! - [`scheduler`]: the pure placement engine (priority, tenant fairness, FIFO,
//!   hard filters, scoring policies, batch assignment, explanations).
//! - [`team`]: team specs and forming a team at least cost.
//! - [`sandbox`]: task sandbox settings, the machine probe and the
//!   isolation each attempt got.
//! - [`locks`]: named locks and path reservations with fences (the pure lock table).
//! - [`waits`]: the one wait-for graph over every kind of wait, and deadlock detection.
//! - [`routing`]: task analysis, the skill taxonomy, multi-factor scoring,
//!   circuit breakers and the routing simulation.

pub mod alerts;
pub mod budget;
pub mod capacity;
pub mod events;
pub mod ids;
pub mod lease;
pub mod lifecycle;
pub mod liveness;
pub mod locks;
pub mod outcome;
pub mod routing;
pub mod sandbox;
pub mod scheduler;
pub mod schema;
pub mod skill;
pub mod spec;
pub mod state;
pub mod team;
pub mod validate;
pub mod waits;

pub use events::{EventData, EventKind};
pub use ids::{AgentId, TaskId};
pub use liveness::{Activity, Liveness, Waiting};
pub use outcome::{CliError, CriterionResult, Evidence, Outcome, OutcomeKind, Usage};
pub use skill::{Skill, SkillReq};
pub use spec::{Backoff, SpecFormat, SuccessCriteria, TaskContext, TaskSpec};
pub use state::TaskState;
pub use validate::{SpecError, SpecErrors, ValidTask};
