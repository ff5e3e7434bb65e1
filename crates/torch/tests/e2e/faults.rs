//! Agent failures: crash (`kill -9`) and a frozen agent whose lease expires.

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::harness::{Agent, Api, Hub, TestDir, fast_backoff, pid_alive, read_pids, secs};

const SHORT_LEASE: [(&str, &str); 2] = [
    ("TORCH_HUB__LEASE", "1s"),
    ("TORCH_HUB__HEARTBEAT", "300ms"),
];

fn kinds(api: &Api, task: &str) -> Vec<Value> {
    api.events("")
        .into_iter()
        .filter(|e| e["task_id"] == task)
        .collect()
}

/// One line per event, for failure messages.
fn show(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "\n  #{} {} agent={} {}",
                e["id"], e["kind"], e["agent_id"], e["data"]
            )
        })
        .collect()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

#[test]
fn kill9_agent_mid_task_requeues_and_kills_processes() {
    let dir = TestDir::new("kill9_agent");
    let hub = Hub::start(&dir, &SHORT_LEASE);
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    let out = dir.subdir("out");
    let mut a = Agent::start(&dir, &hub.url, &token, "a", "sh", 1);
    let a_id = api.agent_id(&dir, "a");

    // Attempt 1 records the shell's pid and a background child's pid, then
    // waits forever; later attempts succeed at once.
    let script = r#"echo $$ > "$OUT/pid.$TORCH_ATTEMPT"; if [ "$TORCH_ATTEMPT" -ge 2 ]; then exit 0; fi; sleep 60 & echo $! >> "$OUT/pid.$TORCH_ATTEMPT"; wait"#;
    let id = api
        .submit(vec![json!({
            "name": "victim",
            "command": ["sh", "-c", script],
            "skills": ["sh"],
            "max_retries": 2,
            "backoff": fast_backoff(),
            "env": {"OUT": out},
        })])
        .remove(0);
    api.wait_state(&dir, &id, "running", secs(20));
    let pid_file = out.join("pid.1");
    let pids = dir.wait_for("attempt 1 to record two pids", secs(10), || {
        let p = read_pids(&pid_file);
        (p.len() == 2).then_some(p)
    });
    assert!(
        pids.iter().all(|&p| pid_alive(p)),
        "task processes run: {pids:?}"
    );

    a.kill9();
    dir.wait_for(
        &format!("task processes {pids:?} to die after the agent was killed"),
        secs(10),
        || pids.iter().all(|&p| !pid_alive(p)).then_some(()),
    );

    let _b = Agent::start(&dir, &hub.url, &token, "b", "sh", 1);
    let b_id = api.agent_id(&dir, "b");
    let done = api.wait_state(&dir, &id, "succeeded", secs(30));
    assert_eq!(
        done["attempt"], 2,
        "succeeded on the second attempt: {done}"
    );
    assert_eq!(
        done["last_agent_id"],
        b_id.as_str(),
        "the retry ran on agent b"
    );
    assert!(out.join("pid.2").exists(), "attempt 2 ran");

    let evs = kinds(&api, &id);
    let succeeded = of_kind(&evs, "task.succeeded");
    assert_eq!(
        succeeded.len(),
        1,
        "exactly one task.succeeded:{}",
        show(&evs)
    );
    assert_eq!(succeeded[0]["agent_id"], b_id.as_str());
    let expired = of_kind(&evs, "task.lease_expired");
    assert!(
        !expired.is_empty(),
        "a task.lease_expired event:{}",
        show(&evs)
    );
    let assigned: Vec<&str> = of_kind(&evs, "task.assigned")
        .iter()
        .map(|e| e["agent_id"].as_str().expect("agent_id"))
        .collect();
    assert_eq!(
        assigned,
        vec![a_id.as_str(), b_id.as_str()],
        "assigned to a, then b"
    );
}

#[test]
fn stale_fence_refused_after_lease_expiry() {
    let dir = TestDir::new("stale_fence");
    let hub = Hub::start(&dir, &SHORT_LEASE);
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    let a = Agent::start(&dir, &hub.url, &token, "a", "sh", 1);
    let a_id = api.agent_id(&dir, "a");

    let script = r#"if [ "$TORCH_ATTEMPT" -ge 2 ]; then exit 0; fi; sleep 2.5"#;
    let id = api
        .submit(vec![json!({
            "name": "slow",
            "command": ["sh", "-c", script],
            "skills": ["sh"],
            "max_retries": 2,
            "backoff": fast_backoff(),
        })])
        .remove(0);
    api.wait_state(&dir, &id, "running", secs(20));
    a.signal(Signal::SIGSTOP);

    dir.wait_for("the frozen agent's lease to expire", secs(15), || {
        (!api.task_events(&id, "task.lease_expired").is_empty()).then_some(())
    });
    let _b = Agent::start(&dir, &hub.url, &token, "b", "sh", 1);
    let b_id = api.agent_id(&dir, "b");
    // The retry must go to b: a has sent nothing since its lease expired.
    let second = dir.wait_for("the retried attempt to be assigned", secs(15), || {
        api.task_events(&id, "task.assigned").get(1).cloned()
    });
    assert_eq!(
        second["agent_id"],
        b_id.as_str(),
        "the retry after a's lease expired went to agent a again, although a has sent no \
         heartbeat since (a = {a_id}, b = {b_id}); events:{}",
        show(&kinds(&api, &id))
    );
    let done = api.wait_state(&dir, &id, "succeeded", secs(30));
    assert_eq!(done["last_agent_id"], b_id.as_str());

    a.signal(Signal::SIGCONT);
    let refused = dir.wait_for(
        "agent a's late report to be refused as stale",
        secs(30),
        || {
            api.task_events(&id, "task.stale_report_refused")
                .into_iter()
                .find(|e| e["agent_id"] == a_id.as_str())
        },
    );

    let evs = kinds(&api, &id);
    let assigned = of_kind(&evs, "task.assigned");
    let fence_of = |agent: &str| -> u64 {
        assigned
            .iter()
            .find(|e| e["agent_id"] == agent)
            .and_then(|e| e["data"]["fence"].as_u64())
            .unwrap_or_else(|| panic!("an assignment to {agent}:{}", show(&evs)))
    };
    let (a_fence, b_fence) = (fence_of(&a_id), fence_of(&b_id));
    assert!(
        b_fence > a_fence,
        "b's lease has a newer fence ({b_fence} > {a_fence})"
    );
    assert_eq!(
        refused["data"]["fence"], a_fence,
        "the refused report carried a's fence"
    );
    let succeeded = of_kind(&evs, "task.succeeded");
    assert_eq!(
        succeeded.len(),
        1,
        "exactly one task.succeeded:{}",
        show(&evs)
    );
    assert_eq!(
        succeeded[0]["agent_id"],
        b_id.as_str(),
        "success recorded from b"
    );
    assert_eq!(
        succeeded[0]["data"]["fence"], b_fence,
        "success under b's fence"
    );
    let after = api.task(&id);
    assert_eq!(
        after["state"], "succeeded",
        "the stale report changed nothing: {after}"
    );
    assert_eq!(after["last_agent_id"], b_id.as_str());
}
