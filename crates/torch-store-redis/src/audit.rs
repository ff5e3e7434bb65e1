//! The audit log on Redis (`scripts/audit.lua`): an append and the move
//! of the chain head are one script call, so every hub sharing the store
//! appends to one chain. Reads go to the seq-keyed hash directly.

use redis::Value;
use torch_store::audit::GENESIS;
use torch_store::{AuditCheckpoint, AuditEntry, AuditHead, AuditStore, NewAudit, StoreError};

use crate::RedisStore;
use crate::scripts::SCRIPTS;
use crate::value::{array, parse_u64, text};

impl RedisStore {
    fn audit_key(&self, rest: &str) -> String {
        format!("{}:audit:{rest}", self.keys.tag)
    }
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("audit entry: {what}"))
}

fn parse_entry(seq: u64, json: &str) -> Result<AuditEntry, StoreError> {
    let f: Vec<String> = serde_json::from_str(json).map_err(|e| corrupt(format!("{seq}: {e}")))?;
    let [
        at_ms,
        actor,
        role,
        tenant,
        action,
        target,
        outcome,
        reason,
        detail,
        prev,
        hash,
    ]: [String; 11] = f
        .try_into()
        .map_err(|_| corrupt(format!("{seq}: not 11 fields")))?;
    Ok(AuditEntry {
        seq,
        entry: NewAudit {
            at_ms: parse_u64("audit time", &at_ms)?,
            actor,
            role,
            tenant,
            action,
            target,
            outcome,
            reason,
            detail,
        },
        prev,
        hash,
    })
}

impl AuditStore for RedisStore {
    async fn audit_append(&self, batch: Vec<NewAudit>) -> Result<AuditHead, StoreError> {
        let now = batch.last().map(|e| e.at_ms).unwrap_or(0);
        let mut args = Vec::with_capacity(2 + batch.len() * 9);
        args.push("append".to_owned());
        args.push(batch.len().to_string());
        for e in batch {
            args.extend([
                e.at_ms.to_string(),
                e.actor,
                e.role,
                e.tenant,
                e.action,
                e.target,
                e.outcome,
                e.reason,
                e.detail,
            ]);
        }
        let reply = array("audit append", self.eval(&SCRIPTS.audit, now, &args).await?)?;
        let mut it = reply.into_iter();
        let (Some(seq), Some(hash)) = (it.next(), it.next()) else {
            return Err(corrupt("append reply"));
        };
        Ok(AuditHead {
            size: parse_u64("audit seq", &text("audit seq", seq)?)?,
            hash: text("audit head", hash)?,
        })
    }

    async fn audit_range(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let (first, last): (Option<u64>, Option<u64>) = self
            .query(
                redis::cmd("MGET")
                    .arg(self.audit_key("first"))
                    .arg(self.audit_key("seq")),
            )
            .await?;
        let start = (after + 1).max(first.unwrap_or(1));
        let end = last
            .unwrap_or(0)
            .min(start.saturating_add(limit.max(1) as u64) - 1);
        if start > end {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.audit_key("e"));
        for seq in start..=end {
            cmd.arg(seq);
        }
        let rows: Vec<Option<String>> = self.query(&cmd).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (seq, row) in (start..=end).zip(rows) {
            // A missing seq is left out: verification reports the gap.
            if let Some(json) = row {
                out.push(parse_entry(seq, &json)?);
            }
        }
        Ok(out)
    }

    async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        let (seq, hash): (Option<u64>, Option<String>) = self
            .query(
                redis::cmd("MGET")
                    .arg(self.audit_key("seq"))
                    .arg(self.audit_key("head")),
            )
            .await?;
        Ok(AuditHead {
            size: seq.unwrap_or(0),
            hash: hash.unwrap_or_else(|| GENESIS.to_owned()),
        })
    }

    async fn audit_put_checkpoint(&self, cp: AuditCheckpoint) -> Result<(), StoreError> {
        let json = serde_json::to_string(&cp).map_err(|e| corrupt(e.to_string()))?;
        let args = ["checkpoint".to_owned(), cp.size.to_string(), json];
        self.eval(&SCRIPTS.audit, cp.at_ms, &args).await?;
        Ok(())
    }

    async fn audit_checkpoints(&self) -> Result<Vec<AuditCheckpoint>, StoreError> {
        let all: Vec<String> = self
            .query(redis::cmd("HVALS").arg(self.audit_key("cp")))
            .await?;
        let mut out = all
            .iter()
            .map(|j| {
                serde_json::from_str::<AuditCheckpoint>(j)
                    .map_err(|e| StoreError::Corrupt(format!("audit checkpoint: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|c| c.size);
        Ok(out)
    }

    async fn audit_cut(&self, cp: AuditCheckpoint) -> Result<u64, StoreError> {
        let json = serde_json::to_string(&cp).map_err(|e| corrupt(e.to_string()))?;
        let args = ["cut".to_owned(), cp.size.to_string(), cp.head.clone(), json];
        match self.eval(&SCRIPTS.audit, cp.at_ms, &args).await? {
            Value::Int(n) => Ok(n.max(0) as u64),
            other => Err(StoreError::Invalid(format!(
                "audit cut at {}: {}",
                cp.size,
                match text("audit cut", other)?.as_str() {
                    "head" => "the newest entry always stays".to_owned(),
                    _ => format!("no entry {} with that hash", cp.size),
                }
            ))),
        }
    }
}
