#!/usr/bin/env bash
# Usage: smoke.sh STATEROOM_LOAD BINARY_ECHO_SERVER COUNTER_SERVER STATEROOM
#
# stateroom-load against the example servers: every workload for a second (--json, --server-pid),
# each report checked (messages, no errors, the server figures); the same through `stateroom load`;
# then a bad option (exit 2, one error: line) and a server that is gone (exit 1, the errors
# counted).
set -euo pipefail
if [ $# -ne 4 ]; then
  echo "usage: $0 STATEROOM_LOAD BINARY_ECHO_SERVER COUNTER_SERVER STATEROOM" >&2
  exit 2
fi
load=$1 echo_server=$2 counter_server=$3 stateroom=$4
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
failed=0

# start SERVER: starts it on a free port (from its log line `listening on HOST:PORT ...`); sets
# PORT and PID.
start() {
  local log
  log="$work/$(basename "$1").log"
  : >"$log"  # there before the server opens it, for sed below
  "$1" --port 0 --threads 1 --log-level info >"$log" 2>&1 &
  PID=$!
  pids+=("$PID")
  for _ in $(seq 100); do
    PORT=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\) .*/\1/p' "$log")
    [ -n "$PORT" ] && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "FAIL: $1 did not start"
  cat "$log"
  exit 1
}

# run NAME EXPECTED_STATUS CONDITION ARGS...: stateroom-load --json ARGS for one second; CONDITION is
# a Python expression on the report `r`.
run() {
  local name=$1 expected=$2 condition=$3 status=0
  shift 3
  $load --seconds 1 --warmup 0 --json "$@" >"$work/report.json" 2>"$work/progress.txt" || status=$?
  if python3 - "$work/report.json" "$status" "$expected" "$condition" <<'PY'; then
import json, sys
path, status, expected, condition = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
r = json.load(open(path))
ok = status == expected and eval(condition, {}, {"r": r})
print(json.dumps(r))
sys.exit(0 if ok else 1)
PY
    echo "ok: $name"
  else
    echo "FAIL: $name (exit status $status)"
    cat "$work/progress.txt"
    failed=1
  fi
}

start "$echo_server"
echo_port=$PORT echo_pid=$PID
start "$counter_server"
counter_port=$PORT counter_pid=$PID

measured='r["errors"] == 0 and r["messages"] > 0 and r["latency_us"]["p99"] > 0 and r["server_cpu_us_per_message"] >= 0'
run echo 0 "$measured and r[\"rooms\"] == 4 and r[\"open_connections\"] == 4" \
  --target "127.0.0.1:$echo_port" --workload echo --connections 4 --in-flight 4 --server-pid "$echo_pid"
run "echo, 1 KiB messages, 2 threads" 0 "$measured and r[\"payload_bytes\"] == 1024" \
  --target "127.0.0.1:$echo_port" --workload echo --connections 4 --in-flight 4 --payload 1KiB --threads 2 \
  --server-pid "$echo_pid"
run "echo, paced at 2000 messages/s" 0 "$measured and 1500 < r[\"messages_per_second\"] < 2500 and r[\"rate\"] == 2000" \
  --target "127.0.0.1:$echo_port" --workload echo --connections 4 --in-flight 4 --rate 2000 --server-pid "$echo_pid"
run counter 0 "$measured" \
  --target "127.0.0.1:$counter_port" --workload counter --connections 4 --in-flight 4 --server-pid "$counter_pid"
run broadcast 0 "$measured and r[\"rooms\"] == 1" \
  --target "127.0.0.1:$counter_port" --workload broadcast --connections 4 --in-flight 4 --server-pid "$counter_pid"
run connect-churn 0 "$measured" \
  --target "127.0.0.1:$echo_port" --workload connect-churn --connections 4 --server-pid "$echo_pid"
run idle 0 'r["errors"] == 0 and r["open_connections"] == 50 and r["rss_bytes_per_connection"] > 0' \
  --target "127.0.0.1:$echo_port" --workload idle --connections 50 --server-pid "$echo_pid"

# The `stateroom load` subcommand is the same program.
load_program=$load
load="$stateroom load"
run "stateroom load, echo" 0 "$measured" \
  --target "127.0.0.1:$echo_port" --workload echo --connections 4 --in-flight 4 --server-pid "$echo_pid"
load=$load_program

# A bad option: exit status 2 and one line starting with error:.
status=0
"$load" --target "127.0.0.1:$counter_port" --workload counter --connections 4 --rooms 2 >"$work/out.txt" \
  2>"$work/err.txt" || status=$?
if [ "$status" -eq 2 ] && [ "$(wc -l <"$work/err.txt")" -eq 1 ] && grep -q '^error: ' "$work/err.txt"; then
  echo "ok: a bad option"
else
  echo "FAIL: a bad option (exit status $status)"
  cat "$work/err.txt"
  failed=1
fi

# A server that is gone: every connect fails, the report still comes, exit status 1.
kill "$echo_pid"
wait "$echo_pid" 2>/dev/null || true
run "a server that is gone" 1 'r["errors"] == 3 and r["error_counts"]["connect"] == 3 and r["messages"] == 0' \
  --target "127.0.0.1:$echo_port" --workload echo --connections 3

exit $failed
