//! Whether two path globs can match a common path.
//!
//! Globs are `/`-separated. In a segment, `*` matches any run of
//! characters and `?` one character; a character class `[…]` counts as any
//! one character (so overlap is over-approximated, never missed). A whole
//! segment `**` matches zero or more segments. A trailing `/` is ignored.

/// One glob segment or `**`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Any,
    Pattern(Vec<Tok>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Star,
    One,
    Char(char),
}

fn tokens(seg: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = seg.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                if out.last() != Some(&Tok::Star) {
                    out.push(Tok::Star);
                }
            }
            '?' => out.push(Tok::One),
            '[' => {
                // A class: skip to its closing bracket; it matches one char.
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                }
                out.push(Tok::One);
            }
            c => out.push(Tok::Char(c)),
        }
    }
    out
}

fn segments(glob: &str) -> Vec<Seg> {
    glob.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .map(|s| {
            if s == "**" {
                Seg::Any
            } else {
                Seg::Pattern(tokens(s))
            }
        })
        .collect()
}

/// Whether some string matches both token lists (memoised over positions).
fn seg_overlap(a: &[Tok], b: &[Tok]) -> bool {
    let mut memo = vec![vec![None; b.len() + 1]; a.len() + 1];
    overlap_at(a, b, 0, 0, &mut memo, |x, y| match (x, y) {
        (Tok::Char(p), Tok::Char(q)) => p == q,
        _ => true,
    })
}

/// The common recursion of both levels: `star(x)` says whether an item
/// matches any run (of characters or segments), `one(x, y)` whether two
/// single items can match the same thing.
fn overlap_at<T: Copy + Starry>(
    a: &[T],
    b: &[T],
    i: usize,
    j: usize,
    memo: &mut [Vec<Option<bool>>],
    one: impl Fn(T, T) -> bool + Copy,
) -> bool {
    if let Some(v) = memo[i][j] {
        return v;
    }
    let v = match (a.get(i), b.get(j)) {
        (None, None) => true,
        (Some(x), _) if x.is_star() => {
            overlap_at(a, b, i + 1, j, memo, one)
                || (j < b.len() && overlap_at(a, b, i, j + 1, memo, one))
        }
        (_, Some(y)) if y.is_star() => {
            overlap_at(a, b, i, j + 1, memo, one)
                || (i < a.len() && overlap_at(a, b, i + 1, j, memo, one))
        }
        (Some(x), Some(y)) => one(*x, *y) && overlap_at(a, b, i + 1, j + 1, memo, one),
        _ => false,
    };
    memo[i][j] = Some(v);
    v
}

trait Starry {
    fn is_star(&self) -> bool;
}

impl Starry for Tok {
    fn is_star(&self) -> bool {
        *self == Tok::Star
    }
}

impl Starry for &Seg {
    fn is_star(&self) -> bool {
        **self == Seg::Any
    }
}

/// True when some path matches both globs.
pub fn globs_overlap(a: &str, b: &str) -> bool {
    let sa = segments(a);
    let sb = segments(b);
    let ra: Vec<&Seg> = sa.iter().collect();
    let rb: Vec<&Seg> = sb.iter().collect();
    let mut memo = vec![vec![None; rb.len() + 1]; ra.len() + 1];
    overlap_at(&ra, &rb, 0, 0, &mut memo, |x, y| match (x, y) {
        (Seg::Pattern(p), Seg::Pattern(q)) => seg_overlap(p, q),
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::globs_overlap;

    #[test]
    fn overlapping_globs() {
        let yes = [
            ("src/api/**", "src/api/v1/users.rs"),
            ("src/api/**", "src/**"),
            ("src/api/**", "src/*/handlers.rs"),
            ("src/*.rs", "src/main.rs"),
            ("src/*.rs", "src/m*"),
            ("**", "anything/at/all"),
            ("src/api/**", "src/api"),
            ("a/**/c", "a/b/b/c"),
            ("a/**/c", "**/c"),
            ("src/[ab].rs", "src/x.rs"),
            ("docs/", "docs"),
            ("*.md", "README.md"),
        ];
        for (a, b) in yes {
            assert!(globs_overlap(a, b), "{a} vs {b}");
            assert!(globs_overlap(b, a), "{b} vs {a}");
        }
        let no = [
            ("src/api/**", "src/db/**"),
            ("src/*.rs", "src/main.py"),
            ("src/*.rs", "src/a/main.rs"),
            ("a/**/c", "a/b/d"),
            ("docs/*.md", "src/*.md"),
            ("x?", "xyz"),
            ("README.md", "readme.md"),
        ];
        for (a, b) in no {
            assert!(!globs_overlap(a, b), "{a} vs {b}");
            assert!(!globs_overlap(b, a), "{b} vs {a}");
        }
    }
}
