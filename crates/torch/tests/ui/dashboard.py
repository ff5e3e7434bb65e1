"""Drives the hub's dashboard in a real headless Chromium (Playwright).

Run by the `dashboard` end-to-end test with a live hub: logs in with the
token from $TORCH_UI_TOKEN (never in a URL), writes --ready-file once the
fleet page is live, waits for the agent the test then starts to appear,
submits a task from the page, watches it reach `succeeded` without a reload,
opens its page and saves a screenshot. Exits non-zero with a message on any
failure.
"""

import argparse
import os
import sys

from playwright.sync_api import expect, sync_playwright


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--chromium", required=True)
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--agent", required=True)
    ap.add_argument("--screenshot", required=True)
    args = ap.parse_args()
    token = os.environ["TORCH_UI_TOKEN"]
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=args.chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on(
            "console",
            lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
        )
        page.goto(args.url)
        # A wrong token is refused with a message, and the page stays on the login.
        page.fill("#token", "torch_wrong")
        page.click("#login-button")
        expect(page.locator("#login-error")).to_contain_text("refused", timeout=10_000)
        errors.clear()  # the 401 of that attempt is logged by the browser
        page.fill("#token", token)
        page.click("#login-button")
        expect(page.locator("#nav")).to_be_visible(timeout=10_000)
        expect(page.locator("#live")).to_have_text("● live", timeout=10_000)
        page.evaluate("window.__torchNoReload = 1")
        expect(page.locator("#fleet-summary")).to_contain_text("0 agent(s) connected", timeout=10_000)
        with open(args.ready_file, "w") as f:
            f.write("ready\n")
        # The agent started now appears without a reload.
        expect(page.locator(f'#agents tr[data-agent="{args.agent}"]')).to_be_visible(timeout=30_000)
        expect(page.locator("#fleet-summary")).to_contain_text("1 agent(s) connected", timeout=10_000)

        page.click("#nav-tasks")
        page.fill("#s-name", "from-the-page")
        page.fill("#s-command", "echo hello from the dashboard; sleep 1")
        page.click("#s-submit")
        state = page.locator('#tasks tr[data-name="from-the-page"] .state')
        expect(state).to_have_text("succeeded", timeout=30_000)

        page.click('#tasks tr[data-name="from-the-page"] a')
        expect(page.locator("#task-title")).to_have_text("Task from-the-page", timeout=10_000)
        expect(page.locator("#logs")).to_contain_text("hello from the dashboard", timeout=10_000)
        expect(page.locator("#explanation tbody tr")).to_have_count(1, timeout=10_000)
        page.screenshot(path=args.screenshot.replace(".png", "-task.png"), full_page=True)
        page.click("#nav-stats")
        expect(page.locator("#autonomy")).to_contain_text("Tasks without intervention", timeout=10_000)

        # Collaboration: a lock held by the admin, a second operator queued
        # behind it (an edge in the wait-for graph), a help request.
        page.evaluate(
            """async (token) => {
              const h = { Authorization: `Bearer ${token}`, "Content-Type": "application/json" };
              const post = (path, body, auth) => fetch(path, { method: "POST", headers: auth || h, body: JSON.stringify(body) });
              let r = await post("/api/v1/locks", { name: "ui-lock", ttl_ms: 60000 });
              if (!r.ok) throw new Error(`lock: ${r.status}`);
              r = await post("/api/v1/tokens", { role: "submitter", name: "ui-second" });
              const second = (await r.json()).token;
              const h2 = { Authorization: `Bearer ${second}`, "Content-Type": "application/json" };
              post("/api/v1/locks", { name: "ui-lock", wait_ms: 30000 }, h2);  // waits; not awaited
              r = await post("/api/v1/help", { skill: "sh", text: "ui help wanted", timeout_ms: 60000 });
              if (!r.ok) throw new Error(`help: ${r.status}`);
            }""",
            token,
        )
        page.click("#nav-collab")
        expect(page.locator("#locks")).to_contain_text("ui-lock", timeout=10_000)
        expect(page.locator("#help")).to_contain_text("ui help wanted", timeout=10_000)
        expect(page.locator("#waits-graph svg line.edge")).to_have_count(1, timeout=10_000)
        expect(page.locator("#waits-graph")).to_contain_text("ui-lock", timeout=10_000)
        page.screenshot(path=args.screenshot.replace(".png", "-collab.png"), full_page=True)
        page.click("#nav-alerts")
        expect(page.locator("#alerts-summary")).to_contain_text("rules evaluated", timeout=10_000)
        page.click("#nav-capacity")
        expect(page.locator("#capacity-summary")).to_contain_text("Headroom", timeout=10_000)
        page.click("#nav-tasks")
        expect(page.locator('#tasks tr[data-name="from-the-page"] .state')).to_have_text("succeeded", timeout=10_000)

        if page.evaluate("window.__torchNoReload") != 1:
            print("the page reloaded", file=sys.stderr)
            return 1
        if token in page.url:
            print("the token is in the URL", file=sys.stderr)
            return 1
        page.screenshot(path=args.screenshot, full_page=True)
        browser.close()
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    print("dashboard ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
