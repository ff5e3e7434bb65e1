//! The audit log through the real `torch` binary: API calls, a refused one
//! (wrong role), and task transitions show in `torch audit list --json`;
//! `torch audit verify --json` says ok through the API and offline, and an
//! exported checkpoint catches entries cut from the end.

use serde_json::{Value, json};

use crate::harness::{Hub, TestDir, secs};

fn entries(v: &Value) -> Vec<Value> {
    v["entries"].as_array().cloned().unwrap_or_default()
}

#[test]
fn api_calls_and_refusals_are_audited_and_the_chain_verifies() {
    let dir = TestDir::new("audit_e2e");
    let hub = Hub::start(&dir, &[("TORCH_AUDIT__CHECKPOINT_INTERVAL", "200ms")]);
    let cli = hub.cli(&dir);
    let submitter = hub.token(&dir, "submitter");
    let task = hub
        .api()
        .with_token(Some(&submitter))
        .submit(vec![json!({"name": "audited", "command": ["true"]})])
        .remove(0);
    // Refused: a submitter may not create tokens.
    let refused = hub
        .api()
        .with_token(Some(&submitter))
        .post("/api/v1/tokens", &json!({"role": "admin"}));
    assert_eq!(refused.status, 403);

    let list = dir.wait_for("the refusal to be audited", secs(10), || {
        let l = cli.json(&["audit", "list", "--limit", "1000"]);
        entries(&l)
            .iter()
            .any(|e| e["action"] == "token.create" && e["outcome"] == "refused")
            .then_some(l)
    });
    let all = entries(&list);
    let create = all
        .iter()
        .find(|e| e["action"] == "token.create" && e["outcome"] == "allowed")
        .expect("the admin's token create is audited");
    assert_eq!(create["role"], "admin");
    assert!(
        create["actor"].as_str().unwrap_or("").starts_with("token:"),
        "{create}"
    );
    let no = all
        .iter()
        .find(|e| e["action"] == "token.create" && e["outcome"] == "refused")
        .expect("refusal");
    assert_eq!(no["role"], "submitter");
    assert!(
        no["reason"].as_str().unwrap_or("").contains("forbidden"),
        "{no}"
    );
    assert_eq!(no["target"], "/api/v1/tokens");
    let submit = all
        .iter()
        .find(|e| e["action"] == "task.submit")
        .expect("the submission is audited");
    assert_eq!(submit["outcome"], "allowed");
    assert_eq!(submit["role"], "submitter");
    assert!(
        all.iter()
            .any(|e| e["action"] == "task.submitted" && e["target"] == task.as_str()),
        "the new task is audited: {list}"
    );
    let actor = no["actor"].as_str().expect("actor").to_owned();
    let mine = cli.json(&["audit", "list", "--actor", &actor, "--action", "token."]);
    assert!(!entries(&mine).is_empty());
    assert!(entries(&mine).iter().all(|e| e["actor"] == actor.as_str()));

    let report = cli.json(&["audit", "verify"]);
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["entries"].as_u64().unwrap_or(0) >= 4, "{report}");

    let cp = dir.wait_for("a signed checkpoint", secs(10), || {
        let out = cli.run(&["audit", "checkpoint", "--json"]);
        (out.code == 0).then(|| out.json())
    });
    assert!(cp["size"].as_u64().unwrap_or(0) >= 1, "{cp}");
    assert_eq!(cp["key"].as_str().map(str::len), Some(64), "{cp}");
    let saved = dir.write("checkpoint.json", &cp.to_string());
    let key = std::fs::metadata(dir.join("hub-data/audit.key")).expect("the key file");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
    let with = cli.json(&[
        "audit",
        "verify",
        "--checkpoint",
        saved.to_str().unwrap_or(""),
    ]);
    assert_eq!(with["ok"], true, "{with}");

    // Offline, on the SQLite file: cut the newest entries behind the hub's
    // back; the exported checkpoint catches it.
    let db = dir.join("hub-data/torch.db");
    let offline = cli.json(&["audit", "verify", "--store", db.to_str().unwrap_or("")]);
    assert_eq!(offline["ok"], true, "{offline}");
    let size = cp["size"].as_u64().unwrap_or(0);
    {
        let conn = rusqlite::Connection::open(&db).expect("open db");
        conn.execute("DELETE FROM audit_checkpoints", [])
            .expect("drop cps");
        conn.execute("DELETE FROM audit_log WHERE seq >= ?1", [size as i64])
            .expect("truncate");
    }
    let out = cli.run(&[
        "audit",
        "verify",
        "--json",
        "--store",
        db.to_str().unwrap_or(""),
        "--checkpoint",
        saved.to_str().unwrap_or(""),
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let bad = out.json();
    assert_eq!(bad["ok"], false);
    assert_eq!(bad["problem"]["kind"], "truncated", "{bad}");
    assert_eq!(bad["problem"]["seq"], size, "{bad}");
}

/// A change the API acknowledged is in the audit log even when the hub is
/// `kill -9`ed the moment after: the middleware answers a `POST` only once
/// its entry is stored.
#[test]
fn an_acknowledged_change_is_audited_across_a_kill_9() {
    let dir = TestDir::new("audit_kill9");
    let mut hub = Hub::start_fixed_port(&dir, &[]);
    let api = hub.api();
    let mut names = Vec::new();
    for i in 0..20 {
        let name = format!("k9-{i}");
        let r = api.post(
            "/api/v1/tokens",
            &json!({"role": "submitter", "name": name}),
        );
        assert_eq!(r.status, 201, "token create {i}");
        names.push(name);
    }
    hub.kill9();
    hub.restart(&dir);
    let list = hub.cli(&dir).json(&[
        "audit",
        "list",
        "--action",
        "token.create",
        "--limit",
        "1000",
    ]);
    let allowed = entries(&list)
        .iter()
        .filter(|e| e["outcome"] == "allowed")
        .count();
    assert!(
        allowed >= names.len(),
        "{allowed} token creates audited of {} acknowledged: {list}",
        names.len()
    );
    let verify = hub.cli(&dir).json(&["audit", "verify"]);
    assert_eq!(verify["ok"], true, "{verify}");
}
