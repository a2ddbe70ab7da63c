// ---- updates: pushed by the server (GET /api/events), polled when the stream fails ----------
// The stream sends a snapshot, then only what changed, at most once a second;
// the page keeps the state it was sent. If the stream cannot be opened or
// breaks (a proxy, the server's max_event_streams, an old token), the page
// polls every second as before and tries the stream again every
// STREAM_RETRY_POLLS polls that succeeded.
const STREAM_RETRY_POLLS = 5;
let stream = null, streaming = false;    // an EventSource; whether it delivered its snapshot
let pollTimer = null, pollRunning = false, pollsSinceStream = 0;
let lastSv = null, lastSvAt = 0;         // the supervisor as last sent, and when (uptime runs on here)
const workersNow = new Map();            // name -> W, in the server's order
function setMode() { setText($("sv-updates"), streaming ? "pushed" : stream ? "connecting…" : "polled every 1 s"); }
function applyEvent(d, whole) {
  setConnected(true);
  if (whole) workersNow.clear();
  for (const w of d.workers || []) workersNow.set(w.name, w);
  for (const n of d.workers_gone || []) workersNow.delete(n);
  if (d.supervisor) lastSv = d.supervisor;
  if (lastSv) {
    lastSv.uptime_seconds = d.uptime_seconds;
    lastSvAt = performance.now();
    renderServer(lastSv);
  }
  if (whole || d.workers || d.workers_gone) renderWorkers([...workersNow.values()]);
  // The stream carries the newest tasks; a status filter asks the server.
  if (d.tasks) { if (taskFilter.value) refreshTasks(); else renderTasks(d.tasks, ""); }
  if (whole) {
    noJobs = d.jobs === null;
    $("jobs").hidden = noJobs;
    if (d.jobs) renderJobs(d.jobs);
  } else if (d.jobs || d.job_types) {
    renderJobs({ types: d.job_types || undefined, jobs: d.jobs || [] });
  }
  document.body.dataset.loaded = "yes";
}
function startStream() {
  if (stream || typeof EventSource === "undefined") return;
  // An EventSource cannot send an Authorization header: the stream takes the token as ?token=.
  const t = tokenInput.value.trim();
  const es = stream = new EventSource("/api/events" + (t ? "?token=" + encodeURIComponent(t) : ""));
  es.addEventListener("snapshot", (m) => {
    if (stream !== es) return;
    if (!streaming) {
      streaming = true;
      setMode();
      if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; }
    }
    applyEvent(JSON.parse(m.data), true);
  });
  es.addEventListener("update", (m) => { if (stream === es) applyEvent(JSON.parse(m.data), false); });
  es.onerror = () => {
    if (stream !== es) return;
    es.close();  // no silent reconnects: poll, and say whether the server answers
    stream = null;
    streaming = false;
    pollsSinceStream = 0;
    setMode();
    if (!pollRunning && !pollTimer) poll();
  };
}
tokenInput.addEventListener("change", () => {
  if (stream) { stream.close(); stream = null; }
  startStream();  // with the new token; the page polls until its snapshot comes
  if (streaming) { streaming = false; setMode(); }
  if (!pollRunning && !pollTimer) poll();
});
// Once a second while the stream is open (nothing is sent when nothing
// changed): the uptime, the "ago" times and a point of the throughput chart.
setInterval(() => {
  if (!streaming || !lastSv) return;
  setText($("sv-uptime"), fmtDuration(lastSv.uptime_seconds + (performance.now() - lastSvAt) / 1000));
  for (const row of workerRows.values()) setText(row.cells.last_run, fmtAgo(row.w.last_run));
  sampleThroughput(lastSv, performance.now());
  renderThroughput();
}, 1000);

async function poll() {
  pollTimer = null;
  if (streaming) return;
  pollRunning = true;
  const filter = taskFilter.value;
  let ok = false;
  try {
    const [sv, ws, ts, js] = await Promise.all([getJson("/api/supervisor", 5000), getJson("/api/workers", 5000),
      getJson(tasksPath(), 5000), noJobs ? { missing: true } : getJson("/api/jobs", 5000)]);
    setConnected(true);
    ok = true;
    if (sv.data) {
      renderServer(sv.data);
      sampleThroughput(sv.data, performance.now());
      renderThroughput();
    }
    if (ws.data) renderWorkers(ws.data.workers || []);
    if (ts.data) renderTasks(ts.data.tasks || [], filter);
    noJobs = !!js.missing;
    $("jobs").hidden = noJobs;
    if (js.data) renderJobs(js.data);
    document.body.dataset.loaded = "yes";
  } catch (e) {
    setConnected(false);
    // The last state we saw may no longer be true: say that we do not know.
    setBadge($("sv-state"), "unknown");
    console.debug("poll failed:", e);  // the banner says it; not an error of the page
  } finally {
    pollRunning = false;
    if (!streaming) {
      if (ok && ++pollsSinceStream >= STREAM_RETRY_POLLS) { pollsSinceStream = 0; startStream(); }
      pollTimer = setTimeout(poll, 1000);
    }
  }
}
setMode();
routeHash();  // a link to #finished-jobs opens that page
if (typeof EventSource === "undefined") poll();
else {
  startStream();
  // A stream that neither opens nor fails (a buffering proxy) must not leave the page empty.
  setTimeout(() => { if (!streaming && !pollRunning && !pollTimer) poll(); }, 3000);
}
