"use strict";
// All server-provided strings go through textContent or setAttribute, never innerHTML.
const PRIORITIES = ["low", "normal", "high", "critical"];
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}
function setText(e, v) { const s = v == null ? "" : String(v); if (e.textContent !== s) e.textContent = s; }
function setBadge(e, state, extra) {
  setText(e, state || "–");
  const cls = "badge b-" + String(state || "none").replace(/[^a-z]/gi, "") + (extra ? " " + extra : "");
  if (e.className !== cls) e.className = cls;
}
function fmtDuration(s) {
  if (s == null || !isFinite(s)) return "–";
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m ${String(sec).padStart(2, "0")}s`;
  if (m) return `${m}m ${String(sec).padStart(2, "0")}s`;
  return `${sec}s`;
}
function fmtAgo(iso) {
  if (!iso) return "never";
  const t = Date.parse(iso);
  if (isNaN(t)) return String(iso);
  const s = Math.max(0, (Date.now() - t) / 1000);
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(t).toLocaleString();
}
// Content hashes (job keys, result files, task ids: 32+ hex digits) are shown by
// their first 10 digits; the whole text goes into the element's title.
const HASH = /[0-9a-f]{32,}/gi;
function shortHashes(s) { return String(s).replace(HASH, (h) => h.slice(0, 10) + "…"); }
// Gives every cell of a table's rows the text of its column's header as
// data-label, which the narrow-screen card layout shows before the value.
function labelRows(tbody) {
  const head = tbody.closest("table").tHead;
  const labels = head ? [...head.rows[0].cells].map((th) => th.textContent.trim()) : [];
  for (const tr of tbody.rows)
    [...tr.cells].forEach((td, i) => {
      if (labels[i] && !td.hasAttribute("colspan") && td.dataset.label !== labels[i]) td.dataset.label = labels[i];
    });
}
// The header's search box: a case-insensitive substring of a task's or worker's name.
const searchInput = $("search");
function matchesSearch(name) {
  const q = searchInput.value.trim().toLowerCase();
  return !q || String(name || "").toLowerCase().includes(q);
}
function fmtSecs(s) {
  if (s == null) return "–";
  if (s < 0.001) return `${(s * 1e6).toFixed(0)} µs`;
  if (s < 1) return `${(s * 1000).toFixed(1)} ms`;
  return `${s.toFixed(2)} s`;
}

