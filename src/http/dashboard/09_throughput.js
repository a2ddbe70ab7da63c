// ---- throughput: completed and failed tasks per second, from the counters of /api/supervisor ----
// The page keeps the last CHART_SECONDS of samples (one per poll) and draws
// them as two polylines in an inline SVG; nothing is stored on the server.
const CHART_SECONDS = 300;
const CHART_W = 600, CHART_H = 120;
const rates = [];  // {t (ms), completed, failed}: per second since the previous sample
let lastCounts = null;
const sumOf = (o) => PRIORITIES.reduce((n, p) => n + ((o && o[p]) || 0), 0);
function sampleThroughput(s, now) {
  const t = s.tasks || {};
  const c = { at: now, completed: sumOf(t.completed), failed: sumOf(t.failed) };
  const prev = lastCounts;
  lastCounts = c;
  // A counter that went down is another server (a restart): start again.
  if (!prev || c.completed < prev.completed || c.failed < prev.failed) { rates.length = 0; return; }
  const dt = (now - prev.at) / 1000;
  if (dt <= 0) return;
  // Queue depth per priority as sampled now: the thread pool's and the process pool's together.
  const queued = {};
  for (const p of PRIORITIES)
    queued[p] = (((s.pool || {}).queued || {})[p] || 0) + (((s.processes || {}).queued || {})[p] || 0);
  rates.push({ t: now, completed: (c.completed - prev.completed) / dt, failed: (c.failed - prev.failed) / dt, queued });
  while (rates.length && rates[0].t < now - CHART_SECONDS * 1000) rates.shift();
}
function renderThroughput() {
  const svg = $("tp-chart");
  const now = rates.length ? rates[rates.length - 1].t : 0;
  const peak = Math.max(0, ...rates.map((r) => Math.max(r.completed, r.failed)));
  const top = Math.max(1, peak);  // the chart's top: 1/s at least, so an idle service draws flat at the bottom
  const x = (t) => (CHART_W * (1 - (now - t) / (CHART_SECONDS * 1000))).toFixed(1);
  // 0/s two units above the bottom, so that a flat line stays visible; the top 4 units below the edge.
  const y = (v) => (CHART_H - 2 - (CHART_H - 6) * (v / top)).toFixed(1);
  for (const series of ["completed", "failed"]) {
    const line = svg.querySelector(`[data-series="${series}"]`);
    line.setAttribute("points", rates.map((r) => `${x(r.t)},${y(r[series])}`).join(" "));
    line.dataset.count = String(rates.length);
  }
  const last = rates[rates.length - 1];
  const f = (v) => (v == null ? "–" : v < 10 ? v.toFixed(1) : Math.round(v));
  summary($("tp-summary"), [["completed/s", f(last && last.completed)], ["failed/s", f(last && last.failed)],
    ["peak", f(rates.length ? peak : null)], ["window", `${Math.round(Math.min(CHART_SECONDS, rates.length ? (now - rates[0].t) / 1000 : 0))} s`]]);
  setText($("tp-top"), `${f(top)}/s`);
  // Queue depth per priority, with its own top (1 task at least).
  const qd = $("qd-chart"), qTop = Math.max(1, ...rates.map((r) => Math.max(...PRIORITIES.map((p) => r.queued[p]))));
  const qy = (v) => (80 - 2 - 74 * (v / qTop)).toFixed(1);
  for (const p of PRIORITIES) {
    const line = qd.querySelector(`[data-series="${p}"]`);
    line.setAttribute("points", rates.map((r) => `${x(r.t)},${qy(r.queued[p])}`).join(" "));
    line.dataset.count = String(rates.length);
  }
  setText($("qd-top"), String(qTop));
}

