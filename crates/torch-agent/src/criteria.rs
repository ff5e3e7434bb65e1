//! Agent-side success criteria: exit code, files, stdout pattern, check command.

use std::path::{Component, Path};
use std::time::Duration;

use regex::Regex;
use tokio::io::AsyncReadExt;

use torch_core::{CriterionResult, SuccessCriteria};

use crate::capture::{Capture, drain_while};
use crate::sandbox::{Env, Exit, spawn_check};

/// Limit on a check command's run time.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// Grace between SIGTERM and SIGKILL for a check command that overran.
const CHECK_KILL_GRACE: Duration = Duration::from_secs(1);
/// Output of a check command quoted in its detail.
const CHECK_TAIL_BYTES: usize = 512;

/// Where the criteria look.
pub(crate) struct Workspace<'a> {
    /// The task's work dir; relative paths resolve against it.
    pub(crate) dir: &'a Path,
    /// The captured stdout file.
    pub(crate) stdout_log: &'a Path,
    /// Most bytes of stdout to match against.
    pub(crate) max_stdout: u64,
    /// Environment for the check command.
    pub(crate) env: &'a Env,
}

/// Judges every criterion against a process that ended with `exit`
/// (`Code` or `Signal`). The check command only runs when everything before
/// it held.
pub(crate) async fn evaluate(
    c: &SuccessCriteria,
    exit: &Exit,
    ws: &Workspace<'_>,
) -> Vec<CriterionResult> {
    let mut results = Vec::with_capacity(
        1 + c.file_exists.len()
            + usize::from(c.stdout_matches.is_some())
            + usize::from(c.check.is_some()),
    );
    results.push(exit_code(&c.exit_codes, exit));
    for rel in &c.file_exists {
        results.push(file_exists(ws.dir, rel).await);
    }
    if let Some(pattern) = &c.stdout_matches {
        results.push(stdout_matches(pattern, ws).await);
    }
    if let Some(argv) = &c.check {
        let criterion = format!("check {}", argv.join(" "));
        if results.iter().all(|r| r.ok) {
            results.push(check(criterion, argv, ws).await);
        } else {
            results.push(result(
                criterion,
                false,
                "not run: an earlier criterion failed",
            ));
        }
    }
    results
}

/// The one-line reason for the first unmet criterion, if any.
pub(crate) fn first_failure(results: &[CriterionResult]) -> Option<String> {
    results
        .iter()
        .find(|r| !r.ok)
        .map(|r| format!("criterion not met: {} ({})", r.criterion, r.detail))
}

fn result(criterion: String, ok: bool, detail: impl Into<String>) -> CriterionResult {
    CriterionResult {
        criterion,
        ok,
        detail: detail.into(),
    }
}

fn exit_code(allowed: &[i32], exit: &Exit) -> CriterionResult {
    let criterion = format!("exit_code in {allowed:?}");
    match exit {
        Exit::Code(code) => result(
            criterion,
            allowed.contains(code),
            format!("exited with {code}"),
        ),
        Exit::Signal(sig) => result(criterion, false, format!("killed by signal {sig}")),
        Exit::Unknown(why) => result(criterion, false, why.clone()),
    }
}

async fn file_exists(dir: &Path, rel: &str) -> CriterionResult {
    let criterion = format!("file_exists {rel}");
    let path = Path::new(rel);
    let inside = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside {
        return result(
            criterion,
            false,
            "path must be relative and stay inside the work dir",
        );
    }
    match tokio::fs::try_exists(dir.join(path)).await {
        Ok(true) => result(criterion, true, "exists"),
        Ok(false) => result(criterion, false, "missing"),
        Err(e) => result(criterion, false, format!("cannot check: {e}")),
    }
}

async fn stdout_matches(pattern: &str, ws: &Workspace<'_>) -> CriterionResult {
    let criterion = format!("stdout_matches {pattern}");
    let re = match Regex::new(pattern) {
        Ok(re) => re,
        Err(e) => return result(criterion, false, format!("invalid regex: {e}")),
    };
    let mut text = Vec::new();
    let read = async {
        let file = tokio::fs::File::open(ws.stdout_log).await?;
        file.take(ws.max_stdout).read_to_end(&mut text).await
    };
    if let Err(e) = read.await {
        return result(criterion, false, format!("cannot read stdout.log: {e}"));
    }
    let text = String::from_utf8_lossy(&text);
    if re.is_match(&text) {
        result(criterion, true, "matched")
    } else {
        result(
            criterion,
            false,
            format!("no match in {} bytes of stdout", text.len()),
        )
    }
}

async fn check(criterion: String, argv: &[String], ws: &Workspace<'_>) -> CriterionResult {
    let mut proc = match spawn_check(argv, ws.env, ws.dir) {
        Ok(p) => p,
        Err(e) => return result(criterion, false, e),
    };
    let mut out = Capture::new(None, 0, CHECK_TAIL_BYTES);
    let mut err = Capture::new(None, 0, CHECK_TAIL_BYTES);
    let (o, e) = (proc.stdout.take(), proc.stderr.take());
    let exit = drain_while(&mut out, o, &mut err, e, async {
        let exit = match tokio::time::timeout(CHECK_TIMEOUT, proc.wait_exit()).await {
            Ok(exit) => Some(exit),
            Err(_) => {
                proc.terminate(CHECK_KILL_GRACE).await;
                None
            }
        };
        proc.reap().await;
        exit
    })
    .await;
    let said = {
        let e = err.tail_text(CHECK_TAIL_BYTES);
        let text = if e.trim().is_empty() {
            out.tail_text(CHECK_TAIL_BYTES)
        } else {
            e
        };
        let text = text.trim().to_string();
        if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        }
    };
    match exit {
        None => result(
            criterion,
            false,
            format!("timed out after {}s", CHECK_TIMEOUT.as_secs()),
        ),
        Some(Exit::Code(0)) => result(criterion, true, "exited with 0"),
        Some(Exit::Code(code)) => result(criterion, false, format!("exited with {code}{said}")),
        Some(Exit::Signal(sig)) => {
            result(criterion, false, format!("killed by signal {sig}{said}"))
        }
        Some(Exit::Unknown(why)) => result(criterion, false, why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())]
    }

    #[tokio::test]
    async fn each_criterion_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stdout.log");
        std::fs::write(&log, "build ok: 42 tests passed\n").unwrap();
        std::fs::write(dir.path().join("report.txt"), "x").unwrap();
        let env = env();
        let ws = Workspace {
            dir: dir.path(),
            stdout_log: &log,
            max_stdout: 1 << 20,
            env: &env,
        };

        let all_good = SuccessCriteria {
            exit_codes: vec![0, 3],
            file_exists: vec!["report.txt".into()],
            stdout_matches: Some(r"\d+ tests passed".into()),
            check: Some(vec!["sh".into(), "-c".into(), "test -f report.txt".into()]),
        };
        let r = evaluate(&all_good, &Exit::Code(3), &ws).await;
        assert_eq!(r.len(), 4);
        assert!(r.iter().all(|c| c.ok), "{r:?}");
        assert_eq!(r[0].criterion, "exit_code in [0, 3]");
        assert_eq!(first_failure(&r), None);

        let bad = SuccessCriteria {
            exit_codes: vec![0],
            file_exists: vec!["missing.txt".into(), "../escape".into()],
            stdout_matches: Some("FAILED".into()),
            check: Some(vec!["true".into()]),
        };
        let r = evaluate(&bad, &Exit::Code(0), &ws).await;
        assert_eq!(r.len(), 5);
        assert!(r[0].ok);
        assert_eq!((r[1].ok, r[1].detail.as_str()), (false, "missing"));
        assert!(!r[2].ok);
        assert!(!r[3].ok && r[3].detail.starts_with("no match"));
        assert!(
            !r[4].ok && r[4].detail.starts_with("not run"),
            "check skipped"
        );
        assert_eq!(
            first_failure(&r).unwrap(),
            "criterion not met: file_exists missing.txt (missing)"
        );

        let failing_check = SuccessCriteria {
            check: Some(vec![
                "sh".into(),
                "-c".into(),
                "echo nope >&2; exit 4".into(),
            ]),
            ..SuccessCriteria::default()
        };
        let r = evaluate(&failing_check, &Exit::Signal(9), &ws).await;
        assert_eq!(r[0].detail, "killed by signal 9");
        assert!(!r[0].ok);
        let r = evaluate(&failing_check, &Exit::Code(0), &ws).await;
        assert_eq!(r[1].detail, "exited with 4: nope");

        let bad_regex = SuccessCriteria {
            stdout_matches: Some("(".into()),
            check: Some(vec!["no-such-check-program-xyz".into()]),
            ..SuccessCriteria::default()
        };
        let r = evaluate(&bad_regex, &Exit::Code(0), &ws).await;
        assert!(r[1].detail.starts_with("invalid regex"));
        let r = evaluate(
            &SuccessCriteria {
                stdout_matches: None,
                ..bad_regex
            },
            &Exit::Code(0),
            &ws,
        )
        .await;
        assert!(!r[1].ok);
        assert!(
            r[1].detail.contains("no-such-check-program-xyz"),
            "{}",
            r[1].detail
        );
    }
}
