//! A real node against an in-test hub speaking the node protocol: spawn
//! orders start real processes (a shell script stands in for `torch`),
//! heartbeats sample them from `/proc`, terminate and crash exits are
//! reported, agents survive a reconnect and are stopped at shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::{WebSocketStream, accept_hdr_async};
use tokio_util::sync::CancellationToken;

use torch_agent::AgentError;
use torch_agent::node::{NodeConfig, run_node};
use torch_api::node::{HubToNode, NodeHello, NodeMessage, NodeStatus, SpawnOrder};
use torch_core::AgentId;
use torch_core::lifecycle::AgentTemplate;

const TOKEN: &str = "node-secret-token";
/// Upper bound for anything a test waits for.
const DEADLINE: Duration = Duration::from_secs(30);

/// Stands in for `torch`: logs its arguments and environment, then becomes a
/// `sleep` (exec: the pid the node sees is the sleeping process). With
/// "stubborn" in its template (its role) it ignores SIGTERM; with "forks" it also starts
/// a child that holds 8 MiB more memory, to show subtree sums.
const FAKE_TORCH: &str = r#"#!/bin/sh
echo "args: $*"
echo "id: $TORCH_AGENT_ID"
echo "token: $TORCH_TOKEN"
echo "template: $TORCH_AGENT_TEMPLATE"
case "$TORCH_AGENT_TEMPLATE" in
  *stubborn*) trap '' TERM ;;
esac
case "$TORCH_AGENT_TEMPLATE" in
  *forks*) sh -c 'x=$(head -c 8000000 /dev/zero | tr "\0" a); sleep 30' & ;;
esac
exec sleep 30
"#;

struct Hub {
    listener: TcpListener,
    url: String,
}

struct Conn {
    ws: WebSocketStream<TcpStream>,
    hello: NodeHello,
    pending: VecDeque<NodeMessage>,
}

impl Hub {
    async fn start() -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Hub { listener, url }
    }

    /// Accepts the next connection, checks path and token, reads Hello.
    async fn accept(&self) -> Conn {
        let (tcp, _) = tokio::time::timeout(DEADLINE, self.listener.accept())
            .await
            .expect("node did not connect in time")
            .unwrap();
        let mut seen = None;
        let ws = accept_hdr_async(tcp, |req: &Request, resp: Response| {
            let auth = req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string());
            seen = Some((req.uri().path().to_string(), auth));
            Ok(resp)
        })
        .await
        .unwrap();
        let (path, auth) = seen.unwrap();
        assert_eq!(path, "/api/v1/node/ws");
        assert_eq!(auth.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
        let mut conn = Conn {
            ws,
            hello: NodeHello {
                name: String::new(),
                max_agents: 0,
                version: String::new(),
                status: NodeStatus::default(),
                sandbox: None,
            },
            pending: VecDeque::new(),
        };
        match conn.next_raw().await {
            NodeMessage::Hello(h) => conn.hello = h,
            other => panic!("expected Hello first, got {other:?}"),
        }
        conn
    }
}

impl Conn {
    async fn send(&mut self, msgs: Vec<HubToNode>) {
        let text = serde_json::to_string(&msgs).unwrap();
        self.ws.send(Message::text(text)).await.unwrap();
    }

    async fn welcome(&mut self) {
        self.send(vec![HubToNode::Welcome {
            node: "n1".into(),
            heartbeat_ms: 100,
        }])
        .await;
    }

    /// The next message, heartbeats included.
    async fn next_raw(&mut self) -> NodeMessage {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(m) = self.pending.pop_front() {
                return m;
            }
            let left = end.saturating_duration_since(Instant::now());
            let frame = tokio::time::timeout(left, self.ws.next())
                .await
                .expect("no message from the node in time")
                .expect("node closed the connection")
                .unwrap();
            if let Message::Text(t) = frame {
                let batch: Vec<NodeMessage> =
                    serde_json::from_str(t.as_str()).expect("frames are JSON arrays");
                self.pending.extend(batch);
            }
        }
    }

    /// The next message other than a heartbeat.
    async fn next(&mut self) -> NodeMessage {
        loop {
            let m = self.next_raw().await;
            if !matches!(m, NodeMessage::Heartbeat(_)) {
                return m;
            }
        }
    }

    /// The first heartbeat that satisfies `cond`.
    async fn heartbeat_where(&mut self, mut cond: impl FnMut(&NodeStatus) -> bool) -> NodeStatus {
        loop {
            if let NodeMessage::Heartbeat(s) = self.next_raw().await
                && cond(&s)
            {
                return s;
            }
        }
    }

    async fn spawn(&mut self, id: AgentId, template: AgentTemplate) -> u32 {
        self.send(vec![HubToNode::Spawn(order(id, template))]).await;
        match self.next().await {
            NodeMessage::Spawned { agent_id, pid } if agent_id == id => pid,
            other => panic!("expected Spawned for {id}, got {other:?}"),
        }
    }

    /// The Exited report for `id` (no other non-heartbeat message may come first).
    async fn exited(&mut self, id: AgentId) -> (u32, Option<i32>, Option<i32>, bool) {
        match self.next().await {
            NodeMessage::Exited {
                agent_id,
                pid,
                code,
                signal,
                requested,
            } if agent_id == id => (pid, code, signal, requested),
            other => panic!("expected Exited for {id}, got {other:?}"),
        }
    }
}

fn agent(n: u64) -> AgentId {
    format!("01890000-0000-7000-a000-{n:012x}").parse().unwrap()
}

/// A template whose role the fake `torch` reads (`stubborn`, `forks`).
fn template(role: &str) -> AgentTemplate {
    let t = serde_json::json!({"role": role, "executor": {"command": ["x"]}});
    serde_json::from_value(t).unwrap()
}

fn order(agent_id: AgentId, template_spec: AgentTemplate) -> SpawnOrder {
    SpawnOrder {
        agent_id,
        name: format!("helper-{agent_id}"),
        template: "worker".into(),
        template_spec,
        parent_agent: None,
        parent_task: None,
        depth: 0,
    }
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Setup {
    dir: tempfile::TempDir,
    cfg: NodeConfig,
}

fn setup(hub: &Hub, max_agents: u32) -> Setup {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("torch");
    std::fs::write(&exe, FAKE_TORCH).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cfg = NodeConfig::new(hub.url.clone(), TOKEN, "n1", exe);
    cfg.max_agents = max_agents;
    cfg.work_root = dir.path().join("work");
    cfg.log_dir = Some(dir.path().join("logs"));
    cfg.extra_agent_args = vec!["--slots".into(), "2".into()];
    Setup { dir, cfg }
}

fn start(cfg: NodeConfig) -> (CancellationToken, JoinHandle<Result<(), AgentError>>) {
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run_node(cfg, shutdown.clone()));
    (shutdown, handle)
}

fn log_of(dir: &Path, id: AgentId) -> String {
    std::fs::read_to_string(dir.join("logs").join(format!("{id}.log"))).unwrap_or_default()
}

fn work_of(dir: &Path, id: AgentId) -> PathBuf {
    dir.join("work").join(id.to_string())
}

#[tokio::test]
async fn spawns_samples_terminates_and_reports_crashes() {
    let hub = Hub::start().await;
    let Setup { dir, cfg } = setup(&hub, 3);
    let (shutdown, handle) = start(cfg);

    let mut conn = hub.accept().await;
    assert_eq!(conn.hello.name, "n1");
    assert_eq!(conn.hello.max_agents, 3);
    assert!(conn.hello.status.agents.is_empty());
    assert!(conn.hello.status.cpus >= 1);
    assert!(conn.hello.status.mem_total_bytes > 0);
    conn.welcome().await;

    // Spawn: a real process with the order's id, name, template and token.
    let (a1, a2, a3, a4) = (agent(1), agent(2), agent(3), agent(4));
    let pid1 = conn.spawn(a1, template("forks")).await;
    assert!(alive(pid1));
    eventually("the agent logged its environment", || {
        log_of(dir.path(), a1).contains("template:")
    })
    .await;
    let log = log_of(dir.path(), a1);
    let work = work_of(dir.path(), a1);
    assert!(
        log.contains(&format!(
            "args: agent --hub {} --name helper-{a1} --work-dir {} --slots 2",
            hub.url,
            work.display()
        )),
        "{log}"
    );
    assert!(log.contains(&format!("id: {a1}")), "{log}");
    assert!(log.contains(&format!("token: {TOKEN}")), "{log}");
    let logged = log
        .lines()
        .find_map(|l| l.strip_prefix("template: "))
        .expect("template logged");
    let logged: AgentTemplate = serde_json::from_str(logged).expect("the template, as JSON");
    assert_eq!(logged, template("forks"), "{log}");
    assert!(work.is_dir());

    // Heartbeats list it with its pid, and its RSS includes the child that
    // holds 8 MB (the sleep alone is far smaller).
    let hb = conn
        .heartbeat_where(|s| {
            s.agents
                .iter()
                .any(|a| a.agent_id == a1 && a.rss_bytes > 8_000_000)
        })
        .await;
    let sample = hb.agents.iter().find(|a| a.agent_id == a1).unwrap();
    assert_eq!(sample.pid, pid1);
    assert_eq!(sample.template, "worker");
    assert!(sample.started_ms > 1_600_000_000_000);
    assert!(sample.cpu >= 0.0);
    assert!(hb.cpus >= 1 && (0.0..=1.0).contains(&hb.cpu_used));
    assert!(hb.mem_total_bytes > 0 && (0.0..=1.0).contains(&hb.mem_used));

    // A resent order is answered with the same pid; past max_agents → refused.
    assert_eq!(conn.spawn(a1, template("plain")).await, pid1);
    let pid2 = conn.spawn(a2, template("plain")).await;
    let pid3 = conn.spawn(a3, template("stubborn")).await;
    conn.send(vec![HubToNode::Spawn(order(a4, template("plain")))])
        .await;
    match conn.next().await {
        NodeMessage::SpawnFailed { agent_id, error } => {
            assert_eq!(agent_id, a4);
            assert!(error.contains("max-agents 3"), "{error}");
        }
        other => panic!("expected SpawnFailed, got {other:?}"),
    }

    // Terminate: SIGTERM ends it; reported as requested.
    conn.send(vec![HubToNode::Terminate {
        agent_id: a1,
        grace_ms: 5_000,
        reason: "scale down".into(),
    }])
    .await;
    assert_eq!(conn.exited(a1).await, (pid1, None, Some(15), true));
    assert!(!alive(pid1));
    eventually("the work dir is removed", || !work.exists()).await;

    // A crash (kill -9 from outside) is reported as not requested.
    kill(Pid::from_raw(pid2 as i32), Signal::SIGKILL).unwrap();
    assert_eq!(conn.exited(a2).await, (pid2, None, Some(9), false));

    // An agent ignoring SIGTERM is killed once its grace has passed.
    let asked = Instant::now();
    conn.send(vec![HubToNode::Terminate {
        agent_id: a3,
        grace_ms: 300,
        reason: "recycle".into(),
    }])
    .await;
    assert_eq!(conn.exited(a3).await, (pid3, None, Some(9), true));
    assert!(asked.elapsed() >= Duration::from_millis(300));

    // Capacity is free again; heartbeats forget the dead.
    let pid4 = conn.spawn(a4, template("plain")).await;
    let hb = conn
        .heartbeat_where(|s| s.agents.iter().any(|a| a.agent_id == a4))
        .await;
    assert_eq!(hb.agents.len(), 1);
    assert_eq!(hb.agents[0].pid, pid4);
    // A terminate for an unknown agent is ignored.
    conn.send(vec![HubToNode::Terminate {
        agent_id: a2,
        grace_ms: 10,
        reason: "stale".into(),
    }])
    .await;

    // Shutdown stops the remaining agent, reports it, closes the socket.
    shutdown.cancel();
    let (pid, _, signal, requested) = conn.exited(a4).await;
    assert_eq!((pid, signal, requested), (pid4, Some(15), false));
    tokio::time::timeout(DEADLINE, handle)
        .await
        .expect("node did not stop in time")
        .unwrap()
        .unwrap();
    assert!(!alive(pid4));
}

#[tokio::test]
async fn agents_survive_a_reconnect_and_die_at_shutdown() {
    let hub = Hub::start().await;
    let Setup { dir, cfg } = setup(&hub, 4);
    let (shutdown, handle) = start(cfg);
    let mut conn = hub.accept().await;
    conn.welcome().await;
    let (a1, a2) = (agent(11), agent(12));
    let pid1 = conn.spawn(a1, template("plain")).await;
    let pid2 = conn.spawn(a2, template("stubborn")).await;

    // The hub goes away; one agent dies meanwhile (once the node noticed:
    // an exit sent on a dying connection is lost, and the next Hello's
    // agent list is what tells the hub).
    drop(conn);
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(Pid::from_raw(pid1 as i32), Signal::SIGKILL).unwrap();
    eventually("the killed agent is gone", || !alive(pid1)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The next Hello lists what still runs; the exit comes after Welcome.
    let mut conn = hub.accept().await;
    let listed: Vec<(AgentId, u32)> = conn
        .hello
        .status
        .agents
        .iter()
        .map(|a| (a.agent_id, a.pid))
        .collect();
    assert_eq!(listed, vec![(a2, pid2)]);
    assert!(alive(pid2), "agents keep running while the hub is away");
    conn.welcome().await;
    assert_eq!(conn.exited(a1).await, (pid1, None, Some(9), false));

    // Shutdown: the stubborn agent ignores SIGTERM and is killed after the
    // node's 5 s grace.
    shutdown.cancel();
    let (pid, _, signal, requested) = conn.exited(a2).await;
    assert_eq!((pid, signal, requested), (pid2, Some(9), false));
    tokio::time::timeout(DEADLINE, handle)
        .await
        .expect("node did not stop in time")
        .unwrap()
        .unwrap();
    assert!(!alive(pid2));
    assert!(!work_of(dir.path(), a2).exists());
}

#[tokio::test]
async fn a_missing_binary_is_a_spawn_failure_and_bad_config_an_error() {
    let hub = Hub::start().await;
    let Setup { dir, mut cfg } = setup(&hub, 2);
    // Valid at start, gone by the time the hub orders a spawn.
    let gone = dir.path().join("torch-gone");
    std::fs::copy(&cfg.torch_exe, &gone).unwrap();
    cfg.torch_exe = gone.clone();
    let mut bad = cfg.clone();
    let (shutdown, handle) = start(cfg);
    let mut conn = hub.accept().await;
    conn.welcome().await;
    std::fs::remove_file(&gone).unwrap();
    conn.send(vec![HubToNode::Spawn(order(agent(21), template("plain")))])
        .await;
    match conn.next().await {
        NodeMessage::SpawnFailed { agent_id, error } => {
            assert_eq!(agent_id, agent(21));
            assert!(error.contains("cannot start"), "{error}");
        }
        other => panic!("expected SpawnFailed, got {other:?}"),
    }
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    bad.max_agents = 0;
    let err = run_node(bad, CancellationToken::new()).await.unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::Config {
                field: "max_agents",
                ..
            }
        ),
        "{err}"
    );
}
