//! The skill taxonomy: skill names, their synonyms, and the keyword and
//! file-extension hints that let a task's text and paths imply skills.
//!
//! Configured as `[routing.taxonomy]`:
//! ```toml
//! [routing.taxonomy]
//! include-defaults = true          # keep the shipped table (the default)
//! [routing.taxonomy.skills.elixir]
//! synonyms = ["ex"]
//! keywords = ["mix", "phoenix"]
//! extensions = ["ex", "exs"]
//! ```
//! A configured skill with the name of a shipped one replaces it. Matching is
//! deterministic: tokens are maximal runs of ASCII letters, digits and
//! `_ + # . -`, compared lower-cased and whole (so `rustic` is not `rust`).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::taxonomy_defaults::DEFAULT_SKILLS;
use crate::skill::Skill;

/// Hints for one skill.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SkillHints {
    /// Other names for the skill; explicit skills are normalised through them
    /// (`py` → `python`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synonyms: Vec<String>,
    /// Single words that, found in a prompt, name, command or path, suggest the skill.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// File extensions (without the dot) that suggest the skill.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
}

/// The skill taxonomy; the `[routing.taxonomy]` config section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Taxonomy {
    /// Start from the shipped table (languages, testing, review, docs,
    /// security, devops, data, frontend, ml). Default true.
    pub include_defaults: bool,
    /// Skills added to (or replacing) the shipped ones, by canonical name.
    pub skills: BTreeMap<String, SkillHints>,
}

impl Default for Taxonomy {
    fn default() -> Self {
        Taxonomy {
            include_defaults: true,
            skills: BTreeMap::new(),
        }
    }
}

/// A taxonomy that contradicts itself.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TaxonomyError {
    /// One synonym points at two skills.
    #[error("synonym {synonym:?} is claimed by skills {first:?} and {second:?}")]
    AmbiguousSynonym {
        /// The synonym.
        synonym: String,
        /// The skill that claimed it first (in name order).
        first: String,
        /// The other skill.
        second: String,
    },
    /// A synonym is also the canonical name of another skill.
    #[error("synonym {synonym:?} of skill {skill:?} is itself a skill name")]
    SynonymIsSkill {
        /// The synonym.
        synonym: String,
        /// The skill listing it.
        skill: String,
    },
}

impl Taxonomy {
    /// The effective table: shipped rows (if included) overlaid by `skills`.
    pub fn entries(&self) -> BTreeMap<String, SkillHints> {
        let mut out = BTreeMap::new();
        if self.include_defaults {
            for (name, syn, kw, ext) in DEFAULT_SKILLS {
                let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
                out.insert(
                    name.to_string(),
                    SkillHints {
                        synonyms: own(syn),
                        keywords: own(kw),
                        extensions: own(ext),
                    },
                );
            }
        }
        for (name, hints) in &self.skills {
            out.insert(name.to_ascii_lowercase(), hints.clone());
        }
        out
    }

    /// Checks that every synonym names exactly one skill.
    pub fn validate(&self) -> Result<(), TaxonomyError> {
        let entries = self.entries();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (name, hints) in &entries {
            for syn in &hints.synonyms {
                let syn = syn.to_ascii_lowercase();
                if syn != *name && entries.contains_key(&syn) {
                    return Err(TaxonomyError::SynonymIsSkill {
                        synonym: syn,
                        skill: name.clone(),
                    });
                }
                if let Some(first) = seen.insert(syn.clone(), name.clone())
                    && first != *name
                {
                    return Err(TaxonomyError::AmbiguousSynonym {
                        synonym: syn,
                        first,
                        second: name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Builds the lookup tables used for matching. Cheap (a few hundred
    /// entries); build once and reuse when normalising many names.
    pub fn compile(&self) -> TaxonomyIndex {
        let mut idx = TaxonomyIndex::default();
        for (name, hints) in self.entries() {
            idx.canon.insert(name.clone(), name.clone());
            for s in &hints.synonyms {
                idx.canon
                    .entry(s.to_ascii_lowercase())
                    .or_insert_with(|| name.clone());
            }
            for k in &hints.keywords {
                push_unique(
                    idx.keywords.entry(k.to_ascii_lowercase()).or_default(),
                    &name,
                );
            }
            for e in &hints.extensions {
                let e = e.trim_start_matches('.').to_ascii_lowercase();
                push_unique(idx.extensions.entry(e).or_default(), &name);
            }
        }
        idx
    }
}

fn push_unique(v: &mut Vec<String>, name: &str) {
    if !v.iter().any(|x| x == name) {
        v.push(name.to_string());
    }
}

/// Lookup tables compiled from a [`Taxonomy`].
#[derive(Clone, Debug, Default)]
pub struct TaxonomyIndex {
    canon: HashMap<String, String>,
    keywords: HashMap<String, Vec<String>>,
    extensions: HashMap<String, Vec<String>>,
}

/// Which kind of hint matched a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HintKind {
    /// A whole-word keyword.
    Keyword,
    /// A file extension.
    Extension,
}

impl TaxonomyIndex {
    /// The canonical name for a skill name or synonym; `None` when unknown.
    pub fn canonical(&self, name: &str) -> Option<&str> {
        let lower = name.trim().to_ascii_lowercase();
        self.canon.get(&lower).map(String::as_str)
    }

    /// The canonical name if known, else the lower-cased name itself.
    pub fn normalize(&self, name: &str) -> String {
        self.canonical(name)
            .map(str::to_string)
            .unwrap_or_else(|| name.trim().to_ascii_lowercase())
    }

    /// Normalises an agent's advertised skills, merging duplicates (highest level wins).
    pub fn normalize_skills(&self, skills: &[Skill]) -> Vec<Skill> {
        let mut out: Vec<Skill> = Vec::with_capacity(skills.len());
        for s in skills {
            let name = self.normalize(&s.name);
            match out.iter_mut().find(|o| o.name == name) {
                Some(o) => o.level = o.level.max(s.level),
                None => out.push(Skill {
                    name,
                    level: s.level,
                }),
            }
        }
        out
    }

    /// Calls `hit(skill, kind, token)` for every hint found in `text`.
    /// Linear in the text; the caller caps its length.
    pub fn scan(&self, text: &str, mut hit: impl FnMut(&str, HintKind, &str)) {
        let mut buf = String::new();
        for raw in tokens(text) {
            buf.clear();
            buf.push_str(raw);
            buf.make_ascii_lowercase();
            let tok = buf.as_str();
            let mut matched = false;
            if let Some(skills) = self.keywords.get(tok) {
                matched = true;
                for s in skills {
                    hit(s, HintKind::Keyword, tok);
                }
            }
            if !matched && tok.contains('-') {
                for part in tok.split('-') {
                    if let Some(skills) = self.keywords.get(part) {
                        for s in skills {
                            hit(s, HintKind::Keyword, part);
                        }
                    }
                }
            }
            if let Some((stem, ext)) = tok.rsplit_once('.')
                && !stem.is_empty()
                && let Some(skills) = self.extensions.get(ext)
            {
                for s in skills {
                    hit(s, HintKind::Extension, tok);
                }
            }
        }
    }
}

/// Maximal runs of ASCII alphanumerics and `_ + # . -`, trimmed of leading and
/// trailing `.` and `-` (sentence punctuation, option dashes).
fn tokens(text: &str) -> impl Iterator<Item = &str> {
    let is_word =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'#' | b'.' | b'-');
    text.split(move |c: char| !c.is_ascii() || !is_word(c as u8))
        .map(|t| t.trim_matches(|c| c == '.' || c == '-'))
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_normalise_and_scan() {
        let tax = Taxonomy::default();
        tax.validate().unwrap();
        let idx = tax.compile();
        assert_eq!(idx.canonical("py"), Some("python"));
        assert_eq!(idx.canonical("BASH"), Some("sh"));
        assert_eq!(idx.canonical("k8s"), Some("devops"));
        assert_eq!(idx.canonical("c++"), Some("cpp"));
        assert_eq!(idx.canonical("cobol"), None);
        assert_eq!(idx.normalize("Cobol"), "cobol");
        for skill in [
            "rust",
            "python",
            "go",
            "javascript",
            "typescript",
            "java",
            "c",
            "cpp",
            "sh",
            "testing",
            "review",
            "docs",
            "security",
            "devops",
            "data",
            "frontend",
            "ml",
        ] {
            assert_eq!(idx.canonical(skill), Some(skill));
        }
        let mut hits = Vec::new();
        idx.scan(
            "Fix the flaky PyTest in src/app.py; rustic wording, then a Docker-compose run. See main.rs.",
            |s, k, t| hits.push((s.to_string(), k, t.to_string())),
        );
        let names: Vec<&str> = hits.iter().map(|h| h.0.as_str()).collect();
        assert!(names.contains(&"testing") && names.contains(&"python"));
        assert!(
            names.contains(&"devops"),
            "hyphenated part matched: {hits:?}"
        );
        assert!(names.contains(&"rust"), "main.rs by extension");
        assert!(!hits.iter().any(|h| h.2 == "rustic"), "whole words only");
        let agent = idx.normalize_skills(&[
            Skill {
                name: "py".into(),
                level: 0.5,
            },
            Skill {
                name: "python".into(),
                level: 0.9,
            },
        ]);
        assert_eq!(
            agent,
            vec![Skill {
                name: "python".into(),
                level: 0.9
            }]
        );
    }

    #[test]
    fn config_overrides_and_validation() {
        let t: Taxonomy = toml::from_str(
            "include-defaults = false\n[skills.elixir]\nsynonyms = [\"ex\"]\nextensions = [\".exs\"]",
        )
        .unwrap();
        let idx = t.compile();
        assert_eq!(idx.canonical("ex"), Some("elixir"));
        assert_eq!(idx.canonical("py"), None, "defaults left out");
        let mut hit = false;
        idx.scan("run test.exs", |s, k, _| {
            hit = s == "elixir" && k == HintKind::Extension
        });
        assert!(hit);
        assert!(toml::from_str::<Taxonomy>("nope = 1").is_err());
        let bad: Taxonomy = toml::from_str("[skills.shell2]\nsynonyms = [\"py\"]").unwrap();
        assert!(matches!(
            bad.validate(),
            Err(TaxonomyError::AmbiguousSynonym { .. })
        ));
        let bad: Taxonomy = toml::from_str("[skills.x]\nsynonyms = [\"rust\"]").unwrap();
        assert!(matches!(
            bad.validate(),
            Err(TaxonomyError::SynonymIsSkill { .. })
        ));
    }
}
