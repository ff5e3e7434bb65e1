//! Arguments of `torch audit`.

use std::path::PathBuf;

use clap::Subcommand;

use crate::cli::{HubArgs, OutArgs};

/// `torch audit list | verify | checkpoint`.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCmd {
    /// List audit entries, oldest first: who did what to what, allowed or
    /// refused and why (admin).
    List {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// Entries whose actor is or starts with this (`token:<id>`,
        /// `task:<id>`, `agent:<id>`, `hub`, `anonymous`).
        #[arg(long)]
        actor: Option<String>,
        /// Entries whose action is or starts with this (`task.submit`,
        /// `token.`, `api.get`).
        #[arg(long)]
        action: Option<String>,
        /// Entries from this time on: a duration ago (`1h`), an RFC 3339
        /// time, or unix milliseconds.
        #[arg(long)]
        since: Option<String>,
        /// Entries shown at most.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Walk the hash chain and report the first entry where a modification,
    /// deletion, insertion or reordering shows; with --checkpoint, also
    /// truncation against an exported checkpoint. Exits 1 when the log
    /// does not verify.
    Verify {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
        /// An exported checkpoint (`torch audit checkpoint --json`).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Verify offline: the SQLite file (or the data dir holding
        /// `torch.db`) instead of asking a hub.
        #[arg(long)]
        store: Option<PathBuf>,
    },
    /// Print the latest signed checkpoint (size, head hash, time, public
    /// key, signature), to keep somewhere else.
    Checkpoint {
        #[command(flatten)]
        hub: HubArgs,
        #[command(flatten)]
        out: OutArgs,
    },
}
