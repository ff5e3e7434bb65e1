use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::streams::{ALL_STREAMS, HUBS_HANDOFF};
use super::*;

const A1: &str = "00000000-0000-7000-8000-000000000001";
const A2: &str = "00000000-0000-7000-8000-000000000002";
const T1: &str = "00000000-0000-7000-8000-0000000000a1";

/// The data each kind is written with today (by the store or the hub): a
/// new kind fails to compile here until it has a sample.
fn sample(kind: EventKind) -> Value {
    use EventKind::*;
    match kind {
        TaskSubmitted => json!({"name": "build", "priority": 0, "state": "queued"}),
        TaskReady => json!({"released_by": T1}),
        TaskRetried => json!({"state": "blocked", "was": "dead"}),
        TaskAssigned => json!({"agent": A1, "attempt": 1, "fence": 7, "explanation": {
            "policy": "torch", "chosen": A1, "mode": "greedy",
            "weights": {"skill": 0.75, "load": 0.25},
            "candidates": [{"agent": A1, "total": 0.875, "used": 0,
                            "factors": {"skill": 1.0, "load": 0.5}}],
            "feasible": 1,
            "rejected": [{"agent": A2, "reason": {"kind": "missing-skill", "skill": "rust"}}],
            "rejected_counts": {"missing-skill": 1}, "not_examined": 0}}),
        TaskStarted => json!({"fence": 7}),
        TaskProgress => json!({"fence": 7, "message": null, "percent": 50.0}),
        TaskStalled => json!({"fence": 7, "requeue": false, "stall_ms": 60000}),
        TaskSucceeded => json!({"agent": A1, "attempt": 1, "fence": 7}),
        TaskFailed | TaskLeaseExpired => json!({"attempt": 1, "fence": 7, "reason": "exit 1",
            "retry_at_ms": 1_700_000_001_000u64, "will_retry": true}),
        TaskDead => json!({"attempt": 3, "cause": "failed", "failed_agents": [A1, A2],
            "fence": 9, "reason": "failed on 2 agents: exit 1"}),
        TaskCancelled => json!({"reason": "by request", "was": "running"}),
        TaskStaleReportRefused => json!({"current_fence": 9, "fence": 7, "state": "queued"}),
        AgentJoined => json!({"labels": {"zone": "a"}, "name": "a1",
            "skills": [{"name": "rust", "level": 0.9}], "slots": 2}),
        AgentLeft => json!({"reason": "connection closed"}),
        AgentSpawned => json!({"depth": 1, "name": "helper-1", "node": "local",
            "parent_agent": A1, "parent_task": null, "reason": "spawn",
            "template": "helper", "tenant": "default"}),
        AgentSpawnRefused => json!({"depth": 2, "limit": "children", "message": "too many",
            "parent_agent": A1, "parent_task": T1, "reason": "spawn", "template": "helper"}),
        AgentSpawnFailed => json!({"error": "no such file", "node": "local", "template": "helper"}),
        AgentReady => json!({"node": "local", "reason": "autoscale", "spawn_ms": 120,
            "template": "helper"}),
        AgentMemoryInherited => json!({"from": A1, "keys": ["ctx"], "to": A2}),
        AgentDraining => json!({"node": "local", "reason": "idle", "template": "helper"}),
        AgentTerminated | AgentExited => json!({"code": null, "node": "local", "pid": 4242,
            "reason": "agent process killed by signal 9", "requested": false, "signal": 9,
            "template": "helper"}),
        ScalingDecision => json!({"template": "helper", "at_ms": 1_700_000_000_000u64,
            "action": "up", "count": 2, "reason": "queue of 4", "inputs": {"queue_depth": 4,
            "oldest_wait_ms": 800, "arrivals": 4, "busy_slots": 1, "total_slots": 1,
            "running": 1, "starting": 0, "reclaimable": 0},
            "forecast": null, "demand": 3.0, "desired": 3}),
        MessageSent | MessageDelivered | MessageRelayed | MessageBounced | MessageRefused => {
            json!({"delivery": "direct", "from": A1, "id": T1, "kind": "text",
                "reason": null, "to": A2})
        }
        IdentityRefused => json!({"claimed": A1, "reason": "another key"}),
        AlertFiring | AlertResolved => json!({"alert": "TorchNodeCpuHigh",
            "fired_ms": 1_700_000_000_000u64, "severity": "warning", "signal": "node_cpu_ratio",
            "summary": "a node's CPU use is above 80 %", "threshold": 0.8, "value": 0.93}),
        TasksHandedOff => json!({"hub": "http://127.0.0.1:7000#x1", "tasks": [T1]}),
        LockAcquired => json!({"fence": 3, "holder": format!("task:{T1}"), "lock": "db",
            "mode": "exclusive", "path": false}),
        LockReleased => json!({"fence": 3, "holder": "operator:admin", "lock": "src/**",
            "path": true, "reason": "expired"}),
        WaitDeadlock => json!({"cycle": [
            {"from": format!("task:{T1}"), "to": "operator:ops", "kind": "lock", "lock": "db"},
            {"from": "operator:ops", "to": format!("task:{T1}"), "kind": "task"}],
            "refused": format!("task:{T1}")}),
        HelpRequested => json!({"id": "h1", "level": 0.5, "offered": [A1, A2],
            "requester": format!("task:{T1}"), "skill": "rust", "timeout_ms": 60000}),
        HelpAccepted => json!({"accepted_agent": A2, "accepted_by": "operator:ops", "id": "h1",
            "requester": format!("task:{T1}")}),
        HelpExpired => json!({"id": "h1", "reason": "no template covers rust",
            "requester": "operator:ops", "skill": "rust"}),
        HelpEscalated => json!({"helper": A2, "id": "h1", "requester": "operator:ops",
            "skill": "rust", "template": "rusty"}),
        TeamFormed => json!({"explanation": {"total_cost": 0.5}, "integration_branch": null,
            "leader": A1, "leader_reason": "the spec names role \"backend\" to lead",
            "members": [{"agent_id": A1, "cost": 0.25, "name": "api", "role": "backend",
                "subtask": T1, "template": null}],
            "repository": null, "task": T1, "term": 1}),
        TeamFormationFailed => json!({"reason": "role \"design\" cannot be covered",
            "role": "design", "task": null}),
        TeamLeaderChanged => json!({"leader": A2, "previous": A1, "reason": "the leader left",
            "task": T1, "term": 2}),
        TeamMemberReplaced => json!({"member": {"agent_id": A2, "cost": 0.25, "name": "db2",
            "role": "data", "subtask": null, "template": "sql"}, "previous": A1,
            "reason": "member db (data) left", "replaced_subtask": T1, "task": T1}),
        TeamMemberLost => json!({"agent_id": A1, "reason": "nobody covers sql", "role": "data",
            "task": T1}),
        TeamProgress => json!({"done": 1, "progress": 0.5, "task": T1, "total": 2}),
        TeamDisbanded => json!({"state": "succeeded", "stopped": [A2], "task": T1}),
        MergeQueued | MergeLanded | MergeConflict => json!({"branch": "torch/x/1",
            "commit": null, "follow_up": null, "into": "torch/team/x", "paths": ["a.txt"],
            "subtask": T1, "task": T1}),
    }
}

#[test]
fn names_streams_and_parsing_agree() {
    let names: BTreeSet<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(names.len(), EventKind::ALL.len(), "names are unique");
    for &k in EventKind::ALL {
        assert_eq!(k.name().parse::<EventKind>(), Ok(k));
        assert_eq!(k.to_string(), k.name());
        let json = serde_json::to_value(k).expect("serialise");
        assert_eq!(json, Value::from(k.name()), "serialised as its name");
        assert_eq!(serde_json::from_value::<EventKind>(json).expect("read"), k);
        assert!(
            ALL_STREAMS.contains(&k.stream()) || k.stream() == HUBS_HANDOFF,
            "{k} is on a known stream"
        );
    }
    assert_eq!(
        "task.exploded".parse::<EventKind>(),
        Err(UnknownEventKind("task.exploded".into()))
    );
    assert!(serde_json::from_value::<EventKind>(json!("agent.")).is_err());
    assert_eq!(EventKind::TaskAssigned.stream(), "nova.torch.tasks.active");
    assert_eq!(EventKind::TasksHandedOff.stream(), HUBS_HANDOFF);
}

#[test]
fn each_kind_reads_its_data_exactly_and_writes_it_back() {
    for &k in EventKind::ALL {
        let data = sample(k);
        let typed = EventData::read(k, &data).unwrap_or_else(|| panic!("{k} reads {data}"));
        assert_eq!(typed.kind(), k);
        assert_eq!(
            serde_json::to_value(&typed).expect("serialise"),
            data,
            "{k}"
        );
    }
}

#[test]
fn data_that_the_payload_does_not_reproduce_is_not_typed() {
    let k = EventKind::TaskSucceeded;
    let mut more = sample(k);
    more["duration_ms"] = json!(12);
    assert_eq!(EventData::read(k, &more), None, "a field it does not know");
    let less = json!({"attempt": 1, "fence": 7});
    assert_eq!(EventData::read(k, &less), None, "`agent` absent, not null");
    let int = json!({"fence": 7, "message": null, "percent": 50});
    assert_eq!(
        EventData::read(EventKind::TaskProgress, &int),
        None,
        "an integer where a float is written"
    );
    assert_eq!(EventData::read(k, &json!("done")), None);
    assert_eq!(
        EventData::read(EventKind::TaskStarted, &sample(k)),
        None,
        "another kind's data"
    );
    // `agent.draining` has two shapes, both read.
    let unmanaged = json!({"managed": false, "reason": "by request"});
    assert!(EventData::read(EventKind::AgentDraining, &unmanaged).is_some());
}
