#!/usr/bin/env bash
# scripts/reload.sh: what a reload costs. udpd load runs at a fixed rate (or as
# fast as it can) against udpd serve while the daemon is reloaded (SIGHUP: the
# sockets pass to a new process) N times, or, for comparison, stopped and
# started again (SIGTERM, new process on the same port) N times; prints the
# load's sent/received/lost for each mode.
#
# Options:
#   --rates LIST     offered rates (pps; 0 = max), default 100000,0
#   --reloads N      reloads (or restarts) per run, default 3
#   --duration SECS  load duration per run, default 4
#   --workers N      udpd workers, default 1
#   --runs N         runs per cell (medians are not taken: every run is shown), default 1
#   --no-netns       plain loopback even as root (env NO_NETNS=1)
# Environment: UDPD=/path/to/udpd skips the build; SERVER_CPUS/LOAD_CPU as in lib.sh.
# Example: scripts/reload.sh --rates 100000,0 --reloads 3
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RATES="100000,0"
RELOADS=3
DURATION=4
WORKERS=1
RUNS=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --rates) RATES=$2; shift 2 ;;
    --reloads) RELOADS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --no-netns) NO_NETNS=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ $RELOADS =~ ^[0-9]+$ && $RUNS =~ ^[1-9][0-9]*$ && $WORKERS =~ ^[1-9][0-9]*$ ]] ||
  die "--reloads, --runs and --workers take whole numbers"
trap 'exit 130' INT TERM

build_udpd
netns_setup
IFS=, read -r -a rate_list <<<"$RATES"
echo "udpd reload.sh: $(machine_line)"
echo "server on CPU $SERVER_CPUS, load on CPU $LOAD_CPU, ${DURATION}s of load, $RELOADS reloads or restarts per run"
printf '%-8s %-8s %4s %12s %12s %10s %8s\n' mode rate run sent received lost "loss %"

# current_pid LOG: the pid of the process serving now (the last one a handover named, or the first).
current_pid() {
  local last
  last=$(grep -o 'handed over to pid [0-9]*' "$1" | tail -n 1 | awk '{print $5}')
  echo "${last:-$SERVER_PID}"
}

one_run() {
  local mode=$1 rate=$2 run=$3 port json gap pid i
  port=$(pick_port 19500)
  json="$WORK_DIR/load-$mode-$rate-$run.json"
  start_server udpd "$SERVER_CPUS" line "$port" "$UDPD" serve --listen "127.0.0.1:$port" \
    --workers "$WORKERS" --no-pin --quiet || return 0
  in_ns nice -n "$NICE" taskset -c "$LOAD_CPU" "$UDPD" load "127.0.0.1:$port" --rate "$rate" \
    --duration "$DURATION" --warmup 0 --flows 16 --timeout 1 --json "$json" --quiet \
    >"$WORK_DIR/load.out" 2>&1 &
  local load_pid=$!
  gap=$(awk -v d="$DURATION" -v n="$RELOADS" 'BEGIN { printf "%.3f", d / (n + 1) }')
  for ((i = 0; i < RELOADS; i++)); do
    sleep "$gap"
    pid=$(current_pid "$SERVER_LOG")
    if [[ $mode == reload ]]; then
      kill -HUP "$pid"
      # Wait (bounded) for this handover's line before the next one.
      local want=$((i + 1)) t
      for ((t = 0; t < 100; t++)); do
        [[ $(grep -c 'handed over to pid' "$SERVER_LOG") -ge $want ]] && break
        sleep 0.05
      done
    else
      stop_server
      start_server udpd "$SERVER_CPUS" line "$port" "$UDPD" serve --listen "127.0.0.1:$port" \
        --workers "$WORKERS" --no-pin --quiet || true
    fi
  done
  wait "$load_pid" || true
  if [[ $mode == reload ]]; then
    SERVER_PID=$(current_pid "$SERVER_LOG")
  fi
  stop_server
  python3 - "$json" "$mode" "$rate" "$run" <<'EOF'
import json, sys
path, mode, rate, run = sys.argv[1:]
try:
    j = json.load(open(path))
except (OSError, ValueError):
    print(f"{mode:<8} {rate:<8} {run:>4}  (no load report)")
    sys.exit()
sent, received, lost = j["sent"], j["received"], j["lost"]
pct = 100.0 * lost / sent if sent else 0.0
print(f"{mode:<8} {rate:<8} {run:>4} {sent:>12,} {received:>12,} {lost:>10,} {pct:>8.3f}")
EOF
}

for rate in "${rate_list[@]}"; do
  for mode in reload restart; do
    for ((run = 1; run <= RUNS; run++)); do
      one_run "$mode" "$rate" "$run"
    done
  done
done
