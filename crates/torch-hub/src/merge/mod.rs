//! The merge queue's git engine: lands finished attempt branches on an
//! integration branch, checking for conflicts first with
//! `git merge-tree --write-tree`. A library for the team runtime: no HTTP,
//! no events.
//!
//! - `queue`: [`MergeQueue`] — one per hub; merges into one repository run
//!   one at a time in arrival order, different repositories in parallel.
//! - `repo`: where a repository's objects and refs are (the local path
//!   itself, or a bare mirror of a URL under the hub's data dir), and the
//!   merge itself (only object and ref writes; a working tree and its index
//!   are never touched).
//! - `git`: running git, typed errors ([`MergeError`]).

mod git;
mod queue;
mod repo;
#[cfg(test)]
mod tests;

pub(crate) use queue::{MergeOutcome, MergeQueue};
