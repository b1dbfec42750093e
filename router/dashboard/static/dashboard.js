// thinkgate dashboard: polls /dashboard/api/* and draws with inline SVG.
// Hand-written, no dependencies, no build step. Data is inserted with
// textContent only (tenants and prompts come from clients).
"use strict";
(function () {
  const API = "/dashboard/api";
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = { fast: "#0ea5a0", reasoning: "#7c5cf0", cache: "#f0a020", none: "#a0a8b8", error: "#e5484d" };
  const ROUTES = ["fast", "reasoning", "cache"];
  const DEER_COLORS = { confident: "#7c5cf0", natural_end: "#0ea5a0", max_probes: "#f0a020", budget: "#e07b39", wall_clock: "#e5484d", off: "#a0a8b8", error: "#b42318", none: "#c9cfdc" };
  const state = { poll: 2000, timer: null, paused: false, key: sessionStorage.getItem("thinkgate-key") || "", summary: null, rowsSig: "", selected: null, busy: false };

  const $ = (id) => document.getElementById(id);

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k === "style") el.style.cssText = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) if (kid !== null && kid !== undefined) el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    return el;
  }

  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "text") el.textContent = v;
      else el.setAttribute(k, String(v));
    }
    for (const kid of kids.flat()) if (kid) el.append(kid);
    return el;
  }

  // -- formatting ------------------------------------------------------------
  const fmtInt = (n) => (n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US"));
  const fmtPct = (x, d = 0) => (x === null || x === undefined ? "–" : (100 * x).toFixed(d) + "%");
  const fmtP = (x) => (x === null || x === undefined ? "–" : Number(x).toFixed(3));
  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "–";
    if (ms < 1) return ms.toFixed(2) + " ms";
    if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + " ms";
    return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  }
  function fmtUsd(x) {
    if (x === null || x === undefined) return "–";
    if (x === 0) return "$0";
    const a = Math.abs(x);
    const d = a >= 100 ? 0 : a >= 1 ? 2 : a >= 0.01 ? 4 : 6;
    return (x < 0 ? "-$" : "$") + a.toFixed(d);
  }
  function fmtTokens(n) {
    if (n === null || n === undefined) return "–";
    if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return fmtInt(n);
  }
  const pad = (n) => String(n).padStart(2, "0");
  function fmtTime(t, withDate) {
    const d = new Date(t * 1000);
    const hms = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
    return withDate ? d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + hms : hms;
  }

  // -- data ------------------------------------------------------------------
  async function getJSON(path) {
    const headers = { accept: "application/json" };
    if (state.key) headers.authorization = "Bearer " + state.key;
    const r = await fetch(path, { headers, cache: "no-store" });
    if (r.status === 401 || r.status === 403) {
      showAuth(r.status === 403 && state.key ? "This key is not an admin key." : null);
      throw new Error("auth");
    }
    if (!r.ok) throw new Error("HTTP " + r.status);
    return r.json();
  }

  function filterQuery() {
    const q = new URLSearchParams();
    for (const name of ["route", "tenant", "escalated", "cache"]) {
      const v = $("f-" + name).value;
      if (v) q.set(name, v);
    }
    q.set("limit", "200");
    return q.toString();
  }

  async function refresh() {
    if (state.busy) { state.again = true; return; }  // a filter changed mid-poll: poll once more after
    state.busy = true;
    state.again = false;
    try {
      // the optional learning panel (not mounted without router/dashboard/learning.py) is fetched
      // with the rest, so every panel is filled on first paint; its failure never blocks the others
      const [summary, list, learning] = await Promise.all([
        getJSON(API + "/summary"), getJSON(API + "/decisions?" + filterQuery()), getJSON(API + "/learning").catch(() => null)]);
      state.summary = summary;
      if (summary.config && summary.config.poll_ms) state.poll = summary.config.poll_ms;
      render(summary);
      renderTable(list);
      if (learning) renderLearning(learning); else $("learning").hidden = true;
      const log = summary.log || {};
      setStatus(log.degraded ? "degraded" : "live", log.degraded ? "live · log degraded (" + (log.fallback || "local") + ")" : "live · " + fmtTime(summary.now));
      document.body.dataset.loaded = "true";
    } catch (e) {
      if (e.message !== "auth") setStatus("error", "cannot reach the gateway (" + e.message + ")");
    } finally {
      state.busy = false;
    }
    if (state.again) return refresh();
  }

  function schedule() {
    clearTimeout(state.timer);
    if (!state.paused) state.timer = setTimeout(async () => { if (!document.hidden) await refresh(); schedule(); }, state.poll);
  }

  function setStatus(kind, text) {
    const el = $("status");
    el.dataset.state = state.paused ? "paused" : kind;
    el.textContent = state.paused ? "paused" : text;
  }

  // -- KPIs ------------------------------------------------------------------
  function kpi(id, value, note, attrs) {
    const el = $(id);
    el.querySelector(".value").replaceChildren(value instanceof Node ? value : document.createTextNode(value));
    el.querySelector(".note").textContent = note || "";
    for (const [k, v] of Object.entries(attrs || {})) el.dataset[k] = v === null || v === undefined ? "" : String(v);
  }

  // -- learning (router/dashboard/learning.py) -----------------------------------
  function renderLearning(ln) {
    $("learning").hidden = false;
    const set = (id, v) => { $(id).textContent = v; };
    const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %");
    const a = ln.artifact;
    set("l-artifact", a ? a.version : "none");
    set("l-artifact-note", a ? "trained " + (a.trained_at || "?") + " · reloads " + a.reloads + (a.last_error ? " · last refused: " + a.last_error : "") : "no classifier loaded");
    const lr = ln.learning, oc = ln.outcomes || {};
    if (!lr) { set("l-outcomes", "off"); set("l-outcomes-note", "set learning.judge and learning.shadow_rate"); return; }
    set("l-outcomes", oc.error ? "log down" : fmtInt(oc.total || 0));
    const st = lr.stats || {};
    set("l-outcomes-note", oc.error || ("shadow rate " + lr.shadow_rate + " · failed " + st.failed + " · over budget " + st.over_budget + " · " + (oc.log || "")));
    const q = (ln.quality || {}).current_artifact || {};
    set("l-apgr", q.apgr === undefined || q.apgr === null ? "–" : q.apgr.toFixed(3));
    set("l-apgr-note", q.note || (q.n + " pairs on this artifact · q_fast " + pct(q.q_fast) + " · q_strong " + pct(q.q_strong)));
    set("l-live", q.live_quality === undefined ? "–" : pct(q.live_quality));
    set("l-live-note", q.live_share === undefined ? "" : pct(q.live_share) + " sent to reasoning · " + pct(q.live_pgr) + " of the gap");
  }

  function render(sm) {
    const empty = sm.total === 0;
    $("empty").hidden = !empty;
    $("window-info").textContent = empty ? "" : "last " + fmtInt(sm.total) + " requests" + (sm.window.from ? " since " + fmtTime(sm.window.from, sm.now - sm.window.from > 86400) : "");
    const r = sm.routes, sh = sm.share;
    kpi("kpi-total", fmtInt(sm.total), empty ? "waiting for traffic" : fmtInt(sm.errors.total) + " errors · " + fmtPct(sh.fast) + " fast · " + fmtPct(sh.cache) + " cache", { value: sm.total });
    kpi("kpi-reasoning", empty ? "–" : fmtPct(sh.reasoning, 1), empty ? "" : fmtInt(r.reasoning) + " of " + fmtInt(sm.total) + " requests", { value: r.reasoning });
    const esc = sm.escalation;
    kpi("kpi-escalation", fmtPct(esc.rate, 1), esc.eligible ? fmtInt(esc.escalated) + " of " + fmtInt(esc.eligible) + " fast answers" : "no fast answers yet", { value: esc.escalated });
    const c = sm.cache;
    kpi("kpi-cache", fmtPct(c.hit_rate, 1), c.lookups ? fmtInt(c.exact) + " exact · " + fmtInt(c.semantic) + " semantic of " + fmtInt(c.lookups) : "no cache lookups", { value: c.hits });
    const d = sm.deer;
    kpi("kpi-deer", d.saved_tokens_est === null ? (d.requests ? "n/a" : "–") : fmtTokens(d.saved_tokens_est),
      d.requests ? fmtInt(d.early_exits) + " early exits of " + fmtInt(d.requests) + " · " + fmtTokens(d.thinking_tokens) + " used" : "no DEER runs yet", { value: d.saved_tokens_est });
    const co = sm.cost;
    const saved = h("span", { class: co.saved_pct > 0 ? "good" : "" , text: co.baseline ? fmtPct(co.saved_pct, 1) + " saved" : "–" });
    kpi("kpi-cost", saved, co.baseline ? fmtUsd(co.actual) + " vs " + fmtUsd(co.baseline) : "no priced requests", { value: co.saved_pct });

    drawRoutes(sm);
    drawDifficulty(sm);
    drawLatency(sm);
    drawCost(sm);
    drawDeer(sm);
    renderAgents(sm.agents);
    syncTenants(sm.tenants);
  }

  // -- agent sessions (policies/agent_turn.py) ----------------------------------
  function renderAgents(ag) {
    const sessions = (ag && ag.sessions) || [];
    $("agents").hidden = sessions.length === 0;
    if (!sessions.length) return;
    const t = ag.turns;
    $("agents-turns").textContent = fmtInt(ag.sessions_total) + " sessions · turns: " + fmtInt(t.task) + " task · " + fmtInt(t.relay) + " relay · " + fmtInt(t.summary) + " summary · " + fmtInt(t.chat) + " chat";
    $("agents-body").replaceChildren(...sessions.map((a) => h("tr", { "data-session": a.session },
      h("td", {}, h("code", { text: a.session.slice(0, 12) })), h("td", { text: a.tenant || "" }),
      h("td", { class: "num", text: fmtInt(a.turns.task) }), h("td", { class: "num", text: fmtInt(a.turns.relay) }),
      h("td", { class: "num", text: fmtInt(a.turns.summary) }), h("td", { class: "num", text: fmtInt(a.reasoning_calls) }),
      h("td", { class: "num", text: fmtInt(a.relay_reasoning) }), h("td", { text: (a.models || []).join(", ") }),
      h("td", { text: a.last ? fmtTime(a.last) : "" }))));
  }

  // -- charts ----------------------------------------------------------------
  function frame(id, height) {
    const box = $(id);
    const w = Math.max(240, Math.floor(box.clientWidth || 400));
    const svg = s("svg", { width: w, height, viewBox: "0 0 " + w + " " + height, role: "img" });
    box.replaceChildren(svg);
    return { svg, w, h: height, box };
  }

  function noData(f, text) {
    f.svg.append(s("text", { x: f.w / 2, y: f.h / 2, "text-anchor": "middle", class: "nodata", text }));
    f.svg.setAttribute("data-empty", "true");
  }

  // the top of a 4-tick axis: 4 x a round step (1, 2 or 5 x 10^k), so every tick is round
  function niceMax(v, integer = true) {
    if (v <= 0) return 4;
    const raw = v / 4, p = Math.pow(10, Math.floor(Math.log10(raw)));
    let step = 10 * p;
    for (const m of [1, 2, 5]) if (m * p >= raw * (1 - 1e-9)) { step = m * p; break; }
    return 4 * (integer ? Math.max(1, Math.round(step)) : step);
  }

  function yAxis(f, x0, y0, y1, max, fmt) {
    const g = s("g");
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4, y = y1 - ((y1 - y0) * i) / 4;
      g.append(s("line", { x1: x0, x2: f.w, y1: y, y2: y, class: i ? "grid-line" : "axis" }));
      g.append(s("text", { x: x0 - 6, y: y + 3, "text-anchor": "end", text: fmt(v) }));
    }
    f.svg.append(g);
  }

  function drawRoutes(sm) {
    const f = frame("chart-routes", 190);
    const b = sm.timeline.buckets;
    f.svg.setAttribute("data-total", String(sm.total));
    const legend = $("legend-routes");
    legend.replaceChildren(...ROUTES.map((k) => h("span", { "data-route": k }, h("i", { class: "sw", style: "background:" + COLORS[k] }), k + " " + fmtPct(sm.share[k]))));
    if (!b.length) return noData(f, "No requests yet");
    const L = 36, R = 4, T = 24, B = 22;
    // overall share as one 100% strip above the time bars
    let sx = L;
    for (const k of ["fast", "reasoning", "cache", "none"]) {
      const w = (f.w - L - R) * (sm.share[k] || 0);
      if (w <= 0) continue;
      f.svg.append(s("rect", { x: sx, y: 0, width: Math.max(1, w - 1), height: 8, rx: 2, fill: COLORS[k], "data-share": k }, s("title", { text: k + " " + fmtPct(sm.share[k], 1) })));
      sx += w;
    }
    const max = niceMax(Math.max(...b.map((x) => x.fast + x.reasoning + x.cache + x.none)));
    yAxis(f, L, T, f.h - B, max, (v) => fmtInt(v));
    const bw = (f.w - L - R) / b.length;
    const gap = bw > 6 ? Math.min(3, bw * 0.2) : 0;
    const g = s("g", { class: "bars" });
    b.forEach((bk, i) => {
      let y = f.h - B;
      for (const k of ["fast", "reasoning", "cache", "none"]) {
        if (!bk[k]) continue;
        const hh = ((f.h - B - T) * bk[k]) / max;
        y -= hh;
        g.append(s("rect", { x: L + i * bw + gap / 2, y, width: Math.max(1, bw - gap), height: hh, fill: COLORS[k], "data-route": k, "data-count": bk[k], rx: 1.5 },
          s("title", { text: fmtTime(bk.t) + " · " + k + ": " + bk[k] })));
      }
    });
    f.svg.append(g);
    const every = Math.max(1, Math.ceil(b.length / Math.floor((f.w - L) / 70)));
    b.forEach((bk, i) => {
      if (i % every) return;
      f.svg.append(s("text", { x: L + i * bw + bw / 2, y: f.h - 6, "text-anchor": "middle", text: fmtTime(bk.t) }));
    });
    const totals = { fast: 0, reasoning: 0, cache: 0 };
    b.forEach((bk) => ROUTES.forEach((k) => (totals[k] += bk[k])));
    for (const k of ROUTES) f.svg.setAttribute("data-" + k, String(totals[k]));
  }

  function drawDifficulty(sm) {
    const f = frame("chart-difficulty", 190);
    const d = sm.difficulty;
    f.svg.setAttribute("data-n", String(d.n));
    if (!d.n) return noData(f, "No classified requests yet");
    const L = 30, R = 8, T = 16, B = 22;
    const max = niceMax(Math.max(...d.bins));
    yAxis(f, L, T, f.h - B, max, (v) => fmtInt(v));
    const n = d.bins.length, bw = (f.w - L - R) / n;
    const th = d.threshold;
    const g = s("g", { class: "bars" });
    d.bins.forEach((c, i) => {
      const hh = ((f.h - B - T) * c) / max;
      const above = th !== null && d.edges[i] >= th - 1e-9;
      g.append(s("rect", { x: L + i * bw + 1, y: f.h - B - hh, width: Math.max(1, bw - 2), height: hh, rx: 1.5, class: "bar",
        fill: above ? COLORS.reasoning : COLORS.fast, "fill-opacity": above ? 0.85 : 0.75, "data-bin": i, "data-count": c },
        s("title", { text: d.edges[i].toFixed(2) + "–" + d.edges[i + 1].toFixed(2) + ": " + c })));
    });
    f.svg.append(g);
    for (const v of [0, 0.25, 0.5, 0.75, 1]) f.svg.append(s("text", { x: L + v * (f.w - L - R), y: f.h - 6, "text-anchor": v === 0 ? "start" : v === 1 ? "end" : "middle", text: String(v) }));
    if (th !== null) {
      const x = L + th * (f.w - L - R);
      f.svg.append(s("line", { id: "threshold-line", x1: x, x2: x, y1: T - 6, y2: f.h - B, stroke: "#1b2333", "stroke-width": 1.5, "stroke-dasharray": "4 3", "data-threshold": th }));
      const right = th > 0.6;
      f.svg.append(s("text", { x: right ? x - 4 : x + 4, y: T - 2, "text-anchor": right ? "end" : "start", style: "fill:#1b2333;font-weight:600",
        text: "threshold " + th.toFixed(2) + " · " + fmtInt(d.above) + " above" }));
    }
  }

  function drawLatency(sm) {
    const f = frame("chart-latency", 190);
    const lat = sm.latency;
    const rows = ROUTES.filter((k) => lat[k].n).map((k) => ({ k, label: k, ...lat[k], color: COLORS[k] }));
    if (lat.routing.n) rows.push({ k: "routing", label: "routing overhead", ...lat.routing, color: "#4b5568" });
    if (!rows.length) return noData(f, "No completed requests yet");
    const L = 112, R = 70, T = 6, rowH = Math.min(40, (f.h - T - 14) / rows.length);
    const max = Math.max(...rows.map((r) => r.p99 || 0), 1);
    const scale = (v) => ((f.w - L - R) * Math.log10(1 + v)) / Math.log10(1 + max);
    rows.forEach((r, i) => {
      const y = T + i * rowH;
      const g = s("g", { "data-route": r.k, "data-p50": r.p50, "data-p99": r.p99 });
      g.append(s("text", { x: 0, y: y + rowH / 2 + 3, style: "fill:#1b2333", text: r.label }));
      g.append(s("text", { x: 0, y: y + rowH / 2 + 15, text: "n=" + fmtInt(r.n) }));
      g.append(s("rect", { x: L, y: y + rowH * 0.3, width: Math.max(2, scale(r.p99)), height: rowH * 0.4, fill: r.color, "fill-opacity": 0.18, rx: 3 }));
      g.append(s("rect", { x: L, y: y + rowH * 0.3, width: Math.max(2, scale(r.p90)), height: rowH * 0.4, fill: r.color, "fill-opacity": 0.4, rx: 3 }));
      g.append(s("rect", { x: L, y: y + rowH * 0.3, width: Math.max(2, scale(r.p50)), height: rowH * 0.4, fill: r.color, "fill-opacity": 0.95, rx: 3 }));
      g.append(s("text", { x: f.w - R + 6, y: y + rowH / 2 + 3, style: "fill:#1b2333", text: fmtMs(r.p50) }));
      g.append(s("text", { x: f.w - R + 6, y: y + rowH / 2 + 15, text: "p99 " + fmtMs(r.p99) }));
      g.append(s("title", { text: r.label + ": p50 " + fmtMs(r.p50) + ", p90 " + fmtMs(r.p90) + ", p99 " + fmtMs(r.p99) }));
      f.svg.append(g);
    });
    f.svg.append(s("text", { x: L, y: f.h - 2, text: "log scale · dark p50, mid p90, light p99" }));
  }

  function drawCost(sm) {
    const f = frame("chart-cost", 190);
    const b = sm.timeline.buckets;
    if (!b.length || !sm.cost.baseline) return noData(f, b.length ? "No priced requests yet" : "No requests yet");
    const L = 52, R = 8, T = 22, B = 22;
    let a = 0, base = 0;
    const pts = b.map((bk) => ({ t: bk.t, a: (a += bk.cost), b: (base += bk.baseline) }));
    const max = niceMax(base, false);
    yAxis(f, L, T, f.h - B, max, (v) => "$" + (v === 0 ? "0" : Number(v.toPrecision(3)).toString()));
    const x = (i) => L + (pts.length === 1 ? (f.w - L - R) / 2 : (i * (f.w - L - R)) / (pts.length - 1));
    const y = (v) => f.h - B - ((f.h - B - T) * v) / max;
    const line = (key) => pts.map((p, i) => (i ? "L" : "M") + x(i).toFixed(1) + "," + y(p[key]).toFixed(1)).join("");
    const area = line("b") + pts.slice().reverse().map((p, j) => "L" + x(pts.length - 1 - j).toFixed(1) + "," + y(p.a).toFixed(1)).join("") + "Z";
    f.svg.append(s("path", { d: area, fill: "#16a34a", "fill-opacity": 0.1 }));
    f.svg.append(s("path", { d: line("b"), fill: "none", stroke: "#8c96ad", "stroke-width": 2, "stroke-dasharray": "5 3", id: "cost-baseline" }));
    f.svg.append(s("path", { d: line("a"), fill: "none", stroke: COLORS.fast, "stroke-width": 2.2, id: "cost-actual" }));
    if (pts.length === 1) {
      f.svg.append(s("circle", { cx: x(0), cy: y(pts[0].b), r: 3, fill: "#8c96ad" }));
      f.svg.append(s("circle", { cx: x(0), cy: y(pts[0].a), r: 3, fill: COLORS.fast }));
    }
    f.svg.append(s("text", { x: L, y: 10, style: "fill:#1b2333", text: "cumulative: " + fmtUsd(sm.cost.actual) + " actual vs " + fmtUsd(sm.cost.baseline) + " always-reasoning" }));
    f.svg.append(s("text", { x: L, y: f.h - 6, text: fmtTime(pts[0].t) }));
    f.svg.append(s("text", { x: f.w - R, y: f.h - 6, "text-anchor": "end", text: fmtTime(pts[pts.length - 1].t) }));
    f.svg.setAttribute("data-actual", String(sm.cost.actual));
    f.svg.setAttribute("data-baseline", String(sm.cost.baseline));
  }

  function drawDeer(sm) {
    const box = $("chart-deer");
    const d = sm.deer;
    if (!d.requests) {
      const f = frame("chart-deer", 190);
      return noData(f, "No reasoning requests under DEER yet");
    }
    const stat = (label, v) => h("div", {}, h("b", { text: v }), label);
    const stats = h("div", { class: "deer-stats" },
      stat("DEER runs", fmtInt(d.requests)), stat("early exits", fmtInt(d.early_exits) + " (" + fmtPct(d.early_exits / d.requests) + ")"),
      stat("probes", fmtInt(d.probes)), stat("thinking tokens", fmtTokens(d.thinking_tokens)), stat("probe tokens", fmtTokens(d.probe_tokens)),
      stat("saved (est.)", d.saved_tokens_est === null ? "n/a" : fmtTokens(d.saved_tokens_est)));
    const w = Math.max(240, box.clientWidth || 400), H = 54;
    const svg = s("svg", { width: w, height: H, viewBox: "0 0 " + w + " " + H, "data-requests": d.requests });
    const reasons = Object.entries(d.reasons).sort((a, b) => b[1] - a[1]);
    let x = 0;
    reasons.forEach(([k, c]) => {
      const ww = (w * c) / d.requests;
      svg.append(s("rect", { x, y: 0, width: Math.max(1, ww - 1), height: 14, fill: DEER_COLORS[k] || "#c9cfdc", rx: 2, "data-reason": k, "data-count": c }, s("title", { text: k + ": " + c })));
      x += ww;
    });
    let lx = 0;
    reasons.forEach(([k, c]) => {
      const label = k.replace("_", " ") + " " + c;
      svg.append(s("rect", { x: lx, y: 26, width: 9, height: 9, rx: 2, fill: DEER_COLORS[k] || "#c9cfdc" }));
      svg.append(s("text", { x: lx + 13, y: 34, text: label }));
      lx += 22 + label.length * 6;
    });
    const note = h("div", { class: "muted", style: "font-size:11px", text: d.saved_tokens_est === null ? "Saved tokens need full-length runs (natural end or DEER off) to compare with." : "Saved = mean thinking tokens of full-length runs − tokens used, per early exit." });
    box.replaceChildren(stats, svg, note);
  }

  // -- table -----------------------------------------------------------------
  function syncTenants(tenants) {
    const sel = $("f-tenant");
    const have = Array.from(sel.options).slice(1).map((o) => o.value);
    const want = Array.from(new Set([...(tenants || []), ...(sel.value ? [sel.value] : [])])).sort();
    if (have.join("\u0000") === want.join("\u0000")) return;
    const cur = sel.value;
    sel.replaceChildren(h("option", { value: "", text: "any" }), ...want.map((t) => h("option", { value: t, text: t })));
    sel.value = cur;
  }

  function routeTag(rec) {
    return h("span", { class: "tag " + (ROUTES.includes(rec.route) ? rec.route : "none"), text: rec.route });
  }

  function deerCell(dr) {
    if (!dr) return "–";
    const step = dr.exit_step === null || dr.exit_step === undefined ? "" : " @" + dr.exit_step;
    return (dr.reason || "none").replace("_", " ") + step + " · " + fmtTokens(dr.thinking_tokens) + " tok";
  }

  function renderTable(list) {
    const rows = list.data;
    $("decisions-count").textContent = fmtInt(list.count) + (list.count >= list.limit ? "+ shown" : " shown");
    $("decisions-count").dataset.count = String(list.count);
    $("decisions-empty").hidden = rows.length > 0;
    if (!rows.length && state.summary && state.summary.total === 0) $("decisions-empty").textContent = "No decisions logged yet.";
    else $("decisions-empty").textContent = "No decisions match these filters.";
    const sig = rows.map((r) => r.id).join(",") + "|" + filterQuery();
    if (sig === state.rowsSig) return;
    state.rowsSig = sig;
    const body = $("decisions-body");
    body.replaceChildren(...rows.map((r) => {
      const err = r.error || r.status >= 400;
      const diff = r.difficulty === null || r.difficulty === undefined ? "–" :
        h("span", {}, h("span", { class: "bar-mini" }, h("i", { style: "width:" + (100 * r.difficulty).toFixed(0) + "%;background:" + (r.threshold !== null && r.difficulty < r.threshold ? COLORS.fast : COLORS.reasoning) })), fmtP(r.difficulty));
      const tr = h("tr", { "data-decision-id": r.id, "data-route": r.route, class: (err ? "is-error " : "") + (state.selected === r.id ? "selected" : ""), onclick: () => openDetail(r.id) },
        h("td", { class: "mono", text: fmtTime(r.created) }),
        h("td", { text: r.tenant }),
        h("td", { text: r.alias || "–" }),
        h("td", { class: "endpoint", text: (r.api || r.endpoint || "–") + (r.stream ? " ⇢" : ""), title: (r.api || r.endpoint) + (r.stream ? " (stream)" : "") }),
        h("td", {}, routeTag(r), h("div", { class: "reason muted", text: reasonText(r) })),
        h("td", { class: "num" }, diff),
        h("td", {}, r.escalated ? h("span", { class: "tag reasoning", text: "yes" }) : h("span", { class: "muted", text: "no" })),
        h("td", {}, r.cache === "exact" || r.cache === "semantic" ? h("span", { class: "tag cache", text: r.cache }) : h("span", { class: "muted", text: r.cache })),
        h("td", { text: deerCell(r.deer) }),
        h("td", { text: r.upstream_model || "–", title: r.upstream_model || "" }),
        h("td", { class: "num", text: fmtInt(r.prompt_tokens) + " / " + fmtInt(r.completion_tokens) }),
        h("td", { class: "num", text: fmtMs(r.total_ms) }),
        h("td", { class: "num", text: fmtUsd(r.cost) }),
        h("td", {}, h("span", { class: "tag " + (err ? "err" : "ok"), text: err ? String(r.status) + (r.error ? " " + String(r.error).split(":")[0] : "") : String(r.status) })));
      return tr;
    }));
  }

  // why this route, with the figures compared (Decision.reason_code in router/types.py)
  function reasonText(r) {
    const th = r.threshold, st = r.selfref_threshold;
    if (r.reason === "classifier" && r.difficulty !== null && r.difficulty !== undefined && th !== null && th !== undefined)
      return fmtP(r.difficulty) + (r.difficulty >= th ? " ≥ " : " < ") + fmtP(th);
    if (r.reason === "escalated")
      return r.confidence === null || r.confidence === undefined ? "escalated: no logprobs" : "conf " + fmtP(r.confidence) + " < " + fmtP(st);
    return r.reason || "";
  }

  // -- detail ----------------------------------------------------------------
  function dl(pairs) {
    return h("dl", {}, ...pairs.filter((p) => p).flatMap(([k, v]) => [h("dt", { text: k }), h("dd", {}, v instanceof Node ? v : String(v))]));
  }

  function gauge(value, mark, colorFrom) {
    const g = h("div", { class: "gauge" });
    if (mark !== null && mark !== undefined) g.append(h("span", { class: "mark", style: "left:" + (100 * Math.min(1, mark)).toFixed(1) + "%", title: "threshold " + mark }));
    if (value !== null && value !== undefined) g.append(h("span", { class: "dot", style: "left:" + (100 * Math.min(1, value)).toFixed(1) + "%;background:" + colorFrom }));
    return g;
  }

  function detailView(r) {
    const kids = [];
    const dr = r.deer;
    kids.push(h("h4", { text: "Routing" }), dl([
      ["route", routeTag(r)],
      ["reason", r.reason || "–"],
      ["time", fmtTime(r.created, true)],
      ["tenant / alias", (r.tenant || "–") + " / " + (r.alias || "–")],
      ["endpoint", (r.api || r.endpoint) + (r.stream ? " (stream)" : "")],
      r.dropped && r.dropped.length ? ["fields dropped", r.dropped.join(", ")] : null,
      ["difficulty", r.difficulty === null ? "not classified" : fmtP(r.difficulty) + (r.threshold !== null ? (r.difficulty >= r.threshold ? " ≥ " : " < ") + "threshold " + fmtP(r.threshold) : "")],
    ]));
    if (r.difficulty !== null) kids.push(gauge(r.difficulty, r.threshold, r.difficulty >= (r.threshold ?? 2) ? COLORS.reasoning : COLORS.fast));
    kids.push(h("h4", { text: "Self-Ref" }), dl([
      ["escalated", r.escalated ? "yes" : "no"],
      ["confidence", r.confidence === null ? "–" : fmtP(r.confidence) + (r.selfref_threshold !== null ? " (threshold " + fmtP(r.selfref_threshold) + ")" : "")],
      r.selfref_mode ? ["mode", r.selfref_mode] : null,
    ]));
    kids.push(h("h4", { text: "Cache" }), dl([["result", r.cache], r.similarity !== null ? ["similarity", fmtP(r.similarity)] : null]));
    if (dr) kids.push(h("h4", { text: "DEER" }), dl([
      ["exit reason", dr.reason || "–"], ["exit step", dr.exit_step === null ? "–" : dr.exit_step], ["probes", dr.probes],
      ["thinking tokens", fmtInt(dr.thinking_tokens)], ["probe tokens", fmtInt(dr.probe_tokens)], ["answer tokens", fmtInt(dr.answer_tokens)],
      ["probe confidence", dr.confidence === null ? "–" : fmtP(dr.confidence)],
    ]));
    kids.push(h("h4", { text: "Upstream" }), dl([
      ["upstream", r.upstream || "–"], ["model", r.upstream_model || "–"], r.fallback_from ? ["fallback from", r.fallback_from] : null,
      ["tokens in / out", fmtInt(r.prompt_tokens) + " / " + fmtInt(r.completion_tokens)],
      ["status", r.status + (r.error ? " · " + r.error : "")],
    ]));
    const tot = Math.max(r.total_ms || 0, (r.routing_ms || 0) + (r.upstream_ms || 0), 1e-9);
    const other = Math.max(0, tot - (r.routing_ms || 0) - (r.upstream_ms || 0));
    kids.push(h("h4", { text: "Latency" }),
      h("div", { class: "split", title: "routing · upstream · other" },
        h("i", { style: "width:" + (100 * (r.routing_ms || 0) / tot) + "%;background:#4b5568" }),
        h("i", { style: "width:" + (100 * (r.upstream_ms || 0) / tot) + "%;background:" + (COLORS[r.route] || COLORS.none) }),
        h("i", { style: "width:" + (100 * other / tot) + "%;background:#c9cfdc" })),
      dl([["routing", fmtMs(r.routing_ms)], ["upstream", fmtMs(r.upstream_ms)], ["total", fmtMs(r.total_ms)],
        // the steps that add up to the total (router/pipeline/timings.py)
        ...Object.entries(r.steps || {}).map(([k, v]) => ["· " + k, fmtMs(v)])]));
    kids.push(h("h4", { text: "Cost" }), dl([
      ["estimated", fmtUsd(r.cost)], ["always-reasoning", fmtUsd(r.baseline_cost)],
      ["saved", r.baseline_cost ? fmtUsd(r.baseline_cost - r.cost) + " (" + fmtPct((r.baseline_cost - r.cost) / r.baseline_cost) + ")" : "–"],
    ]));
    if (r.prompt) kids.push(h("h4", { text: "Prompt (truncated)" }), h("pre", { text: r.prompt }));
    const raw = Object.assign({}, r);
    if (raw.embedding) raw.embedding = "[" + raw.embedding.length + " floats]";
    kids.push(h("details", {}, h("summary", { class: "muted", text: "raw record" }), h("pre", { text: JSON.stringify(raw, null, 2) })));
    return kids;
  }

  async function openDetail(id) {
    state.selected = id;
    for (const tr of document.querySelectorAll("#decisions-body tr")) tr.classList.toggle("selected", tr.dataset.decisionId === id);
    const drawer = $("detail");
    drawer.dataset.decisionId = id;
    $("detail-id").textContent = id;
    $("detail-body").replaceChildren(h("p", { class: "muted", text: "loading…" }));
    drawer.classList.add("open");
    drawer.setAttribute("aria-hidden", "false");
    if (location.hash !== "#d=" + id) history.replaceState(null, "", "#d=" + encodeURIComponent(id));
    try {
      const rec = await getJSON(API + "/decisions/" + encodeURIComponent(id));
      if (state.selected !== id) return;
      $("detail-body").replaceChildren(...detailView(rec));
      drawer.dataset.loaded = "true";
    } catch (e) {
      $("detail-body").replaceChildren(h("p", { class: "muted", text: e.message === "HTTP 404" ? "This decision is no longer in the log." : "Could not load: " + e.message }));
    }
  }

  function closeDetail() {
    state.selected = null;
    const drawer = $("detail");
    drawer.classList.remove("open");
    drawer.setAttribute("aria-hidden", "true");
    delete drawer.dataset.loaded;
    for (const tr of document.querySelectorAll("#decisions-body tr.selected")) tr.classList.remove("selected");
    history.replaceState(null, "", location.pathname + location.search);
  }

  // -- auth ------------------------------------------------------------------
  function showAuth(msg) {
    $("auth").hidden = false;
    setStatus("error", "admin key needed");
    if (msg) $("auth-form").querySelector("p").textContent = msg;
    state.paused = true;
  }

  // -- wiring ----------------------------------------------------------------
  function init() {
    $("empty-curl").textContent = $("empty-curl").textContent.replace("http://HOST", location.origin);
    $("filters").addEventListener("change", () => { state.rowsSig = ""; refresh(); });
    $("filters").addEventListener("reset", () => setTimeout(() => { state.rowsSig = ""; refresh(); }, 0));
    $("detail-close").addEventListener("click", closeDetail);
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDetail(); });
    $("pause").addEventListener("click", () => {
      state.paused = !state.paused;
      $("pause").textContent = state.paused ? "Resume" : "Pause";
      $("pause").setAttribute("aria-pressed", String(state.paused));
      setStatus("live", "live");
      if (!state.paused) refresh().then(schedule); else clearTimeout(state.timer);
    });
    $("auth-form").addEventListener("submit", (e) => {
      e.preventDefault();
      state.key = $("auth-key").value.trim();
      sessionStorage.setItem("thinkgate-key", state.key);
      $("auth").hidden = true;
      state.paused = false;
      refresh().then(schedule);
    });
    let resizeTimer = null;
    window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => state.summary && render(state.summary), 150); });
    document.addEventListener("visibilitychange", () => { if (!document.hidden && !state.paused) refresh(); });
    const m = location.hash.match(/^#d=(.+)$/);
    refresh().then(() => { if (m) openDetail(decodeURIComponent(m[1])); schedule(); });
  }

  init();
})();
