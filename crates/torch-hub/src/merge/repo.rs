//! Where a repository's refs are written (the local path, or a bare mirror
//! of a URL) and the single merge step: check with `git merge-tree`, write
//! a merge commit, move the integration branch by compare-and-swap.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tracing::debug;

use super::git::{Git, MergeError, stderr};

/// Hex digits of the URL's SHA-256 in a mirror's directory name.
const MIRROR_NAME_HEX: usize = 24;

/// Where the queue reads and writes a repository's objects and refs.
#[derive(Debug)]
pub(super) enum Place {
    /// A local repository (bare or not), used in place.
    Local(PathBuf),
    /// A bare mirror of `url` kept at `dir`: branches are fetched into it
    /// before a merge and the integration branch pushed back after.
    Mirror {
        /// What `git fetch`/`git push` reach.
        url: String,
        /// The mirror's git dir.
        dir: PathBuf,
    },
}

/// What one merge attempt came to.
#[derive(Debug)]
pub(super) enum Step {
    /// Finished: landed, already contained, or conflicting.
    Done(super::MergeOutcome),
    /// The integration branch moved between reading and writing it; try
    /// again from the top.
    Moved,
}

impl Place {
    /// An absolute path is local; anything else is a URL mirrored under
    /// `data_dir/merge/<hash of the URL>`.
    pub(super) fn of(repo: &str, data_dir: &Path) -> Place {
        let path = Path::new(repo);
        if path.is_absolute() {
            return Place::Local(path.to_path_buf());
        }
        let hash = hex::encode(Sha256::digest(repo.as_bytes()));
        let name = format!("{}.git", &hash[..MIRROR_NAME_HEX]);
        Place::Mirror {
            url: repo.to_string(),
            dir: data_dir.join("merge").join(name),
        }
    }

    /// The git dir commands run in.
    pub(super) fn dir(&self) -> &Path {
        match self {
            Place::Local(p) => p,
            Place::Mirror { dir, .. } => dir,
        }
    }

    /// git for `branch` in this place.
    pub(super) fn git<'a>(&'a self, repo: &'a str, branch: &'a str) -> Git<'a> {
        Git {
            repo,
            dir: self.dir(),
            branch,
        }
    }

    /// Makes a mirror's bare repository if it is not there yet.
    pub(super) async fn prepare(&self, repo: &str) -> Result<(), MergeError> {
        let Place::Mirror { dir, .. } = self else {
            return Ok(());
        };
        if dir.join("HEAD").exists() {
            return Ok(());
        }
        let parent = dir.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|source| MergeError::Mirror {
                repo: repo.to_string(),
                path: dir.clone(),
                source,
            })?;
        let name = dir.to_string_lossy();
        let git = Git {
            repo,
            dir: parent,
            branch: "",
        };
        git.run(&["init", "--quiet", "--bare", &name]).await?;
        Ok(())
    }

    /// For a mirror: updates `refs/heads/<branch>` from the URL (forced, so
    /// the mirror follows the remote). `false`: the remote has no such
    /// branch. A local place has nothing to fetch (`true`).
    pub(super) async fn fetch(&self, repo: &str, branch: &str) -> Result<bool, MergeError> {
        let Place::Mirror { url, .. } = self else {
            return Ok(true);
        };
        let refspec = format!("+refs/heads/{branch}:refs/heads/{branch}");
        let args = [
            "fetch",
            "--quiet",
            "--no-tags",
            "--update-head-ok",
            url.as_str(),
            &refspec,
        ];
        let git = self.git(repo, branch);
        let out = git.output(&args).await?;
        if out.status.success() {
            return Ok(true);
        }
        if stderr(&out).contains("couldn't find remote ref") {
            return Ok(false);
        }
        Err(git.failed(&args, &out))
    }

    /// For a mirror: the commit `base` names at the URL (its `HEAD` when
    /// `None`), fetched into the mirror.
    pub(super) async fn fetch_base(
        &self,
        repo: &str,
        into: &str,
        base: Option<&str>,
    ) -> Result<Option<String>, MergeError> {
        let git = self.git(repo, into);
        let Place::Mirror { url, .. } = self else {
            return git.commit_of(base.unwrap_or("HEAD")).await;
        };
        let args = ["fetch", "--quiet", "--no-tags", url, base.unwrap_or("HEAD")];
        let out = git.output(&args).await?;
        if !out.status.success() {
            return Err(MergeError::UnknownBase {
                repo: repo.to_string(),
                branch: into.to_string(),
                base: base.unwrap_or("HEAD").to_string(),
                stderr: stderr(&out),
            });
        }
        git.commit_of("FETCH_HEAD").await
    }

    /// For a mirror: pushes `into` to the URL. `false`: the remote refused
    /// because its `into` moved (not a fast-forward); fetch and retry.
    pub(super) async fn publish(&self, repo: &str, into: &str) -> Result<bool, MergeError> {
        let Place::Mirror { url, .. } = self else {
            return Ok(true);
        };
        let refspec = format!("refs/heads/{into}:refs/heads/{into}");
        let args = ["push", "--quiet", "--porcelain", url.as_str(), &refspec];
        let git = self.git(repo, into);
        let out = git.output(&args).await?;
        if out.status.success() {
            return Ok(true);
        }
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        if said.contains("[rejected]") || said.contains("non-fast-forward") {
            debug!(repository = repo, into, "push rejected; the remote moved");
            return Ok(false);
        }
        Err(git.failed(&args, &out))
    }
}

/// One try at merging `branch` into `into` in `place` (objects and refs
/// only).
pub(super) async fn merge_once(
    place: &Place,
    repo: &str,
    branch: &str,
    into: &str,
) -> Result<Step, MergeError> {
    let git = place.git(repo, branch);
    let no_branch = |b: &str| MergeError::NoBranch {
        repo: repo.to_string(),
        branch: b.to_string(),
    };
    let theirs = git
        .commit_of(&format!("refs/heads/{branch}"))
        .await?
        .ok_or_else(|| no_branch(branch))?;
    let ours = git
        .commit_of(&format!("refs/heads/{into}"))
        .await?
        .ok_or_else(|| no_branch(into))?;
    let ancestor = ["merge-base", "--is-ancestor", &theirs, &ours];
    let out = git.output(&ancestor).await?;
    match out.status.code() {
        Some(0) => {
            return Ok(Step::Done(super::MergeOutcome::UpToDate { commit: ours }));
        }
        Some(1) => {}
        _ => return Err(git.failed(&ancestor, &out)),
    }
    let check = [
        "merge-tree",
        "--write-tree",
        "--name-only",
        "--no-messages",
        "-z",
        &ours,
        &theirs,
    ];
    let out = git.output(&check).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split('\0');
    let tree = fields.next().unwrap_or_default().trim().to_string();
    match out.status.code() {
        Some(0) => {}
        Some(1) => {
            let mut paths: Vec<String> = fields
                .take_while(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            paths.sort();
            paths.dedup();
            return Ok(Step::Done(super::MergeOutcome::Conflict { paths }));
        }
        _ => return Err(git.failed(&check, &out)),
    }
    let message = format!("Merge branch '{branch}' into {into}");
    let commit = git
        .run(&[
            "commit-tree",
            &tree,
            "-p",
            &ours,
            "-p",
            &theirs,
            "-m",
            &message,
        ])
        .await?;
    // Compare-and-swap: only if `into` is still where it was read.
    let target = format!("refs/heads/{into}");
    let update = ["update-ref", "-m", &message, &target, &commit, &ours];
    let out = git.output(&update).await?;
    if !out.status.success() {
        if git.commit_of(&target).await?.as_deref() != Some(ours.as_str()) {
            return Ok(Step::Moved);
        }
        return Err(git.failed(&update, &out));
    }
    if !place.publish(repo, into).await? {
        return Ok(Step::Moved);
    }
    Ok(Step::Done(super::MergeOutcome::Landed { commit }))
}
