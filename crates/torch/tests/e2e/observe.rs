//! Observability on a live hub: `/metrics` checked by Prometheus' own
//! `promtool` (and in OpenMetrics form), alert rules firing and resolving
//! into events, `torch alerts` and a signed webhook, `torch capacity`, and
//! the shipped Prometheus rules under `promtool check rules` / `test rules`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::{Agent, Hub, TestDir, secs};

/// `promtool`, or `None` (skipped loudly) when it is not installed; under
/// CI (`CI` set) a missing promtool fails the test: CI must run it.
fn promtool() -> Option<&'static str> {
    let ok = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some("promtool");
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "promtool is not installed (Debian package `prometheus`); CI must run this check"
    );
    eprintln!("SKIPPED: promtool is not installed (apt install prometheus); not checking with it");
    None
}

/// GET `path` with `accept`, returning (content type, body).
fn get_raw(url: &str, token: &str, path: &str, accept: &str) -> (String, String) {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).expect("connect to the hub");
    s.set_read_timeout(Some(secs(30))).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (ctype, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    for _ in 0..100_000 {
        let Some((size, rest)) = body.split_once("\r\n") else {
            break;
        };
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// The value of the sample `name` (with its labels, exactly as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Runs `promtool check metrics` on `text`; panics with its output unless clean.
fn promtool_check_metrics(promtool: &str, text: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_pass_promtool_and_count_the_work_without_task_labels() {
    let dir = TestDir::new("metrics");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    let _agent = Agent::start(&dir, &hub.url, &token, "m1", "sh", 2);
    let ids = api.submit(vec![
        json!({"name": "ok1", "command": ["true"], "skills": ["sh"]}),
        json!({"name": "ok2", "command": ["true"], "skills": ["sh"]}),
        json!({"name": "bad", "command": ["false"], "skills": ["sh"], "max_retries": 0}),
        json!({"name": "parked", "command": ["true"], "skills": ["nobody"], "priority": 5}),
    ]);
    api.wait_state(&dir, &ids[0], "succeeded", secs(30));
    api.wait_state(&dir, &ids[1], "succeeded", secs(30));
    api.wait_state(&dir, &ids[2], "dead", secs(30));

    let (ctype, text) = get_raw(&hub.url, &hub.admin, "/metrics", "text/plain");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    for id in &ids {
        assert!(
            !text.contains(id.as_str()),
            "a task id is a label value:\n{text}"
        );
    }
    let want = [
        ("torch_tasks_submitted_total", 4.0),
        ("torch_tasks_completed_total", 2.0),
        ("torch_task_failures_total{reason=\"failed\"}", 1.0),
        ("torch_tasks_dead_total{reason=\"failed\"}", 1.0),
        ("torch_task_retries_total{reason=\"failed\"}", 0.0),
        (
            "torch_task_duration_seconds_count{outcome=\"succeeded\"}",
            2.0,
        ),
        ("torch_task_schedule_to_start_seconds_count", 3.0),
        ("torch_task_assignment_seconds_count", 3.0),
        ("torch_queue_depth{state=\"queued\",priority=\"high\"}", 1.0),
        (
            "torch_queue_depth{state=\"leased\",priority=\"normal\"}",
            0.0,
        ),
        ("torch_agents{state=\"idle\",template=\"none\"}", 1.0),
        ("torch_pool_slots{pool=\"none\"}", 2.0),
        ("torch_pool_slots_used{pool=\"none\"}", 0.0),
        ("torch_breaker_agents{state=\"closed\"}", 1.0),
        ("torch_hub_leader", 1.0),
        // Autonomy: nobody touched the two successes, nothing spawned.
        ("torch_autonomy_tasks_without_intervention_ratio", 1.0),
        ("torch_autonomy_self_spawn_events_total", 0.0),
        ("torch_autonomy_adapt_samples_total", 0.0),
    ];
    for (series, v) in want {
        assert_eq!(sample(&text, series), Some(v), "{series} in:\n{text}");
    }
    assert!(
        sample(&text, "torch_autonomy_tasks_per_agent_hour").is_some_and(|r| r > 0.0),
        "tasks per agent-hour in:\n{text}"
    );
    for nothing_to_divide in [
        "torch_autonomy_self_spawn_success_ratio",
        "torch_autonomy_adapt_seconds",
        "torch_autonomy_team_formation_success_ratio",
        "torch_autonomy_messages_delivered_ratio",
        "torch_autonomy_help_accept_ratio",
    ] {
        assert_eq!(
            sample(&text, nothing_to_divide),
            None,
            "{nothing_to_divide} has no sample yet:\n{text}"
        );
    }
    assert!(text.contains("# TYPE torch_task_schedule_to_start_seconds histogram"));
    if let Some(p) = promtool() {
        promtool_check_metrics(p, &text);
    }
    documented_names_cover(&text);

    // OpenMetrics on request.
    let (ctype, om) = get_raw(
        &hub.url,
        &hub.admin,
        "/metrics",
        "application/openmetrics-text; version=1.0.0",
    );
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(om.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    assert!(!om.lines().any(|l| l.trim().is_empty()), "no blank lines");
    assert!(om.contains("# TYPE torch_tasks_completed counter\n"));
    assert!(om.contains("\ntorch_tasks_completed_total 2\n"));

    // Without a token: 401 (unless [metrics] public = true).
    let anon = api
        .with_token(None)
        .request("GET", "/metrics", None)
        .expect("request");
    assert_eq!(anon.status, 401);
}

/// HMAC-SHA256 (RFC 2104), to check the webhook's signature independently.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> String {
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let inner = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x36))
        .chain_update(msg)
        .finalize();
    let outer = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize();
    hex::encode(outer)
}

/// A webhook receiver: answers 500 to the first request (to make the hub
/// retry), then 200; sends (signature, event, body) of each request.
fn receiver() -> (String, mpsc::Receiver<(String, String, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.set_read_timeout(Some(secs(10)));
            let mut raw = Vec::new();
            let mut buf = [0u8; 8192];
            let (head, body) = loop {
                let Ok(k) = conn.read(&mut buf) else { return };
                if k == 0 {
                    return;
                }
                raw.extend_from_slice(&buf[..k]);
                let text = String::from_utf8_lossy(&raw).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break (head.to_string(), body[..len].to_string());
                    }
                }
            };
            let status = if n == 0 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            if n == 0 {
                continue;
            }
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                    })
                    .unwrap_or_default()
            };
            let sig = header("x-torch-signature");
            let event = header("x-torch-event");
            let verified = sig == format!("sha256={}", hmac_sha256(b"s3cret", body.as_bytes()));
            let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let _ = tx.send((if verified { "ok".into() } else { sig }, event, json));
        }
    });
    (url, rx)
}

#[test]
fn an_alert_fires_and_resolves_into_events_the_cli_and_a_signed_webhook() {
    let dir = TestDir::new("alerts");
    let (hook, deliveries) = receiver();
    dir.write(
        "torch.toml",
        &format!(
            r#"
[alerting]
interval = "200ms"
defaults = false
webhook = "{hook}"
webhook-secret = "s3cret"

[[alerts]]
name = "FailingTasks"
signal = "task_failure_ratio"
above = 0.4
clear = 0.2
window = "1h"
severity = "critical"
summary = "too many failures"
"#
        ),
    );
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let cli = hub.cli(&dir);
    let token = hub.token(&dir, "agent");
    let _agent = Agent::start(&dir, &hub.url, &token, "a1", "sh", 4);
    let bad = api.submit(vec![
        json!({"name": "bad", "command": ["false"], "skills": ["sh"], "max_retries": 0}),
    ]);
    api.wait_state(&dir, &bad[0], "dead", secs(30));
    let firing = dir.wait_for("the alert to fire", secs(20), || {
        let v = cli.json(&["alerts"]);
        (v["firing"].as_array()?.len() == 1).then_some(v)
    });
    assert_eq!(firing["firing"][0]["alert"], "FailingTasks");
    assert_eq!(firing["firing"][0]["severity"], "critical");
    assert_eq!(firing["firing"][0]["value"], 1.0);
    assert_eq!(firing["rules"], 1);

    // 1 failure in 7 attempts: 0.14, under `clear`: it resolves.
    let ok: Vec<Value> = (0..6)
        .map(|i| json!({"name": format!("ok{i}"), "command": ["true"], "skills": ["sh"]}))
        .collect();
    for id in api.submit(ok) {
        api.wait_state(&dir, &id, "succeeded", secs(30));
    }
    let resolved = dir.wait_for("the alert to resolve", secs(20), || {
        let v = cli.json(&["alerts"]);
        v["firing"].as_array()?.is_empty().then_some(v)
    });
    assert_eq!(resolved["recent"][0]["state"], "resolved");
    assert_eq!(resolved["recent"][1]["state"], "firing");
    let human = cli.run(&["alerts"]);
    human.assert_code(0, "torch alerts");
    assert!(human.stdout.contains("no alert firing"), "{}", human.stdout);
    assert!(human.stdout.contains("FailingTasks"), "{}", human.stdout);

    let events = api.events("nova.torch.alerts");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, ["alert.firing", "alert.resolved"], "{events:#?}");
    assert_eq!(events[0]["data"]["alert"], "FailingTasks");
    assert_eq!(events[0]["data"]["threshold"], 0.4);

    // The webhook got both, signed, after retrying the first.
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            deliveries
                .recv_timeout(secs(30))
                .expect("a webhook delivery"),
        );
    }
    let states: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|(sig, ev, body)| {
            (
                sig.as_str(),
                ev.as_str(),
                body["state"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("ok", "alert.firing", "firing"),
            ("ok", "alert.resolved", "resolved")
        ]
    );
}

#[test]
fn capacity_reports_pools_recommendations_and_headroom() {
    let dir = TestDir::new("capacity");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let cli = hub.cli(&dir);
    let token = hub.token(&dir, "agent");
    let _agent = Agent::start(&dir, &hub.url, &token, "c1", "sh", 2);
    let specs: Vec<Value> = (0..6)
        .map(|i| json!({"name": format!("s{i}"), "command": ["sleep", "0.2"], "skills": ["sh"]}))
        .collect();
    for id in api.submit(specs) {
        api.wait_state(&dir, &id, "succeeded", secs(30));
    }
    let report = cli.json(&["capacity", "--window", "5m"]);
    let pools = report["pools"].as_array().expect("pools");
    let sh = pools
        .iter()
        .find(|p| p["skill"] == "sh")
        .unwrap_or_else(|| panic!("a pool for skill sh: {report:#}"));
    for field in [
        "arrival_per_s",
        "service_s",
        "utilisation",
        "schedule_to_start_p95_ms",
        "agents",
        "recommended_agents",
    ] {
        assert!(sh[field].is_number(), "{field} in {sh}");
    }
    assert!(sh["arrival_per_s"].as_f64() > Some(0.0), "{sh}");
    let service = sh["service_s"].as_f64().unwrap_or(0.0);
    assert!(
        (0.15..5.0).contains(&service),
        "service time of sleep 0.2: {sh}"
    );
    assert_eq!(sh["agents"], 1);
    assert!(sh["recommended_agents"].as_u64() >= Some(1), "{sh}");
    assert!(report["headroom"].get("cpu").is_some(), "{report}");
    assert!(report["headroom"].get("memory").is_some(), "{report}");
    assert_eq!(report["window_ms"], 300_000);
    let bad = cli.run(&["capacity", "--window", "soon"]);
    bad.assert_code(2, "a bad --window is bad input");
}

/// The `torch_*` names in `text` (metric families: without the histogram
/// suffixes).
fn names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("torch_") {
        let start = i + at;
        let boundary =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len()
            && (b[end].is_ascii_lowercase() || b[end].is_ascii_digit() || b[end] == b'_')
        {
            end += 1;
        }
        // `torch_core::…` in a comment is a Rust path, not a metric.
        if boundary && b.get(end) != Some(&b':') {
            let name = &text[start..end];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(family.to_string());
        }
        i = end.max(start + 1);
    }
    out
}

/// Every metric the hub exported, the Grafana dashboard uses and the
/// Prometheus rules use is in the table of docs/operations.md.
fn documented_names_cover(live: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let read =
        |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let docs = read("docs/operations.md");
    let table: std::collections::BTreeSet<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("| `torch_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("torch_{n}"))
        .collect();
    let families: std::collections::BTreeSet<String> = live
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    for (what, names) in [
        ("GET /metrics", families),
        (
            "deploy/grafana/torch.json",
            names_in(&read("deploy/grafana/torch.json")),
        ),
        (
            "deploy/prometheus/alerts.yml",
            names_in(&read("deploy/prometheus/alerts.yml")),
        ),
    ] {
        let missing: Vec<&String> = names.iter().filter(|n| !table.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "{what} uses metrics docs/operations.md does not list: {missing:?}"
        );
    }
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus")
}

#[test]
fn shipped_prometheus_rules_pass_promtool_check_and_test() {
    let Some(p) = promtool() else { return };
    let dir = deploy_dir();
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new(p)
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The hub's default rules and the file name the same alerts.
    let text = std::fs::read_to_string(dir.join("alerts.yml")).expect("alerts.yml");
    let in_file = text.matches("- alert: ").count();
    let defaults = torch_core::alerts::default_rules();
    assert_eq!(
        in_file,
        defaults.len(),
        "as many rules in alerts.yml as defaults"
    );
    for r in defaults {
        assert!(
            text.contains(&format!("- alert: {}\n", r.name)),
            "{} in alerts.yml",
            r.name
        );
    }
}
