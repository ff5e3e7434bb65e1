//! Lock grants (fenced, durable) and help requests (the first accept wins).

use crate::help::help_state;
use crate::{HelpAccept, HelpRecord, HelpStore, LockRecord, LockStore};

use super::*;

fn lock(name: &str, fence: u64, holder: &str) -> LockRecord {
    LockRecord {
        name: name.into(),
        path: name.contains('*'),
        holder: holder.into(),
        mode: "exclusive".into(),
        fence,
        granted_ms: NOW,
        expires_ms: NOW + 30_000,
    }
}

fn help(id: &str, expires_ms: u64) -> HelpRecord {
    HelpRecord {
        id: id.into(),
        requester: format!("task:{}", tid(1)),
        requester_agent: Some(aid(1)),
        skill: "rust".into(),
        level: 0.5,
        text: "review my borrow checker fight".into(),
        offered: vec![aid(2), aid(3)],
        created_ms: NOW,
        expires_ms,
        state: help_state::OPEN.into(),
        accepted_by: None,
        accepted_agent: None,
        closed_ms: None,
        helper: None,
    }
}

/// Grants are fenced (a fence not above the last is refused), renew and
/// release of a holder that is not stored answer false, and a reopened
/// store has every holder and the counter.
pub async fn locks_fenced_and_durable(h: &impl Harness) {
    let s = h.open();
    let empty = s.lock_load().await.expect("load");
    assert_eq!((empty.last_fence, empty.holders.len()), (0, 0));
    assert!(
        s.lock_grant(lock("db", 1, "operator:a"))
            .await
            .expect("grant")
    );
    assert!(
        s.lock_grant(lock("src/api/**", 2, "task:x"))
            .await
            .expect("grant")
    );
    // A stale owner's grant with an old fence changes nothing.
    assert!(
        !s.lock_grant(lock("db", 2, "operator:b"))
            .await
            .expect("grant")
    );
    assert!(
        !s.lock_grant(lock("other", 1, "operator:b"))
            .await
            .expect("grant")
    );
    assert!(
        s.lock_renew("db".into(), 1, NOW + 60_000)
            .await
            .expect("renew")
    );
    assert!(
        !s.lock_renew("db".into(), 2, NOW).await.expect("renew"),
        "fence of another lock"
    );
    assert!(!s.lock_renew("gone".into(), 9, NOW).await.expect("renew"));
    assert!(!s.lock_release("db".into(), 7).await.expect("release"));
    assert!(
        s.lock_grant(lock("db2", 3, "operator:a"))
            .await
            .expect("grant")
    );
    assert!(s.lock_release("db2".into(), 3).await.expect("release"));
    assert!(
        !s.lock_release("db2".into(), 3)
            .await
            .expect("release twice")
    );
    drop(s);
    let s = h.open();
    let snap = s.lock_load().await.expect("load");
    assert_eq!(
        snap.last_fence, 3,
        "the counter survives the release of the last grant"
    );
    let mut db = lock("db", 1, "operator:a");
    db.expires_ms = NOW + 60_000;
    assert_eq!(snap.holders, vec![db, lock("src/api/**", 2, "task:x")]);
    assert!(
        !s.lock_grant(lock("db3", 3, "operator:a"))
            .await
            .expect("grant")
    );
    assert!(
        s.lock_grant(lock("db3", 4, "operator:a"))
            .await
            .expect("grant")
    );
}

/// The first accept wins and every later one sees it closed; an accept
/// past the expiry is too late; a close happens once and only while open;
/// all of it survives a reopen.
pub async fn help_first_accept_wins(h: &impl Harness) {
    let s = h.open();
    s.help_put(help("h1", NOW + 10_000)).await.expect("put");
    s.help_put(help("h2", NOW + 10_000)).await.expect("put");
    s.help_put(help("h3", NOW + 10_000)).await.expect("put");
    let got = s.help_get("h1".into()).await.expect("get").expect("exists");
    assert_eq!(got, help("h1", NOW + 10_000));
    assert_eq!(
        s.help_accept("nope".into(), "task:z".into(), None, NOW)
            .await
            .expect("accept"),
        HelpAccept::NotFound
    );
    let first = s
        .help_accept("h1".into(), "task:b".into(), Some(aid(2)), NOW + 5)
        .await
        .expect("accept");
    let HelpAccept::Accepted(rec) = first else {
        panic!("first accept lost: {first:?}")
    };
    assert_eq!(rec.state, help_state::ACCEPTED);
    assert_eq!(
        (
            rec.accepted_by.as_deref(),
            rec.accepted_agent,
            rec.closed_ms
        ),
        (Some("task:b"), Some(aid(2)), Some(NOW + 5))
    );
    let second = s
        .help_accept("h1".into(), "task:c".into(), Some(aid(3)), NOW + 6)
        .await
        .expect("accept");
    let HelpAccept::Closed(rec) = second else {
        panic!("second accept won: {second:?}")
    };
    assert_eq!(rec.accepted_by.as_deref(), Some("task:b"));
    // Expired: too late to accept; closing works once.
    let late = s
        .help_accept("h2".into(), "task:b".into(), None, NOW + 10_000)
        .await
        .expect("accept");
    assert!(matches!(late, HelpAccept::TooLate(_)), "{late:?}");
    assert!(
        s.help_close(
            "h2".into(),
            help_state::ESCALATED.into(),
            Some("agent-x".into()),
            NOW + 10_001
        )
        .await
        .expect("close")
    );
    assert!(
        !s.help_close("h2".into(), help_state::EXPIRED.into(), None, NOW + 10_002)
            .await
            .expect("close")
    );
    assert!(
        !s.help_close("h1".into(), help_state::EXPIRED.into(), None, NOW + 10_002)
            .await
            .expect("close")
    );
    let open: Vec<String> = s
        .help_list(true, 100)
        .await
        .expect("list")
        .into_iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(open, ["h3"]);
    drop(s);
    let s = h.open();
    let all = s.help_list(false, 100).await.expect("list");
    let states: Vec<(&str, &str)> = all
        .iter()
        .map(|h| (h.id.as_str(), h.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [("h1", "accepted"), ("h2", "escalated"), ("h3", "open")]
    );
    assert_eq!(all[1].helper.as_deref(), Some("agent-x"));
    assert_eq!(all[1].closed_ms, Some(NOW + 10_001));
    let newest = s.help_list(false, 2).await.expect("list");
    assert_eq!(newest.len(), 2);
}

/// Concurrent accepts of one request: exactly one wins.
pub async fn help_concurrent_accepts(h: &impl Harness) {
    let s = std::sync::Arc::new(h.open());
    s.help_put(help("race", NOW + 10_000)).await.expect("put");
    let mut joins = Vec::new();
    for i in 0..8u64 {
        let s = s.clone();
        joins.push(tokio::spawn(async move {
            s.help_accept(
                "race".into(),
                format!("task:{}", tid(10 + i)),
                Some(aid(10 + i)),
                NOW + i,
            )
            .await
            .expect("accept")
        }));
    }
    let mut won = 0;
    for j in joins {
        if matches!(j.await.expect("join"), HelpAccept::Accepted(_)) {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}
