//! Tasks with `context.repository` (the assignment's `checkout`) run in
//! their own git worktree or clone on the branch `torch/<task>/<attempt>`,
//! with real git repositories in temp dirs.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use torch_api::ws::{Assignment, Checkout};
use torch_core::OutcomeKind;

use common::*;

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

/// A repository at `dir` with one commit (`README`) on `main` and a branch
/// `feature` adding `g`; `main` stays checked out.
fn repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(dir.join("README"), "hello\n").unwrap();
    git(dir, &["add", "README"]);
    git(dir, &["commit", "--quiet", "-m", "init"]);
    git(dir, &["switch", "--quiet", "-c", "feature"]);
    std::fs::write(dir.join("g"), "g\n").unwrap();
    git(dir, &["add", "g"]);
    git(dir, &["commit", "--quiet", "-m", "g"]);
    git(dir, &["switch", "--quiet", "main"]);
}

fn in_repo(mut a: Assignment, repository: &str, base: Option<&str>) -> Assignment {
    a.checkout = Some(Checkout {
        repository: repository.into(),
        base: base.map(str::to_string),
    });
    a
}

fn branch(a: &Assignment) -> String {
    format!("torch/{}/{}", a.task_id, a.attempt)
}

/// The files the branch's last commit changed.
fn changed(repo: &Path, branch: &str) -> Vec<String> {
    let names = git(repo, &["show", "--name-only", "--format=", branch]);
    names.lines().map(str::to_string).collect()
}

#[tokio::test]
async fn each_attempt_works_on_its_own_branch_of_a_local_repo() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().join("repo");
    repo(&r);
    let rs = r.to_str().unwrap();
    let main_head = git(&r, &["rev-parse", "main"]);
    // The task sees a checkout (git works inside it) of its base.
    let writes = in_repo(sh("git status --short && echo x > f"), rs, None);
    let on_feature = in_repo(sh("test -f g && echo y > h"), rs, Some("feature"));
    let mut committed = in_repo(
        sh("echo z > z && git add z && git -c user.name=me -c user.email=me@x commit -qm mine"),
        rs,
        None,
    );
    committed.attempt = 3;
    let fails = in_repo(sh("echo w > w; exit 1"), rs, None);
    // Several at once on one repository.
    let many: Vec<Assignment> = (0..4)
        .map(|i| in_repo(sh(&format!("echo {i} > n{i}")), rs, None))
        .collect();
    let mut tasks = vec![writes, on_feature, committed, fails];
    tasks.extend(many);
    let (reports, root) = run_all(|_| {}, &tasks).await;

    let kinds: Vec<OutcomeKind> = reports.iter().map(|r| r.outcome.kind).collect();
    use OutcomeKind::{Failed, Succeeded};
    assert_eq!(
        kinds,
        [
            Succeeded, Succeeded, Succeeded, Failed, Succeeded, Succeeded, Succeeded, Succeeded
        ],
        "{reports:#?}"
    );
    // The runtime committed `f` (and none of its own files) as the agent.
    let b0 = branch(&tasks[0]);
    assert_eq!(changed(&r, &b0), ["f"]);
    assert_eq!(git(&r, &["rev-parse", &format!("{b0}~1")]), main_head);
    assert_eq!(
        git(&r, &["log", "-1", "--format=%an <%ae>|%s", &b0]),
        format!(
            "Nova Torch agent <agent@torch.invalid>|task {} attempt 1: test",
            tasks[0].task_id
        )
    );
    assert_eq!(git(&r, &["show", &format!("{b0}:f")]), "x");
    // Started from `feature`.
    let b1 = branch(&tasks[1]);
    assert_eq!(changed(&r, &b1), ["h"]);
    assert_eq!(
        git(&r, &["rev-parse", &format!("{b1}~1")]),
        git(&r, &["rev-parse", "feature"])
    );
    // The task's own commit is kept and nothing more is added.
    let b2 = branch(&tasks[2]);
    assert!(b2.ends_with("/3"), "{b2}");
    assert_eq!(git(&r, &["log", "-1", "--format=%an|%s", &b2]), "me|mine");
    // A failed attempt leaves its branch at the base, uncommitted.
    assert_eq!(git(&r, &["rev-parse", &branch(&tasks[3])]), main_head);
    for (i, t) in tasks[4..].iter().enumerate() {
        assert_eq!(changed(&r, &branch(t)), [format!("n{i}")]);
    }
    // Every worktree is gone, dir and metadata; the repository's own
    // checkout and index are untouched.
    for t in &tasks {
        assert!(!workdir(root.path(), t).exists());
    }
    let listed = git(&r, &["worktree", "list", "--porcelain"]);
    assert_eq!(listed.matches("worktree ").count(), 1, "{listed}");
    assert_eq!(git(&r, &["status", "--porcelain"]), "");
    assert_eq!(git(&r, &["branch", "--show-current"]), "main");
}

#[tokio::test]
async fn a_clone_of_a_url_pushes_its_branch_back() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    repo(&src);
    let bare = tmp.path().join("bare.git");
    let out = Command::new("git")
        .args(["clone", "--quiet", "--bare"])
        .arg(&src)
        .arg(&bare)
        .status()
        .unwrap();
    assert!(out.success());
    let url = format!("file://{}", bare.display());
    let plain = in_repo(sh("echo x > f"), &url, None);
    let on_feature = in_repo(sh("test -f g && echo y > h"), &url, Some("feature"));
    let tasks = [plain, on_feature];
    let (reports, _root) = run_all(|_| {}, &tasks).await;
    for r in &reports {
        assert_eq!(r.outcome.kind, OutcomeKind::Succeeded, "{r:#?}");
    }
    assert_eq!(changed(&bare, &branch(&tasks[0])), ["f"]);
    assert_eq!(changed(&bare, &branch(&tasks[1])), ["h"]);
    assert_eq!(
        git(&bare, &["rev-parse", &format!("{}~1", branch(&tasks[1]))]),
        git(&bare, &["rev-parse", "feature"])
    );
}

#[tokio::test]
async fn a_bad_repository_or_base_fails_the_attempt_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().join("repo");
    repo(&r);
    let missing = tmp.path().join("no-such-repo");
    let marker = tmp.path().join("ran");
    let script = format!("touch {}", marker.display());
    let tasks = [
        in_repo(sh(&script), missing.to_str().unwrap(), None),
        in_repo(sh(&script), r.to_str().unwrap(), Some("no-such-branch")),
        in_repo(sh(&script), "file:///no/such/url.git", None),
    ];
    let (reports, _root) = run_all(|_| {}, &tasks).await;
    let reason = |i: usize| reports[i].outcome.reason.clone().unwrap_or_default();
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r.outcome.kind, OutcomeKind::Failed, "{}", reason(i));
    }
    assert!(
        reason(0).contains(&missing.display().to_string()),
        "{}",
        reason(0)
    );
    assert!(reason(1).contains("no-such-branch"), "{}", reason(1));
    assert!(reason(1).contains(r.to_str().unwrap()), "{}", reason(1));
    assert!(
        reason(2).contains("file:///no/such/url.git"),
        "{}",
        reason(2)
    );
    // Never run outside the repository.
    assert!(!marker.exists());
    let listed = git(&r, &["worktree", "list", "--porcelain"]);
    assert_eq!(listed.matches("worktree ").count(), 1, "{listed}");
}
