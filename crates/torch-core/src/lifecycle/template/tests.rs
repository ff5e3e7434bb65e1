//! Template parsing and validation tests.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

/// Every field, as documented.
const FULL: &str = r#"
[templates.coder]
role = "implementer"
description = "Writes Rust and Python changes"
skills = ["rust:0.9", "python"]
labels = { tier = "gpu", team = "core" }
env = ["HOME", "PATH", "CARGO_*"]
slots = 2
min = 1
max = 8
idle-timeout = "2m"
inherit = ["repo.*", "style"]
cost = 0.25
spawn-cost = 1.5
outlive-parent = true

[templates.coder.executor]
command = ["claude", "-p", "{prompt}", "--cwd", "{workdir}", "--task={task_id}"]
prompt-via = "arg"
output = "claude-json"

[templates.coder.limits]
cpu-secs = 600
memory = "2GiB"
open-files = 1024
processes = 256
wall-time = "30m"

[templates.coder.recycle]
after-tasks = 50
max-lifetime = "4h"
max-rss-growth = "1GiB"

[templates.coder.scaling]
interval = "1s"
target-wait = "2s"
up-cooldown = "2s"
down-cooldown = "10s"
predictive = true
horizon = "5s"
alpha = 0.5
beta = 0.3
hysteresis = 0.2

[templates.reviewer]
executor = { command = ["codex", "exec", "--json"], output = "codex-jsonl" }
"#;

fn errors_of(result: Result<Vec<AgentTemplate>, TemplateErrors>) -> TemplateErrors {
    match result {
        Ok(t) => panic!("expected errors, got {} templates", t.len()),
        Err(e) => e,
    }
}

#[test]
fn parses_every_field_and_defaults() {
    // Other top-level tables (the rest of torch.toml) are ignored.
    let doc = format!("[hub]\nlisten = \"127.0.0.1:0\"\n{FULL}");
    let ts = parse_templates("torch.toml", &doc).unwrap();
    assert_eq!(ts.len(), 2);
    let c = &ts[0];
    assert_eq!(c.name, "coder");
    assert_eq!(c.role, "implementer");
    assert_eq!(c.skills, vec!["rust:0.9", "python"]);
    assert_eq!(c.parsed_skills()[0].level, 0.9);
    assert_eq!(c.labels["tier"], "gpu");
    assert_eq!(c.executor.output, OutputFormat::ClaudeJson);
    assert_eq!(c.executor.prompt_via, PromptVia::Arg);
    assert_eq!(c.limits.memory, Some(2 << 30));
    assert_eq!(c.limits.wall_time, Some(Duration::from_secs(1800)));
    assert_eq!(c.limits.cpu_secs, Some(600));
    assert_eq!((c.slots, c.min, c.max), (2, 1, 8));
    assert_eq!(c.idle_timeout, Duration::from_secs(120));
    assert_eq!(c.recycle.after_tasks, Some(50));
    assert_eq!(c.recycle.max_rss_growth, Some(1 << 30));
    assert_eq!(
        c.inherit,
        InheritPolicy::Keys(vec!["repo.*".into(), "style".into()])
    );
    assert_eq!((c.cost, c.spawn_cost, c.outlive_parent), (0.25, 1.5, true));
    assert_eq!(c.scaling, ScalingConfig::default());

    let r = &ts[1];
    assert_eq!(r.name, "reviewer");
    let mut expected = AgentTemplate::new("reviewer", r.executor.clone());
    expected.executor.output = OutputFormat::CodexJsonl;
    assert_eq!(r, &expected);
    assert_eq!((r.slots, r.min, r.max), (1, 0, 4));
    assert_eq!(r.idle_timeout, Duration::from_secs(60));
    assert_eq!(r.inherit, InheritPolicy::None);
    assert!(r.limits.is_empty() && r.recycle.is_empty());

    // A document without templates is fine and empty.
    assert!(
        parse_templates("t.toml", "[hub]\nx = 1\n")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn env_allowlist_matches_names_and_prefixes() {
    let ts = parse_templates("torch.toml", FULL).unwrap();
    let c = &ts[0];
    assert!(c.env_allowed("HOME") && c.env_allowed("CARGO_HOME") && c.env_allowed("CARGO_"));
    assert!(!c.env_allowed("HOMEDIR") && !c.env_allowed("AWS_SECRET_ACCESS_KEY"));
    assert!(!c.env_allowed("CARGO"));
    assert!(!ts[1].env_allowed("PATH"), "empty allowlist passes nothing");
}

#[test]
fn render_uses_the_parsed_executor() {
    let ts = parse_templates("torch.toml", FULL).unwrap();
    let args = ts[0]
        .executor
        .render(&Placeholders {
            prompt: "do it".into(),
            workdir: "/w".into(),
            task_id: "t9".into(),
            ..Placeholders::default()
        })
        .unwrap();
    assert_eq!(
        args,
        vec!["claude", "-p", "do it", "--cwd", "/w", "--task=t9"]
    );
}

#[test]
fn syntax_and_type_errors_are_located() {
    let e = errors_of(parse_templates(
        "t.toml",
        "[templates.a]\nexecutor = {command = [\"x\"]\n",
    ));
    assert!(e.to_string().starts_with("t.toml:2:"), "{e}");

    let text = "[templates.a]\nexecutor = { command = [\"x\"] }\nslotz = 2\n";
    let e = errors_of(parse_templates("t.toml", text)).to_string();
    assert!(e.starts_with("t.toml:3:1: templates.a"), "{e}");
    assert!(e.contains("slotz"), "{e}");

    let text = "[templates.a]\nexecutor = { command = [\"x\"] }\n[templates.a.limits]\nmemory = \"12 parsecs\"\n";
    let e = errors_of(parse_templates("t.toml", text)).to_string();
    assert!(
        e.starts_with("t.toml:4:10: templates.a.limits.memory: "),
        "{e}"
    );
    assert!(e.contains("unknown unit"), "{e}");

    let text = "[templates.a]\nexecutor = { command = [\"x\"], output = \"xml\" }\n";
    let e = errors_of(parse_templates("t.toml", text)).to_string();
    assert!(
        e.contains("t.toml:2:") && e.contains("templates.a.executor.output"),
        "{e}"
    );

    let text = "[templates.a]\nname = \"a\"\nexecutor = { command = [\"x\"] }\n";
    let e = errors_of(parse_templates("t.toml", text)).to_string();
    assert!(e.contains("unknown field `name`"), "{e}");

    let text = "[templates.a]\n";
    let e = errors_of(parse_templates("t.toml", text)).to_string();
    assert!(e.contains("missing field `executor`"), "{e}");
}

#[test]
fn every_semantic_error_is_reported_with_its_line() {
    let text = r#"[templates.bad]
skills = ["rust:2", "go"]
min = 5
max = 2
slots = 0
cost = -1.0
inherit = ["repo.*", ""]
env = ["OK_*", "BAD NAME"]
idle-timeout = 0

[templates.bad.executor]
command = ["claude", "-p", "{promt}"]

[templates.bad.scaling]
alpha = 0.0

[templates.empty]
executor = { command = [] }
limits = { processes = 0 }
"#;
    let e = errors_of(parse_templates("fleet.toml", text));
    let lines: Vec<String> = e.0.iter().map(|e| e.to_string()).collect();
    let expect = [
        "fleet.toml:2:11: templates.bad.skills[0]: invalid level",
        "fleet.toml:12:28: templates.bad.executor.command[2]: argument 2 of template \"bad\": unknown placeholder {promt}",
        "fleet.toml:8:16: templates.bad.env[1]: invalid environment pattern",
        "fleet.toml:5:9: templates.bad.slots: 0 is out of range",
        "fleet.toml:3:7: templates.bad.min: min (5) must not exceed max (2)",
        "fleet.toml:9:16: templates.bad.idle-timeout: must be greater than zero",
        "fleet.toml:7:22: templates.bad.inherit[1]: key pattern is empty",
        "fleet.toml:6:8: templates.bad.cost: -1 is invalid: must be a non-negative number",
        "fleet.toml:15:9: templates.bad.scaling.alpha: 0 is out of range",
        "fleet.toml:18:24: templates.empty.executor.command: is empty",
        "fleet.toml:19:24: templates.empty.limits.processes: must be greater than zero",
    ];
    for want in expect {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "missing {want:?} in\n{e}"
        );
    }
    assert_eq!(lines.len(), expect.len(), "{e}");
    // Display puts one error per line.
    assert_eq!(e.to_string().lines().count(), expect.len());
}

#[test]
fn template_names_are_checked() {
    let e = errors_of(parse_templates(
        "t.toml",
        "[templates.Bad_Name]\nexecutor = { command = [\"x\"] }\n",
    ))
    .to_string();
    assert!(
        e.starts_with("t.toml:1:") && e.contains("invalid template name \"Bad_Name\""),
        "{e}"
    );
    assert!(valid_template_name("a") && valid_template_name("0coder_v2-x"));
    assert!(!valid_template_name("") && !valid_template_name("-a") && !valid_template_name("_a"));
    assert!(valid_template_name(&"a".repeat(63)) && !valid_template_name(&"a".repeat(64)));
}

#[test]
fn template_files_take_the_name_from_the_file() {
    let text = "role = \"critic\"\nskills = [\"review\"]\n\n[executor]\ncommand = [\"critic\", \"{task_file}\"]\nprompt-via = \"file\"\n";
    let t = parse_template_file("templates/critic.toml", "critic", text).unwrap();
    assert_eq!(t.name, "critic");
    assert_eq!(t.executor.prompt_via, PromptVia::File);

    let e = parse_template_file(
        "templates/critic.toml",
        "critic",
        "max = 0\n[executor]\ncommand = [\"x\"]\nprompt-via = \"file\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("templates/critic.toml:1:7: templates.critic.max: must be at least 1"),
        "{e}"
    );
    assert!(
        e.contains("templates/critic.toml:4:14: templates.critic.executor.prompt-via: is \"file\" but no command argument names the file"),
        "{e}"
    );

    let e = parse_template_file(
        "templates/x.toml",
        "x",
        "slots = \"two\"\n[executor]\ncommand = [\"x\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("templates/x.toml:1:9: templates.x.slots: "),
        "{e}"
    );

    let e = parse_template_file(
        "templates/X Y.toml",
        "X Y",
        "[executor]\ncommand = [\"x\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("templates.X Y: invalid template name"), "{e}");
}

#[test]
fn figment_style_maps_are_named_and_validated() {
    #[derive(serde::Deserialize)]
    struct Config {
        templates: BTreeMap<String, AgentTemplate>,
    }
    let cfg: Config = toml::from_str(FULL).unwrap();
    let ts = templates_from_map(cfg.templates).unwrap();
    assert_eq!(
        ts.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec!["coder", "reviewer"]
    );
    assert!(validate_template(&ts[0]).is_ok());

    let mut bad = ts[0].clone();
    bad.slots = 300;
    bad.spawn_cost = f64::NAN;
    bad.executor.command = vec!["x".into(), "}".into()];
    let e = validate_template(&bad).unwrap_err();
    assert_eq!(e.0.len(), 3, "{e}");
    assert_eq!(e.0[0].source, "");
    let shown = e.clone().with_source("torch.toml").to_string();
    assert!(
        shown.contains("torch.toml: templates.coder.executor.command[1]: "),
        "{shown}"
    );
    assert!(
        e.to_string()
            .contains("templates.coder.slots: 300 is out of range"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("templates.coder.spawn-cost: NaN is invalid"),
        "{e}"
    );

    let mut map = BTreeMap::new();
    map.insert("ok".to_string(), ts[1].clone());
    map.insert("Nope".to_string(), ts[1].clone());
    let e = templates_from_map(map).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].path.as_deref(), Some("templates.Nope"));
}

#[test]
fn serializes_and_parses_back() {
    let ts = parse_templates("torch.toml", FULL).unwrap();
    for t in ts {
        let text = toml::to_string(&t).unwrap();
        assert!(!text.contains("name ="), "{text}");
        let back = parse_template_file("rt.toml", &t.name, &text).unwrap();
        assert_eq!(back, t, "{text}");
    }
}

/// The templates shipped in `examples/templates`, as written.
fn shipped(name: &str) -> AgentTemplate {
    let path = format!(
        "{}/../../examples/templates/{name}.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    parse_template_file(&path, name, &text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn agent_cli_templates_set_home_model_endpoint_and_files() {
    for name in ["shell", "pytest", "aider", "claude-code", "codex"] {
        let t = shipped(name);
        let text = toml::to_string(&t).unwrap();
        let back = parse_template_file("rt.toml", name, &text).unwrap();
        assert_eq!(back, t, "{name} round-trips: {text}");
    }
    let values = Placeholders {
        workdir: "/w/t1".into(),
        home: "/a/home".into(),
        model: "m1".into(),
        base_url: "http://127.0.0.1:9/v1".into(),
        torch: "/opt/torch/bin/torch".into(),
        ..Placeholders::default()
    };

    let claude = shipped("claude-code");
    let e = &claude.executor;
    assert_eq!((e.home, e.tmpdir), (HomeMode::Agent, HomeMode::Agent));
    assert_eq!(e.model.as_deref(), Some("sonnet"));
    let argv = e.render(&values).unwrap();
    assert!(argv.windows(2).any(|w| w == ["--model", "m1"]), "{argv:?}");
    assert!(
        argv.windows(2)
            .any(|w| w == ["--output-format", "stream-json"])
    );
    assert_eq!(
        render_text(&e.env["ANTHROPIC_BASE_URL"], &values).unwrap(),
        "http://127.0.0.1:9/v1"
    );
    // `torch mcp` wired in: a generated config in the agent's home, its
    // tools allowed.
    assert!(
        argv.windows(2)
            .any(|w| w == ["--mcp-config", "/a/home/.torch/mcp.json"]),
        "{argv:?}"
    );
    assert!(argv.iter().any(|a| a.ends_with(",mcp__torch")), "{argv:?}");
    let mcp: serde_json::Value =
        serde_json::from_str(&render_text(&e.files[".torch/mcp.json"], &values).unwrap()).unwrap();
    assert_eq!(
        mcp["mcpServers"]["torch"],
        serde_json::json!({"type": "stdio", "command": "/opt/torch/bin/torch", "args": ["mcp"]})
    );
    assert!(!claude.env_allowed("HOME") && !claude.env_allowed("TMPDIR"));
    assert!(claude.env_allowed("ANTHROPIC_API_KEY"));
    assert_eq!(
        claude.limits.memory, None,
        "no address-space limit on Node CLIs"
    );

    let codex = shipped("codex");
    let e = &codex.executor;
    assert_eq!((e.home, e.tmpdir), (HomeMode::Agent, HomeMode::Inherit));
    assert!(
        codex.env_allowed("TMPDIR"),
        "codex's sandbox needs a shared TMPDIR"
    );
    assert_eq!(
        render_text(&e.env["CODEX_HOME"], &values).unwrap(),
        "/a/home/.codex"
    );
    let config = render_text(&e.files[".codex/config.toml"], &values).unwrap();
    let parsed: toml::Table = config.parse().unwrap();
    assert_eq!(parsed["model"].as_str(), Some("m1"));
    assert_eq!(
        parsed["model_providers"]["torch"]["base_url"].as_str(),
        Some("http://127.0.0.1:9/v1")
    );
    assert_eq!(codex.limits.memory, None);
    // `torch mcp` wired in with `-c` overrides, each a TOML `key=value`.
    let argv = e.render(&values).unwrap();
    let lines: Vec<&str> = argv
        .windows(2)
        .filter(|w| w[0] == "-c")
        .map(|w| w[1].as_str())
        .collect();
    let overrides: toml::Table = lines
        .join("\n")
        .parse()
        .unwrap_or_else(|e| panic!("{lines:?}: {e}"));
    let torch = &overrides["mcp_servers"]["torch"];
    assert_eq!(torch["command"].as_str(), Some("/opt/torch/bin/torch"));
    assert_eq!(torch["args"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        torch["default_tools_approval_mode"].as_str(),
        Some("approve")
    );
    let vars: Vec<&str> = torch["env_vars"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for v in [
        "TORCH_HUB",
        "TORCH_TASK_ID",
        "TORCH_TASK_TOKEN",
        "TORCH_AGENT_URL",
    ] {
        assert!(vars.contains(&v), "{v} passes to torch mcp: {vars:?}");
    }
}

#[test]
fn executor_settings_are_checked() {
    let text = r#"
[executor]
command = ["cli", "--model", "{model}"]
tmpdir = "agent"
[executor.env]
"1BAD" = "x"
URL = "{base_url}"
[executor.files]
"../escape" = "x"
"#;
    let e = parse_template_file("t.toml", "t", text)
        .unwrap_err()
        .to_string();
    for want in [
        "t.toml:3:",
        "argument 2 uses {model} but executor.model is not set",
        "URL uses {base_url} but executor.base-url is not set",
        "invalid variable name \"1BAD\"",
        "invalid file path \"../escape\"",
        "files: needs home = \"agent\"",
        "tmpdir: \"agent\" needs home = \"agent\"",
    ] {
        assert!(e.contains(want), "{want:?} in {e}");
    }
    let ok = r#"
[executor]
command = ["cli", "--model", "{model}"]
model = "m"
home = "agent"
[executor.files]
"a/b.toml" = "x = {{}}"
"#;
    let t = parse_template_file("t.toml", "t", ok).unwrap();
    assert_eq!(
        render_text(&t.executor.files["a/b.toml"], &Placeholders::default()).unwrap(),
        "x = {}"
    );
}
