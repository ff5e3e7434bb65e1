//! Direct signed messages between agents (issue 14): real `torch agent`
//! processes talking over their own endpoints, tasks using `torch msg`, the
//! hub paused with SIGSTOP, a recipient killed and brought back, and forged
//! envelopes posted straight to an agent's endpoint.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use ed25519_dalek::SigningKey;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use torch_api::msg::Envelope;

use crate::harness::{Agent, Api, Hub, TestDir, secs};

/// An agent whose tasks may write the test dir's `out`. They run in the
/// default `hub` network (a namespace with only loopback): `torch msg`
/// reaches the agent's own endpoint through the per-task agent socket.
fn messenger(dir: &TestDir, hub: &str, token: &str, name: &str, skill: &str, slots: u32) -> Agent {
    let out = dir.subdir("out");
    let out = out.to_string_lossy().into_owned();
    Agent::start_args(
        dir,
        hub,
        token,
        name,
        skill,
        slots,
        &["--sandbox-write", &out],
    )
}

/// A task on an agent with `skill` running `script` under `sh -c`.
fn task(name: &str, skill: &str, script: &str) -> Value {
    json!({
        "name": name,
        "skills": [skill],
        "command": ["sh", "-c", script],
        "max_retries": 0,
        "timeout": "5m",
    })
}

/// Sends `n` messages to `peer` on thread `t` once `go` exists (after one
/// warm-up message, then touching `ready`), then waits until its own inbox
/// holds `n` messages of thread `t` and writes them to `out`.
fn exchange_script(peer: &str, n: u32, ready: &Path, go: &Path, out: &Path) -> String {
    format!(
        r#"set -e
torch msg send --to {peer} --thread warm --json warm > /dev/null
touch {ready}
while [ ! -e {go} ]; do sleep 0.05; done
i=0
while [ $i -lt {n} ]; do torch msg send --to {peer} --thread t --json "m$i" >> sent.jsonl; i=$((i+1)); done
c=0
while [ "$c" -lt {n} ]; do torch msg inbox --thread t --json > {out}.tmp; c=$(grep -c '"id":' {out}.tmp || true); sleep 0.1; done
grep -c '"delivery": "direct"' sent.jsonl > {out}.direct
mv {out}.tmp {out}"#,
        ready = ready.display(),
        go = go.display(),
        out = out.display(),
    )
}

/// The inbox JSON a task wrote: checks it holds exactly `n` verified
/// messages from `from`, bodies `m0..m{n-1}` once each, delivered `how`.
fn check_inbox(path: &Path, n: u32, from: &str, how: &str) {
    let v: Value =
        serde_json::from_str(&fs::read_to_string(path).expect("inbox file")).expect("inbox JSON");
    let msgs = v["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), n as usize, "every message arrived once");
    let ids: BTreeSet<&str> = msgs.iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids.len(), n as usize, "no duplicate ids");
    let bodies: BTreeSet<String> = msgs
        .iter()
        .map(|m| m["body"].as_str().expect("text body").to_string())
        .collect();
    let want: BTreeSet<String> = (0..n).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, want, "each body once");
    for m in msgs {
        assert_eq!(m["verified"], true, "{m}");
        assert_eq!(m["from"], from, "{m}");
        assert_eq!(m["delivery"], how, "{m}");
        assert!(m["from_name"].is_string(), "{m}");
    }
}

#[test]
fn a_thousand_messages_flow_directly_while_the_hub_is_stopped() {
    let dir = TestDir::new("msg_direct_hub_stopped");
    // The hub is paused for as long as the exchange takes: its leases must
    // outlast that, or the tasks' leases expire the moment it resumes.
    let hub = Hub::start(&dir, &[("TORCH_HUB__LEASE", "10m")]);
    let token = hub.token(&dir, "agent");
    let _a = messenger(&dir, &hub.url, &token, "a", "ma", 2);
    let _b = messenger(&dir, &hub.url, &token, "b", "mb", 2);
    let api = hub.api();
    let (ida, idb) = (api.agent_id(&dir, "a"), api.agent_id(&dir, "b"));

    let peers = hub.cli(&dir).json(&["peers"]);
    let cards = peers["peers"].as_array().expect("peers");
    for id in [&ida, &idb] {
        let card = cards.iter().find(|c| c["agent_id"] == **id).expect("card");
        assert!(
            card["endpoint"]
                .as_str()
                .is_some_and(|e| e.starts_with("http://")),
            "{card}"
        );
        assert_eq!(
            card["public_key"].as_str().map(str::len),
            Some(64),
            "{card}"
        );
        assert!(
            card["skills"].is_array() && card["task_ids"].is_array(),
            "{card}"
        );
    }
    let go = dir.subdir("out").join("go");
    let (ready_a, ready_b) = (
        dir.subdir("out").join("ready-a"),
        dir.subdir("out").join("ready-b"),
    );
    let (out_a, out_b) = (
        dir.subdir("out").join("inbox-a.json"),
        dir.subdir("out").join("inbox-b.json"),
    );
    let ids = api.submit(vec![
        task(
            "talk-a",
            "ma",
            &exchange_script(&idb, 500, &ready_a, &go, &out_a),
        ),
        task(
            "talk-b",
            "mb",
            &exchange_script(&ida, 500, &ready_b, &go, &out_b),
        ),
    ]);
    dir.wait_for("both tasks to warm up", secs(60), || {
        (ready_a.exists() && ready_b.exists()).then_some(())
    });
    let cards = hub.cli(&dir).json(&["peers"]);
    let held: usize = cards["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|c| c["task_ids"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(held, 2, "peer cards list the tasks each agent runs");

    hub.signal(Signal::SIGSTOP);
    fs::write(&go, "").expect("go");
    dir.wait_for("1,000 messages with the hub stopped", secs(240), || {
        (out_a.exists() && out_b.exists()).then_some(())
    });
    hub.signal(Signal::SIGCONT);
    check_inbox(&out_a, 500, &idb, "direct");
    check_inbox(&out_b, 500, &ida, "direct");
    for out in [&out_a, &out_b] {
        let direct = fs::read_to_string(out.with_extension("json.direct")).expect("count");
        assert_eq!(direct.trim(), "500", "every send answered direct");
    }
    for id in &ids {
        api.wait_state(&dir, id, "succeeded", secs(60));
    }
}

#[test]
fn relayed_messages_reach_a_recipient_that_comes_back() {
    let dir = TestDir::new("msg_relayed");
    let hub = Hub::start(&dir, &[]);
    let token = hub.token(&dir, "agent");
    let _a = messenger(&dir, &hub.url, &token, "a", "ra", 2);
    let mut b = messenger(&dir, &hub.url, &token, "b", "rb", 2);
    let api = hub.api();
    let (ida, idb) = (api.agent_id(&dir, "a"), api.agent_id(&dir, "b"));
    b.kill9();
    dir.wait_for("b to be disconnected", secs(20), || {
        let v = api.get("/api/v1/agents");
        v["agents"]
            .as_array()?
            .iter()
            .any(|x| x["id"] == idb.as_str() && x["state"] == "disconnected")
            .then_some(())
    });
    let script = format!(
        r#"set -e
i=0
while [ $i -lt 50 ]; do torch msg send --to {idb} --thread t --json "m$i" >> sent.jsonl; i=$((i+1)); done
test "$(grep -c '"delivery": "relayed"' sent.jsonl)" = 50"#
    );
    let sent = api.submit(vec![task("send", "ra", &script)]);
    api.wait_state(&dir, &sent[0], "succeeded", secs(120));
    let kept = hub.cli(&dir).json(&["msg", "list", "--agent", &idb]);
    assert_eq!(
        kept["messages"].as_array().map(Vec::len),
        Some(50),
        "{kept}"
    );

    // Back with the same work dir: the same key and id.
    let _b = messenger(&dir, &hub.url, &token, "b", "rb", 2);
    assert_eq!(
        api.agent_id(&dir, "b"),
        idb,
        "the agent came back as itself"
    );
    let out = dir.subdir("out").join("inbox-b.json");
    let read = format!(
        r#"c=0
while [ "$c" -lt 50 ]; do torch msg inbox --thread t --json > {out}.tmp; c=$(grep -c '"id":' {out}.tmp || true); sleep 0.1; done
mv {out}.tmp {out}"#,
        out = out.display()
    );
    let r = api.submit(vec![task("read", "rb", &read)]);
    api.wait_state(&dir, &r[0], "succeeded", secs(120));
    check_inbox(&out, 50, &ida, "relayed");
    dir.wait_for("the hub to forget delivered messages", secs(20), || {
        let kept = hub.cli(&dir).json(&["msg", "list", "--agent", &idb]);
        kept["messages"].as_array()?.is_empty().then_some(())
    });
    let kinds: Vec<Value> = api.events("nova.torch.collaboration.peer");
    let count = |k: &str| kinds.iter().filter(|e| e["kind"] == k).count();
    assert_eq!(count("message.relayed"), 50);
    assert!(count("message.delivered") >= 50);
    // Each relayed message counts once as delivered, when b stored it (the
    // sender's `message.sent` reports may still be on their way).
    dir.wait_for("messages_delivered_rate to reach 1", secs(20), || {
        let a = &api.get("/api/v1/stats")["autonomy"];
        (a["messages_delivered_rate"] == 1.0).then_some(())
    });
    assert!(
        kinds.iter().all(|e| e["data"].get("body").is_none()),
        "metadata only"
    );
}

fn post(endpoint: &str, env: &Value) -> (u16, Value) {
    let r = Api::new(endpoint, None)
        .request(
            "POST",
            "/peer/v1/messages",
            Some(env.to_string().as_bytes()),
        )
        .expect("post to the agent");
    let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, body)
}

fn signed(env: &Envelope, key: &SigningKey) -> Value {
    serde_json::to_value(env.clone().sign(key).expect("sign")).expect("json")
}

#[test]
fn forged_replayed_and_misattributed_envelopes_are_refused_with_a_reason() {
    let dir = TestDir::new("msg_refusals");
    let hub = Hub::start(&dir, &[]);
    let token = hub.token(&dir, "agent");
    let _a = messenger(&dir, &hub.url, &token, "a", "fa", 1);
    let _b = messenger(&dir, &hub.url, &token, "b", "fb", 1);
    let _c = messenger(&dir, &hub.url, &token, "c", "fc", 1);
    let api = hub.api();
    let (ida, idb, idc) = (
        api.agent_id(&dir, "a"),
        api.agent_id(&dir, "b"),
        api.agent_id(&dir, "c"),
    );
    let peers = api.get("/api/v1/peers");
    let endpoint = peers["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["agent_id"] == ida.as_str())
        .and_then(|p| p["endpoint"].as_str())
        .expect("a's endpoint")
        .to_string();
    // The test plays agent c with c's own key, read from its data dir.
    let hex_key = fs::read_to_string(dir.join("work-c/agent-data/identity.key")).expect("c's key");
    let bytes: [u8; 32] = hex_decode(hex_key.trim()).try_into().expect("32 bytes");
    let c_key = SigningKey::from_bytes(&bytes);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let env = |from: &str, sent_ms: u64| Envelope {
        id: uuid::Uuid::now_v7(),
        from: from.to_string(),
        to: ida.parse().expect("id"),
        thread: None,
        reply_to: None,
        kind: "text".into(),
        body: json!("hello"),
        sent_ms,
        ttl_ms: 3_600_000,
    };

    let good = signed(&env(&idc, now), &c_key);
    assert_eq!(
        post(&endpoint, &good).0,
        200,
        "a genuine envelope is stored"
    );
    let (status, again) = post(&endpoint, &good);
    assert_eq!(
        (status, again["status"].as_str()),
        (200, Some("duplicate")),
        "stored once"
    );

    let mut flipped = signed(&env(&idc, now), &c_key);
    flipped["body"] = json!("hellp");
    let (status, why) = post(&endpoint, &flipped);
    assert_eq!((status, why["code"].as_str()), (403, Some("bad_signature")));

    let other = SigningKey::from_bytes(&[7; 32]);
    let (status, why) = post(&endpoint, &signed(&env(&idc, now), &other));
    assert_eq!(
        (status, why["code"].as_str()),
        (403, Some("bad_signature")),
        "wrong key"
    );

    let (status, why) = post(&endpoint, &signed(&env(&idb, now), &c_key));
    assert_eq!(
        (status, why["code"].as_str()),
        (403, Some("bad_signature")),
        "claimed id"
    );

    let old = signed(&env(&idc, now - 20 * 60 * 1000), &c_key);
    let (status, why) = post(&endpoint, &old);
    assert_eq!(
        (status, why["code"].as_str()),
        (409, Some("replay")),
        "outside the window"
    );

    let (status, why) = post(&endpoint, &signed(&env("not-an-agent", now), &c_key));
    assert_eq!(
        (status, why["code"].as_str()),
        (403, Some("unknown_sender"))
    );

    // Another process claims a's id with its own key: the hub refuses it.
    let claim = dir.subdir("work-x/agent-data");
    fs::write(claim.join("agent_id"), &ida).expect("write claimed id");
    let mut x = messenger(&dir, &hub.url, &token, "x", "fx", 1);
    let events = dir.wait_for("the claim to be refused", secs(20), || {
        let ev = api.events("nova.torch.collaboration.peer");
        ev.iter()
            .any(|e| e["kind"] == "identity.refused" && e["data"]["claimed"] == ida.as_str())
            .then_some(ev)
    });
    x.kill9();

    let refused: Vec<String> = dir.wait_for("refusal events", secs(20), || {
        let ev = api.events("nova.torch.collaboration.peer");
        let reasons: Vec<String> = ev
            .iter()
            .filter(|e| e["kind"] == "message.refused")
            .filter_map(|e| e["data"]["reason"].as_str().map(str::to_string))
            .collect();
        (reasons.len() >= 6).then_some(reasons)
    });
    let with = |s: &str| refused.iter().filter(|r| r.contains(s)).count();
    assert_eq!(with("bad signature"), 3, "{refused:?}");
    assert_eq!(with("replay window"), 1, "{refused:?}");
    assert_eq!(with("duplicate"), 1, "{refused:?}");
    assert_eq!(with("unknown sender"), 1, "{refused:?}");
    let claim = events
        .iter()
        .find(|e| e["kind"] == "identity.refused")
        .expect("identity event");
    assert!(
        claim["data"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("another key")),
        "{claim}"
    );
    let delivered = api
        .events("nova.torch.collaboration.peer")
        .into_iter()
        .filter(|e| e["kind"] == "message.delivered" && e["data"]["from"] == idc.as_str())
        .count();
    assert_eq!(delivered, 1, "only the genuine envelope was delivered");
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}
