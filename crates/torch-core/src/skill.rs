//! Skills: what an agent can do (with a proficiency in `0..=1`) and what a task
//! requires (with a minimum level).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// A skill an agent advertises, with its proficiency in `0.0..=1.0`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Skill {
    /// Lower-case skill name, e.g. `rust`.
    pub name: String,
    /// Proficiency in `0.0..=1.0`; `1.0` when the agent did not say.
    pub level: f64,
}

/// A skill a task needs, with the minimum proficiency that satisfies it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SkillReq {
    /// Lower-case skill name.
    pub name: String,
    /// Minimum proficiency in `0.0..=1.0`; `0.0` means "any level".
    pub min: f64,
}

/// Why a skill string could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SkillParseError {
    /// The name part was empty or had characters outside `[a-z0-9_.+#-]`.
    #[error("invalid skill name {0:?}: use letters, digits and _ . + # -")]
    BadName(String),
    /// The level part was not a number in `0..=1`.
    #[error("invalid level {level:?} for skill {name:?}: expected a number between 0 and 1")]
    BadLevel {
        /// The skill whose level was bad.
        name: String,
        /// The text given as level.
        level: String,
    },
}

fn parse_pair(s: &str) -> Result<(String, Option<f64>), SkillParseError> {
    let s = s.trim();
    let (name, level) = match s.split_once(':') {
        Some((n, l)) => (n.trim(), Some(l.trim())),
        None => (s, None),
    };
    let name = name.to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.+#-".contains(c));
    if !valid {
        return Err(SkillParseError::BadName(name));
    }
    let level = match level {
        None => None,
        Some(l) => match l.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Some(v),
            _ => {
                return Err(SkillParseError::BadLevel {
                    name,
                    level: l.to_string(),
                });
            }
        },
    };
    Ok((name, level))
}

impl FromStr for Skill {
    type Err = SkillParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, level) = parse_pair(s)?;
        Ok(Skill {
            name,
            level: level.unwrap_or(1.0),
        })
    }
}

impl FromStr for SkillReq {
    type Err = SkillParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, min) = parse_pair(s)?;
        Ok(SkillReq {
            name,
            min: min.unwrap_or(0.0),
        })
    }
}

impl fmt::Display for Skill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.level)
    }
}

impl fmt::Display for SkillReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min > 0.0 {
            write!(f, "{}>={}", self.name, self.min)
        } else {
            f.write_str(&self.name)
        }
    }
}

/// Parses a comma-separated skill list such as `rust:0.9,python`.
pub fn parse_skill_list(s: &str) -> Result<Vec<Skill>, SkillParseError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(Skill::from_str)
        .collect()
}

/// True when `skills` satisfies every requirement in `reqs`.
pub fn covers(skills: &[Skill], reqs: &[SkillReq]) -> bool {
    reqs.iter().all(|r| {
        skills
            .iter()
            .any(|s| s.name == r.name && s.level + 1e-9 >= r.min)
    })
}

impl<'de> Deserialize<'de> for SkillReq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Table {
                name: String,
                #[serde(default)]
                min: Option<f64>,
            },
        }
        match Repr::deserialize(d)? {
            Repr::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Repr::Table { name, min } => {
                let text = match min {
                    Some(m) => format!("{name}:{m}"),
                    None => name,
                };
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_checks_coverage() {
        let skills = parse_skill_list("Rust:0.9, python").unwrap();
        assert_eq!(skills[0].name, "rust");
        assert_eq!(skills[0].level, 0.9);
        assert_eq!(skills[1].level, 1.0);
        let need: SkillReq = "rust:0.8".parse().unwrap();
        assert!(covers(&skills, std::slice::from_ref(&need)));
        let too_high: SkillReq = "rust:0.95".parse().unwrap();
        assert!(!covers(&skills, &[need, too_high]));
        assert!(covers(&skills, &[]));
        assert!(matches!(
            "go:2".parse::<SkillReq>(),
            Err(SkillParseError::BadLevel { .. })
        ));
        assert!(matches!(
            "bad name".parse::<Skill>(),
            Err(SkillParseError::BadName(_))
        ));
    }
}
