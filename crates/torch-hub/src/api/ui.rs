//! The dashboard: a single page served at `/` with its script and style
//! embedded in the binary (no CDN; it works offline), and the server-sent
//! event stream it follows, `GET /api/v1/events/stream`.
//!
//! The page asks for a token and keeps it in the tab's `sessionStorage`; it
//! sends it as `Authorization: Bearer …` on every request, the event stream
//! included (read with `fetch`, since `EventSource` cannot send headers), so
//! the token is never in a URL or an access log. The assets themselves need
//! no token: they hold no data.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use torch_store::Store;

use super::misc::{event_view, stream_list};
use super::{ApiError, Need, authorize};
use crate::hub::Shared;

type St<S> = State<Arc<Shared<S>>>;

/// The page.
const INDEX: &str = include_str!("../../ui/index.html");
/// Its script.
const APP_JS: &str = include_str!("../../ui/app.js");
/// Its style.
const STYLE: &str = include_str!("../../ui/style.css");

/// Events sent per read of the store while catching up.
const STREAM_BATCH: usize = 500;

/// `GET /`: the dashboard page.
pub(crate) async fn index<S: Store>(State(_): St<S>) -> Response {
    asset_response(INDEX, "text/html; charset=utf-8")
}

/// `GET /ui/{file}`: the page's script and style.
pub(crate) async fn asset<S: Store>(State(_): St<S>, Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => asset_response(APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => asset_response(STYLE, "text/css; charset=utf-8"),
        _ => {
            ApiError::not_found("not_found", format!("no dashboard asset {file:?}")).into_response()
        }
    }
}

fn asset_response(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // The page loads nothing from elsewhere and runs no inline script.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Query of the event stream.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct StreamQuery {
    /// Start after this event id (a `Last-Event-ID` header wins); without
    /// either, the stream starts at the newest event.
    after: Option<u64>,
    /// Comma-separated stream names or prefixes ending in `.`.
    stream: Option<String>,
}

/// `GET /api/v1/events/stream`: the event log as server-sent events, each
/// with its id, so a client that reconnects with `Last-Event-ID` resumes
/// with no gap and no repeat. Idle, it waits for the hub's next write
/// (no polling) and sends a keep-alive comment every 15 s.
pub(crate) async fn event_stream<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    authorize(&shared, &headers, Need::SubmitOrTask).await?;
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_last_event_id",
                        "Last-Event-ID must be an event id (a number)",
                    )
                })?,
        ),
        None => q.after,
    };
    let after = match resume {
        Some(a) => a,
        None => shared.store.last_event_id().await?,
    };
    let streams = stream_list(q.stream.as_deref());
    let gen_rx = shared.events.subscribe();
    let state = Follow {
        shared,
        streams,
        after,
        gen_rx,
        pending: std::collections::VecDeque::new(),
    };
    let stream = futures_util::stream::unfold(state, |mut f| async move {
        let event = f.next().await?;
        Some((Ok(event), f))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// One client's position in the event log.
struct Follow<S> {
    shared: Arc<Shared<S>>,
    streams: Vec<String>,
    after: u64,
    gen_rx: tokio::sync::watch::Receiver<u64>,
    pending: std::collections::VecDeque<Event>,
}

impl<S: Store> Follow<S> {
    /// The next event to send; `None` ends the stream (hub stopping, or the
    /// store failing: the client reconnects and resumes).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            self.gen_rx.borrow_and_update();
            let batch = match self
                .shared
                .store
                .events(self.after, self.streams.clone(), STREAM_BATCH)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "event stream: reading the store failed; closing it");
                    return None;
                }
            };
            for rec in batch {
                self.after = rec.id;
                let view = event_view(rec);
                let event = Event::default()
                    .id(view.id.to_string())
                    .event(view.kind.clone())
                    .json_data(&view)
                    .unwrap_or_else(|_| {
                        Event::default()
                            .id(view.id.to_string())
                            .comment("unencodable")
                    });
                self.pending.push_back(event);
            }
            if !self.pending.is_empty() {
                continue;
            }
            tokio::select! {
                r = self.gen_rx.changed() => if r.is_err() { return None },
                _ = self.shared.shutdown.cancelled() => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::json;
    use tower::ServiceExt;

    use crate::config::HubConfig;
    use crate::testing::{ADMIN, TestHub};

    /// Opens the event stream and reads events until `want` have come (or
    /// 5 s pass); returns (id, kind) of each.
    async fn read_stream(hub: &TestHub, last_id: Option<&str>, want: usize) -> Vec<(u64, String)> {
        let mut req = Request::get("/api/v1/events/stream?stream=nova.torch.tasks.")
            .header("authorization", format!("Bearer {ADMIN}"));
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        let resp = crate::api::router(hub.shared.clone())
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let mut text = String::new();
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < want {
            let frame = tokio::time::timeout_at(deadline, body.frame())
                .await
                .expect("events within 5 s")
                .expect("an open stream")
                .expect("a frame");
            if let Ok(data) = frame.into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
            while let Some(cut) = text.find("\n\n") {
                let block: String = text.drain(..cut + 2).collect();
                let id = block
                    .lines()
                    .find_map(|l| l.strip_prefix("id:"))
                    .map(|v| v.trim().parse::<u64>().expect("numeric id"));
                let kind = block
                    .lines()
                    .find_map(|l| l.strip_prefix("event:"))
                    .map(|v| v.trim().to_string());
                if let (Some(id), Some(kind)) = (id, kind) {
                    got.push((id, kind));
                }
            }
        }
        got
    }

    fn task(name: &str) -> serde_json::Value {
        json!([{"name": name, "command": ["true"], "skills": ["nobody"]}])
    }

    #[tokio::test]
    async fn a_reconnect_with_last_event_id_resumes_with_no_gap_and_no_repeat() {
        let hub = TestHub::start(HubConfig::default()).await;
        for n in ["a", "b", "c"] {
            hub.submit(task(n)).await;
        }
        let first = read_stream(&hub, Some("0"), 3).await;
        assert!(
            first.iter().all(|(_, k)| k == "task.submitted"),
            "{first:?}"
        );
        let last = first.last().map(|(id, _)| *id).expect("three events");
        // Disconnected: two more tasks arrive.
        hub.submit(task("d")).await;
        hub.submit(task("e")).await;
        let resumed = read_stream(&hub, Some(&last.to_string()), 2).await;
        let ids: Vec<u64> = resumed.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids,
            [last + 1, last + 2],
            "the two events after {last}, once each"
        );
        hub.stop().await;
    }

    #[tokio::test]
    async fn the_stream_needs_a_token_and_a_numeric_last_event_id() {
        let hub = TestHub::start(HubConfig::default()).await;
        let (s, _, _) = hub.call("GET", "/api/v1/events/stream", None, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let req = Request::get("/api/v1/events/stream")
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("last-event-id", "yesterday")
            .body(Body::empty())
            .expect("request");
        let resp = crate::api::router(hub.shared.clone())
            .oneshot(req)
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        hub.stop().await;
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_without_a_token_and_load_nothing_from_elsewhere() {
        let hub = TestHub::start(HubConfig::default()).await;
        for (path, kind) in [
            ("/", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/style.css", "text/css"),
        ] {
            let (s, _, parts) = hub.call("GET", path, None, None).await;
            assert_eq!(s, StatusCode::OK, "{path}");
            let ct = parts.headers()["content-type"].to_str().unwrap_or_default();
            assert!(ct.starts_with(kind), "{path}: {ct}");
            let csp = parts.headers()["content-security-policy"]
                .to_str()
                .unwrap_or_default();
            assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        }
        assert!(!super::INDEX.contains("http://") && !super::INDEX.contains("https://"));
        let (s, _, _) = hub.call("GET", "/ui/secrets.txt", None, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        hub.stop().await;
    }
}
