//! A minimal in-test hub (a real WebSocket server on 127.0.0.1:0) and helpers
//! to run a real agent against it.
// Test helpers: panicking on unexpected errors is the point; not every test
// binary uses every helper.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::result_large_err
)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::{WebSocketStream, accept_hdr_async};
use tokio_util::sync::CancellationToken;

use torch_agent::{AgentConfig, AgentError};
use torch_api::ws::{AckStatus, AgentMessage, Assignment, FinishReport, Hello, HubMessage};
use torch_core::{AgentId, SuccessCriteria, TaskId};

pub(crate) const TOKEN: &str = "agent-secret-token";
/// Upper bound for anything a test waits for.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

pub(crate) struct Hub {
    listener: TcpListener,
    pub(crate) url: String,
}

pub(crate) struct Conn {
    ws: WebSocketStream<TcpStream>,
    pub(crate) hello: Hello,
    pending: VecDeque<AgentMessage>,
    /// Every non-heartbeat message received, in order.
    pub(crate) log: Vec<AgentMessage>,
    /// Text frames received.
    pub(crate) frames: usize,
    /// Finished reports received while waiting for another one.
    unclaimed: Vec<FinishReport>,
}

impl Hub {
    pub(crate) async fn start() -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        Hub { listener, url }
    }

    async fn accept_tcp(&self) -> TcpStream {
        let (tcp, _) = tokio::time::timeout(DEADLINE, self.listener.accept())
            .await
            .expect("agent did not connect in time")
            .unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp
    }

    /// Accepts the next connection, checks path and token, reads Hello.
    pub(crate) async fn accept(&self) -> Conn {
        let tcp = self.accept_tcp().await;
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
        assert_eq!(path, "/api/v1/agent/ws");
        assert_eq!(auth.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
        let mut conn = Conn {
            ws,
            hello: hello_placeholder(),
            pending: VecDeque::new(),
            log: Vec::new(),
            frames: 0,
            unclaimed: Vec::new(),
        };
        match conn.next().await {
            AgentMessage::Hello(h) => conn.hello = h,
            other => panic!("expected Hello first, got {other:?}"),
        }
        conn
    }

    /// Answers the next upgrade request with `status`.
    pub(crate) async fn refuse(&self, status: StatusCode) {
        let tcp = self.accept_tcp().await;
        let res = accept_hdr_async(tcp, |_req: &Request, _resp: Response| {
            let mut err = ErrorResponse::new(Some("no".to_string()));
            *err.status_mut() = status;
            Err(err)
        })
        .await;
        assert!(res.is_err());
    }

    /// Accepts a TCP connection and drops it at once (a hub that is not up).
    pub(crate) async fn drop_next(&self) {
        drop(self.accept_tcp().await);
    }
}

fn hello_placeholder() -> Hello {
    Hello {
        name: String::new(),
        agent_id: None,
        skills: Vec::new(),
        slots: 0,
        labels: Default::default(),
        cost: None,
        version: String::new(),
        running: Vec::new(),
        sandbox: None,
        public_key: None,
        endpoint: None,
    }
}

impl Conn {
    pub(crate) async fn send(&mut self, msgs: Vec<HubMessage>) {
        let text = serde_json::to_string(&msgs).unwrap();
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub(crate) async fn welcome(&mut self, agent_id: AgentId) {
        self.send(vec![HubMessage::Welcome {
            agent_id,
            heartbeat_ms: 200,
            lease_ms: 5_000,
            challenge: None,
            hub_key: None,
        }])
        .await;
    }

    /// The next message other than a heartbeat.
    pub(crate) async fn next(&mut self) -> AgentMessage {
        tokio::time::timeout(DEADLINE, async {
            loop {
                let m = self.next_raw().await;
                if !matches!(m, AgentMessage::Heartbeat { .. }) {
                    return m;
                }
            }
        })
        .await
        .expect("no message other than heartbeats in time")
    }

    /// The next message, heartbeats included.
    pub(crate) async fn next_raw(&mut self) -> AgentMessage {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(m) = self.pending.pop_front() {
                if !matches!(m, AgentMessage::Heartbeat { .. }) {
                    self.log.push(m.clone());
                }
                return m;
            }
            let left = end.saturating_duration_since(Instant::now());
            let frame = tokio::time::timeout(left, self.ws.next())
                .await
                .expect("no message from the agent in time")
                .expect("agent closed the connection")
                .unwrap();
            if let Message::Text(t) = frame {
                let batch: Vec<AgentMessage> =
                    serde_json::from_str(t.as_str()).expect("frames are JSON arrays");
                self.frames += 1;
                self.pending.extend(batch);
            }
        }
    }

    /// The Finished report for `task_id`: one received earlier and not
    /// claimed yet, or the next to arrive (bounded by [`DEADLINE`]).
    pub(crate) async fn finished(&mut self, task_id: TaskId) -> FinishReport {
        if let Some(i) = self.unclaimed.iter().position(|r| r.task_id == task_id) {
            return self.unclaimed.remove(i);
        }
        tokio::time::timeout(DEADLINE, async {
            loop {
                if let AgentMessage::Finished(r) = self.next().await {
                    if r.task_id == task_id {
                        return r;
                    }
                    self.unclaimed.push(r);
                }
            }
        })
        .await
        .expect("no Finished report in time")
    }

    pub(crate) async fn ack(&mut self, r: &FinishReport) {
        self.send(vec![HubMessage::Ack {
            task_id: r.task_id,
            fence: r.fence,
            status: AckStatus::Recorded,
        }])
        .await;
    }

    /// True if a Started for `task_id` was received.
    pub(crate) fn saw_started(&self, task_id: TaskId) -> bool {
        self.log
            .iter()
            .any(|m| matches!(m, AgentMessage::Started(h) if h.task_id == task_id))
    }
}

static NEXT_TASK: AtomicU64 = AtomicU64::new(1);

pub(crate) fn new_task_id() -> TaskId {
    let n = NEXT_TASK.fetch_add(1, Ordering::Relaxed);
    format!("01890000-0000-7000-8000-{n:012x}").parse().unwrap()
}

pub(crate) fn agent_id() -> AgentId {
    "01890000-0000-7000-9000-000000000001".parse().unwrap()
}

/// An assignment of `argv` with fence 1, attempt 1 and default criteria.
pub(crate) fn assign(argv: &[&str]) -> Assignment {
    Assignment {
        task_id: new_task_id(),
        fence: 1,
        attempt: 1,
        name: "test".into(),
        command: Some(argv.iter().map(|s| s.to_string()).collect()),
        prompt: None,
        env: Default::default(),
        timeout_ms: None,
        success: SuccessCriteria::default(),
        task_token: "task-token".into(),
        sandbox: None,
        checkout: None,
    }
}

/// A prompt task (no command).
pub(crate) fn prompt(text: &str) -> Assignment {
    let mut a = assign(&[]);
    a.command = None;
    a.prompt = Some(text.into());
    a
}

pub(crate) fn sh(script: &str) -> Assignment {
    assign(&["sh", "-c", script])
}

pub(crate) fn config(hub: &Hub, work_root: &Path) -> AgentConfig {
    let mut cfg = AgentConfig::new(hub.url.clone(), TOKEN, "test-agent");
    cfg.work_root = work_root.to_path_buf();
    cfg.slots = 4;
    cfg.kill_grace = Duration::from_millis(300);
    cfg.keep_workdirs = true;
    cfg
}

pub(crate) struct Agent {
    pub(crate) shutdown: CancellationToken,
    handle: JoinHandle<Result<(), AgentError>>,
}

impl Agent {
    pub(crate) fn start(cfg: AgentConfig) -> Agent {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(torch_agent::run(cfg, shutdown.clone()));
        Agent { shutdown, handle }
    }

    /// Waits for `run` to return (without asking it to stop).
    pub(crate) async fn join(self) -> Result<(), AgentError> {
        tokio::time::timeout(DEADLINE, self.handle)
            .await
            .expect("agent did not stop in time")
            .unwrap()
    }

    pub(crate) async fn stop(self) -> Result<(), AgentError> {
        self.shutdown.cancel();
        self.join().await
    }
}

pub(crate) fn workdir(root: &Path, a: &Assignment) -> PathBuf {
    root.join(format!("{}-{}", a.task_id, a.attempt))
}

/// Polls `cond` every 20 ms until it holds; panics after [`DEADLINE`].
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pids written one per line to `file`.
pub(crate) fn read_pids(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// True while `pid` exists and is not a zombie.
pub(crate) fn alive(pid: i32) -> bool {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Runs `tasks` on a fresh agent and returns their reports in order.
pub(crate) async fn run_all(
    tweak: impl FnOnce(&mut AgentConfig),
    tasks: &[Assignment],
) -> (Vec<FinishReport>, tempfile::TempDir) {
    let hub = Hub::start().await;
    let root = tempfile::tempdir().unwrap();
    let mut cfg = config(&hub, root.path());
    cfg.slots = 32;
    tweak(&mut cfg);
    let agent = Agent::start(cfg);
    let mut conn = hub.accept().await;
    conn.welcome(agent_id()).await;
    conn.send(tasks.iter().cloned().map(HubMessage::Assign).collect())
        .await;
    let mut reports = Vec::new();
    for t in tasks {
        let r = conn.finished(t.task_id).await;
        assert_eq!((r.fence, r.attempt), (t.fence, t.attempt));
        conn.ack(&r).await;
        reports.push(r);
    }
    agent.stop().await.unwrap();
    (reports, root)
}

pub(crate) fn with(mut a: Assignment, f: impl FnOnce(&mut SuccessCriteria)) -> Assignment {
    f(&mut a.success);
    a
}
