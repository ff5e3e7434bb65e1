// Nova Torch dashboard: one page, no dependencies. Reads the REST API with the
// token kept in sessionStorage and follows GET /api/v1/events/stream (read with
// fetch, so the token travels in a header, never in a URL), resuming from the
// last event id after a reconnect.
"use strict";

const KEY = "torch.token";
const PAGE = 50;
const $ = (id) => document.getElementById(id);

const state = {
  token: sessionStorage.getItem(KEY) || "",
  lastEventId: null,
  streamAbort: null,
  view: "",
  taskId: null,
  before: null, // paging cursor of the tasks list (seq), null = newest
  pages: [],
  refreshTimer: null,
  timeline: [],
};

// ---- helpers --------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function ago(ms) {
  if (!ms) return "-";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return `${s.toFixed(0)}s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)}m ago`;
  return `${(s / 3600).toFixed(1)}h ago`;
}

function bytes(n) {
  if (n === null || n === undefined) return "-";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function pct(x) {
  return x === null || x === undefined ? "-" : `${(x * 100).toFixed(0)}%`;
}

async function api(path, opts = {}) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method: opts.method || "GET",
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!r.ok) {
    const msg = json && json.error ? `${json.error.code || r.status}: ${json.error.message || text}` : `${r.status} ${text}`;
    const err = new Error(msg);
    err.status = r.status;
    throw err;
  }
  return json;
}

// ---- login ----------------------------------------------------------------

async function login(token) {
  state.token = token;
  await api("/api/v1/stats"); // throws on a wrong token
  sessionStorage.setItem(KEY, token);
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  follow();
  route();
}

function logout() {
  sessionStorage.removeItem(KEY);
  state.token = "";
  if (state.streamAbort) state.streamAbort.abort();
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  setLive(false);
}

// ---- live events ----------------------------------------------------------

function setLive(on) {
  const l = $("live");
  l.className = on ? "live on" : "live off";
  l.textContent = on ? "● live" : "● offline";
}

async function follow() {
  if (state.streamAbort) state.streamAbort.abort();
  const ctrl = new AbortController();
  state.streamAbort = ctrl;
  let delay = 500;
  while (!ctrl.signal.aborted && state.token) {
    try {
      const headers = { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" };
      if (state.lastEventId !== null) headers["Last-Event-ID"] = String(state.lastEventId);
      const r = await fetch("/api/v1/events/stream", { headers, signal: ctrl.signal });
      if (r.status === 401) { logout(); return; }
      if (!r.ok || !r.body) throw new Error(`stream ${r.status}`);
      setLive(true);
      delay = 500;
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          handleFrame(frame);
        }
      }
    } catch (e) {
      if (ctrl.signal.aborted) return;
    }
    setLive(false);
    await new Promise((res) => setTimeout(res, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

function handleFrame(frame) {
  let id = null;
  const data = [];
  for (const line of frame.split("\n")) {
    if (line.startsWith("id:")) id = line.slice(3).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (id !== null) state.lastEventId = Number(id);
  if (!data.length) return;
  let ev;
  try { ev = JSON.parse(data.join("\n")); } catch (_) { return; }
  onEvent(ev);
}

function onEvent(ev) {
  if (state.view === "tasks" && ev.task_id) patchTaskRow(ev);
  if (state.view === "task" && ev.task_id === state.taskId) {
    state.timeline.push(ev);
    renderTimeline();
  }
  scheduleRefresh();
}

function scheduleRefresh() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => {
    state.refreshTimer = null;
    refresh().catch(() => {});
  }, 250);
}

const STATE_OF_KIND = {
  "task.submitted": "queued", "task.ready": "queued", "task.retried": "queued",
  "task.assigned": "assigned", "task.started": "running", "task.progress": "running",
  "task.succeeded": "succeeded", "task.dead": "dead", "task.cancelled": "cancelled",
  "task.failed": "queued", "task.lease_expired": "queued",
};

function patchTaskRow(ev) {
  const row = document.querySelector(`#tasks tr[data-id="${CSS.escape(ev.task_id)}"]`);
  if (!row) return;
  const s = STATE_OF_KIND[ev.kind];
  if (s) {
    const cell = row.querySelector(".state");
    cell.textContent = s;
    cell.className = `state s-${s}`;
  }
  if (ev.kind === "task.progress" && ev.data && typeof ev.data.percent === "number") {
    row.querySelector(".prog").textContent = `${ev.data.percent.toFixed(0)}%`;
  }
}

// ---- views ----------------------------------------------------------------

function route() {
  const h = location.hash || "#/fleet";
  const [, view, arg] = h.split("/");
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  for (const a of document.querySelectorAll("nav a")) a.classList.remove("active");
  state.view = view === "task" ? "task" : ["fleet", "tasks", "stats", "collab", "alerts", "capacity"].includes(view) ? view : "fleet";
  if (state.view === "task") {
    state.taskId = arg;
    state.timeline = [];
  }
  $(`view-${state.view}`).hidden = false;
  const nav = $(`nav-${state.view === "task" ? "tasks" : state.view}`);
  if (nav) nav.classList.add("active");
  refresh().catch(showError);
}

function showError(e) {
  const target = $(`view-${state.view}`);
  if (!target) return;
  let p = target.querySelector(".error");
  if (!p) { p = el("p", { class: "error" }); target.prepend(p); }
  p.textContent = String(e.message || e);
}

async function refresh() {
  if (!state.token) return;
  if (state.view === "fleet") return renderFleet();
  if (state.view === "tasks") return renderTasks();
  if (state.view === "task") return renderTask();
  if (state.view === "stats") return renderStats();
  if (state.view === "collab") return renderCollab();
  if (state.view === "alerts") return renderAlerts();
  if (state.view === "capacity") return renderCapacity();
}

async function renderFleet() {
  const [agents, nodes] = await Promise.all([api("/api/v1/agents"), api("/api/v1/nodes").catch(() => ({ nodes: [] }))]);
  const tb = $("agents").tBodies[0];
  tb.replaceChildren();
  let slots = 0, used = 0;
  for (const a of agents.agents) {
    const m = a.managed || {};
    slots += a.slots; used += a.running;
    tb.append(el("tr", { "data-agent": a.name },
      el("td", {}, a.name),
      el("td", { class: `state a-${a.state}` }, a.state),
      el("td", {}, a.skills.map((s) => (s.level < 1 ? `${s.name}:${s.level}` : s.name)).join(", ")),
      el("td", {}, `${a.running} / ${a.slots - a.running}`),
      el("td", {}, m.template || "-"),
      el("td", {}, m.cpu === undefined || m.cpu === null ? "-" : `${(m.cpu * 100).toFixed(0)}%`),
      el("td", {}, bytes(m.rss_bytes)),
      el("td", {}, a.completed),
      el("td", {}, ago(a.last_seen_ms))));
  }
  const live = agents.agents.filter((a) => a.state !== "disconnected").length;
  $("fleet-summary").textContent = `${live} agent(s) connected, ${agents.agents.length} known; slots ${used} used, ${slots - used} free`;
  const nb = $("nodes").tBodies[0];
  nb.replaceChildren();
  for (const n of nodes.nodes) {
    nb.append(el("tr", {},
      el("td", {}, n.name), el("td", {}, n.connected ? "yes" : "no"),
      el("td", {}, `${n.agents} / ${n.max_agents}`), el("td", {}, pct(n.cpu_used)), el("td", {}, pct(n.mem_used))));
  }
}

function taskQuery() {
  const q = new URLSearchParams({ limit: String(PAGE) });
  const s = $("f-state").value;
  if (s) q.set("state", s);
  const l = $("f-label").value.trim();
  if (l) q.set("label", l);
  if (state.before !== null) q.set("before", String(state.before));
  return q;
}

async function renderTasks() {
  const list = await api(`/api/v1/tasks?${taskQuery()}`);
  const skill = $("f-skill").value.trim();
  const text = $("f-text").value.trim().toLowerCase();
  const tb = $("tasks").tBodies[0];
  const checked = new Set([...tb.querySelectorAll("input:checked")].map((i) => i.value));
  tb.replaceChildren();
  for (const t of list.tasks) {
    const skills = (t.spec.skills || []).map((s) => (typeof s === "string" ? s : s.name));
    if (skill && !skills.some((s) => s.startsWith(skill))) continue;
    if (text && !t.name.toLowerCase().includes(text)) continue;
    const box = el("input", { type: "checkbox", value: t.id });
    box.checked = checked.has(t.id);
    tb.append(el("tr", { "data-id": t.id, "data-name": t.name },
      el("td", {}, box),
      el("td", {}, el("a", { href: `#/task/${t.id}` }, t.name)),
      el("td", { class: `state s-${t.state}` }, t.state),
      el("td", {}, t.priority),
      el("td", {}, skills.join(", ")),
      el("td", { class: "prog" }, t.progress ? `${t.progress.percent.toFixed(0)}%` : "-"),
      el("td", {}, t.attempt),
      el("td", {}, ago(t.updated_ms))));
  }
  state.pages.last = list.tasks.length ? list.tasks[list.tasks.length - 1].seq : null;
  $("older").disabled = list.tasks.length < PAGE;
  $("newer").disabled = state.before === null;
  $("task-counts").textContent = Object.entries(list.counts).map(([k, v]) => `${k} ${v}`).join(" · ");
}

async function bulk(action) {
  const ids = [...document.querySelectorAll("#tasks tbody input:checked")].map((i) => i.value);
  let ok = 0;
  const errors = [];
  for (const id of ids) {
    try {
      await api(`/api/v1/tasks/${id}/${action}`, { method: "POST", body: {} });
      ok++;
    } catch (e) { errors.push(e.message); }
  }
  $("bulk-result").textContent = `${action}: ${ok} of ${ids.length} done${errors.length ? ` — ${errors[0]}` : ""}`;
  scheduleRefresh();
}

async function submitTask(ev) {
  ev.preventDefault();
  const skills = $("s-skills").value.split(",").map((s) => s.trim()).filter(Boolean);
  const spec = { name: $("s-name").value.trim(), command: ["sh", "-c", $("s-command").value], skills };
  try {
    const r = await api("/api/v1/tasks", { method: "POST", body: { tasks: [spec], source: "dashboard" } });
    $("submit-result").textContent = `submitted ${r.tasks.map((t) => t.id).join(", ")}`;
    state.before = null;
    scheduleRefresh();
  } catch (e) {
    $("submit-result").textContent = `refused: ${e.message}`;
  }
}

function explanationTable(e) {
  const thead = $("explanation").tHead;
  const tbody = $("explanation").tBodies[0];
  thead.replaceChildren();
  tbody.replaceChildren();
  if (!e) { $("explanation-note").textContent = "not assigned yet"; return; }
  const factorsOf = (c) => Array.isArray(c.factors)
    ? c.factors.map((f) => [f.name, f.value])
    : Object.entries(c.factors || {});
  const names = e.candidates.length ? factorsOf(e.candidates[0]).map(([n]) => n) : [];
  const weights = e.weights || {};
  thead.append(el("tr", {}, el("th", {}, "Agent"), el("th", {}, "Total"),
    ...names.map((n) => el("th", {}, weights[n] !== undefined ? `${n} ×${Number(weights[n]).toFixed(2)}` : n)),
    el("th", {}, "Load")));
  for (const c of e.candidates) {
    const f = Object.fromEntries(factorsOf(c));
    tbody.append(el("tr", { class: c.agent === e.chosen ? "chosen" : "" },
      el("td", {}, (c.agent === e.chosen ? "→ " : "") + (c.agent_name || c.agent.slice(0, 8))),
      el("td", {}, Number(c.total).toFixed(3)),
      ...names.map((n) => el("td", {}, Number(f[n]).toFixed(2))),
      el("td", {}, c.used)));
  }
  const rejected = Object.entries(e.rejected_counts || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  $("explanation-note").textContent = `policy ${e.policy}, ${e.feasible} feasible candidate(s)${rejected ? `; rejected: ${rejected}` : ""}`;
}

function renderTimeline() {
  const ol = $("timeline");
  ol.replaceChildren();
  for (const ev of state.timeline) {
    const d = ev.data && typeof ev.data === "object" ? ev.data : {};
    const extra = d.message || d.reason || (typeof d.percent === "number" ? `${d.percent}%` : "");
    ol.append(el("li", {}, `${new Date(ev.at_ms).toLocaleTimeString()} ${ev.kind}${extra ? ` — ${extra}` : ""}`));
  }
}

async function renderTask() {
  const id = state.taskId;
  const t = await api(`/api/v1/tasks/${encodeURIComponent(id)}`);
  if (state.taskId !== id) return;
  $("task-title").textContent = `Task ${t.name}`;
  // The agent CLI's own liveness (activity, waiting), when its stream gave it.
  const w = t.waiting;
  const waiting = w ? ` · waiting: ${w.reason}${w.detail ? ` (${w.detail})` : ""}${w.until_ms ? ` until ${new Date(w.until_ms).toLocaleTimeString()}` : ""}` : "";
  const a = t.activity;
  const activity = a ? ` · turn ${a.turns}${a.last_tool ? `, last tool ${a.last_tool}` : ""}, ${a.tokens_so_far} tokens` : "";
  $("task-state").textContent = `${t.state} · attempt ${t.attempt} of ${t.max_retries + 1} · priority ${t.priority}${waiting}${activity}${t.reason ? ` · ${t.reason}` : ""}`;
  $("task-state").className = `summary s-${t.state}`;
  const p = t.progress ? t.progress.percent : t.state === "succeeded" ? 100 : 0;
  $("task-progress").firstElementChild.style.width = `${p}%`;
  $("task-progress").title = t.progress && t.progress.message ? t.progress.message : `${p}%`;
  if (t.explanation) {
    const names = await api("/api/v1/agents").then((l) => Object.fromEntries(l.agents.map((a) => [a.id, a.name]))).catch(() => ({}));
    for (const c of t.explanation.candidates) c.agent_name = names[c.agent];
  }
  explanationTable(t.explanation);
  if (!state.timeline.length) {
    state.timeline = [{ at_ms: t.created_ms, kind: "task.submitted", data: {} }];
    if (t.progress) state.timeline.push({ at_ms: t.progress.updated_ms, kind: "task.progress", data: t.progress });
    if (t.state !== "queued" && t.state !== "blocked") state.timeline.push({ at_ms: t.updated_ms, kind: `task.${t.state}`, data: { reason: t.reason } });
  }
  renderTimeline();
  $("outcome").textContent = t.outcome ? JSON.stringify(t.outcome, null, 2) : "no outcome yet";
  const logs = await api(`/api/v1/tasks/${encodeURIComponent(id)}/logs`).catch(() => null);
  $("logs").textContent = logs ? `${logs.stdout}${logs.stderr ? `\n--- stderr ---\n${logs.stderr}` : ""}`.slice(-8000) : "no output yet";
  $("spec").textContent = JSON.stringify({ spec: t.spec, analysis: t.analysis, labels: t.labels }, null, 2);
}

async function renderStats() {
  const s = await api("/api/v1/stats");
  const a = s.autonomy || {};
  const tb = $("autonomy").tBodies[0];
  tb.replaceChildren();
  const rows = [
    ["Self-spawn events", a.self_spawn_events],
    ["Self-spawn success", pct(a.self_spawn_success_rate)],
    ["Tasks without intervention", a.tasks_without_intervention_pct === null || a.tasks_without_intervention_pct === undefined ? "-" : `${a.tasks_without_intervention_pct.toFixed(1)}%`],
    ["Tasks per agent-hour", a.tasks_per_agent_hour === null || a.tasks_per_agent_hour === undefined ? "-" : a.tasks_per_agent_hour.toFixed(1)],
    ["Time to adapt", a.adapt_seconds === null || a.adapt_seconds === undefined ? "-" : `${a.adapt_seconds.toFixed(1)} s`],
    ["Team formation success", pct(a.team_formation_success_rate)],
    ["Messages delivered", pct(a.messages_delivered_rate)],
    ["Help requests accepted", pct(a.help_accept_rate)],
  ];
  for (const [k, v] of rows) tb.append(el("tr", {}, el("th", {}, k), el("td", {}, v === undefined ? "-" : v)));
  const hb = $("hubstats").tBodies[0];
  hb.replaceChildren();
  const l = s.assign_latency_ms || {};
  for (const [k, v] of [["Store", s.store], ["Assigned", s.assigned], ["Finished", s.finished],
    ["Leases expired", s.leases_expired], ["Stale reports refused", s.stale_refused],
    ["Assignment latency p50 / p99", `${l.p50} / ${l.p99} ms`]]) {
    hb.append(el("tr", {}, el("th", {}, k), el("td", {}, v)));
  }
}

function fill(id, rows) {
  const tb = $(id).tBodies[0];
  tb.replaceChildren(...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c)))));
}

async function renderCollab() {
  const [locks, help, tail] = await Promise.all([
    api("/api/v1/locks"),
    api("/api/v1/help?all=true"),
    api("/api/v1/events?tail=true"),
  ]);
  fill("locks", locks.locks.map((l) => [
    `${l.name}${l.path ? " (path)" : ""}`,
    l.holders.map((h) => `${h.holder} (${h.mode}, ${h.fence})`).join(", ") || "-",
    l.waiters.map((w) => `${w.waiter} (${w.mode}, ${w.priority})`).join(", ") || "-",
    l.holders.length ? `in ${Math.max(0, (Math.min(...l.holders.map((h) => h.expires_ms)) - Date.now()) / 1000).toFixed(0)}s` : "-",
  ]));
  renderWaits(locks.waits || []);
  fill("help", help.requests.map((h) => [
    h.id.slice(0, 8), h.state, `${h.skill}:${h.level}`, h.requester,
    String((h.offered_to || []).length), h.text, ago(h.created_ms),
  ]));
  const after = Math.max(0, (tail.last_id || 0) - 2000);
  const page = await api(`/api/v1/events?stream=nova.torch.collaboration.&after=${after}&limit=2000`);
  const recent = page.events.slice(-50).reverse();
  fill("peer-events", recent.map((e) => {
    const d = e.data || {};
    const subject = d.name || d.lock || d.skill || "";
    return [subject ? `${e.kind} ${subject}` : e.kind, d.from || d.holder || d.requester || "-", d.to || "-", d.kind || "-", d.delivery || "-", d.reason || "", ago(e.at_ms)];
  }));
}

// The wait-for graph as an SVG: every waiter and holder a node on a circle,
// an arrow from who waits to whom it waits for, labelled with the lock.
function renderWaits(edges) {
  const box = $("waits-graph");
  $("waits-summary").textContent = edges.length
    ? `${edges.length} wait${edges.length === 1 ? "" : "s"}: an arrow points from who waits to whom it waits for.`
    : "Nobody waits.";
  if (!edges.length) { box.replaceChildren(); return; }
  const names = [...new Set(edges.flatMap((e) => [e.from, e.to]))];
  const n = names.length, r = 40 + 22 * n, size = 2 * r + 240;
  const pos = new Map(names.map((name, i) => {
    const a = (2 * Math.PI * i) / n - Math.PI / 2;
    return [name, [size / 2 + r * Math.cos(a), size / 2 + r * Math.sin(a)]];
  }));
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  const mk = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  svg.setAttribute("viewBox", `0 0 ${size} ${size}`);
  svg.setAttribute("width", String(Math.min(size, 900)));
  svg.setAttribute("class", "waits");
  const defs = mk("defs", {});
  const marker = mk("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "8", markerHeight: "8", orient: "auto-start-reverse" });
  marker.append(mk("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#ff7a18" }));
  defs.append(marker);
  svg.append(defs);
  for (const e of edges) {
    const [x1, y1] = pos.get(e.from), [x2, y2] = pos.get(e.to);
    const len = Math.hypot(x2 - x1, y2 - y1) || 1, k = 10 / len;
    svg.append(mk("line", { x1, y1, x2: x2 - (x2 - x1) * k, y2: y2 - (y2 - y1) * k, stroke: "#ff7a18", "marker-end": "url(#arrow)", class: "edge" }));
    svg.append(mk("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, fill: "#9aa0a6", "font-size": "11", "text-anchor": "middle" }, e.lock || e.kind));
  }
  for (const [name, [x, y]] of pos) {
    svg.append(mk("circle", { cx: x, cy: y, r: 6, fill: "#e6e6e6", class: "node" }));
    const short = name.length > 22 ? `${name.slice(0, 13)}…${name.slice(-6)}` : name;
    svg.append(mk("text", { x, y: y + 20, fill: "#e6e6e6", "font-size": "11", "text-anchor": "middle" }, short));
  }
  box.replaceChildren(svg);
}

async function renderAlerts() {
  const a = await api("/api/v1/alerts");
  $("alerts-summary").textContent = `${a.firing.length} firing, ${a.rules} rule${a.rules === 1 ? "" : "s"} evaluated.`;
  fill("alerts-firing", a.firing.map((x) => [x.alert, x.severity, `${x.value.toFixed(2)} / ${x.threshold}`, x.summary, ago(x.fired_ms)]));
  fill("alerts-recent", a.recent.map((x) => [x.alert, x.state, x.severity, x.summary, ago(x.fired_ms), x.resolved_ms ? ago(x.resolved_ms) : "-"]));
}

async function renderCapacity() {
  const c = await api("/api/v1/capacity");
  const h = c.headroom || {};
  $("capacity-summary").textContent = `Model ${c.model}; window ${(c.window_ms / 1000).toFixed(0)} s; target schedule-to-start ${c.target_ms} ms. ` +
    `Headroom before the limits: CPU ${pct(h.cpu)}, memory ${pct(h.memory)}.`;
  fill("capacity", c.pools.map((p) => [
    p.skill ? `skill ${p.skill}` : `template ${p.template}`,
    p.arrival_per_s.toFixed(2), `${p.service_s.toFixed(2)} s`, pct(p.utilisation),
    `${p.schedule_to_start_p95_ms.toFixed(0)} ms`, String(p.agents), String(p.recommended_agents),
    p.forecast === undefined || p.forecast === null ? "-" : p.forecast.toFixed(2),
  ]));
}

// ---- wiring ---------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    login($("token").value.trim()).catch((e) => {
      state.token = "";
      $("login-error").textContent = e.status === 401 || e.status === 403 ? "That token was refused." : String(e.message);
    });
  });
  $("logout").addEventListener("click", logout);
  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); state.before = null; renderTasks().catch(showError); });
  $("older").addEventListener("click", () => { if (state.pages.last !== null) { state.before = state.pages.last; renderTasks().catch(showError); } });
  $("newer").addEventListener("click", () => { state.before = null; renderTasks().catch(showError); });
  $("select-all").addEventListener("change", (ev) => {
    for (const b of document.querySelectorAll("#tasks tbody input")) b.checked = ev.target.checked;
  });
  $("bulk-cancel").addEventListener("click", () => bulk("cancel"));
  $("bulk-retry").addEventListener("click", () => bulk("retry"));
  $("submit-form").addEventListener("submit", submitTask);
  window.addEventListener("hashchange", route);
  if (state.token) {
    login(state.token).catch(() => logout());
  } else {
    $("login").hidden = false;
  }
});
