//! Walking the chain: the first entry where a modification, deletion,
//! insertion or reordering shows, and truncation against checkpoints.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::chain::{checkpoint_signature_error, hash_matches};
use super::{AuditCheckpoint, AuditEntry, AuditHead, AuditStore, GENESIS};
use crate::StoreError;

/// Entries read per page while verifying.
const PAGE: usize = 10_000;

/// Where the chain stops holding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditProblem {
    /// The first entry where it shows.
    pub seq: u64,
    /// `modified`, `deleted`, `reordered`, `chain_broken`, `truncated`,
    /// `checkpoint_mismatch` or `checkpoint_forged`.
    pub kind: String,
    /// What was found, in words.
    pub message: String,
}

impl AuditProblem {
    fn new(seq: u64, kind: &str, message: String) -> Self {
        AuditProblem {
            seq,
            kind: kind.into(),
            message,
        }
    }
}

/// What [`verify_store`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditReport {
    /// No problem found.
    pub ok: bool,
    /// Entries checked.
    pub entries: u64,
    /// The first stored entry's seq (above 1 after a retention cut).
    pub first_seq: u64,
    /// The last entry checked: seq and hash.
    pub head: AuditHead,
    /// Signed checkpoints checked (the exported one included).
    pub checkpoints: usize,
    /// The exported checkpoint's size, when one was given.
    pub against: Option<u64>,
    /// The first problem, when there is one.
    pub problem: Option<AuditProblem>,
}

/// Checks entries one by one, in the order read, against the chain so far.
#[derive(Clone, Debug)]
pub struct ChainWalker {
    expect_seq: u64,
    expect_prev: String,
}

impl ChainWalker {
    /// A walk whose first entry must follow `base` (size 0 and [`GENESIS`]
    /// for the start of the log, a cut checkpoint after retention).
    pub fn new(base: AuditHead) -> Self {
        ChainWalker {
            expect_seq: base.size + 1,
            expect_prev: base.hash,
        }
    }

    /// Checks the next entry; the first problem stops the walk.
    pub fn push(&mut self, e: &AuditEntry) -> Result<(), AuditProblem> {
        let want = self.expect_seq;
        if e.seq < want {
            return Err(AuditProblem::new(
                e.seq,
                "reordered",
                format!(
                    "entry {} comes after entry {}: entries were reordered or inserted",
                    e.seq,
                    want - 1
                ),
            ));
        }
        if e.seq > want {
            return Err(AuditProblem::new(
                want,
                "deleted",
                format!("entries {want}..{} are missing", e.seq - 1),
            ));
        }
        if !hash_matches(e) {
            return Err(AuditProblem::new(
                e.seq,
                "modified",
                format!("entry {} does not match its hash: it was modified", e.seq),
            ));
        }
        if e.prev != self.expect_prev {
            return Err(AuditProblem::new(
                e.seq,
                "chain_broken",
                format!(
                    "entry {} does not follow entry {}: an entry was inserted, replaced or reordered",
                    e.seq,
                    want - 1
                ),
            ));
        }
        self.expect_seq += 1;
        self.expect_prev.clone_from(&e.hash);
        Ok(())
    }
}

fn signature_problems(cps: &[&AuditCheckpoint]) -> Vec<AuditProblem> {
    cps.iter()
        .filter_map(|cp| {
            checkpoint_signature_error(cp).map(|why| {
                AuditProblem::new(
                    cp.size,
                    "checkpoint_forged",
                    format!("the checkpoint at size {}: {why}", cp.size),
                )
            })
        })
        .collect()
}

/// Walks the whole log in `store` (see the module docs), checking every
/// stored signed checkpoint and, when given, an `exported` one (which
/// detects entries removed from the end).
pub async fn verify_store<S: AuditStore>(
    store: &S,
    exported: Option<&AuditCheckpoint>,
) -> Result<AuditReport, StoreError> {
    let stored = store.audit_checkpoints().await?;
    let mut all: Vec<&AuditCheckpoint> = stored.iter().collect();
    all.extend(exported);
    let mut problems = signature_problems(&all);
    let mut by_size: HashMap<u64, Vec<&AuditCheckpoint>> = HashMap::new();
    for cp in &all {
        by_size.entry(cp.size).or_default().push(cp);
    }
    let mut report = AuditReport {
        checkpoints: all.len(),
        against: exported.map(|c| c.size),
        head: AuditHead {
            size: 0,
            hash: GENESIS.into(),
        },
        ..AuditReport::default()
    };
    let mut page = store.audit_range(0, PAGE).await?;
    let first = page.first().map(|e| e.seq).unwrap_or(1);
    report.first_seq = first;
    let base = if first <= 1 {
        Some(AuditHead {
            size: 0,
            hash: GENESIS.into(),
        })
    } else {
        stored
            .iter()
            .find(|cp| cp.size == first - 1 && checkpoint_signature_error(cp).is_none())
            .map(|cp| AuditHead {
                size: cp.size,
                hash: cp.head.clone(),
            })
    };
    let Some(base) = base else {
        problems.push(AuditProblem::new(
            1,
            "deleted",
            format!(
                "entries 1..{} are missing and no signed checkpoint marks a retention cut there",
                first - 1
            ),
        ));
        return Ok(finish(report, problems));
    };
    report.head = base.clone();
    let mut walker = ChainWalker::new(base);
    'walk: while !page.is_empty() {
        for e in &page {
            if let Err(p) = walker.push(e) {
                problems.push(p);
                break 'walk;
            }
            for cp in by_size.get(&e.seq).into_iter().flatten() {
                if cp.head != e.hash {
                    problems.push(AuditProblem::new(
                        e.seq,
                        "checkpoint_mismatch",
                        format!(
                            "entry {} has hash {} but the checkpoint signed at {} ms says {}",
                            e.seq, e.hash, cp.at_ms, cp.head
                        ),
                    ));
                    break 'walk;
                }
            }
            report.entries += 1;
            report.head = AuditHead {
                size: e.seq,
                hash: e.hash.clone(),
            };
        }
        let after = report.head.size;
        page = store.audit_range(after, PAGE).await?;
    }
    if problems.is_empty() {
        let last = report.head.size;
        if let Some(cp) = all
            .iter()
            .filter(|cp| cp.size > last)
            .max_by_key(|cp| cp.size)
        {
            problems.push(AuditProblem::new(
                last + 1,
                "truncated",
                format!(
                    "the log ends at entry {last} but a checkpoint signed at {} ms covers {} entries: entries were removed from the end",
                    cp.at_ms, cp.size
                ),
            ));
        }
    }
    Ok(finish(report, problems))
}

fn finish(mut report: AuditReport, problems: Vec<AuditProblem>) -> AuditReport {
    report.problem = problems.into_iter().min_by_key(|p| p.seq);
    report.ok = report.problem.is_none();
    report
}
