//! The agent's inbox: verified messages waiting for its tasks, kept on disk
//! (`inbox.jsonl` in the data dir) so they survive a restart, and bounded.
//!
//! The file is a log of records, one JSON object a line: `{"add": …}` for a
//! stored message, `{"ack": [ids]}` for messages read or dropped, and
//! `{"seen": [[id, sent_ms], …]}` for ids remembered after compaction. It
//! is replayed at start and rewritten when acks make up most of it. Each
//! record is written (not fsynced) before the sender is answered, so a
//! `kill -9` of the agent loses nothing; a power loss may lose the tail.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::warn;
use uuid::Uuid;

use torch_api::msg::{Delivery, Envelope, InboxMessage};

const FILE: &str = "inbox.jsonl";
/// Ids remembered at most (for duplicate detection).
const MAX_SEEN: usize = 200_000;

/// A message in the inbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) envelope: Envelope,
    pub(crate) delivery: Delivery,
    #[serde(default)]
    pub(crate) from_name: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    Add(Box<Stored>),
    Ack(Vec<Uuid>),
    Seen(Vec<(Uuid, u64)>),
}

/// What adding a message did.
#[derive(Debug)]
pub(crate) enum Added {
    /// Stored; `dropped` is the oldest non-urgent message pushed out to
    /// make room (to bounce to its sender).
    Stored { dropped: Option<Box<Stored>> },
    /// Already had it (or had it and it was read).
    Duplicate,
    /// Full of urgent messages: refused.
    Full,
}

/// Order key: urgent first, then arrival.
type Slot = (u8, u64);

struct State {
    msgs: BTreeMap<Slot, Stored>,
    by_id: HashMap<Uuid, Slot>,
    /// Ids stored or acked, with their `sent_ms`.
    seen: HashMap<Uuid, u64>,
    seq: u64,
    file: Option<File>,
    /// Records in the file (to know when to compact).
    records: usize,
}

/// The inbox; one per agent.
pub(crate) struct Inbox {
    state: Mutex<State>,
    path: Option<PathBuf>,
    cap: usize,
    /// Bumped on every add, for waiting readers.
    changed: watch::Sender<u64>,
}

impl Inbox {
    /// An inbox kept in `dir` (replayed from its file), or in memory.
    pub(crate) fn open(dir: Option<&Path>, cap: usize) -> std::io::Result<Self> {
        let mut state = State {
            msgs: BTreeMap::new(),
            by_id: HashMap::new(),
            seen: HashMap::new(),
            seq: 0,
            file: None,
            records: 0,
        };
        let path = dir.map(|d| d.join(FILE));
        if let Some(p) = &path {
            if let Ok(f) = File::open(p) {
                for line in BufReader::new(f).lines() {
                    let line = line?;
                    match serde_json::from_str::<Record>(&line) {
                        Ok(r) => state.apply(r),
                        Err(e) => warn!(error = %e, "skipping a damaged inbox record"),
                    }
                    state.records += 1;
                }
            }
            state.file = Some(OpenOptions::new().create(true).append(true).open(p)?);
        }
        let inbox = Inbox {
            state: Mutex::new(state),
            path,
            cap: cap.max(1),
            changed: watch::channel(0).0,
        };
        inbox.compact_if_due(&mut inbox.lock());
        Ok(inbox)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True when `id` was stored here before (even if read since).
    pub(crate) fn has_seen(&self, id: Uuid) -> bool {
        self.lock().seen.contains_key(&id)
    }

    /// Stores a verified message (see [`Added`]).
    pub(crate) fn add(&self, msg: Stored) -> std::io::Result<Added> {
        let mut st = self.lock();
        let id = msg.envelope.id;
        if st.seen.contains_key(&id) {
            return Ok(Added::Duplicate);
        }
        let mut dropped = None;
        if st.msgs.len() >= self.cap {
            let oldest = st.msgs.keys().find(|(prio, _)| *prio == 1).copied();
            match oldest {
                Some(slot) if !msg.envelope.is_urgent() || slot.0 == 1 => {
                    if let Some(old) = st.msgs.remove(&slot) {
                        st.by_id.remove(&old.envelope.id);
                        st.write(&Record::Ack(vec![old.envelope.id]))?;
                        dropped = Some(Box::new(old));
                    }
                }
                _ => return Ok(Added::Full),
            }
        }
        st.write(&Record::Add(Box::new(msg.clone())))?;
        st.apply(Record::Add(Box::new(msg)));
        drop(st);
        self.changed.send_modify(|g| *g = g.wrapping_add(1));
        Ok(Added::Stored { dropped })
    }

    /// Messages in order (urgent first, then arrival), optionally of one
    /// thread, at most `limit`.
    pub(crate) fn list(&self, thread: Option<&str>, limit: usize) -> Vec<InboxMessage> {
        self.lock()
            .msgs
            .values()
            .filter(|m| thread.is_none() || m.envelope.thread.as_deref() == thread)
            .take(limit)
            .map(|m| InboxMessage {
                id: m.envelope.id,
                from: m.envelope.from.clone(),
                from_name: m.from_name.clone(),
                to: m.envelope.to,
                thread: m.envelope.thread.clone(),
                reply_to: m.envelope.reply_to,
                kind: m.envelope.kind.clone(),
                body: m.envelope.body.clone(),
                sent_ms: m.envelope.sent_ms,
                delivery: m.delivery,
                verified: true,
            })
            .collect()
    }

    /// Follows additions (for long polls).
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Removes read messages; returns how many were here.
    pub(crate) fn ack(&self, ids: &[Uuid]) -> std::io::Result<usize> {
        let mut st = self.lock();
        let present: Vec<Uuid> = ids
            .iter()
            .copied()
            .filter(|id| st.by_id.contains_key(id))
            .collect();
        if present.is_empty() {
            return Ok(0);
        }
        st.write(&Record::Ack(present.clone()))?;
        st.apply(Record::Ack(present.clone()));
        self.compact_if_due(&mut st);
        Ok(present.len())
    }

    /// Forgets ids older than `before_ms` (outside the replay window) when
    /// too many are remembered, and rewrites the file when mostly acks.
    fn compact_if_due(&self, st: &mut State) {
        if st.seen.len() > MAX_SEEN {
            let mut sent: Vec<u64> = st.seen.values().copied().collect();
            sent.sort_unstable();
            let cut = sent[sent.len() - MAX_SEEN / 2];
            let kept: std::collections::HashSet<Uuid> = st.by_id.keys().copied().collect();
            st.seen.retain(|id, s| *s >= cut || kept.contains(id));
        }
        let Some(path) = &self.path else { return };
        if st.records < 4_096 || st.records < 4 * (st.msgs.len() + 1) {
            return;
        }
        let tmp = path.with_extension("tmp");
        let result = (|| -> std::io::Result<File> {
            let mut f = File::create(&tmp)?;
            let seen: Vec<(Uuid, u64)> = st.seen.iter().map(|(k, v)| (*k, *v)).collect();
            let mut buf = serde_json::to_vec(&Record::Seen(seen))?;
            buf.push(b'\n');
            for m in st.msgs.values() {
                buf.extend(serde_json::to_vec(&Record::Add(Box::new(m.clone())))?);
                buf.push(b'\n');
            }
            f.write_all(&buf)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            OpenOptions::new().append(true).open(path)
        })();
        match result {
            Ok(f) => {
                st.file = Some(f);
                st.records = st.msgs.len() + 1;
            }
            Err(e) => warn!(error = %e, "could not compact the inbox file"),
        }
    }
}

impl State {
    fn write(&mut self, r: &Record) -> std::io::Result<()> {
        let Some(f) = &mut self.file else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(r)?;
        line.push(b'\n');
        f.write_all(&line)?;
        self.records += 1;
        Ok(())
    }

    fn apply(&mut self, r: Record) {
        match r {
            Record::Add(m) => {
                let id = m.envelope.id;
                if self.by_id.contains_key(&id) {
                    return;
                }
                self.seq += 1;
                let slot = (u8::from(!m.envelope.is_urgent()), self.seq);
                self.seen.insert(id, m.envelope.sent_ms);
                self.by_id.insert(id, slot);
                self.msgs.insert(slot, *m);
            }
            Record::Ack(ids) => {
                for id in ids {
                    if let Some(slot) = self.by_id.remove(&id) {
                        self.msgs.remove(&slot);
                    }
                }
            }
            Record::Seen(ids) => self.seen.extend(ids),
        }
    }
}

#[cfg(test)]
mod tests {
    use torch_core::AgentId;

    use super::*;

    fn msg(n: u128, kind: &str) -> Stored {
        Stored {
            envelope: Envelope {
                id: Uuid::from_u128(n),
                from: "a".into(),
                to: AgentId::from_uuid(Uuid::from_u128(99)),
                thread: Some(if n.is_multiple_of(2) { "even" } else { "odd" }.into()),
                reply_to: None,
                kind: kind.into(),
                body: serde_json::json!(n as u64),
                sent_ms: n as u64,
                ttl_ms: 1_000,
            },
            delivery: Delivery::Direct,
            from_name: None,
        }
    }

    #[test]
    fn bounded_urgent_first_persistent_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let inbox = Inbox::open(Some(dir.path()), 3).unwrap();
            for n in 1..=3 {
                assert!(matches!(
                    inbox.add(msg(n, "text")).unwrap(),
                    Added::Stored { dropped: None }
                ));
            }
            assert!(matches!(
                inbox.add(msg(2, "text")).unwrap(),
                Added::Duplicate
            ));
            match inbox.add(msg(4, "urgent")).unwrap() {
                Added::Stored { dropped: Some(d) } => assert_eq!(d.envelope.id, Uuid::from_u128(1)),
                other => panic!("{other:?}"),
            }
            let ids: Vec<u128> = inbox
                .list(None, 10)
                .iter()
                .map(|m| m.id.as_u128())
                .collect();
            assert_eq!(ids, [4, 2, 3], "urgent first, then arrival");
            assert_eq!(inbox.list(Some("even"), 10).len(), 2);
            assert_eq!(
                inbox
                    .ack(&[Uuid::from_u128(2), Uuid::from_u128(77)])
                    .unwrap(),
                1
            );
        }
        let inbox = Inbox::open(Some(dir.path()), 2).unwrap();
        let ids: Vec<u128> = inbox
            .list(None, 10)
            .iter()
            .map(|m| m.id.as_u128())
            .collect();
        assert_eq!(ids, [4, 3], "survives a restart");
        assert!(matches!(
            inbox.add(msg(2, "text")).unwrap(),
            Added::Duplicate
        ));
        assert!(matches!(
            inbox.add(msg(1, "text")).unwrap(),
            Added::Duplicate
        ));
        assert!(matches!(
            inbox.add(msg(6, "urgent")).unwrap(),
            Added::Stored { dropped: Some(_) }
        ));
        assert!(matches!(inbox.add(msg(8, "urgent")).unwrap(), Added::Full));
    }
}
