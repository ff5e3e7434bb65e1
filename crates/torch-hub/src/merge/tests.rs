//! The merge queue on real git repositories in temp dirs.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use super::git::MergeError;
use super::{MergeOutcome, MergeQueue};

/// Runs git in `dir`; its trimmed stdout (panics on failure).
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository at `dir` on `main` with `a.txt` ("one\ntwo\nthree\n").
fn repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(dir.join("a.txt"), "one\ntwo\nthree\n").unwrap();
    git(dir, &["add", "a.txt"]);
    git(dir, &["commit", "--quiet", "-m", "init"]);
}

/// A branch `name` from `main` whose one commit writes `text` to `file`,
/// made without touching the repository's working tree (as the agent's
/// worktrees do).
fn branch(dir: &Path, name: &str, file: &str, text: &str) {
    let wt = dir.join(format!(".wt-{}", name.replace('/', "-")));
    git(
        dir,
        &[
            "worktree",
            "add",
            "--quiet",
            "-b",
            name,
            wt.to_str().unwrap(),
            "main",
        ],
    );
    std::fs::write(wt.join(file), text).unwrap();
    git(&wt, &["add", file]);
    git(&wt, &["commit", "--quiet", "-m", name]);
    git(dir, &["worktree", "remove", wt.to_str().unwrap()]);
}

fn show(dir: &Path, rev: &str, file: &str) -> String {
    git(dir, &["show", &format!("{rev}:{file}")])
}

#[tokio::test]
async fn same_line_conflicts_and_disjoint_edits_both_land() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().join("repo");
    repo(&r);
    branch(&r, "torch/t1/1", "a.txt", "one\nTWO by 1\nthree\n");
    branch(&r, "torch/t2/1", "a.txt", "one\nTWO by 2\nthree\n");
    branch(&r, "torch/t3/1", "b.txt", "new\n");
    let q = MergeQueue::new(tmp.path().join("data"));
    let rs = r.to_str().unwrap();

    let base = q.ensure_branch(rs, "team/x", None).await.unwrap();
    assert_eq!(base, git(&r, &["rev-parse", "main"]));
    // Already there: same commit, nothing made.
    assert_eq!(
        q.ensure_branch(rs, "team/x", Some("nope")).await.unwrap(),
        base
    );

    let first = q.merge(rs, "torch/t1/1", "team/x").await.unwrap();
    let MergeOutcome::Landed { commit } = first else {
        panic!("{first:?}");
    };
    assert_eq!(git(&r, &["rev-parse", "team/x"]), commit);
    assert_eq!(
        git(
            &r,
            &["rev-parse", &format!("{commit}^1"), &format!("{commit}^2")]
        ),
        format!("{base}\n{}", git(&r, &["rev-parse", "torch/t1/1"]))
    );
    assert_eq!(show(&r, "team/x", "a.txt"), "one\nTWO by 1\nthree");

    let second = q.merge(rs, "torch/t2/1", "team/x").await.unwrap();
    assert_eq!(
        second,
        MergeOutcome::Conflict {
            paths: vec!["a.txt".into()]
        }
    );
    assert_eq!(git(&r, &["rev-parse", "team/x"]), commit, "into unchanged");

    let third = q.merge(rs, "torch/t3/1", "team/x").await.unwrap();
    assert!(matches!(third, MergeOutcome::Landed { .. }), "{third:?}");
    assert_eq!(show(&r, "team/x", "a.txt"), "one\nTWO by 1\nthree");
    assert_eq!(show(&r, "team/x", "b.txt"), "new");
    // Merging again changes nothing.
    let tip = git(&r, &["rev-parse", "team/x"]);
    assert_eq!(
        q.merge(rs, "torch/t3/1", "team/x").await.unwrap(),
        MergeOutcome::UpToDate { commit: tip }
    );
    // The repository's own checkout and index were never touched.
    assert_eq!(git(&r, &["status", "--porcelain"]), "");
    assert_eq!(git(&r, &["branch", "--show-current"]), "main");

    let missing = q.merge(rs, "torch/none/1", "team/x").await.unwrap_err();
    assert!(
        matches!(&missing, MergeError::NoBranch { branch, .. } if branch == "torch/none/1"),
        "{missing:?}"
    );
    assert_eq!(
        missing.to_string(),
        format!("repository {rs}: no branch torch/none/1")
    );
    let unknown = q.ensure_branch(rs, "team/y", Some("no-such")).await;
    assert!(
        matches!(unknown, Err(MergeError::UnknownBase { .. })),
        "{unknown:?}"
    );
    let bad = tmp.path().join("not-a-repo");
    let err = q
        .merge(bad.to_str().unwrap(), "b", "team/x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains(bad.to_str().unwrap()), "{err}");
}

#[tokio::test]
async fn a_url_repository_merges_in_a_mirror_and_pushes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    repo(&src);
    branch(&src, "torch/t1/1", "a.txt", "one\nTWO by 1\nthree\n");
    branch(&src, "torch/t2/1", "a.txt", "one\nTWO by 2\nthree\n");
    branch(&src, "torch/t3/1", "b.txt", "new\n");
    let bare = tmp.path().join("remote.git");
    let out = Command::new("git")
        .args(["clone", "--quiet", "--bare"])
        .arg(&src)
        .arg(&bare)
        .status()
        .unwrap();
    assert!(out.success());
    let url = format!("file://{}", bare.display());
    let data = tmp.path().join("data");
    let q = MergeQueue::new(data.clone());

    let base = q.ensure_branch(&url, "team/x", Some("main")).await.unwrap();
    assert_eq!(git(&bare, &["rev-parse", "team/x"]), base, "pushed");
    let first = q.merge(&url, "torch/t1/1", "team/x").await.unwrap();
    let MergeOutcome::Landed { commit } = first else {
        panic!("{first:?}");
    };
    assert_eq!(git(&bare, &["rev-parse", "team/x"]), commit, "pushed");
    let second = q.merge(&url, "torch/t2/1", "team/x").await.unwrap();
    assert_eq!(
        second,
        MergeOutcome::Conflict {
            paths: vec!["a.txt".into()]
        }
    );
    assert_eq!(git(&bare, &["rev-parse", "team/x"]), commit);
    // Someone else moves `into` at the remote: the queue fetches and merges
    // on top of it.
    let other = tmp.path().join("other");
    let status = Command::new("git")
        .args(["clone", "--quiet", "--branch", "team/x"])
        .arg(&url)
        .arg(&other)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(other.join("c.txt"), "c\n").unwrap();
    git(&other, &["add", "c.txt"]);
    git(&other, &["commit", "--quiet", "-m", "c"]);
    git(&other, &["push", "--quiet", "origin", "team/x"]);
    let third = q.merge(&url, "torch/t3/1", "team/x").await.unwrap();
    assert!(matches!(third, MergeOutcome::Landed { .. }), "{third:?}");
    for (file, text) in [
        ("a.txt", "one\nTWO by 1\nthree"),
        ("b.txt", "new"),
        ("c.txt", "c"),
    ] {
        assert_eq!(show(&bare, "team/x", file), text);
    }
    // One mirror under the data dir.
    let mirrors: Vec<_> = std::fs::read_dir(data.join("merge")).unwrap().collect();
    assert_eq!(mirrors.len(), 1);
    let missing = q.merge(&url, "torch/none/1", "team/x").await.unwrap_err();
    assert!(
        matches!(missing, MergeError::NoBranch { .. }),
        "{missing:?}"
    );
}

#[tokio::test]
async fn concurrent_merges_into_one_repository_all_land() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().join("repo");
    repo(&r);
    const N: usize = 6;
    for i in 0..N {
        branch(&r, &format!("torch/t{i}/1"), &format!("f{i}.txt"), "x\n");
    }
    let rs = r.to_str().unwrap().to_string();
    let q = Arc::new(MergeQueue::new(tmp.path().join("data")));
    q.ensure_branch(&rs, "team/x", None).await.unwrap();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..N {
        let (q, rs) = (q.clone(), rs.clone());
        set.spawn(async move { q.merge(&rs, &format!("torch/t{i}/1"), "team/x").await });
    }
    let mut landed = 0;
    while let Some(done) = set.join_next().await {
        let outcome = done.unwrap().unwrap();
        assert!(
            matches!(outcome, MergeOutcome::Landed { .. }),
            "{outcome:?}"
        );
        landed += 1;
    }
    assert_eq!(landed, N);
    let files = git(&r, &["ls-tree", "--name-only", "team/x"]);
    for i in 0..N {
        assert!(files.contains(&format!("f{i}.txt")), "{files}");
    }
    // One merge commit per branch, in a line.
    let merges = git(&r, &["rev-list", "--merges", "--count", "team/x"]);
    assert_eq!(merges, N.to_string());
}
