//! Formation examples: who is chosen and why, leaders, reasons.

use super::*;
use crate::ids::AgentId;
use crate::skill::{Skill, SkillReq};

pub(super) fn agent(
    n: u8,
    name: &str,
    skills: &[(&str, f64)],
    cost: f64,
    success: f64,
) -> Candidate {
    Candidate {
        id: CandidateId::Agent(AgentId::from_uuid(uuid::Uuid::from_u128(u128::from(n)))),
        name: name.into(),
        skills: skills
            .iter()
            .map(|(s, l)| Skill {
                name: (*s).into(),
                level: *l,
            })
            .collect(),
        cost,
        success,
        capacity: 1,
    }
}

pub(super) fn role(name: &str, skills: &[&str], count: u32) -> RoleSpec {
    RoleSpec {
        name: name.into(),
        skills: skills
            .iter()
            .map(|s| s.parse::<SkillReq>().expect("skill"))
            .collect(),
        count,
        task: None,
    }
}

fn team(roles: Vec<RoleSpec>) -> TeamSpec {
    TeamSpec {
        roles,
        leader: None,
        max_size: None,
    }
}

#[test]
fn complementary_cheap_members_cover_every_role() {
    let spec = team(vec![
        role("backend", &["rust:0.7"], 1),
        role("frontend", &["typescript"], 1),
        role("tests", &["testing"], 1),
    ]);
    let cands = vec![
        // Can do everything: overlaps every other role.
        agent(
            1,
            "generalist",
            &[("rust", 0.9), ("typescript", 1.0), ("testing", 1.0)],
            1.0,
            0.9,
        ),
        agent(2, "rustacean", &[("rust", 0.8)], 1.0, 0.9),
        agent(3, "webdev", &[("typescript", 0.9)], 1.0, 0.9),
        agent(4, "tester", &[("testing", 0.9)], 1.0, 0.9),
        agent(5, "junior", &[("rust", 0.5)], 0.1, 0.9),
    ];
    let f = form(&spec, &cands, &FormationWeights::default()).expect("formed");
    let names: Vec<(&str, &str)> = f
        .members
        .iter()
        .map(|m| (m.role.as_str(), m.name.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("backend", "rustacean"),
            ("frontend", "webdev"),
            ("tests", "tester")
        ]
    );
    let backend = &f.roles[0];
    assert!(
        backend
            .rejected
            .iter()
            .any(|(n, why)| n == "junior" && why.contains("rust 0.50 < 0.70")),
        "{backend:?}"
    );
    assert!(
        f.leader_reason.contains("coordination"),
        "{}",
        f.leader_reason
    );
}

#[test]
fn the_spec_leader_leads_else_coordination_and_history_decide() {
    let mut spec = team(vec![role("a", &["x"], 1), role("b", &["y"], 1)]);
    let cands = vec![
        agent(1, "ann", &[("x", 1.0)], 0.0, 0.6),
        agent(2, "bob", &[("y", 1.0), ("coordination", 0.9)], 0.0, 0.6),
    ];
    let f = form(&spec, &cands, &FormationWeights::default()).unwrap();
    assert_eq!(f.members[f.leader].name, "bob");
    spec.leader = Some("a".into());
    let f = form(&spec, &cands, &FormationWeights::default()).unwrap();
    assert_eq!(f.members[f.leader].name, "ann");
    assert!(f.leader_reason.contains("\"a\""), "{}", f.leader_reason);
}

#[test]
fn templates_fill_roles_no_agent_covers_and_agents_are_preferred() {
    let spec = team(vec![role("db", &["sql"], 2), role("ops", &["k8s"], 1)]);
    let mut tpl = agent(9, "sql-template", &[("sql", 1.0)], 0.0, 0.5);
    tpl.id = CandidateId::Template("sql".into());
    tpl.capacity = 3;
    let cands = vec![
        tpl,
        agent(1, "dba", &[("sql", 0.8)], 0.0, 0.5),
        agent(2, "sre", &[("k8s", 1.0)], 0.0, 0.5),
    ];
    let f = form(&spec, &cands, &FormationWeights::default()).unwrap();
    let db: Vec<&str> = f
        .members
        .iter()
        .filter(|m| m.role == "db")
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        db,
        vec!["dba", "sql-template"],
        "the agent first, one spawn for the rest"
    );
}

#[test]
fn a_team_that_cannot_be_formed_says_which_role_and_why() {
    let cands = vec![
        agent(1, "ann", &[("rust", 0.5)], 0.0, 0.5),
        agent(2, "bob", &[("go", 1.0)], 0.0, 0.5),
    ];
    let w = FormationWeights::default();
    let e = form(&team(vec![role("backend", &["rust:0.8"], 1)]), &cands, &w).unwrap_err();
    assert_eq!(
        e.to_string(),
        "role \"backend\" cannot be covered: needs rust at 0.80 (best: ann at 0.50)"
    );
    let e = form(&team(vec![role("ml", &["python"], 1)]), &cands, &w).unwrap_err();
    assert!(
        e.to_string()
            .contains("python (no agent or template has it)"),
        "{e}"
    );
    let e = form(&team(vec![role("go", &["go"], 2)]), &cands, &w).unwrap_err();
    assert!(e.to_string().contains("needs 2 members but only 1"), "{e}");
    // Each role alone is coverable; together they compete for ann.
    let both = vec![
        agent(1, "ann", &[("rust", 1.0), ("go", 1.0)], 0.0, 0.5),
        agent(2, "bob", &[("c", 1.0)], 0.0, 0.5),
    ];
    let e = form(
        &team(vec![role("r", &["rust"], 1), role("g", &["go"], 1)]),
        &both,
        &w,
    )
    .unwrap_err();
    assert_eq!(
        e,
        FormationError::Contended {
            roles: vec!["r".into(), "g".into()],
            need: 2,
            candidates: vec!["ann".into()],
        }
    );
    let mut big = team(vec![role("r", &["rust"], 3)]);
    big.max_size = Some(2);
    assert_eq!(
        form(&big, &both, &w).unwrap_err(),
        FormationError::TooLarge { need: 3, max: 2 }
    );
    let mut busy = both.clone();
    busy[0].capacity = 0;
    let e = form(&team(vec![role("r", &["rust"], 1)]), &busy, &w).unwrap_err();
    assert!(e.to_string().contains("busy"), "{e}");
}

#[test]
fn specs_are_checked_with_field_paths() {
    let mut spec = team(vec![role("a", &["x"], 1), role("a", &[], 0)]);
    spec.leader = Some("z".into());
    spec.max_size = Some(0);
    let p: Vec<String> = spec.problems().into_iter().map(|(at, _)| at).collect();
    assert_eq!(
        p,
        vec![
            "team.roles[1].name",
            "team.roles[1].skills",
            "team.roles[1].count",
            "team.leader",
            "team.max_size"
        ]
    );
    let spec: TeamSpec = toml::from_str(
        r#"roles = [{ name = "backend", skills = ["rust:0.7"] }, { name = "ui", skills = ["ts"], count = 2 }]
leader = "backend"
max_size = 4"#,
    )
    .unwrap();
    assert!(spec.problems().is_empty());
    assert_eq!(spec.size(), 3);
    assert_eq!(
        TeamSpec::from_required(&spec.roles[0].skills).roles[0].name,
        "rust"
    );
}
