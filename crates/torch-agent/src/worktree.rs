//! Each attempt of a task with `context.repository` works in its own git
//! checkout on its own branch, `torch/<task-id>/<attempt>`.
//!
//! - A local path (absolute; bare or not): `git worktree add` of the branch
//!   at the attempt's work dir, so the branch lives in that repository. At
//!   the end the worktree is removed with `git worktree remove --force`
//!   (the branch stays), so no stale worktree metadata piles up.
//! - Anything else is a URL: the work dir is a clone, the branch is created
//!   there and pushed back to `origin` at the end.
//!
//! After a successful command the runtime (not the sandboxed task) commits
//! whatever the task changed, as "Nova Torch agent", leaving out the files
//! the runtime itself keeps in the work dir ([`RUNTIME_FILES`]). A failed
//! attempt is cleaned up the same way without a commit; its branch stays,
//! at its base or at whatever the task committed itself.
//!
//! Every git command runs with the caller's `GIT_*` location variables
//! removed, without a terminal prompt and with stdin closed, so a bad URL or
//! missing credentials fail at once instead of hanging.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tracing::{debug, info, warn};

use torch_api::ws::{Assignment, Checkout};
use torch_core::{Outcome, OutcomeKind, TaskId};

/// Author and committer of the runtime's commits.
const AUTHOR_NAME: &str = "Nova Torch agent";
const AUTHOR_EMAIL: &str = "agent@torch.invalid";
/// Files the runtime writes into the work dir: never part of a commit.
pub(crate) const RUNTIME_FILES: [&str; 5] = [
    "stdout.log",
    "stderr.log",
    ".tmp",
    "task.json",
    "prompt.txt",
];
/// Tries of a git command that lost a race for one of the repository's
/// lock files to a concurrent attempt (`worktree add` writes refs).
const LOCK_TRIES: u32 = 5;
/// Pause before the first retry; doubled on each further one.
const LOCK_BACKOFF: Duration = Duration::from_millis(50);
/// Whether git failed because of another process's concurrent change: a
/// lock file it holds, or a worktree it is adding or removing (git reads
/// every worktree's metadata when it adds one).
fn busy(stderr: &str) -> bool {
    stderr.contains(".lock") || stderr.contains("/worktrees/")
}

/// The lock serialising this process's worktree additions and removals in
/// the repository whose common git dir is `git_dir` (concurrent ones race
/// on each other's half-written metadata; other processes are covered by
/// the retries of [`busy`] failures).
fn repo_lock(git_dir: &Path) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::OnceLock<
        std::sync::Mutex<
            std::collections::HashMap<PathBuf, std::sync::Arc<tokio::sync::Mutex<()>>>,
        >,
    > = std::sync::OnceLock::new();
    let map = LOCKS.get_or_init(Default::default);
    let mut map = map
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry(git_dir.to_path_buf()).or_default().clone()
}

/// Environment variables that would point git somewhere else.
const GIT_LOCATION_VARS: [&str; 6] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_NAMESPACE",
];

/// What a task in a checkout needs in its environment when its files are
/// confined (`files_layer` is Landlock): git must not read the agent's
/// `~/.gitconfig`, which the sandbox hides (git treats an unreadable one as
/// fatal). A `GIT_CONFIG_GLOBAL` in the spec's `env` wins.
pub(crate) fn confined_env(a: &Assignment, files_layer: &str) -> Option<(OsString, OsString)> {
    let needed = a.checkout.is_some()
        && files_layer.starts_with("landlock")
        && !a.env.contains_key("GIT_CONFIG_GLOBAL");
    needed.then(|| ("GIT_CONFIG_GLOBAL".into(), "/dev/null".into()))
}

/// Why an attempt's checkout could not be made, committed or pushed. Every
/// message names the repository and, for a git failure, git's own words.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorktreeError {
    /// git could not be started at all.
    #[error("repository {repo}: cannot run git: {error}")]
    NoGit {
        /// The repository as the spec names it.
        repo: String,
        /// Why git did not start.
        error: std::io::Error,
    },
    /// A git command failed.
    #[error("repository {repo}: `git {command}` failed: {stderr}")]
    Git {
        /// The repository as the spec names it.
        repo: String,
        /// The git arguments, shortened to the subcommand and its key words.
        command: String,
        /// What git wrote to stderr (trimmed).
        stderr: String,
    },
    /// The base branch or commit is not in the repository.
    #[error("repository {repo}: unknown base {base:?}: {stderr}")]
    UnknownBase {
        /// The repository as the spec names it.
        repo: String,
        /// The `context.branch` asked for (or `HEAD`).
        base: String,
        /// What git wrote to stderr (trimmed).
        stderr: String,
    },
}

/// Where the attempt's branch lives.
#[derive(Debug)]
enum Origin {
    /// A worktree of a local repository.
    Local {
        /// The repository's path.
        repo: PathBuf,
        /// Its common git dir (the `.git` dir, or the repository if bare),
        /// which the task needs to read for `git status` in its worktree.
        git_dir: PathBuf,
    },
    /// A clone whose `origin` is the URL.
    Clone,
}

/// One attempt's checkout at its work dir.
#[derive(Debug)]
pub(crate) struct Worktree {
    /// The repository as the spec names it, for messages.
    repository: String,
    origin: Origin,
    /// The attempt's work dir: the checkout.
    dir: PathBuf,
    /// `torch/<task-id>/<attempt>`.
    branch: String,
}

/// The branch of one attempt.
pub(crate) fn branch_name(task: TaskId, attempt: u32) -> String {
    format!("torch/{task}/{attempt}")
}

impl Worktree {
    /// Makes `dir` (absent or empty) a checkout of `c` on a new branch
    /// [`branch_name`] started from `c.base` or the repository's `HEAD`.
    pub(crate) async fn create(
        c: &Checkout,
        task: TaskId,
        attempt: u32,
        dir: &Path,
    ) -> Result<Worktree, WorktreeError> {
        let branch = branch_name(task, attempt);
        let base = c.base.as_deref().unwrap_or("HEAD");
        let repo_path = Path::new(&c.repository);
        let git = Git {
            repo: &c.repository,
        };
        let origin = if repo_path.is_absolute() {
            let git_dir = git
                .run(
                    repo_path,
                    &["rev-parse", "--path-format=absolute", "--git-common-dir"],
                )
                .await?;
            let commit = git.resolve(repo_path, &[base]).await?;
            let dir_s = dir.to_string_lossy();
            // `--no-track`: no config write, so concurrent attempts never
            // race for `config.lock`; `--force -B`: a rerun of the same
            // attempt (its earlier run lost) takes the name over.
            let args = [
                "worktree",
                "add",
                "--force",
                "--no-track",
                "-B",
                &branch,
                &dir_s,
                &commit,
            ];
            {
                let _one = repo_lock(&PathBuf::from(&git_dir)).lock_owned().await;
                git.run_retrying(repo_path, &args).await?;
            }
            Origin::Local {
                repo: repo_path.to_path_buf(),
                git_dir: PathBuf::from(git_dir),
            }
        } else {
            let dir_s = dir.to_string_lossy();
            let args = ["clone", "--quiet", "--", &c.repository, &dir_s];
            git.run(Path::new("."), &args).await?;
            // A branch name is the remote's (`origin/NAME`); else a commit.
            let remote = format!("refs/remotes/origin/{base}");
            let candidates = match c.base.is_some() {
                true => vec![remote.as_str(), base],
                false => vec!["HEAD"],
            };
            let commit = git.resolve(dir, &candidates).await?;
            git.run(
                dir,
                &["checkout", "--quiet", "--no-track", "-B", &branch, &commit],
            )
            .await?;
            Origin::Clone
        };
        info!(repository = %c.repository, branch = %branch, dir = %dir.display(), "attempt checkout ready");
        Ok(Worktree {
            repository: c.repository.clone(),
            origin,
            dir: dir.to_path_buf(),
            branch,
        })
    }

    /// Takes over the checkout a previous attempt left at `dir` (a resumed
    /// session) and moves it to this attempt's branch, keeping its changes.
    pub(crate) async fn adopt(
        c: &Checkout,
        task: TaskId,
        attempt: u32,
        dir: &Path,
    ) -> Result<Worktree, WorktreeError> {
        let branch = branch_name(task, attempt);
        let git = Git {
            repo: &c.repository,
        };
        let repo_path = Path::new(&c.repository);
        let origin = if repo_path.is_absolute() {
            let args = ["rev-parse", "--path-format=absolute", "--git-common-dir"];
            let git_dir = git.run(repo_path, &args).await?;
            Origin::Local {
                repo: repo_path.to_path_buf(),
                git_dir: PathBuf::from(git_dir),
            }
        } else {
            Origin::Clone
        };
        let current = git.run(dir, &["rev-parse", "--abbrev-ref", "HEAD"]).await?;
        if current != branch {
            git.run(dir, &["switch", "--quiet", "-C", &branch]).await?;
        }
        Ok(Worktree {
            repository: c.repository.clone(),
            origin,
            dir: dir.to_path_buf(),
            branch,
        })
    }

    /// Paths outside the work dir the task needs to read: the repository's
    /// git dir, which the worktree's `.git` file points into.
    pub(crate) fn read_paths(&self) -> Vec<PathBuf> {
        match &self.origin {
            Origin::Local { git_dir, .. } => vec![git_dir.clone()],
            Origin::Clone => Vec::new(),
        }
    }

    /// Commits everything the task changed (if anything; the runtime's own
    /// files left out) with `message`, then pushes the branch of a clone.
    /// Returns the branch's commit.
    pub(crate) async fn commit(&self, message: &str) -> Result<String, WorktreeError> {
        let git = Git {
            repo: &self.repository,
        };
        let mut add = vec!["add", "--all", "--", "."];
        let excludes: Vec<String> = RUNTIME_FILES
            .iter()
            .map(|f| format!(":(top,exclude){f}"))
            .collect();
        add.extend(excludes.iter().map(String::as_str));
        git.run(&self.dir, &add).await?;
        let staged = git
            .status(&self.dir, &["diff", "--cached", "--quiet"])
            .await?;
        if staged {
            let name = format!("user.name={AUTHOR_NAME}");
            let email = format!("user.email={AUTHOR_EMAIL}");
            let args = [
                "-c",
                &name,
                "-c",
                &email,
                "-c",
                "commit.gpgsign=false",
                "commit",
                "--quiet",
                "--no-verify",
                "-m",
                message,
            ];
            git.run(&self.dir, &args).await?;
        }
        let head = git.run(&self.dir, &["rev-parse", "HEAD"]).await?;
        if matches!(self.origin, Origin::Clone) {
            let refspec = format!("refs/heads/{0}:refs/heads/{0}", self.branch);
            git.run(&self.dir, &["push", "--quiet", "origin", &refspec])
                .await?;
        }
        debug!(branch = %self.branch, commit = %head, committed = staged, "attempt branch recorded");
        Ok(head)
    }

    /// After the attempt: on success, [`Worktree::commit`] with the message
    /// `task <id> attempt <n>: <name>`; a commit or push that fails turns
    /// the outcome into a failure saying why. Other outcomes pass unchanged.
    pub(crate) async fn record(&self, a: &Assignment, outcome: Outcome) -> Outcome {
        if outcome.kind != OutcomeKind::Succeeded {
            return outcome;
        }
        let message = format!("task {} attempt {}: {}", a.task_id, a.attempt, a.name);
        match self.commit(&message).await {
            Ok(_) => outcome,
            Err(e) => {
                warn!(error = %e, "cannot record the attempt's branch");
                let reason = format!("cannot record branch {}: {e}", self.branch);
                Outcome::failed(OutcomeKind::Failed, reason, outcome.evidence)
            }
        }
    }

    /// Removes a local repository's worktree (the branch stays). A clone is
    /// left for the agent's usual work-dir cleanup.
    pub(crate) async fn remove(self) {
        let Origin::Local { repo, git_dir } = &self.origin else {
            return;
        };
        let _one = repo_lock(git_dir).lock_owned().await;
        let git = Git {
            repo: &self.repository,
        };
        let dir = self.dir.to_string_lossy();
        // Twice `--force`: also a worktree the task locked.
        let args = ["worktree", "remove", "--force", "--force", &dir];
        if let Err(e) = git.run_retrying(repo, &args).await {
            warn!(error = %e, "cannot remove the attempt's worktree; removing its dir and pruning");
            if let Err(e) = tokio::fs::remove_dir_all(&self.dir).await {
                warn!(error = %e, dir = %self.dir.display(), "cannot remove the attempt's worktree dir");
            }
            if let Err(e) = git.run(repo, &["worktree", "prune"]).await {
                warn!(error = %e, "cannot prune worktrees");
            }
        }
    }
}

/// Runs git for one repository (named in every error).
struct Git<'a> {
    repo: &'a str,
}

impl Git<'_> {
    fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(cwd).args(args);
        for var in GIT_LOCATION_VARS {
            cmd.env_remove(var);
        }
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `git args` in `cwd`; its trimmed stdout.
    async fn run(&self, cwd: &Path, args: &[&str]) -> Result<String, WorktreeError> {
        let out = self.output(cwd, args).await?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        Err(self.failed(args, &out.stderr))
    }

    /// Runs a command that answers with its exit status: `Ok(true)` for
    /// exit 1 (e.g. "there are differences"), `Ok(false)` for 0.
    async fn status(&self, cwd: &Path, args: &[&str]) -> Result<bool, WorktreeError> {
        let out = self.output(cwd, args).await?;
        match out.status.code() {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ => Err(self.failed(args, &out.stderr)),
        }
    }

    /// [`Git::run`], retried while git reports a lock file another process
    /// holds.
    async fn run_retrying(&self, cwd: &Path, args: &[&str]) -> Result<String, WorktreeError> {
        let mut pause = LOCK_BACKOFF;
        let mut tries = 1;
        loop {
            match self.run(cwd, args).await {
                Err(WorktreeError::Git { stderr, .. }) if tries < LOCK_TRIES && busy(&stderr) => {
                    debug!(stderr = %stderr, "git lock busy; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// The commit the first of `candidates` that exists names.
    async fn resolve(&self, cwd: &Path, candidates: &[&str]) -> Result<String, WorktreeError> {
        let mut stderr = String::new();
        for c in candidates {
            let spec = format!("{c}^{{commit}}");
            let out = self.output(cwd, &["rev-parse", "--verify", &spec]).await?;
            if out.status.success() {
                return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
            }
            stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        }
        Err(WorktreeError::UnknownBase {
            repo: self.repo.to_string(),
            base: candidates.last().copied().unwrap_or("HEAD").to_string(),
            stderr,
        })
    }

    async fn output(
        &self,
        cwd: &Path,
        args: &[&str],
    ) -> Result<std::process::Output, WorktreeError> {
        self.command(cwd, args)
            .output()
            .await
            .map_err(|error| WorktreeError::NoGit {
                repo: self.repo.to_string(),
                error,
            })
    }

    fn failed(&self, args: &[&str], stderr: &[u8]) -> WorktreeError {
        let stderr = String::from_utf8_lossy(stderr).trim().to_string();
        WorktreeError::Git {
            repo: self.repo.to_string(),
            command: subcommand(args),
            stderr,
        }
    }
}

/// The git subcommand and its first two arguments, after any `-c` options:
/// enough to say what failed without repeating a commit message.
fn subcommand(args: &[&str]) -> String {
    let mut rest = args;
    while let ["-c", _, tail @ ..] = rest {
        rest = tail;
    }
    rest.iter().take(3).copied().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_messages() {
        let id: TaskId = "01890000-0000-7000-8000-000000000007".parse().unwrap();
        assert_eq!(
            branch_name(id, 2),
            "torch/01890000-0000-7000-8000-000000000007/2"
        );
        let commit = [
            "-c",
            "user.name=x",
            "-c",
            "a=b",
            "commit",
            "--quiet",
            "-m",
            "msg",
        ];
        assert_eq!(subcommand(&commit), "commit --quiet -m");
        assert_eq!(subcommand(&["worktree", "add"]), "worktree add");
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A resumed session's attempt takes over the kept checkout on its own
    /// branch, with the earlier attempt's changes.
    #[tokio::test]
    async fn a_resumed_attempt_adopts_the_kept_checkout() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "--quiet", "--initial-branch=main"]);
        git(&repo, &["commit", "--quiet", "--allow-empty", "-m", "init"]);
        let c = Checkout {
            repository: repo.display().to_string(),
            base: None,
        };
        let id: TaskId = "01890000-0000-7000-8000-000000000009".parse().unwrap();
        let dir = tmp.path().join("work");
        let first = Worktree::create(&c, id, 1, &dir).await.unwrap();
        assert_eq!(first.read_paths(), [repo.join(".git")]);
        std::fs::write(dir.join("half"), "1").unwrap();
        std::fs::write(dir.join("stdout.log"), "runtime's").unwrap();
        drop(first);
        let second = Worktree::adopt(&c, id, 2, &dir).await.unwrap();
        std::fs::write(dir.join("rest"), "2").unwrap();
        second.commit("done").await.unwrap();
        second.remove().await;
        let b2 = branch_name(id, 2);
        let files = git(&repo, &["show", "--name-only", "--format=", &b2]);
        assert_eq!(files, "half\nrest");
        assert_eq!(
            git(&repo, &["rev-parse", &branch_name(id, 1)]),
            git(&repo, &["rev-parse", "main"])
        );
        assert!(!dir.exists());
        let listed = git(&repo, &["worktree", "list", "--porcelain"]);
        assert_eq!(listed.matches("worktree ").count(), 1, "{listed}");
    }
}
