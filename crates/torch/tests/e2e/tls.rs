//! TLS end to end: `torch serve --tls-self-signed DIR`, an agent and the CLI
//! trusting `DIR/ca.pem`, and clients with a wrong CA refused with a clear
//! message.

use crate::harness::{Agent, Cli, Hub, TestDir, secs};

#[test]
fn agent_and_cli_work_over_tls_with_the_hubs_ca_and_a_wrong_ca_is_refused() {
    let dir = TestDir::new("tls_self_signed");
    let certs = dir.subdir("tls");
    let certs_arg = certs.to_string_lossy().into_owned();
    let hub = Hub::start_args(&dir, &["--tls-self-signed", &certs_arg]);
    assert!(hub.url.starts_with("https://"), "{}", hub.url);
    let ca = certs.join("ca.pem");
    let ca_arg = ca.to_string_lossy().into_owned();

    // The CLI with the hub's CA: a token, then a task run by a TLS agent.
    let cli = Cli::new(&dir, &hub.url, Some(&hub.admin));
    let out = cli.run(&["--ca-file", &ca_arg, "token", "create", "--role", "agent"]);
    out.assert_code(0, "torch token create over TLS");
    let agent_token = out.stdout.trim().to_string();
    let mut agent = Agent::start_env(
        &dir,
        &hub.url,
        &agent_token,
        "tls-agent",
        "sh",
        1,
        &[("TORCH_CA_FILE", &ca_arg)],
    );
    let out = cli.run(&[
        "--ca-file",
        &ca_arg,
        "submit",
        "--wait",
        "--json",
        "--",
        "sh",
        "-c",
        "echo over-tls",
    ]);
    out.assert_code(0, "torch submit --wait over TLS");
    let submitted = out.json();
    let id = submitted["tasks"][0]["id"]
        .as_str()
        .or_else(|| submitted[0]["id"].as_str())
        .unwrap_or_else(|| panic!("a task id in {submitted}"))
        .to_string();
    let logs = cli.run(&["--ca-file", &ca_arg, "tasks", "logs", &id]);
    logs.assert_code(0, "torch tasks logs over TLS");
    assert!(logs.stdout.contains("over-tls"), "{}", logs.stdout);
    assert_eq!(agent.exited(), None, "the agent is still connected");

    // Another CA (a second self-signed set-up): refused, and said why.
    let other = dir.subdir("other-ca");
    let wrong = torch_tls::self_signed(&other, &[]).expect("another CA");
    let wrong_arg = wrong.ca.to_string_lossy().into_owned();
    let out = cli.run(&["--ca-file", &wrong_arg, "tasks", "list"]);
    assert_ne!(out.code, 0, "a hub signed by another CA is refused");
    assert!(
        out.stderr.contains("not signed by a CA this client trusts")
            && out.stderr.contains("--ca-file"),
        "a clear message: {}",
        out.stderr
    );
    // Without --ca-file (system roots) too.
    let out = cli.run(&["tasks", "list"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("--ca-file"), "{}", out.stderr);

    // An agent with the wrong CA gives up at once with the same reason.
    let mut bad = Agent::start_env(
        &dir,
        &hub.url,
        &agent_token,
        "wrong-ca",
        "sh",
        1,
        &[("TORCH_CA_FILE", &wrong_arg)],
    );
    let code = dir.wait_for("the agent with a wrong CA to exit", secs(20), || {
        bad.exited()
    });
    assert_ne!(code, 0);
    let log = std::fs::read_to_string(dir.join("agent-wrong-ca.log")).unwrap_or_default();
    assert!(
        log.contains("not signed by a CA this client trusts"),
        "the agent says why:\n{log}"
    );
}
