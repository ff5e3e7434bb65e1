//! Task analysis (`analyze_task`): which skills a task needs, which would help,
//! how complex it is, and whether one agent can do it or a team is needed.
//!
//! Deterministic and explainable: every inferred skill says where it came
//! from, every complexity estimate lists its reasons. Text is scanned once,
//! linearly, and capped ([`MAX_TEXT_BYTES`] per source) so a 1 MB prompt
//! costs the same as a 64 KiB one; the cap is reported as a warning.

use serde::{Deserialize, Serialize};

use super::history::{History, HistoryEntry, HistoryKey};
use super::taxonomy::{HintKind, Taxonomy, TaxonomyIndex};
use crate::skill::{Skill, SkillReq};
use crate::spec::TaskSpec;

/// Bytes of prompt (and, separately, of command) examined for hints.
pub const MAX_TEXT_BYTES: usize = 64 << 10;
/// Context paths examined for hints.
pub const MAX_PATHS: usize = 1024;

/// A preferred skill and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Inference {
    /// The skill (canonical name; `min` 0 unless given explicitly).
    pub skill: SkillReq,
    /// `explicit`, `prompt keyword 'pytest'`, `path src/main.rs`, …
    pub source: String,
}

/// Coarse complexity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComplexityLevel {
    /// Score below 0.33.
    Low,
    /// Score 0.33 up to 0.66.
    Medium,
    /// Score 0.66 and above.
    High,
}

/// A complexity estimate with its reasons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Complexity {
    /// `0..=1`.
    pub score: f64,
    /// The score bucketed.
    pub level: ComplexityLevel,
    /// What drove the score, in words.
    pub reasons: Vec<String>,
}

/// What analysis concluded about a task; stored with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskAnalysis {
    /// Explicit skills, normalised through synonyms (highest minimum kept on duplicates).
    pub required: Vec<SkillReq>,
    /// Explicit preferred skills, then inferred ones not already required.
    pub preferred: Vec<Inference>,
    /// The complexity estimate.
    pub complexity: Complexity,
    /// True when no single agent covers the required skills but several together do.
    pub needs_team: bool,
    /// Why a team is (or is not) needed, when there is something to say.
    pub team_reason: Option<String>,
    /// Unknown skills, truncated text, uncoverable skills.
    pub warnings: Vec<String>,
    /// Keys to record the task's outcome under in [`History`].
    pub history_key: HistoryKey,
}

/// Analyses `spec` against the taxonomy, the history of similar tasks, and
/// the skills of the agents known now (one `Vec<Skill>` per agent).
///
/// Compiles the taxonomy on every call; callers analysing many tasks should
/// compile once and use [`analyze_with`].
pub fn analyze(
    spec: &TaskSpec,
    tax: &Taxonomy,
    history: &History,
    agents: &[Vec<Skill>],
) -> TaskAnalysis {
    analyze_with(spec, &tax.compile(), history, agents)
}

/// [`analyze`] with a taxonomy compiled once ([`Taxonomy::compile`]).
pub fn analyze_with(
    spec: &TaskSpec,
    idx: &TaxonomyIndex,
    history: &History,
    agents: &[Vec<Skill>],
) -> TaskAnalysis {
    let mut warnings = Vec::new();
    let required = normalise(idx, &spec.skills, &mut warnings);
    let mut preferred: Vec<Inference> = Vec::new();
    for p in normalise(idx, &spec.preferred_skills, &mut warnings) {
        if !required.iter().any(|r| r.name == p.name) {
            preferred.push(Inference {
                skill: p,
                source: "explicit".into(),
            });
        }
    }
    let mut infer = |skill: &str, source: String| {
        if !required.iter().any(|r| r.name == skill)
            && !preferred.iter().any(|p| p.skill.name == skill)
        {
            let skill = SkillReq {
                name: skill.to_string(),
                min: 0.0,
            };
            preferred.push(Inference { skill, source });
        }
    };
    if let Some(prompt) = &spec.prompt {
        let text = capped(prompt, "prompt", &mut warnings);
        idx.scan(text, |s, kind, tok| infer(s, describe("prompt", kind, tok)));
    }
    if let Some(name) = &spec.name {
        idx.scan(&name[..floor(name, 1024)], |s, kind, tok| {
            infer(s, describe("name", kind, tok))
        });
    }
    if let Some(cmd) = &spec.command {
        let mut budget = MAX_TEXT_BYTES;
        for arg in cmd {
            let take = floor(arg, budget);
            idx.scan(&arg[..take], |s, kind, tok| {
                infer(s, describe("command", kind, tok))
            });
            budget -= take;
            if budget == 0 {
                warnings.push(format!("command is longer than {MAX_TEXT_BYTES} bytes; only the start was examined for skill hints"));
                break;
            }
        }
    }
    let paths: &[String] = spec
        .context
        .as_ref()
        .map(|c| c.paths.as_slice())
        .unwrap_or(&[]);
    if paths.len() > MAX_PATHS {
        warnings.push(format!(
            "{} context paths; only the first {MAX_PATHS} were examined for skill hints",
            paths.len()
        ));
    }
    for p in paths.iter().take(MAX_PATHS) {
        idx.scan(&p[..floor(p, 4096)], |s, _, _| {
            infer(s, format!("path {p}"))
        });
    }
    let key_skills = required
        .iter()
        .map(|r| r.name.as_str())
        .chain(preferred.iter().map(|p| p.skill.name.as_str()));
    let history_key = HistoryKey::new(key_skills, spec.name.as_deref());
    let complexity = complexity(
        spec,
        required.len() + preferred.len(),
        history,
        &history_key,
    );
    let (needs_team, team_reason) = team(idx, &required, agents, &mut warnings);
    TaskAnalysis {
        required,
        preferred,
        complexity,
        needs_team,
        team_reason,
        warnings,
        history_key,
    }
}

fn describe(place: &str, kind: HintKind, tok: &str) -> String {
    match kind {
        HintKind::Keyword => format!("{place} keyword '{tok}'"),
        HintKind::Extension => format!("{place} file '{tok}'"),
    }
}

/// The largest char boundary at or below `max`.
fn floor(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn capped<'a>(text: &'a str, what: &str, warnings: &mut Vec<String>) -> &'a str {
    let end = floor(text, MAX_TEXT_BYTES);
    if end < text.len() {
        warnings.push(format!(
            "{what} is {} bytes; only the first {end} were examined for skill hints",
            text.len()
        ));
    }
    &text[..end]
}

fn normalise(idx: &TaxonomyIndex, reqs: &[SkillReq], warnings: &mut Vec<String>) -> Vec<SkillReq> {
    let mut out: Vec<SkillReq> = Vec::new();
    for r in reqs {
        let name = match idx.canonical(&r.name) {
            Some(c) => c.to_string(),
            None => {
                let w = format!("unknown skill {} (not in taxonomy)", r.name);
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
                r.name.clone()
            }
        };
        match out.iter_mut().find(|o| o.name == name) {
            Some(o) => o.min = o.min.max(r.min),
            None => out.push(SkillReq { name, min: r.min }),
        }
    }
    out
}

/// `ln(1 + x/unit)` scaled so that `x == full` gives 1; clamped to `0..=1`.
fn log_scale(x: f64, unit: f64, full: f64) -> f64 {
    ((1.0 + x / unit).ln() / (1.0 + full / unit).ln()).clamp(0.0, 1.0)
}

fn complexity(spec: &TaskSpec, n_skills: usize, history: &History, key: &HistoryKey) -> Complexity {
    let mut reasons = Vec::new();
    let prompt_len = spec.prompt.as_ref().map_or(0, String::len);
    let paths = spec.context.as_ref().map_or(0, |c| c.paths.len());
    let p = log_scale(prompt_len as f64, 500.0, 20_000.0);
    let s = (n_skills.min(6) as f64) / 6.0;
    let n = log_scale(paths as f64, 1.0, 20.0);
    let t = match spec.timeout {
        Some(d) => log_scale(d.as_secs_f64() / 60.0, 1.0, 240.0),
        None => 0.3,
    };
    reasons.push(format!("prompt {prompt_len} bytes"));
    reasons.push(format!("{n_skills} skills required or preferred"));
    if paths > 0 {
        reasons.push(format!("{paths} context paths"));
    }
    if let Some(d) = spec.timeout {
        reasons.push(format!("timeout {}s", d.as_secs()));
    }
    // A long timeout is the user saying "this is big": weigh it as much as the prompt.
    let spec_score = 0.3 * p + 0.25 * s + 0.15 * n + 0.3 * t;
    let mut score = spec_score;
    let mut merged = HistoryEntry::default();
    for k in [&key.skills, &key.name] {
        if let Some(e) = history.get(k) {
            let total = (merged.count + e.count) as f64;
            let w = e.count as f64 / total;
            merged.success_ewma += w * (e.success_ewma - merged.success_ewma);
            merged.mean_duration_ms += w * (e.mean_duration_ms - merged.mean_duration_ms);
            merged.count += e.count;
        }
    }
    if merged.count > 0 {
        let d = log_scale(merged.mean_duration_ms / 60_000.0, 1.0, 240.0);
        let hist = 0.7 * d + 0.3 * (1.0 - merged.success_ewma);
        let conf = merged.count as f64 / (merged.count as f64 + 5.0);
        score = (1.0 - conf) * spec_score + conf * hist;
        reasons.push(format!(
            "history of {} similar tasks: {:.0}% success, mean {:.1}s (weight {:.0}%)",
            merged.count,
            merged.success_ewma * 100.0,
            merged.mean_duration_ms / 1000.0,
            conf * 100.0
        ));
    }
    let score = score.clamp(0.0, 1.0);
    let level = if score < 0.33 {
        ComplexityLevel::Low
    } else if score < 0.66 {
        ComplexityLevel::Medium
    } else {
        ComplexityLevel::High
    };
    Complexity {
        score,
        level,
        reasons,
    }
}

fn team(
    idx: &TaxonomyIndex,
    required: &[SkillReq],
    agents: &[Vec<Skill>],
    warnings: &mut Vec<String>,
) -> (bool, Option<String>) {
    if required.is_empty() {
        return (false, None);
    }
    let agents: Vec<Vec<Skill>> = agents.iter().map(|a| idx.normalize_skills(a)).collect();
    let has = |a: &[Skill], r: &SkillReq| {
        a.iter()
            .any(|s| s.name == r.name && s.level + 1e-9 >= r.min)
    };
    let names = |rs: &[&SkillReq]| {
        rs.iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if agents.iter().any(|a| required.iter().all(|r| has(a, r))) {
        return (false, None);
    }
    let missing: Vec<&SkillReq> = required
        .iter()
        .filter(|r| !agents.iter().any(|a| has(a, r)))
        .collect();
    if !missing.is_empty() {
        warnings.push(format!("no agent covers skills {}", names(&missing)));
        return (
            false,
            Some(format!("no team can cover {} either", names(&missing))),
        );
    }
    // Greedy set cover: how many agents a team would take, for the reason text.
    let mut left: Vec<&SkillReq> = required.iter().collect();
    let mut size = 0;
    while !left.is_empty() {
        let best = agents
            .iter()
            .max_by_key(|a| left.iter().filter(|r| has(a, r)).count());
        let Some(best) = best else { break };
        left.retain(|r| !has(best, r));
        size += 1;
    }
    let all: Vec<&SkillReq> = required.iter().collect();
    let reason = format!(
        "no single agent covers {}; a team of {size} agents does",
        names(&all)
    );
    (true, Some(reason))
}

#[cfg(test)]
#[path = "analysis_tests.rs"]
mod tests;
