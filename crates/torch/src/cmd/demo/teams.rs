//! Scenario 3, team collaboration: a task that needs three skills no single
//! agent has forms a team (backend, frontend, data) led by the backend
//! member. Each member gets a subtask in its own git worktree of the demo's
//! repository; the members greet each other with signed messages on the
//! team channel, contend for one lock, walk into a planted deadlock (two
//! members each hold a lock and wait for the other's: the closing wait is
//! refused, that member backs off and retries), and their branches go
//! through the merge queue onto the team's integration branch.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use torch_api::rest::TeamView;
use torch_core::{EventKind, TaskState};

use super::Verdict;
use super::stage::{Narrator, Stage};
use crate::exit::{ERROR, exit};

/// A member's subtask: greet the team, take the shared lock in turn, (the
/// frontend and data members) walk into the planted deadlock, then write
/// the member's file in its worktree (committed by its agent).
const MEMBER: &str = r#"
set -u
fence() { sed -n 's/.*"fence": *\([0-9]*\).*/\1/p'; }
torch msg send --team "$TORCH_TEAM" --kind hello --body-json "{\"role\":\"$TORCH_TEAM_ROLE\"}" > "$DEMO_DIR/send-$TORCH_TEAM_ROLE" 2>&1 || exit 11
F=$(torch lock acquire schema --ttl 30s --wait 20s --json | fence) || exit 12
echo "$TORCH_TEAM_ROLE" >> "$DEMO_DIR/schema-order"; sleep 0.3
torch lock release schema --fence "$F" > /dev/null || exit 13
if [ -n "${MINE:-}" ]; then
  M=$(torch lock acquire "$MINE" --ttl 60s --json | fence) || exit 14
  touch "$DEMO_DIR/held-$MINE"
  i=0; while [ ! -e "$DEMO_DIR/held-$OTHER" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
  O=$(torch lock acquire "$OTHER" --ttl 60s --wait 20s --json 2> "$DEMO_DIR/wait-$MINE.err" | fence)
  if [ -z "$O" ]; then
    # Refused (it would close a cycle): back off, then take both in turn.
    echo "$TORCH_TEAM_ROLE" >> "$DEMO_DIR/refused"
    torch lock release "$MINE" --fence "$M" > /dev/null || exit 15
    O=$(torch lock acquire "$OTHER" --ttl 60s --wait 20s --json | fence) || exit 16
    M=$(torch lock acquire "$MINE" --ttl 60s --wait 20s --json | fence) || exit 17
  fi
  torch lock release "$OTHER" --fence "$O" > /dev/null
  torch lock release "$MINE" --fence "$M" > /dev/null
fi
i=0; while [ "$(torch msg inbox --json | grep -c '"kind": "hello"')" -lt 2 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
torch msg inbox --json | grep -c '"kind": "hello"' > "$DEMO_DIR/greetings-$TORCH_TEAM_ROLE"
echo "$TORCH_TEAM_ROLE was here" > "$FILE"
"#;

/// The team's task, on the leader: waits until its three subtasks ended.
const LEAD: &str = r#"
i=0
while [ $i -lt 600 ]; do
  torch team status --json > status.json 2> status.err
  if grep -q '"done": 3,' status.json; then exit 0; fi
  sleep 0.1; i=$((i+1))
done
exit 9
"#;

/// The team task; its members' subtasks get `$DEMO_DIR` (`artifacts`).
fn spec(repo: &Path, artifacts: &Path) -> String {
    let dir = artifacts.display();
    let role = |name: &str, skill: &str, file: &str, locks: Option<(&str, &str)>| {
        let env = match locks {
            Some((mine, other)) => format!(
                r#"{{ DEMO_DIR = "{dir}", FILE = "{file}", MINE = "{mine}", OTHER = "{other}" }}"#
            ),
            None => format!(r#"{{ DEMO_DIR = "{dir}", FILE = "{file}" }}"#),
        };
        format!(
            r#"
[[task.team.roles]]
name = "{name}"
skills = ["{skill}:0.7"]
task = {{ name = "{name} work", command = ["sh", "-c", '''{MEMBER}'''], env = {env}, max_retries = 0, timeout = "90s" }}
"#
        )
    };
    format!(
        r#"
[[task]]
name = "ship-feature"
timeout = "120s"
command = ["sh", "-c", '''{LEAD}''']
context = {{ repository = "{}" }}

[task.team]
leader = "backend"
{}{}{}"#,
        repo.display(),
        role("backend", "rust", "api.rs", None),
        role(
            "frontend",
            "typescript",
            "web.ts",
            Some(("lock-a", "lock-b"))
        ),
        role("data", "sql", "schema.sql", Some(("lock-b", "lock-a"))),
    )
}

/// `git -C dir args…`, its stdout.
fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .context("running git (the team scenario needs git)")?;
    if !out.status.success() {
        return Err(exit(
            ERROR,
            format!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A repository with one commit on `main`.
fn make_repo(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    git(dir, &["init", "-q", "-b", "main"])?;
    std::fs::write(dir.join("README.md"), "# shop\n").context("writing README.md")?;
    git(dir, &["add", "."])?;
    git(
        dir,
        &[
            "-c",
            "user.name=demo",
            "-c",
            "user.email=demo@torch.invalid",
            "commit",
            "-qm",
            "start",
        ],
    )?;
    Ok(())
}

pub(super) async fn run(say: &Narrator, keep: bool) -> Result<Verdict> {
    let mut stage = Stage::start("teams", keep, |_, _, _| Ok(())).await?;
    let repo = stage.artifacts.join("shop");
    make_repo(&repo)?;
    stage.agent("api", "rust:0.9,coordination:0.8", 2)?;
    stage.agent("web", "typescript:0.9", 1)?;
    stage.agent("db", "sql:0.9", 1)?;
    stage.wait_agents(3).await?;
    say.line(
        "  agents: api (rust, coordination), web (typescript), db (sql); no one covers all three",
    )?;
    let after = stage.tail().await?;
    let started = Instant::now();
    let resp = stage
        .submit("team scenario", &spec(&repo, &stage.artifacts))
        .await?;
    let team_id = resp
        .tasks
        .first()
        .map(|t| t.id)
        .ok_or_else(|| exit(ERROR, "the team task was not accepted"))?;
    let team: TeamView = stage
        .client
        .get(&format!("/api/v1/teams/{team_id}"))
        .await?;
    let names: Vec<String> = team
        .members
        .iter()
        .map(|m| {
            format!(
                "{} as {}{}",
                m.name,
                m.role,
                if m.leader { " (leader)" } else { "" }
            )
        })
        .collect();
    say.line(format!(
        "  team formed: {}; cost {}",
        names.join(", "),
        team.explanation["total_cost"]
    ))?;
    say.line("  each member: hello on the team channel, the `schema` lock in turn, then its file in its worktree")?;
    say.line("  planted: web holds lock-a and waits for lock-b while db holds lock-b and waits for lock-a")?;
    let finals = stage.wait(&resp, after, Duration::from_secs(100)).await?;
    let all_ok = finals.iter().all(|t| t.state == TaskState::Succeeded);
    let kinds = [
        EventKind::MessageDelivered,
        EventKind::LockAcquired,
        EventKind::WaitDeadlock,
        EventKind::MergeLanded,
        EventKind::MergeConflict,
        EventKind::TeamDisbanded,
    ];
    // The merges and disbanding follow the tasks' end by a tick or two.
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let ev = stage.events(after, &kinds).await?;
        let landed = ev.iter().filter(|e| e.kind == "merge.landed").count();
        let gone = ev.iter().any(|e| e.kind == "team.disbanded");
        if (landed >= 3 && gone) || Instant::now() > deadline {
            break ev;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let count = |k: &str| events.iter().filter(|e| e.kind == k).count();
    let (delivered, locks, deadlocks, landed) = (
        count("message.delivered"),
        count("lock.acquired"),
        count("wait.deadlock"),
        count("merge.landed"),
    );
    let refused = std::fs::read_to_string(stage.artifacts.join("refused")).unwrap_or_default();
    let order = std::fs::read_to_string(stage.artifacts.join("schema-order")).unwrap_or_default();
    let into = format!("torch/team/{team_id}");
    let files = git(&repo, &["ls-tree", "--name-only", &into]).unwrap_or_default();
    let merged: Vec<&str> = ["api.rs", "web.ts", "schema.sql"]
        .into_iter()
        .filter(|f| files.lines().any(|l| l == *f))
        .collect();
    say.line(format!(
        "  signed messages delivered member to member: {delivered}"
    ))?;
    say.line(format!(
        "  `schema` lock taken in turn by: {}",
        order.split_whitespace().collect::<Vec<_>>().join(" → ")
    ))?;
    say.line(format!(
        "  deadlock found at the closing wait: {deadlocks}; {} backed off and retried",
        refused.trim()
    ))?;
    say.line(format!(
        "  merge queue: {landed} branches landed on {into}: {}",
        merged.join(", ")
    ))?;
    let view: TeamView = stage
        .client
        .get(&format!("/api/v1/teams/{team_id}"))
        .await?;
    say.line(format!(
        "  team {}: progress {:.0}%",
        view.state,
        view.progress * 100.0
    ))?;
    let ok = all_ok
        && team.members.len() == 3
        && delivered >= 6
        && locks >= 3
        && deadlocks >= 1
        && !refused.trim().is_empty()
        && merged.len() == 3
        && view.state == "disbanded";
    let seconds = started.elapsed().as_secs_f64();
    stage.stop(say).await?;
    Ok(Verdict::new(
        ok,
        format!(
            "team of 3 formed with a leader; {delivered} signed messages delivered, {locks} lock grants, \
             {deadlocks} deadlock refused and resolved, {} of 3 branches merged; done in {seconds:.1}s",
            merged.len()
        ),
    ))
}
