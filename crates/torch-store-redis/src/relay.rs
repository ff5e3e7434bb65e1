//! Relayed messages on Redis (`scripts/relay.lua`): one script call per
//! operation, so each is atomic.

use redis::Value;
use torch_core::AgentId;
use torch_store::{RelayPut, RelayStore, RelayedMessage, StoreError};

use crate::RedisStore;
use crate::scripts::SCRIPTS;
use crate::value::{array, parse_u64, text, uint};

fn messages(v: Value) -> Result<Vec<RelayedMessage>, StoreError> {
    let items = array("relay rows", v)?;
    let mut out = Vec::with_capacity(items.len() / 3);
    let mut it = items.into_iter();
    while let (Some(id), Some(meta), Some(env)) = (it.next(), it.next(), it.next()) {
        let id = text("relay id", id)?;
        let meta = text("relay meta", meta)?;
        let mut parts = meta.split('\t');
        let (Some(to), Some(from), Some(urgent), Some(expires)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(StoreError::Corrupt(format!("relay meta of {id}: {meta:?}")));
        };
        out.push(RelayedMessage {
            to: to
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("relay recipient {to:?}: {e}")))?,
            from: from.to_string(),
            urgent: urgent == "1",
            expires_ms: parse_u64("relay expiry", expires)?,
            envelope: text("relay envelope", env)?,
            id,
        });
    }
    Ok(out)
}

impl RelayStore for RedisStore {
    async fn relay_put(&self, msg: RelayedMessage, cap: usize) -> Result<RelayPut, StoreError> {
        let args = [
            "put".to_string(),
            msg.id,
            msg.to.to_string(),
            msg.from,
            if msg.urgent { "1" } else { "0" }.to_string(),
            msg.expires_ms.to_string(),
            msg.envelope,
            cap.to_string(),
        ];
        let reply = self.eval(&SCRIPTS.relay, msg.expires_ms, &args).await?;
        match text("relay put", reply)?.as_str() {
            "stored" => Ok(RelayPut::Stored),
            "duplicate" => Ok(RelayPut::Duplicate),
            "full" => Ok(RelayPut::Full),
            other => Err(StoreError::Corrupt(format!(
                "unexpected relay result {other:?}"
            ))),
        }
    }

    async fn relay_pending(
        &self,
        to: AgentId,
        limit: usize,
    ) -> Result<Vec<RelayedMessage>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let args = ["pending".to_string(), to.to_string(), limit.to_string()];
        messages(self.eval(&SCRIPTS.relay, 0, &args).await?)
    }

    async fn relay_remove(&self, to: AgentId, ids: Vec<String>) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut args = vec!["remove".to_string(), to.to_string()];
        args.extend(ids);
        Ok(uint("relay removed", self.eval(&SCRIPTS.relay, 0, &args).await?)? as usize)
    }

    async fn relay_take_expired(
        &self,
        now: u64,
        limit: usize,
    ) -> Result<Vec<RelayedMessage>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let args = ["expire".to_string(), now.to_string(), limit.to_string()];
        messages(self.eval(&SCRIPTS.relay, now, &args).await?)
    }
}
