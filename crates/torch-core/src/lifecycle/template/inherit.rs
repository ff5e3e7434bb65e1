//! Which of a parent agent's memory keys a spawned child may inherit.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::lifecycle::glob::{glob_match, has_wildcard};

/// The `inherit` field of a template: `"none"` (the default), `"all"`, or a
/// list of key patterns such as `["repo.*", "style"]` (see
/// [`glob_match`] for the pattern syntax).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum InheritPolicy {
    /// A child of this template starts with empty memory.
    #[default]
    None,
    /// A child may inherit any key.
    All,
    /// A child may inherit keys matching one of these patterns.
    Keys(Vec<String>),
}

impl InheritPolicy {
    /// True when a memory key may pass from parent to child.
    pub fn allows(&self, key: &str) -> bool {
        match self {
            InheritPolicy::None => false,
            InheritPolicy::All => true,
            InheritPolicy::Keys(patterns) => patterns.iter().any(|p| glob_match(p, key)),
        }
    }

    /// True when a spawn may request `--inherit PATTERN`.
    ///
    /// Permitted when the policy is `all`, when the request equals one of the
    /// policy's patterns, or when it is a plain key (no `*` or `?`) that one of
    /// the patterns matches. A wildcard request that is merely narrower than a
    /// policy pattern (`repo.a*` under `repo.*`) is refused: proving that one
    /// pattern's language contains another's is not worth the risk of a
    /// subtle hole, and the caller can ask for the policy's own pattern.
    pub fn permits_request(&self, requested_pattern: &str) -> bool {
        match self {
            InheritPolicy::None => false,
            InheritPolicy::All => true,
            InheritPolicy::Keys(patterns) => patterns.iter().any(|p| {
                p == requested_pattern
                    || (!has_wildcard(requested_pattern) && glob_match(p, requested_pattern))
            }),
        }
    }

    /// The policy's patterns (empty for `none`, `["*"]` for `all`).
    pub fn patterns(&self) -> Vec<String> {
        match self {
            InheritPolicy::None => Vec::new(),
            InheritPolicy::All => vec!["*".to_string()],
            InheritPolicy::Keys(p) => p.clone(),
        }
    }
}

impl Serialize for InheritPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            InheritPolicy::None => s.serialize_str("none"),
            InheritPolicy::All => s.serialize_str("all"),
            InheritPolicy::Keys(p) => p.serialize(s),
        }
    }
}

struct PolicyVisitor;

impl<'de> Visitor<'de> for PolicyVisitor {
    type Value = InheritPolicy;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"none\", \"all\" or an array of key patterns such as [\"repo.*\"]")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<InheritPolicy, E> {
        match v {
            "none" => Ok(InheritPolicy::None),
            "all" => Ok(InheritPolicy::All),
            other => Err(E::custom(format!(
                "invalid inherit policy {other:?}: expected \"none\", \"all\" or an array of \
                 key patterns such as [\"repo.*\", \"style\"]"
            ))),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<InheritPolicy, A::Error> {
        let mut keys = Vec::new();
        while let Some(k) = seq.next_element::<String>()? {
            keys.push(k);
        }
        Ok(InheritPolicy::Keys(keys))
    }
}

impl<'de> Deserialize<'de> for InheritPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PolicyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Serialize, Debug, PartialEq)]
    struct Doc {
        inherit: InheritPolicy,
    }

    #[test]
    fn parses_words_and_lists_and_round_trips() {
        let d: Doc = toml::from_str("inherit = \"all\"").unwrap();
        assert_eq!(d.inherit, InheritPolicy::All);
        let d: Doc = toml::from_str("inherit = \"none\"").unwrap();
        assert_eq!(d.inherit, InheritPolicy::None);
        let d: Doc = toml::from_str("inherit = [\"repo.*\", \"style\"]").unwrap();
        assert_eq!(
            d.inherit,
            InheritPolicy::Keys(vec!["repo.*".into(), "style".into()])
        );
        let back: Doc = toml::from_str(&toml::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        let e = toml::from_str::<Doc>("inherit = \"some\"").unwrap_err();
        assert!(e.to_string().contains("invalid inherit policy"), "{e}");
        assert!(toml::from_str::<Doc>("inherit = 3").is_err());
        assert!(toml::from_str::<Doc>("inherit = [3]").is_err());
    }

    #[test]
    fn allows_and_permits() {
        let p = InheritPolicy::Keys(vec!["repo.*".into(), "style".into()]);
        assert!(p.allows("repo.layout") && p.allows("style"));
        assert!(!p.allows("secrets.token") && !p.allows("styles"));
        assert!(p.permits_request("repo.*"));
        assert!(p.permits_request("repo.layout"));
        assert!(p.permits_request("style"));
        assert!(
            !p.permits_request("repo.l*"),
            "narrower wildcard is refused"
        );
        assert!(!p.permits_request("*"));
        assert!(!p.permits_request("secrets.token"));
        assert!(InheritPolicy::All.permits_request("*") && InheritPolicy::All.allows("x"));
        assert!(!InheritPolicy::None.permits_request("style") && !InheritPolicy::None.allows("x"));
        assert_eq!(InheritPolicy::All.patterns(), vec!["*"]);
    }
}
