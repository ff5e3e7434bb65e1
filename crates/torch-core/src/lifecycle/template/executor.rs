//! The executor a template runs for each task, and placeholder substitution.
//!
//! Command arguments may contain `{prompt}`, `{workdir}`, `{task_file}` (the
//! attempt's `task.json`: the assignment as JSON), `{task_id}`, `{task_name}`,
//! `{home}` (the agent's home dir), `{model}` and `{base_url}` (the
//! executor's model settings) and `{torch}` (the agent's own `torch`
//! binary, to wire `torch mcp` into an agent CLI); `{{` and `}}` stand for
//! literal braces. The
//! executor's `env` values and `files` contents take the same placeholders.
//! `{session}` (the session being resumed) is for the `resume` arguments, and
//! an argument that is exactly `{resume}` marks where they go.
//! Substitution happens inside each argument: arguments are never joined
//! into a shell line, so a prompt full of quotes and `$` stays one argument.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::TemplateError;

/// The placeholder names an executor command may use.
pub const PLACEHOLDERS: [&str; 11] = [
    "prompt",
    "workdir",
    "task_file",
    "task_id",
    "task_name",
    "home",
    "model",
    "base_url",
    "torch",
    "session",
    "resume",
];

/// The prompt a resumed session gets when the template sets none.
pub const DEFAULT_RESUME_PROMPT: &str = "Your previous run of this task was interrupted. \
Continue where you left off and finish the task.";

/// Whose `HOME` (or `TMPDIR`) the executor runs with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HomeMode {
    /// The agent's own variable, if the `env` allowlist passes it.
    #[default]
    Inherit,
    /// A directory of the agent's own, kept across its tasks and removed with
    /// it: `HOME` is `<agent work root>/home`, `TMPDIR` is `<home>/tmp`. Agent
    /// CLIs keep their settings, sessions and caches there, so agents on one
    /// machine never share them.
    Agent,
}

impl HomeMode {
    fn is_inherit(&self) -> bool {
        *self == HomeMode::Inherit
    }
}

/// How the task's prompt reaches the executor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptVia {
    /// As an argument: wherever `{prompt}` appears, or appended as the last
    /// argument when no argument mentions `{prompt}`.
    #[default]
    Arg,
    /// Written to the executor's standard input, which is then closed.
    Stdin,
    /// Only in files: the agent writes `prompt.txt` (the prompt alone) and
    /// `task.json` (the whole assignment, the `{task_file}` placeholder) into
    /// the work dir; the command names one of them, e.g.
    /// `--message-file {workdir}/prompt.txt`.
    File,
}

/// How the executor's standard output is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    /// Plain text, kept as the task's output.
    #[default]
    Text,
    /// One JSON object in Claude Code's `--output-format json` shape.
    ClaudeJson,
    /// JSON lines in Codex's `exec --json` event shape.
    CodexJsonl,
}

/// The `[templates.NAME.executor]` section: what runs for each task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Executor {
    /// Program and arguments, with placeholders. Never run through a shell
    /// unless the program is one.
    pub command: Vec<String>,
    /// How the prompt is delivered (default `arg`).
    #[serde(default)]
    pub prompt_via: PromptVia,
    /// How stdout is parsed (default `text`).
    #[serde(default)]
    pub output: OutputFormat,
    /// The model the executor asks for: the `{model}` placeholder.
    /// Since v0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The model API endpoint (a provider, a proxy or gateway, a local model
    /// server): the `{base_url}` placeholder. Since v0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// `HOME` of the executor (default `inherit`; `agent`: its own). Since v0.2.
    #[serde(default, skip_serializing_if = "HomeMode::is_inherit")]
    pub home: HomeMode,
    /// `TMPDIR` of the executor (default `inherit`; `agent`: `<home>/tmp`,
    /// which needs `home = "agent"`). Since v0.2.
    #[serde(default, skip_serializing_if = "HomeMode::is_inherit")]
    pub tmpdir: HomeMode,
    /// Variables set for every task, after the allowlisted ones and before
    /// the task's own `env`; values take placeholders. Since v0.2.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Files written under the agent's home before each task (path relative
    /// to the home → contents, with placeholders), such as a CLI's own
    /// config file; needs `home = "agent"`. Since v0.2.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// Arguments that make the CLI resume a session instead of starting
    /// one, with `{session}` (e.g. `["--resume", "{session}"]`). They go
    /// where the command has the argument `{resume}`, else at its end; a
    /// first run drops the `{resume}` argument. Empty: attempts never resume.
    /// Needs an `output` that names the session (`claude-json`,
    /// `codex-jsonl`). Since v0.3.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resume: Vec<String>,
    /// The prompt a resumed session gets (default
    /// [`DEFAULT_RESUME_PROMPT`]), delivered as `prompt-via` says. Since v0.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_prompt: Option<String>,
    /// How long to pause a rate-limited attempt when the CLI gives no reset
    /// time (default 60s). Since v0.3.
    #[serde(
        default,
        with = "crate::spec::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub rate_limit_pause: Option<std::time::Duration>,
}

/// Values substituted for the placeholders of an executor command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placeholders {
    /// The task's prompt, verbatim.
    pub prompt: String,
    /// Absolute path of the task's work dir.
    pub workdir: String,
    /// Path of the file holding the prompt (with `prompt-via = "file"`).
    pub task_file: String,
    /// The task id.
    pub task_id: String,
    /// The task's display name.
    pub task_name: String,
    /// The executor's home dir (its own with `home = "agent"`, else the
    /// inherited `HOME`, or empty).
    pub home: String,
    /// The executor's `model` setting (empty when unset).
    pub model: String,
    /// The executor's `base-url` setting (empty when unset).
    pub base_url: String,
    /// Absolute path of the agent's own `torch` binary (the MCP server an
    /// agent CLI starts as `{torch} mcp`).
    pub torch: String,
    /// The session to resume (`{session}`); `None` starts a new one and
    /// leaves out the `resume` arguments.
    pub session: Option<String>,
}

impl Placeholders {
    fn value(&self, name: &str) -> Option<&str> {
        Some(match name {
            "prompt" => &self.prompt,
            "workdir" => &self.workdir,
            "task_file" => &self.task_file,
            "task_id" => &self.task_id,
            "task_name" => &self.task_name,
            "home" => &self.home,
            "model" => &self.model,
            "base_url" => &self.base_url,
            "torch" => &self.torch,
            "session" => self.session.as_deref().unwrap_or_default(),
            "resume" => "",
            _ => return None,
        })
    }
}

/// One piece of an argument after scanning.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    Brace(char),
    Var(&'a str),
}

/// Splits one argument into literal text, escaped braces and placeholders,
/// or explains (as a message) why the braces do not balance.
fn scan(arg: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = arg;
    while let Some(i) = rest.find(['{', '}']) {
        if i > 0 {
            out.push(Piece::Text(&rest[..i]));
        }
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push(Piece::Brace('{'));
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push(Piece::Brace('}'));
            rest = after;
        } else if tail.starts_with('}') {
            return Err("unmatched '}': write '}}' for a literal brace".into());
        } else {
            let Some(close) = tail.find('}') else {
                return Err("unclosed '{': write '{{' for a literal brace".into());
            };
            let name = &tail[1..close];
            if !PLACEHOLDERS.contains(&name) {
                let known: Vec<String> = PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect();
                return Err(format!(
                    "unknown placeholder {{{name}}}: known are {}; write '{{{{' for a literal brace",
                    known.join(", ")
                ));
            }
            out.push(Piece::Var(name));
            rest = &tail[close + 1..];
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// The placeholder or brace problem in one argument, if any (used by validation).
pub(super) fn check_arg(arg: &str) -> Result<(), String> {
    scan(arg).map(|_| ())
}

/// The placeholders `text` uses (empty when its braces do not balance).
pub(super) fn used_placeholders(text: &str) -> Vec<&str> {
    scan(text)
        .map(|pieces| {
            pieces
                .into_iter()
                .filter_map(|p| match p {
                    Piece::Var(v) => Some(v),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `text` with every placeholder substituted; the error is the brace or
/// placeholder problem (a validated template never has one).
pub fn render_text(text: &str, values: &Placeholders) -> Result<String, String> {
    let mut s = String::with_capacity(text.len());
    for piece in scan(text)? {
        match piece {
            Piece::Text(t) => s.push_str(t),
            Piece::Brace(c) => s.push(c),
            Piece::Var(name) => s.push_str(values.value(name).unwrap_or_default()),
        }
    }
    Ok(s)
}

impl Executor {
    /// True when some argument mentions `{prompt}`.
    pub fn mentions_prompt(&self) -> bool {
        self.command
            .iter()
            .any(|a| scan(a).is_ok_and(|p| p.contains(&Piece::Var("prompt"))))
    }

    /// The command with every placeholder substituted, one output argument
    /// per input argument (plus the prompt as a final argument when
    /// `prompt-via = "arg"` and no argument mentions `{prompt}`).
    ///
    /// Errors name the argument index; a validated template never fails.
    pub fn render(&self, values: &Placeholders) -> Result<Vec<String>, TemplateError> {
        if self.command.is_empty() {
            return Err(TemplateError::at("executor.command", "is empty"));
        }
        let resume_args = match &values.session {
            Some(_) => render_args(&self.resume, values, "executor.resume")?.0,
            None => Vec::new(),
        };
        let mut out = Vec::with_capacity(self.command.len() + resume_args.len() + 1);
        let mut placed = false;
        let mut saw_prompt = false;
        for (i, arg) in self.command.iter().enumerate() {
            if arg == RESUME_MARK {
                out.extend(resume_args.iter().cloned());
                placed = true;
                continue;
            }
            let (one, prompt) = render_args(
                std::slice::from_ref(arg),
                values,
                &format!("executor.command[{i}]"),
            )?;
            saw_prompt |= prompt;
            out.extend(one);
        }
        if !placed {
            out.extend(resume_args);
        }
        if self.prompt_via == PromptVia::Arg && !saw_prompt {
            out.push(values.prompt.clone());
        }
        Ok(out)
    }
}

/// The argument that marks where the `resume` arguments go.
pub const RESUME_MARK: &str = "{resume}";

/// `args` with their placeholders substituted, and whether any used
/// `{prompt}`. `at` names the field in errors.
fn render_args(
    args: &[String],
    values: &Placeholders,
    at: &str,
) -> Result<(Vec<String>, bool), TemplateError> {
    let mut out = Vec::with_capacity(args.len());
    let mut saw_prompt = false;
    for arg in args {
        let pieces = scan(arg).map_err(|m| TemplateError::at(at, &m))?;
        let mut s = String::with_capacity(arg.len());
        for piece in pieces {
            match piece {
                Piece::Text(t) => s.push_str(t),
                Piece::Brace(c) => s.push(c),
                Piece::Var(name) => {
                    saw_prompt |= name == "prompt";
                    s.push_str(values.value(name).unwrap_or_default());
                }
            }
        }
        out.push(s);
    }
    Ok((out, saw_prompt))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(args: &[&str], via: PromptVia) -> Executor {
        Executor {
            command: args.iter().map(|s| s.to_string()).collect(),
            prompt_via: via,
            output: OutputFormat::Text,
            ..Executor::default()
        }
    }

    fn values() -> Placeholders {
        Placeholders {
            prompt: "fix it; rm -rf \"$HOME\" {task_id}".into(),
            workdir: "/w/t1".into(),
            task_file: "/w/t1/TASK.md".into(),
            task_id: "t1".into(),
            task_name: "fix bug".into(),
            ..Placeholders::default()
        }
    }

    #[test]
    fn substitutes_in_place_without_shell_joining() {
        let e = exec(
            &[
                "claude",
                "-p",
                "{prompt}",
                "--cwd={workdir}",
                "{{literal}}",
                "{task_name}:{task_id}",
            ],
            PromptVia::Arg,
        );
        let out = e.render(&values()).unwrap();
        assert_eq!(
            out,
            vec![
                "claude",
                "-p",
                "fix it; rm -rf \"$HOME\" {task_id}",
                "--cwd=/w/t1",
                "{literal}",
                "fix bug:t1",
            ]
        );
        assert!(e.mentions_prompt());
    }

    #[test]
    fn resume_arguments_go_at_the_mark_or_the_end() {
        let mut e = exec(
            &["codex", "exec", "--json", "{resume}", "-"],
            PromptVia::Stdin,
        );
        e.resume = vec!["resume".into(), "{session}".into()];
        let mut v = Placeholders::default();
        assert_eq!(e.render(&v).unwrap(), ["codex", "exec", "--json", "-"]);
        v.session = Some("s-1".into());
        assert_eq!(
            e.render(&v).unwrap(),
            ["codex", "exec", "--json", "resume", "s-1", "-"]
        );
        let mut c = exec(&["claude", "-p"], PromptVia::Stdin);
        c.resume = vec!["--resume".into(), "{session}".into()];
        assert_eq!(c.render(&v).unwrap(), ["claude", "-p", "--resume", "s-1"]);
        v.session = None;
        assert_eq!(c.render(&v).unwrap(), ["claude", "-p"]);
    }

    #[test]
    fn prompt_is_appended_only_for_arg_delivery_without_placeholder() {
        let out = exec(&["codex", "exec"], PromptVia::Arg)
            .render(&values())
            .unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[2], values().prompt);
        let out = exec(&["tool", "{task_file}"], PromptVia::File)
            .render(&values())
            .unwrap();
        assert_eq!(out, vec!["tool", "/w/t1/TASK.md"]);
        let out = exec(&["tool"], PromptVia::Stdin).render(&values()).unwrap();
        assert_eq!(out, vec!["tool"]);
    }

    #[test]
    fn bad_braces_name_the_argument() {
        let e = exec(&["x", "{promt}"], PromptVia::Arg)
            .render(&values())
            .unwrap_err();
        assert_eq!(e.path.as_deref(), Some("executor.command[1]"));
        assert!(e.message.contains("unknown placeholder {promt}"), "{e}");
        assert!(check_arg("a}b").unwrap_err().contains("unmatched '}'"));
        assert!(check_arg("{prompt").unwrap_err().contains("unclosed '{'"));
        assert!(
            check_arg("{}")
                .unwrap_err()
                .contains("unknown placeholder {}")
        );
        assert!(check_arg("{{}}{{prompt}}").is_ok());
        assert!(check_arg("{torch}").is_ok());
        let v = Placeholders {
            torch: "/opt/torch/bin/torch".into(),
            ..Placeholders::default()
        };
        assert_eq!(
            render_text(r#"{{"command": "{torch}"}}"#, &v).unwrap(),
            r#"{"command": "/opt/torch/bin/torch"}"#
        );
        assert!(exec(&[], PromptVia::Arg).render(&values()).is_err());
    }
}
