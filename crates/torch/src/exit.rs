//! Exit codes (DESIGN.md): 0 ok, 1 error, 2 bad input or usage,
//! 3 task failed (`--wait`), 4 hub unreachable, 5 a wait timed out,
//! 6 deadlock (the wait would close a cycle of waits).

use std::fmt;

/// An error that carries the process exit code.
#[derive(Debug)]
pub(crate) struct Exit {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Generic failure.
pub(crate) const ERROR: u8 = 1;
/// Bad input or usage.
pub(crate) const BAD_INPUT: u8 = 2;
/// A waited-for task failed.
pub(crate) const TASK_FAILED: u8 = 3;
/// The hub could not be reached.
pub(crate) const UNREACHABLE: u8 = 4;
/// A wait (lock, task, help) ran out of time.
pub(crate) const WAIT_TIMEOUT: u8 = 5;
/// The wait was refused: it would have closed a cycle of waits.
pub(crate) const DEADLOCK: u8 = 6;

/// Builds an error with an exit code.
pub(crate) fn exit(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code,
        message: message.into(),
    })
}
