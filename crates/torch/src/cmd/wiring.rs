//! What `torch templates check` shows of a template's `torch mcp` wiring:
//! the executor arguments and files that mention `{torch}`, rendered with
//! the agent's own binary (this `torch`) and the template's model settings;
//! per-task placeholders (`{home}`, `{workdir}`, …) stay as written.

use torch_core::lifecycle::{AgentTemplate, Placeholders, render_text};

/// The placeholder that names the agent's own `torch` binary.
const TORCH: &str = "{torch}";

/// This process's binary: what an agent started from it runs as `{torch}`.
fn own_binary() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "torch".into())
}

/// Lines describing how the template wires `torch mcp` in (empty when it
/// does not mention `{torch}`).
pub(crate) fn mcp_wiring(t: &AgentTemplate) -> Vec<String> {
    let e = &t.executor;
    let in_args = e.command.iter().any(|a| a.contains(TORCH));
    let files: Vec<(&String, &String)> =
        e.files.iter().filter(|(_, b)| b.contains(TORCH)).collect();
    let in_env = e.env.values().any(|v| v.contains(TORCH));
    if !in_args && files.is_empty() && !in_env {
        return Vec::new();
    }
    let keep = |name: &str| format!("{{{name}}}");
    let values = Placeholders {
        prompt: keep("prompt"),
        workdir: keep("workdir"),
        task_file: keep("task_file"),
        task_id: keep("task_id"),
        task_name: keep("task_name"),
        home: keep("home"),
        model: e.model.clone().unwrap_or_default(),
        base_url: e.base_url.clone().unwrap_or_default(),
        torch: own_binary(),
        session: None,
    };
    let render = |s: &str| render_text(s, &values).unwrap_or_else(|m| format!("<{m}>"));
    let mut lines = vec![format!(
        "mcp: `torch mcp` wired in, started as {} mcp",
        values.torch
    )];
    if in_args
        || files
            .iter()
            .any(|(rel, _)| e.command.iter().any(|a| a.contains(rel.as_str())))
    {
        let argv: Vec<String> = e.command.iter().map(|a| quote(&render(a))).collect();
        lines.push(format!("mcp: command: {}", argv.join(" ")));
    }
    for (rel, body) in files {
        lines.push(format!("mcp: file {{home}}/{rel}: {}", render(body).trim()));
    }
    for (k, v) in e.env.iter().filter(|(_, v)| v.contains(TORCH)) {
        lines.push(format!("mcp: env {k}={}", render(v)));
    }
    lines
}

/// An argument as a shell would need it.
fn quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@{}+%".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_only_templates_that_wire_torch_and_renders_the_binary() {
        let text = r#"
role = "coder"
skills = ["go"]
[executor]
command = ["codex", "-c", 'mcp_servers.torch.command="{torch}"', "exec", "-C", "{workdir}"]
"#;
        let t = torch_core::lifecycle::parse_template_file("x.toml", "x", text).expect("template");
        let lines = mcp_wiring(&t);
        let me = own_binary();
        assert_eq!(
            lines[0],
            format!("mcp: `torch mcp` wired in, started as {me} mcp")
        );
        assert!(
            lines[1].contains(&format!("'mcp_servers.torch.command=\"{me}\"'"))
                && lines[1].ends_with("exec -C {workdir}"),
            "{lines:?}"
        );
        let plain = r#"
role = "coder"
skills = ["go"]
[executor]
command = ["sh", "-c", "{prompt}"]
"#;
        let t = torch_core::lifecycle::parse_template_file("y.toml", "y", plain).expect("template");
        assert!(mcp_wiring(&t).is_empty());
    }
}
