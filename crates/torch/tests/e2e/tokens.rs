//! The token lifecycle with real processes: `torch token create | list |
//! revoke`, and a revoked token's agent is disconnected and cannot come back.

use std::time::Instant;

use crate::harness::{Agent, Hub, TestDir, secs};

/// Revoke the token of a connected `torch agent`: the hub closes its session
/// at once, the agent (told `unauthorized`) exits, and a new agent process
/// with the same token is refused.
#[test]
fn revoking_an_agents_token_disconnects_it_for_good() {
    let dir = TestDir::new("token_revoke");
    let hub = Hub::start(&dir, &[]);
    let cli = hub.cli(&dir);
    let created = cli.json(&[
        "token",
        "create",
        "--role",
        "agent",
        "--name",
        "worker",
        "--expires",
        "30d",
    ]);
    let token = created["token"].as_str().expect("token").to_string();
    let id = created["id"].as_str().expect("id").to_string();
    let mut agent = Agent::start(&dir, &hub.url, &token, "w1", "sh", 1);
    let api = hub.api();
    let agent_id = api.agent_id(&dir, "w1");

    let listed = cli.json(&["token", "list"]);
    let mine = listed["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == id.as_str())
        .cloned()
        .expect("the new token is listed");
    assert_eq!(mine["name"], "worker");
    assert_eq!(mine["role"], "agent");
    assert_eq!(mine["state"], "active");
    assert!(mine["expires_ms"].as_u64().is_some(), "{mine}");
    assert!(mine["last_used_ms"].as_u64().is_some(), "{mine}");
    assert!(!listed.to_string().contains(&token), "never the secret");
    let table = cli.run(&["token", "list"]);
    table.assert_code(0, "torch token list");
    assert!(
        table.stdout.contains("LAST USED") && table.stdout.contains(&id),
        "{}",
        table.stdout
    );

    let revoked_at = Instant::now();
    cli.run(&["token", "revoke", &id])
        .assert_code(0, "torch token revoke");
    let code = dir.wait_for("the agent to exit", secs(10), || agent.exited());
    let gone_after = revoked_at.elapsed();
    eprintln!("agent exited {gone_after:?} after the revocation (code {code})");
    assert_ne!(code, 0, "an agent refused by the hub exits with an error");
    let log = std::fs::read_to_string(dir.join("agent-w1.log")).unwrap_or_default();
    assert!(log.contains("revoked"), "the agent says why:\n{log}");
    dir.wait_for("the hub to drop the agent", secs(10), || {
        let agents = api.get("/api/v1/agents");
        let me = agents["agents"]
            .as_array()?
            .iter()
            .find(|a| a["id"] == agent_id.as_str())
            .cloned()?;
        (me["state"] == "gone" || me["state"] == "disconnected").then_some(())
    });

    // The same token cannot open another session.
    let mut again = Agent::start(&dir, &hub.url, &token, "w2", "sh", 1);
    let code = dir.wait_for("the second agent to give up", secs(10), || again.exited());
    assert_ne!(code, 0);
    let state = cli.json(&["token", "list"]);
    let mine = state["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == id.as_str())
        .cloned()
        .expect("still listed");
    assert_eq!(mine["state"], "revoked");
}
