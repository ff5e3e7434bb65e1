//! [`MergeQueue`]: serialises merges per repository and retries a merge
//! whose integration branch moved under it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tracing::{info, instrument, warn};

use super::git::MergeError;
use super::repo::{Place, Step, merge_once};

/// Tries of one merge while `into` keeps moving (other writers than this
/// queue: people pushing to the remote, another hub).
const MAX_TRIES: u32 = 5;

/// How a merge ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MergeOutcome {
    /// A merge commit landed on `into`.
    Landed {
        /// The merge commit, now `into`'s tip.
        commit: String,
    },
    /// `into` already contains the branch; nothing changed.
    UpToDate {
        /// `into`'s tip.
        commit: String,
    },
    /// The branch conflicts with `into`; nothing changed.
    Conflict {
        /// The conflicting paths, sorted, each once.
        paths: Vec<String>,
    },
}

/// The hub's merge queue (one per hub). Merges and branch creation in one
/// repository run one at a time, in arrival order (a fair async mutex per
/// repository); different repositories run in parallel.
///
/// A repository is what a task's `context.repository` says: an absolute
/// path is used in place, bare or not, with only object and ref writes (its
/// working tree and index are never touched — so the integration branch
/// should not be the branch checked out there); anything else is a URL,
/// kept as a bare mirror under `data_dir/merge/`, fetched before and pushed
/// after.
#[derive(Debug)]
pub(crate) struct MergeQueue {
    /// Where URL mirrors live (`<data_dir>/merge/<hash>.git`).
    data_dir: PathBuf,
    /// One lock per repository ever merged into (a handful per hub; never
    /// pruned). The outer lock is held only to look an entry up.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl MergeQueue {
    /// A queue keeping its URL mirrors under `data_dir/merge`.
    pub(crate) fn new(data_dir: PathBuf) -> Self {
        MergeQueue {
            data_dir,
            locks: Mutex::new(HashMap::new()),
        }
    }

    fn lock_of(&self, repo: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(repo.to_string()).or_default().clone()
    }

    /// Makes `into` exist (from `base`, default the repository's `HEAD`) if
    /// it does not; returns its commit. For a URL the new branch is pushed.
    #[instrument(skip_all, fields(repository = repo, into = into))]
    pub(crate) async fn ensure_branch(
        &self,
        repo: &str,
        into: &str,
        base: Option<&str>,
    ) -> Result<String, MergeError> {
        let lock = self.lock_of(repo);
        let _turn = lock.lock().await;
        let place = Place::of(repo, &self.data_dir);
        place.prepare(repo).await?;
        let git = place.git(repo, into);
        let target = format!("refs/heads/{into}");
        for _ in 0..MAX_TRIES {
            if place.fetch(repo, into).await?
                && let Some(c) = git.commit_of(&target).await?
            {
                return Ok(c);
            }
            let Some(start) = place.fetch_base(repo, into, base).await? else {
                return Err(MergeError::UnknownBase {
                    repo: repo.to_string(),
                    branch: into.to_string(),
                    base: base.unwrap_or("HEAD").to_string(),
                    stderr: "not a commit".into(),
                });
            };
            // Locally: create only if still absent (`""` as the old value).
            // A mirror overwrites a stale copy the remote no longer has; the
            // push is its compare-and-swap.
            let mut update = vec!["update-ref", target.as_str(), start.as_str()];
            if matches!(place, Place::Local(_)) {
                update.push("");
            }
            let out = git.output(&update).await?;
            if !out.status.success() {
                if git.commit_of(&target).await?.is_some() {
                    continue;
                }
                return Err(git.failed(&update, &out));
            }
            if place.publish(repo, into).await? {
                info!(commit = %start, "integration branch created");
                return Ok(start);
            }
        }
        Err(MergeError::Contended {
            repo: repo.to_string(),
            branch: into.to_string(),
            into: into.to_string(),
            tries: MAX_TRIES,
        })
    }

    /// Merges `branch` into `into`: checks with `git merge-tree
    /// --write-tree` first; a clean result lands as a merge commit on
    /// `into` (compare-and-swap `update-ref`; retried if `into` moved); a
    /// conflict returns the conflicting paths and changes nothing. A branch
    /// already contained in `into` is [`MergeOutcome::UpToDate`]. A missing
    /// `branch` or `into` is [`MergeError::NoBranch`].
    #[instrument(skip_all, fields(repository = repo, branch = branch, into = into))]
    pub(crate) async fn merge(
        &self,
        repo: &str,
        branch: &str,
        into: &str,
    ) -> Result<MergeOutcome, MergeError> {
        let lock = self.lock_of(repo);
        let _turn = lock.lock().await;
        let place = Place::of(repo, &self.data_dir);
        place.prepare(repo).await?;
        let no_branch = |b: &str| MergeError::NoBranch {
            repo: repo.to_string(),
            branch: b.to_string(),
        };
        for tries in 1..=MAX_TRIES {
            if !place.fetch(repo, branch).await? {
                return Err(no_branch(branch));
            }
            if !place.fetch(repo, into).await? {
                return Err(no_branch(into));
            }
            match merge_once(&place, repo, branch, into).await? {
                Step::Done(outcome) => {
                    info!(?outcome, "merge finished");
                    return Ok(outcome);
                }
                Step::Moved => warn!(tries, "the integration branch moved; merging again"),
            }
        }
        Err(MergeError::Contended {
            repo: repo.to_string(),
            branch: branch.to_string(),
            into: into.to_string(),
            tries: MAX_TRIES,
        })
    }
}
