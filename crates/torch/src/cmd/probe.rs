//! `torch templates check`: does a template's program run here? It is
//! looked up on `PATH` and run with `--version` (stdin closed, bounded in
//! time); a missing program is named with how to install it, and credential
//! variables the known agent CLIs need are checked for.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use torch_core::lifecycle::AgentTemplate;

/// How long `PROGRAM --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(15);

/// What was found for one template's program.
pub(crate) struct Probe {
    /// Lines to print under the template's `ok` line.
    pub(crate) lines: Vec<String>,
    /// The program is missing: the template cannot run here.
    pub(crate) missing: bool,
}

/// Install hints and credential variables of the agent CLIs we know.
fn known(program: &str) -> Option<(&'static str, &'static [&'static str])> {
    match program {
        "claude" => Some((
            "npm install -g @anthropic-ai/claude-code",
            &[
                "ANTHROPIC_API_KEY",
                "ANTHROPIC_AUTH_TOKEN",
                "CLAUDE_CODE_OAUTH_TOKEN",
            ],
        )),
        "codex" => Some((
            "npm install -g @openai/codex",
            &["OPENAI_API_KEY", "CODEX_API_KEY"],
        )),
        "aider" => Some(("python -m pip install aider-install && aider-install", &[])),
        _ => None,
    }
}

/// Looks up and runs the template's program with `--version`.
pub(crate) fn probe(t: &AgentTemplate) -> Probe {
    let Some(program) = t.executor.command.first() else {
        return Probe {
            lines: Vec::new(),
            missing: false,
        };
    };
    let name = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.clone());
    let hint = known(&name);
    let Some(path) = find_program(program) else {
        let install = hint
            .map(|(i, _)| format!(" (install: {i})"))
            .unwrap_or_default();
        return Probe {
            lines: vec![format!("{program}: missing: not found on PATH{install}")],
            missing: true,
        };
    };
    let mut lines = vec![format!(
        "{program}: {} ({})",
        version(&path),
        path.display()
    )];
    if let Some((_, creds)) = hint
        && !creds.is_empty()
        && !creds.iter().any(|v| std::env::var_os(v).is_some())
    {
        lines.push(format!(
            "note: none of {} is set here; the agents need one in their environment",
            creds.join(", ")
        ));
    }
    Probe {
        lines,
        missing: false,
    }
}

/// `program` itself when it has a slash, else the first executable match on `PATH`.
fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return runnable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| runnable(p))
}

/// The first line `PATH --version` prints, or what went wrong.
fn version(path: &Path) -> String {
    let child = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return format!("cannot run --version: {e}"),
    };
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() < VERSION_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if out.trim().is_empty()
        && let Some(mut s) = child.stderr.take()
    {
        let _ = s.read_to_string(&mut out);
    }
    let first = out
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    match status {
        None => format!(
            "--version did not answer within {}s",
            VERSION_TIMEOUT.as_secs()
        ),
        Some(s) if s.success() => first.to_string(),
        Some(s) => format!("found (its --version failed, {s}: {first})"),
    }
}
