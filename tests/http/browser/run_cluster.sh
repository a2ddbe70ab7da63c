#!/usr/bin/env bash
# Runs the Cluster-section browser test (cluster.test.mjs) against real processes:
# its own redis-server (temporary folder, free port, 127.0.0.1, no persistence),
# two `atask worker` processes (browser-w1, browser-w2) and an `atask api`, all with
# the example plugins of the build. Stops every process it started, also on failure
# or when it is interrupted (Redis last: the others need it to leave the cluster).
#
# Usage: tests/http/browser/run_cluster.sh <build-dir> [options of cluster.test.mjs, e.g. --screenshot f.png]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 <build-dir> [--screenshot file.png] [--expect-plugin TEXT]" >&2; exit 2; }
build="$(cd "$1" && pwd)"
shift
atask="$build/atask"
plugins="$build/plugins"
[ -x "$atask" ] || { echo "FAIL cluster_dashboard: no atask program at $atask" >&2; exit 1; }
[ -d "$plugins" ] || { echo "FAIL cluster_dashboard: no plugin folder at $plugins" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "FAIL cluster_dashboard: redis-server is not installed" >&2; exit 1; }
args=()
for a in "$@"; do  # the test runs in this folder: make relative paths (screenshot) absolute
  [[ "$a" == /* || "$a" == -* || "$a" == *://* || "$a" == *@* ]] || a="$PWD/$a"
  args+=("$a")
done

tmp="$(mktemp -d "${TMPDIR:-/tmp}/atask-browser-cluster-XXXXXX")"
redis_pid="" node_pid="" atask_pids=()
stop() {  # SIGTERM, up to 15 s, then SIGKILL; every pid given
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}
cleanup() {
  trap - EXIT INT TERM HUP
  [ -n "$node_pid" ] && stop "$node_pid"
  [ ${#atask_pids[@]} -gt 0 ] && stop "${atask_pids[@]}"
  [ -n "$redis_pid" ] && stop "$redis_pid"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
show_logs() {
  local f
  for f in "$tmp"/*.log; do [ -s "$f" ] && { echo "--- $(basename "$f") (last lines) ---"; tail -n 20 "$f"; }; done >&2
}
die() { echo "FAIL cluster_dashboard: $*" >&2; show_logs; exit 1; }

# The node packages, as run.sh installs them.
cd "$here"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --silent --no-audit --no-fund
  touch node_modules
fi

# redis-server on a free port; another process may take the port between the
# probe and the bind, so a few tries.
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
redis_port=""
for _ in 1 2 3 4 5; do
  port="$(free_port)"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
    --maxmemory-policy noeviction --logfile "$tmp/redis.log" &
  redis_pid=$!
  for _ in $(seq 100); do  # up to 10 s: it answers PING, or it exited
    redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG && { redis_port=$port; break; }
    kill -0 "$redis_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$redis_port" ] && break
  stop "$redis_pid"
  redis_pid=""
done
[ -n "$redis_port" ] || die "redis-server did not start"
broker="redis://127.0.0.1:$redis_port"

for w in browser-w1 browser-w2; do
  "$atask" worker --broker "$broker" --plugin-dir "$plugins" -n "$w" -c 2 --processes 1 -l warn \
    >"$tmp/$w.log" 2>&1 &
  atask_pids+=($!)
done
"$atask" api --broker "$broker" --plugin-dir "$plugins" --http 127.0.0.1:0 --json -l warn \
  --jobs-dir "$tmp/api-jobs" >"$tmp/api.out" 2>"$tmp/api.log" &
api_pid=$!
atask_pids+=($api_pid)

# Its first stdout line: {"event":"started","http":"http://127.0.0.1:<port>/",...}
url=""
for _ in $(seq 300); do  # up to 30 s
  if [ "$(wc -l <"$tmp/api.out")" -ge 1 ]; then  # a whole first line
    url="$(head -n 1 "$tmp/api.out" | node -e 'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>{try{console.log(JSON.parse(s).http||"")}catch{}})')"
    break
  fi
  kill -0 "$api_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$url" ] || { cat "$tmp/api.out" >&2; die "atask api printed no started line with \"http\" within 30 s"; }

node cluster.test.mjs --url "$url" --broker "$broker" --atask "$atask" "${args[@]}" &
node_pid=$!
code=0
wait "$node_pid" || code=$?
node_pid=""
[ "$code" -eq 0 ] || show_logs
exit "$code"
