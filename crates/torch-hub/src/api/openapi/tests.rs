//! The document against the route table: a route without a description (or
//! a description without a route) fails here.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::Value;

use super::ops::OPS;
use super::verb_name;
use crate::api::routes::table;
use crate::config::HubConfig;
use crate::testing::TestHub;

/// Every `(method, path)` the document describes.
fn described(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for method in item.as_object().expect("a path item is an object").keys() {
            out.insert((method.clone(), path.clone()));
        }
    }
    out
}

/// Every `$ref` in `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_describes_every_route_of_the_table_and_nothing_else() {
    let hub = TestHub::start(HubConfig::default()).await;
    // Served without a token.
    let (s, doc, _) = hub.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");

    let routes: BTreeSet<(String, String)> = table(hub.shared.clone())
        .iter()
        .map(|r| (verb_name(r.method).to_string(), r.path.to_string()))
        .collect();
    let in_doc = described(&doc);
    let missing: Vec<_> = routes.difference(&in_doc).collect();
    assert!(
        missing.is_empty(),
        "routes with no description: {missing:?}"
    );
    let extra: Vec<_> = in_doc.difference(&routes).collect();
    assert!(extra.is_empty(), "described but not routed: {extra:?}");
    let declared: BTreeSet<(String, String)> = OPS
        .iter()
        .map(|o| (verb_name(o.method).to_string(), o.path.to_string()))
        .collect();
    assert_eq!(declared.len(), OPS.len(), "an operation is declared twice");
    assert_eq!(declared, routes, "ops::OPS and the route table differ");
    hub.stop().await;
}

#[tokio::test]
async fn every_operation_has_an_id_security_and_error_body_and_every_ref_resolves() {
    let hub = TestHub::start(HubConfig::default()).await;
    let (_, doc, _) = hub.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            assert!(op["security"].is_array(), "{method} {path}: no security");
            let err = &op["responses"]["default"]["content"]["application/json"]["schema"];
            assert_eq!(
                err["$ref"], "#/components/schemas/ErrorBody",
                "{method} {path}: errors are not the error body"
            );
            // Path parameters are declared.
            for seg in path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(['{', '}']);
                let declared = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
                assert!(declared, "{method} {path}: parameter {name} undeclared");
            }
        }
    }
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in [
        "ErrorBody",
        "TaskView",
        "SubmitRequest",
        "TaskState",
        "AgentId",
    ] {
        assert!(schemas.contains_key(name), "no schema {name}");
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("$ref outside components: {r}"));
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }
    // The task list's query parameters come from its query struct.
    let params = doc["paths"]["/api/v1/tasks"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    let names: BTreeSet<&str> = params.iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(
        ["state", "label", "limit", "before", "parent"]
            .iter()
            .all(|n| names.contains(n)),
        "{names:?}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn rejections_of_axum_extractors_answer_with_the_error_body() {
    let hub = TestHub::start(HubConfig::default()).await;
    // A query string that does not parse.
    let (s, j, _) = hub
        .call(
            "GET",
            "/api/v1/tasks?limit=many",
            Some(crate::testing::ADMIN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{j}");
    assert_eq!(j["code"], "invalid_request", "{j}");
    assert!(
        j["message"].as_str().is_some_and(|m| m.contains("limit")),
        "{j}"
    );
    // A body that is not the relay request (the route parses it with axum's `Json`).
    let (s, j, _) = hub
        .call(
            "POST",
            "/api/v1/messages/relay",
            Some(crate::testing::ADMIN),
            Some(serde_json::json!({"nothing": 1})),
        )
        .await;
    assert!(s.is_client_error(), "{s} {j}");
    assert!(j["code"].is_string() && j["message"].is_string(), "{s} {j}");
    hub.stop().await;
}

#[tokio::test]
async fn submit_describes_its_429_with_retry_after_and_the_shed_floor() {
    let hub = TestHub::start(HubConfig::default()).await;
    let (_, doc, _) = hub.call("GET", "/api/v1/openapi.json", None, None).await;
    let r429 = &doc["paths"]["/api/v1/tasks"]["post"]["responses"]["429"];
    assert_eq!(
        r429["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
        "{r429}"
    );
    assert!(
        r429["description"]
            .as_str()
            .is_some_and(|d| d.contains("`shed`")),
        "{r429}"
    );
    assert_eq!(
        r429["headers"]["Retry-After"]["schema"]["type"], "integer",
        "{r429}"
    );
    let error = &doc["components"]["schemas"]["ErrorBody"]["properties"];
    assert!(
        error["floor"].is_object(),
        "ErrorBody has no floor: {error}"
    );
    let stats = &doc["components"]["schemas"]["StatsView"]["properties"];
    assert!(stats["shed"].is_object(), "StatsView has no shed: {stats}");
    hub.stop().await;
}
