//! Tampering with the audit log behind the store's back, with rusqlite on
//! the real file: each kind of change is caught, and `verify_store` names
//! the first entry where it shows.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, params};
use tempfile::TempDir;
use torch_store::audit::chain::{entry_hash, sign_checkpoint};
use torch_store::audit::{AuditReport, verify_store};
use torch_store::sqlite::{SqliteOptions, SqliteStore};
use torch_store::{AuditCheckpoint, AuditStore, NewAudit};

const N: u64 = 20;

fn entry(n: u64) -> NewAudit {
    NewAudit {
        at_ms: 1_700_000_000_000 + n,
        actor: format!("token:{n:012}"),
        role: "admin".into(),
        action: "task.submit".into(),
        target: format!("/api/v1/tasks/{n}"),
        outcome: "allowed".into(),
        detail: "{\"status\":201}".into(),
        ..NewAudit::default()
    }
}

/// A store with entries 1..=N and the checkpoint of its head.
async fn fresh() -> (TempDir, PathBuf, AuditCheckpoint) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("torch.db");
    let s = SqliteStore::open(&path, SqliteOptions::default()).expect("open");
    for n in 1..=N {
        s.audit_append(vec![entry(n)]).await.expect("append");
    }
    let head = s.audit_head().await.expect("head");
    let cp = sign_checkpoint(&SigningKey::from_bytes(&[1; 32]), head.size, &head.hash, 5);
    drop(s);
    (dir, path, cp)
}

async fn verify(path: &Path, cp: Option<&AuditCheckpoint>) -> AuditReport {
    let s = SqliteStore::open(path, SqliteOptions::default()).expect("open");
    verify_store(&s, cp).await.expect("verify")
}

fn bad_at(r: &AuditReport) -> (u64, String) {
    let p = r.problem.as_ref().expect("a problem is reported");
    assert!(!r.ok);
    (p.seq, p.kind.clone())
}

#[tokio::test]
async fn untouched_log_verifies() {
    let (_d, path, cp) = fresh().await;
    let r = verify(&path, Some(&cp)).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.entries, N);
}

#[tokio::test]
async fn modified_entry_is_named() {
    let (_d, path, _) = fresh().await;
    Connection::open(&path)
        .expect("db")
        .execute("UPDATE audit_log SET outcome = 'refused' WHERE seq = 7", [])
        .expect("edit");
    assert_eq!(bad_at(&verify(&path, None).await), (7, "modified".into()));
}

#[tokio::test]
async fn modified_entry_with_recomputed_hash_shows_at_the_next() {
    let (_d, path, _) = fresh().await;
    let conn = Connection::open(&path).expect("db");
    let prev: String = conn
        .query_row("SELECT prev FROM audit_log WHERE seq = 7", [], |r| r.get(0))
        .expect("prev");
    let mut e = entry(7);
    e.actor = "token:someoneelse".into();
    let hash = entry_hash(7, &e, &prev);
    conn.execute(
        "UPDATE audit_log SET actor = ?1, hash = ?2 WHERE seq = 7",
        params![e.actor, hash],
    )
    .expect("edit");
    assert_eq!(
        bad_at(&verify(&path, None).await),
        (8, "chain_broken".into())
    );
}

#[tokio::test]
async fn deleted_entry_is_named() {
    let (_d, path, _) = fresh().await;
    Connection::open(&path)
        .expect("db")
        .execute("DELETE FROM audit_log WHERE seq = 5", [])
        .expect("delete");
    assert_eq!(bad_at(&verify(&path, None).await), (5, "deleted".into()));
}

#[tokio::test]
async fn deleted_prefix_without_a_cut_checkpoint_is_caught() {
    let (_d, path, _) = fresh().await;
    Connection::open(&path)
        .expect("db")
        .execute("DELETE FROM audit_log WHERE seq <= 3", [])
        .expect("delete");
    assert_eq!(bad_at(&verify(&path, None).await), (1, "deleted".into()));
}

#[tokio::test]
async fn inserted_entry_is_named() {
    let (_d, path, _) = fresh().await;
    let conn = Connection::open(&path).expect("db");
    // Make room after entry 9 and insert a well-formed entry there,
    // chained on entry 9 with its own correct hash: the forgery shows at
    // the entry that follows it.
    conn.execute("UPDATE audit_log SET seq = -seq - 1 WHERE seq >= 10", [])
        .expect("shift");
    conn.execute("UPDATE audit_log SET seq = -seq WHERE seq < 0", [])
        .expect("shift back");
    let prev: String = conn
        .query_row("SELECT hash FROM audit_log WHERE seq = 9", [], |r| r.get(0))
        .expect("prev");
    let e = entry(99);
    let hash = entry_hash(10, &e, &prev);
    conn.execute(
        "INSERT INTO audit_log (seq, at_ms, actor, role, tenant, action, target, outcome, reason, detail, prev, hash)
         VALUES (10, ?1, ?2, ?3, '', ?4, ?5, ?6, '', ?7, ?8, ?9)",
        params![e.at_ms as i64, e.actor, e.role, e.action, e.target, e.outcome, e.detail, prev, hash],
    )
    .expect("insert");
    assert_eq!(bad_at(&verify(&path, None).await), (11, "modified".into()));
}

#[tokio::test]
async fn reordered_entries_are_named() {
    let (_d, path, _) = fresh().await;
    let conn = Connection::open(&path).expect("db");
    // Swap entries 12 and 13 (their seqs too, so they read in the new order).
    conn.execute("UPDATE audit_log SET seq = -1 WHERE seq = 12", [])
        .expect("swap");
    conn.execute("UPDATE audit_log SET seq = 12 WHERE seq = 13", [])
        .expect("swap");
    conn.execute("UPDATE audit_log SET seq = 13 WHERE seq = -1", [])
        .expect("swap");
    assert_eq!(bad_at(&verify(&path, None).await), (12, "modified".into()));
}

#[tokio::test]
async fn truncation_is_caught_against_an_exported_checkpoint() {
    let (_d, path, cp) = fresh().await;
    let conn = Connection::open(&path).expect("db");
    conn.execute("DELETE FROM audit_log WHERE seq > 15", [])
        .expect("truncate");
    // Without the export, a clean cut at the end looks like a shorter log.
    assert!(verify(&path, None).await.ok);
    assert_eq!(
        bad_at(&verify(&path, Some(&cp)).await),
        (16, "truncated".into())
    );
}

#[tokio::test]
async fn forged_checkpoint_is_caught() {
    let (_d, path, mut cp) = fresh().await;
    cp.size -= 1;
    assert_eq!(
        bad_at(&verify(&path, Some(&cp)).await),
        (N - 1, "checkpoint_forged".into())
    );
}

#[tokio::test]
async fn retention_cut_keeps_the_log_verifiable() {
    let (_d, path, cp) = fresh().await;
    let s = SqliteStore::open(&path, SqliteOptions::default()).expect("open");
    let ten = s.audit_range(9, 1).await.expect("range").remove(0);
    let key = SigningKey::from_bytes(&[1; 32]);
    assert_eq!(
        s.audit_cut(sign_checkpoint(&key, 10, &ten.hash, 6))
            .await
            .expect("cut"),
        10
    );
    let r = verify_store(&s, Some(&cp)).await.expect("verify");
    assert!(r.ok, "{r:?}");
    assert_eq!((r.first_seq, r.entries), (11, N - 10));
    drop(s);
    // Removing the cut's checkpoint leaves the start of the log unexplained.
    Connection::open(&path)
        .expect("db")
        .execute("DELETE FROM audit_checkpoints WHERE size = 10", [])
        .expect("delete");
    assert_eq!(bad_at(&verify(&path, None).await), (1, "deleted".into()));
}
