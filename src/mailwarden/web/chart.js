// Live chart of logins per second by outcome: polls /ui/admin/stats every 2 s and
// draws the rate between two polls on a <canvas>. No library, no inline script
// (the page's Content-Security-Policy allows scripts from /ui/static/ only).
"use strict";
(function () {
  const canvas = document.getElementById("chart");
  if (!canvas) { return; }
  const COLORS = { accepted: "#2f8f46", denied: "#c2412d", blocked: "#7a3fb0", unavailable: "#d49a00" };
  const POINTS = 90;  // three minutes at one point every two seconds
  const series = {};
  for (const name of Object.keys(COLORS)) { series[name] = []; }
  let previous = null;

  function legend(latest) {
    const box = document.getElementById("legend");
    box.textContent = "";
    for (const [name, color] of Object.entries(COLORS)) {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = color;
      item.appendChild(swatch);
      const rate = latest[name] === undefined ? "–" : latest[name].toFixed(2);
      const peak = Math.max(0, ...series[name]).toFixed(2);
      item.appendChild(document.createTextNode(name + ": " + rate + "/s (peak " + peak + "/s)"));
      box.appendChild(item);
    }
  }

  function draw() {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    canvas.width = width * ratio; canvas.height = height * ratio;
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.clearRect(0, 0, width, height);
    let top = 1;
    for (const values of Object.values(series)) { for (const v of values) { top = Math.max(top, v); } }
    const left = 44, bottom = height - 20, step = (width - left - 8) / (POINTS - 1);
    ctx.strokeStyle = "#dde2ea"; ctx.fillStyle = "#5a6475"; ctx.font = "11px sans-serif";
    for (let i = 0; i <= 4; i++) {
      const y = bottom - (bottom - 8) * i / 4;
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(width - 8, y); ctx.stroke();
      ctx.fillText((top * i / 4).toFixed(1), 4, y + 4);
    }
    ctx.fillText("logins/s, last " + (POINTS * 2 / 60) + " min", left, height - 4);
    for (const [name, values] of Object.entries(series)) {
      ctx.strokeStyle = COLORS[name]; ctx.lineWidth = 2; ctx.beginPath();
      const start = POINTS - values.length;
      const points = values.map(function (v, i) {
        return [left + (start + i) * step, bottom - (bottom - 8) * v / top];
      });
      points.forEach(function (p, i) { if (i === 0) { ctx.moveTo(p[0], p[1]); } else { ctx.lineTo(p[0], p[1]); } });
      ctx.stroke();
      ctx.fillStyle = COLORS[name];
      for (const p of points) { ctx.beginPath(); ctx.arc(p[0], p[1], 2.5, 0, 2 * Math.PI); ctx.fill(); }
    }
  }

  async function poll() {
    try {
      const response = await fetch("/ui/admin/stats", { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) { window.location = "/ui/admin/login"; return; }
      const now = await response.json();
      const latest = {};
      if (previous !== null && now.time > previous.time) {
        const seconds = now.time - previous.time;
        for (const name of Object.keys(COLORS)) {
          const rate = Math.max(0, ((now.results[name] || 0) - (previous.results[name] || 0)) / seconds);
          series[name].push(rate);
          if (series[name].length > POINTS) { series[name].shift(); }
          latest[name] = rate;
        }
      }
      previous = now;
      document.getElementById("totals").textContent = Object.keys(COLORS)
        .map(function (n) { return n + " " + (now.results[n] || 0); }).join(" · ");
      legend(latest);
      draw();
    } catch (err) {
      document.getElementById("totals").textContent = "no answer from the server";
    }
  }

  legend({});
  draw();
  poll();
  window.setInterval(poll, 2000);
})();
