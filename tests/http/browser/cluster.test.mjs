// Drives the Cluster section of the dashboard (src/http/dashboard/) that `atask api` serves,
// in headless Chromium, against a real cluster: Redis, two `atask worker` processes and the API
// server, started by run_cluster.sh, which passes their addresses:
//
//   node cluster.test.mjs --url <api-url> --broker <redis-url> --atask <atask-program>
//        [--workers browser-w1,browser-w2] [--expect-plugin demo-tasks@1.0.0] [--screenshot file.png]
//
// --screenshot also writes the phone page to file-390.png.
//
// Checks: (a) the Cluster section appears (desktop size and a 390 px wide phone) with a row per
// worker showing the plugins label, and at 390 px the page does not scroll sideways, nor does any
// of the section's tables; (b) after `atask send demo.add '[2,3]' --wait` the workers'
// "Done" counts add up to at least 1 and the queue "default" has a row; (c) after
// `atask send nobody.knows '[1]' --wait` (dead: NotFoundError) the queue shows dead 1, its
// "Dead letters" list names the task and the error, Requeue is answered 200, and "Purge all"
// (confirm accepted) empties the list; before the purge, on a 390 px phone, the queue's "Dead
// letters" button, the list's Requeue buttons, "Purge all" and "Close" all lie inside the viewport
// with nothing to scroll sideways, and Requeue there is answered 200 too; (d) a "report" job run from the Jobs form streams to
// 100 % and done; (e) the page logged no console errors or page errors, and showed no dialog
// other than the Purge confirmation, nor a throughput chart of the API server's own tasks. Prints one PASS line (exit 0) or FAIL with the reason
// (exit 1). Never waits with fixed sleeps: page conditions with timeouts, or API polls.
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const GLOBAL_TIMEOUT_MS = 180_000;
const STEP_TIMEOUT_MS = 30_000;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

function usage(msg) {
  console.error(`cluster.test: ${msg}\nusage: node cluster.test.mjs --url <api-url> --broker <redis-url> ` +
    "--atask <program> [--workers a,b] [--expect-plugin TEXT] [--screenshot <png>]");
  process.exit(2);
}
const argv = process.argv.slice(2);
let baseUrl = null, broker = null, atask = null, screenshot = null;
let workerNames = ["browser-w1", "browser-w2"], pluginLabel = "demo-tasks@1.0.0";
for (let i = 0; i < argv.length; i++) {
  const a = argv[i], v = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
  if (a === "--url") baseUrl = v();
  else if (a === "--broker") broker = v();
  else if (a === "--atask") atask = v();
  else if (a === "--workers") workerNames = v().split(",").filter(Boolean);
  else if (a === "--expect-plugin") pluginLabel = v();
  else if (a === "--screenshot") screenshot = v();
  else usage(`unknown argument ${a}`);
}
if (!baseUrl || !broker || !atask) usage("--url, --broker and --atask are required");
const base = baseUrl.replace(/\/+$/, "");

const log = (...a) => console.error("cluster.test:", ...a);
let context = null, tmpDir = null;
const children = new Set();  // `atask send` processes still running

async function cleanup() {
  for (const c of children) try { c.kill("SIGKILL"); } catch { /* gone */ }
  if (context) {
    const c = context;
    context = null;
    await Promise.race([c.close().catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
  }
  if (tmpDir) {
    try { fs.rmSync(tmpDir, { recursive: true, force: true, maxRetries: 5 }); }
    catch (e) { log(`could not remove ${tmpDir}: ${e.message}`); }
  }
}

function fail(err) {
  console.error(`FAIL cluster_dashboard: ${err && err.message ? err.message : err}`);
}

let timedOut = false;
const globalTimer = setTimeout(async () => {
  timedOut = true;
  fail(new Error(`global timeout of ${GLOBAL_TIMEOUT_MS / 1000} s`));
  await Promise.race([cleanup(), new Promise((r) => setTimeout(r, 15_000))]);
  process.exit(1);
}, GLOBAL_TIMEOUT_MS);

// SIGTERM/SIGINT/SIGHUP (ctest's timeout, run_cluster.sh's cleanup, Ctrl-C): close the browser, then exit.
let interrupted = false;
for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"])
  process.on(sig, async () => {
    if (interrupted || timedOut) return;
    interrupted = true;
    fail(new Error(`interrupted by ${sig}`));
    await Promise.race([cleanup(), new Promise((r) => setTimeout(r, 15_000))]);
    process.exit(1);
  });

async function api(p) {
  const res = await fetch(base + p, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`GET ${p}: HTTP ${res.status} ${await res.text()}`);
  return res.json();
}
// Runs `atask send ...` and resolves with {code, stdout, stderr}; never rejects on a non-zero exit.
function send(...args) {
  return new Promise((resolve, reject) => {
    const child = execFile(atask, ["send", "--broker", broker, ...args], { timeout: 60_000, encoding: "utf8" },
      (err, stdout, stderr) => {
        children.delete(child);
        if (err && typeof err.code !== "number") return reject(new Error(`atask send ${args.join(" ")}: ${err.message}`));
        resolve({ code: err ? err.code : 0, stdout: stdout.trim(), stderr: stderr.trim() });
      });
    children.add(child);
  });
}
// A CSS attribute-selector string for any name.
const cssString = (s) => '"' + String(s).replace(/["\\]/g, "\\$&").replace(/\n/g, "\\a ") + '"';
const workerRow = (n) => `#cluster-workers tr[data-worker=${cssString(n)}]`;
const queueRow = (q) => `#cluster-queues tr[data-queue=${cssString(q)}]`;

// In the page: the text of the cell under the column headed `header`, in the table of `tbodyId`.
// Defined in every page (addInitScript) so the waits below can use it.
function pageHelpers() {
  window.__cell = (tbodyId, tr, header) => {
    const heads = [...document.getElementById(tbodyId).closest("table").tHead.rows[0].cells];
    const i = heads.findIndex((th) => th.textContent.trim() === header);
    return i < 0 || !tr || !tr.cells[i] ? null : tr.cells[i].textContent.trim();
  };
}

// In the page: what a 390 px phone must not have: a page or a Cluster table wider than the
// screen, or a visible button of the section outside it.
function phoneLayout() {
  const vw = document.documentElement.clientWidth;
  const buttons = [...document.querySelectorAll("#cluster button")].filter((b) => b.offsetParent !== null);
  const outside = buttons.map((b) => [b, b.getBoundingClientRect()])
    .filter(([, r]) => r.width === 0 || r.left < 0 || r.right > vw)
    .map(([b, r]) => `${b.textContent} at ${Math.round(r.left)}..${Math.round(r.right)}`);
  const wideTables = [...document.querySelectorAll("#cluster .scroll")].filter((d) => d.offsetParent !== null)
    .filter((d) => d.scrollWidth > d.clientWidth).map((d) => `${d.scrollWidth}/${d.clientWidth}`);
  return { vw, page: document.documentElement.scrollWidth, buttons: buttons.map((b) => b.textContent), outside, wideTables };
}
const phoneOk = (l) => l.vw === 390 && l.page <= l.vw && l.outside.length === 0 && l.wideTables.length === 0;

function watch(page, problems, dialogs) {
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("dialog", (d) => {
    // Only the confirm() of "Purge all", while the test clicks it, is expected: accept it.
    if (dialogs.expect && d.type() === "confirm" && dialogs.expect.test(d.message())) {
      dialogs.expect = null;
      dialogs.accepted.push(d.message());
      d.accept().catch(() => {});
    } else {
      problems.push(`unexpected ${d.type()} dialog: ${d.message()}`);
      d.dismiss().catch(() => {});
    }
  });
}

async function main() {
  log(`dashboard at ${base}/, broker ${broker}, workers ${workerNames.join(", ")}`);
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), "atask-cluster-dash-"));
  context = await chromium.launchPersistentContext(tmpDir, {
    executablePath: CHROMIUM,
    headless: true,
    handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,  // the handlers above close it
    viewport: { width: 1400, height: 1000 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  await context.addInitScript(pageHelpers);
  const problems = [];
  const dialogs = { expect: null, accepted: [] };
  const page = context.pages()[0] || (await context.newPage());
  watch(page, problems, dialogs);

  await page.goto(base + "/", { waitUntil: "domcontentloaded" });
  await page.waitForSelector("body[data-loaded=yes]");

  // (a) the section appears, one row per worker, with the plugins label.
  await page.locator("#cluster").waitFor({ state: "visible" })
    .catch(() => { throw new Error("(a) the Cluster section did not become visible"); });
  await page.waitForFunction(([names, label]) => names.every((n) => {
    const tr = [...document.querySelectorAll("#cluster-workers tr[data-worker]")].find((r) => r.dataset.worker === n);
    const plugins = tr && window.__cell("cluster-workers", tr, "Plugins");
    return tr && window.__cell("cluster-workers", tr, "Worker") === n && plugins && plugins.split(/\s+/).includes(label);
  }), [workerNames, pluginLabel]).catch(async () => {
    const shown = await page.$$eval("#cluster-workers tr", (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent.trim()).join(" ")).join(" | "));
    throw new Error(`(a) not every worker of ${JSON.stringify(workerNames)} has a row showing the plugins label ` +
      `'${pluginLabel}'; rows: ${shown || "(none)"}`);
  });
  log(`(a) ok: rows for ${workerNames.join(", ")} with '${pluginLabel}'`);

  // (a, phone) the same section on a 390 px wide screen: visible, with the worker rows.
  const phone = await context.newPage();
  watch(phone, problems, dialogs);
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.goto(base + "/", { waitUntil: "domcontentloaded" });
  await phone.locator("#cluster").waitFor({ state: "visible" })
    .catch(() => { throw new Error("(a) the Cluster section did not become visible at 390 px"); });
  for (const n of workerNames)
    await phone.locator(workerRow(n)).waitFor({ state: "visible" })
      .catch(() => { throw new Error(`(a) no visible row for worker '${n}' at 390 px`); });
  await phone.waitForFunction(`(${phoneOk})((${phoneLayout})())`).catch(async () => {
    throw new Error(`(a) at 390 px: ${JSON.stringify(await phone.evaluate(`(${phoneLayout})()`))}`);
  });
  const overflow = await phone.evaluate(`(${phoneLayout})()`);
  await phone.close();
  log(`(a) ok at 390 px: page ${overflow.page} px for a ${overflow.vw} px viewport, no table wider than its box`);

  // (b) a task that succeeds: the Done counts add up to at least 1, the queue "default" has a row.
  const add = await send("demo.add", "[2,3]", "--wait");
  if (add.code !== 0) throw new Error(`(b) atask send demo.add '[2,3]' --wait: exit ${add.code}: ${add.stderr}`);
  await page.waitForFunction(([q]) => {
    const done = [...document.querySelectorAll("#cluster-workers tr[data-worker]")]
      .reduce((sum, tr) => sum + (Number(window.__cell("cluster-workers", tr, "Done")) || 0), 0);
    return done >= 1 && document.querySelector(q) !== null;
  }, [queueRow("default")]).catch(() => { throw new Error("(b) the Done counts stayed at 0 or queue 'default' has no row"); });
  const doneSum = await page.$$eval("#cluster-workers tr[data-worker]",
    (rs) => rs.reduce((s, tr) => s + Number(window.__cell("cluster-workers", tr, "Done")), 0));
  log(`(b) ok: demo.add -> ${add.stdout}; Done adds up to ${doneSum}; queue 'default' shown`);

  // (c) a task no worker knows goes dead; the page lists it, requeues it, purges the list.
  const dead = await send("nobody.knows", "[1]", "--wait");
  if (dead.code !== 1 || !/NotFoundError/.test(dead.stderr))
    throw new Error(`(c) atask send nobody.knows '[1]' --wait: exit ${dead.code} (expected 1, NotFoundError): ${dead.stderr}`);
  const deadShows = (q, n) => page.waitForFunction(([sel, want]) => {
    const tr = document.querySelector(sel);
    return tr && window.__cell("cluster-queues", tr, "Dead") === want;
  }, [queueRow(q), String(n)]);
  await deadShows("default", 1).catch(() => { throw new Error("(c) queue 'default' does not show dead 1"); });
  const deadButton = page.locator(queueRow("default")).getByRole("button", { name: "Dead letters" });
  await deadButton.click();
  await page.locator("#dead-view").waitFor({ state: "visible" });
  const deadRow = page.locator("#dead-rows tr", { hasText: "nobody.knows" }).filter({ hasText: "NotFoundError" });
  await deadRow.first().waitFor({ state: "visible" }).catch(async () => {
    throw new Error(`(c) the dead letters list has no row naming nobody.knows and NotFoundError: ` +
      `'${(await page.textContent("#dead-rows")).trim()}'`);
  });
  // The task id from the row; the responses' bodies are not read here: the page reads none of a
  // successful POST, and Chromium then never hands Playwright the body (response.json() hangs).
  const taskId = await page.evaluate((tr) => window.__cell("dead-rows", tr, "Task"), await deadRow.first().elementHandle());
  const requeued = page.waitForResponse((r) => r.request().method() === "POST" &&
    /\/api\/cluster\/queues\/default\/dead\/[^/]+\/requeue$/.test(new URL(r.url()).pathname));
  await deadRow.first().getByRole("button", { name: "Requeue" }).click();
  const rq = await requeued.catch(() => { throw new Error("(c) Requeue sent no POST .../requeue"); });
  if (rq.status() !== 200) throw new Error(`(c) POST ${new URL(rq.url()).pathname}: HTTP ${rq.status()}`);
  await page.waitForFunction(() => document.getElementById("dead-status").textContent.trim() === "done")
    .catch(async () => { throw new Error(`(c) after Requeue the list says '${await page.textContent("#dead-status")}'`); });
  // No worker knows the task: a worker takes it again and it goes dead again (same task id).
  // Wait for that through the API, so that Purge below has a dead letter to remove.
  for (const deadline = Date.now() + STEP_TIMEOUT_MS; ;) {
    const { dead: list } = await api("/api/cluster/queues/default/dead");
    const q = (await api("/api/cluster")).queues.find((x) => x.queue === "default");
    if (list.some((d) => d.task_id === taskId) && q && !q.running && !q.waiting_total) break;
    if (Date.now() > deadline) throw new Error(`(c) the requeued task ${taskId} did not go dead again`);
    await new Promise((r) => setTimeout(r, 200));  // polling the API, not synchronising the page
  }
  // On a phone: every action of the section within reach, and Requeue works there too.
  const small = await context.newPage();
  watch(small, problems, dialogs);
  await small.setViewportSize({ width: 390, height: 844 });
  await small.goto(base + "/", { waitUntil: "domcontentloaded" });
  const smallDead = small.locator(queueRow("default")).getByRole("button", { name: "Dead letters" });
  await smallDead.waitFor({ state: "visible" })
    .catch(() => { throw new Error("(c) at 390 px queue 'default' shows no 'Dead letters' button"); });
  await smallDead.click();
  const smallRow = small.locator("#dead-rows tr", { hasText: "nobody.knows" });
  await smallRow.first().waitFor({ state: "visible" })
    .catch(() => { throw new Error("(c) at 390 px the dead letters list has no row naming nobody.knows"); });
  await small.waitForFunction(`(() => { const l = (${phoneLayout})();
    return (${phoneOk})(l) && ["Dead letters", "Requeue", "Purge all", "Close"].every((t) => l.buttons.includes(t)); })()`)
    .catch(async () => { throw new Error(`(c) at 390 px with the dead letters open: ${JSON.stringify(await small.evaluate(`(${phoneLayout})()`))}`); });
  const smallLayout = await small.evaluate(`(${phoneLayout})()`);
  if (screenshot) await small.screenshot({ path: screenshot.replace(/(\.png)?$/, "-390.png"), fullPage: true });
  const smallRequeued = small.waitForResponse((r) => r.request().method() === "POST" &&
    /\/api\/cluster\/queues\/default\/dead\/[^/]+\/requeue$/.test(new URL(r.url()).pathname));
  await smallRow.first().getByRole("button", { name: "Requeue" }).click();
  const srq = await smallRequeued.catch(() => { throw new Error("(c) Requeue at 390 px sent no POST .../requeue"); });
  if (srq.status() !== 200) throw new Error(`(c) Requeue at 390 px: HTTP ${srq.status()}`);
  await small.close();
  log(`(c) ok at 390 px: ${smallLayout.buttons.length} buttons (${[...new Set(smallLayout.buttons)].join(", ")}) inside ` +
    `the ${smallLayout.vw} px viewport, page ${smallLayout.page} px wide; Requeue there HTTP 200`);
  // The task went back again: wait until it is dead once more, for Purge below.
  for (const deadline = Date.now() + STEP_TIMEOUT_MS; ;) {
    const { dead: list } = await api("/api/cluster/queues/default/dead");
    const q = (await api("/api/cluster")).queues.find((x) => x.queue === "default");
    if (list.some((d) => d.task_id === taskId) && q && !q.running && !q.waiting_total) break;
    if (Date.now() > deadline) throw new Error(`(c) the task ${taskId} requeued at 390 px did not go dead again`);
    await new Promise((r) => setTimeout(r, 200));  // polling the API, not synchronising the page
  }
  await deadButton.click();  // refresh the list
  await deadRow.first().waitFor({ state: "visible" })
    .catch(() => { throw new Error("(c) the requeued task is not in the dead letters list again"); });
  const purged = page.waitForResponse((r) => r.request().method() === "POST" &&
    new URL(r.url()).pathname === "/api/cluster/queues/default/dead/purge");
  dialogs.expect = /Remove every dead letter of queue default/;
  await page.click("#dead-purge");
  const pr = await purged.catch(() => {
    throw new Error(`(c) Purge all sent no POST .../purge (confirm dialogs accepted: ${dialogs.accepted.length})`);
  });
  if (pr.status() !== 200) throw new Error(`(c) POST .../dead/purge: HTTP ${pr.status()}`);
  await page.waitForFunction(() => {
    const rows = document.querySelectorAll("#dead-rows tr");
    return rows.length === 1 && rows[0].querySelector(".empty") && document.getElementById("dead-status").textContent.trim() === "done";
  }).catch(async () => { throw new Error(`(c) after Purge all the list shows '${(await page.textContent("#dead-rows")).trim()}'`); });
  await deadShows("default", 0).catch(() => { throw new Error("(c) queue 'default' still shows dead letters after Purge all"); });
  if (await deadButton.count()) throw new Error("(c) queue 'default' still has a 'Dead letters' button with no dead letter");
  await page.click("#dead-close");
  await page.locator("#dead-view").waitFor({ state: "hidden" });
  log(`(c) ok: dead 1 listed, requeue HTTP 200 (task ${taskId}), purge HTTP 200 after '${dialogs.accepted[0]}'`);

  // (d) a "report" job from the form streams to 100 % and done.
  await page.waitForFunction(() => [...document.getElementById("job-type").options].some((o) => o.value === "report"))
    .catch(() => { throw new Error("(d) the Jobs form offers no job type 'report'"); });
  await page.selectOption("#job-type", "report");
  await page.fill("#job-params", JSON.stringify({ steps: 5, step_ms: 100 }));
  await page.evaluate(() => {  // every progress value the job rows show: the stream updates them live
    window.__seen = {};
    new MutationObserver((ms) => { for (const m of ms) {
      const bar = m.target, tr = bar.closest && bar.closest("tr[data-job]");
      if (tr && bar.getAttribute("role") === "progressbar")
        (window.__seen[tr.dataset.job] ||= new Set()).add(bar.getAttribute("aria-valuenow"));
    } }).observe(document.getElementById("job-rows"), { subtree: true, attributes: true, attributeFilter: ["aria-valuenow"] });
  });
  await page.click("#job-run");
  const idHandle = await page.waitForFunction(() => {
    const m = document.getElementById("job-status").textContent.match(/^Job #(\S+) \(report\)/);
    return m && m[1];
  }).catch(async () => { throw new Error(`(d) the form shows no job: '${await page.textContent("#job-status")}'`); });
  const jobId = await idHandle.jsonValue();
  const jobSel = `tr[data-job=${cssString(jobId)}]`;
  await page.waitForFunction((sel) => {
    const bar = document.querySelector(sel + ' [data-field="progress"]');
    const st = document.querySelector(sel + ' [data-field="status"]');
    return bar && bar.getAttribute("aria-valuenow") === "100" && st && st.textContent.trim() === "done";
  }, jobSel, { timeout: 60_000 }).catch(async () => {
    const st = await page.locator(`${jobSel} [data-field="status"]`).textContent({ timeout: 1000 }).catch(() => "no row");
    throw new Error(`(d) job #${jobId} (report) did not reach 100 % / done on the page (status: ${st})`);
  });
  await page.waitForFunction((id) => new RegExp(`^Job #${id} \\(report\\) done`).test(document.getElementById("job-status").textContent),
    jobId, { timeout: 15_000 }).catch(async () => {
    throw new Error(`(d) the form's stream did not report job #${jobId} done: '${await page.textContent("#job-status")}'`);
  });
  const seen = await page.evaluate((id) => [...(window.__seen[id] || [])], String(jobId));
  log(`(d) ok: job #${jobId} (report) done; progress values shown: ${seen.join(", ") || "(row created at 100)"}`);

  // (e) nothing went wrong in the page.
  if (await page.isVisible("#banner")) problems.push("the 'disconnected' banner is showing");
  // An API server runs no tasks: no throughput chart of its own beside the cluster's.
  if (await page.isVisible("#throughput")) problems.push("the API server's own (empty) throughput chart is showing");
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  if (problems.length) throw new Error("(e) " + problems.join("; "));
  log("(e) ok: no console errors, page errors or unexpected dialogs");

  console.log(`PASS cluster_dashboard: ${workerNames.length} workers with '${pluginLabel}' (also at 390 px), ` +
    `Done ${doneSum}, dead letter listed, requeued (200, also at 390 px with every action in reach), purged (200), ` +
    `report job #${jobId} streamed to 100 % (${seen.length} progress values), no page errors`);
}

let code = 0;
try {
  await main();
} catch (e) {
  if (!timedOut && !interrupted) fail(e);
  code = 1;
} finally {
  await cleanup();
  clearTimeout(globalTimer);
}
process.exit(code);
