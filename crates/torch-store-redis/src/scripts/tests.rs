//! The Lua scripts write only declared event kinds, each on its declared
//! stream ([`EventKind::stream`]).
//!
//! Every `.lua` file of this directory is read and tokenised (comments
//! dropped, strings kept). Each `emit(stream, kind, …)`,
//! `emit_as(id, stream, kind, …)` and `emit_explained(id, stream, kind, …)`
//! call is checked: a literal kind must be an [`EventKind`] and its stream
//! (a literal, or a `STREAM_*` local as `common.lua` defines it) must be the
//! kind's. Any other string literal shaped like a kind (`word.word`) must
//! also be a declared kind, written through one of those calls; a stream
//! name inside any literal must be a declared stream.

use std::collections::{BTreeMap, BTreeSet};

use torch_core::EventKind;
use torch_store::{ALL_STREAMS, HUBS_HANDOFF};

/// Kinds that a script takes as an argument instead of naming them.
const PASSED_IN: &[(&str, &str, &[EventKind])] = &[
    // `emit` hands its own arguments on to `emit_as`.
    ("common.lua", "kind", EventKind::ALL),
    // `write.rs` sends a `NewEvent`: its stream is derived from its kind.
    ("event.lua", "kind", EventKind::ALL),
    // `write.rs` passes `End::kind` for a requeued attempt end.
    (
        "finish.lua",
        "ev_kind",
        &[EventKind::TaskFailed, EventKind::TaskLeaseExpired],
    ),
];

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Str(String),
    Word(String),
    Punct(char),
}

/// Lua source as tokens with their line numbers, comments left out.
fn tokens(src: &str) -> Vec<(usize, Tok)> {
    let chars: Vec<char> = src.chars().collect();
    let (mut out, mut i, mut line) = (Vec::new(), 0, 1);
    // The end of a long bracket `[[…]]` whose text starts at `from`.
    let long_end = |from: usize| {
        (from..chars.len())
            .find(|&j| chars[j] == ']' && chars.get(j + 1) == Some(&']'))
            .unwrap_or(chars.len())
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let start = i;
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && next == Some('-') {
            if chars.get(i + 2) == Some(&'[') && chars.get(i + 3) == Some(&'[') {
                i = long_end(i + 4) + 2;
            } else {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
        } else if c == '\'' || c == '"' {
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                s.extend(chars.get(i));
                i += 1;
            }
            i += 1;
            out.push((line, Tok::Str(s)));
        } else if c == '[' && next == Some('[') {
            let end = long_end(i + 2);
            out.push((line, Tok::Str(chars[i + 2..end].iter().collect())));
            i = end + 2;
        } else if c.is_alphanumeric() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((line, Tok::Word(chars[start..i].iter().collect())));
        } else {
            out.push((line, Tok::Punct(c)));
            i += 1;
        }
        line += chars[start..i.min(chars.len())]
            .iter()
            .filter(|&&c| c == '\n')
            .count();
    }
    out
}

/// `local STREAM_X = 'name'` of `common.lua`.
fn stream_locals(common: &str) -> BTreeMap<String, String> {
    let t = tokens(common);
    t.windows(4)
        .filter_map(|w| match (&w[0].1, &w[1].1, &w[2].1, &w[3].1) {
            (Tok::Word(l), Tok::Word(name), Tok::Punct('='), Tok::Str(s))
                if l == "local" && name.starts_with("STREAM_") =>
            {
                Some((name.clone(), s.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The arguments of the call whose `(` is at `open`, split at top-level
/// commas.
fn call_args(t: &[(usize, Tok)], open: usize) -> Vec<Vec<Tok>> {
    let (mut args, mut cur, mut depth) = (Vec::new(), Vec::new(), 0usize);
    for (_, tok) in &t[open + 1..] {
        match tok {
            Tok::Punct('(' | '{' | '[') => depth += 1,
            Tok::Punct(')' | '}' | ']') if depth == 0 => break,
            Tok::Punct(')' | '}' | ']') => depth -= 1,
            Tok::Punct(',') if depth == 0 => {
                args.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(tok.clone());
    }
    args.push(cur);
    args
}

fn is_kind_shaped(s: &str) -> bool {
    let mut parts = s.split('.');
    let word = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
    };
    word(parts.next()) && word(parts.next()) && parts.next().is_none()
}

/// Everything wrong with the event kinds and streams of `files` (name,
/// source), given the `STREAM_*` locals.
fn problems(files: &[(String, String)], locals: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    let streams: BTreeSet<&str> = ALL_STREAMS.iter().copied().chain([HUBS_HANDOFF]).collect();
    for (file, src) in files {
        let t = tokens(src);
        let mut emitted = BTreeSet::new();
        for i in 0..t.len().saturating_sub(1) {
            let Tok::Word(f) = &t[i].1 else { continue };
            let skip = match f.as_str() {
                "emit" => 0,
                "emit_as" | "emit_explained" => 1,
                _ => continue,
            };
            let defines = i > 0 && t[i - 1].1 == Tok::Word("function".into());
            if defines || t[i + 1].1 != Tok::Punct('(') {
                continue;
            }
            let line = t[i].0;
            let args = call_args(&t, i + 1);
            let at = |n: usize| args.get(skip + n).map(Vec::as_slice).unwrap_or_default();
            let kinds: Vec<EventKind> = match at(1) {
                [Tok::Str(k)] => {
                    emitted.insert(k.clone());
                    match k.parse() {
                        Ok(kind) => vec![kind],
                        // Reported with the other literals below.
                        Err(_) => continue,
                    }
                }
                [Tok::Word(w)] => match PASSED_IN.iter().find(|p| p.0 == file && p.1 == w) {
                    Some(p) => p.2.to_vec(),
                    None => {
                        out.push(format!(
                            "{file}:{line}: kind {w} is neither a literal nor a known argument"
                        ));
                        continue;
                    }
                },
                other => {
                    out.push(format!("{file}:{line}: kind {other:?} is not a literal"));
                    continue;
                }
            };
            let stream = match at(0) {
                [Tok::Str(s)] => Some(s.clone()),
                [Tok::Word(w)] if w.starts_with("STREAM_") => match locals.get(w) {
                    Some(s) => Some(s.clone()),
                    None => {
                        out.push(format!("{file}:{line}: {w} is not defined in common.lua"));
                        continue;
                    }
                },
                _ => None,
            };
            match stream {
                Some(s) => {
                    for k in kinds.iter().filter(|k| k.stream() != s) {
                        out.push(format!(
                            "{file}:{line}: {k} is written on {s}, declared on {}",
                            k.stream()
                        ));
                    }
                }
                // A stream passed in must come with a kind passed in.
                None if !matches!(at(1), [Tok::Word(_)]) => {
                    out.push(format!(
                        "{file}:{line}: stream {:?} is not resolvable",
                        at(0)
                    ));
                }
                None => {}
            }
        }
        for (line, tok) in &t {
            let Tok::Str(s) = tok else { continue };
            if is_kind_shaped(s) {
                // Undeclared kinds are reported here, wherever they are.
                match s.parse::<EventKind>() {
                    Err(e) => out.push(format!("{file}:{line}: {e}, not a declared EventKind")),
                    Ok(_) if !emitted.contains(s) => out.push(format!(
                        "{file}:{line}: {s} named outside emit(…): its stream is not checked"
                    )),
                    Ok(_) => {}
                }
            }
            if let Some(at) = s.find("nova.torch.") {
                let name = s[at..].trim_end_matches(|c: char| !c.is_ascii_lowercase());
                if !streams.contains(name) {
                    out.push(format!("{file}:{line}: {name} is not a declared stream"));
                }
            }
        }
    }
    out
}

fn scripts() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/scripts");
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("scripts dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "lua"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("read script"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn lua_scripts_write_declared_kinds_on_their_streams() {
    let files = scripts();
    assert!(files.len() >= 13, "every script read: {}", files.len());
    for (name, src) in &files {
        assert!(
            super::sources().iter().any(|s| s.contains(src.as_str())),
            "{name} is one of the scripts sent to Redis"
        );
    }
    let common = &files
        .iter()
        .find(|f| f.0 == "common.lua")
        .expect("common")
        .1;
    let locals = stream_locals(common);
    assert_eq!(locals["STREAM_ACTIVE"], EventKind::TaskAssigned.stream());
    assert_eq!(locals.len(), 4, "{locals:?}");
    assert_eq!(problems(&files, &locals), Vec::<String>::new());

    // The kinds the scripts name, all found.
    let named: BTreeSet<String> = files
        .iter()
        .flat_map(|(_, src)| tokens(src))
        .filter_map(|(_, t)| match t {
            Tok::Str(s) if is_kind_shaped(&s) => Some(s),
            _ => None,
        })
        .collect();
    for k in [
        "task.assigned",
        "task.cancelled",
        "agent.memory_inherited",
        "tasks.handed_off",
    ] {
        assert!(named.contains(k), "{k} found in {named:?}");
    }
}

#[test]
fn undeclared_kinds_and_wrong_streams_are_found() {
    let common = "local STREAM_QUEUE = 'nova.torch.tasks.queue'\n".to_string();
    let locals = stream_locals(&common);
    let bad = |src: &str| problems(&[("x.lua".into(), src.into())], &locals);
    let one = |src: &str| {
        let p = bad(src);
        assert_eq!(p.len(), 1, "{src}: {p:?}");
        p[0].clone()
    };
    assert!(bad("emit(STREAM_QUEUE, 'task.submitted', id, nil, '{}')").is_empty());
    assert!(one("emit(STREAM_QUEUE, 'task.exploded', id, nil, d)").contains("unknown event kind"));
    assert!(one("emit(STREAM_QUEUE, 'task.assigned', id, a, d)").contains("declared on"));
    assert!(
        one("emit_explained(e, 'nova.torch.tasks.failed', 'task.assigned', id, a, d, x)")
            .contains("declared on")
    );
    assert!(one("emit(STREAM_OTHER, 'task.ready', id, nil, d)").contains("not defined"));
    assert!(one("emit(STREAM_QUEUE, k, id, nil, d)").contains("known argument"));
    assert!(one("redis.call('XADD', key, '*', 'kind', 'task.ready')").contains("outside emit"));
    assert!(one("local s = 'nova.torch.tasks.queued'").contains("not a declared stream"));
    // Comments are not code.
    assert!(bad("-- emit(STREAM_QUEUE, 'task.exploded', id, nil, d)").is_empty());
}
