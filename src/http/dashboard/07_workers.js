// ---- workers --------------------------------------------------------------------
const workerRows = new Map();  // name -> {tr, cells, w}
function workerAction(name, action) {
  const row = workerRows.get(name);
  if (!row) return;
  const msg = row.cells.message;
  msg.className = ""; setText(msg, "…");
  row.busy = true;
  for (const b of row.buttons) b.disabled = true;
  fetch(`/api/workers/${encodeURIComponent(name)}/${action}`, { method: "POST", headers: postHeaders(false) })
    .then(async (res) => {
      if (!res.ok) throw new Error(await errorText(res));
      const body = await res.json();
      if (body.worker) updateWorker(row, body.worker);
      let note = action === "trigger" ? (body.triggered === false ? "not triggered" : "triggered")
        : action === "start" ? (body.started === false ? "already active" : "started") : "stop requested";
      msg.className = "ok"; setText(msg, note);
    })
    .catch((e) => { msg.className = "err"; setText(msg, e.message || String(e)); })
    .finally(() => { row.busy = false; updateButtons(row); });
}
function makeWorkerRow(w) {
  const cells = {};
  const td = (field, cls) => (cells[field] = el("td", { "data-field": field, class: cls }));
  const tr = el("tr", { "data-worker": w.name });
  tr.append(td("name", "name"), td("kind", "kind"), el("td", {}, (cells.state = el("span", { "data-field": "state" }))),
    td("priority"), td("runs", "num"), td("errors", "num"), td("last_run"), td("queue_length", "num"));
  const buttons = ["trigger", "start", "stop"].map((a) =>
    el("button", { type: "button", "data-action": a, text: a[0].toUpperCase() + a.slice(1),
      onclick: () => workerAction(w.name, a) }));
  tr.append(el("td", { class: "actions" }, ...buttons), td("message", ""), td("last_error", "err wrap"));
  setText(cells.name, w.name);
  cells.name.title = w.name;
  return { tr, cells, buttons, w };
}
function updateButtons(row) {
  const [trigger, start, stop] = row.buttons;
  trigger.hidden = !row.w.can_trigger;
  trigger.disabled = row.w.state !== "active";
  start.disabled = row.w.state === "active";
  stop.disabled = row.w.state !== "active";
}
function updateWorker(row, w) {
  row.w = w;
  const c = row.cells;
  setText(c.kind, w.kind + (w.coroutine ? " (coro)" : ""));
  setBadge(c.state, w.state);
  setText(c.priority, w.priority);
  setText(c.runs, w.runs);
  setText(c.errors, w.errors);
  c.errors.style.color = w.errors > 0 ? "var(--red)" : "";
  setText(c.last_run, fmtAgo(w.last_run));
  c.last_run.title = w.last_run || "";
  setText(c.queue_length, w.kind === "queue" || w.queue_length ? w.queue_length : "–");
  // The last error, cut at 160 characters (whole in the title), and when it happened.
  const err = w.last_error_at ? `${w.last_error.length > 160 ? w.last_error.slice(0, 159) + "…" : w.last_error} (${fmtClock(w.last_error_at)})` : "";
  setText(c.last_error, err);
  const errTitle = w.last_error_at ? `${w.last_error_at}: ${w.last_error}` : "";
  if (c.last_error.title !== errTitle) c.last_error.title = errTitle;
  if (!row.busy) updateButtons(row);
}
function renderWorkers(list) {
  const tbody = $("worker-rows");
  const seen = new Set();
  let prev = null;
  for (const w of list) {
    seen.add(w.name);
    let row = workerRows.get(w.name);
    if (!row) { row = makeWorkerRow(w); workerRows.set(w.name, row); }
    updateWorker(row, w);
    row.tr.hidden = !matchesSearch(w.name);
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== row.tr) tbody.insertBefore(row.tr, want);
    prev = row.tr;
  }
  for (const [name, row] of workerRows)
    if (!seen.has(name)) { row.tr.remove(); workerRows.delete(name); }
  if (list.length === 0)
    tbody.replaceChildren(el("tr", {}, el("td", { class: "empty", colspan: 11, text: "no workers" })));
  labelRows(tbody);
}

