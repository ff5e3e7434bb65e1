//! Resuming an agent CLI's session instead of starting over.
//!
//! An executor with `resume` arguments names its session in its output
//! (Claude's `session_id`, Codex's `thread_id`). When such an attempt ends
//! without success, the runner keeps its work dir and writes a marker beside
//! it (`<work root>/<task id>.resume`, out of the task's reach) with the dir
//! and the session. The task's next attempt on this agent takes the marker,
//! runs in the same dir (the CLIs file sessions under the working directory)
//! and renders the command with the `resume` arguments and the resume
//! prompt. Markers older than [`KEEP_FOR`] are pruned with their dirs.
//!
//! A run the provider's rate limit ended is paused instead, inside the same
//! attempt and lease: the runner waits until the reset time (or the
//! template's `rate-limit-pause`), reporting `waiting: rate_limited` with
//! its `until_ms`, then runs the CLI again on the same session.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use torch_api::ws::{Assignment, ProgressReport};
use torch_core::{Activity, Liveness, TaskId, Waiting};

use crate::runner::{RunnerEvent, StopReason};

/// How long a kept work dir waits for its task's next attempt.
pub(crate) const KEEP_FOR: Duration = Duration::from_secs(6 * 3600);
/// Most rate-limit pauses in one attempt.
pub(crate) const MAX_PAUSES: u32 = 5;
/// The pause when neither the CLI nor the template gives one.
pub(crate) const DEFAULT_PAUSE: Duration = Duration::from_secs(60);
/// How often a paused task reports that it is still waiting (its liveness).
const PAUSE_KEEPALIVE: Duration = Duration::from_secs(15);
const MARKER_SUFFIX: &str = "resume";

/// A work dir kept for the task's next attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Kept {
    /// The work dir the session ran in.
    pub(crate) dir: PathBuf,
    /// The CLI's session id.
    pub(crate) session: String,
}

fn marker(work_root: &Path, task: TaskId) -> PathBuf {
    work_root.join(format!("{task}.{MARKER_SUFFIX}"))
}

/// Records that `kept.dir` holds `task`'s session for its next attempt.
pub(crate) async fn keep(work_root: &Path, task: TaskId, kept: &Kept) {
    let path = marker(work_root, task);
    let text = match serde_json::to_string(kept) {
        Ok(t) => t,
        Err(e) => {
            warn!(%task, error = %e, "cannot encode the resume marker");
            return;
        }
    };
    match tokio::fs::write(&path, text).await {
        Ok(()) => info!(%task, session = %kept.session, dir = %kept.dir.display(),
            "work dir kept: the next attempt resumes the session"),
        Err(e) => warn!(%task, error = %e, "cannot write the resume marker"),
    }
}

/// Takes `task`'s kept work dir, if there is one and it still exists; prunes
/// markers (and their dirs) older than [`KEEP_FOR`] on the way.
pub(crate) async fn take(work_root: &Path, task: TaskId) -> Option<Kept> {
    prune(work_root).await;
    let path = marker(work_root, task);
    let text = tokio::fs::read_to_string(&path).await.ok()?;
    let _ = tokio::fs::remove_file(&path).await;
    let kept: Kept = match serde_json::from_str(&text) {
        Ok(k) => k,
        Err(e) => {
            warn!(%task, error = %e, "unreadable resume marker ignored");
            return None;
        }
    };
    if !kept.dir.starts_with(work_root) || !tokio::fs::try_exists(&kept.dir).await.ok()? {
        return None;
    }
    Some(kept)
}

/// Removes markers older than [`KEEP_FOR`] and the dirs they kept.
async fn prune(work_root: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(work_root).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some(MARKER_SUFFIX) {
            continue;
        }
        let old = entry
            .metadata()
            .await
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > KEEP_FOR);
        if !old {
            continue;
        }
        if let Ok(text) = tokio::fs::read_to_string(&path).await
            && let Ok(kept) = serde_json::from_str::<Kept>(&text)
            && kept.dir.starts_with(work_root)
        {
            let _ = tokio::fs::remove_dir_all(&kept.dir).await;
        }
        let _ = tokio::fs::remove_file(&path).await;
        debug!(marker = %path.display(), "stale resume marker pruned");
    }
}

/// Unix time now, ms.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The progress message of a paused task.
pub(crate) fn waiting_message(until_ms: u64) -> String {
    format!("waiting: rate_limited until {until_ms}")
}

/// Waits `pause`, reporting `waiting: rate_limited` (with the run's last
/// `activity`) for the assignment every [`PAUSE_KEEPALIVE`]. `Err` with the
/// reason when stopped meanwhile.
pub(crate) async fn pause(
    pause: Duration,
    a: &Assignment,
    activity: Option<Activity>,
    stop: &mut oneshot::Receiver<StopReason>,
    events: &mpsc::Sender<RunnerEvent>,
) -> Result<(), StopReason> {
    let (task_id, fence) = (a.task_id, a.fence);
    let until_ms = now_ms().saturating_add(u64::try_from(pause.as_millis()).unwrap_or(u64::MAX));
    info!(%task_id, pause_ms = pause.as_millis() as u64, until_ms, "rate limited: pausing, then resuming the session");
    let deadline = tokio::time::Instant::now() + pause;
    loop {
        let report = RunnerEvent::Progress(ProgressReport {
            task_id,
            fence,
            percent: 0.0,
            message: waiting_message(until_ms),
            live: Liveness {
                activity: activity.clone(),
                waiting: Some(Waiting {
                    reason: "rate_limited".into(),
                    until_ms: Some(until_ms),
                    detail: None,
                }),
            },
        });
        if events.send(report).await.is_err() {
            return Err(StopReason::Shutdown);
        }
        let next = (tokio::time::Instant::now() + PAUSE_KEEPALIVE).min(deadline);
        tokio::select! {
            () = tokio::time::sleep_until(next) => {
                if next >= deadline {
                    return Ok(());
                }
            }
            r = &mut *stop, if !stop.is_terminated() => {
                return Err(r.unwrap_or(StopReason::Shutdown));
            }
        }
    }
}

/// What a run of the CLI said about its session.
#[derive(Debug, Default)]
pub(crate) struct Ran {
    /// Its session id, from its verdict or its first events.
    pub(crate) session: Option<String>,
    /// It stopped on the provider's rate limit.
    pub(crate) rate_limit: Option<crate::output::RateLimit>,
    /// Its last activity, from its stream.
    pub(crate) activity: Option<torch_core::Activity>,
}

/// The first 64 KiB of a log file (empty when unreadable).
pub(crate) async fn read_head(path: &Path) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    if let Ok(f) = tokio::fs::File::open(path).await {
        let _ = f.take(64 * 1024).read_to_end(&mut buf).await;
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_kept_dir_is_taken_once_and_stale_markers_are_pruned() {
        let root = tempfile::tempdir().unwrap();
        let task = TaskId::from_uuid(uuid::Uuid::now_v7());
        let dir = root.path().join(format!("{task}-1"));
        tokio::fs::create_dir_all(&dir).await.unwrap();
        let kept = Kept {
            dir: dir.clone(),
            session: "s-1".into(),
        };
        keep(root.path(), task, &kept).await;
        assert_eq!(take(root.path(), task).await, Some(kept.clone()));
        assert_eq!(take(root.path(), task).await, None, "taken once");

        // A dir outside the work root is never resumed (nor removed).
        let outside = Kept {
            dir: std::env::temp_dir(),
            session: "s-2".into(),
        };
        keep(root.path(), task, &outside).await;
        assert_eq!(take(root.path(), task).await, None);

        // A stale marker goes with its dir.
        keep(root.path(), task, &kept).await;
        let old = SystemTime::now() - KEEP_FOR - Duration::from_secs(60);
        let f = std::fs::File::options()
            .write(true)
            .open(marker(root.path(), task))
            .unwrap();
        f.set_modified(old).unwrap();
        assert_eq!(take(root.path(), task).await, None);
        assert!(!dir.exists(), "pruned with its marker");
    }
}
