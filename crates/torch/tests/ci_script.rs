//! `.ci/run`, the CI entry point, driven with a fake `cargo` first on PATH
//! (which records its calls) so the script's order, exit status and closing
//! totals line can be checked in a second, without building anything.
//! Messages print the script's output with `{:?}`: its fake `test result:`
//! lines must not start a line of this binary's output, which the real
//! `.ci/run` totals.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const FMT: &str = "fmt --all -- --check";
const CLIPPY: &str = "clippy --workspace --all-targets -- -D warnings";
const TEST: &str = "test --workspace";

/// Records each call's arguments in `$FAKE_CALLS`. `$FAKE_FAIL` names the
/// subcommand that fails; `cargo test` prints two result lines (5 passed in
/// all, and 1 failed when it fails).
const FAKE_CARGO: &str = r#"#!/bin/sh
echo "$*" >> "$FAKE_CALLS"
failed=0
[ "$1" = "$FAKE_FAIL" ] && failed=1
if [ "$1" = test ]; then
  echo "test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out"
  echo "test result: ok. 2 passed; $failed failed; 0 ignored; 0 measured; 0 filtered out"
fi
[ "$failed" -eq 0 ] || exit 101
"#;

/// Stands in for `npm install --prefix DIR …`: creates `claude` and `codex`
/// in `DIR/node_modules/.bin` that print the pinned versions.
const FAKE_NPM: &str = r#"#!/bin/sh
prefix=""
while [ $# -gt 0 ]; do
  [ "$1" = "--prefix" ] && prefix="$2"
  shift
done
bin="$prefix/node_modules/.bin"
mkdir -p "$bin"
printf '#!/bin/sh\necho "2.1.332 (Claude Code)"\n' > "$bin/claude"
printf '#!/bin/sh\necho "codex-cli 0.171.0"\n' > "$bin/codex"
chmod +x "$bin/claude" "$bin/codex"
echo "npm" >> "$FAKE_NPM_CALLS"
"#;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    calls: Vec<String>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/run")
}

/// Runs `.ci/run` with the fake cargo (and stand-ins for the tools it would
/// otherwise install, so it never reaches for apt-get).
fn run_ci(fail: &str) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).expect("bin dir");
    for (name, text) in [
        ("cargo", FAKE_CARGO),
        ("redis-server", "#!/bin/sh\nexit 0\n"),
        ("openssl", "#!/bin/sh\nexit 0\n"),
        ("chromium", "#!/bin/sh\nexit 0\n"),
        ("npm", FAKE_NPM),
    ] {
        let p = bin.join(name);
        fs::write(&p, text).expect("write fake tool");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    // A venv that already has Playwright, so no pip install runs.
    let venv_bin = dir.path().join("venv/bin");
    fs::create_dir_all(&venv_bin).expect("venv dir");
    let python = venv_bin.join("python");
    fs::write(&python, "#!/bin/sh\nexit 0\n").expect("write fake python");
    fs::set_permissions(&python, fs::Permissions::from_mode(0o755)).expect("chmod");
    let calls = dir.path().join("calls");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(script())
        .env("PATH", path)
        .env("FAKE_CALLS", &calls)
        .env("TORCH_CI_VENV", dir.path().join("venv"))
        .env("FAKE_FAIL", fail)
        .env("FAKE_NPM_CALLS", dir.path().join("npm-calls"))
        .env("TORCH_CI_NPM_PREFIX", dir.path().join("npm"))
        .output()
        .expect("run .ci/run");
    let npm_calls = fs::read_to_string(dir.path().join("npm-calls")).unwrap_or_default();
    assert_eq!(
        npm_calls.lines().count(),
        1,
        "the agent CLIs are installed once into the empty prefix"
    );
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        calls: fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect(),
    }
}

#[test]
fn ci_checks_style_before_the_tests_and_fails_on_either() {
    let ok = run_ci("none");
    assert_eq!(
        ok.calls,
        [FMT, CLIPPY, TEST],
        "fmt and clippy run before the tests: {:?} {:?}",
        ok.stdout,
        ok.stderr
    );
    assert_eq!(ok.code, Some(0), "{:?} {:?}", ok.stdout, ok.stderr);
    assert_eq!(
        ok.stdout.lines().last(),
        Some("tests: 5 passed, 0 failed"),
        "the totals line closes the output: {:?}",
        ok.stdout
    );

    for (fail, what) in [("fmt", FMT), ("clippy", CLIPPY)] {
        let r = run_ci(fail);
        assert_eq!(r.calls, [FMT, CLIPPY, TEST], "the tests still run");
        assert_eq!(r.code, Some(1), "{what} fails the run: {:?}", r.stderr);
        assert!(
            r.stderr.contains(what),
            "the failed check is named: {:?}",
            r.stderr
        );
        assert_eq!(
            r.stdout.lines().last(),
            Some("tests: 5 passed, 0 failed"),
            "{:?}",
            r.stdout
        );
    }

    let tests = run_ci("test");
    assert_eq!(tests.code, Some(101), "cargo test's status is the run's");
    assert_eq!(
        tests.stdout.lines().last(),
        Some("tests: 5 passed, 1 failed")
    );
}
