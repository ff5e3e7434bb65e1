//! Per-agent memory, inheritance with its audit event, and task parents.

use crate::{
    AGENTS_SPAWNING, EventLog, MemoryLimits, MemoryStore, StoreError, TaskFilter, TaskStore,
};

use super::*;

fn small() -> MemoryLimits {
    MemoryLimits {
        max_key_bytes: 16,
        max_value_bytes: 32,
        max_keys: 3,
        max_total_bytes: 64,
    }
}

/// Agent memory writes, reads and lists, and refuses writes past its limits.
pub async fn memory_put_get_list_and_limits(h: &impl Harness) {
    let s = h.open();
    let lim = small();
    assert!(
        s.memory_get(aid(1), "k".into())
            .await
            .expect("get")
            .is_none()
    );
    s.memory_put(aid(1), "repo".into(), "torch".into(), lim, NOW)
        .await
        .expect("put");
    s.memory_put(aid(1), "style".into(), "terse".into(), lim, NOW + 1)
        .await
        .expect("put");
    // Overwrite keeps one key.
    s.memory_put(aid(1), "repo".into(), "nova".into(), lim, NOW + 2)
        .await
        .expect("overwrite");
    let got = s.memory_get(aid(1), "repo".into()).await.expect("get");
    let got = got.expect("present");
    assert_eq!((got.value.as_str(), got.updated_ms), ("nova", NOW + 2));
    assert_eq!(got.inherited_from, None);
    let keys: Vec<String> = s
        .memory_list(aid(1))
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["repo", "style"]);
    // Another agent's memory is separate.
    assert!(s.memory_list(aid(2)).await.expect("list").is_empty());

    // Per-entry and total limits refuse the write and change nothing.
    let big = "x".repeat(33);
    let err = s
        .memory_put(aid(1), "big".into(), big, lim, NOW)
        .await
        .expect_err("value too large");
    assert!(matches!(err, StoreError::LimitExceeded(_)), "{err}");
    let err = s
        .memory_put(aid(1), "k".repeat(17), "v".into(), lim, NOW)
        .await
        .expect_err("key too long");
    assert!(matches!(err, StoreError::LimitExceeded(_)), "{err}");
    s.memory_put(aid(1), "third".into(), "3".into(), lim, NOW)
        .await
        .expect("third key");
    let err = s
        .memory_put(aid(1), "fourth".into(), "4".into(), lim, NOW)
        .await
        .expect_err("too many keys");
    assert!(err.to_string().contains("keys"), "{err}");
    assert_eq!(s.memory_list(aid(1)).await.expect("list").len(), 3);
}

/// Inheriting memory copies the keys that exist, marks them, and records the event.
pub async fn memory_inherit_copies_and_audits(h: &impl Harness) {
    let s = h.open();
    let lim = MemoryLimits::default();
    for (k, v) in [
        ("repo.url", "git://x"),
        ("repo.branch", "main"),
        ("secret", "s"),
    ] {
        s.memory_put(aid(1), k.into(), v.into(), lim, NOW)
            .await
            .expect("put");
    }
    let before = s.last_event_id().await.expect("last");
    let copied = s
        .memory_inherit(
            aid(1),
            aid(2),
            vec!["repo.url".into(), "repo.branch".into(), "missing".into()],
            lim,
            NOW + 5,
        )
        .await
        .expect("inherit");
    assert_eq!(copied, ["repo.url", "repo.branch"]);
    let child = s.memory_list(aid(2)).await.expect("list");
    assert_eq!(child.len(), 2);
    assert!(child.iter().all(|e| e.inherited_from == Some(aid(1))));
    assert!(child.iter().all(|e| e.updated_ms == NOW + 5));
    assert!(
        s.memory_get(aid(2), "secret".into())
            .await
            .expect("get")
            .is_none()
    );
    // The audit trail names both agents and the keys.
    let evs = s
        .events(before, vec![AGENTS_SPAWNING.into()], 10)
        .await
        .expect("events");
    let ev = evs
        .iter()
        .find(|e| e.kind == EventKind::AgentMemoryInherited.name())
        .expect("audit event");
    assert_eq!(ev.agent, Some(aid(2)));
    assert!(ev.data.contains(&aid(1).to_string()), "{}", ev.data);
    assert!(ev.data.contains("repo.branch"), "{}", ev.data);
    // Inheriting past the child's limits copies nothing.
    let tight = MemoryLimits { max_keys: 2, ..lim };
    let err = s
        .memory_inherit(aid(1), aid(2), vec!["secret".into()], tight, NOW + 6)
        .await
        .expect_err("over the key limit");
    assert!(matches!(err, StoreError::LimitExceeded(_)), "{err}");
    assert!(
        s.memory_get(aid(2), "secret".into())
            .await
            .expect("get")
            .is_none()
    );
}

/// Delegated tasks name their parent and are listed under it.
pub async fn parent_links_children(h: &impl Harness) {
    let s = h.open();
    s.submit(vec![task(1, &[])], NOW).await.expect("parent");
    let mut c2 = task(2, &[]);
    c2.parent = Some(tid(1));
    let mut c3 = task(3, &[]);
    c3.parent = Some(tid(1));
    s.submit(vec![c2, c3, task(4, &[])], NOW + 1)
        .await
        .expect("children");
    let rec = s.get_task(tid(2)).await.expect("get").expect("present");
    assert_eq!(rec.parent, Some(tid(1)));
    let page = s
        .list_tasks(TaskFilter {
            parent: Some(tid(1)),
            ..TaskFilter::default()
        })
        .await
        .expect("list");
    let mut ids: Vec<_> = page.tasks.iter().map(|t| t.id).collect();
    ids.sort();
    assert_eq!(ids, [tid(2), tid(3)]);
    let orphan = s.get_task(tid(4)).await.expect("get").expect("present");
    assert_eq!(orphan.parent, None);
}
