//! Parsing spec documents and validating a batch of tasks as a whole.
//!
//! Every error names where it is: the source (file name or `-`), the line and
//! column for syntax and type errors, and the field path (`task[2].depends_on[0]`)
//! for semantic ones. A batch is accepted all-or-nothing: any error rejects it.
//!
//! Strings that the agent hands to the OS (command and check arguments, env
//! names and values, `success.file_exists` paths, and the prompt, which an
//! executor may take as an argument) must not contain a NUL byte: the OS
//! cannot carry one, so such a task could only fail when it runs.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

use crate::ids::TaskId;
use crate::spec::{SpecFormat, TaskSpec};

/// Largest prompt accepted, in bytes.
pub const MAX_PROMPT_BYTES: usize = 1 << 20;
/// Largest total size of a command's arguments, in bytes.
pub const MAX_COMMAND_BYTES: usize = 256 << 10;
/// Most tasks in one submission.
pub const MAX_BATCH: usize = 100_000;

/// The error for a string that would reach the OS with a NUL byte in it.
const NUL_MESSAGE: &str = "contains a NUL byte";

/// One located problem in a spec document.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecError {
    /// File name, `-` for stdin, or `request` for an API body.
    pub source: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Field path such as `task[2].depends_on[0]`, when known.
    pub path: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if let Some(p) = self.path.as_deref().filter(|p| !p.is_empty() && *p != ".") {
            write!(f, ": {p}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for SpecError {}

/// All problems found in one batch (never empty).
#[derive(Clone, Debug, PartialEq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl From<SpecError> for SpecErrors {
    fn from(e: SpecError) -> Self {
        SpecErrors(vec![e])
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Many {
    task: Vec<TaskSpec>,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn toml_error(source: &str, text: &str, e: &toml::de::Error, path: Option<String>) -> SpecError {
    let (line, column) = match e.span() {
        Some(span) => {
            let (l, c) = line_col(text, span.start);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    SpecError {
        source: source.to_string(),
        line,
        column,
        path,
        message: e.message().trim().to_string(),
    }
}

fn parse_toml(source: &str, text: &str) -> Result<Vec<TaskSpec>, SpecError> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| toml_error(source, text, &e, None))?;
    let many = table.contains_key("task");
    let de = toml::Deserializer::parse(text).map_err(|e| toml_error(source, text, &e, None))?;
    if many {
        let parsed: Result<Many, _> = serde_path_to_error::deserialize(de);
        parsed.map(|m| m.task).map_err(|e| {
            let path = e.path().to_string();
            toml_error(source, text, e.inner(), Some(path))
        })
    } else {
        let parsed: Result<TaskSpec, _> = serde_path_to_error::deserialize(de);
        parsed.map(|t| vec![t]).map_err(|e| {
            let path = e.path().to_string();
            toml_error(source, text, e.inner(), Some(path))
        })
    }
}

fn parse_json(source: &str, text: &str) -> Result<Vec<TaskSpec>, SpecError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| SpecError {
        source: source.to_string(),
        line: Some(e.line()),
        column: Some(e.column()),
        path: None,
        message: strip_json_location(&e),
    })?;
    let shape = match &value {
        serde_json::Value::Array(_) => 0,
        serde_json::Value::Object(m) if m.contains_key("task") => 1,
        _ => 2,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let to_err = |e: serde_path_to_error::Error<serde_json::Error>| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        SpecError {
            source: source.to_string(),
            line: Some(inner.line()),
            column: Some(inner.column()),
            path: Some(path),
            message: strip_json_location(&inner),
        }
    };
    match shape {
        0 => serde_path_to_error::deserialize::<_, Vec<TaskSpec>>(&mut de).map_err(to_err),
        1 => serde_path_to_error::deserialize::<_, Many>(&mut de)
            .map(|m| m.task)
            .map_err(to_err),
        _ => serde_path_to_error::deserialize::<_, TaskSpec>(&mut de)
            .map(|t| vec![t])
            .map_err(to_err),
    }
}

fn strip_json_location(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Parses a spec document (one task or many) without cross-task validation.
pub fn parse_document(
    source: &str,
    text: &str,
    format: SpecFormat,
) -> Result<Vec<TaskSpec>, SpecError> {
    match format {
        SpecFormat::Toml => parse_toml(source, text),
        SpecFormat::Json => parse_json(source, text),
    }
}

/// A task that passed validation, with its dependencies resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidTask {
    /// The spec, with names and skill names normalised.
    pub spec: TaskSpec,
    /// Indices of tasks in the same batch that must succeed first.
    pub local_deps: Vec<usize>,
    /// Ids of already-submitted tasks that must succeed first.
    pub external_deps: Vec<TaskId>,
}

fn task_path(specs_len: usize, i: usize, spec: &TaskSpec) -> String {
    let base = if specs_len == 1 {
        String::new()
    } else {
        format!("task[{i}]")
    };
    match &spec.name {
        Some(n) if specs_len > 1 => format!("{base} ({n})"),
        _ => base,
    }
}

fn join(base: &str, field: &str) -> String {
    if base.is_empty() {
        field.to_string()
    } else if let Some((idx, name)) = base.split_once(' ') {
        format!("{idx}.{field} {name}")
    } else {
        format!("{base}.{field}")
    }
}

/// Validates a batch as a whole: per-field rules, unique names, resolvable
/// dependencies and no dependency cycles. Returns every problem found.
pub fn validate_batch(source: &str, specs: Vec<TaskSpec>) -> Result<Vec<ValidTask>, SpecErrors> {
    let mut errors = Vec::new();
    let err = |path: String, message: String| SpecError {
        source: source.to_string(),
        line: None,
        column: None,
        path: Some(path),
        message,
    };
    if specs.is_empty() {
        return Err(err(String::new(), "no tasks in document".into()).into());
    }
    if specs.len() > MAX_BATCH {
        return Err(err(
            String::new(),
            format!(
                "{} tasks in one submission; the limit is {MAX_BATCH}",
                specs.len()
            ),
        )
        .into());
    }
    let n = specs.len();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, spec) in specs.iter().enumerate() {
        let p = task_path(n, i, spec);
        check_fields(spec, &p, &mut |f, m| errors.push(err(join(&p, f), m)));
        if let Some(name) = &spec.name
            && let Some(first) = names.insert(name.clone(), i)
        {
            errors.push(err(
                join(&p, "name"),
                format!("duplicate task name {name:?} (first used by task[{first}])"),
            ));
        }
    }
    let mut out = Vec::with_capacity(n);
    for (i, spec) in specs.into_iter().enumerate() {
        let p = task_path(n, i, &spec);
        let mut local = Vec::new();
        let mut external = Vec::new();
        for (j, dep) in spec.depends_on.iter().enumerate() {
            if let Some(&k) = names.get(dep) {
                if !local.contains(&k) {
                    local.push(k);
                }
            } else if let Ok(id) = dep.parse::<TaskId>() {
                if !external.contains(&id) {
                    external.push(id);
                }
            } else {
                errors.push(err(
                    join(&p, &format!("depends_on[{j}]")),
                    format!(
                        "unknown dependency {dep:?}: not the name of a task in this document nor a task id"
                    ),
                ));
            }
        }
        out.push(ValidTask {
            spec,
            local_deps: local,
            external_deps: external,
        });
    }
    if let Some(cycle) = find_cycle(&out) {
        let names: Vec<String> = cycle.iter().map(|&i| out[i].spec.display_name()).collect();
        let first = cycle[0];
        errors.push(err(
            join(&task_path(n, first, &out[first].spec), "depends_on"),
            format!("dependency cycle: {}", names.join(" -> ")),
        ));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(SpecErrors(errors))
    }
}

fn check_fields(spec: &TaskSpec, _path: &str, report: &mut dyn FnMut(&str, String)) {
    if let Some(problem) = spec.sandbox.as_ref().and_then(|s| s.problem()) {
        report("sandbox", problem);
    }
    if let Some(problem) = spec.resources.as_ref().and_then(|r| r.problem()) {
        report("resources", problem);
    }
    if let Some(team) = &spec.team {
        for (field, message) in team.problems() {
            report(&field, message);
        }
    }
    if let Some(name) = &spec.name {
        if name.trim().is_empty() {
            report("name", "must not be empty".into());
        } else if name.len() > 200 || name.chars().any(char::is_control) {
            report(
                "name",
                "must be at most 200 characters without control characters".into(),
            );
        }
    }
    match &spec.command {
        Some(cmd) if cmd.is_empty() => report(
            "command",
            "is empty: give a program and its arguments, e.g. [\"make\", \"test\"]".into(),
        ),
        Some(cmd) if cmd[0].trim().is_empty() => {
            report("command[0]", "program name is empty".into())
        }
        Some(cmd) if cmd.iter().map(String::len).sum::<usize>() > MAX_COMMAND_BYTES => report(
            "command",
            format!("arguments exceed {MAX_COMMAND_BYTES} bytes"),
        ),
        Some(_) => {}
        None if spec.prompt.is_none() => {
            report("command", "a task needs a command or a prompt".into())
        }
        None => {}
    }
    if let Some(cmd) = &spec.command {
        report_nul_args("command", cmd, report);
    }
    if let Some(p) = &spec.prompt {
        if p.trim().is_empty() && spec.command.is_none() {
            report("prompt", "is empty and there is no command".into());
        }
        if p.contains('\0') {
            report("prompt", NUL_MESSAGE.into());
        }
        if p.len() > MAX_PROMPT_BYTES {
            report(
                "prompt",
                format!("is {} bytes; the limit is {MAX_PROMPT_BYTES}", p.len()),
            );
        }
    }
    if !(-1000..=1000).contains(&spec.priority) {
        report(
            "priority",
            format!("{} is out of range -1000..=1000", spec.priority),
        );
    }
    if spec.timeout.is_some_and(|t| t.is_zero()) {
        report("timeout", "must be greater than zero".into());
    }
    if spec.max_retries.is_some_and(|r| r > 100) {
        report("max_retries", "must be at most 100".into());
    }
    if let Some(b) = &spec.backoff {
        if !(b.multiplier >= 1.0 && b.multiplier <= 100.0) {
            report("backoff.multiplier", "must be between 1 and 100".into());
        }
        if b.initial > b.max {
            report("backoff.initial", "must not exceed backoff.max".into());
        }
    }
    if let Some(s) = &spec.success {
        if s.exit_codes.is_empty() {
            report(
                "success.exit_codes",
                "must list at least one exit code".into(),
            );
        }
        if let Some(re) = &s.stdout_matches
            && let Err(e) = regex::RegexBuilder::new(re).size_limit(1 << 20).build()
        {
            report(
                "success.stdout_matches",
                format!("invalid regular expression: {e}"),
            );
        }
        if let Some(c) = &s.check {
            if c.is_empty() || c[0].trim().is_empty() {
                report(
                    "success.check",
                    "is empty: give a program and its arguments".into(),
                );
            }
            report_nul_args("success.check", c, report);
        }
        for (i, f) in s.file_exists.iter().enumerate() {
            let p = std::path::Path::new(f);
            if f.trim().is_empty() {
                report(&format!("success.file_exists[{i}]"), "is empty".into());
            } else if f.contains('\0') {
                report(&format!("success.file_exists[{i}]"), NUL_MESSAGE.into());
            } else if p.is_absolute()
                || p.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                report(
                    &format!("success.file_exists[{i}]"),
                    format!("{f:?} must be relative to the task's work dir, without `..`"),
                );
            }
        }
    }
    for k in spec.labels.keys() {
        if k.trim().is_empty() || k.contains('=') || k.contains(',') {
            report(
                "labels",
                format!("invalid label key {k:?}: must be non-empty without '=' or ','"),
            );
        }
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            report(
                "env",
                format!("invalid variable name {k:?}: must be non-empty without '=' or a NUL byte"),
            );
        } else if v.contains('\0') {
            report(&format!("env.{k}"), NUL_MESSAGE.into());
        }
    }
    if let Some(k) = &spec.idempotency_key
        && (k.is_empty() || k.len() > 256)
    {
        report("idempotency_key", "must be 1 to 256 characters".into());
    }
}

/// Reports each argument of `argv` (at `field[i]`) that contains a NUL byte.
fn report_nul_args(field: &str, argv: &[String], report: &mut dyn FnMut(&str, String)) {
    for (i, arg) in argv.iter().enumerate() {
        if arg.contains('\0') {
            report(&format!("{field}[{i}]"), NUL_MESSAGE.into());
        }
    }
}

/// Finds one dependency cycle among local dependencies, as a closed path of indices.
fn find_cycle(tasks: &[ValidTask]) -> Option<Vec<usize>> {
    // 0 = unvisited, 1 = on the stack, 2 = done. Iterative DFS: batches can be large.
    let mut color = vec![0u8; tasks.len()];
    for root in 0..tasks.len() {
        if color[root] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        color[root] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&dep) = tasks[node].local_deps.get(*next) {
                *next += 1;
                match color[dep] {
                    0 => {
                        color[dep] = 1;
                        stack.push((dep, 0));
                    }
                    1 => {
                        let start = stack.iter().position(|&(n, _)| n == dep).unwrap_or(0);
                        let mut cycle: Vec<usize> =
                            stack[start..].iter().map(|&(n, _)| n).collect();
                        cycle.push(dep);
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                color[node] = 2;
                stack.pop();
            }
        }
    }
    None
}

/// Parses and validates a document in one step.
pub fn parse_and_validate(
    source: &str,
    text: &str,
    format: SpecFormat,
) -> Result<Vec<ValidTask>, SpecErrors> {
    let specs = parse_document(source, text, format)?;
    validate_batch(source, specs)
}
