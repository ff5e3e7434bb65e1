//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the API,
//! generated from the code so that it cannot drift from it.
//!
//! Every operation is declared once in [`ops::OPS`] with the Rust types of
//! its query, request body and answer; their JSON Schemas come from
//! `schemars` derives on those same types (the ones the handlers parse and
//! send). The document is built from the route table ([`super::routes`]):
//! a route without a declaration, or a declaration without a route, fails
//! the unit tests. Error answers are the hub's error body
//! ([`torch_api::rest::ErrorBody`]). The document is public, like
//! `/api/v1/health`: it describes the API and holds no data.

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};
use torch_api::rest::ErrorBody;

use super::routes::{Route, Verb};

pub(crate) mod ops;

/// A function giving a type's schema from a generator.
pub(crate) type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The schema of `T` (a `$ref` into `components/schemas` for named types).
pub(crate) fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// Who may call an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Auth {
    /// No token needed.
    Public,
    /// A bearer token; the roles allowed are named in the description.
    Bearer(&'static str),
    /// A bearer token unless the hub was configured to serve it publicly.
    Optional(&'static str),
}

/// What a successful call answers.
#[derive(Clone, Copy)]
pub(crate) enum Reply {
    /// One of these statuses with a JSON body of the given schema.
    Json(&'static [u16], SchemaFn),
    /// `204 No Content`.
    NoContent,
    /// `200` with text of one of these media types.
    Text(&'static [&'static str]),
    /// `200` with a server-sent event stream (`text/event-stream`).
    EventStream,
    /// `101 Switching Protocols` to a WebSocket.
    Upgrade,
}

/// One operation of the API.
#[derive(Clone, Copy)]
pub(crate) struct Op {
    /// Its method.
    pub(crate) method: Verb,
    /// Its path, as in the route table.
    pub(crate) path: &'static str,
    /// Its `operationId`.
    pub(crate) id: &'static str,
    /// One line saying what it does.
    pub(crate) summary: &'static str,
    /// Who may call it.
    pub(crate) auth: Auth,
    /// The struct its query string is parsed into, if any.
    pub(crate) query: Option<SchemaFn>,
    /// Its JSON request body, if any, and whether it may be left out.
    pub(crate) body: Option<(SchemaFn, bool)>,
    /// Its answer on success.
    pub(crate) reply: Reply,
    /// Error answers worth describing on their own (besides 401, 403 and
    /// `default`): status, description, and whether it carries `Retry-After`.
    pub(crate) errors: &'static [(u16, &'static str, bool)],
}

/// Where the document is served.
pub(crate) const PATH: &str = "/api/v1/openapi.json";

/// The handler serving `doc` (built once, when the router is).
pub(crate) fn serve(
    doc: &Value,
) -> impl Fn() -> std::future::Ready<Response> + Clone + Send + 'static {
    let body = Bytes::from(doc.to_string());
    move || {
        let mut resp = body.clone().into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        std::future::ready(resp)
    }
}

/// Builds the document for the routes of `table`, each described by its
/// entry in [`ops::OPS`] (a route without one is left out; the tests
/// forbid that).
pub(crate) fn document(table: &[Route]) -> Value {
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
        s.meta_schema = None;
    });
    let mut g = settings.into_generator();
    let error = schema::<ErrorBody>(&mut g).to_value();
    let mut paths: Map<String, Value> = Map::new();
    for route in table {
        let Some(op) = ops::find(route.method, route.path) else {
            tracing::error!(path = route.path, "route without an OpenAPI description");
            continue;
        };
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        if let Value::Object(m) = entry {
            m.insert(verb_name(op.method).into(), operation(op, &mut g, &error));
        }
    }
    let schemas = g.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Nova Torch hub API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The hub's HTTP API (docs/api.md). Errors answer with the \
                error body `{code, message}`; `code` is stable.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (`torch token create`), an agent or node \
                        token, or a task-scoped token (`TORCH_TASK_TOKEN`).",
                },
            },
        },
    })
}

/// The lowercase method name OpenAPI uses.
pub(crate) fn verb_name(v: Verb) -> &'static str {
    match v {
        Verb::Get => "get",
        Verb::Post => "post",
        Verb::Put => "put",
    }
}

fn operation(op: &Op, g: &mut SchemaGenerator, error: &Value) -> Value {
    let mut o = Map::new();
    o.insert("operationId".into(), json!(op.id));
    o.insert("summary".into(), json!(op.summary));
    let (security, roles) = match op.auth {
        Auth::Public => (json!([]), None),
        Auth::Bearer(r) => (json!([{"bearer": []}]), Some(r)),
        Auth::Optional(r) => (json!([{}, {"bearer": []}]), Some(r)),
    };
    o.insert("security".into(), security);
    if let Some(r) = roles {
        o.insert("description".into(), json!(format!("Callers: {r}.")));
    }
    let mut params: Vec<Value> = path_params(op.path);
    if let Some(q) = op.query {
        params.extend(query_params(q));
    }
    if !params.is_empty() {
        o.insert("parameters".into(), Value::Array(params));
    }
    if let Some((body, optional)) = op.body {
        o.insert(
            "requestBody".into(),
            json!({
                "required": !optional,
                "content": {"application/json": {"schema": body(g).to_value()}},
            }),
        );
    }
    let mut responses = Map::new();
    for (status, ok) in success(op.reply, g) {
        responses.insert(status, ok);
    }
    let err =
        |d: &str| json!({"description": d, "content": {"application/json": {"schema": error}}});
    if !matches!(op.auth, Auth::Public) {
        responses.insert(
            "401".into(),
            err("No token, or an unknown, expired or revoked one."),
        );
        responses.insert("403".into(), err("The token's role may not call this."));
    }
    for &(status, description, retry_after) in op.errors {
        let mut answer = err(description);
        if retry_after {
            answer["headers"] = json!({"Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer", "minimum": 0},
            }});
        }
        responses.insert(status.to_string(), answer);
    }
    responses.insert(
        "default".into(),
        err("An error: bad input (4xx) or the hub cannot serve it now (5xx)."),
    );
    o.insert("responses".into(), Value::Object(responses));
    Value::Object(o)
}

/// The success entries of `responses`.
fn success(reply: Reply, g: &mut SchemaGenerator) -> Vec<(String, Value)> {
    let one = match reply {
        Reply::Json(statuses, f) => {
            let body = json!({
                "description": "Success.",
                "content": {"application/json": {"schema": f(g).to_value()}},
            });
            return statuses
                .iter()
                .map(|s| (s.to_string(), body.clone()))
                .collect();
        }
        Reply::NoContent => ("204".into(), json!({"description": "Done; no body."})),
        Reply::Text(types) => {
            let content: Map<String, Value> = types
                .iter()
                .map(|t| ((*t).to_string(), json!({"schema": {"type": "string"}})))
                .collect();
            (
                "200".into(),
                json!({"description": "Success.", "content": content}),
            )
        }
        Reply::EventStream => (
            "200".into(),
            json!({
                "description": "Server-sent events, one per event of the log, each with its id.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }),
        ),
        Reply::Upgrade => (
            "101".into(),
            json!({"description": "Switches to a WebSocket (docs/api.md)."}),
        ),
    };
    vec![one]
}

/// One required string parameter per `{name}` in `path`.
fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
        })
        .collect()
}

/// The fields of a query struct, as query parameters (its schema inlined;
/// `null` dropped from the types, as a query string cannot say null).
fn query_params(f: SchemaFn) -> Vec<Value> {
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    let mut g = settings.into_generator();
    let root = f(&mut g).to_value();
    let required: Vec<&str> = root
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(Value::Object(props)) = root.get("properties") else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, schema)| {
            let mut schema = schema.clone();
            drop_null(&mut schema);
            let mut p = json!({
                "name": name,
                "in": "query",
                "required": required.contains(&name.as_str()),
                "schema": schema,
            });
            if let (Some(d), Value::Object(m)) = (p["schema"].get("description").cloned(), &mut p) {
                m.insert("description".into(), d);
            }
            p
        })
        .collect()
}

/// `{"type": ["integer", "null"]}` becomes `{"type": "integer"}`.
fn drop_null(schema: &mut Value) {
    let Some(Value::Array(types)) = schema.get_mut("type") else {
        return;
    };
    types.retain(|t| t != "null");
    if types.len() == 1 {
        let t = types[0].clone();
        schema["type"] = t;
    }
}

#[cfg(test)]
mod tests;
