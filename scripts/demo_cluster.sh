#!/usr/bin/env bash
# The cluster demo: installs what is missing, builds, then starts a local
# redis-server (in a temporary folder, on a free port), an API server and two
# worker processes that load the example plugins, and sends tasks for a
# while. Open the dashboard URL it prints: the Cluster section shows both
# workers and the queues; run a "report" job from the Jobs form.
#
#   bash scripts/demo_cluster.sh [--seconds N] [--port P] [--kill-after N]
#
# --seconds N     stop everything after N seconds (default 120; Ctrl-C stops earlier)
# --port P        the API server's port (default 8080; 0: any free port)
# --kill-after N  kill -9 the first worker after N seconds: its tasks go back
#                 to their queues within about 6 s and finish on the second
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=120 port=8080 kill_after=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
    --port) port=${2:?--port needs a number}; shift 2 ;;
    --kill-after) kill_after=${2:?--kill-after needs a number}; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo_cluster: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[[ "$seconds" =~ ^[0-9]+$ && "$port" =~ ^[0-9]+$ && ( -z "$kill_after" || "$kill_after" =~ ^[0-9]+$ ) ]] ||
  { echo "demo_cluster: --seconds, --port and --kill-after take whole numbers" >&2; exit 2; }

bash scripts/setup.sh
cmake --preset default >/dev/null
cmake --build --preset default --target atask_cli demo_tasks demo_reports
atask=$PWD/build/atask
plugins=$PWD/build/plugins

tmp=$(mktemp -d /tmp/atask-demo-cluster-XXXXXX)
pids=()
cleanup() {
  trap - EXIT INT TERM
  # The API server and the workers stop warm on SIGTERM (running tasks
  # finish, then they leave the cluster): Redis (pids[0]) only once they are
  # gone, since they need it to leave.
  stop() {
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "$@"; do
      for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    done
  }
  [ ${#pids[@]} -gt 1 ] && stop "${pids[@]:1}"
  [ ${#pids[@]} -gt 0 ] && stop "${pids[0]}"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
  --maxmemory-policy noeviction --logfile "$tmp/redis.log" &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$redis_port" ping >/dev/null || { echo "demo_cluster: redis-server did not start" >&2; exit 1; }
broker=redis://127.0.0.1:$redis_port

"$atask" worker --broker "$broker" --plugin-dir "$plugins" -n demo-worker-1 --processes 1 -c 2 \
  >"$tmp/worker-1.log" 2>&1 &
pids+=($!)
worker1=$!
"$atask" worker --broker "$broker" --plugin-dir "$plugins" -n demo-worker-2 --processes 1 -c 2 --beat \
  >"$tmp/worker-2.log" 2>&1 &
pids+=($!)
"$atask" api --broker "$broker" --plugin-dir "$plugins" --http "127.0.0.1:$port" >"$tmp/api.log" 2>&1 &
pids+=($!)
api=$!

url=""
for _ in $(seq 200); do
  url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$tmp/api.log" | head -1 || true)
  [ -n "$url" ] && break
  kill -0 "$api" 2>/dev/null || { echo "demo_cluster: the API server exited:" >&2; cat "$tmp/api.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "demo_cluster: the API server printed no URL" >&2; cat "$tmp/api.log" >&2; exit 1; }

echo
echo "  dashboard:  $url/"
echo "  redis:      $broker    (logs in $tmp)"
echo "  try:        $atask inspect workers --broker $broker"
echo "              $atask send demo.add '[2, 3]' --wait --broker $broker"
echo "              curl -sN -X POST $url/api/jobs/report -d '{\"steps\": 20, \"step_ms\": 200}'"
echo "  stops by itself in $seconds s (Ctrl-C stops earlier)"
echo

# A steady trickle of work: additions, squares in child processes, and a
# slow report now and then, until the time is up.
start=$SECONDS
i=0
while [ $((SECONDS - start)) -lt "$seconds" ]; do
  i=$((i + 1))
  "$atask" send demo.add "[$i, $i]" --broker "$broker" >/dev/null
  if [ $((i % 4)) -eq 0 ]; then "$atask" send demo.square "[$i]" --broker "$broker" >/dev/null; fi
  if [ $((i % 20)) -eq 0 ]; then "$atask" send demo.report "[10, 300]" --broker "$broker" >/dev/null; fi
  if [ -n "$kill_after" ] && [ $((SECONDS - start)) -ge "$kill_after" ] && kill -0 "$worker1" 2>/dev/null; then
    { kill -KILL "$worker1" && wait "$worker1"; } 2>/dev/null || true
    echo "killed demo-worker-1 (pid $worker1) with SIGKILL: its tasks go back to their queues and finish on demo-worker-2"
    kill_after=""
  fi
  sleep 0.5
done
echo "demo_cluster: $i rounds sent; the cluster now:"
"$atask" inspect workers --broker "$broker" || true
"$atask" inspect queues --broker "$broker" || true
echo "demo_cluster: stopping"
