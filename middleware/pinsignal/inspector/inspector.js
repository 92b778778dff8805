// pinsignal inspector: the trace, live. No library, no build step: the charts are SVG drawn here from
// the records. Every value from the trace is written with textContent, never as HTML.
"use strict";

const MAX_RECORDS = 20000;
const OUTCOMES = [["delivered", "#2e7d32"], ["warning", "#f0a030"], ["dead_lettered", "#c62828"],
  ["refused", "#e57373"], ["quarantined", "#8e24aa"], ["duplicate", "#9e9e9e"]];
const LATENCY_BUCKETS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, Infinity];
const SVG = "http://www.w3.org/2000/svg";
const state = { records: [], events: new Map(), byEventId: new Map(), lastId: null, selected: null,
  matchKeys: ["em", "ph", "external_id", "click_id", "ip_ua"], debug: null, dirty: false };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = String(text);
  return node;
}
function clock(at) { return new Date(at * 1000).toLocaleTimeString(); }

// ---------------------------------------------------------------- the debug cookie ("only my browser")

function debugCode() {
  const found = document.cookie.split("; ").find((c) => c.startsWith("_psdebug="));
  if (found) return found.slice(9);
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  const code = Array.from(bytes, (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");
  document.cookie = `_psdebug=${code}; path=/; max-age=2592000; samesite=lax`;
  return code;
}

// ---------------------------------------------------------------- records -> events

function keyOf(r) {
  if (r.message_id) return "m:" + r.message_id;
  if (r.event_id) {
    const linked = state.byEventId.get(r.event_name + "|" + r.event_id);
    return linked || "e:" + r.event_id;
  }
  // an event refused before it had an id: its entry and its place in it (a request's entry holds many)
  return "r:" + r.id + (r.item !== undefined ? ":" + r.item : "");
}

function add(r) {
  state.records.push(r);
  state.lastId = r.id;
  if ((r.stage === "queued" || r.stage === "duplicate") && r.message_id && r.event_id) {
    state.byEventId.set(r.event_name + "|" + r.event_id, "m:" + r.message_id);
  }
  const key = keyOf(r);
  let ev = state.events.get(key);
  if (!ev) {
    ev = { key, at: r.at, message_id: r.message_id || null, event: r.event || null, event_name: null,
      event_id: null, pipeline: null, stage: r.stage, stages: new Set(), warnings: 0, debug: null };
    state.events.set(key, ev);
  }
  ev.stages.add(r.stage);
  if (r.event) ev.event = r.event;
  if (r.event_name) ev.event_name = r.event_name;
  if (r.event_id) ev.event_id = r.event_id;
  if (r.pipeline) ev.pipeline = r.pipeline;
  if (r.debug) ev.debug = r.debug;
  if (r.stage === "warning") ev.warnings += 1;
  if (r.stage !== "sent" || ev.stage === "received" || ev.stage === "queued") ev.stage = r.stage;
  if (r.stage === "warning" && ev.stages.has("delivered")) ev.stage = "delivered";
  state.dirty = true;
}

function trim() {
  if (state.records.length <= MAX_RECORDS) return;
  state.records = state.records.slice(-MAX_RECORDS);
  const keep = new Set(state.records.map(keyOf));
  for (const key of state.events.keys()) if (!keep.has(key)) state.events.delete(key);
}

// ---------------------------------------------------------------- filters and the table

function filters() {
  return { event: $("f-event").value, stage: $("f-stage").value, id: $("f-id").value.trim(), mine: $("f-mine").checked };
}

function visible(ev, f) {
  if (f.event && ev.event !== f.event && ev.event_name !== f.event) return false;
  if (f.stage && !ev.stages.has(f.stage)) return false;
  if (f.id && ev.message_id !== f.id && ev.event_id !== f.id) return false;
  if (f.mine && ev.debug !== state.debug) return false;
  return true;
}

function fillSelect(select, values) {
  const have = new Set(Array.from(select.options, (o) => o.value));
  for (const v of values) if (v && !have.has(v)) select.appendChild(el("option", { value: v }, v));
}

function renderTable() {
  const f = filters();
  const rows = Array.from(state.events.values()).filter((ev) => visible(ev, f)).sort((a, b) => b.at - a.at).slice(0, 300);
  const body = $("events").tBodies[0];
  body.replaceChildren();
  for (const ev of rows) {
    const tr = el("tr", { "data-key": ev.key });
    if (ev.debug && ev.debug === state.debug) tr.classList.add("mine");
    if (state.selected === ev.key) tr.classList.add("selected");
    tr.append(el("td", {}, clock(ev.at)), el("td", {}, ev.event || ""), el("td", {}, ev.event_name || ""),
      el("td", { title: ev.message_id || ev.event_id || "" }, ev.message_id || ev.event_id || ""), el("td", {}, ev.pipeline || ""));
    const stage = el("td"); stage.appendChild(el("span", { class: "stage " + ev.stage }, ev.stage)); tr.appendChild(stage);
    tr.appendChild(el("td", {}, ev.warnings ? String(ev.warnings) : ""));
    tr.addEventListener("click", () => showDetail(ev));
    body.appendChild(tr);
  }
  $("shown").textContent = `${rows.length} of ${state.events.size} events shown`;
  fillSelect($("f-event"), Array.from(new Set(Array.from(state.events.values()).flatMap((e) => [e.event, e.event_name]))).sort());
  $("totals").textContent = `${state.records.length} trace records loaded`;
}

// ---------------------------------------------------------------- the detail view

async function showDetail(ev) {
  state.selected = ev.key;
  const ident = ev.message_id || ev.event_id;
  const answer = await fetch("/api/event/" + encodeURIComponent(ident), { credentials: "same-origin" });
  if (!answer.ok) return;
  const d = await answer.json();
  $("detail").hidden = false;
  $("detail-title").textContent = `${ev.event || ev.event_name || "event"} ${ident}`;
  const stages = $("detail-stages");
  stages.replaceChildren();
  for (const r of d.records) {
    const li = el("li");
    li.append(el("span", { class: "stage " + r.stage }, r.stage), document.createTextNode(" " + clock(r.at) + " "));
    const extra = [r.pipeline && "pipeline " + r.pipeline, r.reason && "reason " + r.reason, r.status && "HTTP " + r.status,
      r.latency !== undefined && r.latency !== null && "latency " + Number(r.latency).toFixed(3) + " s",
      r.warning && "warning: " + r.warning, r.message && r.message].filter(Boolean).join(" · ");
    li.appendChild(el("span", { class: "muted" }, extra));
    stages.appendChild(li);
  }
  const attempts = $("detail-attempts").tBodies[0];
  attempts.replaceChildren();
  for (const a of d.attempts) {
    const tr = el("tr");
    tr.append(el("td", {}, a.attempt), el("td", {}, clock(a.at)), el("td", {}, a.status ?? ""), el("td", {}, a.answer || ""),
      el("td", {}, [a.warning, a.error, a.message].filter(Boolean).join("; ")));
    attempts.appendChild(tr);
  }
  if (!d.attempts.length) attempts.appendChild(el("tr")).appendChild(el("td", { colspan: "5", class: "muted" }, "not sent yet"));
  $("detail-pipelines").textContent = d.pipelines.length ? JSON.stringify(d.pipelines, null, 2) : "no pipeline made an event";
  $("detail-envelope").textContent = d.envelope ? JSON.stringify(d.envelope, null, 2) : "not in the trace any more";
  $("detail-pinterest").textContent = d.pinterest.length ? JSON.stringify(d.pinterest.length === 1 ? d.pinterest[0] : d.pinterest, null, 2)
    : d.attempts.length ? "sent, not kept in the trace (the worker keeps the Pinterest event of the first event of each 64 it records together)"
    : "not sent yet";
  renderTable();
}

// ---------------------------------------------------------------- charts (hand-drawn SVG)

function empty(box, text) {
  const s = svg("svg", { viewBox: "0 0 360 150" });
  s.appendChild(svg("text", { x: 180, y: 78, "text-anchor": "middle", class: "empty" }, text));
  box.replaceChildren(s);
}

function chartOutcomes() {
  const box = $("chart-outcomes");
  const now = Math.floor(Date.now() / 60000);
  const minutes = 30;
  const counts = Array.from({ length: minutes }, () => Object.fromEntries(OUTCOMES.map(([o]) => [o, 0])));
  let any = false;
  for (const r of state.records) {
    const slot = minutes - 1 - (now - Math.floor(r.at / 60));
    if (slot < 0 || slot >= minutes || !(r.stage in counts[slot])) continue;
    counts[slot][r.stage] += r.count || 1; any = true;
  }
  if (!any) return empty(box, "no outcomes in the last 30 minutes");
  const W = 360, H = 150, left = 34, bottom = 20, top = 18;
  const peak = Math.max(1, ...counts.map((c) => OUTCOMES.reduce((s, [o]) => s + c[o], 0)));
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "events per minute by outcome" });
  const bw = (W - left - 4) / minutes;
  s.appendChild(svg("text", { x: left - 4, y: top + 4, "text-anchor": "end" }, peak));
  s.appendChild(svg("text", { x: left - 4, y: H - bottom, "text-anchor": "end" }, 0));
  s.appendChild(svg("line", { x1: left, x2: W, y1: H - bottom, y2: H - bottom, stroke: "#ccc" }));
  counts.forEach((c, i) => {
    let y = H - bottom;
    for (const [o, color] of OUTCOMES) {
      if (!c[o]) continue;
      const h = (c[o] / peak) * (H - bottom - top);
      y -= h;
      const rect = svg("rect", { x: left + i * bw + 1, y, width: Math.max(1, bw - 2), height: h, fill: color });
      rect.appendChild(svg("title", {}, `${o}: ${c[o]}`));
      s.appendChild(rect);
    }
  });
  s.appendChild(svg("text", { x: left, y: H - 5 }, "-30 min"));
  s.appendChild(svg("text", { x: W - 2, y: H - 5, "text-anchor": "end" }, "now"));
  let x = 4;
  for (const [o, color] of OUTCOMES) {
    const label = o.replace("_lettered", "");
    s.appendChild(svg("rect", { x, y: 2, width: 8, height: 8, fill: color }));
    s.appendChild(svg("text", { x: x + 10, y: 10 }, label));
    x += 16 + label.length * 5.4;
  }
  box.replaceChildren(s);
}

function chartCoverage() {
  const box = $("chart-coverage");
  const keys = [...state.matchKeys, "event_id"];
  const tally = new Map();
  for (const r of state.records) {
    if (r.stage !== "delivered") continue;
    const t = tally.get(r.event_name) || { n: 0, k: Object.fromEntries(keys.map((k) => [k, 0])) };
    t.n += 1;
    state.matchKeys.forEach((k, bit) => { if ((r.keys >> bit) & 1) t.k[k] += 1; });
    if (r.event_id) t.k.event_id += 1;
    tally.set(r.event_name, t);
  }
  if (!tally.size) return empty(box, "nothing delivered yet");
  const names = Array.from(tally.keys()).sort();
  const left = 80, top = 26, cw = (360 - left) / keys.length, ch = 18;
  const H = top + names.length * ch + 4;
  const s = svg("svg", { viewBox: `0 0 360 ${H}`, role: "img", "aria-label": "match-key coverage per event name" });
  // staggered: the key names are wider than their columns
  keys.forEach((k, i) => s.appendChild(svg("text", { x: left + i * cw + cw / 2, y: i % 2 ? 22 : 11, "text-anchor": "middle" }, k)));
  names.forEach((name, row) => {
    const t = tally.get(name);
    s.appendChild(svg("text", { x: left - 4, y: top + row * ch + 12, "text-anchor": "end" }, name));
    keys.forEach((k, i) => {
      const share = t.k[k] / t.n;
      const hue = Math.round(share * 120);
      const rect = svg("rect", { x: left + i * cw + 1, y: top + row * ch, width: cw - 2, height: ch - 2, fill: `hsl(${hue}, 55%, 80%)` });
      rect.appendChild(svg("title", {}, `${name} ${k}: ${Math.round(share * 100)}% of ${t.n}`));
      s.appendChild(rect);
      s.appendChild(svg("text", { x: left + i * cw + cw / 2, y: top + row * ch + 12, "text-anchor": "middle" }, Math.round(share * 100) + "%"));
    });
  });
  box.replaceChildren(s);
}

function chartLatency() {
  const box = $("chart-latency");
  const values = state.records.filter((r) => r.stage === "delivered" && typeof r.latency === "number").map((r) => r.latency);
  if (!values.length) return empty(box, "nothing delivered yet");
  const counts = LATENCY_BUCKETS.map(() => 0);
  for (const v of values) counts[LATENCY_BUCKETS.findIndex((b) => v <= b)] += 1;
  values.sort((a, b) => a - b);
  const pct = (p) => values[Math.min(values.length - 1, Math.floor(p * values.length))];
  const W = 360, H = 150, left = 34, bottom = 20, top = 18;
  const peak = Math.max(...counts);
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "delivery latency" });
  const bw = (W - left - 4) / counts.length;
  s.appendChild(svg("text", { x: left, y: 11 }, `p50 ${pct(0.5).toFixed(2)} s · p95 ${pct(0.95).toFixed(2)} s · max ${values[values.length - 1].toFixed(2)} s · ${values.length} events`));
  s.appendChild(svg("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, peak));
  s.appendChild(svg("line", { x1: left, x2: W, y1: H - bottom, y2: H - bottom, stroke: "#ccc" }));
  counts.forEach((c, i) => {
    const h = (c / peak) * (H - bottom - top);
    const rect = svg("rect", { x: left + i * bw + 2, y: H - bottom - h, width: bw - 4, height: h, fill: "#5c8ad6" });
    const label = LATENCY_BUCKETS[i] === Infinity ? "> 60 s" : `≤ ${LATENCY_BUCKETS[i]} s`;
    rect.appendChild(svg("title", {}, `${label}: ${c}`));
    s.appendChild(rect);
    s.appendChild(svg("text", { x: left + i * bw + bw / 2, y: H - 6, "text-anchor": "middle" }, label.replace(" s", "")));
  });
  box.replaceChildren(s);
}

// ---------------------------------------------------------------- summary panels

function table(rows, header) {
  const t = el("table");
  const head = el("tr"); for (const h of header) head.appendChild(el("th", {}, h)); t.appendChild(head);
  for (const row of rows) { const tr = el("tr"); for (const c of row) tr.appendChild(el("td", {}, c)); t.appendChild(tr); }
  return t;
}

async function loadSummary() {
  const answer = await fetch("/api/summary", { credentials: "same-origin" });
  if (!answer.ok) return;
  const s = await answer.json();
  state.matchKeys = s.match_keys;
  const warned = [];
  for (const [name, kinds] of Object.entries(s.warnings)) for (const [kind, n] of Object.entries(kinds)) warned.push([name, kind, n]);
  warned.sort((a, b) => b[2] - a[2]);
  $("warnings").replaceChildren(warned.length ? table(warned.slice(0, 12), ["event", "warning", "count"]) : el("p", { class: "muted" }, "none yet"));
  const refused = Object.entries(s.refused).sort((a, b) => b[1] - a[1]);
  const box = $("refused");
  box.replaceChildren(refused.length ? table(refused, ["reason", "count"]) : el("p", { class: "muted" }, "none yet"));
  box.appendChild(el("p", { class: "muted" }, `${s.quarantined} in quarantine (pinsignal quarantine list)`));
  const stageSelect = $("f-stage");
  if (stageSelect.options.length === 1) fillSelect(stageSelect, s.stages);
}

// ---------------------------------------------------------------- start

function render() {
  if (!state.dirty) return;
  state.dirty = false;
  trim();
  renderTable(); chartOutcomes(); chartCoverage(); chartLatency();
}

function connect() {
  const source = new EventSource("/api/stream" + (state.lastId ? "?last=" + encodeURIComponent(state.lastId) : ""));
  source.onopen = () => { $("live").textContent = "live"; $("live").className = "live on"; };
  source.onerror = () => { $("live").textContent = "reconnecting"; $("live").className = "live off"; };
  source.onmessage = (message) => { add(JSON.parse(message.data)); };
}

async function start() {
  state.debug = debugCode();
  $("debug-code").textContent = state.debug;
  $("debug-snippet").textContent = `document.cookie = "_psdebug=${state.debug}; path=/; max-age=2592000; samesite=lax"`;
  for (const id of ["f-event", "f-stage", "f-id", "f-mine"]) $(id).addEventListener("input", () => { state.dirty = true; render(); });
  $("close-detail").addEventListener("click", () => { $("detail").hidden = true; state.selected = null; state.dirty = true; render(); });
  await loadSummary();
  const answer = await fetch("/api/recent?limit=5000", { credentials: "same-origin" });
  if (answer.ok) for (const r of (await answer.json()).records) add(r);
  state.dirty = true;
  render();
  connect();
  setInterval(render, 500);
  setInterval(loadSummary, 5000);
  setInterval(() => { state.dirty = true; }, 30000);  // the per-minute chart moves on with the clock
}

document.addEventListener("DOMContentLoaded", start);
