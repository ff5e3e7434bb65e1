//! `torch audit list | verify | checkpoint`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use torch_store::audit::{AuditReport, verify_store};
use torch_store::sqlite::{SqliteOptions, SqliteStore};
use torch_store::{AuditCheckpoint, AuditEntry};

use crate::cli::{HubArgs, OutArgs};
use crate::cli_audit::AuditCmd;
use crate::client::Client;
use crate::exit::{BAD_INPUT, ERROR, exit};
use crate::output;

#[derive(Deserialize, Serialize)]
struct AuditList {
    entries: Vec<AuditEntry>,
    next_after: Option<u64>,
}

#[derive(Serialize)]
struct VerifyRequest<'a> {
    checkpoint: Option<&'a AuditCheckpoint>,
}

/// Runs a `torch audit` command.
pub(crate) async fn run(cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::List {
            hub,
            out,
            actor,
            action,
            since,
            limit,
        } => list(hub, out, actor, action, since, limit).await,
        AuditCmd::Verify {
            hub,
            out,
            checkpoint,
            store,
        } => verify(hub, out, checkpoint, store).await,
        AuditCmd::Checkpoint { hub, out } => checkpoint(hub, out).await,
    }
}

fn since_ms(s: &str) -> Result<u64> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(output::now_ms().saturating_sub(d.as_millis() as u64));
    }
    match humantime::parse_rfc3339_weak(s) {
        Ok(t) => Ok(t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)),
        Err(_) => Err(exit(
            BAD_INPUT,
            format!("--since {s:?}: give a duration ago (1h), an RFC 3339 time or unix ms"),
        )),
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    q.join("&")
}

async fn list(
    hub: HubArgs,
    out: OutArgs,
    actor: Option<String>,
    action: Option<String>,
    since: Option<String>,
    limit: usize,
) -> Result<()> {
    let since = since.as_deref().map(since_ms).transpose()?;
    let client = Client::new(&hub.hub, hub.token)?;
    let q = query(&[
        ("actor", actor),
        ("action", action),
        ("since", since.map(|s| s.to_string())),
        ("limit", Some(limit.to_string())),
    ]);
    let list: AuditList = client.get(&format!("/api/v1/audit?{q}")).await?;
    if out.json {
        return output::json(&list);
    }
    let now = output::now_ms();
    let mut t = output::table(&[
        "SEQ", "WHEN", "ACTOR", "ROLE", "ACTION", "TARGET", "OUTCOME", "REASON",
    ]);
    for e in &list.entries {
        let a = &e.entry;
        t.add_row(vec![
            e.seq.to_string(),
            format!("{} ago", output::age(a.at_ms, now)),
            a.actor.clone(),
            a.role.clone(),
            a.action.clone(),
            a.target.clone(),
            a.outcome.clone(),
            a.reason.clone(),
        ]);
    }
    output::line(t.to_string())
}

fn read_checkpoint(path: &Path) -> Result<AuditCheckpoint> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| exit(BAD_INPUT, format!("--checkpoint {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        exit(
            BAD_INPUT,
            format!("--checkpoint {}: not a checkpoint: {e}", path.display()),
        )
    })
}

fn db_path(p: PathBuf) -> Result<PathBuf> {
    let p = if p.is_dir() { p.join("torch.db") } else { p };
    if !p.exists() {
        return Err(exit(
            BAD_INPUT,
            format!("--store {}: no such file", p.display()),
        ));
    }
    Ok(p)
}

async fn verify(
    hub: HubArgs,
    out: OutArgs,
    checkpoint: Option<PathBuf>,
    store: Option<PathBuf>,
) -> Result<()> {
    let cp = checkpoint.as_deref().map(read_checkpoint).transpose()?;
    let report: AuditReport = match store {
        Some(path) => {
            let path = db_path(path)?;
            let store = SqliteStore::open(&path, SqliteOptions::default())
                .with_context(|| format!("opening {}", path.display()))?;
            verify_store(&store, cp.as_ref()).await?
        }
        None => {
            let client = Client::new(&hub.hub, hub.token)?;
            client
                .post(
                    "/api/v1/audit/verify",
                    &VerifyRequest {
                        checkpoint: cp.as_ref(),
                    },
                )
                .await?
        }
    };
    if out.json {
        output::json(&report)?;
    } else if report.ok {
        output::line(format!(
            "ok: {} entries ({}..{}), head {}, {} signed checkpoint(s) checked",
            report.entries,
            report.first_seq,
            report.head.size,
            report.head.hash,
            report.checkpoints
        ))?;
    }
    match &report.problem {
        None => Ok(()),
        Some(p) => Err(exit(
            ERROR,
            format!(
                "audit log does not verify at entry {} ({}): {}",
                p.seq, p.kind, p.message
            ),
        )),
    }
}

async fn checkpoint(hub: HubArgs, out: OutArgs) -> Result<()> {
    let client = Client::new(&hub.hub, hub.token)?;
    let cp: AuditCheckpoint = client.get("/api/v1/audit/checkpoint").await?;
    if out.json {
        return output::json(&cp);
    }
    output::line(format!(
        "size {} head {} signed at {} ms by key {}",
        cp.size, cp.head, cp.at_ms, cp.key
    ))
}
