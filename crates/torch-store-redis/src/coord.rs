//! Lock grants and help requests on Redis: `scripts/locks.lua` (fenced
//! grants) and `scripts/help.lua` (the atomic first-accept-wins), reads by
//! plain commands. Key layout:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:lockfence` | string | the highest lock fence ever granted |
//! | `P:locks` | hash | fence → the holder's JSON record |
//! | `P:lockname` | hash | fence → lock name (checked by renew and release) |
//! | `P:lockexp` | hash | fence → expiry (unix ms) |
//! | `P:help:<id>` | hash | `rec` (fixed part, JSON), `state`, `expires_ms`, `closed_ms`, `accepted_by`, `accepted_agent`, `helper` |
//! | `P:helps`, `P:helps:open` | sorted sets | every / open request id by creation time |

use std::collections::HashMap;

use redis::Value;
use torch_core::AgentId;
use torch_store::{
    HelpAccept, HelpRecord, HelpStore, LockRecord, LockSnapshot, LockStore, StoreError,
};

use crate::RedisStore;
use crate::scripts::SCRIPTS;
use crate::value::{array, parse_u64, text, uint};

fn json_err(what: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// Pairs of a flat `HGETALL` reply.
fn pairs(what: &str, v: Value) -> Result<HashMap<String, String>, StoreError> {
    let items = array(what, v)?;
    let mut out = HashMap::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.insert(text(what, k)?, text(what, v)?);
    }
    Ok(out)
}

impl LockStore for RedisStore {
    async fn lock_grant(&self, rec: LockRecord) -> Result<bool, StoreError> {
        let json = serde_json::to_string(&rec).map_err(|e| json_err("lock record", e))?;
        let args = [
            "grant".to_string(),
            rec.fence.to_string(),
            rec.name.clone(),
            rec.expires_ms.to_string(),
            json,
        ];
        Ok(uint(
            "lock grant",
            self.eval(&SCRIPTS.locks, rec.granted_ms, &args).await?,
        )? == 1)
    }

    async fn lock_renew(
        &self,
        name: String,
        fence: u64,
        expires_ms: u64,
    ) -> Result<bool, StoreError> {
        let args = [
            "renew".to_string(),
            fence.to_string(),
            name,
            expires_ms.to_string(),
        ];
        Ok(uint("lock renew", self.eval(&SCRIPTS.locks, 0, &args).await?)? == 1)
    }

    async fn lock_release(&self, name: String, fence: u64) -> Result<bool, StoreError> {
        let args = ["release".to_string(), fence.to_string(), name];
        Ok(uint("lock release", self.eval(&SCRIPTS.locks, 0, &args).await?)? == 1)
    }

    async fn lock_load(&self) -> Result<LockSnapshot, StoreError> {
        let v = self.eval(&SCRIPTS.locks, 0, &["load".to_string()]).await?;
        let mut parts = array("lock load", v)?.into_iter();
        let last_fence = uint("lock fence", parts.next().unwrap_or(Value::Nil))?;
        let recs = pairs("locks", parts.next().unwrap_or(Value::Nil))?;
        let exps = pairs("lock expiries", parts.next().unwrap_or(Value::Nil))?;
        let mut holders = Vec::with_capacity(recs.len());
        for (fence, json) in recs {
            let mut rec: LockRecord =
                serde_json::from_str(&json).map_err(|e| json_err("lock record", e))?;
            if let Some(e) = exps.get(&fence) {
                rec.expires_ms = parse_u64("lock expiry", e)?;
            }
            holders.push(rec);
        }
        holders.sort_by_key(|h| h.fence);
        Ok(LockSnapshot {
            last_fence,
            holders,
        })
    }
}

impl RedisStore {
    fn help_key(&self, id: &str) -> String {
        format!("{}:help:{id}", self.keys.tag)
    }

    /// Builds a request from its hash (`None` when it has no `rec`).
    fn help_of(&self, mut h: HashMap<String, String>) -> Result<Option<HelpRecord>, StoreError> {
        let Some(rec) = h.remove("rec") else {
            return Ok(None);
        };
        let mut r: HelpRecord =
            serde_json::from_str(&rec).map_err(|e| json_err("help request", e))?;
        if let Some(s) = h.remove("state") {
            r.state = s;
        }
        r.accepted_by = h.remove("accepted_by");
        r.accepted_agent = h
            .remove("accepted_agent")
            .map(|a| a.parse::<AgentId>())
            .transpose()
            .map_err(|_| StoreError::Corrupt("help request: bad accepting agent id".into()))?;
        r.closed_ms = h
            .remove("closed_ms")
            .map(|c| parse_u64("help closed_ms", &c))
            .transpose()?;
        r.helper = h.remove("helper");
        Ok(Some(r))
    }

    async fn help_many(&self, ids: Vec<String>) -> Result<Vec<HelpRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(self.help_key(id));
        }
        let mut conn = self.conn();
        let maps: Vec<HashMap<String, String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.unavailable("reading", e))?;
        let mut out = Vec::with_capacity(maps.len());
        for m in maps {
            if let Some(r) = self.help_of(m)? {
                out.push(r);
            }
        }
        Ok(out)
    }
}

impl HelpStore for RedisStore {
    async fn help_put(&self, rec: HelpRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(&rec).map_err(|e| json_err("help request", e))?;
        let args = [
            "put".to_string(),
            rec.id.clone(),
            json,
            rec.created_ms.to_string(),
            rec.expires_ms.to_string(),
        ];
        self.eval(&SCRIPTS.help, rec.created_ms, &args).await?;
        Ok(())
    }

    async fn help_accept(
        &self,
        id: String,
        by: String,
        agent: Option<AgentId>,
        now: u64,
    ) -> Result<HelpAccept, StoreError> {
        let args = [
            "accept".to_string(),
            id.clone(),
            by,
            agent.map(|a| a.to_string()).unwrap_or_default(),
        ];
        let status = text("help accept", self.eval(&SCRIPTS.help, now, &args).await?)?;
        if status == "missing" {
            return Ok(HelpAccept::NotFound);
        }
        let Some(rec) = self.help_get(id).await? else {
            return Ok(HelpAccept::NotFound);
        };
        Ok(match status.as_str() {
            "ok" => HelpAccept::Accepted(rec),
            "late" => HelpAccept::TooLate(rec),
            _ => HelpAccept::Closed(rec),
        })
    }

    async fn help_close(
        &self,
        id: String,
        state: String,
        helper: Option<String>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let args = ["close".to_string(), id, state, helper.unwrap_or_default()];
        Ok(uint("help close", self.eval(&SCRIPTS.help, now, &args).await?)? == 1)
    }

    async fn help_get(&self, id: String) -> Result<Option<HelpRecord>, StoreError> {
        Ok(self.help_many(vec![id]).await?.pop())
    }

    async fn help_list(
        &self,
        open_only: bool,
        limit: usize,
    ) -> Result<Vec<HelpRecord>, StoreError> {
        let limit = limit.clamp(1, 10_000) as isize;
        let ids: Vec<String> = if open_only {
            let key = format!("{}:helps:open", self.keys.tag);
            self.query(redis::cmd("ZRANGE").arg(key).arg(0).arg(limit - 1))
                .await?
        } else {
            let key = format!("{}:helps", self.keys.tag);
            let mut ids: Vec<String> = self
                .query(redis::cmd("ZREVRANGE").arg(key).arg(0).arg(limit - 1))
                .await?;
            ids.reverse();
            ids
        };
        self.help_many(ids).await
    }
}
