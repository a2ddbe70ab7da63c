// ---- polling: one round at a time, never stacked ------------------------------------------
let connected = true;
// ---- cluster (an API server: /api/cluster) ----------------------------------------
let clusterPolling = false;  // started once /api/supervisor says the server shows a cluster
let noCluster = false;  // 404: this server shows no cluster; stop asking
let lastTotals = null;  // for tasks per second between two polls
let deadQueue = null;   // the queue whose dead letters are open
function renderCluster(c) {
  $("cluster").hidden = false;
  const t = c.totals || {};
  const now = performance.now(), done = (t.succeeded || 0) + (t.failed || 0);
  let rate = "–";
  if (lastTotals && now > lastTotals.at && done >= lastTotals.done)
    rate = ((done - lastTotals.done) / ((now - lastTotals.at) / 1000)).toFixed(1) + "/s";
  lastTotals = { at: now, done };
  summary($("cluster-summary"), [["workers", t.workers], ["waiting", t.waiting], ["running", t.running],
    ["delayed", t.delayed], ["retrying", t.retrying], ["retried", t.retried], ["dead", t.dead], ["throughput", rate]]);
  $("cluster-workers").replaceChildren(...(c.workers || []).map((w) => {
    const plugins = (w.labels || {}).plugins || "";
    const stale = w.heartbeat_age_s > 3;
    return el("tr", { "data-worker": w.name },
      el("td", { class: "name", title: w.name, text: w.name }), el("td", { class: "wrap", text: w.host }),
      el("td", { class: "num", text: w.pid }), el("td", { class: "wrap", text: (w.queues || []).join(", ") }),
      el("td", { class: "num", text: (w.running || []).length }), el("td", { class: "num", text: w.succeeded }),
      el("td", { class: "num", text: w.failed }), el("td", { class: "num", text: fmtDuration(w.uptime_s) }),
      el("td", { class: "num" + (stale ? " err" : ""), text: fmtSecs(w.heartbeat_age_s) + " ago" }),
      el("td", { class: "wrap kind", text: plugins }));
  }));
  if (!(c.workers || []).length)
    $("cluster-workers").replaceChildren(el("tr", {}, el("td", { colspan: 10, class: "empty", text: "no worker" })));
  labelRows($("cluster-workers"));
  $("cluster-queues").replaceChildren(...(c.queues || []).map((q) => {
    const w = q.waiting || {};
    return el("tr", { "data-queue": q.queue },
      el("td", { class: "name", title: q.queue, text: q.queue }),
      ...PRIORITIES.map((p) => el("td", { class: "num", text: w[p] || 0 })),
      el("td", { class: "num", text: q.running }), el("td", { class: "num", text: q.delayed }),
      el("td", { class: "num", text: q.retrying || 0 }),
      el("td", { class: "num" + (q.dead ? " err" : ""), text: q.dead }),
      el("td", { class: "num", text: q.oldest_waiting_s ? fmtSecs(q.oldest_waiting_s) : "–" }),
      el("td", { class: "actions" }, q.dead ? el("button", { type: "button", text: "Dead letters",
        onclick: () => openDead(q.queue) }) : null));
  }));
  labelRows($("cluster-queues"));
  renderPlugins(c.plugins || []);
}
function renderPlugins(list) {
  $("cluster-plugins-box").hidden = !list.length;
  $("cluster-plugins").replaceChildren(...list.map((p) => el("tr", { "data-plugin": p.name, title: p.description || "" },
    el("td", { class: "name", title: p.name, text: p.name }), el("td", { text: p.version }),
    el("td", { class: "wrap" }, ...(p.tasks || []).map((t, i) => el("span", {
      class: "mono", title: [t.kind, t.description].filter(Boolean).join(": "),
      text: (i ? ", " : "") + t.name }))),
    el("td", { class: "wrap" }, ...(p.job_types || []).map((j, i) => el("span", {
      class: "mono", title: j.description || "", text: (i ? ", " : "") + j.type }))))));
  labelRows($("cluster-plugins"));
}
async function openDead(queue) {
  deadQueue = queue;
  setText($("dead-queue"), queue);
  $("dead-view").hidden = false;
  try {
    const r = await getJson(`/api/cluster/queues/${encodeURIComponent(queue)}/dead?limit=100`, 5000);
    const list = (r.data && r.data.dead) || [];
    $("dead-rows").replaceChildren(...list.map((d) => el("tr", {},
      el("td", { class: "mono hash", text: d.task_id }),  // whole: it is what one greps the logs for
      el("td", { class: "name", title: d.name, text: d.name }),
      el("td", { class: "num", text: (d.attempts || []).length || d.attempt }),
      el("td", { class: "wrap err", text: `${d.error_type}: ${d.error_message}` }),
      el("td", { class: "actions" }, el("button", { type: "button", text: "Requeue",
        onclick: () => deadAction(`/api/cluster/queues/${encodeURIComponent(queue)}/dead/${encodeURIComponent(d.entry)}/requeue`) })))));
    if (!list.length) $("dead-rows").replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "empty", text: "none" })));
    labelRows($("dead-rows"));
  } catch (e) { setText($("dead-status"), String(e.message || e)); }
}
async function deadAction(path) {
  try {
    const res = await fetch(path, { method: "POST", headers: postHeaders(false) });
    setText($("dead-status"), res.ok ? "done" : await errorText(res));
  } catch (e) {
    setText($("dead-status"), "the request failed: " + (e.message || e));
  }
  if (deadQueue) openDead(deadQueue);
}
$("dead-close").addEventListener("click", () => { deadQueue = null; $("dead-view").hidden = true; });
$("dead-purge").addEventListener("click", () => {
  if (deadQueue && confirm(`Remove every dead letter of queue ${deadQueue}?`))
    deadAction(`/api/cluster/queues/${encodeURIComponent(deadQueue)}/dead/purge`);
});
async function pollCluster() {
  try {
    const c = await getJson("/api/cluster", 5000);
    if (c.missing) { noCluster = true; $("cluster").hidden = true; return; }
    if (c.data) renderCluster(c.data);
  } catch (e) {
    setText($("cluster-summary"), "the cluster cannot be read: " + (e.message || e));
  }
  if (!noCluster) setTimeout(pollCluster, 2000);
}

function setConnected(ok) {
  if (ok === connected) return;
  connected = ok;
  $("banner").classList.toggle("show", !ok);
  document.body.dataset.connected = ok ? "yes" : "no";
}
let noJobs = false;  // the server has no Jobs (404): stop asking, a 404 a second is noise
// What the supervisor's JSON says about the page's sections.
function renderServer(s) {
  renderSupervisor(s);
  if (s.cluster && !clusterPolling) { clusterPolling = true; pollCluster(); }
  // An API server runs no worker of its own: its empty Workers table would
  // only contradict the Cluster section.
  $("workers").hidden = !!(s.cluster && !s.workers);
  // Nor does it run tasks: its chart would be flat at 0 beside the cluster's throughput.
  $("throughput").hidden = $("workers").hidden;
}

