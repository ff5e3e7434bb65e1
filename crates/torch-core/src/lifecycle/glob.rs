//! Shell-style wildcard matching for memory keys and allowlists.
//!
//! Only two wildcards exist: `*` matches any run of characters (including
//! none, and including `.`), `?` matches exactly one character. There are no
//! character classes and no escapes, so a pattern can never be expensive to
//! compile or surprising to read.

/// True when `text` matches `pattern` as a whole.
///
/// Iterative with single-star backtracking: each `*` remembers where it was
/// seen, and a mismatch retries from there with one more character consumed.
/// That is `O(pattern × text)` in the worst case and linear for the patterns
/// people write (`repo.*`, `style`, `build-?`); nothing recurses.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position after the last `*` seen, and the text position it is matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi + 1, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((after, matched)) => {
                    // Let the last star swallow one more character and retry.
                    pi = after;
                    ti = matched + 1;
                    star = Some((after, matched + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// True when `pattern` contains a wildcard (`*` or `?`).
pub fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Textbook dynamic-programming matcher, the oracle for the property test.
    fn reference(pattern: &str, text: &str) -> bool {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        let mut dp = vec![vec![false; t.len() + 1]; p.len() + 1];
        dp[0][0] = true;
        for i in 1..=p.len() {
            dp[i][0] = dp[i - 1][0] && p[i - 1] == '*';
            for j in 1..=t.len() {
                dp[i][j] = match p[i - 1] {
                    '*' => dp[i - 1][j] || dp[i][j - 1],
                    '?' => dp[i - 1][j - 1],
                    c => dp[i - 1][j - 1] && c == t[j - 1],
                };
            }
        }
        dp[p.len()][t.len()]
    }

    #[test]
    fn matches_the_patterns_people_write() {
        assert!(glob_match("repo.*", "repo.layout"));
        assert!(glob_match("repo.*", "repo."));
        assert!(!glob_match("repo.*", "repo"));
        assert!(!glob_match("repo.*", "other.repo.x"));
        assert!(glob_match("style", "style"));
        assert!(!glob_match("style", "styles"));
        assert!(glob_match("build-?", "build-1"));
        assert!(!glob_match("build-?", "build-12"));
        assert!(glob_match("*", ""));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("*.rs", "src/main.rs"));
        assert!(glob_match("??", "é!"));
        assert!(has_wildcard("a*") && has_wildcard("a?") && !has_wildcard("a.b"));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let text = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!glob_match(&pattern, &text));
    }

    proptest! {
        #[test]
        fn agrees_with_reference(pattern in "[ab*?.]{0,8}", text in "[ab.]{0,10}") {
            prop_assert_eq!(glob_match(&pattern, &text), reference(&pattern, &text));
        }

        #[test]
        fn literal_patterns_match_only_themselves(a in "[a-z.]{0,8}", b in "[a-z.]{0,8}") {
            prop_assert_eq!(glob_match(&a, &b), a == b);
            prop_assert!(glob_match("*", &b));
        }
    }
}
