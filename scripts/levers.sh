#!/usr/bin/env bash
# scripts/levers.sh: one regime, several udpd variants and the minimal C loop,
# measured in the same run with the runs interleaved (run 1 of every variant,
# then run 2, ..., each run starting one variant further along the list), so
# that a lever's effect is a ratio within one run rather than a comparison of
# two noisy runs. At the end, one table of medians and one of per-run ratios to
# the minimal loop (`scripts/results.py ratios minimal-plain FILE...` pools the
# raw files of several sets the same way).
#
# A variant is NAME=ARGS: `udpd serve` with ARGS after the listen address
# (NAME@PATH=ARGS takes the udpd binary at PATH instead). The listen address is
# 0.0.0.0:PORT (udpd's default) unless ARGS names --listen. NAME@minimal=ENV
# runs the minimal loop instead, with ENV (space-separated VAR=VALUE, see
# scripts/peers/minimal_echo.c) in its environment. The minimal loop
# (scripts/peers/minimal_echo.c, plain mode) is always measured as
# `minimal-plain`.
#
# Options:
#   --variant NAME[@PATH]=ARGS   repeatable; default: one `default` variant (no ARGS)
#   --regime bulk|spread         default spread (1,000 flows)
#   --payloads LIST              default 64,1400
#   --rates LIST                 fixed offered rates besides max (0), default 100000
#   --workers N                  udpd workers and minimal-loop threads, default 1
#   --runs N                     default 3
#   --duration SECS              per cell, default 2
#   --minimal-features           also measure `minimal-features`: the minimal loop
#                                with udpd's default socket features (UDP_GRO on
#                                the socket, a 512 KiB SO_RCVBUFFORCE, IP_PKTINFO in
#                                and out, SO_TIMESTAMPNS), which tells what the
#                                features cost from what udpd's own code costs
#   --results FILE               keep the raw per-run TSV
#   --no-netns                   plain loopback even as root
# Example (the issue-9 lever table):
#   scripts/levers.sh --variant default= --variant no-latency=--no-latency \
#     --variant bound=--listen 127.0.0.1:PORT --runs 5
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VARIANTS=()
REGIME=spread
PAYLOADS=64,1400
RATES=100000
RUNS=3
WORKERS=1
DURATION=2
RESULTS_COPY=""
MINIMAL_FEATURES=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --variant) VARIANTS+=("$2"); shift 2 ;;
    --regime) REGIME=$2; shift 2 ;;
    --payloads) PAYLOADS=$2; shift 2 ;;
    --rates) RATES=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --results) RESULTS_COPY=$2; shift 2 ;;
    --minimal-features) MINIMAL_FEATURES=1; shift ;;
    --no-netns) NO_NETNS=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ ${#VARIANTS[@]} -gt 0 ]] || VARIANTS=("default=")
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
read -r -a regime_flags <<<"$(regime_args "$REGIME")"
trap 'exit 130' INT TERM

build_udpd
build_minimal_echo || die "minimal_echo does not build"
netns_setup
RESULTS="$WORK_DIR/results.tsv"
echo "$RESULT_HEADER" >"$RESULTS"
IFS=, read -r -a payload_list <<<"$PAYLOADS"
IFS=, read -r -a rate_list <<<"0,$RATES"

# start_variant SPEC PORT: start one variant (or the minimal loop) and set NAME.
start_variant() {
  local spec=$1 port=$2 binary=$UDPD args head
  if [[ $spec == minimal-plain ]]; then
    NAME=minimal-plain
    start_server "$NAME" "$SERVER_CPUS" line "$port" "$MINIMAL_ECHO" "$port" plain 64 "$WORKERS"
    return
  fi
  if [[ $spec == minimal-features ]]; then
    NAME=minimal-features
    start_server "$NAME" "$SERVER_CPUS" line "$port" env MINIMAL_GRO_SOCKOPT=1 MINIMAL_RCVBUF=524288 \
      MINIMAL_PKTINFO=1 MINIMAL_TIMESTAMPS=1 "$MINIMAL_ECHO" "$port" plain 64 "$WORKERS"
    return
  fi
  head=${spec%%=*}
  args=${spec#*=}
  NAME=${head%%@*}
  if [[ $head == *@minimal ]]; then
    # shellcheck disable=SC2086  # ARGS is a list of VAR=VALUE
    start_server "$NAME" "$SERVER_CPUS" line "$port" env $args "$MINIMAL_ECHO" "$port" plain 64 "$WORKERS"
    return
  fi
  [[ $head == *@* ]] && binary=${head#*@}
  args=${args//PORT/$port}
  local listen=(--listen "0.0.0.0:$port") pin
  [[ $args == *--listen* ]] && listen=()
  pin=$(udpd_cpu_args "$WORKERS")
  [[ $args == *--no-pin* || $args == *--cpus* ]] && pin=""
  # shellcheck disable=SC2086  # ARGS is a list of flags
  start_server "$NAME" "$SERVER_CPUS" line "$port" "$binary" serve "${listen[@]}" --workers "$WORKERS" \
    $pin --quiet $args
}

port=19600
for ((run = 1; run <= RUNS; run++)); do
  minimal_specs=(minimal-plain)
  ((MINIMAL_FEATURES)) && minimal_specs+=(minimal-features)
  # Each run starts one server further along the list, so that no server always follows the same one
  # (in bulk the plain loop drops three quarters of what it is sent, and whatever runs next starts
  # from the state that leaves).
  specs=("${VARIANTS[@]}" "${minimal_specs[@]}")
  shift_by=$(((run - 1) % ${#specs[@]}))
  specs=("${specs[@]:shift_by}" "${specs[@]:0:shift_by}")
  for spec in "${specs[@]}"; do
    port=$((port + 1))
    p=$(pick_port "$port")
    start_variant "$spec" "$p" || { log "SKIP $spec: did not start"; continue; }
    for payload in "${payload_list[@]}"; do
      for rate in "${rate_list[@]}"; do
        run_load_cell "$RESULTS" "$NAME" "$WORKERS" "$REGIME" "$payload" "$rate" "$run" "$p" echo -- \
          "${regime_flags[@]}" --timeout 1
      done
    done
    stop_server
  done
done

[[ -n $RESULTS_COPY ]] && cp "$RESULTS" "$RESULTS_COPY"
echo
echo "udpd levers.sh: $(machine_line)"
echo "server on CPU $SERVER_CPUS, load on CPU $LOAD_CPU, regime $REGIME, ${DURATION}s per cell, median of $RUNS interleaved run(s), $([[ -n $NETNS ]] && echo "private netns" || echo "host loopback")"
echo
report_table "$RESULTS"
echo
python3 "$SCRIPTS_DIR/results.py" ratios minimal-plain "$RESULTS"
