//! Teams with real processes: a three-role team whose subtasks run on three
//! distinct members and which disbands when its task ends; the leader
//! `kill -9`ed mid-way (a new leader under a new term finishes the task,
//! no subtask runs twice); a member `kill -9`ed (its role formed again,
//! its subtask moved); a team nobody can form (refused, the role named);
//! a task no single agent covers getting a team of its own.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::harness::{Agent, Cli, Hub, TestDir, fast_backoff, secs};

/// Short leases, so a killed member is noticed in seconds.
const QUICK: &[(&str, &str)] = &[
    ("TORCH_HUB__LEASE", "2s"),
    ("TORCH_HUB__HEARTBEAT", "400ms"),
];

/// The team task's script: waits until `$N` subtasks of its team ended.
const LEAD: &str = r#"
i=0
while [ $i -lt 1200 ]; do
  if torch team status --json > "$OUT/status-$$.json" 2>> "$OUT/lead.err" \
     && grep -q "\"done\": $N," "$OUT/status-$$.json"; then
    exit 0
  fi
  sleep 0.1; i=$((i+1))
done
exit 9
"#;

/// A member's subtask: reports half-way, marks that it ran, (the first run
/// of a role listed in `$SLOW`) sleeps so a test can kill its agent, and
/// waits for the file `$GATE` when one is named.
const WORK: &str = r#"
torch progress 50 half way || exit 11
n=$(ls "$OUT" | grep -c "^start-$ROLE-" || true)
touch "$OUT/start-$ROLE-$TORCH_TASK_ID"
if [ "$n" -eq 0 ] && [ "$SLOW" = "$ROLE" ]; then sleep 120; fi
if [ -n "$GATE" ]; then while [ ! -e "$GATE" ]; do sleep 0.1; done; fi
echo "$TORCH_TASK_ID" >> "$OUT/done-$ROLE"
"#;

fn role(name: &str, skill: &str, out: &str, slow: &str) -> Value {
    json!({
        "name": name,
        "skills": [skill],
        "task": {
            "name": format!("work as {name}"),
            "command": ["sh", "-c", WORK],
            "env": {"OUT": out, "ROLE": name, "SLOW": slow},
            "max_retries": 0,
            "timeout": "5m",
        },
    })
}

fn team_task(out: &str, roles: Vec<Value>, leader: &str, subtasks: usize) -> Value {
    json!({
        "name": "build the feature",
        "command": ["sh", "-c", LEAD],
        "env": {"OUT": out, "N": subtasks.to_string()},
        "max_retries": 3,
        "backoff": fast_backoff(),
        "timeout": "5m",
        "team": {"roles": roles, "leader": leader},
    })
}

fn events_of(hub: &Hub, task: &str, kind: &str) -> Vec<Value> {
    hub.api()
        .events("nova.torch.collaboration.team")
        .into_iter()
        .filter(|e| e["kind"] == kind && e["data"]["task"] == task)
        .collect()
}

#[test]
fn a_three_role_team_runs_each_subtask_on_its_own_member_and_disbands() {
    let dir = TestDir::new("team-three");
    let hub = Hub::start(&dir, QUICK);
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    let _be = Agent::start(&dir, &hub.url, &token, "be", "rust:0.9,coordination:0.8", 2);
    let _fe = Agent::start(&dir, &hub.url, &token, "fe", "typescript:0.9", 1);
    let _db = Agent::start(&dir, &hub.url, &token, "db", "sql:0.9", 1);
    let ids: Vec<String> = ["be", "fe", "db"]
        .iter()
        .map(|n| api.agent_id(&dir, n))
        .collect();
    let out = dir.subdir("out").to_string_lossy().into_owned();
    let spec = team_task(
        &out,
        vec![
            role("backend", "rust:0.7", &out, ""),
            role("frontend", "typescript:0.7", &out, ""),
            role("data", "sql:0.7", &out, ""),
        ],
        "backend",
        3,
    );
    let submitted = api.submit(vec![spec]);
    assert_eq!(
        submitted.len(),
        4,
        "the team's task and one subtask per member"
    );
    let team = &submitted[0];
    let formed = events_of(&hub, team, "team.formed");
    assert_eq!(formed.len(), 1, "one team.formed: {formed:?}");
    assert_eq!(
        formed[0]["data"]["leader"],
        ids[0].as_str(),
        "the spec's leader role"
    );
    assert_eq!(formed[0]["data"]["term"], 1);

    let done = api.wait_state(&dir, team, "succeeded", secs(90));
    assert_eq!(
        done["last_agent_id"].as_str(),
        Some(ids[0].as_str()),
        "the team's task ran on its leader: {done:#}"
    );
    // Each subtask ran once, on the member of its role.
    let view = dir.wait_for("the team to disband", secs(20), || {
        let v = api.get(&format!("/api/v1/teams/{team}"));
        (v["state"] == "disbanded").then_some(v)
    });
    let mut agents = BTreeSet::new();
    for s in view["subtasks"].as_array().expect("subtasks") {
        assert_eq!(s["state"], "succeeded", "{s}");
        let member = view["members"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["role"] == s["role"]))
            .unwrap_or_else(|| panic!("no member for {s}"));
        assert_eq!(
            s["agent"], member["agent_id"],
            "subtask on its role's member: {s}"
        );
        agents.insert(s["agent"].as_str().unwrap_or_default().to_string());
        let started = api.task_events(s["id"].as_str().unwrap_or_default(), "task.started");
        assert_eq!(started.len(), 1, "ran exactly once: {s}");
    }
    assert_eq!(agents.len(), 3, "three distinct members: {view:#}");
    assert_eq!(view["done"], 3);
    assert_eq!(view["progress"], 1.0);
    assert!(
        !events_of(&hub, team, "team.progress").is_empty(),
        "progress was recorded as team.progress events"
    );
    assert_eq!(events_of(&hub, team, "team.disbanded").len(), 1);
    // `tasks show` of the team's task carries the team's live state.
    let t = api.task(team);
    assert_eq!(t["team"]["role"], "team", "{t:#}");
    assert_eq!(t["team"]["progress"], 1.0);
    assert_eq!(t["team"]["leader"], ids[0].as_str());
    // The CLI shows it.
    let cli = Cli::new(&dir, &hub.url, Some(&hub.token(&dir, "admin")));
    let shown = cli.run(&["teams", "show", team]);
    shown.assert_code(0, "torch teams show");
    assert!(
        shown.stdout.contains("leader:") && shown.stdout.contains("backend"),
        "{}",
        shown.stdout
    );
    let list = cli.json(&["teams", "list"]);
    assert!(
        list["teams"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["id"] == team.as_str())),
        "{list}"
    );
}

#[test]
fn the_leader_killed_mid_way_hands_on_to_the_next_member_under_a_new_term() {
    let dir = TestDir::new("team-leader");
    let hub = Hub::start(&dir, QUICK);
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    let mut lead = Agent::start(&dir, &hub.url, &token, "lead", "coordination:0.9", 1);
    let _w1 = Agent::start(&dir, &hub.url, &token, "w1", "rust:0.9", 1);
    let _w2 = Agent::start(&dir, &hub.url, &token, "w2", "sql:0.9", 1);
    let lead_id = api.agent_id(&dir, "lead");
    let w1 = api.agent_id(&dir, "w1");
    api.agent_id(&dir, "w2");
    let out = dir.subdir("out").to_string_lossy().into_owned();
    // The workers wait for the leader to be gone before they finish.
    let gate = format!("{out}/gate");
    let mut spec = team_task(
        &out,
        vec![
            json!({"name": "lead", "skills": ["coordination:0.5"]}),
            role("rust", "rust:0.5", &out, ""),
            role("sql", "sql:0.5", &out, ""),
        ],
        "lead",
        2,
    );
    for r in [1, 2] {
        spec["team"]["roles"][r]["task"]["env"]["GATE"] = json!(gate);
    }
    let team = api.submit(vec![spec])[0].clone();
    // A spare coordinator joins after formation: it takes the lead role.
    let _spare = Agent::start(&dir, &hub.url, &token, "spare", "coordination:0.9", 1);
    let spare = api.agent_id(&dir, "spare");
    api.wait_state(&dir, &team, "running", secs(30));
    lead.kill9();
    let changed = dir.wait_for("a new leader", secs(30), || {
        events_of(&hub, &team, "team.leader_changed").pop()
    });
    assert_eq!(changed["data"]["previous"], lead_id.as_str());
    assert_eq!(changed["data"]["term"], 2, "{changed}");
    assert_eq!(
        changed["data"]["leader"],
        w1.as_str(),
        "the next member leads: {changed}"
    );
    let replaced = dir.wait_for("the lead role formed again", secs(30), || {
        events_of(&hub, &team, "team.member_replaced").pop()
    });
    assert_eq!(
        replaced["data"]["member"]["agent_id"],
        spare.as_str(),
        "{replaced}"
    );
    std::fs::write(&gate, "open").expect("open the gate");
    let done = api.wait_state(&dir, &team, "succeeded", secs(90));
    assert_eq!(
        done["last_agent_id"].as_str(),
        Some(w1.as_str()),
        "finished by the new leader: {done:#}"
    );
    let view = api.get(&format!("/api/v1/teams/{team}"));
    assert_eq!(view["term"], 2, "{view:#}");
    for s in view["subtasks"].as_array().expect("subtasks") {
        let id = s["id"].as_str().unwrap_or_default();
        assert_eq!(
            api.task_events(id, "task.started").len(),
            1,
            "no subtask ran twice: {s}"
        );
    }
}

#[test]
fn a_member_killed_is_replaced_and_its_subtask_moves_to_the_new_member() {
    let dir = TestDir::new("team-member");
    let hub = Hub::start(&dir, QUICK);
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    let _lead = Agent::start(&dir, &hub.url, &token, "lead", "rust:0.9", 2);
    let mut db = Agent::start(&dir, &hub.url, &token, "db", "sql:0.9", 1);
    api.agent_id(&dir, "lead");
    let db_id = api.agent_id(&dir, "db");
    let out = dir.subdir("out").to_string_lossy().into_owned();
    let spec = team_task(
        &out,
        vec![
            role("backend", "rust:0.5", &out, ""),
            role("data", "sql:0.5", &out, "data"),
        ],
        "backend",
        2,
    );
    let ids = api.submit(vec![spec]);
    let team = ids[0].clone();
    let _db2 = Agent::start(&dir, &hub.url, &token, "db2", "sql:0.9", 1);
    let db2 = api.agent_id(&dir, "db2");
    dir.wait_for("the data subtask to start", secs(30), || {
        std::fs::read_dir(dir.join("out"))
            .ok()?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("start-data-"))
            .then_some(())
    });
    db.kill9();
    let replaced = dir.wait_for("the data role formed again", secs(30), || {
        events_of(&hub, &team, "team.member_replaced").pop()
    });
    let d = &replaced["data"];
    assert_eq!(d["previous"], db_id.as_str(), "{replaced}");
    assert_eq!(d["member"]["agent_id"], db2.as_str(), "{replaced}");
    assert_eq!(d["member"]["role"], "data");
    let old = d["replaced_subtask"]
        .as_str()
        .expect("the unfinished subtask")
        .to_string();
    let copy = d["member"]["subtask"]
        .as_str()
        .expect("its copy")
        .to_string();
    api.wait_state(&dir, &team, "succeeded", secs(90));
    // Cancelled by the replacement, or (on a slow machine, when its lease
    // ran out first with no retry left) dead: either way it will not run
    // again.
    let old_state = api.task(&old)["state"].clone();
    assert!(
        old_state == "cancelled" || old_state == "dead",
        "the old subtask ended: {old_state}"
    );
    let c = api.task(&copy);
    assert_eq!(c["state"], "succeeded", "{c:#}");
    assert_eq!(c["last_agent_id"].as_str(), Some(db2.as_str()));
    let done = std::fs::read_to_string(dir.join("out/done-data")).unwrap_or_default();
    assert_eq!(
        done.lines().collect::<Vec<_>>(),
        [copy.as_str()],
        "only the copy finished"
    );
}

#[test]
fn a_team_nobody_can_form_is_refused_naming_the_role() {
    let dir = TestDir::new("team-refused");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    let _a = Agent::start(&dir, &hub.url, &token, "a", "rust:0.9", 1);
    api.agent_id(&dir, "a");
    let spec = json!({
        "name": "needs a designer",
        "command": ["true"],
        "team": {"roles": [
            {"name": "backend", "skills": ["rust:0.5"]},
            {"name": "design", "skills": ["figma:0.8"]},
        ]},
    });
    let r = api.post("/api/v1/tasks", &json!({"tasks": [spec]}));
    assert_eq!(r.status, 422, "{}", r.text());
    let body = r.json();
    assert_eq!(body["code"], "team_unformable", "{body}");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("\"design\"") && msg.contains("figma"),
        "names the role and skill: {msg}"
    );
    let failed: Vec<Value> = api
        .events("nova.torch.collaboration.team")
        .into_iter()
        .filter(|e| e["kind"] == "team.formation_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["data"]["role"], "design");
    assert_eq!(api.counts().values().sum::<u64>(), 0, "nothing was stored");
}

#[test]
fn a_task_no_single_agent_covers_gets_a_team_of_its_own() {
    let dir = TestDir::new("team-auto");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    let _a = Agent::start(&dir, &hub.url, &token, "a", "rust:0.9", 1);
    let _b = Agent::start(&dir, &hub.url, &token, "b", "sql:0.9", 1);
    let both = BTreeSet::from([api.agent_id(&dir, "a"), api.agent_id(&dir, "b")]);
    let spec = json!({
        "name": "rust and sql",
        "command": ["sh", "-c", "torch team members --json"],
        "skills": ["rust:0.5", "sql:0.5"],
    });
    let team = api.submit(vec![spec])[0].clone();
    let formed = events_of(&hub, &team, "team.formed");
    assert_eq!(formed.len(), 1, "a team was formed: {formed:?}");
    let members = formed[0]["data"]["members"].as_array().expect("members");
    let roles: BTreeSet<&str> = members.iter().filter_map(|m| m["role"].as_str()).collect();
    assert_eq!(roles.len(), 2, "one role per required skill: {members:?}");
    let agents: BTreeSet<String> = members
        .iter()
        .filter_map(|m| m["agent_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(agents, both, "each agent covers one of the skills");
    let done = api.wait_state(&dir, &team, "succeeded", secs(60));
    assert_eq!(
        done["last_agent_id"].as_str(),
        formed[0]["data"]["leader"].as_str(),
        "it ran on the team's leader"
    );
}

/// A git repository at `path` with `shared.txt` committed on `main`.
fn repo(path: &std::path::Path) {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(path)
            .args(args)
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(path.join("shared.txt"), "base\n").expect("write");
    git(&["add", "."]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-qm",
        "base",
    ]);
}

fn show(path: &std::path::Path, rev: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(path)
        .args(["show", rev])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A two-member team on a repository; each member's subtask runs `left`
/// and `right` in its worktree. The team's task holds until `$GATE`.
fn merge_team(
    dir: &TestDir,
    hub: &Hub,
    left: &str,
    right: &str,
) -> (String, std::path::PathBuf, String, [Agent; 2]) {
    let api = hub.api();
    let token = hub.token(dir, "agent");
    let repo_dir = dir.subdir("repo");
    repo(&repo_dir);
    let gate = dir.join("out/gate").to_string_lossy().into_owned();
    let hold = r#"while [ ! -e "$GATE" ]; do sleep 0.1; done"#;
    let task =
        |script: &str| json!({"command": ["sh", "-c", script], "max_retries": 0, "timeout": "2m"});
    let spec = json!({
        "name": "two edits",
        "command": ["sh", "-c", hold],
        "env": {"GATE": gate},
        "context": {"repository": repo_dir.to_string_lossy()},
        "team": {"roles": [
            {"name": "left", "skills": ["rust:0.5"], "task": task(left)},
            {"name": "right", "skills": ["sql:0.5"], "task": task(right)},
        ], "leader": "left"},
    });
    let agents = [
        Agent::start(dir, &hub.url, &token, "l", "rust:0.9", 2),
        Agent::start(dir, &hub.url, &token, "r", "sql:0.9", 1),
    ];
    api.agent_id(dir, "l");
    api.agent_id(dir, "r");
    let team = api.submit(vec![spec])[0].clone();
    (team, repo_dir, gate, agents)
}

#[test]
fn two_members_editing_one_file_merge_once_and_the_other_gets_a_follow_up_naming_it() {
    let dir = TestDir::new("team-merge-conflict");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let (team, repo_dir, gate, _agents) = merge_team(
        &dir,
        &hub,
        "printf 'left\\n' > shared.txt",
        "printf 'right\\n' > shared.txt",
    );
    let conflict = dir.wait_for("a merge conflict", secs(60), || {
        events_of(&hub, &team, "merge.conflict").pop()
    });
    assert_eq!(
        conflict["data"]["paths"],
        json!(["shared.txt"]),
        "{conflict}"
    );
    let follow_up = conflict["data"]["follow_up"]
        .as_str()
        .expect("a follow-up task")
        .to_string();
    let landed_first = events_of(&hub, &team, "merge.landed");
    assert_eq!(
        landed_first.len(),
        1,
        "the other branch landed: {landed_first:?}"
    );
    // The follow-up went to the member whose branch conflicted, and
    // starting from the integration branch its change merges cleanly.
    let f = api.wait_state(&dir, &follow_up, "succeeded", secs(60));
    let conflicted = api.task(conflict["data"]["subtask"].as_str().unwrap_or_default());
    assert_eq!(
        f["last_agent_id"], conflicted["last_agent_id"],
        "to the same member"
    );
    let into = format!("torch/team/{team}");
    dir.wait_for("the follow-up's branch to land", secs(30), || {
        events_of(&hub, &team, "merge.landed")
            .into_iter()
            .find(|e| e["data"]["subtask"] == follow_up.as_str())
    });
    let role = conflicted["name"].as_str().unwrap_or_default();
    let expect = if role.contains("(left)") {
        "left\n"
    } else {
        "right\n"
    };
    assert_eq!(
        show(&repo_dir, &format!("{into}:shared.txt")).as_deref(),
        Some(expect)
    );
    let view = api.get(&format!("/api/v1/teams/{team}"));
    let states: Vec<&str> = view["merges"]
        .as_array()
        .expect("merge queue")
        .iter()
        .filter_map(|m| m["state"].as_str())
        .collect();
    assert_eq!(states, ["landed", "conflict", "landed"], "{view:#}");
    std::fs::write(&gate, "go").expect("gate");
    api.wait_state(&dir, &team, "succeeded", secs(60));
}

#[test]
fn two_members_editing_different_files_both_merge() {
    let dir = TestDir::new("team-merge-clean");
    let hub = Hub::start(&dir, &[]);
    let api = hub.api();
    let (team, repo_dir, gate, _agents) =
        merge_team(&dir, &hub, "printf 'a\\n' > a.txt", "printf 'b\\n' > b.txt");
    dir.wait_for("both branches to land", secs(60), || {
        (events_of(&hub, &team, "merge.landed").len() == 2).then_some(())
    });
    assert!(events_of(&hub, &team, "merge.conflict").is_empty());
    let into = format!("torch/team/{team}");
    assert_eq!(
        show(&repo_dir, &format!("{into}:a.txt")).as_deref(),
        Some("a\n")
    );
    assert_eq!(
        show(&repo_dir, &format!("{into}:b.txt")).as_deref(),
        Some("b\n")
    );
    assert_eq!(
        show(&repo_dir, &format!("{into}:shared.txt")).as_deref(),
        Some("base\n")
    );
    // The repository's own branch is untouched.
    assert_eq!(
        show(&repo_dir, "main:shared.txt").as_deref(),
        Some("base\n")
    );
    std::fs::write(&gate, "go").expect("gate");
    api.wait_state(&dir, &team, "succeeded", secs(60));
}

#[test]
fn a_role_no_connected_agent_covers_is_filled_from_a_template_and_stopped_at_the_end() {
    let dir = TestDir::new("team-template");
    dir.write(
        "torch.toml",
        &crate::lifecycle::config(
            r#"
[templates.sqlbot]
skills = ["sql:0.9"]
slots = 1
min = 0
max = 1
executor = { command = ["sh", "-c", "{prompt}"] }
"#,
        ),
    );
    let hub = Hub::start(&dir, QUICK);
    let api = hub.api();
    let token = hub.token(&dir, "agent");
    let _be = Agent::start(&dir, &hub.url, &token, "be", "rust:0.9", 2);
    let be = api.agent_id(&dir, "be");
    let spec = json!({
        "name": "needs a data member",
        "command": ["sh", "-c", LEAD],
        "env": {"OUT": dir.subdir("out").to_string_lossy(), "N": "1"},
        "timeout": "2m",
        "team": {"roles": [
            {"name": "backend", "skills": ["rust:0.5"]},
            {"name": "data", "skills": ["sql:0.5"],
             "task": {"command": ["true"], "max_retries": 0, "timeout": "1m"}},
        ], "leader": "backend"},
    });
    let team = api.submit(vec![spec])[0].clone();
    let formed = events_of(&hub, &team, "team.formed")
        .pop()
        .expect("team.formed");
    let members = formed["data"]["members"].as_array().expect("members");
    let data = members
        .iter()
        .find(|m| m["role"] == "data")
        .expect("a data member");
    assert_eq!(
        data["template"], "sqlbot",
        "spawned from the template: {formed}"
    );
    assert_eq!(formed["data"]["leader"], be.as_str());
    let spawned = data["agent_id"].as_str().expect("its agent id").to_string();
    let done = api.wait_state(&dir, &team, "succeeded", secs(90));
    assert_eq!(done["last_agent_id"], be.as_str());
    let subtask = data["subtask"].as_str().expect("its subtask");
    let s = api.wait_state(&dir, subtask, "succeeded", secs(30));
    assert_eq!(
        s["last_agent_id"],
        spawned.as_str(),
        "ran on the spawned member"
    );
    // The member started for the team is stopped once the team disbands.
    dir.wait_for("the spawned member to stop", secs(30), || {
        let v = api.get("/api/v1/agents");
        let alive = v["agents"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["id"] == spawned.as_str() && x["state"] != "disconnected")
        });
        (!alive).then_some(())
    });
    let disbanded = events_of(&hub, &team, "team.disbanded")
        .pop()
        .expect("team.disbanded");
    assert_eq!(
        disbanded["data"]["stopped"],
        json!([spawned]),
        "{disbanded}"
    );
}
