// BullMQ peer of benchmarks/bench_distributed.cpp (issue 11). Same
// measurements, same redis-server (scripts/bench_distributed.sh runs it):
//  a. throughput: N trivial jobs ("noop") from one client, Queue.addBulk in
//     batches, then every result waited for (QueueEvents "completed", the
//     way a BullMQ client learns results); one worker process (worker.mjs)
//     at concurrency 50. Time = first add -> last result; median of the runs.
//  b. round trip: queue.add("noop") then job.waitUntilFinished(queueEvents),
//     one at a time, after a warm-up.
//  d. delayed-job lateness (issue 12): D jobs "late", added one at a time
//     to the idle worker of a and b, each with its own delay over 200-2,000
//     ms (delay_i = 200 + (i * 7919) % 1801, atask's spread) and a
//     timestamp taken just before its add, so due = timestamp + delay is
//     BullMQ's own due time. The worker returns when the job started
//     (Date.now(), whole ms: reads up to 1 ms low) minus that due time.
//  e. throughput with retries on: a with { attempts: 3, backoff:
//     exponential 1 s } on every job (they succeed), runs alternating with
//     a's plain runs; the ratio of the medians.
//  c. recovery after SIGKILL: worker A at concurrency 100 (so all 100 jobs
//     are active on it) takes 100 sleep_ms(2000) jobs; once all have started,
//     300 ms later, A is killed with SIGKILL and worker B is started at once.
//     BullMQ's defaults: lockDuration 30 s, stalledInterval 30 s. Measured
//     from the kill: every job restarted, every result; bounded.
// Prints a table, then one JSON object on the last line.
//
// Usage: node bench.mjs --redis 127.0.0.1:PORT [--quick] [--tasks N] [--batch N] [--runs N]
//        [--rtt N] [--concurrency 50] [--bound-s 120] [--workdir DIR] [--no-recovery] [--redis-pid PID]
//        [--delayed N] [--retry-attempts N]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, QueueEvents } from 'bullmq';
import IORedis from 'ioredis';

const here = path.dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const flag = (name) => argv.includes('--' + name);
function arg(name, dflt) {
  const i = argv.indexOf('--' + name);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
}
const quick = flag('quick');
const redisAddr = arg('redis', '127.0.0.1:6379');
const [host, port] = redisAddr.split(':');
const n = Number(arg('tasks', quick ? 2000 : 20000));
const batch = Number(arg('batch', 1000));
const runs = Number(arg('runs', quick ? 1 : 3));
const rttN = Number(arg('rtt', quick ? 300 : 2000));
const warmup = Number(arg('warmup', quick ? 50 : 200));
const concurrency = Number(arg('concurrency', 50));
const r = Number(arg('recovery-tasks', 100));
const taskMs = Number(arg('sleep-ms', 2000));
const boundS = Number(arg('bound-s', 120));
const recovery = !flag('no-recovery');
const delayedN = Number(arg('delayed', quick ? 300 : 2000));
const retryAttempts = Number(arg('retry-attempts', 3));
const redisPid = Number(arg('redis-pid', 0)); // the local redis-server, for its CPU per task
const workdir = arg('workdir', '') || fs.mkdtempSync(path.join(os.tmpdir(), 'bench_bullmq.'));
fs.mkdirSync(workdir, { recursive: true });
const bullmqVersion = JSON.parse(
  fs.readFileSync(path.join(here, 'node_modules', 'bullmq', 'package.json'), 'utf8'),
).version;

const loadavg = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
const now = () => Number(process.hrtime.bigint()) / 1e6; // ms, monotonic
function percentile(v, p) {
  if (!v.length) return 0;
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}
const median = (v) => percentile(v, 0.5);
function die(msg) {
  console.error('bench.mjs: ' + msg);
  process.exit(2);
}

const loadStart = loadavg();
const conn = () => new IORedis({ host, port: Number(port), maxRetriesPerRequest: null });
// The events stream is trimmed to about 10,000 entries by default; a client
// that lags by more would miss "completed" events and wait forever. Not a
// speed setting.
const queue = new Queue('bench', { connection: conn(), streams: { events: { maxLen: 4 * n + 100000 } } });
const events = new QueueEvents('bench', { connection: conn() });
await queue.waitUntilReady();
await events.waitUntilReady();

// Results by job id, from the "completed" events (which may come before
// addBulk() has returned the ids).
const completed = new Map(); // jobId -> returnvalue
const failed = new Map();
let waiter = null; // { ids: Set, left, resolve }
events.on('completed', ({ jobId, returnvalue }) => {
  completed.set(jobId, returnvalue);
  if (waiter && waiter.ids.has(jobId)) {
    waiter.ids.delete(jobId);
    if (waiter.ids.size === 0) waiter.resolve();
  }
});
events.on('failed', ({ jobId, failedReason }) => failed.set(jobId, failedReason));

// Resolves once every id has completed (or at the timeout: false).
function waitAll(ids, timeoutMs) {
  const left = new Set();
  for (const id of ids) if (!completed.has(id)) left.add(id);
  if (left.size === 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      waiter = null;
      resolve(false);
    }, timeoutMs);
    waiter = {
      ids: left,
      resolve: () => {
        clearTimeout(t);
        waiter = null;
        resolve(true);
      },
    };
  });
}

function spawnWorker(extra, out) {
  const fd = fs.openSync(out, 'a');
  const p = spawn(process.execPath, [path.join(here, 'worker.mjs'), '--redis', redisAddr, ...extra], {
    detached: true, // a process group of its own
    stdio: ['ignore', fd, fd],
  });
  fs.closeSync(fd);
  p.exited = new Promise((res) => p.on('exit', res));
  return p;
}

async function stopWorker(p, graceMs = 40000) {
  try {
    process.kill(-p.pid, 'SIGTERM');
  } catch {}
  const clean = await Promise.race([p.exited.then(() => true), sleep(graceMs).then(() => false)]);
  if (!clean) {
    try {
      process.kill(-p.pid, 'SIGKILL');
    } catch {}
    await p.exited;
  }
  return clean;
}

async function waitReady(p, what) {
  const job = await queue.add('noop', { x: 7 });
  const v = await job.waitUntilFinished(events, 60000).catch((e) => die(`${what} (pid ${p.pid}): ${e.message}`));
  if (v !== 7) die('noop(7) came back as ' + v);
}

// CPU seconds (user + system) a process has used so far; 0 if it is gone.
const clkTck = 100; // USER_HZ, 100 on Linux
function cpuS(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / clkTck;
  } catch {
    return 0;
  }
}
const cpu = { redis: 0, worker: 0, client: 0 };
const cpuRetry = { redis: 0, worker: 0, client: 0 };
const cpuNow = (worker) => ({ redis: redisPid ? cpuS(redisPid) : 0, worker: cpuS(worker.pid), client: cpuS(process.pid) });

async function throughput(count, worker = null, opts = undefined, into = cpu) {
  const c0 = worker ? cpuNow(worker) : null;
  const ids = [];
  const t0 = now();
  for (let i = 0; i < count; i += batch) {
    const jobs = [];
    for (let k = i; k < Math.min(count, i + batch); ++k) jobs.push({ name: 'noop', data: { x: k }, opts });
    for (const j of await queue.addBulk(jobs)) ids.push(j.id);
  }
  const tSent = now();
  if (!(await waitAll(ids, 600000))) die('noop jobs without a result after 600 s');
  const t1 = now();
  if (worker) {
    const c1 = cpuNow(worker);
    for (const k of Object.keys(into)) into[k] += c1[k] - c0[k];
  }
  let sum = 0;
  for (const id of ids) sum += Number(completed.get(id));
  if (sum !== (count * (count - 1)) / 2) die('wrong sum of results');
  for (const id of ids) completed.delete(id);
  return [count / ((t1 - t0) / 1000), count / ((tSent - t0) / 1000)];
}

function readLog(file) {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l)
    .map((l) => {
      const [w, tag, pid, ms] = l.split(' ');
      return { start: w === 'start', tag: Number(tag), pid: Number(pid), ms: Number(ms) };
    });
}

// INFO commandstats: calls per command.
async function commandstats() {
  const out = {};
  for (const l of (await raw.info('commandstats')).split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(l);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}
// Redis commands per task between two snapshots: { total, cmd: n, ... } (most first).
function perTask(before, after, tasks) {
  const d = Object.entries(after)
    .filter(([k]) => k !== 'info')
    .map(([k, v]) => [k, (v - (before[k] || 0)) / tasks])
    .filter(([, v]) => v > 0)
    .sort((a, b) => b[1] - a[1]);
  return Object.fromEntries([['total', d.reduce((t, [, v]) => t + v, 0)], ...d].map(([k, v]) => [k, +v.toFixed(3)]));
}
const raw = conn();

// ---- a + b ------------------------------------------------------------------------------------
let w = spawnWorker(['--concurrency', String(concurrency)], path.join(workdir, 'bullmq-main.log'));
await waitReady(w, 'the worker');
// e: every job may be retried (they succeed).
const withRetry = { attempts: retryAttempts, backoff: { type: 'exponential', delay: 1000 } };
await throughput(Math.min(n, 2000)); // warm-up
await throughput(Math.min(n, 2000), null, withRetry);
const tput = [];
const enq = [];
const tputRetry = [];
const calls = {};
const callsRetry = {};
// a and e alternate, and which goes first alternates too.
async function one(retry) {
  const s0 = await commandstats();
  const [t, e] = await throughput(n, w, retry ? withRetry : undefined, retry ? cpuRetry : cpu);
  const s1 = await commandstats();
  const acc = retry ? callsRetry : calls;
  for (const [k, v] of Object.entries(s1)) acc[k] = (acc[k] || 0) + v - (s0[k] || 0);
  if (retry) tputRetry.push(t);
  else {
    tput.push(t);
    enq.push(e);
  }
}
for (let i = 0; i < runs; ++i) {
  await one(i % 2 === 1);
  await one(i % 2 === 0);
}
const cmds = perTask({}, calls, n * runs);
const cmdsRetry = perTask({}, callsRetry, n * runs);
for (let i = 0; i < warmup; ++i) await (await queue.add('noop', { x: i })).waitUntilFinished(events, 30000);
const rtt = [];
for (let i = 0; i < rttN; ++i) {
  const t0 = now();
  const job = await queue.add('noop', { x: i });
  const v = await job.waitUntilFinished(events, 30000);
  rtt.push(now() - t0);
  if (v !== i) die('wrong round trip result');
}

// ---- d: delayed jobs on the same worker, idle again --------------------------------------------
const late = { ran: delayedN > 0, tasks: delayedN, countdown_ms: [200, 2000], send_s: 0, early: 0, missing: 0 };
const lateMs = [];
if (delayedN > 0) {
  const ids = [];
  const t0 = now();
  for (let i = 0; i < delayedN; ++i) {
    const delay = 200 + ((i * 7919) % 1801);
    const ts = Date.now();
    ids.push((await queue.add('late', { due: ts + delay }, { delay, timestamp: ts })).id);
  }
  late.send_s = +((now() - t0) / 1000).toFixed(3);
  await waitAll(ids, 120000);
  for (const id of ids) {
    if (!completed.has(id)) {
      ++late.missing;
      continue;
    }
    const v = Number(completed.get(id));
    lateMs.push(v);
    if (v < 0) ++late.early;
    completed.delete(id);
  }
}
const mainClean = await stopWorker(w);

// ---- c ----------------------------------------------------------------------------------------
const rec = {
  ran: recovery, in_flight: r, task_ms: taskMs, bound_s: boundS, worker_concurrency: r,
  restarted_s: null, results_s: null, results_within_bound: 0, restarted_within_bound: 0,
  starts: 0, completions: 0, duplicate_completions: 0, failed: 0,
};
let bClean = true;
if (recovery) {
  const log = path.join(workdir, 'bullmq-recovery.log');
  if (fs.existsSync(log)) fs.unlinkSync(log);
  const wargs = ['--concurrency', String(r), '--log', log];
  const a = spawnWorker(wargs, path.join(workdir, 'bullmq-A.log'));
  await waitReady(a, 'worker A');
  const jobs = [];
  for (let i = 0; i < r; ++i) jobs.push({ name: 'sleep_ms', data: { ms: taskMs, tag: i } });
  const ids = (await queue.addBulk(jobs)).map((j) => j.id);
  const startedUntil = now() + 30000;
  while (now() < startedUntil) {
    const tags = new Set(readLog(log).filter((l) => l.start && l.pid === a.pid).map((l) => l.tag));
    if (tags.size === r) break;
    await sleep(2);
  }
  await sleep(300);
  const killT = now();
  const killMs = Date.now();
  process.kill(-a.pid, 'SIGKILL');
  await a.exited;
  const b = spawnWorker(wargs, path.join(workdir, 'bullmq-B.log'));
  const all = await waitAll(ids, boundS * 1000 - (now() - killT));
  if (all) rec.results_s = (now() - killT) / 1000;
  rec.results_within_bound = ids.filter((id) => completed.has(id)).length;
  rec.failed = ids.filter((id) => failed.has(id)).length;
  if (all) await sleep(200); // late lines
  const restarted = new Map();
  const starts = new Map();
  const ends = new Map();
  for (const l of readLog(log)) {
    const m = l.start ? starts : ends;
    m.set(l.tag, (m.get(l.tag) || 0) + 1);
    if (l.start && l.pid !== a.pid && l.ms >= killMs && !restarted.has(l.tag)) restarted.set(l.tag, l.ms);
  }
  rec.restarted_within_bound = restarted.size;
  if (restarted.size === r) rec.restarted_s = (Math.max(...restarted.values()) - killMs) / 1000;
  for (const v of starts.values()) rec.starts += v;
  for (const v of ends.values()) {
    rec.completions += v;
    rec.duplicate_completions += Math.max(0, v - 1);
  }
  bClean = await stopWorker(b);
}

// ---- report -----------------------------------------------------------------------------------
const tMed = median(tput);
const eMed = median(enq);
const [p50, p90, p99, pmax] = [0.5, 0.9, 0.99, 1.0].map((q) => percentile(rtt, q));
const per = 1e6 / (n * runs);
const rMed = median(tputRetry);
const pct = (v, f) => Object.fromEntries(
  [['p50', 0.5], ['p90', 0.9], ['p99', 0.99], ['max', 1.0]].map(([k, q]) => [k, +percentile(v, q).toFixed(f)]),
);
late.lateness_ms = { ...pct(lateMs, 3), samples: lateMs.length };
const cpuUs = {
  redis: redisPid ? +(cpu.redis * per).toFixed(1) : null,
  worker: +(cpu.worker * per).toFixed(1),
  client: +(cpu.client * per).toFixed(1),
};
const fs2 = (x) => (x === null ? '-' : x.toFixed(2));
const row = (m, v) => console.log(m.padEnd(58) + ' ' + String(v).padStart(14));
console.log(`\nBullMQ ${bullmqVersion} (Node ${process.versions.node}, ioredis) (${quick ? 'quick' : 'full'}): node ${process.argv.slice(1).join(' ')}`);
console.log(`  load average at start ${loadStart}, at end ${loadavg()}; worker logs in ${workdir}`);
console.log(`  one client process, one worker process (worker.mjs, concurrency ${concurrency}, defaults otherwise)`);
console.log(`  a: ${n} noop jobs per run, addBulk in batches of ${batch}, then every "completed" event awaited; ${runs} runs, median`);
console.log(`  b: ${rttN} sequential add() + job.waitUntilFinished(queueEvents) after ${warmup} warm-up round trips`);
console.log(`  d: ${delayedN} "late" jobs added one at a time to the idle worker, each with delay 200-2,000 ms (spread); lateness = start on the worker - (timestamp + delay)`);
console.log(`  e: a with { attempts: ${retryAttempts}, backoff exponential 1 s } on every job (they succeed), runs alternating with a's`);
if (recovery)
  console.log(
    `  c: ${r} sleep_ms(${taskMs}) jobs active on worker A (concurrency ${r}), SIGKILL 300 ms after all started, ` +
      `worker B (same) started at once; lockDuration 30 s, stalledInterval 30 s (defaults); bounded at ${boundS} s`,
  );
console.log();
row('metric', 'BullMQ');
row('a. throughput (tasks/s)', tMed.toFixed(0));
row('   runs (tasks/s)', tput.map((x) => x.toFixed(0)).join(' '));
row('   enqueue rate alone (addBulk, tasks/s)', eMed.toFixed(0));
row(
  '   CPU per task: redis-server / worker / client (us)',
  `${cpuUs.redis === null ? '-' : cpuUs.redis.toFixed(1)} / ${cpuUs.worker.toFixed(1)} / ${cpuUs.client.toFixed(1)}`,
);
row("   Redis commands per task (Lua's inner calls included)", cmds.total.toFixed(1));
console.log(
  '     ' +
    Object.entries(cmds)
      .slice(1, 7)
      .map(([k, v]) => `${k} ${v.toFixed(2)}`)
      .join(', '),
);
row('b. round trip p50 (ms)', p50.toFixed(3));
row('   round trip p90 / p99 / max (ms)', `${p90.toFixed(3)} / ${p99.toFixed(3)} / ${pmax.toFixed(2)}`);
if (recovery) {
  row(`c. kill -> all ${r} restarted on B (s)`, fs2(rec.restarted_s));
  row(`   kill -> all ${r} results at the client (s)`, fs2(rec.results_s));
  row(`   results within ${boundS} s`, `${rec.results_within_bound}/${r}`);
  row('   runs started / completed', `${rec.starts} / ${rec.completions}`);
  row('   duplicate completions', rec.duplicate_completions);
  row('   failed (stalled more than maxStalledCount)', rec.failed);
}
if (delayedN > 0) {
  const L = late.lateness_ms;
  row('d. delayed lateness p50 / p90 (ms)', `${L.p50.toFixed(2)} / ${L.p90.toFixed(2)}`);
  row('   p99 / max (ms)', `${L.p99.toFixed(2)} / ${L.max.toFixed(2)}`);
  row('   early / without a result (want 0 / 0)', `${late.early} / ${late.missing}`);
  row(`   the ${delayedN} adds took (s)`, late.send_s.toFixed(2));
}
const cpuUsRetry = {
  redis: redisPid ? +(cpuRetry.redis * per).toFixed(1) : null,
  worker: +(cpuRetry.worker * per).toFixed(1),
  client: +(cpuRetry.client * per).toFixed(1),
};
row('e. throughput, retries on (tasks/s)', rMed.toFixed(0));
row('   runs (tasks/s)', tputRetry.map((x) => x.toFixed(0)).join(' '));
row('   retries on / off (medians)', (rMed / tMed).toFixed(2) + 'x');
row(
  '   CPU per task, retries on: redis-server / worker / client (us)',
  `${cpuUsRetry.redis === null ? '-' : cpuUsRetry.redis.toFixed(1)} / ${cpuUsRetry.worker.toFixed(1)} / ${cpuUsRetry.client.toFixed(1)}`,
);
row('   Redis commands per task, retries on', cmdsRetry.total.toFixed(1));
console.log(`\n  workers stopped cleanly on SIGTERM: main ${mainClean ? 'yes' : 'NO'}, B ${bClean ? 'yes' : 'NO'}\n`);
console.log(
  JSON.stringify({
    bench: 'distributed', system: 'bullmq', version: bullmqVersion, node: process.versions.node, quick,
    worker: { processes: 1, concurrency },
    throughput: { tasks: n, batch, runs: tput.map(Math.round), median: Math.round(tMed), enqueue_median: Math.round(eMed), cpu_us_per_task: cpuUs, redis_commands_per_task: cmds },
    rtt_ms: { p50: +p50.toFixed(4), p90: +p90.toFixed(4), p99: +p99.toFixed(4), max: +pmax.toFixed(3), samples: rtt.length },
    recovery: rec,
    delayed: late,
    retry: { attempts: retryAttempts, runs: tputRetry.map(Math.round), median: Math.round(rMed), ratio: +(rMed / tMed).toFixed(4), cpu_us_per_task: cpuUsRetry, redis_commands_per_task: cmdsRetry },
    loadavg: { start: loadStart, end: loadavg() },
  }),
);
// Closing may wait on a lost server for ever (maxRetriesPerRequest: null):
// bounded.
await Promise.race([Promise.all([events.close(), queue.close(), raw.quit()]), sleep(5000)]);
process.exit(0);
