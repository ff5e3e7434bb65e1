//! Locks, the wait-for graph and help requests with real processes: tasks
//! that take locks in a cycle (the closing wait is refused with the cycle
//! named, exit 6, and the rest are granted), a cycle mixing a lock wait and
//! a task wait, five peers racing to accept one help request, escalation to
//! a helper from a template, a `kill -9`ed holder, and a hub restart.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::{Agent, Hub, TestDir, secs};

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn sh_task(name: &str, skill: &str, script: &str, env: Value) -> Value {
    json!({
        "name": name,
        "command": ["sh", "-c", script],
        "skills": [skill],
        "max_retries": 0,
        "timeout": "3m",
        "env": env,
    })
}

/// `wait.deadlock` events so far.
fn deadlocks(hub: &Hub) -> Vec<Value> {
    hub.api()
        .events("nova.torch.collaboration.team")
        .into_iter()
        .filter(|e| e["kind"] == "wait.deadlock")
        .collect()
}

/// Takes lock `$P$I`, waits until all `$N` tasks hold theirs, then waits
/// for `$P$NEXT`: the last of them to wait closes the cycle.
const RING: &str = r#"
torch lock acquire "$P$I" --ttl 2m --json > "$OUT/t-$I" && mv "$OUT/t-$I" "$OUT/held-$I" || exit 11
i=0; while [ "$(ls "$OUT" | grep -c '^held-')" -lt "$N" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
torch lock acquire "$P$NEXT" --ttl 2m --wait 90s --json > "$OUT/next-$I" 2> "$OUT/err-$I"
echo $? > "$OUT/rc-$I.tmp"; mv "$OUT/rc-$I.tmp" "$OUT/rc-$I"
"#;

#[test]
fn lock_cycles_of_2_3_and_10_tasks_are_refused_at_the_closing_wait() {
    let dir = TestDir::new("coord-ring");
    let hub = Hub::start(&dir, &[]);
    let token = hub.token(&dir, "agent");
    let _agent = Agent::start(&dir, &hub.url, &token, "a", "sh", 10);
    let api = hub.api();
    for n in [2usize, 3, 10] {
        let out = dir.subdir(&format!("out/ring{n}"));
        let prefix = format!("ring{n}-");
        let tasks: Vec<Value> = (0..n)
            .map(|i| {
                sh_task(
                    &format!("ring{n}-{i}"),
                    "sh",
                    RING,
                    json!({"OUT": out, "P": prefix, "I": i.to_string(),
                           "NEXT": ((i + 1) % n).to_string(), "N": n.to_string()}),
                )
            })
            .collect();
        let ids = api.submit(tasks);
        let codes: Vec<String> = dir.wait_for(
            &format!("all {n} tasks of the ring to finish waiting"),
            secs(180),
            || {
                let c: Vec<String> = (0..n)
                    .filter_map(|i| {
                        read(&out.join(format!("rc-{i}"))).map(|s| s.trim().to_string())
                    })
                    .collect();
                (c.len() == n).then_some(c)
            },
        );
        let refused: Vec<usize> = (0..n).filter(|i| codes[*i] == "6").collect();
        assert_eq!(
            refused.len(),
            1,
            "exactly one wait closes the {n}-cycle: exit codes {codes:?}"
        );
        assert_eq!(
            codes.iter().filter(|c| *c == "0").count(),
            n - 1,
            "every other wait is granted once the cycle is broken: {codes:?}"
        );
        let err = read(&out.join(format!("err-{}", refused[0]))).unwrap_or_default();
        assert!(
            err.contains("409") && err.contains("deadlock"),
            "refusal names the deadlock: {err}"
        );
        // The granted ones got a fence above their own lock's.
        for i in (0..n).filter(|i| *i != refused[0]) {
            let g: Value =
                serde_json::from_str(&read(&out.join(format!("next-{i}"))).unwrap_or_default())
                    .expect("grant JSON");
            assert_eq!(g["name"], format!("{prefix}{}", (i + 1) % n));
            assert_eq!(g["mode"], "exclusive");
            assert!(
                g["fence"].as_u64().is_some() && g["expires_ms"].as_u64().is_some(),
                "{g}"
            );
        }
        // The event names every edge of the cycle.
        let ev = deadlocks(&hub)
            .into_iter()
            .find(|e| {
                e["data"]["cycle"][0]["lock"]
                    .as_str()
                    .is_some_and(|l| l.starts_with(&prefix))
            })
            .expect("a wait.deadlock event for this ring");
        let cycle = ev["data"]["cycle"].as_array().expect("cycle").clone();
        assert_eq!(cycle.len(), n, "the {n}-cycle is named edge by edge: {ev}");
        let mut locks: Vec<String> = cycle
            .iter()
            .map(|e| e["lock"].as_str().unwrap_or("").to_string())
            .collect();
        locks.sort();
        let mut want: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
        want.sort();
        assert_eq!(locks, want);
        assert!(cycle.iter().all(|e| e["kind"] == "lock"));
        assert_eq!(cycle[0]["from"], format!("task:{}", ids[refused[0]]));
        for id in &ids {
            api.wait_state(&dir, id, "succeeded", secs(60));
        }
    }
    // Everything released once the tasks ended.
    dir.wait_for("no lock left", secs(30), || {
        let v = api.get("/api/v1/locks");
        v["locks"]
            .as_array()
            .is_some_and(|l| l.is_empty())
            .then_some(())
    });
}

#[test]
fn a_cycle_of_a_lock_wait_and_a_task_wait_is_refused() {
    let dir = TestDir::new("coord-mixed");
    let hub = Hub::start(&dir, &[]);
    let token = hub.token(&dir, "agent");
    let _agent = Agent::start(&dir, &hub.url, &token, "a", "sh", 4);
    let api = hub.api();
    let out = dir.subdir("out");
    // B waits for lock M, which A holds; then A waits for B to end.
    let b_script = r#"
i=0; while [ ! -e "$OUT/a-held" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
torch lock acquire M --wait 90s --json > "$OUT/b-out" 2> "$OUT/b-err"; echo $? > "$OUT/b-rc"
"#;
    let b = api
        .submit(vec![sh_task("b", "sh", b_script, json!({"OUT": out}))])
        .remove(0);
    let a_script = r#"
torch lock acquire M --json > "$OUT/a.tmp" && mv "$OUT/a.tmp" "$OUT/a-held" || exit 11
i=0; while ! torch locks list --json | grep -q '"waiter"' && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
torch wait "$B" --timeout 60s > /dev/null 2> "$OUT/a-err"; echo $? > "$OUT/a-rc"
"#;
    let a = api
        .submit(vec![sh_task(
            "a",
            "sh",
            a_script,
            json!({"OUT": out, "B": b}),
        )])
        .remove(0);
    let a_rc = dir.wait_for("A's wait to be answered", secs(120), || {
        read(&out.join("a-rc"))
    });
    assert_eq!(
        a_rc.trim(),
        "6",
        "A's wait on B closes the cycle: {:?}",
        read(&out.join("a-err"))
    );
    let b_rc = dir.wait_for("B's lock wait to be answered", secs(120), || {
        read(&out.join("b-rc"))
    });
    assert_eq!(
        b_rc.trim(),
        "0",
        "B is granted M once A ends: {:?}",
        read(&out.join("b-err"))
    );
    let ev = deadlocks(&hub).pop().expect("a wait.deadlock event");
    let cycle = ev["data"]["cycle"].as_array().expect("cycle").clone();
    assert_eq!(cycle.len(), 2, "{ev}");
    assert_eq!(cycle[0]["kind"], "task");
    assert_eq!(cycle[0]["from"], format!("task:{a}"));
    assert_eq!(cycle[0]["to"], format!("task:{b}"));
    assert_eq!(cycle[1]["kind"], "lock");
    assert_eq!(cycle[1]["lock"], "M");
    assert_eq!(cycle[1]["to"], format!("task:{a}"));
    api.wait_state(&dir, &a, "succeeded", secs(30));
    api.wait_state(&dir, &b, "succeeded", secs(30));
}

#[test]
fn five_peers_race_to_accept_one_help_request_and_exactly_one_wins() {
    let dir = TestDir::new("coord-help");
    let hub = Hub::start(&dir, &[]);
    let token = hub.token(&dir, "agent");
    let _asker = Agent::start(&dir, &hub.url, &token, "asker", "ask", 1);
    let _helpers = Agent::start(&dir, &hub.url, &token, "helpers", "rust:0.8", 5);
    let api = hub.api();
    let out = dir.subdir("out");
    let peer = r#"
id=""; i=0
while [ -z "$id" ] && [ $i -lt 1200 ]; do
  id=$(torch help list --json | grep -o '"id": *"[^"]*"' | head -1 | cut -d'"' -f4)
  [ -z "$id" ] && sleep 0.05; i=$((i+1))
done
touch "$OUT/ready-$I"
i=0; while [ "$(ls "$OUT" | grep -c '^ready-')" -lt 5 ] && [ $i -lt 1200 ]; do sleep 0.02; i=$((i+1)); done
torch help accept "$id" --json > "$OUT/acc-$I" 2> "$OUT/accerr-$I"
echo $? > "$OUT/accrc-$I.tmp"; mv "$OUT/accrc-$I.tmp" "$OUT/accrc-$I"
"#;
    let peers: Vec<Value> = (0..5)
        .map(|i| {
            sh_task(
                &format!("peer{i}"),
                "rust",
                peer,
                json!({"OUT": out, "I": i.to_string()}),
            )
        })
        .collect();
    api.submit(peers);
    let ask = r#"
torch help request --skill rust:0.5 --timeout 60s --wait --json please review my lock code > "$OUT/req.tmp" 2> "$OUT/req-err"
echo $? > "$OUT/req-rc"; mv "$OUT/req.tmp" "$OUT/req.json"
"#;
    let asker = api
        .submit(vec![sh_task("asker", "ask", ask, json!({"OUT": out}))])
        .remove(0);
    let codes: Vec<String> = dir.wait_for("all five accepts to be answered", secs(120), || {
        let c: Vec<String> = (0..5)
            .filter_map(|i| read(&out.join(format!("accrc-{i}"))).map(|s| s.trim().to_string()))
            .collect();
        (c.len() == 5).then_some(c)
    });
    let winners: Vec<usize> = (0..5).filter(|i| codes[*i] == "0").collect();
    assert_eq!(winners.len(), 1, "exactly one accept wins: {codes:?}");
    for i in (0..5).filter(|i| *i != winners[0]) {
        assert_eq!(codes[i], "1");
        let err = read(&out.join(format!("accerr-{i}"))).unwrap_or_default();
        assert!(
            err.contains("409") && err.contains("already_accepted"),
            "loser {i}: {err}"
        );
    }
    let won: Value =
        serde_json::from_str(&read(&out.join(format!("acc-{}", winners[0]))).unwrap_or_default())
            .expect("winner's JSON");
    assert_eq!(won["state"], "accepted");
    // The requester's --wait returns who accepted.
    let rc = dir.wait_for("the requester's wait to return", secs(60), || {
        read(&out.join("req-rc"))
    });
    assert_eq!(rc.trim(), "0", "{:?}", read(&out.join("req-err")));
    let req: Value = serde_json::from_str(&read(&out.join("req.json")).unwrap_or_default())
        .expect("request JSON");
    assert_eq!(req["state"], "accepted");
    assert_eq!(req["accepted_by"], won["accepted_by"]);
    assert_eq!(req["requester"], format!("task:{asker}"));
    assert_eq!(req["skill"], "rust");
    let helpers_id = api.agent_id(&dir, "helpers");
    assert_eq!(
        req["offered_to"],
        json!([helpers_id]),
        "offered to the capable peer only"
    );
    assert_eq!(req["accepted_agent"], json!(helpers_id));
    let events = api.events("nova.torch.collaboration.help");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, ["help.requested", "help.accepted"], "{events:?}");
    let autonomy = &api.get("/api/v1/stats")["autonomy"];
    assert_eq!(
        autonomy["help_accept_rate"], 1.0,
        "one request, accepted once though five raced: {autonomy}"
    );
}

#[test]
fn an_unanswered_help_request_escalates_to_a_helper_from_a_template() {
    let dir = TestDir::new("coord-escalate");
    dir.write(
        "torch.toml",
        r#"
[lifecycle]
tick = "200ms"
terminate-grace = "2s"
spawn-timeout = "20s"

[spawn]
node-cpu-max = 1.0
node-mem-max = 1.0

[templates.rusty]
skills = ["rust:0.9"]
slots = 1
min = 0
max = 2
executor = { command = ["sh", "-c", "{prompt}"] }
"#,
    );
    let hub = Hub::start(&dir, &[]);
    let cli = hub.cli(&dir);
    // Nobody has rust: nobody accepts; the template covers it.
    let out = cli.run_timeout(
        &[
            "help",
            "request",
            "--skill",
            "rust:0.5",
            "--timeout",
            "1s",
            "--wait",
            "--json",
            "fix",
            "the",
            "build",
        ],
        secs(60),
    );
    out.assert_code(0, "an escalated help request");
    let v = out.json();
    assert_eq!(v["state"], "escalated", "{v}");
    let helper = v["helper"].as_str().expect("the helper agent").to_string();
    let api = hub.api();
    let ev = api
        .events("nova.torch.collaboration.help")
        .into_iter()
        .find(|e| e["kind"] == "help.escalated")
        .expect("help.escalated");
    assert_eq!(ev["data"]["template"], "rusty");
    assert_eq!(ev["data"]["helper"], helper.as_str());
    let spawned = api
        .events("nova.torch.agents.spawning")
        .into_iter()
        .any(|e| e["kind"] == "agent.spawned" && e["agent_id"] == helper.as_str());
    assert!(
        spawned,
        "the helper was spawned through the lifecycle manager"
    );
    // No template for the skill: the request expires and the wait says so.
    let out = cli.run_timeout(
        &[
            "help",
            "request",
            "--skill",
            "cobol",
            "--timeout",
            "500ms",
            "--wait",
            "x",
        ],
        secs(60),
    );
    out.assert_code(5, "an expired help request under --wait");
    assert!(out.stderr.contains("expired"), "{}", out.stderr);
    let autonomy = &api.get("/api/v1/stats")["autonomy"];
    assert_eq!(
        autonomy["help_accept_rate"], 0.0,
        "neither an escalated nor an expired request is accepted: {autonomy}"
    );
}

#[test]
fn a_killed_holders_lock_is_freed_and_its_late_release_refused() {
    let dir = TestDir::new("coord-kill");
    let hub = Hub::start(
        &dir,
        &[
            ("TORCH_HUB__LEASE", "2s"),
            ("TORCH_HUB__HEARTBEAT", "500ms"),
        ],
    );
    let token = hub.token(&dir, "agent");
    let mut agent = Agent::start(&dir, &hub.url, &token, "a", "sh", 1);
    let api = hub.api();
    let cli = hub.cli(&dir);
    let out = dir.subdir("out");
    // The TTL is far longer than the lease: only the attempt's end frees it.
    let script = r#"torch lock acquire K --ttl 10m --json > "$OUT/k.tmp" && mv "$OUT/k.tmp" "$OUT/k.json"; sleep 60"#;
    let id = api
        .submit(vec![sh_task("holder", "sh", script, json!({"OUT": out}))])
        .remove(0);
    let held: Value = dir.wait_for("the holder to take K", secs(60), || {
        read(&out.join("k.json")).and_then(|s| serde_json::from_str(&s).ok())
    });
    let fence = held["fence"].as_u64().expect("fence");
    assert_eq!(held["holder"], format!("task:{id}"));
    // An operator cannot take it meanwhile.
    cli.run(&["lock", "acquire", "K"])
        .assert_code(1, "K is held");
    agent.kill9();
    dir.wait_for(
        "K to be free after the holder's lease expired",
        secs(60),
        || {
            let v = api.get("/api/v1/locks");
            v["locks"]
                .as_array()
                .is_some_and(|l| l.iter().all(|x| x["name"] != "K"))
                .then_some(())
        },
    );
    let released = api
        .events("nova.torch.collaboration.team")
        .into_iter()
        .find(|e| e["kind"] == "lock.released")
        .expect("lock.released");
    assert_eq!(released["data"]["reason"], "attempt_ended");
    // The late release with the old fence is an error, never a success.
    let late = cli.run(&["lock", "release", "K", "--fence", &fence.to_string()]);
    late.assert_code(1, "a late release with the old fence");
    assert!(late.stderr.contains("not_held"), "{}", late.stderr);
    let again = cli.json(&["lock", "acquire", "K"]);
    assert!(
        again["fence"].as_u64().expect("fence") > fence,
        "fences only grow: {again}"
    );
    let stale = cli.run(&["lock", "renew", "K", "--fence", &fence.to_string()]);
    stale.assert_code(1, "a renew with the old fence");
    assert!(stale.stderr.contains("stale_fence"), "{}", stale.stderr);
}

#[test]
fn a_hub_restart_loses_no_lock_or_help_request() {
    let dir = TestDir::new("coord-restart");
    let mut hub = Hub::start_fixed_port(&dir, &[]);
    let cli = hub.cli(&dir);
    let lock = cli.json(&["lock", "acquire", "--path", "src/api/**", "--ttl", "10m"]);
    let shared = cli.json(&["lock", "acquire", "db", "--shared", "--ttl", "10m"]);
    let help = cli.json(&[
        "help",
        "request",
        "--skill",
        "go",
        "--timeout",
        "10m",
        "later",
    ]);
    hub.kill9();
    hub.restart(&dir);
    let list = cli.json(&["locks", "list"]);
    let names: Vec<(&str, u64, bool)> = list["locks"]
        .as_array()
        .expect("locks")
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap_or(""),
                l["holders"][0]["fence"].as_u64().unwrap_or(0),
                l["path"] == true,
            )
        })
        .collect();
    assert!(
        names.contains(&("src/api/**", lock["fence"].as_u64().unwrap_or(0), true)),
        "{list}"
    );
    assert!(
        names.contains(&("db", shared["fence"].as_u64().unwrap_or(0), false)),
        "{list}"
    );
    // Overlapping reservations still conflict after the restart.
    let other = hub.token(&dir, "submitter");
    let as_other = crate::harness::Cli::new(&dir, &hub.url, Some(&other));
    as_other
        .run(&["lock", "acquire", "--path", "src/**/mod.rs"])
        .assert_code(1, "an overlapping reservation by someone else");
    as_other
        .run(&["lock", "acquire", "--path", "src/db/**"])
        .assert_code(0, "a disjoint reservation");
    let open = cli.json(&["help", "list"]);
    assert_eq!(open["requests"][0]["id"], help["id"]);
    cli.run(&[
        "lock",
        "release",
        "db",
        "--fence",
        &shared["fence"].to_string(),
    ])
    .assert_code(0, "release after restart with the same fence");
}
