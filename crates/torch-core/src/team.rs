//! Teams for complex tasks: the team spec a task may carry, and forming a
//! team from candidates — connected agents and templates that could be
//! spawned — at the least total cost.
//!
//! # Formation
//! Each role asks for `count` members that cover its skills at the required
//! levels. A candidate member costs, for a role:
//!
//! ```text
//! cost(c, r) = w_cost·(c.cost / max cost) + w_history·(1 − c.success)
//!            + w_overlap·overlap(c, r) + (c is a template ? w_spawn : 0)
//! overlap(c, r) = share of the skills the *other* roles require that c also has
//! ```
//!
//! The overlap term is what makes members complementary: a candidate whose
//! skills duplicate what other roles bring costs more in this role. Because
//! every term depends on one (candidate, role) pair, the cheapest team is a
//! min-cost assignment of role slots to candidates, which [`form`] solves
//! exactly at every size (a min-cost flow, the same solver as the router's
//! batch assignment): there is no greedy step and so no approximation bound
//! to document — the result equals a brute-force optimum, which the property
//! tests check on instances of up to 12 candidates.
//!
//! A role no candidate covers is named with the reason (the best level on
//! offer for each missing skill); roles that are coverable one by one but
//! compete for the same few candidates are named together.
//!
//! The leader is the member in the spec's `leader` role, else the member
//! with the best coordination and history (`0.5·coordination + 0.5·success`,
//! coordination being the member's level of a `coordination` skill, 0 when
//! it has none); the reason is recorded.

mod form;
#[cfg(test)]
mod proptests;
mod spec;
#[cfg(test)]
mod tests;

pub use form::{
    Candidate, CandidateId, Formation, FormationError, FormationWeights, Member, RoleOptions, form,
};
pub use spec::{RoleSpec, TeamSpec};
