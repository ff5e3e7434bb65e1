//! The `team` field of a task spec.

use serde::{Deserialize, Serialize};

use crate::skill::SkillReq;

/// A team a task asks for: its roles, optionally which role leads, and a
/// size limit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamSpec {
    /// The roles to fill (at least one).
    pub roles: Vec<RoleSpec>,
    /// The role whose member leads the team (one of `roles`); when absent
    /// the member with the best coordination and history leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Most members in all (at least the sum of the roles' counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u32>,
}

/// One role of a team.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Unique within the team, e.g. `backend`.
    pub name: String,
    /// Skills every member of this role needs, at their minimum levels.
    pub skills: Vec<SkillReq>,
    /// Members in this role (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// The subtask each member of this role gets when the team forms
    /// (routed to that member; its `team` must be empty). Without one, the
    /// leader hands the member work with `torch delegate --team ROLE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Box<crate::spec::TaskSpec>>,
}

fn one() -> u32 {
    1
}

impl TeamSpec {
    /// A team with one member per required skill (`role` named after the
    /// skill): what a task that needs a team but names none gets.
    pub fn from_required(skills: &[SkillReq]) -> TeamSpec {
        TeamSpec {
            roles: skills
                .iter()
                .map(|s| RoleSpec {
                    name: s.name.clone(),
                    skills: vec![s.clone()],
                    count: 1,
                    task: None,
                })
                .collect(),
            leader: None,
            max_size: None,
        }
    }

    /// Members the roles ask for, in all.
    pub fn size(&self) -> u32 {
        self.roles.iter().map(|r| r.count).sum()
    }

    /// What is wrong with the spec, each problem as `(field path, message)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.roles.is_empty() {
            out.push(("team.roles".into(), "needs at least one role".into()));
        }
        for (i, r) in self.roles.iter().enumerate() {
            let at = format!("team.roles[{i}]");
            if r.name.trim().is_empty() {
                out.push((format!("{at}.name"), "must not be empty".into()));
            } else if self.roles[..i].iter().any(|o| o.name == r.name) {
                out.push((
                    format!("{at}.name"),
                    format!("role {:?} is named twice", r.name),
                ));
            }
            if r.skills.is_empty() {
                out.push((format!("{at}.skills"), "needs at least one skill".into()));
            }
            if let Some(t) = &r.task
                && t.team.is_some()
            {
                out.push((
                    format!("{at}.task.team"),
                    "a member's subtask cannot ask for a team of its own".into(),
                ));
            }
            if r.count == 0 || r.count > 100 {
                out.push((
                    format!("{at}.count"),
                    format!("must be 1..=100, got {}", r.count),
                ));
            }
        }
        if let Some(l) = &self.leader
            && !self.roles.iter().any(|r| &r.name == l)
        {
            let names: Vec<&str> = self.roles.iter().map(|r| r.name.as_str()).collect();
            out.push((
                "team.leader".into(),
                format!("names no role ({l:?}; roles: {})", names.join(", ")),
            ));
        }
        if let Some(max) = self.max_size
            && max < self.size()
        {
            out.push((
                "team.max_size".into(),
                format!(
                    "{max} is less than the {} members the roles ask for",
                    self.size()
                ),
            ));
        }
        out
    }
}
