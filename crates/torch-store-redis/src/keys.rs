//! Key names. Every key starts with `{<prefix>}:` so that all of them hash
//! to one cluster slot and every script may touch any of them.

use torch_core::{AgentId, TaskId};

/// The key names of one store (one prefix).
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    /// `{<prefix>}`: the hash tag every key starts with.
    pub(crate) tag: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys {
            tag: format!("{{{prefix}}}"),
        }
    }

    fn key(&self, rest: &str) -> String {
        let mut k = String::with_capacity(self.tag.len() + 1 + rest.len());
        k.push_str(&self.tag);
        k.push(':');
        k.push_str(rest);
        k
    }

    /// The fence counter (also the routing key of every script).
    pub(crate) fn fence(&self) -> String {
        self.key("fence")
    }

    /// The global event id counter.
    pub(crate) fn event_id(&self) -> String {
        self.key("eid")
    }

    /// The layout version marker.
    pub(crate) fn version(&self) -> String {
        self.key("version")
    }

    /// The stream holding the events of `name` (one of the stream names of `torch_store`).
    pub(crate) fn stream(&self, name: &str) -> String {
        self.key(&format!("stream:{name}"))
    }

    /// The name of the stream stored at `key`, if it is one of ours.
    pub(crate) fn stream_name<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(&self.tag)?.strip_prefix(":stream:")
    }

    /// A task's hash.
    pub(crate) fn task(&self, id: TaskId) -> String {
        self.key(&format!("t:{id}"))
    }

    /// A task's captured output.
    pub(crate) fn log(&self, id: TaskId) -> String {
        self.key(&format!("log:{id}"))
    }

    /// Metadata (one hash).
    pub(crate) fn meta(&self) -> String {
        self.key("meta")
    }

    /// One token, by its hash.
    pub(crate) fn token(&self, hash: &str) -> String {
        self.key(&format!("token:{hash}"))
    }

    /// The hashes of every token (tokens stored before this set existed are
    /// only in their role's set).
    pub(crate) fn all_tokens(&self) -> String {
        self.key("tokens")
    }

    /// The hashes of the tokens with `role`.
    pub(crate) fn tokens(&self, role: &str) -> String {
        self.key(&format!("tokens:{role}"))
    }

    /// An agent's memory values.
    pub(crate) fn memory(&self, agent: AgentId) -> String {
        self.key(&format!("mem:{agent}"))
    }

    /// When and from whom an agent's memory entries were written.
    pub(crate) fn memory_meta(&self, agent: AgentId) -> String {
        self.key(&format!("memmeta:{agent}"))
    }

    /// The leader lease.
    pub(crate) fn leader(&self) -> String {
        self.key("leader")
    }

    /// The leader fence counter.
    pub(crate) fn leader_fence(&self) -> String {
        self.key("leader:fence")
    }
}
