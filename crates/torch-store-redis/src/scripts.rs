//! The Lua scripts, loaded once per process and sent by SHA (`EVALSHA`,
//! falling back to loading them after a Redis restart emptied its script
//! cache).
//!
//! Every writing script is `common.lua` (the shebang line, argument
//! conventions and shared helpers) followed by its own file, wrapped in a
//! function so that the counters it bumped are written back (`flush`) on
//! every way out.

use std::sync::LazyLock;

use redis::Script;

macro_rules! writing {
    ($file:literal) => {
        concat!(
            include_str!("scripts/common.lua"),
            "local function body()\n",
            include_str!($file),
            "\nend\nlocal result = body()\nflush()\nreturn result\n"
        )
    };
}

/// All scripts.
pub(crate) struct Scripts {
    pub(crate) submit: Script,
    pub(crate) assign: Script,
    pub(crate) start: Script,
    pub(crate) progress: Script,
    pub(crate) finish: Script,
    pub(crate) cancel: Script,
    pub(crate) retry: Script,
    pub(crate) event: Script,
    pub(crate) small: Script,
    pub(crate) memory: Script,
    pub(crate) locks: Script,
    pub(crate) help: Script,
    pub(crate) relay: Script,
    pub(crate) audit: Script,
    pub(crate) purge: Script,
    pub(crate) read: Script,
    pub(crate) leader: Script,
}

/// The scripts (hashed once).
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    submit: Script::new(writing!("scripts/submit.lua")),
    assign: Script::new(writing!("scripts/assign.lua")),
    start: Script::new(writing!("scripts/start.lua")),
    progress: Script::new(writing!("scripts/progress.lua")),
    finish: Script::new(writing!("scripts/finish.lua")),
    cancel: Script::new(writing!("scripts/cancel.lua")),
    retry: Script::new(writing!("scripts/retry.lua")),
    event: Script::new(writing!("scripts/event.lua")),
    small: Script::new(writing!("scripts/small.lua")),
    memory: Script::new(writing!("scripts/memory.lua")),
    locks: Script::new(writing!("scripts/locks.lua")),
    help: Script::new(writing!("scripts/help.lua")),
    relay: Script::new(writing!("scripts/relay.lua")),
    audit: Script::new(writing!("scripts/audit.lua")),
    purge: Script::new(writing!("scripts/purge.lua")),
    read: Script::new(include_str!("scripts/read.lua")),
    leader: Script::new(include_str!("scripts/leader.lua")),
});

#[cfg(test)]
mod tests;

/// The script sources, for loading them up front.
pub(crate) fn sources() -> [&'static str; 17] {
    [
        writing!("scripts/submit.lua"),
        writing!("scripts/assign.lua"),
        writing!("scripts/start.lua"),
        writing!("scripts/progress.lua"),
        writing!("scripts/finish.lua"),
        writing!("scripts/cancel.lua"),
        writing!("scripts/retry.lua"),
        writing!("scripts/event.lua"),
        writing!("scripts/small.lua"),
        writing!("scripts/memory.lua"),
        writing!("scripts/locks.lua"),
        writing!("scripts/help.lua"),
        writing!("scripts/relay.lua"),
        writing!("scripts/audit.lua"),
        writing!("scripts/purge.lua"),
        include_str!("scripts/read.lua"),
        include_str!("scripts/leader.lua"),
    ]
}
