// The BullMQ worker process of the peer benchmark (bench.mjs starts it):
//   node worker.mjs --redis 127.0.0.1:PORT [--concurrency 50] [--log FILE]
// One Worker on queue "bench", BullMQ's defaults otherwise (lockDuration
// 30 s, stalledInterval 30 s, maxStalledCount 1). Jobs: "noop" returns
// data.x; "late" returns how late it started, in ms; "sleep_ms" appends "start|end <tag> <pid> <unix ms>" to the log
// and sleeps data.ms (an async wait, so `concurrency` of them run at once).
// Runs until SIGTERM / SIGINT (worker.close(): active jobs finish first).
import fs from 'node:fs';
import { Worker } from 'bullmq';
import IORedis from 'ioredis';

function arg(name, dflt) {
  const i = process.argv.indexOf('--' + name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const [host, port] = arg('redis', '127.0.0.1:6379').split(':');
const concurrency = Number(arg('concurrency', '50'));
const logPath = arg('log', '');
const logFd = logPath ? fs.openSync(logPath, 'a') : -1;

function note(what, tag) {
  // O_APPEND, one write per line: lines of two workers never interleave.
  if (logFd >= 0) fs.writeSync(logFd, `${what} ${tag} ${process.pid} ${Date.now()}\n`);
}

const connection = new IORedis({ host, port: Number(port), maxRetriesPerRequest: null });
const worker = new Worker(
  'bench',
  async (job) => {
    if (job.name === 'noop') return job.data.x;
    // bench.mjs d: when it started minus its due time (the job's timestamp
    // + delay, which the client also put in data.due). Date.now(): whole
    // ms, but the wall clock itself (timeOrigin + now() can drift from it).
    if (job.name === 'late') return Date.now() - job.data.due;
    if (job.name === 'sleep_ms') {
      note('start', job.data.tag);
      await new Promise((resolve) => setTimeout(resolve, job.data.ms));
      note('end', job.data.tag);
      return job.data.tag;
    }
    throw new Error('unknown job ' + job.name);
  },
  { connection, concurrency },
);
worker.on('error', (e) => console.error('worker error:', e.message));

let closing = false;
async function shutdown() {
  if (closing) return;
  closing = true;
  await worker.close();
  await connection.quit();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
// A worker never outlives the benchmark that started it (killed by a
// timeout, say): it leaves once its parent has gone.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(1);
}, 1000).unref();
process.on('SIGINT', shutdown);
