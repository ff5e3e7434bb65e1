//! The hubs' leader lease: one hub schedules while the others serve; when
//! it stops renewing, another takes over with a higher leader fence.
//!
//! The lease is the key `{prefix}:leader` holding `<fence>:<hub id>` with a
//! Redis-side expiry (`SET … PX`); the fence comes from `INCR
//! {prefix}:leader:fence`, both in one script, so every new holder gets a
//! fence higher than any before. A leader should stamp what only the leader
//! may do with its fence and stop the moment a renewal says `false`.

use torch_store::StoreError;

use crate::RedisStore;
use crate::scripts::SCRIPTS;
use crate::value::{self, map_err};

impl RedisStore {
    async fn leader_op(
        &self,
        op: &str,
        hub_id: &str,
        ttl_ms: u64,
        fence: u64,
    ) -> Result<redis::Value, StoreError> {
        if hub_id.is_empty() {
            return Err(StoreError::Invalid("hub id must not be empty".into()));
        }
        let mut inv = SCRIPTS.leader.key(self.keys.leader());
        inv.key(self.keys.leader_fence())
            .arg(op)
            .arg(hub_id)
            .arg(ttl_ms.max(1))
            .arg(fence);
        let mut conn = self.leader_conn.clone();
        inv.invoke_async(&mut conn).await.map_err(map_err)
    }

    /// Takes the leader lease for `ttl_ms` if no hub holds it. Returns the
    /// new leader fence, or `None` while another hub holds the lease. A hub
    /// that already holds it gets its current fence back and its lease
    /// extended.
    pub async fn leader_acquire(
        &self,
        hub_id: &str,
        ttl_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let v = self.leader_op("acquire", hub_id, ttl_ms, 0).await?;
        match v {
            redis::Value::Nil => Ok(None),
            v => value::uint("leader fence", v).map(Some),
        }
    }

    /// Extends the lease by `ttl_ms` if `hub_id` still holds it under
    /// `fence`. `false`: the lease expired or another hub holds it now;
    /// stop acting as leader.
    pub async fn leader_renew(
        &self,
        hub_id: &str,
        fence: u64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let v = self.leader_op("renew", hub_id, ttl_ms, fence).await?;
        Ok(value::uint("renewed", v)? == 1)
    }

    /// Gives the lease up (if `hub_id` holds it under `fence`) so another
    /// hub can take over at once. Returns whether it was held.
    pub async fn leader_release(&self, hub_id: &str, fence: u64) -> Result<bool, StoreError> {
        let v = self.leader_op("release", hub_id, 1, fence).await?;
        Ok(value::uint("released", v)? == 1)
    }

    /// The current leader and its fence, if the lease is held.
    pub async fn leader_current(&self) -> Result<Option<(String, u64)>, StoreError> {
        let v: Option<String> = self
            .query(redis::cmd("GET").arg(self.keys.leader()))
            .await?;
        let Some(v) = v else {
            return Ok(None);
        };
        let (fence, hub) = v
            .split_once(':')
            .ok_or_else(|| StoreError::Corrupt(format!("bad leader lease {v:?}")))?;
        Ok(Some((
            hub.to_owned(),
            value::parse_u64("leader fence", fence)?,
        )))
    }
}
