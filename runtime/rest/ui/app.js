// Sluice's dashboard: renders the snapshots `/ui/events` pushes (server-sent events) and acts
// through the REST API's own endpoints. Plain DOM and SVG, no library, no build step.
"use strict";

const HISTORY = 300; // points kept per series: five minutes at one snapshot per second
const history = new Map(); // "c:<connector>" or "t:<topic>" -> [records/s, ...]
let last = null;
let selected = null; // id of the graph node whose detail is shown

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const svg = ["svg", "g", "rect", "text", "path", "polyline", "title"].includes(tag);
  const e = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c.nodeType ? c : String(c));
  return e;
};

function human(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(1) + " G";
  if (a >= 1e6) return (n / 1e6).toFixed(1) + " M";
  if (a >= 1e4) return (n / 1e3).toFixed(1) + " k";
  return a >= 100 || Number.isInteger(n) ? Math.round(n).toString() : n.toFixed(1);
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function remember(key, value) {
  if (value === null || value === undefined) return;
  const h = history.get(key) || [];
  h.push(value);
  if (h.length > HISTORY) h.shift();
  history.set(key, h);
}

function spark(key, label) {
  const h = history.get(key) || [];
  const w = 120, ht = 24;
  const max = Math.max(1, ...h);
  const unit = key.startsWith("l") || key.startsWith("tl") ? "records behind" : "records/s";
  const pts = h.map((v, i) => `${(i * w) / Math.max(1, HISTORY - 1)},${ht - (v / max) * (ht - 2) - 1}`).join(" ");
  return el("svg", { class: "spark", width: w, height: ht, viewBox: `0 0 ${w} ${ht}`, role: "img", "aria-label": `${label}: peak ${human(max)} ${unit}` },
    el("polyline", { points: pts }));
}

// ---- actions ---------------------------------------------------------------------------

async function act(method, path, what) {
  const live = $("#live");
  live.textContent = `${what}…`;
  try {
    const r = await fetch(path, { method, headers: { "Content-Type": "application/json" } });
    if (!r.ok && r.status !== 202 && r.status !== 204) {
      let msg = r.statusText;
      try { msg = (await r.json()).message || msg; } catch (_) { /* not JSON */ }
      live.textContent = `${what} failed: ${msg}`;
      live.className = "live error";
      return;
    }
    live.textContent = `${what}: done`;
    live.className = "live";
  } catch (e) {
    live.textContent = `${what} failed: ${e}`;
    live.className = "live error";
  }
}

function confirmThen(text, then) {
  const dialog = $("#confirm");
  if (typeof dialog.showModal !== "function") { if (window.confirm(text)) then(); return; }
  $("#confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.onclose = () => { if (dialog.returnValue === "ok") then(); };
  dialog.showModal();
  $("#confirm-ok").focus();
}

function buttons(c) {
  const n = encodeURIComponent(c.name);
  const out = [];
  if (c.state === "RUNNING") out.push(el("button", { "data-action": "pause", onclick: () => act("PUT", `/connectors/${n}/pause`, `pause ${c.name}`) }, "Pause"));
  if (c.state === "PAUSED" || c.state === "STOPPED") out.push(el("button", { "data-action": "resume", onclick: () => act("PUT", `/connectors/${n}/resume`, `resume ${c.name}`) }, "Resume"));
  out.push(el("button", { "data-action": "restart", onclick: () => confirmThen(`Restart ${c.name} and all its tasks?`, () => act("POST", `/connectors/${n}/restart?includeTasks=true`, `restart ${c.name}`)) }, "Restart"));
  if (c.state !== "STOPPED") out.push(el("button", { class: "danger", "data-action": "stop", onclick: () => confirmThen(`Stop ${c.name}? Its tasks commit and shut down until it is resumed.`, () => act("PUT", `/connectors/${n}/stop`, `stop ${c.name}`)) }, "Stop"));
  for (const t of c.tasks) {
    if (t.state === "FAILED") out.push(el("button", { "data-action": "restart-task", onclick: () => act("POST", `/connectors/${n}/tasks/${t.id}/restart`, `restart task ${c.name}-${t.id}`) }, `Restart task ${t.id}`));
  }
  return out;
}

// ---- graph -----------------------------------------------------------------------------

const NODE_W = 200, NODE_H = 50;

function nodeState(snap, node) {
  if (node.kind === "topic") return "TOPIC";
  const c = snap.connectors.find((x) => x.name === node.label);
  if (!c) return "UNKNOWN";
  return c.tasks.some((t) => t.state === "FAILED") ? "FAILED" : c.state;
}

function edgeRate(snap, edge) {
  const [fromKind, ...fromName] = edge.from.split(":");
  const [toKind, ...toName] = edge.to.split(":");
  if (edge.dead_letter) {
    const c = snap.connectors.find((x) => x.name === fromName.join(":"));
    return c ? `${human(c.dead_lettered)} dead-lettered` : "";
  }
  if (fromKind === "source") {
    const c = snap.connectors.find((x) => x.name === fromName.join(":"));
    return c && c.rate_out !== null ? `${human(c.rate_out)}/s` : "";
  }
  if (toKind === "sink") {
    const c = snap.connectors.find((x) => x.name === toName.join(":"));
    if (c && c.topics.length === 1 && c.rate_in !== null) return `${human(c.rate_in)}/s`;
  }
  return "";
}

function renderGraph(snap) {
  const g = snap.graph;
  const svg = $("#graph");
  svg.setAttribute("viewBox", `0 0 ${g.width} ${Math.max(g.height, 80)}`);
  svg.style.maxHeight = `${Math.max(g.height, 80) + 20}px`;
  const byId = new Map(g.nodes.map((n) => [n.id, n]));
  const parts = [];
  for (const e of g.edges) {
    const a = byId.get(e.from), b = byId.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + NODE_W / 2, x2 = b.x - NODE_W / 2;
    const mid = (x1 + x2) / 2;
    parts.push(el("path", { class: e.dead_letter ? "edge dlq" : "edge", d: `M${x1},${a.y} C${mid},${a.y} ${mid},${b.y} ${x2},${b.y}`, "data-from": e.from, "data-to": e.to }));
    const label = edgeRate(snap, e);
    if (label) parts.push(el("text", { class: "rate", x: mid, y: (a.y + b.y) / 2 - 6, "text-anchor": "middle", "data-edge": `${e.from}->${e.to}` }, label));
  }
  for (const n of g.nodes) {
    const state = nodeState(snap, n);
    let sub = state;
    const conn = snap.connectors.find((x) => x.name === n.label && x.role === n.kind);
    if (conn && conn.errors > 0) sub = `${state} · ${human(conn.errors)} errors`;
    if (n.kind === "topic") {
      const t = snap.topics.find((x) => x.name === n.label);
      sub = t ? `${human(t.end)} records` : "topic";
    }
    const node = el("g", {
      class: `node ${n.kind}`, tabindex: 0, role: "button", "data-id": n.id, "data-state": state,
      "aria-label": `${n.kind} ${n.label}: ${sub}`,
      onclick: () => select(n.id),
      onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(n.id); } },
    },
    el("rect", { x: n.x - NODE_W / 2, y: n.y - NODE_H / 2, width: NODE_W, height: NODE_H, class: `s-${state}` }),
    el("text", { x: n.x, y: n.y - 4, "text-anchor": "middle" }, n.label.length > 26 ? n.label.slice(0, 25) + "…" : n.label),
    el("text", { x: n.x, y: n.y + 14, "text-anchor": "middle", class: `state s-${state}` }, sub),
    el("title", {}, `${n.kind} ${n.label}`));
    parts.push(node);
  }
  svg.replaceChildren(...parts);
}

function select(id) {
  selected = selected === id ? null : id;
  renderDetail(last);
}

function renderDetail(snap) {
  const box = $("#detail");
  if (!selected || !snap) { box.hidden = true; return; }
  const [kind, ...rest] = selected.split(":");
  const name = rest.join(":");
  box.hidden = false;
  if (kind === "topic") {
    const t = snap.topics.find((x) => x.name === name);
    box.replaceChildren(el("h3", {}, `Topic ${name}`),
      el("button", { "data-action": "browse", onclick: () => openBrowser(name) }, "Browse records"),
      t ? el("p", {}, `${t.partitions.length} partitions, ${human(t.end)} records written, ${bytes(t.bytes)}`) : el("p", {}, "no data yet"),
      t ? el("ul", {}, t.partitions.map((p) => el("li", {}, `partition ${p.partition}: offsets ${p.start}–${p.end}, ${bytes(p.bytes)}`))) : null);
    return;
  }
  const c = snap.connectors.find((x) => x.name === name);
  if (!c) { box.replaceChildren(el("p", {}, `${name} is gone`)); return; }
  box.replaceChildren(
    el("h3", {}, `${c.role} ${c.name} (${c.type})`),
    el("p", {}, el("span", { class: `badge s-${c.state}` }, c.state), ` · topics ${c.topics.join(", ")}`,
      c.dead_letter_topic ? ` · dead letters to ${c.dead_letter_topic}` : ""),
    el("div", {}, buttons(c)),
    el("ul", {}, c.tasks.map((t) => el("li", {}, `task ${t.id}: `, el("span", { class: `badge s-${t.state}` }, t.state),
      ` (${t.restarts} restarts)`, t.trace ? el("pre", { class: "trace" }, t.trace) : null))));
}

// ---- tables ----------------------------------------------------------------------------

function renderConnectors(snap) {
  const rows = snap.connectors.map((c) => {
    const failed = c.tasks.filter((t) => t.state === "FAILED");
    const state = failed.length ? "FAILED" : c.state;
    return el("tr", { "data-connector": c.name, "data-state": c.state },
      el("td", {}, el("a", { href: "#graph", onclick: () => select(`${c.role}:${c.name}`) }, c.name)),
      el("td", {}, `${c.type} (${c.role})`),
      el("td", {}, el("span", { class: `badge s-${state}` }, state),
        failed.map((t) => el("details", {}, el("summary", {}, `task ${t.id} trace`), el("pre", { class: "trace" }, t.trace || "")))),
      el("td", { class: "num" }, human(c.rate_in)),
      el("td", { class: "num" }, human(c.rate_out)),
      el("td", {}, spark(`c:${c.name}`, `${c.name} records/s`)),
      el("td", { class: "num" }, c.role === "sink" ? [human(c.lag), " ", spark(`l:${c.name}`, `${c.name} lag`)] : "–"),
      el("td", { class: "num" }, human(c.errors)),
      el("td", { class: "num" }, human(c.dead_lettered)),
      el("td", { class: "num" }, human(c.restarts)),
      el("td", {}, buttons(c)));
  });
  $("#connectors tbody").replaceChildren(...rows);
}

// ---- message browser -------------------------------------------------------------------

function pretty(v) {
  return typeof v === "string" ? v : JSON.stringify(v, null, 2);
}

function openBrowser(topic) {
  const t = last && last.topics.find((x) => x.name === topic);
  $("#browse").hidden = false;
  $("#browse-topic").value = topic;
  const select = $("#browse-partition");
  const count = t ? t.partitions.length : 1;
  select.replaceChildren(...Array.from({ length: count }, (_, i) => el("option", { value: i }, i)));
  $("#browse-offset").value = "";
  $("#browse-time").value = "";
  loadRecords();
  $("#browse-title").scrollIntoView();
  $("#browse-offset").focus();
}

async function loadRecords() {
  const topic = $("#browse-topic").value;
  const params = new URLSearchParams({ partition: $("#browse-partition").value || "0", limit: $("#browse-limit").value || "20" });
  if ($("#browse-offset").value !== "") params.set("offset", $("#browse-offset").value);
  else if ($("#browse-time").value) params.set("timestamp", String(new Date($("#browse-time").value).getTime()));
  const status = $("#browse-status");
  status.textContent = "loading…";
  try {
    const r = await fetch(`/ui/topics/${encodeURIComponent(topic)}/records?${params}`);
    const body = await r.json();
    if (!r.ok) { status.textContent = body.message || r.statusText; status.className = "error"; return; }
    status.className = "";
    status.textContent = `${topic}-${body.partition}: offsets ${body.start}–${body.end}; showing ${body.records.length} from ${body.from}` + (body.problem ? ` (${body.problem})` : "");
    const rows = body.records.map((m) => el("tr", { "data-offset": m.offset },
      el("td", { class: "num" }, m.offset),
      el("td", {}, new Date(m.timestamp).toISOString()),
      el("td", {}, el("pre", {}, pretty(m.key)), m.key_schema_id !== null ? el("span", { class: "schema-id" }, `schema ${m.key_schema_id}`) : null),
      el("td", {}, Object.entries(m.headers).map(([k, v]) =>
        el("div", { class: k.startsWith("sluice.error.") || k.startsWith("__connect.errors.") ? "header-dlq" : "" }, `${k}: ${v}`))),
      el("td", { class: "value" }, el("pre", {}, pretty(m.value)), m.value_schema_id !== null ? el("span", { class: "schema-id" }, `Avro, schema ${m.value_schema_id}`) : null)));
    $("#records tbody").replaceChildren(...rows);
  } catch (e) {
    status.textContent = `cannot load records: ${e}`;
    status.className = "error";
  }
}

$("#browse-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadRecords(); });

function renderTopics(snap) {
  const showInternal = $("#show-internal").checked;
  const rows = snap.topics.filter((t) => showInternal || !t.internal).map((t) =>
    el("tr", { "data-topic": t.name },
      el("td", {}, el("button", { "data-action": "browse", title: `browse the records of ${t.name}`, onclick: () => openBrowser(t.name) }, t.name)),
      el("td", { class: "num" }, t.partitions.length),
      el("td", {}, t.partitions.map((p) => `${p.partition}: ${p.start}–${p.end}`).join(", ")),
      el("td", { class: "num" }, human(t.end)),
      el("td", { class: "num" }, bytes(t.bytes)),
      el("td", { class: "num" }, human(t.rate_in)),
      el("td", {}, spark(`t:${t.name}`, `${t.name} records/s`)),
      el("td", {}, Object.entries(t.settings || {}).map(([k, v]) => el("div", {}, `${k}=${v}`))),
      el("td", { "data-groups": t.name }, (t.groups || []).map((g) => el("div", {}, `${g.group} p${g.partition}: ${human(g.lag)}`)),
        (t.groups || []).length ? spark(`tl:${t.name}`, `${t.name} consumer lag`) : null)));
  $("#topics tbody").replaceChildren(...rows);
}

function renderReload(snap) {
  const r = snap.reload;
  const since = new Date(r.active.since_ms).toLocaleString();
  const parts = [el("p", {}, `Active configuration ${String(r.active.hash).slice(0, 12)} since ${since}.`)];
  const a = r.last_attempt;
  if (a) {
    parts.push(el("p", {}, `Last reload ${new Date(a.at_ms).toLocaleString()}: `, el("strong", {}, a.result)));
    if (a.errors.length) {
      parts.push(el("ul", { class: "error" }, a.errors.map((e) => el("li", {}, `${e.file}:${e.line}:${e.column}: ${e.message}`))));
    }
  }
  $("#reload").replaceChildren(...parts);
}

function render(snap) {
  last = snap;
  for (const c of snap.connectors) remember(`c:${c.name}`, c.role === "source" ? c.rate_out : c.rate_in);
  for (const c of snap.connectors) if (c.role === "sink") remember(`l:${c.name}`, c.lag);
  for (const t of snap.topics) {
    remember(`t:${t.name}`, t.rate_in);
    remember(`tl:${t.name}`, (t.groups || []).reduce((sum, g) => sum + g.lag, 0));
  }
  $("#worker").textContent = `worker ${snap.worker.worker_id} · version ${snap.worker.version}`;
  const live = $("#live");
  if (!live.className.includes("error")) live.textContent = `live · ${new Date(snap.time_ms).toLocaleTimeString()}`;
  renderGraph(snap);
  renderDetail(snap);
  renderConnectors(snap);
  renderTopics(snap);
  renderReload(snap);
}

// ---- schemas ---------------------------------------------------------------------------

let subjects = [];

// Lines of `a` and `b` paired by their longest common subsequence: [kind, left, right].
function diffLines(a, b) {
  const n = a.length, m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { out.push(["same", a[i], b[j]]); i++; j++; }
    else if (j < m && (i === n || lcs[i][j + 1] >= lcs[i + 1][j])) { out.push(["add", null, b[j]]); j++; }
    else { out.push(["del", a[i], null]); i++; }
  }
  return out;
}

function renderDiff(subject) {
  const s = subjects.find((x) => x.subject === subject);
  if (!s) return;
  const va = s.versions.find((v) => String(v.version) === $("#diff-a").value) || s.versions[0];
  const vb = s.versions.find((v) => String(v.version) === $("#diff-b").value) || s.versions[s.versions.length - 1];
  const rows = diffLines(va.schema.split("\n"), vb.schema.split("\n"));
  $("#diff-left").replaceChildren(...rows.map(([k, l]) => el("span", { class: k === "add" ? "" : k }, l === null ? "" : l)));
  $("#diff-right").replaceChildren(...rows.map(([k, , r]) => el("span", { class: k === "del" ? "" : k }, r === null ? "" : r)));
}

function openDiff(subject) {
  const s = subjects.find((x) => x.subject === subject);
  if (!s) return;
  $("#diff").hidden = false;
  $("#diff-title").textContent = `${subject}: version against version`;
  const options = () => s.versions.map((v) => el("option", { value: v.version }, `${v.version} (id ${v.id})`));
  $("#diff-a").replaceChildren(...options());
  $("#diff-b").replaceChildren(...options());
  $("#diff-a").value = String(s.versions[Math.max(0, s.versions.length - 2)].version);
  $("#diff-b").value = String(s.versions[s.versions.length - 1].version);
  $("#diff-a").onchange = $("#diff-b").onchange = () => renderDiff(subject);
  renderDiff(subject);
}

async function loadSchemas() {
  try {
    const r = await fetch("/ui/schemas");
    const body = await r.json();
    if (!body.available) { $("#schemas-status").textContent = body.message; return; }
    subjects = body.subjects;
    $("#schemas-status").textContent = subjects.length ? "Select a subject to compare its versions." : "No subjects registered yet.";
    $("#subjects tbody").replaceChildren(...subjects.map((s) => el("tr", { "data-subject": s.subject },
      el("td", {}, el("button", { "data-action": "diff", onclick: () => openDiff(s.subject) }, s.subject)),
      el("td", { class: "num" }, s.versions.length),
      el("td", {}, s.compatibility),
      el("td", {}, s.topic || "–"),
      el("td", {}, s.connectors.join(", ") || "–"))));
  } catch (e) {
    $("#schemas-status").textContent = `cannot load schemas: ${e}`;
  }
}

function connect() {
  const source = new EventSource("/ui/events");
  source.addEventListener("snapshot", (ev) => {
    try { render(JSON.parse(ev.data)); } catch (e) { $("#live").textContent = `cannot read a snapshot: ${e}`; }
  });
  source.onerror = () => { $("#live").textContent = "reconnecting…"; };
}

$("#show-internal").addEventListener("change", () => last && renderTopics(last));
connect();
loadSchemas();
setInterval(loadSchemas, 10_000); // subjects change rarely: no need to push them
