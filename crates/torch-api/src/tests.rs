//! Round trips of today's JSON through the typed wire models: every field
//! that used to be a `serde_json::Value` reads a sample of what the hub
//! sends and writes it back to the same JSON, byte for byte inside the
//! field (its keys sorted, as a `Value` wrote them).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use torch_core::{EventData, EventKind};

use crate::node::SpawnOrder;
use crate::rest::{AgentView, AnalyzeResponse, EventPage, EventPayload, ScalingList, TaskView};

const ANALYSIS: &str = r#"{"complexity":{"level":"low","reasons":["prompt 37 bytes","3 skills required or preferred"],"score":0.2207672231590779},"history_key":{"name":"name:fix-build-#","skills":"skills:python,rust,testing"},"needs_team":false,"preferred":[{"skill":{"min":0.0,"name":"rust"},"source":"explicit"},{"skill":{"min":0.0,"name":"testing"},"source":"prompt keyword 'pytest'"}],"required":[{"min":0.5,"name":"python"}],"team_reason":null,"warnings":[]}"#;

const EXPLANATION: &str = r#"{"candidates":[{"agent":"00000000-0000-7000-9000-000000000001","factors":{"affinity":0.0,"cost":1.0,"load":0.5,"performance":0.6667,"skill":1.0},"total":0.7633,"used":1},{"agent":"00000000-0000-7000-9000-000000000002","factors":{"affinity":0.0,"cost":1.0,"load":0.25,"performance":0.5,"skill":0.9},"total":0.6525,"used":3}],"chosen":"00000000-0000-7000-9000-000000000001","feasible":2,"mode":"batch","not_examined":1,"notes":["batch of 3 tasks"],"policy":"torch","rejected":[{"agent":"00000000-0000-7000-9000-000000000003","reason":{"kind":"breaker-open","until":1700000060000}}],"rejected_counts":{"breaker-open":1,"no-free-slot":2},"weights":{"affinity":0.1,"cost":0.05,"load":0.25,"performance":0.2,"skill":0.4}}"#;

const ROUTING: &str = r#"{"breaker":{"probe_since":null,"state":"half-open"},"breaker_trips":1,"cost":0.0,"overall":{"count":3,"duration_ewma_ms":1234.5,"success_ewma":0.9},"perf":{"python":{"count":3,"duration_ewma_ms":1234.5,"success_ewma":0.9}},"recent_repositories":["git://x"],"slots":2,"used":1}"#;

const TEMPLATE: &str = r#"{"cost":0.25,"env":["HOME","CARGO_*"],"executor":{"command":["claude","-p","{prompt}"],"output":"claude-json","prompt-via":"arg"},"idle-timeout":"2m","inherit":["repo.*"],"labels":{"tier":"gpu"},"limits":{"memory":2147483648,"wall-time":"30m"},"max":8,"min":0,"outlive-parent":false,"recycle":{"after-tasks":50},"role":"implementer","scaling":{"alpha":0.5,"beta":0.3,"down-cooldown":"10s","horizon":"5s","hysteresis":0.2,"interval":"1s","predictive":true,"target-wait":"2s","up-cooldown":"2s"},"skills":["rust:0.9","python"],"slots":2,"spawn-cost":0.0}"#;

const DECISIONS: [&str; 3] = [
    r#"{"action":"down","agents":["0190a0f0-0000-7000-8000-000000000001"],"at_ms":1700000000000,"demand":0.0,"desired":1,"forecast":0.4,"inputs":{"arrivals":0,"busy_slots":0,"oldest_wait_ms":0,"queue_depth":0,"reclaimable":1,"running":2,"starting":0,"total_slots":4},"reason":"idle 60s","template":"coder"}"#,
    r#"{"action":"hold","at_ms":1700000000000,"demand":0.0,"desired":1,"forecast":null,"inputs":{"arrivals":0,"busy_slots":0,"oldest_wait_ms":0,"queue_depth":0,"reclaimable":1,"running":2,"starting":0,"total_slots":4},"reason":"idle 60s","template":"coder"}"#,
    r#"{"action":"up","at_ms":1700000000000,"count":2,"demand":0.0,"desired":1,"forecast":0.4,"inputs":{"arrivals":0,"busy_slots":0,"oldest_wait_ms":0,"queue_depth":0,"reclaimable":1,"running":2,"starting":0,"total_slots":4},"reason":"queue of 4 waits 2.1s","template":"coder"}"#,
];

const A1: &str = "00000000-0000-7000-9000-000000000001";
const T1: &str = "00000000-0000-7000-8000-000000000001";

/// Reads `sample` as `T` and writes it back: the same JSON value, and the
/// text of each of `fields` (JSON pointers) exactly as a `Value` wrote it.
fn round_trip<T: Serialize + DeserializeOwned>(sample: &str, fields: &[&str]) -> T {
    let want: Value = serde_json::from_str(sample).expect("sample is JSON");
    let typed: T = serde_json::from_str(sample).expect("sample reads as the typed model");
    assert_eq!(serde_json::to_value(&typed).expect("serialise"), want);
    let text = serde_json::to_string(&typed).expect("serialise");
    for f in fields {
        let field = want
            .pointer(f)
            .unwrap_or_else(|| panic!("{f} in the sample"));
        let name = f.rsplit('/').next().unwrap_or_default();
        let written = format!("\"{name}\":{field}");
        assert!(
            text.contains(&written),
            "{f} written as {written}\nin {text}"
        );
    }
    typed
}

fn task_view(extra: &str) -> String {
    format!(
        r#"{{"id":"{T1}","seq":3,"name":"fix-build-12","state":"assigned","priority":0,
            "attempt":1,"max_retries":2,"lease":{{"agent_id":"{A1}","fence":7}},
            "created_ms":1700000000000,"updated_ms":1700000000500,
            "spec":{{"name":"fix-build-12","command":["true"],"priority":0}}{extra}}}"#
    )
}

#[test]
fn task_views_carry_analysis_and_explanation_as_before() {
    let full = task_view(&format!(
        r#","analysis":{ANALYSIS},"explanation":{EXPLANATION}"#
    ));
    let v: TaskView = round_trip(&full, &["/analysis", "/explanation"]);
    let e = v.explanation.expect("explanation");
    assert_eq!((e.chosen.to_string(), e.candidates.len()), (A1.into(), 2));
    assert_eq!(e.candidates[1].factors[2].weight, 0.25, "weights filled in");
    assert_eq!(v.analysis.expect("analysis").required[0].name, "python");

    // Absent, they stay absent.
    let bare: TaskView = round_trip(&task_view(""), &[]);
    let text = serde_json::to_string(&bare).expect("serialise");
    assert!(
        !text.contains("analysis") && !text.contains("explanation"),
        "{text}"
    );

    // An explanation stored by a build before the compact form is read,
    // and written in the compact form.
    let old = r#"{"policy":"torch","chosen":"00000000-0000-7000-9000-000000000001",
        "mode":"greedy","candidates":[{"agent":"00000000-0000-7000-9000-000000000001",
        "total":0.5,"used":0,"factors":[{"name":"skill","value":1.0,"weight":0.5},
        {"name":"load","value":0.0,"weight":0.5}]}],"feasible":1,"rejected":[],
        "rejected_counts":{},"not_examined":0}"#;
    let v: TaskView =
        serde_json::from_str(&task_view(&format!(r#","explanation":{old}"#))).expect("read");
    let written = serde_json::to_value(&v).expect("serialise");
    assert_eq!(
        written["explanation"]["weights"],
        serde_json::json!({"load": 0.5, "skill": 0.5})
    );
    assert_eq!(
        written["explanation"]["candidates"][0]["factors"],
        serde_json::json!({"load": 0.0, "skill": 1.0})
    );
}

#[test]
fn analyses_agents_decisions_and_spawn_orders_round_trip() {
    let analyses = format!(r#"{{"analyses":[{ANALYSIS},{ANALYSIS}]}}"#);
    let a: AnalyzeResponse = round_trip(&analyses, &["/analyses"]);
    assert_eq!(a.analyses.len(), 2);

    let agent = format!(
        r#"{{"id":"{A1}","name":"a1","skills":[{{"name":"python","level":0.8}}],"slots":2,
            "running":1,"state":"busy","connected_ms":1700000000000,
            "last_seen_ms":1700000001000,"completed":3,"routing":{ROUTING}}}"#
    );
    let v: AgentView = round_trip(&agent, &["/routing"]);
    assert_eq!(v.routing.expect("routing").breaker_trips, 1);

    let decisions = format!(r#"{{"decisions":[{}]}}"#, DECISIONS.join(","));
    let list: ScalingList = round_trip(&decisions, &["/decisions"]);
    assert_eq!(list.decisions[2].desired, 1);

    let order = format!(
        r#"{{"agent_id":"{A1}","name":"coder-000001","template":"coder",
            "template_spec":{TEMPLATE},"parent_task":"{T1}","depth":1}}"#
    );
    let o: SpawnOrder = round_trip(&order, &["/template_spec"]);
    assert_eq!((o.template_spec.slots, o.template_spec.max), (2, 8));
}

#[test]
fn events_are_typed_by_kind_and_written_back_unchanged() {
    let decision = DECISIONS[2];
    let events = [
        (
            "nova.torch.tasks.queue",
            "task.submitted",
            r#"{"name":"fix-build-12","priority":0,"state":"queued"}"#.to_string(),
        ),
        (
            "nova.torch.tasks.active",
            "task.assigned",
            format!(r#"{{"agent":"{A1}","attempt":1,"explanation":{EXPLANATION},"fence":7}}"#),
        ),
        (
            "nova.torch.tasks.active",
            "task.progress",
            r#"{"fence":7,"message":null,"percent":50.0}"#.to_string(),
        ),
        (
            "nova.torch.agents.spawning",
            "agent.joined",
            r#"{"labels":{},"name":"a1","skills":[{"level":0.8,"name":"python"}],"slots":2}"#
                .to_string(),
        ),
        (
            "nova.torch.agents.scaling",
            "scaling.decision",
            decision.to_string(),
        ),
        (
            "nova.torch.agents.terminating",
            "agent.draining",
            r#"{"managed":false,"reason":"by request"}"#.to_string(),
        ),
        // A kind this build does not know, a known kind with a field it does
        // not know (a newer hub), and data the hub could not read.
        (
            "nova.torch.collaboration.help",
            "help.requested",
            r#"{"topic":"x"}"#.to_string(),
        ),
        (
            "nova.torch.tasks.completed",
            "task.succeeded",
            format!(r#"{{"agent":"{A1}","attempt":1,"duration_ms":12,"fence":7}}"#),
        ),
        (
            "nova.torch.tasks.completed",
            "task.succeeded",
            "null".to_string(),
        ),
    ];
    let page = events
        .iter()
        .enumerate()
        .map(|(i, (stream, kind, data))| {
            format!(
                r#"{{"id":{},"stream":"{stream}","kind":"{kind}","task_id":"{T1}",
                    "at_ms":1700000000000,"data":{data}}}"#,
                i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let page = format!(r#"{{"events":[{page}],"last_id":{}}}"#, events.len());
    let data: Vec<String> = (0..events.len())
        .map(|i| format!("/events/{i}/data"))
        .collect();
    let fields: Vec<&str> = data.iter().map(String::as_str).collect();
    let page: EventPage = round_trip(&page, &fields);

    let kinds: Vec<Option<EventKind>> = page
        .events
        .iter()
        .map(|e| e.data.known().map(EventData::kind))
        .collect();
    use EventKind::*;
    assert_eq!(
        kinds,
        [
            Some(TaskSubmitted),
            Some(TaskAssigned),
            Some(TaskProgress),
            Some(AgentJoined),
            Some(ScalingDecision),
            Some(AgentDraining),
            None,
            None,
            None,
        ]
    );
    assert!(matches!(
        &page.events[8].data,
        EventPayload::Unknown(Value::Null)
    ));
    // `torch watch` prints the data as the hub sent it.
    let watched: Value = serde_json::from_str(decision).expect("JSON");
    assert_eq!(page.events[4].data.to_string(), watched.to_string());
}
