//! Running git for the merge queue, and its errors.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use tokio::process::Command;

/// Author and committer of the queue's merge commits.
const COMMITTER_NAME: &str = "Nova Torch hub";
const COMMITTER_EMAIL: &str = "hub@torch.invalid";
/// Environment variables that would point git somewhere else.
const GIT_LOCATION_VARS: [&str; 6] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_NAMESPACE",
];

/// Why a merge (or making the integration branch) did not happen. Every
/// variant names the repository as the task's `context.repository` says it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MergeError {
    /// The branch is not in the repository (nor, for a URL, at the remote).
    #[error("repository {repo}: no branch {branch}")]
    NoBranch {
        /// The repository.
        repo: String,
        /// The missing branch.
        branch: String,
    },
    /// The base `ensure_branch` was asked to start from does not exist.
    #[error("repository {repo}: unknown base {base:?} for branch {branch}: {stderr}")]
    UnknownBase {
        /// The repository.
        repo: String,
        /// The branch that was to be made.
        branch: String,
        /// The base asked for.
        base: String,
        /// What git said.
        stderr: String,
    },
    /// A git command failed.
    #[error("repository {repo}: `git {command}` failed for branch {branch}: {stderr}")]
    Git {
        /// The repository.
        repo: String,
        /// The branch being merged (or made).
        branch: String,
        /// The git subcommand and its first arguments.
        command: String,
        /// What git wrote to stderr, trimmed.
        stderr: String,
    },
    /// git could not be started.
    #[error("repository {repo}: cannot run git")]
    NoGit {
        /// The repository.
        repo: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The integration branch kept moving under the queue (other writers).
    #[error(
        "repository {repo}: {into} kept moving while merging {branch}; gave up after {tries} tries"
    )]
    Contended {
        /// The repository.
        repo: String,
        /// The branch being merged.
        branch: String,
        /// The integration branch.
        into: String,
        /// How many times the merge was tried.
        tries: u32,
    },
    /// The mirror of a URL repository could not be made.
    #[error("repository {repo}: cannot create the mirror dir {path}")]
    Mirror {
        /// The repository.
        repo: String,
        /// The mirror's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Runs git in one git dir, naming the repository and branch in errors.
pub(super) struct Git<'a> {
    /// The repository as the caller names it.
    pub(super) repo: &'a str,
    /// The git dir (or working tree) commands run in.
    pub(super) dir: &'a Path,
    /// The branch the operation is about, for messages.
    pub(super) branch: &'a str,
}

impl Git<'_> {
    /// Runs `git args`; the raw output whatever the exit status.
    pub(super) async fn output(&self, args: &[&str]) -> Result<Output, MergeError> {
        let mut cmd = Command::new("git");
        cmd.arg("-C")
            .arg(self.dir)
            .args(["-c", &format!("user.name={COMMITTER_NAME}")])
            .args(["-c", &format!("user.email={COMMITTER_EMAIL}")])
            .args(args);
        for var in GIT_LOCATION_VARS {
            cmd.env_remove(var);
        }
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd.output().await.map_err(|source| MergeError::NoGit {
            repo: self.repo.to_string(),
            source,
        })
    }

    /// Runs `git args`; its trimmed stdout, or [`MergeError::Git`].
    pub(super) async fn run(&self, args: &[&str]) -> Result<String, MergeError> {
        let out = self.output(args).await?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        Err(self.failed(args, &out))
    }

    /// The commit `rev` names, or `None` if it names none.
    pub(super) async fn commit_of(&self, rev: &str) -> Result<Option<String>, MergeError> {
        let spec = format!("{rev}^{{commit}}");
        let out = self
            .output(&["rev-parse", "--verify", "--quiet", &spec])
            .await?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()))
    }

    /// The error for a failed command.
    pub(super) fn failed(&self, args: &[&str], out: &Output) -> MergeError {
        MergeError::Git {
            repo: self.repo.to_string(),
            branch: self.branch.to_string(),
            command: args.iter().take(3).copied().collect::<Vec<_>>().join(" "),
            stderr: stderr(out),
        }
    }
}

/// git's stderr, trimmed.
pub(super) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}
