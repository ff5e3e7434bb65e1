//! Spec parsing and batch validation: every error names where it is.

use torch_core::spec::SpecFormat;
use torch_core::validate::parse_and_validate;

fn errors(name: &str, text: &str) -> String {
    let format = SpecFormat::detect(name, text);
    match parse_and_validate(name, text, format) {
        Ok(v) => panic!("{name} should be rejected, got {} valid tasks", v.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn toml_syntax_error_names_file_line_and_column() {
    let e = errors("jobs.toml", "[[task]]\nname = \"a\"\ncommand = [\"true\"\n");
    assert!(e.starts_with("jobs.toml:3:"), "{e}");
}

#[test]
fn unknown_field_and_wrong_type_name_the_field() {
    let e = errors(
        "t.toml",
        "[[task]]\nname = \"a\"\ncommand = [\"true\"]\ncomand = 1\n",
    );
    assert!(e.contains("t.toml:4:1") && e.contains("comand"), "{e}");
    let e = errors(
        "t.toml",
        "name = \"a\"\ncommand = [\"true\"]\npriority = \"high\"\n",
    );
    assert!(e.contains("priority") && e.contains(":3:"), "{e}");
    let e = errors(
        "t.json",
        r#"{"task": [{"name": "a", "command": ["true"], "timeout": "soon"}]}"#,
    );
    assert!(
        e.contains("task[0].timeout") && e.contains("invalid duration"),
        "{e}"
    );
}

#[test]
fn semantic_errors_name_the_task_and_field() {
    let e = errors("t.toml", "[[task]]\nname = \"a\"\ncommand = []\n");
    assert!(e.contains("command") && e.contains("empty"), "{e}");
    let e = errors("t.toml", "[[task]]\nname = \"a\"\n");
    assert!(e.contains("needs a command or a prompt"), "{e}");
    let e = errors(
        "t.toml",
        "[[task]]\nname = \"a\"\ncommand = [\"true\"]\ndepends_on = [\"ghost\"]\n[[task]]\nname = \"b\"\ncommand = [\"true\"]\n",
    );
    assert!(
        e.contains("task[0].depends_on[0]") && e.contains("\"ghost\""),
        "{e}"
    );
    let e = errors(
        "t.toml",
        "[[task]]\nname = \"a\"\ncommand = [\"x\"]\n[[task]]\nname = \"a\"\ncommand = [\"y\"]\n",
    );
    assert!(e.contains("duplicate task name"), "{e}");
    let e = errors(
        "t.toml",
        "name = \"a\"\ncommand = [\"x\"]\nsuccess = { stdout_matches = \"(\" }\n",
    );
    assert!(
        e.contains("success.stdout_matches") && e.contains("regular expression"),
        "{e}"
    );
}

#[test]
fn dependency_cycle_is_named() {
    let text = "[[task]]\nname = \"a\"\ncommand = [\"x\"]\ndepends_on = [\"c\"]\n\
                [[task]]\nname = \"b\"\ncommand = [\"x\"]\ndepends_on = [\"a\"]\n\
                [[task]]\nname = \"c\"\ncommand = [\"x\"]\ndepends_on = [\"b\"]\n\
                [[task]]\nname = \"d\"\ncommand = [\"x\"]\n";
    let e = errors("cycle.toml", text);
    assert!(e.contains("dependency cycle: a -> c -> b -> a"), "{e}");
    let e = errors(
        "self.toml",
        "[[task]]\nname = \"s\"\ncommand = [\"x\"]\ndepends_on = [\"s\"]\n",
    );
    assert!(e.contains("dependency cycle: s -> s"), "{e}");
}

#[test]
fn valid_documents_in_every_shape() {
    let toml = "[[task]]\nname = \"build\"\ncommand = [\"make\"]\nskills = [\"rust:0.8\", {name = \"sh\"}]\n\
                timeout = \"30s\"\n[[task]]\nname = \"test\"\ncommand = [\"make\", \"test\"]\ndepends_on = [\"build\"]\n";
    let v = parse_and_validate("ok.toml", toml, SpecFormat::Toml).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[1].local_deps, vec![0]);
    assert_eq!(v[0].spec.skills[0].min, 0.8);
    assert_eq!(v[0].spec.timeout, Some(std::time::Duration::from_secs(30)));
    let one = parse_and_validate(
        "one.json",
        r#"{"command": ["true"], "priority": 5}"#,
        SpecFormat::Json,
    )
    .unwrap();
    assert_eq!(one[0].spec.priority, 5);
    let arr = parse_and_validate(
        "arr.json",
        r#"[{"name": "a", "command": ["true"]}, {"name": "b", "command": ["true"], "depends_on": ["a", "01890000-0000-7000-8000-000000000001"]}]"#,
        SpecFormat::Json,
    )
    .unwrap();
    assert_eq!(arr[1].local_deps, vec![0]);
    assert_eq!(arr[1].external_deps.len(), 1);
}

/// A NUL byte cannot cross into argv, the environment or a path, so a task
/// carrying one could only fail at run time: it is refused here, located.
#[test]
fn nul_bytes_in_what_reaches_the_os_are_refused() {
    let json = r#"{"task": [
        {"name": "a", "command": ["echo", "ok", "a\u0000b"]},
        {"name": "b", "command": ["true"], "env": {"GOOD": "x", "BAD": "1\u00002"}},
        {"name": "c", "command": ["true"], "env": {"K\u0000EY": "v", "A=B": "v"}},
        {"name": "d", "prompt": "do\u0000it"},
        {"name": "e", "command": ["nul\u0000prog"],
         "success": {"check": ["test", "-f", "x\u0000y"], "file_exists": ["ok.txt", "r\u0000.txt"]}}
    ]}"#;
    let e = errors("nul.json", json);
    for needle in [
        "nul.json: task[0].command[2] (a): contains a NUL byte",
        "nul.json: task[1].env.BAD (b): contains a NUL byte",
        "nul.json: task[2].env (c): invalid variable name \"K\\0EY\"",
        "nul.json: task[2].env (c): invalid variable name \"A=B\"",
        "nul.json: task[3].prompt (d): contains a NUL byte",
        "nul.json: task[4].command[0] (e): contains a NUL byte",
        "nul.json: task[4].success.check[2] (e): contains a NUL byte",
        "nul.json: task[4].success.file_exists[1] (e): contains a NUL byte",
    ] {
        assert!(e.contains(needle), "missing {needle:?} in:\n{e}");
    }
    assert_eq!(
        e.lines().count(),
        8,
        "one error per bad field, none for good ones:\n{e}"
    );

    // TOML's escape reaches the same check; a single task has no `task[i]`.
    let e = errors("one.toml", "command = [\"echo\", \"a\\u0000b\"]\n");
    assert_eq!(e, "one.toml: command[1]: contains a NUL byte");
}

#[test]
fn team_specs_are_validated_with_located_errors() {
    let e = errors(
        "team.toml",
        "name = \"big\"\nprompt = \"build it\"\n[team]\nleader = \"qa\"\nmax_size = 0\nroles = [{ name = \"api\", skills = [\"rust:0.7\"] }, { name = \"api\", skills = [], count = 0 }]\n",
    );
    for want in [
        "team.toml: team.roles[1].name: role \"api\" is named twice",
        "team.toml: team.roles[1].skills: needs at least one skill",
        "team.toml: team.roles[1].count: must be 1..=100, got 0",
        "team.toml: team.leader: names no role (\"qa\"; roles: api, api)",
        "team.toml: team.max_size: 0 is less than the 1 members",
    ] {
        assert!(e.contains(want), "missing {want:?} in: {e}");
    }
    let e = errors(
        "team.toml",
        "prompt = \"x\"\n[team]\nroles = [{ name = \"api\", skils = [\"rust\"] }]\n",
    );
    assert!(e.contains("skils"), "{e}");
    let ok = torch_core::validate::parse_and_validate(
        "ok.toml",
        "prompt = \"x\"\n[team]\nleader = \"api\"\nroles = [{ name = \"api\", skills = [\"rust:0.7\"] }, { name = \"ui\", skills = [\"typescript\"], count = 2 }]\n",
        SpecFormat::Toml,
    )
    .expect("a valid team");
    assert_eq!(ok[0].spec.team.as_ref().map(|t| t.size()), Some(3));
}
