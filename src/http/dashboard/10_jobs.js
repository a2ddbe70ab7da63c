// ---- jobs -----------------------------------------------------------------------
const jobs = new Map();  // id -> {tr, cells, j}
const FINISHED = (s) => s === "done" || s === "failed";
function makeJobRow(j) {
  const cells = {};
  const tr = el("tr", { "data-job": j.id });
  cells.bar = el("div", { class: "progress", role: "progressbar", "data-field": "progress",
    "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": 0 }, el("i"), el("span"));
  tr.append(el("td", { class: "num", text: j.id }), (cells.type = el("td", { "data-field": "type", class: "mono" })),
    el("td", {}, (cells.status = el("span", { "data-field": "status" }))), el("td", {}, cells.bar),
    (cells.params = el("td", { "data-field": "params", class: "mono wrap params" })),
    (cells.started = el("td", { "data-field": "started", class: "num" })),
    (cells.finished = el("td", { "data-field": "finished", class: "num" })),
    (cells.duration = el("td", { "data-field": "duration", class: "num" })),
    (cells.result = el("td", { "data-field": "result", class: "result" })),
    (cells.message = el("td", { "data-field": "message", class: "wrap" })));
  return { tr, cells, j: { id: j.id } };
}
// A time of today as hh:mm:ss, of another day with its date; the ISO text is the title.
function fmtClock(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay ? d.toLocaleTimeString([], { hour12: false }) : d.toLocaleString([], { hour12: false });
}
function setTime(td, iso) {
  setText(td, fmtClock(iso));
  if (td.title !== (iso || "")) td.title = iso || "";
}
// Compact JSON, cut at 80 characters (the whole of it is the title).
function fmtParams(p) {
  const s = p && Object.keys(p).length ? JSON.stringify(p) : "";
  return { text: s.length > 80 ? s.slice(0, 79) + "…" : s, full: s };
}
// Fetches a done job's result and saves it: a fetch rather than a link, so
// that the request can carry the token when the server has one.
async function downloadResult(j, btn) {
  const status = $("job-status");
  btn.disabled = true;
  try {
    const res = await fetch(`/api/jobs/${encodeURIComponent(j.type)}/${j.id}/result`,
      { headers: postHeaders(false), cache: "no-store" });
    if (!res.ok) throw new Error(await errorText(res));
    const url = URL.createObjectURL(await res.blob());
    const a = el("a", { href: url, download: j.result_name || `job-${j.id}.result`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);  // after the browser has taken it
  } catch (e) {
    status.className = "err";
    setText(status, `Job #${j.id}: the download failed: ${e.message || e}`);
  } finally { btn.disabled = false; }
}
// What a finished job's Result cell offers: a done one its short result name
// and Download; a failed one "Run again": the same type with the same params,
// through POST /api/jobs/{type} as the form does (a failed job is not
// remembered for de-duplication, so this starts a new job).
function resultNodes(j) {
  if (j.status === "done" && j.result_name)
    return [el("span", { class: "mono", "data-field": "result-name", text: j.result_name + " " }),
      el("button", { type: "button", "data-action": "download", text: "Download",
        "aria-label": `download the result of job ${j.id}`, onclick: (e) => downloadResult(j, e.currentTarget) })];
  if (j.status === "failed" && j.type)
    return [el("button", { type: "button", "data-action": "run-again", text: "Run again",
      title: `start a new ${j.type} job with the same params`, "aria-label": `run job ${j.id} again`,
      onclick: (e) => runAgain(j, e.currentTarget) })];
  return [];
}
function renderResult(row) {
  const j = row.j, td = row.cells.result;
  const want = j.status === "done" && j.result_name ? "done " + j.result_name : j.status === "failed" ? "failed" : "";
  if (td.dataset.name === want) return;
  td.dataset.name = want;
  td.title = j.status === "done" ? j.result || j.result_name || "" : "";
  td.replaceChildren(...resultNodes(j));
}
async function runAgain(j, btn) {
  btn.disabled = true;
  try { await streamJob(j.type, j.params || {}, `Run again of #${j.id}: `); } finally { btn.disabled = false; }
}
// Queued and running jobs are always listed; of the finished ones the newest
// RECENT_JOBS only: the rest are on a page of their own (#finished-jobs),
// which pages through GET /api/jobs?status=finished.
const RECENT_JOBS = 10;
function applyJobLimit() {
  const finished = [...jobs.values()].filter((r) => FINISHED(r.j.status)).sort((a, b) => b.j.id - a.j.id);
  const keep = new Set(finished.slice(0, RECENT_JOBS));
  for (const r of jobs.values()) {
    const hide = FINISHED(r.j.status) && !keep.has(r);
    if (r.tr.hidden !== hide) r.tr.hidden = hide;
  }
  const more = finished.length > RECENT_JOBS;
  $("jobs-history-link").hidden = !more;
  setText($("jobs-history-link"), `all ${finished.length} finished jobs →`);
  setText($("jobs-shown"), more ? `the ${RECENT_JOBS} most recent of ${finished.length} finished jobs;` : "");
}

// ---- the finished jobs, a page of their own: GET /api/jobs?status=finished&offset=&limit= ----
const HISTORY_PAGE = 20;
let historyOffset = 0, historyOpen = false, historyTimer = null;
function historyRow(j) {
  const params = fmtParams(j.params);
  const msg = (j.status === "failed" ? j.error || j.message : j.message) || "";
  return el("tr", { "data-job": j.id, "data-status": j.status },
    el("td", { class: "num", text: j.id }), el("td", { class: "mono", "data-field": "type", text: j.type }),
    el("td", { "data-field": "status" }, el("span", { class: "badge job b-" + String(j.status).replace(/[^a-z]/gi, ""), text: j.status })),
    el("td", { class: "mono wrap params", "data-field": "params", title: params.full || null, text: params.text }),
    el("td", { class: "num", "data-field": "started", title: j.started_at || null, text: fmtClock(j.started_at) }),
    el("td", { class: "num", "data-field": "finished", title: j.finished_at || null, text: fmtClock(j.finished_at) }),
    el("td", { class: "num", "data-field": "duration", text: j.run_seconds == null ? "" : fmtSecs(j.run_seconds) }),
    el("td", { class: "result", "data-field": "result", title: j.result || null }, ...resultNodes(j)),
    el("td", { class: "wrap" + (j.status === "failed" ? " err" : ""), "data-field": "message", title: msg || null,
      text: shortHashes(msg) }));
}
async function loadHistory() {
  historyTimer = null;
  if (!historyOpen) return;
  const offset = historyOffset;
  let r;
  try { r = await getJson(`/api/jobs?status=finished&offset=${offset}&limit=${HISTORY_PAGE}`, 5000); }
  catch (e) { setText($("jh-status"), e.message || String(e)); return; }
  if (!historyOpen || offset !== historyOffset) return;  // closed, or another page asked meanwhile
  if (!r.data) { setText($("jh-status"), "this server has no jobs"); return; }
  const list = r.data.jobs || [], total = r.data.total || 0;
  if (offset > 0 && offset >= total) {  // fewer jobs now (the history is bounded): the last page
    historyOffset = Math.max(0, Math.floor((total - 1) / HISTORY_PAGE) * HISTORY_PAGE);
    return loadHistory();
  }
  setText($("jh-status"), "");
  $("jh-rows").replaceChildren(...list.map(historyRow));
  if (!list.length) $("jh-rows").append(el("tr", {}, el("td", { class: "empty", colspan: 9, text: "no finished job" })));
  labelRows($("jh-rows"));
  setText($("jh-range"), total ? `${offset + 1}–${offset + list.length} of ${total}, newest first` : "");
  $("jh-newer").disabled = offset === 0;
  $("jh-older").disabled = offset + list.length >= total;
}
// Asks again (once) when jobs finish while the page is open.
function historyChanged() { if (historyOpen && !historyTimer) historyTimer = setTimeout(loadHistory, 500); }
function routeHash() {
  const open = location.hash === "#finished-jobs" && !noJobs;
  $("job-history").hidden = !open;
  if (open && !historyOpen) {
    historyOpen = true;
    historyOffset = 0;
    loadHistory();
    $("job-history").scrollIntoView();
  }
  historyOpen = open;
}
window.addEventListener("hashchange", routeHash);
$("jh-back").addEventListener("click", () => { location.hash = "#jobs"; });
$("jh-newer").addEventListener("click", () => { historyOffset = Math.max(0, historyOffset - HISTORY_PAGE); loadHistory(); });
$("jh-older").addEventListener("click", () => { historyOffset += HISTORY_PAGE; loadHistory(); });
// Merges a job snapshot or a progress event; a finished job never goes back.
function updateJob(j) {
  let row = jobs.get(j.id);
  if (!row) {
    row = makeJobRow(j);
    jobs.set(j.id, row);
    const tbody = $("job-rows");
    const empty = tbody.querySelector(".empty");
    if (empty) empty.parentElement.remove();
    // newest first: insert before the first row with a smaller id
    const older = [...tbody.children].find((tr) => Number(tr.dataset.job) < j.id);
    tbody.insertBefore(row.tr, older || null);
    labelRows(tbody);
  }
  const old = row.j;
  if (FINISHED(old.status) && !FINISHED(j.status)) return;
  if (FINISHED(j.status) && !FINISHED(old.status)) historyChanged();
  const merged = Object.assign({}, old, j);
  if (!FINISHED(j.status) && old.status === j.status && (old.fraction || 0) > (j.fraction || 0))
    merged.fraction = old.fraction;  // a poll older than the stream: keep the newer progress
  row.j = merged;
  const c = row.cells;
  setText(c.type, merged.type || "");
  setBadge(c.status, merged.status, "job");
  const pct = Math.round(Math.max(0, Math.min(1, merged.fraction || 0)) * 100);
  c.bar.setAttribute("aria-valuenow", String(pct));
  c.bar.className = "progress" + (FINISHED(merged.status) ? " " + merged.status : "");
  c.bar.firstChild.style.width = pct + "%";
  setText(c.bar.lastChild, pct + "%");
  const text = merged.status === "failed" ? merged.error || merged.message
    : merged.status === "done" && merged.result ? `${merged.message ? merged.message + " → " : ""}${merged.result}`
    : merged.message;
  const full = (text || "") + (merged.from_storage ? " (from storage)" : "");
  setText(c.message, shortHashes(full));
  if (c.message.title !== full) c.message.title = full;
  c.message.className = "wrap" + (merged.status === "failed" ? " err" : "");
  const params = fmtParams(merged.params);
  setText(c.params, params.text);
  if (c.params.title !== params.full) c.params.title = params.full;
  setTime(c.started, merged.started_at);
  setTime(c.finished, merged.finished_at);
  setText(c.duration, merged.run_seconds == null ? "" : fmtSecs(merged.run_seconds));
  renderResult(row);
  applyJobLimit();
  followJob(merged);
}
// A job this page did not start (another page, curl, the service itself) is
// followed through its own event stream (GET /api/jobs/{type}/{id}/events,
// Server-Sent Events), so its progress shows as it happens rather than once
// a second; at most FOLLOW_MAX at a time, each closed when its job ends.
const FOLLOW_MAX = 4;
const following = new Map();  // job id -> EventSource
const formJobs = new Set(), unfollowable = new Set();  // followed by the form's POST; streams that failed
function followJob(j) {
  if (FINISHED(j.status) || !j.type || following.has(j.id) || formJobs.has(j.id) || unfollowable.has(j.id)
      || following.size >= FOLLOW_MAX || typeof EventSource === "undefined") return;
  const es = new EventSource(`/api/jobs/${encodeURIComponent(j.type)}/${j.id}/events`);
  following.set(j.id, es);
  const end = () => { es.close(); following.delete(j.id); };
  es.onmessage = (m) => {
    const e = JSON.parse(m.data);
    updateJob(Object.assign({ type: j.type }, e));
    if (FINISHED(e.status)) end();
  };
  es.onerror = () => { end(); unfollowable.add(j.id); };  // the updates still come, once a second
}
let jobTypesKey = "";
// data: {types, jobs}; an update of the event stream has only the jobs that changed (types undefined).
function renderJobs(data) {
  const types = data.types;
  if (types && types.join("\n") !== jobTypesKey) {
    jobTypesKey = types.join("\n");
    const sel = $("job-type"), cur = sel.value;
    sel.replaceChildren(...types.map((t) => el("option", { value: t, text: t })));
    if (types.includes(cur)) sel.value = cur;
  }
  for (const j of data.jobs || []) updateJob(j);
  if (jobs.size === 0 && !$("job-rows").firstChild)
    $("job-rows").append(el("tr", {}, el("td", { class: "empty", colspan: 10, text: "no jobs yet" })));
}

// Extracts complete top-level JSON objects from a streamed JSON array.
function objectSplitter(onObject) {
  let buf = "", pos = 0, depth = 0, inStr = false, esc = false, start = -1;
  return (chunk) => {
    buf += chunk;
    for (; pos < buf.length; pos++) {
      const ch = buf[pos];
      if (inStr) {
        if (esc) esc = false;
        else if (ch === "\\") esc = true;
        else if (ch === '"') inStr = false;
      } else if (ch === '"') inStr = true;
      else if (ch === "{") { if (depth++ === 0) start = pos; }
      else if (ch === "}" && --depth === 0) {
        onObject(JSON.parse(buf.slice(start, pos + 1)));
        buf = buf.slice(pos + 1); pos = -1; start = -1;
      }
    }
  };
}
// Starts a job (POST /api/jobs/{type}, with the token) and follows its
// stream to the end in the status line; `prefix` leads each line ("Run
// again of #3: ").
async function streamJob(type, params, prefix = "") {
  const status = $("job-status");
  const say = (cls, text) => {
    status.className = cls;
    setText(status, prefix + text);
    if (historyOpen) setText($("jh-status"), prefix + text);  // a Run again clicked on that page
  };
  say("", `Starting ${type}…`);
  let last = null;
  try {
    const res = await fetch(`/api/jobs/${encodeURIComponent(type)}`,
      { method: "POST", headers: postHeaders(true), body: JSON.stringify(params) });
    if (!res.ok) throw new Error(await errorText(res));
    const feed = objectSplitter((e) => {
      last = e;
      formJobs.add(e.id);
      updateJob(Object.assign({ type }, e));
      say(e.status === "failed" ? "err" : "", `Job #${e.id} (${type}): ${e.status} ${Math.round((e.fraction || 0) * 100)}%` +
        (e.message ? ` · ${e.message}` : "") + (e.error ? ` · ${e.error}` : ""));
    });
    const reader = res.body.getReader(), decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      feed(decoder.decode(value, { stream: true }));
    }
    feed(decoder.decode());
    if (!last) throw new Error("the server sent no progress events");
    if (!FINISHED(last.status)) say("err", `Job #${last.id}: the stream ended while ${last.status}.`);
    else if (last.status === "done") {
      say("ok", `Job #${last.id} (${type}) done` + (last.result ? `: ${shortHashes(last.result)}` : "."));
      status.title = last.result || "";
    }
  } catch (e) {
    say("err", e.message || String(e));
  }
  return last;
}
async function runJob(ev) {
  ev.preventDefault();
  const status = $("job-status"), type = $("job-type").value, runBtn = $("job-run");
  const say = (cls, text) => { status.className = cls; setText(status, text); };
  let params;
  try {
    const text = $("job-params").value.trim() || "{}";
    params = JSON.parse(text);
    if (params === null || typeof params !== "object" || Array.isArray(params)) throw new Error("params must be a JSON object");
  } catch (e) { say("err", "Invalid params: " + e.message); return; }
  if (!type) { say("err", "No job type selected."); return; }
  runBtn.disabled = true;
  try { await streamJob(type, params); } finally { runBtn.disabled = false; }
}
$("job-form").addEventListener("submit", runJob);

