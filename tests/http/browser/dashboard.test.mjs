// Drives the dashboard (src/http/dashboard/) of a running atask demo in headless Chromium.
//
//   node dashboard.test.mjs <demo-binary> [--screenshot file.png]
//   node dashboard.test.mjs --url http://127.0.0.1:8080 [--screenshot file.png]
//
// With a binary, starts it with `--port 0 --seconds 120` and reads the URL it prints.
// Checks, at 1280 px wide: (a) every worker of GET /api/workers has a row, with at least one worker
// of each kind; (b) Trigger on an event worker raises the run count shown; (c) a job run through the
// page's form streams to 100 % and shows done; (d) the page logged no console errors, page errors or
// dialogs, and does not scroll sideways. Then at 390 px (a phone): (e) the page does not scroll
// sideways and every worker action button lies inside the viewport; (f) the job's 64-digit result
// name is shown short, whole in the title. Then: (g) the search box keeps only the tasks and workers
// whose name contains the text; (h) the "failed" status filter lists failed tasks only, each with
// the error GET /api/tasks?status=failed gives; (i) while /api/supervisor fails (intercepted), the
// state badge shows "unknown", and the state again once it answers; (n) right after (a): the page
// gets its updates pushed (GET /api/events), and a worker stopped and started through the API shows
// there without the page asking a poll endpoint; (i) also reloads the page with /api/events refused:
// it polls, and goes back to the stream once that answers; (o) after (h): a task's detail (its
// times, wait, run, priority, kind, error) opens from its row and matches GET /api/tasks/{id}. Then, still at 390 px: (j) the
// job's row shows its params as compact JSON, its start and finish times, a duration and the short
// result name GET /api/jobs gives; (k) its Download button saves a file named so whose bytes equal
// GET /api/jobs/{type}/{id}/result; (l) with more than 10 finished jobs only the 10 newest are
// listed, with a link to the finished jobs' page of their own (#finished-jobs), which lists them
// newest first as GET /api/jobs?status=finished&offset=&limit=20 pages them (Older, Newer, Back),
// and the page still does not scroll sideways; (q) a failed job's "Run again" (inside the 390 px
// viewport) posts its type and params again and a new job with those params appears; (r) a failed
// process task's detail shows the pid of its child and the signal it died of (SIGABRT: the demo's
// crashing native call), as GET /api/tasks/{id} gives them; (m) the throughput
// chart (inline SVG) has drawn at least two points of each series, inside its box and the viewport, and so
// has the queue depth chart under it (one series per priority); (p) a job posted by the test, not
// the page, is followed by the page through its SSE stream (an EventSource on
// GET /api/jobs/{type}/{id}/events) to done, with its progress shown on the way.
// Exits 0 and prints one PASS line, or prints FAIL and exits 1. Never waits with fixed sleeps.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const GLOBAL_TIMEOUT_MS = 150_000;
const STEP_TIMEOUT_MS = 30_000;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

function usage(msg) {
  console.error(`dashboard.test: ${msg}\nusage: node dashboard.test.mjs <demo-binary> | --url <base-url> [--screenshot <png>]`);
  process.exit(2);
}
const argv = process.argv.slice(2);
let binary = null, baseUrl = null, screenshot = null;
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--url") baseUrl = argv[++i];
  else if (argv[i] === "--screenshot") screenshot = argv[++i];
  else if (argv[i].startsWith("--")) usage(`unknown option ${argv[i]}`);
  else binary = argv[i];
}
if (!binary === !baseUrl) usage("give either a demo binary or --url");

const log = (...a) => console.error("dashboard.test:", ...a);
let demo = null, demoExited = null, context = null, tmpDir = null;
const demoOutput = [];  // the demo's last lines, shown when something fails

function remember(line) {
  demoOutput.push(line);
  if (demoOutput.length > 40) demoOutput.shift();
}

// Starts the demo in its own process group (it forks worker processes) and resolves with its URL.
function startDemo(bin) {
  return new Promise((resolve, reject) => {
    if (!fs.existsSync(bin)) return reject(new Error(`demo binary not found: ${bin}`));
    demo = spawn(bin, ["--port", "0", "--seconds", "120"], { stdio: ["ignore", "pipe", "pipe"], detached: true });
    demoExited = new Promise((r) => demo.once("exit", (code, sig) => r({ code, sig })));
    const timer = setTimeout(() => reject(new Error("the demo printed no http://127.0.0.1:<port> URL within 60 s")), 60_000);
    let found = false, pending = "";
    demo.stdout.setEncoding("utf8");
    demo.stdout.on("data", (chunk) => {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop();
      for (const line of lines) {
        remember(line);
        const m = !found && line.match(/http:\/\/127\.0\.0\.1:(\d+)/);
        if (m) { found = true; clearTimeout(timer); resolve(`http://127.0.0.1:${m[1]}`); }
      }
    });
    demo.stderr.setEncoding("utf8");
    demo.stderr.on("data", (chunk) => chunk.split("\n").filter(Boolean).forEach((l) => remember("[stderr] " + l)));
    demo.once("error", (e) => { clearTimeout(timer); reject(new Error(`cannot start ${bin}: ${e.message}`)); });
    demoExited.then(({ code, sig }) => {
      if (!found) { clearTimeout(timer); reject(new Error(`the demo exited (code ${code}, signal ${sig}) before printing its URL`)); }
    });
  });
}

async function stopDemo() {
  if (!demo || demo.exitCode !== null || demo.signalCode !== null) return;
  try { process.kill(-demo.pid, "SIGTERM"); } catch { /* already gone */ }
  const exited = await Promise.race([demoExited.then(() => true), new Promise((r) => setTimeout(() => r(false), 8000))]);
  if (!exited) try { process.kill(-demo.pid, "SIGKILL"); } catch { /* already gone */ }
}

async function cleanup() {
  if (context) {
    const c = context;
    context = null;
    await Promise.race([c.close().catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
  }
  await stopDemo();
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
}

function fail(err) {
  console.error(`FAIL dashboard: ${err && err.message ? err.message : err}`);
  if (demoOutput.length) console.error("--- last lines of the demo's output ---\n" + demoOutput.join("\n"));
}

const globalTimer = setTimeout(async () => {
  fail(new Error(`global timeout of ${GLOBAL_TIMEOUT_MS / 1000} s`));
  await Promise.race([cleanup(), new Promise((r) => setTimeout(r, 15_000))]);
  process.exit(1);
}, GLOBAL_TIMEOUT_MS);

async function api(base, p) {
  const res = await fetch(base + p, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`GET ${p}: HTTP ${res.status} ${await res.text()}`);
  return res.json();
}
// A CSS attribute-selector string for any name.
const cssString = (s) => '"' + String(s).replace(/["\\]/g, "\\$&").replace(/\n/g, "\\a ") + '"';

async function main() {
  const base = baseUrl ? baseUrl.replace(/\/+$/, "") : await startDemo(binary);
  log(`dashboard at ${base}/`);

  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), "atask-dash-"));
  context = await chromium.launchPersistentContext(tmpDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  let failingOnPurpose = false;  // (i) fails requests: the browser logs each as a console error
  page.on("console", (m) => {
    if (m.type() === "error" && !(failingOnPurpose && /Failed to load resource/.test(m.text())))
      problems.push(`console error: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("dialog", (d) => { problems.push(`unexpected dialog: ${d.message()}`); d.dismiss().catch(() => {}); });

  await page.goto(base + "/", { waitUntil: "domcontentloaded" });
  await page.waitForSelector("body[data-loaded=yes]");

  // (a) every worker has a row showing its name as text; one of each kind at least.
  const workers = (await api(base, "/api/workers")).workers;
  const kinds = ["background", "event", "interval", "queue"];
  for (const k of kinds)
    if (!workers.some((w) => w.kind === k)) throw new Error(`(a) GET /api/workers has no ${k} worker`);
  const names = workers.map((w) => w.name);
  await page.waitForFunction((names) => {
    const rows = [...document.querySelectorAll("tr[data-worker]")];
    return names.every((n) => rows.some((tr) => tr.dataset.worker === n
      && tr.querySelector('[data-field="name"]').textContent === n));
  }, names).catch(() => { throw new Error(`(a) not every worker has a row showing its name: ${JSON.stringify(names)}`); });
  log(`(a) ok: ${names.length} worker rows`);

  // (n) updates are pushed (GET /api/events): a worker stopped and started again through the API
  // (not the page) shows on the page, which meanwhile asks none of the poll endpoints.
  await page.waitForFunction(() => document.querySelector("[data-testid=updates]").textContent === "pushed")
    .catch(async () => { throw new Error(`(n) the page says updates are '${await page.textContent("[data-testid=updates]")}', not 'pushed'`); });
  const pushedName = workers.find((w) => w.kind === "background" && !w.coroutine && w.state === "active")?.name;
  if (!pushedName) throw new Error("(n) no active background worker to stop and start");
  const polls = [];
  const onRequest = (req) => {
    const u = new URL(req.url());
    if (req.method() === "GET" && /^\/api\/(supervisor|workers|tasks|jobs)$/.test(u.pathname)) polls.push(u.pathname + u.search);
  };
  page.on("request", onRequest);
  const stateOf = `tr[data-worker=${cssString(pushedName)}] [data-field="state"]`;
  const control = async (action) => {
    const res = await fetch(`${base}/api/workers/${encodeURIComponent(pushedName)}/${action}`,
      { method: "POST", signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`(n) POST ${action} '${pushedName}': HTTP ${res.status} ${await res.text()}`);
  };
  await control("stop");
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "stopped", stateOf)
    .catch(async () => { throw new Error(`(n) '${pushedName}' stopped through the API shows '${await page.textContent(stateOf)}'`); });
  await control("start");
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === "active", stateOf)
    .catch(async () => { throw new Error(`(n) '${pushedName}' started again through the API shows '${await page.textContent(stateOf)}'`); });
  page.off("request", onRequest);
  if (polls.length) throw new Error(`(n) the page polled while its stream was open: ${polls.join(", ")}`);
  log(`(n) ok: '${pushedName}' stopped and started through the API, pushed to the page without a poll`);

  // (b) Trigger raises the displayed run count of an event worker.
  const ev = workers.find((w) => w.kind === "event" && w.can_trigger && w.state === "active");
  if (!ev) throw new Error("(b) no active, triggerable event worker");
  const row = page.locator(`tr[data-worker=${cssString(ev.name)}]`);
  const runsCell = row.locator('[data-field="runs"]');
  const before = Number(await runsCell.textContent());
  if (!Number.isFinite(before)) throw new Error(`(b) run count of '${ev.name}' is not a number`);
  await row.locator('[data-action="trigger"]').click();
  await page.waitForFunction(([sel, n]) => Number(document.querySelector(sel)?.textContent) > n,
    [`tr[data-worker=${cssString(ev.name)}] [data-field="runs"]`, before])
    .catch(() => { throw new Error(`(b) run count of '${ev.name}' stayed at ${before} after Trigger`); });
  const after = Number(await runsCell.textContent());
  const triggerMsg = await row.locator('[data-field="message"]').textContent();
  if (!/triggered/.test(triggerMsg)) throw new Error(`(b) Trigger showed '${triggerMsg}'`);
  log(`(b) ok: '${ev.name}' runs ${before} -> ${after}`);

  // (c) run a job through the form; its bar reaches 100 and it shows done, from the stream.
  const { types } = await api(base, "/api/jobs");
  if (!types || !types.length) throw new Error("(c) GET /api/jobs lists no job types");
  const stamp = `${Date.now()}-${process.pid}`;
  await page.selectOption("#job-type", types[0]);
  await page.fill("#job-params", JSON.stringify({ run: stamp }));
  // Record every progress value the job's bar shows, to see the stream update it live.
  await page.evaluate(() => {
    window.__seen = {};
    new MutationObserver((ms) => { for (const m of ms) {
      const bar = m.target, tr = bar.closest && bar.closest("tr[data-job]");
      if (tr && bar.getAttribute("role") === "progressbar")
        (window.__seen[tr.dataset.job] ||= new Set()).add(bar.getAttribute("aria-valuenow"));
    } }).observe(document.getElementById("job-rows"), { subtree: true, attributes: true, attributeFilter: ["aria-valuenow"] });
  });
  await page.click("#job-run");
  let job = null;
  for (const deadline = Date.now() + STEP_TIMEOUT_MS; !job && Date.now() < deadline;) {
    job = (await api(base, "/api/jobs")).jobs.find((j) => j.params && j.params.run === stamp);
    if (!job) await new Promise((r) => setTimeout(r, 200));  // polling the API, not synchronising the page
  }
  if (!job) throw new Error(`(c) no job with params {"run":"${stamp}"} appeared in GET /api/jobs`);
  const jobSel = `tr[data-job="${job.id}"]`;
  await page.waitForFunction((sel) => {
    const bar = document.querySelector(sel + ' [data-field="progress"]');
    const st = document.querySelector(sel + ' [data-field="status"]');
    return bar && bar.getAttribute("aria-valuenow") === "100" && st && st.textContent.trim() === "done";
  }, jobSel, { timeout: 90_000 }).catch(async () => {
    const st = await page.locator(`${jobSel} [data-field="status"]`).textContent({ timeout: 1000 }).catch(() => "no row");
    throw new Error(`(c) job #${job.id} (${types[0]}) did not reach 100 % / done on the page (status: ${st})`);
  });
  await page.waitForFunction((id) => new RegExp(`Job #${id} .*done`).test(document.getElementById("job-status").textContent),
    job.id, { timeout: 15_000 }).catch(async () => {
    throw new Error(`(c) the form's stream did not report job #${job.id} done: '${await page.textContent("#job-status")}'`);
  });
  const seen = await page.evaluate((id) => [...(window.__seen[id] || [])], String(job.id));
  log(`(c) ok: job #${job.id} (${types[0]}) done; progress values shown: ${seen.join(", ") || "(row created at 100)"}`);

  // (d) nothing went wrong in the page, and the server stayed reachable.
  if (await page.isVisible("#banner")) problems.push("the 'disconnected' banner is showing");
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  if (problems.length) throw new Error("(d) " + problems.join("; "));
  const wide = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  if (wide[0] > wide[1]) throw new Error(`(d) at 1280 px the page is ${wide[0]} px wide: it scrolls sideways`);
  log("(d) ok: no console errors, page errors or dialogs, no sideways scroll at 1280 px");

  // (e) a phone: nothing to scroll sideways, every worker action button within reach.
  await page.setViewportSize({ width: 390, height: 844 });
  const layoutAt390 = () => {
    const vw = window.innerWidth;
    const buttons = [...document.querySelectorAll("tr[data-worker] [data-action]")].filter((b) => !b.hidden);
    const outside = buttons.map((b) => [b, b.getBoundingClientRect()])
      .filter(([, r]) => r.width === 0 || r.left < 0 || r.right > vw)
      .map(([b, r]) => `${b.closest("tr").dataset.worker}/${b.dataset.action} at ${Math.round(r.left)}..${Math.round(r.right)}`);
    return { vw, scrollWidth: document.documentElement.scrollWidth, buttons: buttons.length, outside };
  };
  await page.waitForFunction(`(() => { const r = (${layoutAt390})();
    return r.vw === 390 && r.scrollWidth <= r.vw && r.buttons > 0 && r.outside.length === 0; })()`).catch(async () => {
    const r = await page.evaluate(layoutAt390);
    throw new Error(`(e) at 390 px: page ${r.scrollWidth} px wide for a ${r.vw} px viewport, ` +
      `${r.buttons} buttons, outside the viewport: ${r.outside.join(", ") || "none"}`);
  });
  const narrow = await page.evaluate(layoutAt390);
  if (screenshot) await page.screenshot({ path: screenshot.replace(/(\.png)?$/, "-390.png"), fullPage: true });
  log(`(e) ok: at 390 px the page is ${narrow.scrollWidth} px wide and all ${narrow.buttons} worker buttons are inside it`);

  // (f) the job's result, a 64-hex-digit file name, is shown by a short prefix; the title has it whole.
  const done = (await api(base, `/api/jobs/${encodeURIComponent(types[0])}/${job.id}`));
  if (!/[0-9a-f]{64}/.test(done.result || "")) throw new Error(`(f) job #${job.id}'s result is not a hash name: ${done.result}`);
  const shown = await page.locator(`${jobSel} [data-field="message"]`).evaluate((e) => ({ text: e.textContent, title: e.title }));
  if (/[0-9a-f]{32}/.test(shown.text) || !shown.text.includes(done.result.slice(0, 10) + "…"))
    throw new Error(`(f) job #${job.id}'s result is shown as '${shown.text}', not by a short prefix`);
  if (!shown.title.includes(done.result)) throw new Error(`(f) the title '${shown.title}' lacks the result ${done.result}`);
  log(`(f) ok: result shown as '${shown.text}'`);

  // (g) the search box: only workers and tasks whose name contains the text stay.
  const bg = workers.find((w) => w.kind === "background");
  const query = bg.name.slice(0, Math.max(3, bg.name.length - 1)).toUpperCase();  // case does not matter
  await page.fill("#search", query);
  await page.waitForFunction((q) => {
    const ok = (n) => n.toLowerCase().includes(q.toLowerCase());
    const ws = [...document.querySelectorAll("tr[data-worker]")];
    const ts = [...document.querySelectorAll("tr[data-task]")].filter((tr) => !tr.hidden);
    return ws.every((tr) => tr.hidden === !ok(tr.dataset.worker)) && ws.some((tr) => !tr.hidden)
      && ts.length > 0 && ts.every((tr) => ok(tr.querySelector('[data-field="name"]').title));
  }, query).catch(() => { throw new Error(`(g) searching '${query}' did not keep just the matching workers and tasks`); });
  const kept = await page.$$eval("tr[data-worker]:not([hidden])", (trs) => trs.map((tr) => tr.dataset.worker));
  await page.fill("#search", "");
  await page.waitForFunction((n) => [...document.querySelectorAll("tr[data-worker]")].filter((tr) => !tr.hidden).length === n,
    names.length).catch(() => { throw new Error("(g) clearing the search did not show every worker again"); });
  log(`(g) ok: '${query}' kept workers ${kept.join(", ")} and tasks of that name`);

  // (h) the failed filter: failed tasks only, each with its error. The demo's crashing process tasks fail.
  await page.selectOption("#task-filter", "failed");
  await page.waitForFunction(() => {
    const trs = [...document.querySelectorAll("#task-rows tr[data-task]")];
    return trs.length > 0 && trs.every((tr) => tr.dataset.status === "failed"
      && tr.querySelector('[data-field="error"]').textContent.length > 0);
  }, null, { timeout: 60_000 }).catch(async () => {
    throw new Error(`(h) the failed filter shows no failed task with an error: '${await page.textContent("#task-rows")}'`);
  });
  const failedApi = (await api(base, "/api/tasks?status=failed&limit=1000")).tasks;
  const failedShown = await page.$$eval("#task-rows tr[data-task]", (trs) => trs.map((tr) =>
    ({ id: Number(tr.dataset.task), error: tr.querySelector('[data-field="error"]').textContent })));
  for (const t of failedShown) {
    const a = failedApi.find((x) => x.id === t.id);
    if (a && a.error !== t.error) throw new Error(`(h) task #${t.id} shows error '${t.error}', the API says '${a.error}'`);
  }
  if (!failedShown.some((t) => failedApi.some((x) => x.id === t.id)))
    throw new Error("(h) none of the failed tasks shown is in GET /api/tasks?status=failed");
  await page.selectOption("#task-filter", "");
  log(`(h) ok: ${failedShown.length} failed tasks shown, e.g. #${failedShown[0].id}: ${failedShown[0].error}`);

  // (o) a task's detail: its times, wait, run, priority, kind and error, as GET /api/tasks/{id} gives them.
  // A finished task, whose fields no longer change between the page's request and ours.
  const firstTask = page.locator('#task-rows tr[data-status="completed"] [data-action="task-detail"], ' +
    '#task-rows tr[data-status="failed"] [data-action="task-detail"]').first();
  const detailId = Number(await firstTask.textContent());
  await firstTask.click();
  const apiTask = await api(base, `/api/tasks/${detailId}`);
  await page.waitForFunction(([id, t]) => {
    const box = document.querySelector("[data-testid=task-detail]");
    const f = (k) => box.querySelector(`[data-field="${k}"]`);
    return !box.hidden && document.getElementById("td-title").textContent === "#" + id && f("kind")?.textContent === t.kind
      && f("priority")?.textContent === t.priority && f("queued")?.title === (t.queued_at || "")
      && (t.error ? f("error")?.textContent === t.error : true) && /\d/.test(f("wait")?.textContent || "");
  }, [detailId, apiTask]).catch(async () => {
    throw new Error(`(o) the detail of task #${detailId} shows '${await page.textContent("[data-testid=task-detail]")}', the API ${JSON.stringify(apiTask)}`);
  });
  const detail = await page.$eval("[data-testid=task-detail]", (box) => Object.fromEntries([...box.querySelectorAll("dd")]
    .map((dd) => [dd.dataset.field, dd.textContent])));
  const wideDetail = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  if (wideDetail) throw new Error("(o) with the task detail open the page scrolls sideways");
  await page.click("#td-close");
  log(`(o) ok: task #${detailId} detail: ${JSON.stringify(detail)}`);

  // (r) a failed process task's detail: the pid of the child that ran it and the signal it died of.
  await page.selectOption("#task-filter", "failed");
  const procRow = page.locator('#task-rows tr[data-status="failed"]', { hasText: "process" }).first();
  await procRow.waitFor({ state: "visible", timeout: 60_000 })
    .catch(() => { throw new Error("(r) the failed filter lists no failed process task (the demo's crash)"); });
  const procId = Number(await procRow.locator('[data-action="task-detail"]').textContent());
  await procRow.locator('[data-action="task-detail"]').click();
  const procApi = await api(base, `/api/tasks/${procId}`);
  if (procApi.kind !== "process" || !(procApi.child_pid > 0) || procApi.exit_signal_name !== "SIGABRT")
    throw new Error(`(r) GET /api/tasks/${procId} lacks the child pid or SIGABRT: ${JSON.stringify(procApi)}`);
  await page.waitForFunction(([id, t]) => {
    const box = document.querySelector("[data-testid=task-detail]");
    const f = (k) => box.querySelector(`[data-field="${k}"]`);
    return !box.hidden && document.getElementById("td-title").textContent === "#" + id
      && f("child_pid")?.textContent === String(t.child_pid) && f("exit")?.textContent === `killed by SIGABRT (${t.exit_signal})`;
  }, [procId, procApi]).catch(async () => {
    throw new Error(`(r) the detail of process task #${procId} shows '${await page.textContent("[data-testid=task-detail]")}', ` +
      `the API ${JSON.stringify(procApi)}`);
  });
  const procDetail = await page.$eval("[data-testid=task-detail]", (box) =>
    ["child_pid", "exit"].map((k) => box.querySelector(`[data-field="${k}"]`).textContent).join(", "));
  await page.click("#td-close");
  await page.selectOption("#task-filter", "");
  log(`(r) ok: process task #${procId}: child pid, exit: ${procDetail}`);

  // (i) the stream cannot be opened (a proxy that refuses it): the page polls; while /api/supervisor
  // fails too, the state is unknown, not the last one seen; then it comes back, and so does the stream.
  const stateSel = "#sv-state", modeSel = "[data-testid=updates]";
  const lastState = (await page.textContent(stateSel)).trim();
  failingOnPurpose = true;
  await page.route("**/api/events*", (route) => route.abort("connectionrefused"));
  await page.route("**/api/supervisor", (route) => route.abort("connectionrefused"));
  await page.reload({ waitUntil: "domcontentloaded" });
  await page.waitForFunction((sel) => document.querySelector(sel).textContent === "unknown", stateSel)
    .catch(async () => { throw new Error(`(i) with /api/events and /api/supervisor failing the state shows '${await page.textContent(stateSel)}'`); });
  const banner = await page.isVisible("#banner");
  const modeWhileFailing = (await page.textContent(modeSel)).trim();
  await page.unroute("**/api/supervisor");
  await page.waitForFunction((sel) => document.querySelector(sel).textContent === "running", stateSel)
    .catch(async () => { throw new Error(`(i) once /api/supervisor answers again the state shows '${await page.textContent(stateSel)}'`); });
  const modePolling = (await page.textContent(modeSel)).trim();
  await page.unroute("**/api/events*");
  await page.waitForFunction((sel) => document.querySelector(sel).textContent === "pushed", modeSel)
    .catch(async () => { throw new Error(`(i) once /api/events answers again the page says updates are '${await page.textContent(modeSel)}'`); });
  failingOnPurpose = false;
  if (!banner) throw new Error("(i) the 'disconnected' banner did not show while /api/supervisor failed");
  if (!/^polled/.test(modePolling)) throw new Error(`(i) without its stream the page says updates are '${modePolling}'`);
  if (problems.length) throw new Error("(i) " + problems.join("; "));
  log(`(i) ok: state '${lastState}' -> 'unknown' while /api/events and /api/supervisor failed (updates '${modeWhileFailing}') ` +
    `-> 'running' again, '${modePolling}' -> 'pushed' once the stream answers`);

  // (j) the job's row: params, times, duration, short result name.
  const jobInfo = await api(base, `/api/jobs/${encodeURIComponent(types[0])}/${job.id}`);
  if (!jobInfo.result_name || !jobInfo.started_at || !jobInfo.finished_at)
    throw new Error(`(j) GET /api/jobs/${types[0]}/${job.id} lacks result_name or times: ${JSON.stringify(jobInfo)}`);
  await page.waitForFunction(([sel, stamp, name]) => {
    const f = (k) => document.querySelector(`${sel} [data-field="${k}"]`);
    return f("params") && f("params").textContent === JSON.stringify({ run: stamp })
      && /\d\d:\d\d:\d\d/.test(f("started").textContent) && /\d\d:\d\d:\d\d/.test(f("finished").textContent)
      && /\d/.test(f("duration").textContent) && f("result-name") && f("result-name").textContent.trim() === name;
  }, [jobSel, stamp, jobInfo.result_name]).catch(async () => {
    throw new Error(`(j) job #${job.id}'s row lacks params, times or result name: '${await page.textContent(jobSel)}'`);
  });
  const rowText = await page.$eval(jobSel, (tr) => Object.fromEntries([...tr.querySelectorAll("[data-field]")]
    .map((e) => [e.dataset.field, e.textContent.trim()])));
  if (/[0-9a-f]{32}/.test(rowText["result-name"])) throw new Error(`(j) result name not short: ${rowText["result-name"]}`);
  log(`(j) ok: params ${rowText.params}, ${rowText.started} to ${rowText.finished} (${rowText.duration}), result ${rowText["result-name"]}`);

  // (k) Download saves the very bytes the API serves, under the short name.
  const served = Buffer.from(await (await fetch(`${base}/api/jobs/${encodeURIComponent(types[0])}/${job.id}/result`,
    { signal: AbortSignal.timeout(10_000) })).arrayBuffer());
  const [download] = await Promise.all([page.waitForEvent("download"),
    page.click(`${jobSel} [data-action="download"]`)]);
  const savedPath = await download.path();
  const saved = fs.readFileSync(savedPath);
  if (download.suggestedFilename() !== jobInfo.result_name)
    throw new Error(`(k) the download is named '${download.suggestedFilename()}', not '${jobInfo.result_name}'`);
  if (!served.length || !saved.equals(served))
    throw new Error(`(k) the downloaded file (${saved.length} bytes) differs from the API's (${served.length} bytes)`);
  log(`(k) ok: downloaded ${download.suggestedFilename()}, ${saved.length} bytes equal to the API's`);

  // (l) more than 10 finished jobs: the 10 newest are listed; the rest are on a page of their own,
  // which pages through GET /api/jobs?status=finished newest first (20 a page: 22 jobs more make two).
  await Promise.all(Array.from({ length: 22 }, async (_, k) => {
    const res = await fetch(`${base}/api/jobs/${encodeURIComponent(types[0])}`, { method: "POST",
      body: JSON.stringify({ rows: 1, run: stamp, n: k }), signal: AbortSignal.timeout(60_000) });
    const body = await res.text();  // the stream ends when the job is done
    if (!res.ok || !/"done"/.test(body)) throw new Error(`(l) job ${k} did not finish: HTTP ${res.status} ${body.slice(-200)}`);
  }));
  const finishedApi = (await api(base, "/api/jobs")).jobs.filter((j) => j.status === "done" || j.status === "failed").length;
  const jobRows = () => {
    const trs = [...document.querySelectorAll("#job-rows tr[data-job]")];
    const fin = trs.filter((tr) => /^(done|failed)$/.test(tr.querySelector('[data-field="status"]').textContent.trim()));
    const link = document.getElementById("jobs-history-link");
    return { finished: fin.length, shown: fin.filter((tr) => !tr.hidden).map((tr) => Number(tr.dataset.job)),
      link: link.hidden ? null : link.textContent, scrollWidth: document.documentElement.scrollWidth, vw: window.innerWidth };
  };
  await page.waitForFunction(`(() => { const r = (${jobRows})();
    return r.finished >= ${finishedApi} && r.shown.length === 10 && r.link && r.scrollWidth <= r.vw; })()`)
    .catch(async () => {
      const r = await page.evaluate(`(${jobRows})()`);
      throw new Error(`(l) with ${finishedApi} finished jobs the page shows ${JSON.stringify(r)}`);
    });
  const shownIds = (await page.evaluate(`(() => (${jobRows})().shown)()`)).sort((a, b) => b - a);
  const newestIds = (await api(base, "/api/jobs")).jobs.filter((j) => j.status === "done" || j.status === "failed")
    .map((j) => j.id).sort((a, b) => b - a).slice(0, 10);
  if (JSON.stringify(shownIds) !== JSON.stringify(newestIds))
    throw new Error(`(l) the jobs shown ${shownIds} are not the 10 newest ${newestIds}`);
  const linkText = (await page.evaluate(`(${jobRows})()`)).link;
  // The page of their own: the API's pages, in its order, reached from the link.
  const historyState = () => {
    const box = document.getElementById("job-history");
    const ids = [...document.querySelectorAll("#jh-rows tr[data-job]")].map((tr) => Number(tr.dataset.job));
    const buttons = [...box.querySelectorAll("button")].filter((b) => b.offsetParent !== null);
    const outside = buttons.filter((b) => { const r = b.getBoundingClientRect(); return r.left < 0 || r.right > window.innerWidth; })
      .map((b) => b.textContent);
    return { visible: !box.hidden, hash: location.hash, ids, range: document.getElementById("jh-range").textContent,
      older: document.getElementById("jh-older").disabled, newer: document.getElementById("jh-newer").disabled,
      outside, scrollWidth: document.documentElement.scrollWidth, vw: window.innerWidth };
  };
  const pageOf = async (offset) => (await api(base, `/api/jobs?status=finished&offset=${offset}&limit=20`));
  // The demo finishes a job of its own now and then, which moves the pages: compare with the API
  // again until they agree (the page asks again when a job finishes).
  const expectPage = async (offset, what) => {
    for (const deadline = Date.now() + STEP_TIMEOUT_MS; ;) {
      const want = await pageOf(offset);
      const wantIds = want.jobs.map((j) => j.id);
      const ok = await page.waitForFunction(`(() => { const h = (${historyState})();
        return h.visible && JSON.stringify(h.ids) === ${JSON.stringify(JSON.stringify(wantIds))}
          && h.outside.length === 0 && h.scrollWidth <= h.vw; })()`, null, { timeout: 5000 }).then(() => true, () => false);
      if (ok) return want;
      if (Date.now() > deadline)
        throw new Error(`(l) ${what}: the page shows ${JSON.stringify(await page.evaluate(`(${historyState})()`))}, ` +
          `GET /api/jobs?status=finished&offset=${offset}&limit=20 ${JSON.stringify(wantIds)}`);
    }
  };
  await page.click("#jobs-history-link");
  const p1 = await expectPage(0, "the first page");
  if (p1.total <= 20) throw new Error(`(l) only ${p1.total} finished jobs: no second page to test`);
  const h1 = await page.evaluate(`(${historyState})()`);
  if (h1.hash !== "#finished-jobs" || !h1.newer || h1.older) throw new Error(`(l) the first page: ${JSON.stringify(h1)}`);
  await page.click("#jh-older");
  const p2 = await expectPage(20, "the second page (Older)");
  const h2 = await page.evaluate(`(${historyState})()`);
  if (h2.newer) throw new Error(`(l) the second page has no Newer: ${JSON.stringify(h2)}`);
  await page.click("#jh-newer");
  await expectPage(0, "back to the first page (Newer)");
  await page.click("#jh-back");
  await page.waitForFunction(() => document.getElementById("job-history").hidden)
    .catch(() => { throw new Error("(l) Back did not close the finished jobs' page"); });
  if (problems.length) throw new Error("(l) " + problems.join("; "));
  log(`(l) ok: 10 of ${finishedApi} finished jobs listed, '${linkText}' opens their page: ${h1.range} then ` +
    `${h2.range} (${p2.jobs.length} jobs), as the API pages them; no sideways scroll at 390 px`);

  // (q) a failed job's "Run again": the same type and params, posted with the form's stream; a new job.
  const failStamp = `fail-${stamp}`;
  const failRes = await fetch(`${base}/api/jobs/${encodeURIComponent(types[0])}`, { method: "POST",
    body: JSON.stringify({ rows: 0, run: failStamp }), signal: AbortSignal.timeout(30_000) });
  const failBody = await failRes.text();
  if (!/"failed"/.test(failBody)) throw new Error(`(q) a job with rows 0 did not fail: ${failBody.slice(-200)}`);
  const failedJob = (await api(base, "/api/jobs")).jobs.find((j) => j.params && j.params.run === failStamp);
  const againBtn = page.locator(`tr[data-job="${failedJob.id}"] [data-action="run-again"]`);
  await againBtn.waitFor({ state: "visible" })
    .catch(() => { throw new Error(`(q) failed job #${failedJob.id} has no visible Run again button`); });
  const againBox = await againBtn.boundingBox();
  if (!againBox || againBox.x < 0 || againBox.x + againBox.width > 390)
    throw new Error(`(q) Run again lies outside the 390 px viewport: ${JSON.stringify(againBox)}`);
  const posted2 = page.waitForRequest((r) => r.method() === "POST" && new URL(r.url()).pathname === `/api/jobs/${types[0]}`);
  await againBtn.click();
  const req = await posted2;
  if (JSON.stringify(JSON.parse(req.postData())) !== JSON.stringify(failedJob.params))
    throw new Error(`(q) Run again posted ${req.postData()}, not the params ${JSON.stringify(failedJob.params)}`);
  let rerun = null;
  for (const deadline = Date.now() + STEP_TIMEOUT_MS; !rerun && Date.now() < deadline;) {
    rerun = (await api(base, "/api/jobs")).jobs.find((j) => j.params && j.params.run === failStamp && j.id > failedJob.id);
    if (!rerun) await new Promise((r) => setTimeout(r, 200));  // polling the API, not synchronising the page
  }
  if (!rerun) throw new Error(`(q) no new job with the params of #${failedJob.id} after Run again`);
  await page.waitForFunction((id) => new RegExp(`Job #${id} `).test(document.getElementById("job-status").textContent), rerun.id)
    .catch(async () => { throw new Error(`(q) the status line does not follow job #${rerun.id}: '${await page.textContent("#job-status")}'`); });
  log(`(q) ok: failed job #${failedJob.id} run again as #${rerun.id}: '${await page.textContent("#job-status")}'`);

  // (m) the throughput chart: points from the polls, drawn inside the SVG's box, the SVG inside the page.
  const chartState = () => {
    const svg = document.getElementById("tp-chart"), [, , w, h] = svg.getAttribute("viewBox").split(" ").map(Number);
    const series = Object.fromEntries([...svg.querySelectorAll("polyline[data-series]")].map((pl) => [pl.dataset.series,
      pl.getAttribute("points").trim().split(/\s+/).filter(Boolean).map((p) => p.split(",").map(Number))]));
    const inside = Object.values(series).every((pts) => pts.every(([x, y]) => x >= 0 && x <= w && y >= 0 && y <= h));
    const r = svg.getBoundingClientRect();
    // The queue depth chart: one series per priority, inside its own box.
    const qd = document.getElementById("qd-chart"), [, , qw, qh] = qd.getAttribute("viewBox").split(" ").map(Number);
    const queue = Object.fromEntries([...qd.querySelectorAll("polyline[data-series]")].map((pl) => [pl.dataset.series,
      pl.getAttribute("points").trim().split(/\s+/).filter(Boolean).map((p) => p.split(",").map(Number))]));
    const qInside = Object.values(queue).every((pts) => pts.every(([x, y]) => x >= 0 && x <= qw && y >= 0 && y <= qh));
    const qr = qd.getBoundingClientRect();
    return { counts: Object.fromEntries(Object.entries(series).map(([k, v]) => [k, v.length])), inside,
      queueCounts: Object.fromEntries(Object.entries(queue).map(([k, v]) => [k, v.length])), qInside,
      qInViewport: qr.left >= 0 && qr.right <= window.innerWidth && qr.width > 0,
      inViewport: r.left >= 0 && r.right <= window.innerWidth && r.width > 0, summary: document.getElementById("tp-summary").textContent };
  };
  await page.waitForFunction(`(() => { const c = (${chartState})();
    return c.counts.completed >= 2 && c.counts.failed >= 2 && c.inside && c.inViewport
      && ["low", "normal", "high", "critical"].every((p) => c.queueCounts[p] >= 2) && c.qInside && c.qInViewport; })()`)
    .catch(async () => { throw new Error(`(m) the throughput chart: ${JSON.stringify(await page.evaluate(`(${chartState})()`))}`); });
  const chart = await page.evaluate(`(${chartState})()`);
  log(`(m) ok: throughput chart with ${chart.counts.completed} points per series; ${chart.summary}; ` +
    `queue depth chart with ${JSON.stringify(chart.queueCounts)} points`);

  // (p) a job the page did not start (this test posts it) is followed through its SSE stream,
  // GET /api/jobs/{type}/{id}/events: the page opens it and shows the progress up to done.
  const followStamp = `follow-${stamp}`;
  const sseJobs = [];
  const onSse = (req) => {
    if (req.resourceType() === "eventsource" && /^\/api\/jobs\/[^/]+\/\d+\/events$/.test(new URL(req.url()).pathname))
      sseJobs.push(new URL(req.url()).pathname);
  };
  page.on("request", onSse);
  await page.evaluate(() => {
    window.__follow = {};
    new MutationObserver((ms) => { for (const m of ms) {
      const bar = m.target, tr = bar.closest && bar.closest("tr[data-job]");
      if (tr && bar.getAttribute("role") === "progressbar")
        (window.__follow[tr.dataset.job] ||= new Set()).add(bar.getAttribute("aria-valuenow"));
    } }).observe(document.getElementById("job-rows"), { subtree: true, attributes: true, attributeFilter: ["aria-valuenow"] });
  });
  const posted = fetch(`${base}/api/jobs/${encodeURIComponent(types[0])}`, { method: "POST",
    body: JSON.stringify({ rows: 30, run: followStamp }), signal: AbortSignal.timeout(90_000) }).then((r) => r.text());
  let followed = null;
  for (const deadline = Date.now() + STEP_TIMEOUT_MS; !followed && Date.now() < deadline;) {
    followed = (await api(base, "/api/jobs")).jobs.find((j) => j.params && j.params.run === followStamp);
    if (!followed) await new Promise((r) => setTimeout(r, 200));  // polling the API, not synchronising the page
  }
  if (!followed) throw new Error(`(p) no job with params {"run":"${followStamp}"} appeared in GET /api/jobs`);
  const followPath = `/api/jobs/${encodeURIComponent(types[0])}/${followed.id}/events`;
  await page.waitForFunction((sel) => {
    const bar = document.querySelector(sel + ' [data-field="progress"]'), st = document.querySelector(sel + ' [data-field="status"]');
    return bar && bar.getAttribute("aria-valuenow") === "100" && st && st.textContent.trim() === "done";
  }, `tr[data-job="${followed.id}"]`, { timeout: 60_000 })
    .catch(() => { throw new Error(`(p) job #${followed.id}, started outside the page, did not reach done on the page`); });
  await posted;
  page.off("request", onSse);
  const followSeen = await page.evaluate((id) => [...(window.__follow[id] || [])], String(followed.id));
  if (!sseJobs.includes(followPath))
    throw new Error(`(p) the page opened no EventSource on ${followPath} (it opened: ${sseJobs.join(", ") || "none"})`);
  if (followSeen.length < 3) throw new Error(`(p) the page showed only ${followSeen.join(", ")} % of job #${followed.id}`);
  if (problems.length) throw new Error("(p) " + problems.join("; "));
  log(`(p) ok: job #${followed.id} followed through ${followPath}: ${followSeen.join(", ")} %`);

  console.log(`PASS dashboard: ${names.length} workers shown, trigger '${ev.name}' ${before}->${after}, ` +
    `job #${job.id} (${types[0]}) streamed to 100 % (${seen.length} progress values), no page errors; at 390 px ` +
    `no sideways scroll, ${narrow.buttons} buttons in reach, result shown short; search, failed filter ` +
    `(${failedShown.length} tasks with errors) and 'unknown' state work; job row with params, times and ` +
    `result ${jobInfo.result_name}, its download equals the API's bytes, 10 recent of ${finishedApi} finished jobs ` +
    `and the rest paged on their own page, failed job run again as #${rerun.id}, process task detail with ` +
    `child pid and SIGABRT, ` +
    `throughput chart with ${chart.counts.completed} points`);
}

let code = 0;
try {
  await main();
} catch (e) {
  fail(e);
  code = 1;
} finally {
  await cleanup();
  clearTimeout(globalTimer);
}
process.exit(code);
