//! The event protocol: every kind of event, the stream it is written on and
//! the data it carries, declared once.
//!
//! Every state change is an event on one of the seed's streams
//! ([`streams`]). [`EventKind`] lists the kinds with their name and stream;
//! [`EventData`] pairs each kind with its payload type ([`payload`]), so a
//! writer that builds an [`EventData`] cannot put a kind on the wrong stream
//! or give it another kind's data. Both come from one table in `kind.rs`.
//!
//! Who writes what: the store writes the task events and the agent session
//! events (SQLite in Rust, Redis in Lua); the hub writes the lifecycle,
//! scaling, stall and stale-report events through [`EventData`]. The store's
//! conformance suite checks that what each backend writes reads back as the
//! declared payload, and `torch-store-redis` checks the kinds and streams
//! named in its Lua scripts against [`EventKind`].
//!
//! Readers get kinds as strings: a newer hub may write a kind an older
//! reader does not know, so [`EventKind`] parses a read kind, it does not
//! replace it.

pub mod coord;
mod kind;
pub mod payload;
pub mod streams;
pub mod team;
#[cfg(test)]
mod tests;

pub use kind::{EventData, EventKind, UnknownEventKind};
