//! Test support: a hub on the embedded store in a temp dir, its services
//! running, driven through its router (`tower::ServiceExt::oneshot`) and its
//! engine handle, and fake agent sessions made of the engine's commands.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use torch_api::ws::{Assignment, FinishReport, HeldTask, Hello, HubMessage};
use torch_core::{AgentId, Evidence, Outcome, OutcomeKind, Skill};
use torch_store::sqlite::{SqliteOptions, SqliteStore};
use torch_store::{Finish, FinishResult, TaskStore, TokenStore};
use tower::ServiceExt;

use crate::clock::Clock;
use crate::config::HubConfig;
use crate::engine::{Command, EndReport, Outbound, RecordedReport, Registration};
use crate::hub::{Hub, Shared};

/// The admin token of every test hub.
pub(crate) const ADMIN: &str = "torch_test_admin";

/// A running test hub (see the module docs).
pub(crate) struct TestHub {
    pub(crate) shared: Arc<Shared<SqliteStore>>,
    stop: CancellationToken,
    services: TaskTracker,
    _dir: tempfile::TempDir,
}

impl TestHub {
    /// A hub with `cfg`, its engine and lifecycle manager running; time
    /// follows tokio's clock (so tests may pause it).
    pub(crate) async fn start(cfg: HubConfig) -> TestHub {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("torch.db"), SqliteOptions::default())
            .expect("open store");
        let hub = Hub::start_with(
            cfg,
            store,
            Some(ADMIN.into()),
            Clock::tokio(1_700_000_000_000),
        )
        .await
        .expect("start hub");
        let (shared, engine, lifecycle) = hub.into_parts();
        let stop = shared.shutdown.clone();
        let services = TaskTracker::new();
        services.spawn(engine.run(stop.clone()));
        services.spawn(lifecycle.run(stop.clone()));
        services.close();
        TestHub {
            shared,
            stop,
            services,
            _dir: dir,
        }
    }

    /// Stops the services and waits for them.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        self.services.wait().await;
    }

    /// A new token with `role`.
    pub(crate) async fn token(&self, role: &str) -> String {
        let token = crate::auth::generate_token();
        self.shared
            .store
            .put_token(torch_store::TokenRecord {
                hash: crate::auth::hash_token(&token),
                role: role.into(),
                name: format!("{role} (test)"),
                created_ms: 0,
                ..torch_store::TokenRecord::default()
            })
            .await
            .expect("put token");
        token
    }

    /// Sends a request through the router; returns status and JSON body
    /// (`Null` when the body is not JSON).
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value, Response<()>) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let resp = crate::api::router(self.shared.clone())
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("infallible");
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, json, Response::from_parts(parts, ()))
    }

    /// Submits specs as the admin; returns the task ids.
    pub(crate) async fn submit(&self, specs: serde_json::Value) -> Vec<String> {
        let (status, json, _) = self
            .call(
                "POST",
                "/api/v1/tasks",
                Some(ADMIN),
                Some(serde_json::json!({ "tasks": specs })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        json["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| t["id"].as_str().expect("id").to_string())
            .collect()
    }
}

/// An agent session made of engine commands (what `session.rs` would send).
pub(crate) struct FakeAgent {
    pub(crate) id: AgentId,
    pub(crate) rx: mpsc::Receiver<Outbound>,
    pub(crate) session: u64,
    pub(crate) close: CancellationToken,
}

impl FakeAgent {
    /// Joins `hub`'s engine as `id` with `skills` and `slots`.
    pub(crate) async fn join(
        hub: &TestHub,
        id: AgentId,
        session: u64,
        skills: &[&str],
        slots: u32,
    ) -> Result<FakeAgent, crate::engine::JoinRefused> {
        let (tx, rx) = mpsc::channel(1024);
        let close = CancellationToken::new();
        let hello = Hello {
            name: format!("fake-{session}"),
            agent_id: Some(id),
            skills: skills
                .iter()
                .map(|s| Skill {
                    name: (*s).to_string(),
                    level: 1.0,
                })
                .collect(),
            slots,
            labels: Default::default(),
            cost: None,
            version: "test".into(),
            running: Vec::new(),
            sandbox: None,
            public_key: None,
            endpoint: None,
        };
        let reg = Registration {
            hello,
            id,
            tx,
            session,
            close: close.clone(),
        };
        hub.shared
            .engine
            .call(|reply| Command::Join { agent: reg, reply })
            .await
            .expect("engine running")?;
        Ok(FakeAgent {
            id,
            rx,
            session,
            close,
        })
    }

    /// The next message that is not a probe.
    pub(crate) async fn next(&mut self) -> HubMessage {
        loop {
            match self.rx.recv().await.expect("session open") {
                Outbound::Message { msg, .. } => return msg,
                Outbound::Probe => {}
            }
        }
    }

    /// The next assignment (other messages are skipped).
    pub(crate) async fn next_assign(&mut self) -> Assignment {
        loop {
            if let HubMessage::Assign(a) = self.next().await {
                return a;
            }
        }
    }

    /// Renews the leases of `held`.
    pub(crate) async fn heartbeat(&self, hub: &TestHub, held: Vec<HeldTask>) {
        hub.shared
            .engine
            .send(Command::Heartbeat {
                agent: self.id,
                running: held,
            })
            .await;
    }
}

/// Reports `a` over as a session does: the end at once, then the store's
/// record of it (`record` false leaves that to the caller).
pub(crate) async fn finish(hub: &TestHub, agent: AgentId, a: &Assignment, ok: bool) {
    let held = HeldTask {
        task_id: a.task_id,
        fence: a.fence,
    };
    hub.shared
        .engine
        .send(Command::Ended {
            agent,
            reports: vec![EndReport {
                held,
                succeeded: ok,
                telling: true,
                duration_ms: 5,
            }],
        })
        .await;
    record(hub, agent, a, ok).await;
}

/// Records the end of `a` in the store and tells the engine.
pub(crate) async fn record(hub: &TestHub, agent: AgentId, a: &Assignment, ok: bool) {
    let evidence = Evidence {
        duration_ms: 5,
        ..Evidence::default()
    };
    let outcome = if ok {
        Outcome::succeeded(evidence)
    } else {
        Outcome::failed(OutcomeKind::Failed, "exit code 1", evidence)
    };
    let report = FinishReport {
        task_id: a.task_id,
        fence: a.fence,
        attempt: a.attempt,
        outcome: outcome.clone(),
        logs: None,
    };
    let now = hub.shared.now_ms();
    let res = hub
        .shared
        .store
        .finish(
            vec![Finish {
                task: report.task_id,
                fence: report.fence,
                agent,
                outcome,
                logs: None,
            }],
            now,
        )
        .await
        .map_err(|e| e.to_string())
        .map(|mut r| r.pop().unwrap_or(FinishResult::NotFound));
    hub.shared
        .engine
        .send(Command::Recorded {
            agent,
            results: vec![RecordedReport {
                held: HeldTask {
                    task_id: a.task_id,
                    fence: a.fence,
                },
                result: res,
                duration_ms: 5,
            }],
        })
        .await;
}

/// A fresh agent id.
pub(crate) fn agent_id(n: u128) -> AgentId {
    AgentId::from_uuid(uuid::Uuid::from_u128(0xa9e0_0000 + n))
}
