#!/usr/bin/python3
"""Celery peer of benchmarks/bench_distributed.cpp (issue 11).

Same measurements, same redis-server (scripts/bench_distributed.sh runs it):
  a. throughput: N trivial tasks ("noop") from one client, every one sent
     with apply_async (Celery has no bulk send), then every result waited for
     (ResultSet.get, the Redis backend's native join); one worker, prefork 2.
     Time = first send -> last result; median of the runs.
  b. round trip: noop.delay(i).get(), one at a time, after a warm-up.
  c. recovery after SIGKILL: worker A (acks_late, reject_on_worker_lost,
     prefetch multiplier 50: it reserves all 100 tasks, 2 run at a time)
     takes 100 sleep_ms(2000) tasks; once the queue is empty and its 2
     processes have started a task each, 300 ms later, A's whole process
     group is killed with SIGKILL and worker B is started at once. Waited
     for at most --bound-s seconds: how many results came, and when.
Prints a table, then one JSON object on the last line.

Usage: /usr/bin/python3 bench.py --broker redis://127.0.0.1:PORT/0 [--quick]
       [--tasks N] [--runs N] [--rtt N] [--bound-s N] [--workdir DIR] [--redis-pid PID]
"""

import argparse
import ctypes
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ beside the harness


def percentile(v, p):
    if not v:
        return 0.0
    s = sorted(v)
    return s[min(len(s) - 1, int(p * len(s)))]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _die_with_parent():
    # A worker never outlives the benchmark (killed by a timeout, say):
    # prctl(PR_SET_PDEATHSIG, SIGKILL).
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def spawn_worker(name, env, out):
    f = open(out, "ab")
    p = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench_tasks", "worker", "--concurrency", "2", "-P", "prefork",
         "--loglevel", "WARNING", "-n", name + "@%h"],
        cwd=HERE, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=_die_with_parent)
    f.close()
    return p


def stop_worker(p, grace=40):
    """SIGTERM (warm shutdown), then SIGKILL to the group after `grace` s."""
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=grace)
        clean = True
    except subprocess.TimeoutExpired:
        clean = False
    try:
        os.killpg(p.pid, signal.SIGKILL)  # the pool processes, if any are left
    except ProcessLookupError:
        pass
    p.wait()
    return clean


def cpu_s(pid):
    """CPU seconds (user + system) used by a process so far; 0 if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def group_cpu_s(pgid):
    """CPU seconds of the live processes of a process group (the worker and its pool processes)."""
    return sum(cpu_s(p) for p in group_pids(pgid))


def commandstats(conn):
    """INFO commandstats: calls per command."""
    out = {}
    for k, v in conn.info("commandstats").items():
        name = k[len("cmdstat_"):] if k.startswith("cmdstat_") else k
        out[name] = float(v.get("calls", 0)) if isinstance(v, dict) else 0.0
    return out


def per_task(before, after, tasks):
    """Redis commands per task between two snapshots: {"total": t, cmd: n, ...} (most first)."""
    d = {k: (v - before.get(k, 0.0)) / tasks for k, v in after.items() if k != "info"}
    d = {k: v for k, v in sorted(d.items(), key=lambda kv: -kv[1]) if v > 0}
    return dict([("total", sum(d.values()))] + list(d.items()))


def group_pids(pgid):
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getpgid(int(d)) == pgid:
                    out.add(int(d))
            except OSError:
                pass
    return out


def read_log(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                w = line.split()
                if len(w) == 4:
                    out.append((w[0] == "start", int(w[1]), int(w[2]), int(w[3])))
    except FileNotFoundError:
        pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tasks", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--rtt", type=int)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--recovery-tasks", type=int, default=100)
    ap.add_argument("--sleep-ms", type=int, default=2000)
    ap.add_argument("--bound-s", type=int, default=60)
    ap.add_argument("--workdir")
    ap.add_argument("--no-recovery", action="store_true")
    ap.add_argument("--redis-pid", type=int, default=0, help="the local redis-server, for its CPU per task")
    a = ap.parse_args()
    n = a.tasks or (2000 if a.quick else 20000)
    runs = a.runs or (1 if a.quick else 3)
    rtt_n = a.rtt or (300 if a.quick else 2000)
    warmup = a.warmup or (50 if a.quick else 200)
    r, task_ms, bound_s = a.recovery_tasks, a.sleep_ms, a.bound_s
    workdir = a.workdir or tempfile.mkdtemp(prefix="bench_celery.")
    os.makedirs(workdir, exist_ok=True)
    load_start = loadavg()

    os.environ["BENCH_BROKER"] = a.broker
    import celery
    from celery.result import ResultSet

    import bench_tasks

    env = dict(os.environ, BENCH_BROKER=a.broker, PYTHONDONTWRITEBYTECODE="1")
    noop, sleep_ms = bench_tasks.noop, bench_tasks.sleep_ms

    def wait_ready(p, what):
        try:
            if noop.delay(7).get(timeout=60) != 7:
                sys.exit("noop(7) came back as something else")
        except Exception as e:  # noqa: BLE001
            sys.exit("%s (pid %d) did not answer within 60 s: %r" % (what, p.pid, e))

    cpu = {"redis": 0.0, "worker": 0.0, "client": 0.0}

    def cpu_now(worker):
        return {"redis": cpu_s(a.redis_pid) if a.redis_pid else 0.0, "worker": group_cpu_s(worker.pid),
                "client": cpu_s(os.getpid())}

    def throughput(count, worker=None, account=False):
        c0 = cpu_now(worker) if account else None
        t0 = time.monotonic()
        rs = [noop.apply_async((i,)) for i in range(count)]
        t_sent = time.monotonic()
        values = ResultSet(rs).get(timeout=600)
        t1 = time.monotonic()
        if sum(values) != count * (count - 1) // 2:
            sys.exit("wrong sum of results")
        if account:
            c1 = cpu_now(worker)
            for k in cpu:
                cpu[k] += c1[k] - c0[k]
        return count / (t1 - t0), count / (t_sent - t0)

    # ---- a + b ---------------------------------------------------------------------------------
    w = spawn_worker("bench-main", env, os.path.join(workdir, "celery-main.log"))
    wait_ready(w, "the worker")
    throughput(min(n, 500))  # warm-up
    raw = noop.app.backend.client  # a redis.Redis on the same server
    stats0 = commandstats(raw)
    tput, enq = [], []
    for _ in range(runs):
        t, e = throughput(n, w, True)
        tput.append(t)
        enq.append(e)
    cmds = {k: round(v, 3) for k, v in per_task(stats0, commandstats(raw), n * runs).items()}
    for i in range(warmup):
        noop.delay(i).get(timeout=30)
    rtt = []
    for i in range(rtt_n):
        t0 = time.perf_counter()
        v = noop.delay(i).get(timeout=30)
        rtt.append((time.perf_counter() - t0) * 1000)
        if v != i:
            sys.exit("wrong round trip result")
    main_clean = stop_worker(w)

    # ---- c -------------------------------------------------------------------------------------
    rec = {"ran": not a.no_recovery, "in_flight": r, "task_ms": task_ms, "bound_s": bound_s,
           "restarted_s": None, "results_s": None, "results_within_bound": 0, "restarted_within_bound": 0,
           "starts": 0, "completions": 0, "duplicate_completions": 0, "all_reserved_by_a": False}
    b_clean = True
    if not a.no_recovery:
        log = os.path.join(workdir, "celery-recovery.log")
        if os.path.exists(log):
            os.unlink(log)
        renv = dict(env, BENCH_RECOVERY="1", BENCH_LOG=log, BENCH_PREFETCH_MULT=str(max(1, r // 2)))
        wa = spawn_worker("bench-A", renv, os.path.join(workdir, "celery-A.log"))
        wait_ready(wa, "worker A")
        hs = [sleep_ms.apply_async((task_ms, i)) for i in range(r)]
        # A has reserved them all (the queue list is empty) and runs 2.
        conn = noop.app.backend.client  # a redis.Redis on the same server
        until = time.monotonic() + 30
        while time.monotonic() < until:
            started = {t for (s, t, _, _) in read_log(log) if s}
            if conn.llen("celery") == 0 and len(started) >= 2:
                rec["all_reserved_by_a"] = True
                break
            time.sleep(0.002)
        time.sleep(0.3)
        a_pids = group_pids(wa.pid)
        kill_t = time.monotonic()
        kill_ms = int(time.time() * 1000)
        os.killpg(wa.pid, signal.SIGKILL)
        wa.wait()
        wb = spawn_worker("bench-B", renv, os.path.join(workdir, "celery-B.log"))
        deadline = kill_t + bound_s
        while time.monotonic() < deadline:
            if all(h.ready() for h in hs):
                rec["results_s"] = time.monotonic() - kill_t
                break
            time.sleep(0.05)
        rec["results_within_bound"] = sum(1 for h in hs if h.ready())
        restarted, starts, ends = {}, {}, {}
        for (s, tag, pid, ms) in read_log(log):
            d = starts if s else ends
            d[tag] = d.get(tag, 0) + 1
            if s and pid not in a_pids and ms >= kill_ms and tag not in restarted:
                restarted[tag] = ms
        rec["restarted_within_bound"] = len(restarted)
        if len(restarted) == r:
            rec["restarted_s"] = (max(restarted.values()) - kill_ms) / 1000.0
        rec["starts"] = sum(starts.values())
        rec["completions"] = sum(ends.values())
        rec["duplicate_completions"] = sum(max(0, k - 1) for k in ends.values())
        unacked = conn.hlen("unacked")
        rec["unacked_in_redis_at_end"] = unacked
        b_clean = stop_worker(wb)

    # ---- report --------------------------------------------------------------------------------
    t_med, e_med = statistics.median(tput), statistics.median(enq)
    per = 1e6 / (n * runs)
    cpu_us = {"redis": round(cpu["redis"] * per, 1) if a.redis_pid else None,
              "worker": round(cpu["worker"] * per, 1), "client": round(cpu["client"] * per, 1)}
    p50, p90, p99, pmax = (percentile(rtt, q) for q in (0.5, 0.9, 0.99, 1.0))
    print("\nCelery %s, Redis transport and result backend (%s): %s" % (
        celery.__version__, "quick" if a.quick else "full", " ".join(sys.argv)))
    print("  load average at start %s, at end %s; worker logs in %s" % (load_start, loadavg(), workdir))
    print("  one client process, one worker: celery worker --concurrency 2 -P prefork (defaults otherwise)")
    print("  a: %d noop tasks per run, apply_async each, then ResultSet.get(); %d runs, median" % (n, runs))
    print("  b: %d sequential noop.delay(i).get() after %d warm-up round trips" % (rtt_n, warmup))
    if not a.no_recovery:
        print("  c: %d sleep_ms(%d) tasks reserved by worker A (acks_late, reject_on_worker_lost, prefetch "
              "multiplier %d x 2 processes), SIGKILL to its process group 300 ms after the queue emptied, "
              "worker B started at once; visibility_timeout default (3600 s); bounded at %d s"
              % (r, task_ms, max(1, r // 2), bound_s))

    def row(m, v):
        print("%-58s %14s" % (m, v))

    def fs(x):
        return "-" if x is None else "%.2f" % x

    print()
    row("metric", "Celery")
    row("a. throughput (tasks/s)", "%.0f" % t_med)
    row("   runs (tasks/s)", " ".join("%.0f" % x for x in tput))
    row("   enqueue rate alone (apply_async, tasks/s)", "%.0f" % e_med)
    row("   CPU per task: redis-server / worker / client (us)", "%s / %.1f / %.1f" % (
        "-" if cpu_us["redis"] is None else "%.1f" % cpu_us["redis"], cpu_us["worker"], cpu_us["client"]))
    row("   Redis commands per task (Lua's inner calls included)", "%.1f" % cmds.get("total", 0))
    print("     " + ", ".join("%s %.2f" % (k, v) for k, v in list(cmds.items())[1:7]))
    row("b. round trip p50 (ms)", "%.3f" % p50)
    row("   round trip p90 / p99 / max (ms)", "%.3f / %.3f / %.2f" % (p90, p99, pmax))
    if not a.no_recovery:
        row("c. kill -> all %d restarted on B (s)" % r, fs(rec["restarted_s"]))
        row("   kill -> all %d results at the client (s)" % r, fs(rec["results_s"]))
        row("   results within %d s" % bound_s, "%d/%d" % (rec["results_within_bound"], r))
        row("   restarted within %d s" % bound_s, "%d/%d" % (rec["restarted_within_bound"], r))
        row("   runs started / completed", "%d / %d" % (rec["starts"], rec["completions"]))
        row("   duplicate completions", "%d" % rec["duplicate_completions"])
        row("   messages still in kombu's 'unacked' hash", "%d" % rec["unacked_in_redis_at_end"])
    print("\n  workers stopped cleanly on SIGTERM: main %s, B %s\n" % (
        "yes" if main_clean else "NO", "yes" if b_clean else "NO"))
    print(json.dumps({
        "bench": "distributed", "system": "celery", "version": celery.__version__, "quick": a.quick,
        "worker": {"processes": 1, "pool": "prefork", "concurrency": 2},
        "throughput": {"tasks": n, "runs": [round(x) for x in tput], "median": round(t_med),
                       "enqueue_median": round(e_med), "cpu_us_per_task": cpu_us,
                       "redis_commands_per_task": cmds},
        "rtt_ms": {"p50": round(p50, 4), "p90": round(p90, 4), "p99": round(p99, 4), "max": round(pmax, 3),
                   "samples": len(rtt)},
        "recovery": rec, "loadavg": {"start": load_start, "end": loadavg()},
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
