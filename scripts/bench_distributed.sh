#!/usr/bin/env bash
# The distributed mode against its peers (issue 11): atask, then Celery 5
# (Debian's python3-celery, Redis transport, prefork 2), then BullMQ (npm,
# one Node worker at concurrency 50), one after the other against the same
# redis-server of its own, started here on a free loopback port in a
# temporary folder and stopped at exit. Prints each harness's table, then the
# comparison (atask/Celery and atask/BullMQ) with the targets of issues 11
# and 12.
#
#   bash scripts/bench_distributed.sh           # full run, about 7-10 minutes on 2 cores
#   bash scripts/bench_distributed.sh --quick   # smaller counts, one run each (recovery still waits for BullMQ)
#   ATASK_BUILD_DIR=/tmp/b bash scripts/bench_distributed.sh   # build there, not in ./build
#
# ATASK_BUILD_DIR: the build folder for bench_distributed (configured with
# the default preset's settings when it has no cache yet); default ./build,
# through the default preset.
# Installs what is missing: the build's packages (scripts/setup.sh, which
# also brings redis-server and node), python3-celery and python3-redis
# (apt-get), bullmq and ioredis (npm ci in benchmarks/peers/bullmq).
# Harnesses: benchmarks/bench_distributed.cpp, benchmarks/peers/celery/bench.py,
# benchmarks/peers/bullmq/bench.mjs. Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=()
for a in "$@"; do
  case "$a" in
    --quick) quick=(--quick) ;;
    -h | --help)
      sed -n '2,21p' "$0"
      exit 0
      ;;
    *)
      echo "bench_distributed.sh: unknown argument '$a' (--quick or nothing)" >&2
      exit 2
      ;;
  esac
done

# ---- what is missing ------------------------------------------------------------------------
bash scripts/setup.sh
missing=()
for p in python3-celery python3-redis; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench_distributed: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's Celery lives in /usr/lib/python3/dist-packages: Debian's python3,
# whatever python3 comes first on the PATH.
py=/usr/bin/python3
if [ ! -d benchmarks/peers/bullmq/node_modules/bullmq ] || [ ! -d benchmarks/peers/bullmq/node_modules/ioredis ]; then
  echo "bench_distributed: npm ci in benchmarks/peers/bullmq"
  (cd benchmarks/peers/bullmq && npm ci --no-audit --no-fund --loglevel=error)
fi

# ---- build ------------------------------------------------------------------------------------
build_dir=${ATASK_BUILD_DIR:-}
if [ -z "$build_dir" ]; then
  cmake --preset default >/dev/null
  build_dir=build
elif [ ! -f "$build_dir/CMakeCache.txt" ]; then
  # The default preset's settings, in a folder of the caller's choosing.
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build_dir" -j2 --target bench_distributed
bench_bin="$build_dir/benchmarks/bench_distributed"

# ---- a redis-server of our own ------------------------------------------------------------------
tmp=$(mktemp -d /tmp/bench_distributed.XXXXXX)
redis_pid=""
watch_pid=""
status=0
cleanup() {
  [ -z "$watch_pid" ] || kill "$watch_pid" 2>/dev/null || true
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  if [ "$status" -eq 0 ]; then
    rm -rf "$tmp"
  else
    echo "bench_distributed: outputs and worker logs kept in $tmp" >&2
  fi
}
trap cleanup EXIT

free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Started through a symlink with a name of its own: a `pkill redis-server`
# (or `pkill -f redis`) elsewhere on a shared machine, which ended two runs
# while these numbers were taken, does not match it.
broker_bin="$tmp/atask-bench-broker"
ln -s "$(command -v redis-server)" "$broker_bin"
port=""
for attempt in 1 2 3 4 5; do
  p=$(free_port)
  "$broker_bin" --port "$p" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$tmp" --logfile "$tmp/redis.log" --maxmemory-policy noeviction &
  redis_pid=$!
  for _ in $(seq 100); do
    if redis-cli -p "$p" ping 2>/dev/null | grep -q PONG; then
      port=$p
      break
    fi
    kill -0 "$redis_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$port" ] && break
  kill "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  redis_pid=""
done
if [ -z "$port" ]; then
  status=1
  echo "bench_distributed: redis-server did not start (see $tmp/redis.log)" >&2
  exit 1
fi
echo "bench_distributed: redis-server $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/') on 127.0.0.1:$port (pid $redis_pid)"

# Says so at once if the server goes away under a harness (which then fails
# on its own bounded waits; each harness is also under `timeout`).
(
  while kill -0 "$redis_pid" 2>/dev/null; do sleep 0.5; done
  echo "bench_distributed: redis-server (pid $redis_pid) exited at $(date +%T); see $tmp/redis.log" >&2
) &
watch_pid=$!

redis_alive() {
  if ! redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
    status=1
    echo "bench_distributed: the redis-server died during the $1 phase (see $tmp/redis.log); stopping" >&2
    exit 1
  fi
}
flush() { redis-cli -p "$port" flushall >/dev/null; }

# ---- the three harnesses ------------------------------------------------------------------------
echo "bench_distributed: git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src include 2>/dev/null || echo ' + uncommitted changes in src/ include/'), load average $(cut -d' ' -f1-3 /proc/loadavg)"

limit=900
[ ${#quick[@]} -eq 0 ] || limit=400
run() { timeout --kill-after=10 "$limit" "$@"; }

run "$bench_bin" client --broker "redis://127.0.0.1:$port" --redis-pid "$redis_pid" \
  --workdir "$tmp/atask" "${quick[@]}" | tee "$tmp/atask.out" || status=1
redis_alive atask
flush
(cd benchmarks/peers/celery && run "$py" bench.py --broker "redis://127.0.0.1:$port/0" --redis-pid "$redis_pid" \
  --workdir "$tmp/celery" "${quick[@]}") | tee "$tmp/celery.out" || status=1
redis_alive Celery
flush
(cd benchmarks/peers/bullmq && run node bench.mjs --redis "127.0.0.1:$port" --redis-pid "$redis_pid" \
  --workdir "$tmp/bullmq" "${quick[@]}") | tee "$tmp/bullmq.out" || status=1
redis_alive BullMQ

# ---- the comparison -------------------------------------------------------------------------------
"$py" - "$tmp/atask.out" "$tmp/celery.out" "$tmp/bullmq.out" <<'EOF' || status=1
import json, sys

def last_json(path):
    try:
        lines = [l for l in open(path) if l.startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except OSError:
        return None

at, ce, bu = (last_json(p) for p in sys.argv[1:4])
if not (at and ce and bu):
    print("comparison: a harness printed no JSON line (%s)" % ", ".join(
        n for n, j in (("atask", at), ("Celery", ce), ("BullMQ", bu)) if not j))
    sys.exit(1)

def f(v, fmt):
    return "-" if v is None else fmt % v

def ratio(a, b):
    return None if (a is None or b in (None, 0)) else a / b

rows = []
ta, tc, tb = (j["throughput"]["median"] for j in (at, ce, bu))
rows.append(("a. throughput (tasks/s, median)", f(ta, "%.0f"), f(tc, "%.0f"), f(tb, "%.0f"),
             f(ratio(ta, tc), "%.1fx"), f(ratio(ta, tb), "%.2fx"),
             ">= 10x Celery, >= 1.5x BullMQ",
             "yes" if ta >= 10 * tc and ta >= 1.5 * tb else
             "NO (%s)" % ", ".join(x for x, ok in (("Celery", ta >= 10 * tc), ("BullMQ", ta >= 1.5 * tb)) if not ok)))
ra, rc, rb = (j["rtt_ms"]["p50"] for j in (at, ce, bu))
rows.append(("b. round trip p50 (ms)", f(ra, "%.3f"), f(rc, "%.3f"), f(rb, "%.3f"),
             f(ratio(rc, ra), "%.1fx better"), f(ratio(rb, ra), "%.2fx better"),
             "<= 0.5 ms, 3x better than BullMQ",
             "yes" if ra <= 0.5 and rb >= 3 * ra else
             "NO (%s)" % ", ".join(x for x, ok in (("> 0.5 ms", ra <= 0.5), ("< 3x BullMQ", rb >= 3 * ra)) if not ok)))
pa = at["rtt_ms"].get("ping_p50")
rows.append(("   floor: raw Redis PING p50 (ms)", f(pa, "%.3f"), "", "", "", "", "(same server, same run)", ""))

def cpu(j, k):
    return (j["throughput"].get("cpu_us_per_task") or {}).get(k)
for k, name in (("redis", "   CPU per task, redis-server (us)"), ("worker", "   CPU per task, worker (us)"),
                ("client", "   CPU per task, client (us)")):
    a_, c_, b_ = (cpu(j, k) for j in (at, ce, bu))
    rows.append((name, f(a_, "%.1f"), f(c_, "%.1f"), f(b_, "%.1f"), f(ratio(c_, a_), "%.1fx less"),
                 f(ratio(b_, a_), "%.2fx less"), "", ""))
ka, kc, kb = ((j["throughput"].get("redis_commands_per_task") or {}).get("total") for j in (at, ce, bu))
rows.append(("   Redis commands per task", f(ka, "%.1f"), f(kc, "%.1f"), f(kb, "%.1f"), f(ratio(kc, ka), "peer %.2fx"),
             f(ratio(kb, ka), "peer %.2fx"), "(Lua's inner calls included)", ""))
qa, qc, qb = (j["rtt_ms"]["p99"] for j in (at, ce, bu))
rows.append(("   round trip p99 (ms)", f(qa, "%.3f"), f(qc, "%.3f"), f(qb, "%.3f"),
             f(ratio(qc, qa), "%.1fx better"), f(ratio(qb, qa), "%.2fx better"), "", ""))

def rec(j, key):
    r = j.get("recovery") or {}
    return r.get(key) if r.get("ran") else None

sa, sc, sb = (rec(j, "restarted_s") for j in (at, ce, bu))
da, dc, db = (rec(j, "results_s") for j in (at, ce, bu))
bound = lambda j: (j.get("recovery") or {}).get("bound_s")
def rs(v, j, what):
    return "not %s within %s s" % (what, bound(j)) if v is None else "%.2f" % v
rows.append(("c. SIGKILL -> all 100 restarted (s)", rs(sa, at, "restarted"), rs(sc, ce, "restarted"),
             rs(sb, bu, "restarted"), "", f(ratio(sb, sa), "%.1fx faster"),
             "~6 s (defaults), faster than BullMQ",
             "yes" if sa is not None and sa <= 6.0 and (sb is None or sa < sb) else "NO"))
rows.append(("   SIGKILL -> all 100 results (s)", rs(da, at, "recovered"), rs(dc, ce, "recovered"),
             rs(db, bu, "recovered"), "", f(ratio(db, da), "%.1fx faster"), "", ""))
wa, wc, wb = (rec(j, "results_within_bound") for j in (at, ce, bu))
rows.append(("   results within the bound", "%s/100 (%s s)" % (wa, bound(at)), "%s/100 (%s s)" % (wc, bound(ce)),
             "%s/100 (%s s)" % (wb, bound(bu)), "", "", "", ""))
xa, xc, xb = (rec(j, "duplicate_completions") for j in (at, ce, bu))
rows.append(("   duplicate completions", str(xa), str(xc), str(xb), "", "", "0", "yes" if xa == 0 else "NO"))

# Issue 12: delayed-task lateness (atask and BullMQ; the Celery harness has
# no such phase) and throughput with retries on.
def late(j, k):
    d = j.get("delayed") or {}
    return (d.get("lateness_ms") or {}).get(k) if d.get("ran") else None
la, lb = late(at, "p50"), late(bu, "p50")
rows.append(("d. delayed lateness p50 (ms)", f(la, "%.2f"), "-", f(lb, "%.2f"), "", f(ratio(lb, la), "%.1fx less"),
             "<= 5 ms", "-" if la is None else ("yes" if la <= 5 else "NO")))
qa, qb = late(at, "p99"), late(bu, "p99")
rows.append(("   delayed lateness p99 (ms)", f(qa, "%.2f"), "-", f(qb, "%.2f"), "", f(ratio(qb, qa), "%.1fx less"),
             "<= 50 ms", "-" if qa is None else ("yes" if qa <= 50 else "NO")))
ma, mb = late(at, "max"), late(bu, "max")
rows.append(("   delayed lateness max (ms)", f(ma, "%.2f"), "-", f(mb, "%.2f"), "", "", "", ""))
ea = (at.get("delayed") or {}).get("early")
rows.append(("   delayed tasks started early", str(ea), "-", str((bu.get("delayed") or {}).get("early")), "", "",
             "0", "-" if ea is None else ("yes" if ea == 0 else "NO")))
ya, yb = ((j.get("retry") or {}).get("ratio") for j in (at, bu))
rows.append(("e. throughput retries on / off", f(ya, "%.2fx"), "-", f(yb, "%.2fx"), "", "",
             ">= 0.8x", "-" if ya is None else ("yes" if ya >= 0.8 else "NO")))
za, zb = ((j.get("retry") or {}).get("median") for j in (at, bu))
rows.append(("   throughput, retries on (tasks/s)", f(za, "%.0f"), "-", f(zb, "%.0f"), "",
             f(ratio(za, zb), "%.2fx"), "", ""))

print("\nComparison (same redis-server, one worker process each; %s run)" % ("quick" if at.get("quick") else "full"))
print("  atask: 2 pool threads, prefetch %s | Celery %s: prefork 2 | BullMQ %s (Node %s): concurrency %s" % (
    at["worker"]["prefetch"], ce.get("version"), bu.get("version"), bu.get("node"), bu["worker"]["concurrency"]))
w = [36, 22, 22, 22, 14, 15, 32, 10]
head = ("metric", "atask", "Celery", "BullMQ", "atask/Celery", "atask/BullMQ", "target", "met?")
print("  ".join(h.ljust(n) for h, n in zip(head, w)))
for r in rows:
    print("  ".join(str(c).ljust(n) for c, n in zip(r, w)))
print(json.dumps({"bench": "distributed-compare", "atask": at, "celery": ce, "bullmq": bu}, separators=(",", ":")))
EOF
exit "$status"
