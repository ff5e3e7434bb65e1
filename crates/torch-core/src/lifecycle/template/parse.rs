//! Parsing and validating templates, with every error located.
//!
//! Syntax and type errors come from the TOML deserializer with their span and
//! field path (the first one stops parsing, as in [`crate::validate`]).
//! Semantic checks then run over every template and report every problem;
//! each is located by looking its field path up in the document's spans, so
//! `min = 5` with `max = 2` points at the `min` line.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::AgentTemplate;
use super::executor::{HomeMode, PromptVia, RESUME_MARK, check_arg, used_placeholders};
use super::{InheritPolicy, MAX_SLOTS};
use crate::skill::Skill;

/// One problem with a template, located as precisely as the input allows.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateError {
    /// File name, or empty when the template did not come from a file.
    pub source: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Field path such as `templates.coder.executor.command[2]`, when known.
    pub path: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl TemplateError {
    /// An unlocated error at a field path.
    pub(crate) fn at(path: &str, message: &str) -> Self {
        TemplateError {
            source: String::new(),
            line: None,
            column: None,
            path: Some(path.to_string()),
            message: message.to_string(),
        }
    }
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.source.is_empty() {
            f.write_str(&self.source)?;
            if let Some(l) = self.line {
                write!(f, ":{l}")?;
                if let Some(c) = self.column {
                    write!(f, ":{c}")?;
                }
            }
            f.write_str(": ")?;
        }
        if let Some(p) = self.path.as_deref().filter(|p| !p.is_empty() && *p != ".") {
            write!(f, "{p}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for TemplateError {}

/// Every problem found in a set of templates (never empty), one per line
/// when displayed.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateErrors(pub Vec<TemplateError>);

impl TemplateErrors {
    /// Fills in `source` on errors that have none (after [`validate_template`]).
    pub fn with_source(mut self, source: &str) -> Self {
        for e in &mut self.0 {
            if e.source.is_empty() {
                e.source = source.to_string();
            }
        }
        self
    }
}

impl fmt::Display for TemplateErrors {
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

impl std::error::Error for TemplateErrors {}

impl From<TemplateError> for TemplateErrors {
    fn from(e: TemplateError) -> Self {
        TemplateErrors(vec![e])
    }
}

/// True for a valid template name: `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn valid_template_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A step in a field path below a template.
#[derive(Clone, Debug)]
enum Seg {
    Key(&'static str),
    Index(usize),
}

/// A semantic problem at a path relative to the template's table.
struct Problem {
    segs: Vec<Seg>,
    message: String,
}

fn path_string(name: &str, segs: &[Seg]) -> String {
    let mut s = format!("templates.{name}");
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Collects every semantic problem of one template.
fn check(t: &AgentTemplate) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut report = |segs: &[Seg], message: String| {
        out.push(Problem {
            segs: segs.to_vec(),
            message,
        })
    };
    use Seg::{Index, Key};
    if !valid_template_name(&t.name) {
        report(
            &[],
            format!(
                "invalid template name {:?}: use 1 to 63 of a-z, 0-9, _ and -, starting with a letter or digit",
                t.name
            ),
        );
    }
    if t.role.len() > 200 || t.role.chars().any(char::is_control) {
        report(
            &[Key("role")],
            "must be at most 200 characters without control characters".into(),
        );
    }
    let mut seen_skills: Vec<String> = Vec::new();
    for (i, s) in t.skills.iter().enumerate() {
        match s.parse::<Skill>() {
            Ok(skill) if seen_skills.contains(&skill.name) => report(
                &[Key("skills"), Index(i)],
                format!("duplicate skill {:?}", skill.name),
            ),
            Ok(skill) => seen_skills.push(skill.name),
            Err(e) => report(&[Key("skills"), Index(i)], e.to_string()),
        }
    }
    for k in t.labels.keys() {
        if k.trim().is_empty() || k.contains('=') || k.contains(',') {
            report(
                &[Key("labels")],
                format!("invalid label key {k:?}: must be non-empty without '=' or ','"),
            );
        }
    }
    check_executor(t, &mut report);
    for (i, p) in t.env.iter().enumerate() {
        let body = p.strip_suffix('*').unwrap_or(p);
        let ok = !p.is_empty() && body.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            report(
                &[Key("env"), Index(i)],
                format!(
                    "invalid environment pattern {p:?}: use a variable name such as \"HOME\" \
                     or a prefix ending in '*' such as \"CARGO_*\""
                ),
            );
        }
    }
    let l = &t.limits;
    for (field, v) in [
        ("cpu-secs", l.cpu_secs),
        ("memory", l.memory),
        ("open-files", l.open_files),
        ("processes", l.processes),
    ] {
        if v == Some(0) {
            report(
                &[Key("limits"), Key(field)],
                "must be greater than zero".into(),
            );
        }
    }
    if l.wall_time.is_some_and(|d| d.is_zero()) {
        report(
            &[Key("limits"), Key("wall-time")],
            "must be greater than zero".into(),
        );
    }
    if let Some(c) = t.sandbox.cpus
        && !(c.is_finite() && c > 0.0)
    {
        report(
            &[Key("sandbox"), Key("cpus")],
            format!("must be a positive number of cores, got {c}"),
        );
    }
    for (field, paths) in [("read", &t.sandbox.read), ("write", &t.sandbox.write)] {
        for (i, p) in paths.iter().enumerate() {
            if !p.is_absolute() {
                report(
                    &[Key("sandbox"), Key(field), Index(i)],
                    format!("{} must be an absolute path", p.display()),
                );
            }
        }
    }
    if !(1..=MAX_SLOTS).contains(&t.slots) {
        report(
            &[Key("slots")],
            format!(
                "{} is out of range: must be between 1 and {MAX_SLOTS}",
                t.slots
            ),
        );
    }
    if t.max == 0 {
        report(&[Key("max")], "must be at least 1".into());
    }
    if t.min > t.max {
        report(
            &[Key("min")],
            format!("min ({}) must not exceed max ({})", t.min, t.max),
        );
    }
    if t.idle_timeout.is_zero() {
        report(&[Key("idle-timeout")], "must be greater than zero".into());
    }
    let r = &t.recycle;
    if r.after_tasks == Some(0) {
        report(
            &[Key("recycle"), Key("after-tasks")],
            "must be at least 1".into(),
        );
    }
    if r.max_lifetime.is_some_and(|d| d.is_zero()) {
        report(
            &[Key("recycle"), Key("max-lifetime")],
            "must be greater than zero".into(),
        );
    }
    if r.max_rss_growth == Some(0) {
        report(
            &[Key("recycle"), Key("max-rss-growth")],
            "must be greater than zero".into(),
        );
    }
    if let InheritPolicy::Keys(patterns) = &t.inherit {
        for (i, p) in patterns.iter().enumerate() {
            if p.trim().is_empty() {
                report(&[Key("inherit"), Index(i)], "key pattern is empty".into());
            } else if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
                report(
                    &[Key("inherit"), Index(i)],
                    format!(
                        "invalid key pattern {p:?}: must not contain spaces or control characters"
                    ),
                );
            }
        }
    }
    for (field, v) in [("cost", t.cost), ("spawn-cost", t.spawn_cost)] {
        if !(v.is_finite() && v >= 0.0) {
            report(
                &[Key(field)],
                format!("{v} is invalid: must be a non-negative number"),
            );
        }
    }
    for (field, message) in t.scaling.problems() {
        report(&[Key("scaling"), Key(field)], message);
    }
    out
}

fn check_executor(t: &AgentTemplate, report: &mut dyn FnMut(&[Seg], String)) {
    use Seg::{Index, Key};
    let cmd = &t.executor.command;
    if cmd.is_empty() {
        report(
            &[Key("executor"), Key("command")],
            "is empty: give a program and its arguments, e.g. [\"claude\", \"-p\", \"{prompt}\"]"
                .into(),
        );
        return;
    }
    if cmd[0].trim().is_empty() {
        report(
            &[Key("executor"), Key("command"), Index(0)],
            "program name is empty".into(),
        );
    }
    let mut file_named = false;
    for (i, arg) in cmd.iter().enumerate() {
        file_named |= arg.contains("{task_file}") || arg.contains("{workdir}");
        if let Err(m) = check_arg(arg) {
            report(
                &[Key("executor"), Key("command"), Index(i)],
                format!("argument {i} of template {:?}: {m}", t.name),
            );
        }
    }
    check_settings(t, report);
    if t.executor.prompt_via == PromptVia::File && !file_named {
        report(
            &[Key("executor"), Key("prompt-via")],
            "is \"file\" but no command argument names the file: use {workdir}/prompt.txt (the prompt) or {task_file} (the task as JSON)".into(),
        );
    }
}

/// The executor's model settings, home, env and files.
fn check_settings(t: &AgentTemplate, report: &mut dyn FnMut(&[Seg], String)) {
    use Seg::{Index, Key};
    let e = &t.executor;
    // (where, what it is called in messages, its text)
    let mut texts: Vec<(Vec<Seg>, String, &str)> = Vec::new();
    for (i, arg) in e.command.iter().enumerate() {
        texts.push((
            vec![Key("executor"), Key("command"), Index(i)],
            format!("argument {i}"),
            arg,
        ));
    }
    for (name, value) in &e.env {
        let ok = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            report(
                &[Key("executor"), Key("env")],
                format!("invalid variable name {name:?}: use letters, digits and '_'"),
            );
        }
        if let Err(m) = check_arg(value) {
            report(&[Key("executor"), Key("env")], format!("{name}: {m}"));
        }
        texts.push((vec![Key("executor"), Key("env")], name.clone(), value));
    }
    for (path, body) in &e.files {
        let p = std::path::Path::new(path);
        let inside = !path.is_empty()
            && p.components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside {
            report(
                &[Key("executor"), Key("files")],
                format!("invalid file path {path:?}: must be relative to the home, without '..'"),
            );
        }
        if let Err(m) = check_arg(body) {
            report(&[Key("executor"), Key("files")], format!("{path}: {m}"));
        }
        texts.push((vec![Key("executor"), Key("files")], path.clone(), body));
    }
    check_resume(e, report);
    for (segs, what, text) in &texts {
        for var in used_placeholders(text) {
            let (missing, field) = match var {
                "model" => (e.model.is_none(), "model"),
                "base_url" => (e.base_url.is_none(), "base-url"),
                _ => (false, ""),
            };
            if missing {
                report(
                    segs,
                    format!("{what} uses {{{var}}} but executor.{field} is not set"),
                );
            }
        }
    }
    for (field, v) in [("model", &e.model), ("base-url", &e.base_url)] {
        if v.as_deref()
            .is_some_and(|s| s.trim().is_empty() || s.contains(char::is_control))
        {
            report(
                &[Key("executor"), Key(field)],
                "must not be empty or contain control characters".into(),
            );
        }
    }
    if !e.files.is_empty() && e.home != HomeMode::Agent {
        report(
            &[Key("executor"), Key("files")],
            "needs home = \"agent\": files are written under the agent's own home".into(),
        );
    }
    if e.tmpdir == HomeMode::Agent && e.home != HomeMode::Agent {
        report(
            &[Key("executor"), Key("tmpdir")],
            "\"agent\" needs home = \"agent\" (the dir is <home>/tmp)".into(),
        );
    }
}

/// `{resume}` only as a whole command argument, `{session}` only in the
/// `resume` arguments, and `resume` only for an output that names sessions.
fn check_resume(e: &super::Executor, report: &mut dyn FnMut(&[Seg], String)) {
    use Seg::{Index, Key};
    for (i, arg) in e.command.iter().enumerate() {
        let vars = used_placeholders(arg);
        if vars.contains(&"session") || (vars.contains(&"resume") && arg != RESUME_MARK) {
            report(
                &[Key("executor"), Key("command"), Index(i)],
                "{session} belongs in executor.resume, and {resume} must be a whole argument"
                    .into(),
            );
        }
    }
    for (i, arg) in e.resume.iter().enumerate() {
        if let Err(m) = check_arg(arg) {
            report(&[Key("executor"), Key("resume"), Index(i)], m);
        } else if used_placeholders(arg).contains(&"resume") {
            report(
                &[Key("executor"), Key("resume"), Index(i)],
                "{resume} marks where these arguments go in executor.command".into(),
            );
        }
    }
    if !e.resume.is_empty() && e.output == super::OutputFormat::Text {
        report(
            &[Key("executor"), Key("resume")],
            "needs output = \"claude-json\" or \"codex-jsonl\": the session id comes from the CLI's output".into(),
        );
    }
}

/// Checks one template that was deserialized some other way (figment): the
/// same rules [`parse_templates`] applies. Errors carry the field path but
/// no source or line; see [`TemplateErrors::with_source`].
pub fn validate_template(t: &AgentTemplate) -> Result<(), TemplateErrors> {
    let errors: Vec<TemplateError> = check(t)
        .into_iter()
        .map(|p| TemplateError::at(&path_string(&t.name, &p.segs), &p.message))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(TemplateErrors(errors))
    }
}

/// Names each template after its map key (as a `templates` config section
/// deserializes) and validates them all; sorted by name.
pub fn templates_from_map(
    map: BTreeMap<String, AgentTemplate>,
) -> Result<Vec<AgentTemplate>, TemplateErrors> {
    let mut out = Vec::with_capacity(map.len());
    let mut errors = Vec::new();
    for (name, mut t) in map {
        t.name = name;
        if let Err(e) = validate_template(&t) {
            errors.extend(e.0);
        }
        out.push(t);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(TemplateErrors(errors))
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn located(
    source: &str,
    text: &str,
    span: Option<Range<usize>>,
    path: Option<String>,
    message: String,
) -> TemplateError {
    let (line, column) = match span {
        Some(s) => {
            let (l, c) = line_col(text, s.start);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    TemplateError {
        source: source.to_string(),
        line,
        column,
        path,
        message,
    }
}

fn toml_error(
    source: &str,
    text: &str,
    e: &toml::de::Error,
    path: Option<String>,
) -> TemplateError {
    located(source, text, e.span(), path, e.message().trim().to_string())
}

/// Span of the deepest value along `keys` then `segs` (so a field left at
/// its default points at its table).
fn locate(root: &DeValue<'_>, keys: &[&str], segs: &[Seg]) -> Option<Range<usize>> {
    let mut node = root;
    let mut span = None;
    let steps = keys
        .iter()
        .map(|k| SegRef::Key(k))
        .chain(segs.iter().map(|s| match s {
            Seg::Key(k) => SegRef::Key(k),
            Seg::Index(i) => SegRef::Index(*i),
        }));
    for seg in steps {
        let next: Option<&Spanned<DeValue<'_>>> = match seg {
            SegRef::Key(k) => node.get(k),
            SegRef::Index(i) => node.get(i),
        };
        match next {
            Some(v) => {
                span = Some(v.span());
                node = v.get_ref();
            }
            None => break,
        }
    }
    span
}

/// A borrowed path step, so template names and field names walk alike.
enum SegRef<'a> {
    Key(&'a str),
    Index(usize),
}

fn parse_spans(text: &str) -> Option<DeValue<'_>> {
    DeTable::parse(text)
        .ok()
        .map(|t| DeValue::Table(t.into_inner()))
}

fn check_located(
    source: &str,
    text: &str,
    spans: Option<&DeValue<'_>>,
    prefix: &[&str],
    t: &AgentTemplate,
    errors: &mut Vec<TemplateError>,
) {
    for p in check(t) {
        let span = spans.and_then(|root| locate(root, prefix, &p.segs));
        errors.push(located(
            source,
            text,
            span,
            Some(path_string(&t.name, &p.segs)),
            p.message,
        ));
    }
}

/// Parses `[templates.NAME]` tables from a TOML document (a templates file,
/// or a whole `torch.toml`: other top-level tables are ignored) and validates
/// every template. Sorted by name.
pub fn parse_templates(source: &str, text: &str) -> Result<Vec<AgentTemplate>, TemplateErrors> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        templates: BTreeMap<String, AgentTemplate>,
    }
    let de = toml::Deserializer::parse(text).map_err(|e| toml_error(source, text, &e, None))?;
    let doc: Doc = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        toml_error(source, text, e.inner(), Some(path))
    })?;
    let spans = parse_spans(text);
    let mut out = Vec::with_capacity(doc.templates.len());
    let mut errors = Vec::new();
    for (name, mut t) in doc.templates {
        t.name = name;
        let prefix = ["templates", t.name.as_str()];
        check_located(source, text, spans.as_ref(), &prefix, &t, &mut errors);
        out.push(t);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(TemplateErrors(errors))
    }
}

/// Parses a `templates/NAME.toml` file whose body is one template (no
/// `[templates.NAME]` header); the name comes from the file name.
pub fn parse_template_file(
    source: &str,
    name_from_file: &str,
    text: &str,
) -> Result<AgentTemplate, TemplateErrors> {
    let base = format!("templates.{name_from_file}");
    let de = toml::Deserializer::parse(text).map_err(|e| toml_error(source, text, &e, None))?;
    let mut t: AgentTemplate = serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." {
            base.clone()
        } else {
            format!("{base}.{inner}")
        };
        toml_error(source, text, e.inner(), Some(path))
    })?;
    t.name = name_from_file.to_string();
    let spans = parse_spans(text);
    let mut errors = Vec::new();
    check_located(source, text, spans.as_ref(), &[], &t, &mut errors);
    if errors.is_empty() {
        Ok(t)
    } else {
        Err(TemplateErrors(errors))
    }
}
