//! Many hubs on one Redis, run as their own test binary so the heavy chaos
//! run (50 agents, 10,000 task processes) has the machine to itself: cargo
//! runs test binaries one after another. Each test starts its own
//! `redis-server` on a free port (never the shared 6379); without
//! `redis-server` they skip, except under CI where they fail.

// Tests report figures (failover time, chaos counts) on stderr.
#![allow(clippy::print_stderr)]

// The shared end-to-end harness; this binary uses only part of it.
mod handoff;
#[allow(dead_code)]
#[path = "../e2e/harness.rs"]
mod harness;
mod maxmemory;
mod multihub;

/// The machine, shared by the tests of this binary (which cargo runs in
/// parallel) except the chaos run, which has it to itself: it is about
/// durability under faults, and the other tests' load (more hubs, Redis
/// servers and agents on 2 cores) only makes its timing noisy.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held by a test that can share the machine.
pub(crate) fn machine_shared() -> std::sync::RwLockReadGuard<'static, ()> {
    MACHINE
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Held by the test that needs the machine to itself.
pub(crate) fn machine_to_itself() -> std::sync::RwLockWriteGuard<'static, ()> {
    MACHINE
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
