// Live chart of login decisions: the last hour per 10 s by outcome, for every service
// or one, drawn as SVG, with a table of the hour by service and outcome. The data
// come from /ui/admin/stats (the server keeps the hour: loginseries.py), so the
// chart is full as soon as the page opens; polled every 5 s. No library, no inline
// script (the page's Content-Security-Policy allows scripts from /ui/static/ only).
"use strict";
(function () {
  const box = document.getElementById("chart");
  if (!box) { return; }
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = { accepted: "#2f8f46", denied: "#c2412d", blocked: "#7a3fb0", unavailable: "#d49a00" };
  const OUTCOMES = Object.keys(COLORS);
  const POLL_MS = 5000;
  const LABEL_EVERY = 600;  // a time label every ten minutes
  const W = 900, H = 300, LEFT = 44, RIGHT = 12, TOP = 10, BOTTOM = 270;
  const select = document.getElementById("service");
  let stats = null;

  function node(name, attrs, parent, text) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs)) { element.setAttribute(key, String(value)); }
    if (text !== undefined) { element.textContent = text; }
    parent.appendChild(element);
    return element;
  }

  function two(n) { return (n < 10 ? "0" : "") + n; }

  function clock(seconds) {
    const d = new Date(seconds * 1000);
    return two(d.getUTCHours()) + ":" + two(d.getUTCMinutes());
  }

  // Counts per bucket of one outcome, over the chosen service (or all).
  function row(outcome) {
    const series = stats.series;
    const out = new Array(series.buckets).fill(0);
    for (const [service, outcomes] of Object.entries(series.counts)) {
      if (select.value && service !== select.value) { continue; }
      const counts = outcomes[outcome];
      if (!counts) { continue; }
      counts.forEach(function (v, i) { out[i] += v; });
    }
    return out;
  }

  function services() {
    const names = Object.keys(stats.series.counts).sort();
    const chosen = select.value;
    while (select.options.length > 1) { select.remove(1); }
    for (const name of names) { select.add(new Option(name, name, false, name === chosen)); }
    if (chosen && names.indexOf(chosen) < 0) { select.add(new Option(chosen, chosen, false, true)); }
    return names;
  }

  function drawChart() {
    const series = stats.series;
    box.textContent = "";
    const svg = node("svg", { viewBox: "0 0 " + W + " " + H, id: "chart-svg" }, box);
    const rows = {};
    let top = 1;
    for (const outcome of OUTCOMES) {
      rows[outcome] = row(outcome);
      top = Math.max(top, ...rows[outcome]);
    }
    const step = (W - LEFT - RIGHT) / (series.buckets - 1);
    const x = function (i) { return LEFT + i * step; };
    const y = function (v) { return BOTTOM - (BOTTOM - TOP) * v / top; };
    for (let i = 0; i <= 4; i++) {
      const value = top * i / 4;
      node("line", { x1: LEFT, x2: W - RIGHT, y1: y(value), y2: y(value), stroke: "#dde2ea" }, svg);
      node("text", { x: LEFT - 6, y: y(value) + 4, "text-anchor": "end", "font-size": 11, fill: "#5a6475", class: "value" },
        svg, Number.isInteger(value) ? String(value) : value.toFixed(1));
    }
    for (let i = 0; i < series.buckets; i++) {
      const at = series.start + i * series.step;
      if (at % LABEL_EVERY !== 0) { continue; }
      node("line", { x1: x(i), x2: x(i), y1: TOP, y2: BOTTOM, stroke: "#eef0f4" }, svg);
      node("text", { x: x(i), y: H - 14, "text-anchor": "middle", "font-size": 11, fill: "#5a6475", class: "time" },
        svg, clock(at));
    }
    node("text", { x: W - RIGHT, y: H - 1, "text-anchor": "end", "font-size": 11, fill: "#5a6475" },
      svg, "logins per 10 s · UTC · now " + clock(series.start + (series.buckets - 1) * series.step));
    for (const outcome of OUTCOMES) {
      const values = rows[outcome];
      if (!values.some(function (v) { return v > 0; })) { continue; }
      const points = values.map(function (v, i) { return x(i).toFixed(1) + "," + y(v).toFixed(1); });
      node("polyline", { points: points.join(" "), fill: "none", stroke: COLORS[outcome], "stroke-width": 2,
        class: "line", "data-outcome": outcome }, svg);
    }
    const legend = document.getElementById("legend");
    legend.textContent = "";
    for (const outcome of OUTCOMES) {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = COLORS[outcome];
      item.appendChild(swatch);
      const total = rows[outcome].reduce(function (a, b) { return a + b; }, 0);
      item.appendChild(document.createTextNode(outcome + ": " + total + " in the last hour"));
      legend.appendChild(item);
    }
  }

  function drawTable(names) {
    const table = document.getElementById("breakdown");
    table.textContent = "";
    const head = table.createTHead().insertRow();
    for (const title of ["service"].concat(OUTCOMES, ["all"])) {
      const th = document.createElement("th");
      th.textContent = title;
      head.appendChild(th);
    }
    const body = table.createTBody();
    for (const name of names) {
      const tr = body.insertRow();
      tr.insertCell().textContent = name;
      let all = 0;
      for (const outcome of OUTCOMES) {
        const counts = stats.series.counts[name][outcome] || [];
        const total = counts.reduce(function (a, b) { return a + b; }, 0);
        all += total;
        const cell = tr.insertCell();
        cell.id = "count-" + name + "-" + outcome;
        cell.textContent = String(total);
      }
      tr.insertCell().textContent = String(all);
    }
    if (names.length === 0) { body.insertRow().insertCell().textContent = "No logins in the last hour."; }
  }

  async function poll() {
    try {
      const response = await fetch("/ui/admin/stats", { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) { window.location = "/ui/admin/login"; return; }
      stats = await response.json();
      document.getElementById("totals").textContent = OUTCOMES
        .map(function (n) { return n + " " + (stats.results[n] || 0); }).join(" · ");
      document.getElementById("process").textContent = "(counted by process " + stats.process + ")";
      if (!stats.series) { box.textContent = "This process keeps no metrics."; return; }
      const names = services();
      drawChart();
      drawTable(names);
    } catch (err) {
      document.getElementById("totals").textContent = "no answer from the server";
    }
  }

  select.addEventListener("change", function () { if (stats && stats.series) { drawChart(); } });
  poll();
  window.setInterval(poll, POLL_MS);
})();
