//! Events as the API carries them (`GET /api/v1/events`).

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};
use torch_core::{AgentId, EventData, TaskId};

/// One event from a stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(from = "EventWire")]
pub struct EventView {
    /// Position in the global event log (increasing).
    pub id: u64,
    /// Stream name, e.g. `nova.torch.tasks.completed`.
    pub stream: String,
    /// Event kind, e.g. `task.succeeded`: a string, as a newer hub may write
    /// kinds this build does not know (parse it as a
    /// [`torch_core::EventKind`]).
    pub kind: String,
    /// Task concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    /// Agent concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// When (unix ms).
    pub at_ms: u64,
    /// Kind-specific details.
    #[schemars(with = "serde_json::Value")]
    pub data: EventPayload,
}

/// An event's data: typed by its kind ([`EventData`], declared with the
/// kinds in `torch_core::events`) when this build knows the kind and the
/// data is exactly the kind's payload; otherwise kept as it came, so that
/// nothing a newer hub (or an older store) wrote is lost on the way through.
///
/// On the wire it is the data alone, a JSON object with sorted keys, as
/// before it was typed.
#[derive(Clone, Debug, PartialEq)]
pub enum EventPayload {
    /// The data of a known kind, typed.
    Known(EventData),
    /// Data this reader does not know: of a kind it does not know, or with
    /// fields or a shape that the kind's payload does not reproduce.
    Unknown(serde_json::Value),
}

impl EventPayload {
    /// The data `data` of an event of kind `kind`.
    pub fn read(kind: &str, data: serde_json::Value) -> EventPayload {
        match kind.parse().ok().and_then(|k| EventData::read(k, &data)) {
            Some(known) => EventPayload::Known(known),
            None => EventPayload::Unknown(data),
        }
    }

    /// The typed data, when this build knows it.
    pub fn known(&self) -> Option<&EventData> {
        match self {
            EventPayload::Known(d) => Some(d),
            EventPayload::Unknown(_) => None,
        }
    }
}

impl Serialize for EventPayload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EventPayload::Known(d) => crate::json::sorted(d, s),
            EventPayload::Unknown(v) => v.serialize(s),
        }
    }
}

/// The JSON text of the data, as `torch watch` prints it.
impl fmt::Display for EventPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

/// An [`EventView`] as read, before its data is typed by its kind.
#[derive(Deserialize, schemars::JsonSchema)]
struct EventWire {
    id: u64,
    stream: String,
    kind: String,
    #[serde(default)]
    task_id: Option<TaskId>,
    #[serde(default)]
    agent_id: Option<AgentId>,
    at_ms: u64,
    data: serde_json::Value,
}

impl From<EventWire> for EventView {
    fn from(w: EventWire) -> EventView {
        let data = EventPayload::read(&w.kind, w.data);
        EventView {
            id: w.id,
            stream: w.stream,
            kind: w.kind,
            task_id: w.task_id,
            agent_id: w.agent_id,
            at_ms: w.at_ms,
            data,
        }
    }
}

/// `GET /api/v1/events?after=N&stream=S&limit=L&wait_ms=W`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EventPage {
    /// Events after the cursor, oldest first.
    pub events: Vec<EventView>,
    /// Cursor for the next call.
    pub last_id: u64,
}
