// watchkeeper dashboard: refreshes the compound eye every 5 s and shows a cell's numbers on
// hover and keyboard focus; a report's Print button prints. Everything else is plain HTML from
// serve.
"use strict";
(function () {
  for (const button of document.querySelectorAll("button[data-print]")) {
    button.addEventListener("click", function () { window.print(); });
  }
})();
(function () {
  // A server page's live charts: redrawn by serve every 5 s.
  const charts = document.getElementById("charts");
  if (charts && charts.dataset.live) {
    window.setInterval(async function () {
      try {
        const r = await fetch(charts.dataset.live, { credentials: "same-origin", cache: "no-store", redirect: "manual" });
        if (r.type === "opaqueredirect" || r.status === 404) { window.location.assign("/"); return; }
        if (r.ok) charts.innerHTML = await r.text();
      } catch (e) {
        // serve restarting; try again in 5 s
      }
    }, 5000);
  }
})();
(function () {
  const eye = document.getElementById("eye");
  if (!eye) return;
  const tip = document.getElementById("tip");
  const tmax = document.getElementById("tmax");
  const STATES = { o: "ok", w: "warning", f: "fatal", p: "paused", n: "nodata" };
  const KEY = "watchkeeper.trafficMax";
  // The hover text's words, in the page's language.
  const WORDS = JSON.parse(eye.dataset.words || "{}");
  const word = (w, fallback) => (typeof w === "string" ? w : fallback);
  let cells = Array.from(eye.querySelectorAll("a.c"));

  function level(v, full) {
    if (v === "" || !(+v > 0)) return 0;
    return Math.max(1, Math.min(10, Math.ceil((+v / full) * 10)));
  }
  // A cell's class: `c` and, per gauge above zero, its letter and tenths (`u7` is CPU at 61–70 %).
  const GAUGES = "umdio";
  function paint(a) {
    const v = a.dataset.v.split(",");
    const full = +tmax.value / 1000; // rx/tx arrive in kbit/s
    const fulls = [100, 100, 100, full, full];
    let cls = "c";
    for (let i = 0; i < 5; i++) {
      const l = level(v[i], fulls[i]);
      if (l > 0) cls += " " + GAUGES[i] + l;
    }
    if (a.className !== cls) a.className = cls;
  }
  function rate(kbps) {
    if (kbps === "") return "–";
    const b = +kbps * 1000;
    if (b >= 1e9) return (b / 1e9).toFixed(1) + " Gb/s";
    if (b >= 1e6) return (b / 1e6).toFixed(1) + " Mb/s";
    if (b >= 1e3) return (b / 1e3).toFixed(1) + " kb/s";
    return b + " b/s";
  }
  function pct(x) {
    return x === "" ? "–" : x + " %";
  }
  function show(a) {
    const v = a.dataset.v.split(",");
    const states = WORDS.states || {};
    tip.textContent =
      a.dataset.server + " — " + word(states[a.dataset.state], a.dataset.state) +
      "\nCPU " + pct(v[0]) + " · " + word(WORDS.memory, "memory") + " " + pct(v[1]) + " · " + word(WORDS.disk, "disk") + " " + pct(v[2]) +
      "\n" + word(WORDS.in, "in") + " " + rate(v[3]) + " · " + word(WORDS.out, "out") + " " + rate(v[4]);
    const r = a.getBoundingClientRect();
    tip.hidden = false;
    tip.style.left = Math.min(window.scrollX + r.left, window.scrollX + document.documentElement.clientWidth - tip.offsetWidth - 8) + "px";
    tip.style.top = window.scrollY + r.bottom + 6 + "px";
  }
  function hide() {
    tip.hidden = true;
  }

  // serve drew the gauges for the traffic max it selects; only another choice repaints them.
  const saved = window.localStorage.getItem(KEY);
  if (saved && saved !== tmax.value && Array.from(tmax.options).some((o) => o.value === saved)) {
    tmax.value = saved;
    cells.forEach(paint);
  }
  tmax.addEventListener("change", function () {
    window.localStorage.setItem(KEY, tmax.value);
    cells.forEach(paint);
  });
  eye.addEventListener("mouseover", (e) => { const a = e.target.closest("a.c"); if (a) show(a); });
  eye.addEventListener("mouseout", (e) => { if (e.target.closest("a.c")) hide(); });
  eye.addEventListener("focusin", (e) => { const a = e.target.closest("a.c"); if (a) show(a); });
  eye.addEventListener("focusout", hide);

  async function refresh() {
    let answer;
    try {
      const r = await fetch(eye.dataset.src, { credentials: "same-origin", cache: "no-store" });
      if (r.status === 401 || r.status === 404) { window.location.assign("/"); return; }
      if (!r.ok) return;
      answer = await r.json();
    } catch (e) {
      return; // serve restarting; try again in 5 s
    }
    if (answer.v !== eye.dataset.v) { window.location.reload(); return; }
    const list = answer.cells === "" ? [] : answer.cells.split(";");
    for (let i = 0; i < list.length && i < cells.length; i++) {
      const a = cells[i], item = list[i];
      const state = STATES[item[0]], v = item.slice(1);
      if (a.dataset.state !== state) a.dataset.state = state;
      if (a.dataset.v !== v) { a.dataset.v = v; paint(a); }
    }
    document.querySelectorAll(".legend .key").forEach(function (k) {
      k.querySelector("strong").textContent = cells.filter((a) => a.dataset.state === k.dataset.state).length;
    });
  }
  window.setInterval(refresh, 5000);
})();
(function () {
  // The server list: the columns shown and the sort are the user's, kept in this browser. A
  // visit without `sort` in its address goes to the sort chosen last.
  const chooser = document.getElementById("columns");
  if (!chooser) return;
  const COLUMNS = "watchkeeper.serverColumns", SORT = "watchkeeper.serverSort";
  const params = new URLSearchParams(window.location.search);
  const sort = window.localStorage.getItem(SORT);
  if (params.has("sort")) {
    window.localStorage.setItem(SORT, params.get("sort"));
  } else if (sort && sort !== "name") {
    params.set("sort", sort);
    window.location.replace(window.location.pathname + "?" + params.toString());
    return;
  }
  const boxes = Array.from(chooser.querySelectorAll("input[data-col]"));
  let shown = null;
  try {
    shown = JSON.parse(window.localStorage.getItem(COLUMNS));
  } catch (e) {
    shown = null;
  }
  if (!Array.isArray(shown)) shown = chooser.dataset.default.split(",");
  function apply() {
    for (const box of boxes) box.checked = shown.includes(box.dataset.col);
    for (const cell of document.querySelectorAll("#servers [data-col]")) cell.hidden = !shown.includes(cell.dataset.col);
  }
  apply();
  chooser.hidden = false;
  chooser.addEventListener("change", function () {
    shown = boxes.filter((b) => b.checked).map((b) => b.dataset.col);
    window.localStorage.setItem(COLUMNS, JSON.stringify(shown));
    apply();
  });
})();
