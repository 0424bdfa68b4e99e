#!/usr/bin/env bash
# scripts/bench.sh: build udpd (release), then run `udpd serve` and `udpd load`
# pinned to different CPUs over a sweep of worker counts, regimes, payloads
# and offered rates, and print one table: offered, served, loss, server CPU
# microseconds per datagram (from /proc/PID/stat), RTT p50/p99/p99.9 (from
# the load's JSON) and the deltas of the kernel's /proc/net/snmp Udp counters
# (InDatagrams, OutDatagrams, RcvbufErrors, SndbufErrors).
#
# As root it runs inside a fresh network namespace (udpd-bench-PID, loopback
# up, deleted on exit), so the counters see only this traffic: InDatagrams is
# then requests received by udpd plus replies received by the load, and
# OutDatagrams the same the other way. Otherwise plain 127.0.0.1.
#
# Regimes: bulk   = udpd load --pattern bulk --flows 4 --gso --gro
#          spread = udpd load --pattern spread --flows 1000
#
# Options (defaults finish in about two minutes on 2 cores):
#   --workers LIST     udpd worker counts, default 1,2
#   --regimes LIST     default bulk,spread
#   --payloads LIST    default 64,1400
#   --rates LIST       offered pps, 0 = max, default 0,50000,200000
#   --duration SECS    per cell, default 2
#   --runs N           repeat each cell, the table shows medians (default 1)
#   --server-cpus L    CPUs for udpd (default 0; env SERVER_CPUS). With fewer
#                      CPUs than workers, the workers share them unpinned.
#   --load-cpu N       CPU for udpd load (default 1; env LOAD_CPU)
#   --serve-args "..." extra `udpd serve` flags (e.g. "--no-gso --no-gro")
#   --load-args "..."  extra `udpd load` flags (e.g. "--batch 32")
#   --results FILE     also copy the raw per-run results (TSV) there
#   --no-netns         plain loopback even as root (env NO_NETNS=1)
#   --keep             keep the work directory (server logs, load JSON)
# Environment: UDPD=/path/to/udpd uses that binary instead of building.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WORKER_LIST="1,2"
RATES="0,50000,200000"
SERVE_ARGS=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --workers) WORKER_LIST=$2; shift 2 ;;
    --rates) RATES=$2; shift 2 ;;
    --serve-args) SERVE_ARGS=$2; shift 2 ;;
    *) shared_option "$@"; shift "$OPTION_WORDS" ;;
  esac
done
shared_options_checked

IFS=, read -r -a workers_list <<<"$WORKER_LIST"
IFS=, read -r -a rate_list <<<"$RATES"
read -r -a extra_serve_args <<<"$SERVE_ARGS"

start_results
port=$(pick_port 19000)
summaries=()

for workers in "${workers_list[@]}"; do
  [[ $workers =~ ^[1-9][0-9]*$ ]] || die "bad worker count $workers"
  read -r -a cpu_args <<<"$(udpd_cpu_args "$workers")"
  log "== udpd serve --workers $workers ${cpu_args[*]} ${extra_serve_args[*]}"
  start_server udpd "$SERVER_CPUS" line "$port" "$UDPD" serve --listen "127.0.0.1:$port" \
    --workers "$workers" "${cpu_args[@]}" --quiet "${extra_serve_args[@]}" || die "udpd serve did not start"
  for regime in "${regime_list[@]}"; do
    read -r -a rargs <<<"$(regime_args "$regime")"
    for payload in "${payload_list[@]}"; do
      for rate in "${rate_list[@]}"; do
        for ((run = 1; run <= RUNS; run++)); do
          kill -0 "$SERVER_PID" 2>/dev/null || die "udpd serve died: $(tail -n 3 "$SERVER_LOG")"
          run_load_cell "$RESULTS" udpd "$workers" "$regime" "$payload" "$rate" "$run" "$port" echo -- \
            "${rargs[@]}" --timeout 1 "${extra_load_args[@]}"
        done
      done
    done
  done
  stop_server
  # udpd's own summary: its accounting identity for the whole sweep.
  summaries+=("workers=$workers: $(grep -m1 '^accounting:' "$SERVER_LOG" || echo 'no accounting line in the summary')")
done

results_heading "udpd"
report_table "$RESULTS"
echo
printf 'udpd %s\n' "${summaries[@]}"
