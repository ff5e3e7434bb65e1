//! Test harness: a temp dir per test, `torch serve` / `torch agent` child
//! processes, the CLI, a tiny HTTP/1.1 client and bounded polling.
//!
//! Every wait is bounded in time and in iterations; a timeout panics with the
//! tails of every `*.log` file in the test dir (hub and agent logs).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// The binary under test.
pub(crate) const TORCH: &str = env!("CARGO_BIN_EXE_torch");
/// The Python with Playwright and `mcp` that `.ci/run` sets up.
pub(crate) const TEST_PYTHON_ENV: &str = "TORCH_TEST_PYTHON";
/// Polling interval of every wait.
pub(crate) const POLL: Duration = Duration::from_millis(50);
/// Default bound for a CLI invocation.
const CLI_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound for a hub to write its URL file.
const START_TIMEOUT: Duration = Duration::from_secs(20);

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Seconds as a `Duration`.
pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A fresh temp dir, removed on drop unless `TORCH_TEST_KEEP_TMP=1`.
pub(crate) struct TestDir {
    path: PathBuf,
    name: String,
    _tmp: Option<tempfile::TempDir>,
}

impl TestDir {
    pub(crate) fn new(name: &str) -> TestDir {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("torch-e2e-{name}-"))
            .tempdir()
            .expect("create a temp dir");
        if std::env::var("TORCH_TEST_KEEP_TMP").is_ok_and(|v| v == "1") {
            let path = tmp.keep();
            eprintln!("[{name}] keeping test dir {}", path.display());
            TestDir {
                path,
                name: name.into(),
                _tmp: None,
            }
        } else {
            TestDir {
                path: tmp.path().to_path_buf(),
                name: name.into(),
                _tmp: Some(tmp),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }

    /// Creates (if needed) and returns a sub directory.
    pub(crate) fn subdir(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        fs::create_dir_all(&p).expect("create a sub directory");
        p
    }

    /// Writes a file in the dir and returns its path.
    pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path.join(name);
        fs::write(&p, text).expect("write a test file");
        p
    }

    /// The last lines of every `*.log` file in the dir, for failure messages.
    pub(crate) fn log_tails(&self) -> String {
        let mut out = String::new();
        let mut files: Vec<PathBuf> = fs::read_dir(&self.path)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        for f in files {
            let text = fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(40);
            out.push_str(&format!(
                "\n----- {} (last {} lines) -----\n",
                f.display(),
                lines.len() - from
            ));
            for l in &lines[from..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Polls `f` every 50 ms until it returns `Some`, for at most `timeout`;
    /// panics naming `what`, with the log tails, on timeout.
    pub(crate) fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        let start = Instant::now();
        let max_polls = timeout.as_millis() / POLL.as_millis() + 2;
        for _ in 0..max_polls {
            if let Some(v) = f() {
                return v;
            }
            if start.elapsed() >= timeout {
                break;
            }
            std::thread::sleep(POLL);
        }
        panic!(
            "[{}] timed out after {:?} waiting for {what}\nlogs in {}:{}",
            self.name,
            timeout,
            self.path.display(),
            self.log_tails()
        );
    }
}

fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TORCH_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("TORCH_LOG", "info");
}

fn log_file(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open a log file")
}

/// A port that was free a moment ago (bind port 0, read it, release it).
pub(crate) fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// True while `pid` is a live (not zombie) process.
pub(crate) fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "pid (comm) S ...": the state follows the last ')'.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X'))
        }
        Err(_) => kill(Pid::from_raw(pid), None).is_ok(),
    }
}

/// The pids written one per line to `path` (none if it does not exist yet).
pub(crate) fn read_pids(path: &Path) -> Vec<i32> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn kill_child(child: &mut Child, group: bool) {
    if let Ok(None) = child.try_wait() {
        let pid = Pid::from_raw(child.id() as i32);
        if group {
            let _ = killpg(pid, Signal::SIGKILL);
        }
        let _ = kill(pid, Signal::SIGKILL);
        let _ = child.wait();
    }
}

/// A `torch serve` process, killed (with its process group) on drop.
pub(crate) struct Hub {
    pub(crate) url: String,
    pub(crate) admin: String,
    child: Option<Child>,
    dir: PathBuf,
    listen: String,
    env: Vec<(String, String)>,
    /// Extra `torch serve` arguments.
    args: Vec<String>,
    tag: String,
}

impl Hub {
    /// Starts a hub on an ephemeral port with the given `TORCH_HUB__*` settings.
    pub(crate) fn start(dir: &TestDir, env: &[(&str, &str)]) -> Hub {
        Self::start_listen(dir, "127.0.0.1:0", env)
    }

    /// Starts a hub on a fixed free port, so it can be restarted on the same URL.
    pub(crate) fn start_fixed_port(dir: &TestDir, env: &[(&str, &str)]) -> Hub {
        Self::start_listen(dir, &format!("127.0.0.1:{}", free_port()), env)
    }

    /// Starts a hub on an ephemeral port with extra `torch serve` arguments.
    pub(crate) fn start_args(dir: &TestDir, args: &[&str]) -> Hub {
        Self::start_full(dir, "127.0.0.1:0", &[], args)
    }

    fn start_listen(dir: &TestDir, listen: &str, env: &[(&str, &str)]) -> Hub {
        Self::start_full(dir, listen, env, &[])
    }

    fn start_full(dir: &TestDir, listen: &str, env: &[(&str, &str)], args: &[&str]) -> Hub {
        let mut hub = Hub {
            args: args.iter().map(|a| a.to_string()).collect(),
            url: String::new(),
            admin: String::new(),
            child: None,
            dir: dir.path().to_path_buf(),
            listen: listen.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tag: dir.name.clone(),
        };
        hub.spawn(dir);
        hub.admin = fs::read_to_string(hub.dir.join("admin.token"))
            .expect("the hub wrote its admin token file on first start")
            .trim()
            .to_string();
        assert!(!hub.admin.is_empty(), "empty admin token file");
        hub
    }

    fn spawn(&mut self, dir: &TestDir) {
        let url_file = self.dir.join("hub.url");
        let _ = fs::remove_file(&url_file);
        let log = self.dir.join("hub.log");
        let mut cmd = Command::new(TORCH);
        clean_env(&mut cmd);
        cmd.arg("serve")
            .arg("--listen")
            .arg(&self.listen)
            .arg("--data-dir")
            .arg(self.dir.join("hub-data"))
            .arg("--url-file")
            .arg(&url_file)
            .arg("--admin-token-file")
            .arg(self.dir.join("admin.token"))
            .args(&self.args)
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log_file(&log))
            .stderr(log_file(&log))
            .process_group(0);
        let mut child = cmd.spawn().expect("spawn torch serve");
        let tag = self.tag.clone();
        let url = dir.wait_for("the hub to write its url file", START_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "[{tag}] torch serve exited early with {status}:{}",
                    dir.log_tails()
                );
            }
            fs::read_to_string(&url_file)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        });
        self.child = Some(child);
        self.url = url;
    }

    /// `kill -9` the hub (only its own pid, as a crash would).
    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }

    /// Sends `sig` to the hub process (e.g. SIGSTOP / SIGCONT).
    pub(crate) fn signal(&self, sig: Signal) {
        if let Some(c) = &self.child {
            kill(Pid::from_raw(c.id() as i32), sig).expect("signal the hub");
        }
    }

    /// Starts the hub again on the same address and data dir.
    pub(crate) fn restart(&mut self, dir: &TestDir) {
        assert!(self.child.is_none(), "restart needs a stopped hub");
        assert!(!self.listen.ends_with(":0"), "restart needs a fixed port");
        let old = self.url.clone();
        self.spawn(dir);
        assert_eq!(self.url, old, "the restarted hub has the same url");
    }

    /// The HTTP API as the admin.
    pub(crate) fn api(&self) -> Api {
        Api::new(&self.url, Some(&self.admin))
    }

    /// The CLI as the admin.
    pub(crate) fn cli(&self, dir: &TestDir) -> Cli {
        Cli::new(dir, &self.url, Some(&self.admin))
    }

    /// Creates a token with `role` (`agent`, `submitter`, `admin`) through the CLI.
    pub(crate) fn token(&self, dir: &TestDir, role: &str) -> String {
        let out = self.cli(dir).run(&["token", "create", "--role", role]);
        out.assert_code(0, "torch token create");
        let t = out.stdout.trim().to_string();
        assert!(
            !t.is_empty() && !t.contains(' '),
            "token create printed {t:?}"
        );
        t
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_child(&mut c, true);
        }
    }
}

/// A `torch agent` process, killed (with its process group) on drop.
pub(crate) struct Agent {
    child: Child,
}

impl Agent {
    /// Starts `torch agent --name NAME --skills SKILLS --slots SLOTS` logging
    /// to `agent-NAME.log`; its tasks may also write the test dir's `out`.
    pub(crate) fn start(
        dir: &TestDir,
        hub: &str,
        token: &str,
        name: &str,
        skills: &str,
        slots: u32,
    ) -> Agent {
        Self::start_env(dir, hub, token, name, skills, slots, &[])
    }

    /// The `torch agent` arguments that let tasks write the test dir's
    /// `out` dir (`$OUT`): outside the work dir, so the sandbox must allow it.
    fn out_args(dir: &TestDir) -> Vec<String> {
        let out = dir.subdir("out");
        vec!["--sandbox-write".into(), out.to_string_lossy().into_owned()]
    }

    /// [`Agent::start`] with extra environment variables.
    pub(crate) fn start_env(
        dir: &TestDir,
        hub: &str,
        token: &str,
        name: &str,
        skills: &str,
        slots: u32,
        env: &[(&str, &str)],
    ) -> Agent {
        let out = Self::out_args(dir);
        let out: Vec<&str> = out.iter().map(String::as_str).collect();
        Self::start_full(dir, hub, token, name, skills, slots, &out, env)
    }

    /// [`Agent::start`] with extra `torch agent` arguments.
    pub(crate) fn start_args(
        dir: &TestDir,
        hub: &str,
        token: &str,
        name: &str,
        skills: &str,
        slots: u32,
        extra: &[&str],
    ) -> Agent {
        Self::start_full(dir, hub, token, name, skills, slots, extra, &[])
    }

    /// `torch agent` with extra arguments and environment variables.
    #[allow(clippy::too_many_arguments)]
    fn start_full(
        dir: &TestDir,
        hub: &str,
        token: &str,
        name: &str,
        skills: &str,
        slots: u32,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let log = dir.join(&format!("agent-{name}.log"));
        let mut cmd = Command::new(TORCH);
        clean_env(&mut cmd);
        cmd.arg("agent")
            .arg("--hub")
            .arg(hub)
            .arg("--name")
            .arg(name)
            .arg("--skills")
            .arg(skills)
            .arg("--slots")
            .arg(slots.to_string())
            .arg("--work-dir")
            .arg(dir.subdir(&format!("work-{name}")))
            .args(extra)
            .env("TORCH_TOKEN", token)
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file(&log))
            .stderr(log_file(&log))
            .process_group(0);
        let child = cmd.spawn().expect("spawn torch agent");
        Agent { child }
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Its exit code once it has exited (reaped), `None` while it runs.
    pub(crate) fn exited(&mut self) -> Option<i32> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.code().unwrap_or(-1)),
            _ => None,
        }
    }

    /// Sends `sig` to the agent process only (not its group).
    pub(crate) fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("signal the agent");
    }

    /// `kill -9` the agent process only, as a crash would, and reap it.
    pub(crate) fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        kill_child(&mut self.child, true);
    }
}

/// Result of one CLI run.
#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Out {
    pub(crate) fn assert_code(&self, code: i32, what: &str) {
        assert_eq!(
            self.code, code,
            "{what}: expected exit {code}, got {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs the `torch` CLI against one hub with one token.
pub(crate) struct Cli {
    hub: String,
    token: Option<String>,
    dir: PathBuf,
}

impl Cli {
    pub(crate) fn new(dir: &TestDir, hub: &str, token: Option<&str>) -> Cli {
        Cli {
            hub: hub.to_string(),
            token: token.map(str::to_string),
            dir: dir.path().to_path_buf(),
        }
    }

    /// Runs `torch ARGS…`, bounded by two minutes.
    pub(crate) fn run(&self, args: &[&str]) -> Out {
        self.run_timeout(args, CLI_TIMEOUT)
    }

    pub(crate) fn run_timeout(&self, args: &[&str], timeout: Duration) -> Out {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let out_path = self.dir.join(format!("cli-{n}.out"));
        let err_path = self.dir.join(format!("cli-{n}.err"));
        let mut cmd = Command::new(TORCH);
        clean_env(&mut cmd);
        cmd.env("TORCH_LOG", "warn")
            .env("TORCH_HUB", &self.hub)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(File::create(&out_path).expect("create cli stdout file"))
            .stderr(File::create(&err_path).expect("create cli stderr file"));
        if let Some(t) = &self.token {
            cmd.env("TORCH_TOKEN", t);
        }
        let mut child = cmd.spawn().expect("spawn torch");
        let start = Instant::now();
        let max_polls = timeout.as_millis() / 10 + 2;
        let mut status = None;
        for _ in 0..max_polls {
            if let Some(s) = child.try_wait().expect("wait for torch") {
                status = Some(s);
                break;
            }
            if start.elapsed() >= timeout {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let Some(status) = status else {
            kill_child(&mut child, false);
            panic!(
                "`torch {}` did not finish within {timeout:?}; stderr: {}",
                args.join(" "),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        };
        Out {
            code: status.code().unwrap_or(-1),
            stdout: fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        }
    }

    /// Runs a read command with `--json` and parses its stdout (must exit 0).
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        out.assert_code(0, &format!("torch {}", all.join(" ")));
        out.json()
    }
}

/// One HTTP response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response {} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A tiny blocking HTTP/1.1 client for the hub's REST API (`Connection: close`).
#[derive(Clone)]
pub(crate) struct Api {
    addr: String,
    token: Option<String>,
}

impl Api {
    pub(crate) fn new(url: &str, token: Option<&str>) -> Api {
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Api {
            addr,
            token: token.map(str::to_string),
        }
    }

    pub(crate) fn with_token(&self, token: Option<&str>) -> Api {
        Api {
            addr: self.addr.clone(),
            token: token.map(str::to_string),
        }
    }

    /// Sends one request; I/O errors (hub down, reset) are returned.
    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        let sock = self
            .addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other("no address"))?;
        let mut stream = TcpStream::connect_timeout(&sock, secs(5))?;
        stream.set_read_timeout(Some(secs(60)))?;
        stream.set_write_timeout(Some(secs(60)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n",
            self.addr
        );
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        let mut raw = Vec::new();
        std::thread::scope(|s| -> io::Result<()> {
            // Write the body on a second thread: the hub may answer (413) before
            // reading it all, and we must read that answer meanwhile.
            if let Some(b) = body {
                let mut w = stream.try_clone()?;
                s.spawn(move || {
                    let _ = w.write_all(b);
                });
            }
            let mut buf = [0u8; 16 * 1024];
            let deadline = Instant::now() + secs(120);
            for _ in 0..1_000_000 {
                if Instant::now() > deadline {
                    let _ = stream.shutdown(Shutdown::Both);
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "response took over 120 s",
                    ));
                }
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = stream.shutdown(Shutdown::Both);
                        return Err(e);
                    }
                }
                if complete(&raw) {
                    break;
                }
            }
            let _ = stream.shutdown(Shutdown::Both);
            Ok(())
        })?;
        parse_response(&raw)
    }

    /// GET returning JSON; panics unless 2xx.
    pub(crate) fn get(&self, path: &str) -> Value {
        let r = self
            .request("GET", path, None)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(
            (200..300).contains(&r.status),
            "GET {path}: {} {}",
            r.status,
            r.text()
        );
        r.json()
    }

    /// POST a JSON body; returns the response whatever its status.
    pub(crate) fn post(&self, path: &str, body: &Value) -> Response {
        let bytes = serde_json::to_vec(body).expect("serialize body");
        self.request("POST", path, Some(&bytes))
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// `GET /api/v1/tasks/{id}`.
    pub(crate) fn task(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/tasks/{id}"))
    }

    /// Per-state task counts over all tasks.
    pub(crate) fn counts(&self) -> BTreeMap<String, u64> {
        let v = self.get("/api/v1/tasks?limit=1");
        serde_json::from_value(v["counts"].clone()).expect("counts is a map")
    }

    /// Every event (optionally only `streams`, comma-separated), paging through the log.
    pub(crate) fn events(&self, streams: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = 0u64;
        for _ in 0..10_000 {
            let mut path = format!("/api/v1/events?after={after}&limit=5000");
            if !streams.is_empty() {
                path.push_str(&format!("&stream={streams}"));
            }
            let page = self.get(&path);
            let events = page["events"].as_array().expect("events array").clone();
            if events.is_empty() {
                return all;
            }
            let last = page["last_id"].as_u64().expect("last_id");
            assert!(last > after, "event cursor must advance");
            after = last;
            all.extend(events);
        }
        panic!("more than 10,000 event pages");
    }

    /// Events of `kind` about `task`.
    pub(crate) fn task_events(&self, task: &str, kind: &str) -> Vec<Value> {
        self.events("")
            .into_iter()
            .filter(|e| e["kind"] == kind && e["task_id"] == task)
            .collect()
    }

    /// The id of the connected agent named `name`, once it has registered.
    pub(crate) fn agent_id(&self, dir: &TestDir, name: &str) -> String {
        dir.wait_for(&format!("agent {name} to connect"), secs(20), || {
            let v = self.get("/api/v1/agents");
            v["agents"].as_array().and_then(|a| {
                a.iter()
                    .find(|x| {
                        x["name"] == name && x["state"] != "disconnected" && x["state"] != "gone"
                    })
                    .and_then(|x| x["id"].as_str().map(str::to_string))
            })
        })
    }

    /// Waits until task `id` is in `state`; returns its view.
    pub(crate) fn wait_state(
        &self,
        dir: &TestDir,
        id: &str,
        state: &str,
        timeout: Duration,
    ) -> Value {
        dir.wait_for(&format!("task {id} to be {state}"), timeout, || {
            let v = self.task(id);
            let now = v["state"].as_str().unwrap_or_default();
            let terminal = matches!(now, "succeeded" | "dead" | "cancelled");
            assert!(
                now == state || !terminal,
                "task {id} ended {now} while waiting for {state}: {v:#}{}",
                dir.log_tails()
            );
            (now == state).then_some(v)
        })
    }

    /// Submits one batch of specs; panics unless 201. Returns the ids in order.
    pub(crate) fn submit(&self, tasks: Vec<Value>) -> Vec<String> {
        let r = self.post("/api/v1/tasks", &json!({ "tasks": tasks }));
        assert_eq!(r.status, 201, "submit: {}", r.text());
        r.json()["tasks"]
            .as_array()
            .expect("tasks array")
            .iter()
            .map(|t| t["id"].as_str().expect("id").to_string())
            .collect()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())
            .flatten()
    })
}

/// True once `raw` holds a whole response with a Content-Length.
fn complete(raw: &[u8]) -> bool {
    let Some(end) = find(raw, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    match content_length(&head) {
        Some(n) => raw.len() >= end + 4 + n,
        None => false,
    }
}

fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("incomplete HTTP response ({} bytes)", raw.len()),
        )
    })?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        match content_length(&head) {
            Some(n) if rest.len() >= n => rest[..n].to_vec(),
            Some(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body has {} of {n} bytes", rest.len()),
                ));
            }
            None => rest.to_vec(),
        }
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..1_000_000 {
        let line_end = find(data, b"\r\n").ok_or_else(|| io::Error::other("bad chunk"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| io::Error::other(format!("bad chunk size: {e}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
    Err(io::Error::other("too many chunks"))
}

/// A small seeded PRNG (splitmix64), so generated workloads are reproducible.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A TOML/JSON string literal.
pub(crate) fn q(s: &str) -> String {
    serde_json::to_string(s).expect("serialize a string")
}

/// Fast retries for tests: 100 ms initial backoff.
pub(crate) fn fast_backoff() -> Value {
    json!({"initial": "100ms", "max": "1s", "multiplier": 2.0})
}
