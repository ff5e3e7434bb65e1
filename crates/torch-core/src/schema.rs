//! JSON Schemas of the domain types that travel on the wire, for the hub's
//! OpenAPI document (`GET /api/v1/openapi.json`).
//!
//! Simple types derive `schemars::JsonSchema` where they are defined. The
//! identifiers are strings in UUID form. The large, fast-changing domain
//! documents (a task spec, its analysis, the routing explanation, agent
//! templates, event data, ...) are described here as JSON objects whose
//! fields are documented in `docs/`: they are validated by the hub's own
//! parser, which gives a precise `400` when they are wrong.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use crate::{AgentId, TaskId};

macro_rules! uuid_schema {
    ($name:ty, $title:literal) => {
        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($title)
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "format": "uuid",
                    "description": concat!("A ", $title, " (a UUID)."),
                })
            }
        }
    };
}

/// The schema of a plain UUID field (`uuid::Uuid` has none of its own
/// without a schemars feature): use it as `#[schemars(with = "UuidString")]`.
pub struct UuidString;

uuid_schema!(UuidString, "Uuid");
uuid_schema!(TaskId, "TaskId");
uuid_schema!(AgentId, "AgentId");

macro_rules! object_schema {
    ($name:ty, $title:literal, $doc:literal) => {
        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($title)
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "object",
                    "description": $doc,
                })
            }
        }
    };
}

object_schema!(
    crate::TaskSpec,
    "TaskSpec",
    "A task spec (docs/guide.md): `command` or `prompt`, `skills`, `depends_on`, limits, success criteria."
);
object_schema!(
    crate::SuccessCriteria,
    "SuccessCriteria",
    "A task's success criteria (docs/guide.md)."
);
object_schema!(
    crate::routing::TaskAnalysis,
    "TaskAnalysis",
    "What the hub read from a task spec: its required skills, complexity and estimates (docs/ARCHITECTURE.md)."
);
object_schema!(
    crate::routing::Explanation,
    "Explanation",
    "Why a task went to its agent: the candidates, their scores and factors (docs/ARCHITECTURE.md)."
);
object_schema!(
    crate::routing::AgentStateView,
    "AgentStateView",
    "An agent's routing state: success rates, breaker, load (docs/ARCHITECTURE.md)."
);
object_schema!(
    crate::lifecycle::ScaleDecision,
    "ScaleDecision",
    "One autoscaler decision (docs/lifecycle.md)."
);
object_schema!(
    crate::lifecycle::AgentTemplate,
    "AgentTemplate",
    "An agent template (docs/lifecycle.md)."
);
object_schema!(
    crate::waits::WaitEdge,
    "WaitEdge",
    "One edge of the wait-for graph: who waits for what (docs/collaboration.md)."
);
object_schema!(
    crate::sandbox::SandboxReport,
    "SandboxReport",
    "The isolation an attempt actually got (docs/security.md)."
);
object_schema!(
    crate::EventData,
    "EventData",
    "An event's data; its fields depend on the event kind (docs/api.md)."
);
