//! Sampling `/proc`: machine CPU and memory, and CPU and RSS of each agent
//! process together with all its descendants (its tasks run as child
//! processes, so the agent alone would hide what it costs).
//!
//! Reading is one pass over `/proc/stat`, `/proc/meminfo` and every
//! `/proc/<pid>/stat` ([`read_snapshot`], blocking); everything else is pure
//! functions over the text, tested on samples below.

use std::collections::HashMap;
use std::time::Instant;

use nix::unistd::{SysconfVar, sysconf};

/// Clock ticks per second when `sysconf(_SC_CLK_TCK)` is unavailable.
const FALLBACK_CLK_TCK: u64 = 100;
/// Page size when `sysconf(_SC_PAGE_SIZE)` is unavailable.
const FALLBACK_PAGE_SIZE: u64 = 4096;

/// The fields of `/proc/<pid>/stat` the node uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Process id.
    pub(crate) pid: u32,
    /// Parent process id.
    pub(crate) ppid: u32,
    /// `utime + stime + cutime + cstime` in clock ticks: the process's own CPU
    /// plus that of children it has reaped, so a task that ended between two
    /// samples still counts (its supervisor or agent reaped it).
    pub(crate) cpu_ticks: u64,
    /// Resident set size in pages.
    pub(crate) rss_pages: u64,
}

/// Machine-wide CPU counters from the `cpu` line of `/proc/stat`, in ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    /// Every state (user, nice, system, idle, iowait, irq, softirq, steal).
    pub(crate) total: u64,
    /// Idle plus iowait.
    pub(crate) idle: u64,
}

/// What one pass over `/proc` read.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// When it was read.
    pub(crate) at: Instant,
    /// Machine CPU counters, if `/proc/stat` was readable.
    pub(crate) cpu: Option<CpuTimes>,
    /// Logical CPUs.
    pub(crate) cpus: u32,
    /// `MemTotal` and `MemAvailable` in bytes, if `/proc/meminfo` was readable.
    pub(crate) mem: Option<(u64, u64)>,
    /// Every process readable now.
    pub(crate) procs: Vec<ProcStat>,
}

/// Parses one `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so the fixed
/// fields are read after the LAST `)`.
pub(crate) fn parse_pid_stat(text: &str) -> Option<ProcStat> {
    let (head, tail) = text.rsplit_once(')')?;
    let pid = head.split_once('(')?.0.trim().parse().ok()?;
    // Fields from 3 (state) on; field N is at index N - 3.
    let f: Vec<&str> = tail.split_ascii_whitespace().collect();
    let num = |field: usize| -> Option<u64> { f.get(field - 3)?.parse().ok() };
    let ppid = u32::try_from(num(4)?).ok()?;
    let cpu_ticks = [14, 15, 16, 17]
        .iter()
        .try_fold(0u64, |acc, &n| Some(acc.saturating_add(num(n)?)))?;
    // rss is a signed long; a negative value would be a kernel oddity.
    let rss_pages = u64::try_from(f.get(24 - 3)?.parse::<i64>().ok()?).unwrap_or(0);
    Some(ProcStat {
        pid,
        ppid,
        cpu_ticks,
        rss_pages,
    })
}

/// Parses `/proc/stat`: the aggregate `cpu` line and the number of `cpuN` lines.
pub(crate) fn parse_cpu_stat(text: &str) -> Option<(CpuTimes, u32)> {
    let mut times = None;
    let mut cpus = 0u32;
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        match words.next() {
            Some("cpu") => {
                // user nice system idle iowait irq softirq steal [guest guest_nice]:
                // guest time is already counted in user/nice.
                let v: Vec<u64> = words.take(8).filter_map(|w| w.parse().ok()).collect();
                if v.len() < 4 {
                    return None;
                }
                times = Some(CpuTimes {
                    total: v.iter().sum(),
                    idle: v[3] + v.get(4).copied().unwrap_or(0),
                });
            }
            Some(w) if w.starts_with("cpu") && w[3..].bytes().all(|b| b.is_ascii_digit()) => {
                cpus += 1;
            }
            _ => {}
        }
    }
    times.map(|t| (t, cpus))
}

/// Parses `/proc/meminfo` into `(MemTotal, MemAvailable)` in bytes.
pub(crate) fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let mut total = None;
    let mut available = None;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            _ => continue,
        };
        let mut words = rest.split_ascii_whitespace();
        let value: u64 = words.next()?.parse().ok()?;
        let unit = match words.next() {
            Some("kB") => 1024,
            None => 1,
            Some(_) => return None,
        };
        *slot = Some(value.saturating_mul(unit));
    }
    Some((total?, available?))
}

/// For each of `roots`, the summed CPU ticks and RSS pages of the root and
/// every process below it in the parent tree. A root missing from `procs`
/// gets nothing.
pub(crate) fn subtree_totals(procs: &[ProcStat], roots: &[u32]) -> HashMap<u32, (u64, u64)> {
    let by_pid: HashMap<u32, &ProcStat> = procs.iter().map(|p| (p.pid, p)).collect();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in procs {
        if p.ppid != p.pid {
            children.entry(p.ppid).or_default().push(p.pid);
        }
    }
    let mut out = HashMap::with_capacity(roots.len());
    for &root in roots {
        if !by_pid.contains_key(&root) {
            continue;
        }
        let (mut ticks, mut pages) = (0u64, 0u64);
        let mut stack = vec![root];
        // The parent map of a consistent snapshot is a tree; the visit cap
        // guards against a loop read from processes that changed mid-scan.
        let mut budget = procs.len();
        while let Some(pid) = stack.pop() {
            if budget == 0 {
                break;
            }
            budget -= 1;
            if let Some(p) = by_pid.get(&pid) {
                ticks = ticks.saturating_add(p.cpu_ticks);
                pages = pages.saturating_add(p.rss_pages);
            }
            if let Some(kids) = children.get(&pid) {
                stack.extend(kids);
            }
        }
        out.insert(root, (ticks, pages));
    }
    out
}

/// Machine resources from one sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Machine {
    /// Logical CPUs.
    pub(crate) cpus: u32,
    /// CPU use since the previous sample, 0.0..=1.0 (0 on the first).
    pub(crate) cpu_used: f64,
    /// Total memory in bytes.
    pub(crate) mem_total_bytes: u64,
    /// `1 - MemAvailable / MemTotal`, 0.0..=1.0.
    pub(crate) mem_used: f64,
}

/// One agent's subtree from one sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Usage {
    /// Cores busy on average since the previous sample (0 on its first).
    pub(crate) cpu: f64,
    /// Summed resident set size in bytes.
    pub(crate) rss_bytes: u64,
}

/// Turns successive snapshots into rates; remembers the previous counters.
#[derive(Debug)]
pub(crate) struct Sampler {
    clk_tck: u64,
    page_size: u64,
    prev: Option<(Instant, Option<CpuTimes>)>,
    /// Subtree CPU ticks per agent pid at the previous sample.
    prev_ticks: HashMap<u32, u64>,
}

impl Sampler {
    /// A sampler with the given tick rate and page size.
    pub(crate) fn new(clk_tck: u64, page_size: u64) -> Self {
        Sampler {
            clk_tck: clk_tck.max(1),
            page_size,
            prev: None,
            prev_ticks: HashMap::new(),
        }
    }

    /// The machine and each of `roots` (agent pids) in `snap`, with CPU rates
    /// over the time since the previous call. Pids not in `roots` are
    /// forgotten.
    pub(crate) fn sample(
        &mut self,
        snap: &Snapshot,
        roots: &[u32],
    ) -> (Machine, HashMap<u32, Usage>) {
        let totals = subtree_totals(&snap.procs, roots);
        let (prev_at, prev_cpu) = match self.prev {
            Some((at, cpu)) => (Some(at), cpu),
            None => (None, None),
        };
        let secs = prev_at
            .map(|at| snap.at.saturating_duration_since(at).as_secs_f64())
            .filter(|s| *s > 0.0);
        let cpu_used = match (prev_cpu, snap.cpu) {
            (Some(a), Some(b)) if b.total > a.total => {
                let busy = (b.total - a.total).saturating_sub(b.idle.saturating_sub(a.idle));
                (busy as f64 / (b.total - a.total) as f64).clamp(0.0, 1.0)
            }
            _ => 0.0,
        };
        let (mem_total_bytes, mem_used) = match snap.mem {
            Some((total, avail)) if total > 0 => {
                (total, (1.0 - avail as f64 / total as f64).clamp(0.0, 1.0))
            }
            _ => (0, 0.0),
        };
        let mut usage = HashMap::with_capacity(totals.len());
        let mut ticks_now = HashMap::with_capacity(totals.len());
        for (&pid, &(ticks, pages)) in &totals {
            // A reaped child's time moves into its parent's cutime, so the
            // subtree total only drops when a process was orphaned away.
            let cpu = match (self.prev_ticks.get(&pid), secs) {
                (Some(&before), Some(secs)) => {
                    ticks.saturating_sub(before) as f64 / self.clk_tck as f64 / secs
                }
                _ => 0.0,
            };
            usage.insert(
                pid,
                Usage {
                    cpu,
                    rss_bytes: pages.saturating_mul(self.page_size),
                },
            );
            ticks_now.insert(pid, ticks);
        }
        self.prev = Some((snap.at, snap.cpu));
        self.prev_ticks = ticks_now;
        let machine = Machine {
            cpus: snap.cpus,
            cpu_used,
            mem_total_bytes,
            mem_used,
        };
        (machine, usage)
    }
}

/// Kernel clock ticks per second (for `utime`/`stime`).
pub(crate) fn clock_ticks() -> u64 {
    positive_sysconf(SysconfVar::CLK_TCK).unwrap_or(FALLBACK_CLK_TCK)
}

/// Memory page size in bytes (for `rss`).
pub(crate) fn page_size() -> u64 {
    positive_sysconf(SysconfVar::PAGE_SIZE).unwrap_or(FALLBACK_PAGE_SIZE)
}

fn positive_sysconf(var: SysconfVar) -> Option<u64> {
    match sysconf(var) {
        Ok(Some(v)) if v > 0 => u64::try_from(v).ok(),
        _ => None,
    }
}

/// Reads `/proc` once (blocking: call from `spawn_blocking`). Processes that
/// vanish mid-scan are skipped; unreadable machine files leave `None`.
pub(crate) fn read_snapshot() -> Snapshot {
    let stat = std::fs::read_to_string("/proc/stat").ok();
    let (cpu, cpus) = match stat.as_deref().and_then(parse_cpu_stat) {
        Some((t, n)) => (Some(t), n),
        None => (None, 0),
    };
    let cpus = if cpus > 0 {
        cpus
    } else {
        std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(1)
    };
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .as_deref()
        .and_then(parse_meminfo);
    let mut procs = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(entry.path().join("stat"))
                && let Some(p) = parse_pid_stat(&text)
            {
                procs.push(p);
            }
        }
    }
    Snapshot {
        at: Instant::now(),
        cpu,
        cpus,
        mem,
        procs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_stat_lines_with_awkward_names() {
        // Fields: pid (comm) state ppid pgrp session tty tpgid flags minflt
        // cminflt majflt cmajflt utime stime cutime cstime prio nice threads
        // itreal starttime vsize rss ...
        let plain = "4242 (sleep) S 4000 4242 4000 0 -1 4194304 90 0 0 0 \
                     7 3 2 1 20 0 1 0 123456 5718016 220 18446744073709551615 0 0 0";
        assert_eq!(
            parse_pid_stat(plain),
            Some(ProcStat {
                pid: 4242,
                ppid: 4000,
                cpu_ticks: 13,
                rss_pages: 220
            })
        );
        // A name with spaces and parentheses: only the last ')' ends it.
        let odd = "77 (my (weird) proc) name)) R 1 77 77 0 -1 0 0 0 0 0 \
                   100 50 0 0 20 0 4 0 999 0 1000 0";
        let p = parse_pid_stat(odd).unwrap();
        assert_eq!(
            (p.pid, p.ppid, p.cpu_ticks, p.rss_pages),
            (77, 1, 150, 1000)
        );
        // A zombie has rss 0; a truncated or garbled line is rejected.
        let zombie = "9 (x) Z 1 9 9 0 -1 0 0 0 0 0 5 5 0 0 20 0 1 0 1 0 0 0";
        assert_eq!(parse_pid_stat(zombie).unwrap().rss_pages, 0);
        assert_eq!(parse_pid_stat("12 (short) S 1 2 3"), None);
        assert_eq!(parse_pid_stat("no parens at all"), None);
        assert_eq!(parse_pid_stat("x (y) S z 1 1"), None);
    }

    #[test]
    fn machine_cpu_and_memory() {
        let stat = "cpu  100 5 50 800 40 1 2 2 9 0\n\
                    cpu0 50 2 25 400 20 0 1 1 0 0\n\
                    cpu1 50 3 25 400 20 1 1 1 0 0\n\
                    intr 1 2 3\nctxt 99\nbtime 1700000000\n\
                    cpuidle-not-a-cpu 1\n";
        let (t, n) = parse_cpu_stat(stat).unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            t.total,
            100 + 5 + 50 + 800 + 40 + 1 + 2 + 2,
            "guest not added"
        );
        assert_eq!(t.idle, 840);
        assert_eq!(parse_cpu_stat("intr 1\n"), None);

        let meminfo = "MemTotal:       16302400 kB\n\
                       MemFree:         1000000 kB\n\
                       MemAvailable:    8151200 kB\n\
                       Buffers:          100000 kB\n";
        assert_eq!(
            parse_meminfo(meminfo),
            Some((16_302_400 * 1024, 8_151_200 * 1024))
        );
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None, "no MemAvailable");
        assert_eq!(parse_meminfo("MemTotal: x kB\nMemAvailable: 1 kB\n"), None);
    }

    #[test]
    fn subtrees_sum_descendants_only() {
        let p = |pid, ppid, cpu_ticks, rss_pages| ProcStat {
            pid,
            ppid,
            cpu_ticks,
            rss_pages,
        };
        // 1 ─┬─ 10 (agent) ─┬─ 11 (supervisor) ── 12 (task) ── 13
        //    │              └─ 14
        //    ├─ 20 (agent, no children)
        //    └─ 30 (someone else) ── 31
        let procs = [
            p(1, 0, 1000, 1000),
            p(10, 1, 10, 100),
            p(11, 10, 1, 10),
            p(12, 11, 20, 200),
            p(13, 12, 5, 50),
            p(14, 10, 2, 20),
            p(20, 1, 3, 30),
            p(30, 1, 7, 70),
            p(31, 30, 7, 70),
        ];
        let t = subtree_totals(&procs, &[10, 20, 99]);
        assert_eq!(t[&10], (38, 380));
        assert_eq!(t[&20], (3, 30));
        assert!(!t.contains_key(&99), "a vanished agent gets no sample");
        // A parent loop (possible in a torn scan) terminates.
        let looped = [p(5, 6, 1, 1), p(6, 5, 1, 1)];
        assert_eq!(subtree_totals(&looped, &[5])[&5], (2, 2));

        assert!(clock_ticks() > 0);
        assert!(page_size() >= 1024);
        let snap = read_snapshot();
        assert!(snap.cpus >= 1);
        let me = std::process::id();
        assert!(snap.procs.iter().any(|p| p.pid == me && p.rss_pages > 0));
    }

    #[test]
    fn sampler_turns_counters_into_rates() {
        let t0 = Instant::now();
        let snap = |secs: u64, total, idle, agent_ticks, child_ticks| Snapshot {
            at: t0 + std::time::Duration::from_secs(secs),
            cpu: Some(CpuTimes { total, idle }),
            cpus: 4,
            mem: Some((1000, 250)),
            procs: vec![
                ProcStat {
                    pid: 10,
                    ppid: 1,
                    cpu_ticks: agent_ticks,
                    rss_pages: 2,
                },
                ProcStat {
                    pid: 11,
                    ppid: 10,
                    cpu_ticks: child_ticks,
                    rss_pages: 3,
                },
            ],
        };
        let mut s = Sampler::new(100, 4096);
        let (m, u) = s.sample(&snap(0, 1000, 800, 10, 0), &[10]);
        assert_eq!(m.cpus, 4);
        assert_eq!(m.cpu_used, 0.0, "no rate on the first sample");
        assert_eq!(m.mem_total_bytes, 1000);
        assert!((m.mem_used - 0.75).abs() < 1e-9);
        assert_eq!(
            u[&10],
            Usage {
                cpu: 0.0,
                rss_bytes: 5 * 4096
            }
        );
        // 2 s later: 800 ticks passed, 200 of them idle; the subtree used
        // 300 ticks = 3 s of CPU over 2 s = 1.5 cores.
        let (m, u) = s.sample(&snap(2, 1800, 1000, 60, 250), &[10]);
        assert!((m.cpu_used - 0.75).abs() < 1e-9, "{m:?}");
        assert!((u[&10].cpu - 1.5).abs() < 1e-9, "{:?}", u[&10]);
        // The child vanished without being reaped by the subtree: no negative rate.
        let gone = Snapshot {
            procs: vec![ProcStat {
                pid: 10,
                ppid: 1,
                cpu_ticks: 60,
                rss_pages: 2,
            }],
            ..snap(3, 1900, 1100, 0, 0)
        };
        let (_, u) = s.sample(&gone, &[10]);
        assert_eq!(u[&10].cpu, 0.0);
        assert_eq!(u[&10].rss_bytes, 2 * 4096);
        // Unreadable machine files give zeros, not garbage.
        let blind = Snapshot {
            cpu: None,
            mem: None,
            ..snap(4, 0, 0, 60, 0)
        };
        let (m, _) = s.sample(&blind, &[]);
        assert_eq!((m.cpu_used, m.mem_total_bytes, m.mem_used), (0.0, 0, 0.0));
    }
}
