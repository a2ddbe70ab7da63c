// ---- pools --------------------------------------------------------------------
function bar(kind, value, cap) {
  const pct = cap > 0 ? Math.min(100, (100 * value) / cap) : (value > 0 ? 100 : 0);
  const b = el("div", { class: "bar " + kind, title: `${value} ${kind} of capacity ${cap}` },
    el("i"), el("span", { text: `${value} ${kind}` }));
  b.firstChild.style.width = pct + "%";
  return b;
}
// How many tasks may run in all when a task of each priority starts
// (docs/foundation.md): low up to the pool size, normal also the normal
// reserve, high also the high reserve, critical always. null: no limit.
function priorityLimits(p) {
  const rn = p.reserve_normal || 0, rh = p.reserve_high || 0;
  const low = p.pool_size > 0 ? p.pool_size : p.max_threads > 0 ? p.max_threads - rn - rh : 0;
  if (low <= 0) return null;
  return { low, normal: low + rn, high: low + rn + rh, critical: Infinity };
}
function limitBar(used, limit) {
  if (limit === Infinity)
    return el("div", { class: "bar limit", title: "critical tasks always start, on an extra thread if every thread is busy" },
      el("i"), el("span", { text: "always starts" }));
  const full = used >= limit;
  const b = el("div", { class: "bar limit" + (full ? " full" : ""),
    title: `${used} tasks run in all; this priority starts a task while fewer than ${limit} run` },
    el("i"), el("span", { text: `${used} of ${limit}${full ? " full" : ""}` }));
  b.firstChild.style.width = Math.min(100, (100 * used) / limit) + "%";
  return b;
}
function renderBars(container, p, cap) {
  const lim = priorityLimits(p);
  const used = p.running_total ?? PRIORITIES.reduce((n, pr) => n + ((p.running || {})[pr] || 0), 0);
  const why = lim ? `Slots in use of each priority's limit. Low tasks start while fewer than ${lim.low} tasks run ` +
    `(the pool size), normal ones while fewer than ${lim.normal} (+${p.reserve_normal || 0} reserved for normal ` +
    `and above), high ones while fewer than ${lim.high} (+${p.reserve_high || 0} reserved for high and above); ` +
    "critical ones always. So low tasks can wait in the queue while threads are idle: those slots are kept for " +
    "higher priorities." : "No pool size: every priority starts at once.";
  const nodes = [el("div", { class: "head", text: "priority" }),
    el("div", { class: "head", text: `busy (of ${cap})` }), el("div", { class: "head", text: "queued" }),
    el("div", { class: "head", text: "limit", title: why })];
  for (const pr of PRIORITIES) {
    nodes.push(el("div", { text: pr }),
      bar("busy", (p.running || {})[pr] || 0, cap), bar("queued", (p.queued || {})[pr] || 0, cap),
      lim ? limitBar(used, lim[pr]) : el("div", { class: "kind", text: "none" }));
  }
  container.replaceChildren(...nodes);
}
function summary(container, pairs) {
  const nodes = [];
  pairs.forEach(([label, value], i) => {
    if (i) nodes.push(" · ");
    nodes.push(label + " ", el("b", { text: value }));
  });
  container.replaceChildren(...nodes);
}
function renderSupervisor(s) {
  setText($("sv-id"), s.id);
  setBadge($("sv-state"), s.state);
  setText($("sv-uptime"), fmtDuration(s.uptime_seconds));
  setText($("sv-active"), s.active_tasks ?? "–");
  setText($("sv-workers"), s.workers ?? "–");
  const p = s.pool || {};
  const cap = Math.max(p.max_threads || 0, (p.pool_size || 0) + (p.reserve_normal || 0) + (p.reserve_high || 0), p.threads || 0);
  summary($("pool-summary"), [["threads", `${p.threads ?? "–"} (${p.idle_threads ?? 0} idle)`], ["size", p.pool_size],
    ...(p.max_threads ? [["elastic min/max", `${p.min_threads ?? 0}/${p.max_threads}`]] : []),
    ["reserved normal/high", `${p.reserve_normal ?? 0}/${p.reserve_high ?? 0}`],
    ["running", p.running_total ?? 0], ["queued", p.queued_total ?? 0], ["completed", p.completed_total ?? 0]]);
  renderBars($("pool-bars"), p, cap);
  const pr = s.processes || {};
  $("procs").hidden = !pr.enabled;
  if (pr.enabled) {
    summary($("procs-summary"), [["children", `${pr.children ?? 0} (${pr.idle_children ?? 0} idle)`],
      ["size", pr.pool_size], ["spawned", pr.spawned ?? 0],
      ["restarts: crashed", pr.crashed ?? 0], ["killed", pr.killed ?? 0], ["recycled", pr.recycled ?? 0],
      ["completed", pr.completed_total ?? 0]]);
    renderBars($("procs-bars"), pr, Math.max(pr.pool_size || 0, pr.children || 0));
  }
  const chips = [];
  for (const a of s.aloops || [])
    chips.push(el("span", { class: "chip", text: `aloop ${a.name}${a.default ? " (default)" : ""}: ${a.running ? "running" : "stopped"}` }));
  for (const st of s.steps || [])
    chips.push(el("span", { class: "chip",
      text: `step ${st.name}: ${st.state}` + (st.depends_on && st.depends_on.length ? ` ← ${st.depends_on.join(", ")}` : "") }));
  $("structure").hidden = chips.length === 0;
  $("chips").replaceChildren(...chips);
}

