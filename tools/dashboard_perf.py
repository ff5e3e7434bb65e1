"""Measures the dashboard's performance floor against a live hub (issue 16):
first paint, time to a usable page, and the delay before an event is on
screen, with many tasks in the store; and the hub's CPU while the dashboard
sits open and idle.

    python tools/dashboard_perf.py --url http://127.0.0.1:7700 --hub-pid PID \
        --chromium /usr/bin/chromium --fill 100000

The token comes from $TORCH_UI_TOKEN (an admin or submitter token). `--fill`
first submits that many tasks needing a skill no agent has (they stay
queued, in batches of 1,000). Prints one JSON object. It measures; it asserts
nothing (figures go in docs/benchmarks.md, not in timed tests).
"""

import argparse
import json
import os
import sys
import time
import urllib.request

from playwright.sync_api import sync_playwright


def api(url, token, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"null")


def fill(url, token, n):
    batch = 1000
    for start in range(0, n, batch):
        tasks = [
            {"name": f"perf-{start + i}", "command": ["true"], "skills": ["nobody-has-this"]}
            for i in range(min(batch, n - start))
        ]
        api(url, token, "POST", "/api/v1/tasks", {"tasks": tasks})


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--chromium", required=True)
    ap.add_argument("--hub-pid", type=int, required=True)
    ap.add_argument("--fill", type=int, default=0)
    ap.add_argument("--events", type=int, default=10)
    ap.add_argument("--idle-secs", type=int, default=30)
    args = ap.parse_args()
    token = os.environ["TORCH_UI_TOKEN"]
    out = {}
    if args.fill:
        t = time.monotonic()
        fill(args.url, token, args.fill)
        out["fill_s"] = round(time.monotonic() - t, 1)
    counts = api(args.url, token, "GET", "/api/v1/tasks?limit=1")["counts"]
    out["tasks_in_store"] = sum(counts.values())
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        t0 = time.monotonic()
        page.goto(args.url)
        page.wait_for_selector("#token")
        paint = page.evaluate(
            "() => Object.fromEntries(performance.getEntriesByType('paint')"
            ".map(e => [e.name, e.startTime]))"
        )
        out["first_paint_ms"] = round(paint.get("first-paint", -1), 1)
        out["first_contentful_paint_ms"] = round(paint.get("first-contentful-paint", -1), 1)
        out["login_page_ms"] = round((time.monotonic() - t0) * 1000, 1)
        t = time.monotonic()
        page.fill("#token", token)
        page.click("#login-button")
        page.wait_for_selector("#nav", state="visible")
        page.wait_for_selector("#live:text('● live')")
        out["login_to_live_ms"] = round((time.monotonic() - t) * 1000, 1)
        t = time.monotonic()
        page.click("#nav-tasks")
        page.wait_for_selector("#tasks tr[data-name]")
        out["tasks_page_ms"] = round((time.monotonic() - t) * 1000, 1)
        # An event on screen: a task submitted now appears in the list.
        lat = []
        for i in range(args.events):
            name = f"perf-live-{time.time_ns()}-{i}"
            t = time.monotonic()
            api(args.url, token, "POST", "/api/v1/tasks",
                {"tasks": [{"name": name, "command": ["true"], "skills": ["nobody-has-this"]}]})
            page.wait_for_selector(f'#tasks tr[data-name="{name}"]', timeout=30_000)
            lat.append((time.monotonic() - t) * 1000)
        lat.sort()
        out["event_on_screen_ms"] = {
            "p50": round(lat[len(lat) // 2], 1),
            "max": round(lat[-1], 1),
            "n": len(lat),
        }
        # Idle: the page open on the fleet view, nothing happening.
        page.click("#nav-fleet")
        time.sleep(2)
        hz = os.sysconf("SC_CLK_TCK")
        c0, w0 = cpu_ticks(args.hub_pid), time.monotonic()
        time.sleep(args.idle_secs)
        c1, w1 = cpu_ticks(args.hub_pid), time.monotonic()
        out["hub_idle_cpu_pct"] = round((c1 - c0) / hz / (w1 - w0) * 100, 2)
        out["idle_secs"] = args.idle_secs
        browser.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
