//! `torch top` in a real pseudo-terminal (`script` from util-linux): it
//! takes the alternate screen, shows the fleet, quits on `q` and gives the
//! terminal back; without a terminal it refuses with exit 2.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use serde_json::json;

use crate::harness::{Agent, Hub, TORCH, TestDir, secs};

/// Enter and leave the alternate screen.
const ENTER: &str = "\u{1b}[?1049h";
const LEAVE: &str = "\u{1b}[?1049l";

#[test]
fn top_draws_the_fleet_in_a_terminal_quits_on_q_and_restores_it() {
    let dir = TestDir::new("top");
    let hub = Hub::start(&dir, &[]);
    let token = hub.token(&dir, "agent");
    let _agent = Agent::start(&dir, &hub.url, &token, "topper", "sh", 2);
    let api = hub.api();
    let ids = api.submit(vec![
        json!({"name": "t", "command": ["true"], "skills": ["sh"]}),
    ]);
    api.wait_state(&dir, &ids[0], "succeeded", secs(30));

    let cmd = format!(
        "stty cols 120 rows 40; exec {TORCH} top --hub {} --token {}",
        hub.url, hub.admin
    );
    let mut child = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("TERM", "xterm-256color")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script (util-linux)");
    let mut out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let screen = |seen: &[u8]| String::from_utf8_lossy(seen).to_string();
    let start = Instant::now();
    // Wait until it drew the fleet (the agent's name) on the alternate screen.
    while !(screen(&seen).contains(ENTER) && screen(&seen).contains("topper")) {
        assert!(
            start.elapsed() < secs(30),
            "torch top drew nothing in 30 s: {:?}",
            screen(&seen)
        );
        if let Ok(chunk) = rx.recv_timeout(secs(1)) {
            seen.extend(chunk);
        }
    }
    child
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"q")
        .expect("press q");
    let deadline = Instant::now() + secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "torch top did not quit on q");
        if let Ok(chunk) = rx.recv_timeout(secs(1)) {
            seen.extend(chunk);
        }
    };
    while let Ok(chunk) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
        seen.extend(chunk);
    }
    let text = screen(&seen);
    assert!(status.success(), "torch top exited {status}: {text:?}");
    let entered = text.find(ENTER).expect("entered the alternate screen");
    let left = text
        .rfind(LEAVE)
        .expect("left the alternate screen on exit");
    assert!(left > entered, "left after entering");
    for want in ["fleet", "queue", "alerts", "succeeded"] {
        assert!(text.contains(want), "{want} on screen: {text:?}");
    }

    // Not a terminal: refused, nothing drawn.
    let piped = Command::new(TORCH)
        .args(["top", "--hub", &hub.url, "--token", &hub.admin])
        .stdin(Stdio::null())
        .output()
        .expect("run torch top");
    assert_eq!(piped.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&piped.stderr).contains("needs a terminal"));
    assert!(!String::from_utf8_lossy(&piped.stdout).contains(ENTER));
}
