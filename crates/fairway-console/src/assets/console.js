// Fairway console: plain script, no build step. Everything is fetched from the console's own
// JSON API, relative to the page (served at a path ending in '/').
"use strict";

(function () {
  const TOKEN_KEY = "fairway.console.token";
  const PANELS = ["events", "modules", "automations", "views", "store"];
  const REFRESH_MS = 2000;

  const $ = (id) => document.getElementById(id);

  // ---- small helpers ------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function fmtTime(ms) {
    if (ms === undefined || ms === null) return "—";
    const d = new Date(Number(ms));
    return isNaN(d.getTime()) ? "—" : d.toISOString().replace("T", " ").replace("Z", " UTC");
  }

  function fmtRate(x) {
    return x === null || x === undefined ? "—" : (Math.round(x * 100) / 100).toString();
  }

  function setStatus(message, isError) {
    const s = $("status");
    s.textContent = message || "";
    s.className = "status" + (isError ? " error" : "");
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function showTokenState() {
    $("token-state").textContent = token() ? "Admin token set" : "No admin token";
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    if (opts.admin) {
      opts.headers["Authorization"] = "Bearer " + token();
    }
    const res = await fetch("api/" + path, opts);
    const text = await res.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
    if (!res.ok) {
      const err = body && body.error ? body.error : { code: "http_" + res.status, message: text || res.statusText };
      throw new ApiError(res.status, err.code, err.message);
    }
    return body;
  }

  // Runs an admin action, asking for the token first when none is kept or it was refused.
  async function adminAction(label, run) {
    if (!token()) {
      const ok = await askToken();
      if (!ok) return;
    }
    try {
      await run();
      setStatus(label + ": done");
    } catch (e) {
      if (e.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        showTokenState();
        setStatus(label + ": " + e.message, true);
        if (await askToken()) {
          try { await run(); setStatus(label + ": done"); } catch (e2) { setStatus(label + ": " + e2.message, true); }
        }
      } else {
        setStatus(label + ": " + e.message, true);
      }
    }
    refreshActive();
  }

  // ---- the token dialog ------------------------------------------------------------------------

  let tokenResolve = null;

  function askToken() {
    const dialog = $("token-dialog");
    $("token-input").value = "";
    return new Promise((resolve) => {
      tokenResolve = resolve;
      if (typeof dialog.showModal === "function") dialog.showModal();
      else dialog.setAttribute("open", "");
      $("token-input").focus();
    });
  }

  function closeToken(saved) {
    const dialog = $("token-dialog");
    if (dialog.open) dialog.close();
    showTokenState();
    if (tokenResolve) { const r = tokenResolve; tokenResolve = null; r(saved); }
  }

  function setupToken() {
    $("token-button").addEventListener("click", () => askToken());
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = $("token-input").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      closeToken(true);
    });
    $("token-cancel").addEventListener("click", () => closeToken(false));
    $("token-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      closeToken(false);
    });
    $("token-dialog").addEventListener("cancel", () => closeToken(false));
    showTokenState();
  }

  // ---- panels ----------------------------------------------------------------------------------

  let active = "events";
  let timer = null;

  function show(panel) {
    if (!PANELS.includes(panel)) panel = "events";
    active = panel;
    for (const p of PANELS) {
      $("panel-" + p).hidden = p !== panel;
      const tab = $("tab-" + p);
      tab.setAttribute("aria-selected", p === panel ? "true" : "false");
      tab.tabIndex = p === panel ? 0 : -1;
    }
    if (location.hash !== "#" + panel) history.replaceState(null, "", location.pathname + location.search + "#" + panel);
    refreshActive();
    if (timer) clearInterval(timer);
    timer = setInterval(() => { if (active !== "events" && active !== "modules") refreshActive(); }, REFRESH_MS);
  }

  function refreshActive() {
    const load = { events: loadEvents, modules: loadModules, automations: loadAutomations, views: loadViews, store: loadStore }[active];
    load().catch((e) => setStatus(e.message, true));
  }

  // ---- events ----------------------------------------------------------------------------------

  const events = { before: null, history: [], selected: null, source: null, limit: 50 };

  function splitList(v) {
    return v.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  }

  function filterParams() {
    const p = new URLSearchParams();
    for (const t of splitList($("filter-type").value)) p.append("type", t);
    for (const t of splitList($("filter-tag").value)) p.append("tag", t);
    return p;
  }

  function rangeParams(p) {
    const from = $("filter-from").value.trim();
    const to = $("filter-to").value.trim();
    if (from) p.set("from", from);
    if (to) p.set("to", to);
    return p;
  }

  function eventRow(e, isNew) {
    const tags = el("td", {});
    for (const t of e.tags) tags.append(el("span", { class: "tag", text: t }));
    const row = el("tr", {
      class: isNew ? "new" : "",
      "data-position": e.position,
      tabindex: 0,
      "aria-label": "Event " + e.position + " " + e.type,
    },
      el("td", { class: "num", text: e.position }),
      el("td", { text: e.type }),
      tags,
      el("td", { text: fmtTime(e.recorded_at_ms) }));
    const open = () => openEvent(e.position);
    row.addEventListener("click", open);
    row.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); open(); } });
    if (events.selected === e.position) row.classList.add("selected");
    return row;
  }

  async function loadEvents() {
    const p = rangeParams(filterParams());
    p.set("limit", String(events.limit));
    if (events.before) p.set("before", events.before);
    const page = await api("events?" + p.toString());
    const body = $("events-body");
    body.replaceChildren(...page.events.map((e) => eventRow(e, false)));
    if (page.events.length === 0) {
      body.append(el("tr", {}, el("td", { colspan: 4, class: "muted", text: "No events match." })));
    }
    events.next = page.next_before;
    $("page-older").disabled = !page.next_before;
    $("page-newest").disabled = !events.before;
    events.head = page.head;
    caption();
  }

  function caption() {
    $("events-caption").textContent = "Head: " + (events.head || "empty store") + (events.before ? " — showing events before " + events.before : "");
  }

  function matchesRange(e) {
    const from = $("filter-from").value.trim();
    const to = $("filter-to").value.trim();
    try {
      if (from && BigInt(e.position) < BigInt(from)) return false;
      if (to && BigInt(e.position) > BigInt(to)) return false;
    } catch (_) { return true; }
    return true;
  }

  function startLive() {
    stopLive();
    if (!$("live-toggle").checked) {
      setLive("off", "off");
      return;
    }
    const src = new EventSource("api/events/live?" + filterParams().toString());
    events.source = src;
    setLive("connecting", "");
    src.addEventListener("open", () => setLive("live", "live"));
    src.addEventListener("caught_up", () => setLive("live", "live"));
    src.addEventListener("event", (m) => {
      let e;
      try { e = JSON.parse(m.data); } catch (_) { return; }
      try {
        if (!events.head || BigInt(e.position) > BigInt(events.head)) { events.head = e.position; caption(); }
      } catch (_) { /* not a number: keep the old head */ }
      if (events.before || !matchesRange(e)) return; // Not on the newest page: leave it alone.
      const body = $("events-body");
      if (body.querySelector("td.muted")) body.replaceChildren();
      if (body.querySelector('tr[data-position="' + CSS.escape(e.position) + '"]')) return;
      body.prepend(eventRow(e, true));
      while (body.children.length > events.limit) body.lastElementChild.remove();
    });
    src.addEventListener("error", () => setLive("reconnecting", ""));
  }

  function stopLive() {
    if (events.source) { events.source.close(); events.source = null; }
  }

  function setLive(text, cls) {
    const s = $("live-state");
    s.textContent = text;
    s.className = "pill " + cls;
  }

  async function openEvent(position) {
    events.selected = position;
    for (const r of $("events-body").querySelectorAll("tr")) {
      r.classList.toggle("selected", r.dataset.position === position);
    }
    const box = $("event-detail");
    try {
      const e = await api("events/" + encodeURIComponent(position));
      const tags = el("dd", {});
      for (const t of e.tags) tags.append(el("span", { class: "tag", text: t }));
      const meta = el("dd", {});
      const metaEntries = Object.entries(e.metadata || {});
      if (metaEntries.length === 0) meta.append(el("span", { class: "muted", text: "none" }));
      for (const [k, v] of metaEntries) meta.append(el("div", {}, el("code", { text: k }), " = ", v));
      const data = e.data_encoding === "json" ? JSON.stringify(e.data, null, 2) : String(e.data);
      box.replaceChildren(
        el("h3", { text: "Event " + e.position }),
        el("dl", { id: "event-detail-fields" },
          el("dt", { text: "Position" }), el("dd", { id: "detail-position", text: e.position }),
          el("dt", { text: "Type" }), el("dd", { id: "detail-type", text: e.type }),
          el("dt", { text: "Tags" }), tags,
          el("dt", { text: "Recorded" }), el("dd", { text: fmtTime(e.recorded_at_ms) }),
          el("dt", { text: "Id" }), el("dd", { text: e.id || "—" }),
          el("dt", { text: "Metadata" }), meta,
          el("dt", { text: "Size" }), el("dd", { text: e.size + " bytes (" + e.data_encoding + ")" })),
        el("h4", { text: "Data" }),
        el("pre", { id: "detail-data", "aria-label": "Event data", text: data }));
    } catch (err) {
      box.replaceChildren(el("h3", { text: "Event " + position }), el("p", { class: "error-text", text: err.message }));
    }
  }

  function setupEvents() {
    $("event-filter").addEventListener("submit", (ev) => {
      ev.preventDefault();
      events.before = null;
      events.history = [];
      loadEvents().then(() => setStatus("")).catch((e) => setStatus(e.message, true));
      startLive();
    });
    $("filter-clear").addEventListener("click", () => {
      for (const id of ["filter-type", "filter-tag", "filter-from", "filter-to"]) $(id).value = "";
      events.before = null;
      loadEvents().catch((e) => setStatus(e.message, true));
      startLive();
    });
    $("live-toggle").addEventListener("change", startLive);
    $("page-older").addEventListener("click", () => {
      if (!events.next) return;
      events.history.push(events.before);
      events.before = events.next;
      loadEvents().catch((e) => setStatus(e.message, true));
    });
    $("page-newest").addEventListener("click", () => {
      events.before = null;
      events.history = [];
      loadEvents().catch((e) => setStatus(e.message, true));
    });
  }

  // ---- modules ---------------------------------------------------------------------------------

  async function loadModules() {
    const data = await api("modules");
    const list = (xs) => xs.length ? xs.join(", ") : "—";
    $("modules-body").replaceChildren(...data.modules.map((m) => el("tr", {},
      el("th", { scope: "row" }, m.name, m.description ? el("div", { class: "muted", text: m.description }) : null),
      el("td", { text: m.kind }),
      el("td", { text: list(m.reads) }),
      el("td", { text: list(m.appends) }),
      el("td", {}, ...(m.routes.length ? m.routes.map((r) => el("div", {}, el("code", { text: r.method + " " + r.path }))) : ["—"])))));
    if (data.modules.length === 0) {
      $("modules-body").append(el("tr", {}, el("td", { colspan: 5, class: "muted", text: "This host serves no modules." })));
    }
    // Reload the board each time the panel opens (the host may have been restarted meanwhile).
    const board = $("board");
    board.removeAttribute("src");
    board.src = "api/board.svg";
  }

  // ---- automations -----------------------------------------------------------------------------

  async function loadAutomations() {
    const data = await api("automations");
    const box = $("automations");
    if (data.automations.length === 0) {
      box.replaceChildren(el("p", { class: "muted", text: "No automations." }));
      return;
    }
    box.replaceChildren(...data.automations.map((a) => {
      const stat = (label, value, id) => el("div", {}, el("dt", { text: label }), el("dd", { id, text: value }));
      const rows = a.dead_letters.map((d) => el("tr", { "data-position": d.position },
        el("td", { class: "num" }, el("a", { href: location.pathname + "#events", onclick: (ev) => { ev.preventDefault(); show("events"); openEvent(d.position); }, text: d.position })),
        el("td", { class: "num", text: d.attempts }),
        el("td", { class: "error-text", text: d.error }),
        el("td", { text: fmtTime(d.failed_at_ms) }),
        el("td", {},
          el("button", { type: "button", class: "primary replay", "aria-label": "Replay dead letter " + d.position + " of " + a.name,
            onclick: () => adminAction("Replay " + d.position, () => api("automations/" + encodeURIComponent(a.name) + "/dead-letters/" + d.position + "/replay", { method: "POST", admin: true })) }, "Replay"),
          " ",
          el("button", { type: "button", class: "danger purge", "aria-label": "Purge dead letter " + d.position + " of " + a.name,
            onclick: () => { if (confirm("Purge dead letter " + d.position + "? It will not be retried.")) adminAction("Purge " + d.position, () => api("automations/" + encodeURIComponent(a.name) + "/dead-letters/" + d.position, { method: "DELETE", admin: true })); } }, "Purge"))));
      const table = rows.length
        ? el("table", { class: "dead-letters", "aria-label": "Dead letters of " + a.name },
            el("thead", {}, el("tr", {}, ...["Trigger position", "Attempts", "Error", "Failed at", "Actions"].map((h) => el("th", { scope: "col", text: h })))),
            el("tbody", {}, ...rows))
        : el("p", { class: "muted no-dead-letters", text: "No dead letters." });
      const retrying = a.retrying.length
        ? el("p", { class: "muted" }, "Waiting for a retry: ", a.retrying.map((r) => r.position + " (attempt " + r.attempts + ": " + r.last_error + ")").join("; "))
        : null;
      return el("article", { class: "card automation", "data-name": a.name, "aria-label": "Automation " + a.name },
        el("h3", { text: a.name }),
        el("dl", { class: "stats" },
          stat("Lag behind head", a.lag),
          stat("Cursor", a.checkpoint || "—"),
          stat("In flight", a.in_flight),
          stat("Processed", a.processed),
          stat("Retries", a.retries),
          stat("Waiting for retry", a.retry_queue),
          stat("Dead letters", a.dead_letter_count, "dlq-count-" + a.name),
          stat("Max attempts", a.max_attempts || "—"),
          stat("Lease here", a.lease_held ? "yes" : "no")),
        retrying,
        el("h4", { text: "Dead letters" }),
        table,
        a.more_dead_letters ? el("p", { class: "muted", text: "More dead letters exist than are shown." }) : null);
    }));
  }

  // ---- views -----------------------------------------------------------------------------------

  async function loadViews() {
    const data = await api("views");
    const body = $("views-body");
    body.replaceChildren(...data.views.map((v) => {
      const r = v.rebuild;
      let last = "none from this console (" + v.rebuilds + " since start)";
      let progress = null;
      if (r) {
        if (r.state === "running") {
          const pct = Math.round(r.progress * 100);
          progress = el("progress", { max: 100, value: pct, "aria-label": "Rebuild progress of " + v.name }, pct + "%");
          last = "running since " + fmtTime(r.started_at_ms) + " (" + pct + "%)";
        } else if (r.state === "done") {
          last = "done " + fmtTime(r.finished_at_ms) + ", up to " + (r.reached || "—");
        } else {
          last = "failed " + fmtTime(r.finished_at_ms) + ": " + (r.error || "");
        }
      }
      const running = r && r.state === "running";
      return el("tr", { "data-name": v.name },
        el("th", { scope: "row", text: v.name }),
        el("td", { class: "num", text: v.checkpoint || "—" }),
        el("td", { class: "num", text: v.lag }),
        el("td", { class: "num", text: v.processed }),
        el("td", { class: "num", text: v.rebuilds }),
        el("td", { class: "rebuild-state" }, last, progress ? el("div", {}, progress) : null),
        el("td", {}, el("button", { type: "button", class: "danger rebuild", disabled: running, "aria-label": "Rebuild view " + v.name,
          onclick: () => { if (confirm("Rebuild " + v.name + " from the first event?")) adminAction("Rebuild " + v.name, () => api("views/" + encodeURIComponent(v.name) + "/rebuild", { method: "POST", admin: true })); } }, "Rebuild")));
    }));
    if (data.views.length === 0) {
      body.append(el("tr", {}, el("td", { colspan: 7, class: "muted", text: "No materialized views." })));
    }
  }

  // ---- store -----------------------------------------------------------------------------------

  const SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs) {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    return n;
  }

  function chart(rates, countersAvailable) {
    const W = 720, H = 220, L = 48, R = 12, T = 14, B = 28;
    const series = countersAvailable
      ? [["appends_per_s", "#2f6db5", "appends/s"], ["condition_failures_per_s", "#c0392b", "condition failures/s"]]
      : [["events_per_s", "#7a7a7a", "events/s"]];
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img", "aria-labelledby": "store-chart-caption" });
    const values = rates.flatMap((r) => series.map(([k]) => r[k]).filter((x) => x !== null && x !== undefined));
    const max = Math.max(1, ...values);
    const t0 = rates.length ? rates[0].at_ms : 0;
    const t1 = rates.length ? rates[rates.length - 1].at_ms : 1;
    const x = (t) => L + (t1 === t0 ? 0 : ((t - t0) / (t1 - t0)) * (W - L - R));
    const y = (v) => H - B - (v / max) * (H - T - B);
    root.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999" }));
    root.append(svg("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#999" }));
    for (const v of [0, max / 2, max]) {
      const label = svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#555" });
      label.textContent = fmtRate(v);
      root.append(label);
    }
    const span = svg("text", { x: W - R, y: H - 8, "text-anchor": "end", "font-size": 11, fill: "#555" });
    span.textContent = rates.length ? "last " + Math.round((t1 - t0) / 1000) + " s" : "waiting for samples";
    root.append(span);
    for (const [key, color] of series) {
      const pts = rates.filter((r) => r[key] !== null && r[key] !== undefined).map((r) => x(r.at_ms).toFixed(1) + "," + y(r[key]).toFixed(1));
      if (pts.length > 0) root.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
    }
    return root;
  }

  async function loadStore() {
    const s = await api("store");
    const last = s.rates.length ? s.rates[s.rates.length - 1] : null;
    const fig = (label, value, id) => [el("dt", { text: label }), el("dd", { id, text: value })];
    $("store-figures").replaceChildren(
      ...fig("Head position", s.head || "empty store", "store-head"),
      ...fig("Events", s.events === null ? "not counted by this backend" : s.events, "store-events"),
      ...fig("Appends/s (last sample)", s.counters_available ? fmtRate(last && last.appends_per_s) : "not counted by this host", "store-appends"),
      ...fig("Condition failures/s (last sample)", s.counters_available ? fmtRate(last && last.condition_failures_per_s) : "not counted by this host", "store-failures"),
      ...fig("Sampled every", (s.sample_every_ms / 1000) + " s, " + s.samples.length + " samples kept"));
    $("store-chart").replaceChildren(chart(s.rates, s.counters_available));
    $("store-chart-caption").replaceChildren(
      s.counters_available
        ? el("span", {}, el("span", { class: "legend-appends", text: "Appends/s" }), " and ", el("span", { class: "legend-failures", text: "condition failures/s" }), " over the sampled history")
        : el("span", {}, el("span", { class: "legend-events", text: "Events/s" }), " over the sampled history (this host does not count appends)"));
  }

  // ---- start -----------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    setupToken();
    setupEvents();
    for (const p of PANELS) $("tab-" + p).addEventListener("click", () => show(p));
    window.addEventListener("hashchange", () => show(location.hash.slice(1)));
    show(location.hash.slice(1) || "events");
    loadEvents().catch((e) => setStatus(e.message, true));
    startLive();
  });
})();
