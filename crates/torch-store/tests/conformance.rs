//! The store conformance suite (`torch_store::conformance`), run against
//! [`SqliteStore`] in a temp dir, plus SQLite-only cases: schema versions
//! and a real `kill -9` crash test.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tempfile::TempDir;
use torch_store::conformance::{self, Harness, NOW, task, tid};
use torch_store::sqlite::{SqliteOptions, SqliteStore};
use torch_store::{StoreError, TaskStore};

struct Sqlite {
    _dir: TempDir,
    path: PathBuf,
}

impl Harness for Sqlite {
    type S = SqliteStore;
    fn open(&self) -> SqliteStore {
        SqliteStore::open(&self.path, SqliteOptions::default()).expect("open store")
    }
}

fn sqlite() -> Sqlite {
    let dir = tempfile::tempdir().expect("tempdir");
    // A missing parent directory is created by `open`.
    let path = dir.path().join("data").join("torch.db");
    Sqlite { _dir: dir, path }
}

macro_rules! conformance {
    ($($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                conformance::$module::$case(&sqlite()).await;
            }
        )*
    };
}

conformance::every_case!(conformance);

#[tokio::test]
async fn refuses_a_newer_schema() {
    let h = sqlite();
    drop(h.open());
    {
        let conn = rusqlite::Connection::open(&h.path).expect("open raw");
        conn.pragma_update(None, "user_version", 99)
            .expect("set version");
    }
    let err = SqliteStore::open(&h.path, SqliteOptions::default())
        .err()
        .expect("newer schema refused");
    let StoreError::Corrupt(msg) = &err else {
        panic!("expected Corrupt, got {err:?}");
    };
    assert!(msg.contains("99") && msg.contains("newer"), "{msg}");
    let not_a_db = h.path.with_file_name("junk.db");
    std::fs::write(&not_a_db, vec![7u8; 8192]).expect("write junk");
    let err = SqliteStore::open(&not_a_db, SqliteOptions::default()).err();
    assert!(matches!(err, Some(StoreError::Corrupt(_))), "{err:?}");
}

/// A file written by the first schema (before routing data) opens, upgrades,
/// and its tasks keep working with the new columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_a_v1_database() {
    use torch_core::{OutcomeKind, TaskState};

    let h = sqlite();
    let scripts = torch_store::sqlite::migration_scripts();
    assert!(scripts.len() >= 2);
    std::fs::create_dir_all(h.path.parent().expect("dir")).expect("mkdir");
    {
        let conn = rusqlite::Connection::open(&h.path).expect("open raw");
        conn.execute_batch(scripts[0]).expect("schema v1");
        conn.pragma_update(None, "user_version", 1)
            .expect("version");
        // Inserted the way the v1 build did.
        let spec = r#"{"name":"old","command":["true"],"skills":["sh"],"tenant":"team-c"}"#;
        for (id, state) in [(1, "queued"), (2, "succeeded")] {
            conn.execute(
                "INSERT INTO tasks (id, name, state, priority, tenant, idempotency_key, spec,
                                    skills, max_retries, backoff, deps_pending, created_ms,
                                    updated_ms)
                 VALUES (?1, 'old', ?2, 1, 'team-c', NULL, ?3, '[{\"name\":\"sh\",\"min\":0.0}]',
                         3, NULL, 0, ?4, ?4)",
                rusqlite::params![tid(id).to_string(), state, spec, NOW as i64],
            )
            .expect("insert v1 task");
        }
    }
    let s = h.open();
    {
        let conn = rusqlite::Connection::open(&h.path).expect("open raw");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, scripts.len() as i64);
    }
    let rec = s.get_task(tid(1)).await.expect("get").expect("kept");
    assert_eq!((rec.state, rec.name.as_str()), (TaskState::Queued, "old"));
    assert_eq!(
        (rec.analysis, rec.explanation, rec.failed_agents),
        (None, None, vec![])
    );
    let snap = s.load().await.expect("load");
    assert_eq!(snap.queued.len(), 1);
    let q = &snap.queued[0];
    assert_eq!((q.id, q.priority, q.tenant.as_str()), (tid(1), 1, "team-c"));
    assert_eq!(q.skills, vec!["sh".parse().expect("skill")]);
    assert!(q.avoid.is_empty() && q.preferred.is_empty());

    // The old task runs, fails and is requeued with the new columns.
    let l = conformance::lease(&s, 1, 4, NOW).await;
    let out = s
        .finish(vec![conformance::report(&l, OutcomeKind::Failed)], NOW)
        .await
        .expect("finish");
    let torch_store::FinishResult::Recorded(e) = &out[0] else {
        panic!("{out:?}");
    };
    assert_eq!(e.state, TaskState::Queued);
    assert_eq!(
        e.requeued.as_ref().map(|q| q.avoid.clone()),
        Some(vec![conformance::aid(4)])
    );
    // New tasks carry routing as usual.
    let mut t = task(3, &[2]);
    t.routing = Some(torch_store::Routing {
        tenant: "team-c".into(),
        ..Default::default()
    });
    let out = s.submit(vec![t], NOW).await.expect("submit");
    assert_eq!(
        out[0].ready.as_ref().map(|q| q.tenant.as_str()),
        Some("team-c")
    );
    drop(s);
    // Reopening an upgraded file changes nothing.
    let s = h.open();
    assert_eq!(
        s.get_task(tid(1))
            .await
            .expect("get")
            .expect("kept")
            .failed_agents,
        vec![conformance::aid(4)]
    );
}

/// Environment variable that turns [`crash_child`] into the writer process.
const CRASH_DB: &str = "TORCH_STORE_CRASH_DB";
/// When set to `N`, the child ends itself abruptly right after printing its
/// `N`th acknowledgement (exit status [`SELF_CRASH_CODE`]).
const CRASH_AFTER: &str = "TORCH_STORE_CRASH_AFTER";
const SELF_CRASH_CODE: i32 = 86;

/// The child half of the crash tests: when `CRASH_DB` is set, submits batches
/// from several tasks and prints `ACK <id>` for each task only after `submit`
/// returned. Without the variable it does nothing.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CRASH_DB) else {
        return;
    };
    let crash_after: Option<usize> = std::env::var(CRASH_AFTER)
        .ok()
        .map(|n| n.parse().expect("number"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let opts = SqliteOptions {
            synchronous_full: true,
            ..SqliteOptions::default()
        };
        let store = Arc::new(SqliteStore::open(Path::new(&path), opts).expect("open"));
        let printed = Arc::new(AtomicUsize::new(0));
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..8u64 {
            let store = Arc::clone(&store);
            let printed = Arc::clone(&printed);
            writers.spawn(async move {
                // Bounded so an orphaned child cannot run forever.
                for i in 0..50_000u64 {
                    let batch = (0..32)
                        .map(|k| task((w << 32) | (i << 5) | k, &[]))
                        .collect();
                    let out = store.submit(batch, NOW).await.expect("submit");
                    let mut stdout = std::io::stdout().lock();
                    for s in &out {
                        writeln!(stdout, "ACK {}", s.id).expect("stdout");
                    }
                    stdout.flush().expect("flush");
                    let total = printed.fetch_add(out.len(), Ordering::SeqCst) + out.len();
                    if crash_after.is_some_and(|n| total >= n) {
                        // No destructors, no closing of the store: the
                        // writer thread dies wherever it is.
                        std::process::exit(SELF_CRASH_CODE);
                    }
                }
            });
        }
        while writers.join_next().await.is_some() {}
    });
}

/// Runs [`crash_child`] against a fresh file until it has acknowledged
/// `acks` tasks, crashes it (`kill -9` from here, or its own abrupt exit),
/// and checks that every acknowledged task is in the reopened store.
fn crash_and_check(acks: usize, self_crash: bool) {
    use std::os::unix::process::ExitStatusExt;

    let h = sqlite();
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CRASH_DB, &h.path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if self_crash {
        cmd.env(CRASH_AFTER, acks.to_string());
    }
    let mut child = cmd.spawn().expect("spawn child");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut acked = Vec::new();
    let mut line = String::new();
    let mut read_acks = |limit: usize, acked: &mut Vec<String>| {
        while acked.len() < limit {
            line.clear();
            if out.read_line(&mut line).expect("read child") == 0 {
                break;
            }
            // A line cut short by the crash was never fully acknowledged.
            // (The first ACK shares its line with libtest's `test crash_child ... `.)
            let ack = line.split_once("ACK ").map(|(_, rest)| rest);
            if let Some(id) = ack.and_then(|l| l.strip_suffix('\n')) {
                acked.push(id.to_string());
            }
        }
    };
    read_acks(acks, &mut acked);
    assert_eq!(acked.len(), acks, "child stopped early");
    if !self_crash {
        child.kill().expect("kill -9");
    }
    let status = child.wait().expect("wait");
    if self_crash {
        assert_eq!(status.code(), Some(SELF_CRASH_CODE), "{status:?}");
    } else {
        assert_eq!(
            status.signal(),
            Some(9),
            "child was killed, not finished: {status:?}"
        );
    }
    // Whatever the child printed before it died was acknowledged too.
    read_acks(usize::MAX, &mut acked);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = SqliteStore::open(&h.path, SqliteOptions::default()).expect("reopen");
        let mut lost = Vec::new();
        for id in &acked {
            let id = id.parse().expect("task id");
            if store.get_task(id).await.expect("get").is_none() {
                lost.push(id);
            }
        }
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged tasks lost: {lost:?}",
            lost.len(),
            acked.len()
        );
        let page = store
            .list_tasks(torch_store::TaskFilter::default())
            .await
            .expect("list");
        let stored: u64 = page.counts.values().sum();
        assert!(
            stored >= acked.len() as u64,
            "{stored} stored < {} acked",
            acked.len()
        );
        assert!(
            store
                .get_task(tid(0xffff_ffff_ffff))
                .await
                .expect("get")
                .is_none()
        );
    });
    let conn = rusqlite::Connection::open(&h.path).expect("open raw");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    assert_eq!(check, "ok");
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    crash_and_check(3000, false);
}

/// Ending the process just after an acknowledgement leaves the least time
/// for a commit that was acknowledged early to reach the file, so a few rounds
/// make an ack-before-commit bug very likely to show.
#[test]
fn acknowledged_writes_survive_crash_right_after_ack() {
    for round in 0..8 {
        crash_and_check(256 + round * 96, true);
    }
}
