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
