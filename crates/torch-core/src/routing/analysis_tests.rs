//! The analysis table and history tests.

use std::time::Duration;

use super::*;
use crate::spec::TaskContext;

fn spec(prompt: &str, skills: &[&str]) -> TaskSpec {
    TaskSpec {
        prompt: Some(prompt.to_string()),
        skills: skills.iter().map(|s| s.parse().unwrap()).collect(),
        ..Default::default()
    }
}
fn agents(list: &[&str]) -> Vec<Vec<Skill>> {
    list.iter()
        .map(|a| crate::skill::parse_skill_list(a).unwrap())
        .collect()
}
fn names(a: &TaskAnalysis) -> (Vec<String>, Vec<String>) {
    let req = a.required.iter().map(|r| r.to_string()).collect();
    let pref = a.preferred.iter().map(|p| p.skill.name.clone()).collect();
    (req, pref)
}

#[test]
fn analysis_table() {
    let tax = Taxonomy::default();
    let none = History::new();
    let fleet = agents(&["python:0.9,testing", "rust:0.9", "sh,devops"]);
    let huge = format!(
        "Update the docker image. {} kubernetes",
        "lorem ipsum ".repeat(90_000)
    );
    let mut paths = spec("", &[]);
    paths.context = Some(TaskContext {
        paths: vec!["src/main.rs".into(), "deploy/Dockerfile".into()],
        ..Default::default()
    });
    let mut cmd = spec("", &[]);
    cmd.prompt = None;
    cmd.command = Some(vec!["cargo".into(), "test".into(), "--all".into()]);
    let mut pref = spec("write the README", &["bash"]);
    pref.preferred_skills = vec!["js".parse().unwrap(), "sh".parse().unwrap()];
    pref.timeout = Some(Duration::from_secs(4 * 3600));
    // (spec, required, preferred, level, needs team, warning fragments)
    type Row<'a> = (
        TaskSpec,
        &'a [&'a str],
        &'a [&'a str],
        ComplexityLevel,
        bool,
        &'a [&'a str],
    );
    let table: Vec<Row<'_>> = vec![
        (
            spec(
                "Fix the flaky pytest in tests/test_api.py",
                &["py", "rust:0.8"],
            ),
            &["python", "rust>=0.8"],
            &["testing"],
            ComplexityLevel::Low,
            true,
            &[],
        ),
        (spec("", &[]), &[], &[], ComplexityLevel::Low, false, &[]),
        (
            spec(&huge, &["devops"]),
            &["devops"],
            &[],
            ComplexityLevel::Medium,
            false,
            &["only the first 65536"],
        ),
        (
            spec("port the billing module", &["cobol"]),
            &["cobol"],
            &[],
            ComplexityLevel::Low,
            false,
            &[
                "unknown skill cobol (not in taxonomy)",
                "no agent covers skills cobol",
            ],
        ),
        (
            paths,
            &[],
            &["rust", "devops"],
            ComplexityLevel::Low,
            false,
            &[],
        ),
        (
            cmd,
            &[],
            &["rust", "testing"],
            ComplexityLevel::Low,
            false,
            &[],
        ),
        (
            pref,
            &["sh"],
            &["javascript", "docs"],
            ComplexityLevel::Medium,
            false,
            &[],
        ),
    ];
    for (i, (s, req, pref, level, team, warns)) in table.into_iter().enumerate() {
        let a = analyze(&s, &tax, &none, &fleet);
        let (r, p) = names(&a);
        assert_eq!(r, *req, "row {i} required");
        assert_eq!(p, *pref, "row {i} preferred");
        assert_eq!(
            a.complexity.level, level,
            "row {i} level {:?}",
            a.complexity
        );
        assert_eq!(a.needs_team, team, "row {i} team {:?}", a.team_reason);
        assert_eq!(
            a.warnings.len(),
            warns.len(),
            "row {i} warnings {:?}",
            a.warnings
        );
        for (w, frag) in a.warnings.iter().zip(warns) {
            assert!(w.contains(frag), "row {i}: {w:?} lacks {frag:?}");
        }
    }
}

#[test]
fn sources_team_reason_and_history() {
    let tax = Taxonomy::default();
    let mut s = spec("Review src/lib.rs for XSS", &["python", "rust"]);
    s.name = Some("nightly build 42".into());
    let fleet = agents(&["python", "rust", "go"]);
    let a = analyze(&s, &tax, &History::new(), &fleet);
    let sources: Vec<&str> = a.preferred.iter().map(|p| p.source.as_str()).collect();
    assert_eq!(
        sources,
        vec!["prompt keyword 'review'", "prompt keyword 'xss'"]
    );
    assert!(a.needs_team);
    assert_eq!(
        a.team_reason.as_deref(),
        Some("no single agent covers python, rust; a team of 2 agents does")
    );
    assert_eq!(a.history_key.skills, "skills:python,review,rust,security");
    assert_eq!(a.history_key.name, "name:nightly build #");
    // Slow, failing history of similar tasks raises the estimate.
    let before = a.complexity.score;
    let mut h = History::new();
    for _ in 0..20 {
        h.record(&a.history_key, false, 3 * 3600 * 1000);
    }
    let b = analyze(&s, &tax, &h, &fleet);
    assert!(b.complexity.score > before + 0.3);
    assert_eq!(b.complexity.level, ComplexityLevel::High);
    assert!(
        b.complexity
            .reasons
            .iter()
            .any(|r| r.starts_with("history of 40 similar tasks"))
    );
    assert_eq!(analyze(&s, &tax, &h, &fleet), b, "deterministic");
    let json = serde_json::to_string(&b).unwrap();
    assert_eq!(serde_json::from_str::<TaskAnalysis>(&json).unwrap(), b);
}
