// ---- tasks ------------------------------------------------------------------------
// The status filter asks the server (?status=); the search box filters here.
const taskFilter = $("task-filter");
const tasksPath = () => "/api/tasks?limit=30" + (taskFilter.value ? "&status=" + encodeURIComponent(taskFilter.value) : "");
let lastTasks = { filter: "", list: [] };
function renderTasks(list, filter) {
  if (filter !== taskFilter.value) return;  // a reply to the filter that was chosen before
  lastTasks = { filter, list };
  const rows = list.slice().reverse().filter((t) => matchesSearch(t.name)).map((t) => el("tr",
    { "data-task": t.id, "data-status": t.status },
    el("td", { class: "num" }, el("button", { type: "button", class: "task", "data-action": "task-detail",
      title: "details of this task", text: t.id, onclick: () => showTask(t.id) })),
    el("td", { class: t.name ? "mono name" : "kind", "data-field": "name", title: t.name || null,
      text: t.name ? shortHashes(t.name) : "–" }),
    el("td", { text: t.priority }), el("td", { class: "kind", text: t.kind }),
    el("td", { "data-field": "status" }, el("span", { class: "badge b-" + String(t.status).replace(/[^a-z]/gi, ""), text: t.status })),
    el("td", { class: "num", text: fmtSecs(t.wait_seconds) }), el("td", { class: "num", text: fmtSecs(t.run_seconds) }),
    el("td", { class: "err wrap", "data-field": "error", text: t.error || "" })));
  if (rows.length === 0) {
    const what = searchInput.value.trim() ? "no task matches the search"
      : filter ? `no ${taskFilter.selectedOptions[0].text} task in the history` : "no tasks yet";
    rows.push(el("tr", {}, el("td", { class: "empty", colspan: 8, text: what })));
  }
  $("task-rows").replaceChildren(...rows);
  labelRows($("task-rows"));
  if (detailId !== null && !detailFinal) showTask(detailId);  // it may have moved on
}
// ---- a task's detail: GET /api/tasks/{id} ---------------------------------------------
let detailId = null, detailFinal = false;
async function showTask(id) {
  detailId = id;
  $("task-detail").hidden = false;
  setText($("td-title"), "#" + id);
  let r;
  try { r = await getJson(`/api/tasks/${id}`, 5000); } catch (e) { r = { error: e.message || String(e) }; }
  if (detailId !== id) return;  // another one was opened meanwhile
  const field = (k, v, title) => [el("dt", { text: k.replace("_", " ") }),
    el("dd", { "data-field": k, text: v ?? "–", title: title || null })];
  if (!r.data) {
    detailFinal = true;
    $("td-fields").replaceChildren(...field("error", r.missing ? "this task has left the history" : r.error));
    return;
  }
  const t = r.data, time = (iso) => (iso ? fmtClock(iso) : "–");
  detailFinal = ["completed", "failed", "canceled"].includes(t.status);
  $("td-fields").replaceChildren(...field("name", t.name || "–", t.name), ...field("status", t.status),
    ...field("priority", t.priority), ...field("kind", t.kind),
    ...field("queued", time(t.queued_at), t.queued_at), ...field("started", time(t.started_at), t.started_at),
    ...field("finished", time(t.finished_at), t.finished_at),
    ...field("wait", fmtSecs(t.wait_seconds)), ...field("run", fmtSecs(t.run_seconds)),
    // A process task: the child that ran it, and how that child ended if it died running it.
    ...(t.kind === "process" ? [...field("child_pid", t.child_pid ?? "–"), ...field("exit", exitText(t))] : []),
    ...field("error", t.error || "–"));
  $("td-fields").querySelector('[data-field="error"]').className = t.error ? "err" : "";
}
function exitText(t) {
  if (t.exit_signal) return `killed by ${t.exit_signal_name || "signal"} (${t.exit_signal})`;
  if (t.exit_code != null) return `exited with code ${t.exit_code}`;
  return "–";
}
$("td-close").addEventListener("click", () => { detailId = null; $("task-detail").hidden = true; });
async function refreshTasks() {
  const filter = taskFilter.value;
  try {
    const r = await getJson(tasksPath(), 5000);
    if (r.data) renderTasks(r.data.tasks || [], filter);
  } catch { /* the next poll says whether the server is reachable */ }
}
taskFilter.addEventListener("change", () => { $("task-rows").replaceChildren(); refreshTasks(); });
searchInput.addEventListener("input", () => {
  for (const row of workerRows.values()) row.tr.hidden = !matchesSearch(row.w.name);
  renderTasks(lastTasks.list, lastTasks.filter);
});

