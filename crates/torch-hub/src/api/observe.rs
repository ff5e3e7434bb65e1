//! Observability routes: `GET /metrics` (Prometheus text, or OpenMetrics
//! when the scraper asks for it), `GET /api/v1/alerts` and
//! `GET /api/v1/capacity`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use torch_api::rest::{AlertList, CapacityReport};
use torch_store::Store;

use super::{ApiError, Need, authorize, stopping};
use crate::alerts::AlertsQuery;
use crate::hub::Shared;
use crate::metrics::{CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT, to_openmetrics};

type St<S> = State<Arc<Shared<S>>>;

/// Whether the scraper asked for OpenMetrics (`Accept`).
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

/// `GET /metrics`: an API token unless `[metrics] public = true`.
pub(crate) async fn metrics<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !shared.cfg.observe.metrics_public {
        authorize(&shared, &headers, Need::Submit).await?;
    }
    let sample = crate::metrics::sample(&shared).await;
    shared.metrics.export(&sample);
    let text = shared.metrics.render();
    let (body, ctype) = if wants_openmetrics(&headers) {
        (to_openmetrics(&text), CONTENT_TYPE_OPENMETRICS)
    } else {
        (text, CONTENT_TYPE_TEXT)
    };
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    Ok(resp)
}

/// `GET /api/v1/alerts`: firing alerts and recent changes.
pub(crate) async fn alerts<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
) -> Result<Json<AlertList>, ApiError> {
    authorize(&shared, &headers, Need::Submit).await?;
    let list = shared
        .alerts
        .ask(AlertsQuery::List)
        .await
        .ok_or_else(stopping)?;
    Ok(Json(list))
}

/// Query of `GET /api/v1/capacity`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct CapacityQuery {
    /// Window of the measurement, e.g. `15m` (default `alerting.capacity-window`).
    window: Option<String>,
}

/// `GET /api/v1/capacity`: per pool arrival rate, service time, utilisation,
/// schedule-to-start p95 and the recommended size; resource headroom.
pub(crate) async fn capacity<S: Store>(
    State(shared): St<S>,
    headers: HeaderMap,
    Query(q): Query<CapacityQuery>,
) -> Result<Json<CapacityReport>, ApiError> {
    authorize(&shared, &headers, Need::Submit).await?;
    let window = match q.window.as_deref() {
        None => shared.cfg.observe.capacity_window,
        Some(w) => humantime::parse_duration(w).map_err(|e| {
            ApiError::bad_request(
                "bad_window",
                format!("window {w:?}: {e} (expected e.g. \"15m\", \"1h\")"),
            )
        })?,
    };
    if window < Duration::from_secs(1) {
        return Err(ApiError::bad_request(
            "bad_window",
            "window must be at least 1s",
        ));
    }
    let report = crate::capacity::report(&shared, window)
        .await
        .ok_or_else(stopping)?;
    Ok(Json(report))
}
