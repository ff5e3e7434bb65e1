//! The token lifecycle: tenant and expiry kept, listing, revocation by id,
//! last use.

use crate::{TOKEN_ID_LEN, TokenRecord, TokenStore};

use super::*;

/// Tokens keep their tenant and expiry, list oldest first, are revoked by
/// their public id (the first revocation time kept) and record their last use.
pub async fn token_lifecycle(h: &impl Harness) {
    let s = h.open();
    let admin = TokenRecord {
        hash: format!("{}{}", "a".repeat(TOKEN_ID_LEN), "1".repeat(48)),
        role: "admin".into(),
        name: "root".into(),
        created_ms: NOW,
        ..TokenRecord::default()
    };
    let sub = TokenRecord {
        hash: format!("{}{}", "b".repeat(TOKEN_ID_LEN), "2".repeat(48)),
        role: "submitter".into(),
        name: "team a".into(),
        created_ms: NOW + 1,
        tenant: Some("team-a".into()),
        expires_ms: Some(NOW + 60_000),
        ..TokenRecord::default()
    };
    let node = TokenRecord {
        hash: format!("{}{}", "c".repeat(TOKEN_ID_LEN), "3".repeat(48)),
        role: "node".into(),
        name: "rack 1".into(),
        created_ms: NOW + 2,
        ..TokenRecord::default()
    };
    for t in [&node, &sub, &admin] {
        s.put_token(t.clone()).await.expect("put");
    }
    assert_eq!(
        s.find_token(sub.hash.clone()).await.expect("find"),
        Some(sub.clone()),
        "tenant and expiry read back"
    );
    assert_eq!(s.count_tokens("node".into()).await.expect("count"), 1);
    let listed = s.list_tokens().await.expect("list");
    assert_eq!(listed, vec![admin.clone(), sub.clone(), node.clone()]);
    assert_eq!(sub.id(), "b".repeat(TOKEN_ID_LEN));
    assert!(sub.is_live(NOW + 59_999));
    assert!(!sub.is_live(NOW + 60_000), "expiry is exclusive");

    // Revoke by id; the first time stays.
    let revoked = s
        .revoke_token(sub.id().to_owned(), NOW + 10)
        .await
        .expect("revoke")
        .expect("found");
    assert_eq!(revoked.revoked_ms, Some(NOW + 10));
    assert_eq!(revoked.hash, sub.hash);
    assert!(!revoked.is_live(NOW + 11));
    let again = s
        .revoke_token(sub.id().to_owned(), NOW + 20)
        .await
        .expect("revoke")
        .expect("found");
    assert_eq!(
        again.revoked_ms,
        Some(NOW + 10),
        "the first revocation is kept"
    );
    assert_eq!(
        s.find_token(sub.hash.clone())
            .await
            .expect("find")
            .and_then(|t| t.revoked_ms),
        Some(NOW + 10)
    );
    assert_eq!(
        s.revoke_token("f".repeat(TOKEN_ID_LEN), NOW)
            .await
            .expect("revoke"),
        None,
        "unknown id"
    );
    assert_eq!(
        s.revoke_token("a".into(), NOW).await.expect("revoke"),
        None,
        "a prefix shorter than an id matches nothing"
    );
    assert_eq!(
        s.find_token(admin.hash.clone())
            .await
            .expect("find")
            .and_then(|t| t.revoked_ms),
        None,
        "other tokens untouched"
    );

    // Last use.
    s.touch_token(node.hash.clone(), NOW + 30)
        .await
        .expect("touch");
    s.touch_token("nope".into(), NOW + 30).await.expect("touch");
    assert_eq!(
        s.find_token(node.hash.clone())
            .await
            .expect("find")
            .and_then(|t| t.last_used_ms),
        Some(NOW + 30)
    );
    assert_eq!(s.find_token("nope".into()).await.expect("find"), None);
    assert_eq!(s.list_tokens().await.expect("list").len(), 3);
}
