#!/usr/bin/env bash
# scripts/compare.sh: the same load scenarios, in the same run, against udpd
# and the servers people would otherwise use; one table, udpd over the best
# peer, and optionally the p99-vs-load plot.
#
# Servers (--servers, comma-separated, default all, in this order):
#   udpd            udpd serve --workers W (default 1), echo handler, bound to
#                   127.0.0.1 (no packet info needed)
#   udpd-default    the same at udpd's default settings: bound to 0.0.0.0
#                   (packet info on every datagram), latency histograms on
#   py_echo         scripts/peers/py_echo.py: tutorial recvfrom/sendto loop
#   socat           socat -T0.05 UDP4-RECVFROM:PORT,fork PIPE (see below)
#   sockperf        sockperf server, driven by its own client (see lib.sh)
#   udpd-sockperf   udpd serve --handler sockperf (sockperf's wire format),
#                   driven by sockperf's client exactly as sockperf server is
#   nginx           nginx stream module, `return "ACK"` (load: --expect ack:ACK)
#   tokio           scripts/peers/tokio-echo: tokio UdpSocket recv_from/send_to
#   minimal-plain   scripts/peers/minimal_echo.c plain  (recvmmsg/sendmmsg)
#   minimal-gso     ... gso    (GSO replies)
#   minimal-grogso  ... grogso (GRO requests + GSO replies: the floor)
#   udpd-base       another udpd binary, same flags (--baseline PATH): an A/B of
#                   two builds in the same run
# A peer that cannot be had (package not installable, build failure, no
# readiness) is skipped with one line.
#
# Regimes (--regimes, default bulk,spread):
#   bulk      udpd load --pattern bulk --flows 4 --gso --gro
#   spread    udpd load --pattern spread --flows 1000
#   pingpong  sockperf ping-pong --full-rtt (one message in flight: latency
#             percentiles; one cell per payload, shown as max)
#   underload sockperf under-load --reply-every 1 --full-rtt at
#             --sockperf-rates and max
# bulk and spread run at --rate 0 (max offered load) and at fixed rates
# (--bulk-rates, --spread-rates: bulk coalesces, so its capacity is ten times
# higher), for each of the --payloads. The servers that speak only sockperf
# (sockperf, udpd-sockperf) run sockperf under-load in bulk and spread too;
# pingpong and underload run only against them (other servers skip them).
# sockperf's comparison, both servers under its own client:
#   scripts/compare.sh --servers sockperf,udpd-sockperf --regimes pingpong,underload --runs 3
#
# Options:
#   --servers LIST     default: all of the above
#   --regimes LIST     default bulk,spread
#   --payloads LIST    default 64,1400
#   --bulk-rates LIST  fixed offered rates (pps) in bulk, default 200000,1000000,2000000
#   --spread-rates LIST  ... in spread, default 50000,100000,200000
#   --sockperf-rates LIST  fixed --mps in underload, default 10000,50000,100000
#   --rates LIST       set bulk and spread rates
#   --no-max           skip the --rate 0 cells
#   --duration SECS    per cell, default 2
#   --runs N           repeat each cell N times, the table shows medians (default 1)
#   --workers N        udpd workers (default 1; also udpd-sockperf's)
#   --server-cpus L    taskset list for servers (default 0; env SERVER_CPUS)
#   --load-cpu N       taskset CPU for the load (default 1; env LOAD_CPU)
#   --load-args "..."  extra arguments for every `udpd load` (e.g. "--batch 32")
#   --baseline PATH    a second udpd binary, measured as server udpd-base (add
#                      it to --servers; default list gains it when given)
#   --results FILE     also copy the raw per-run results (TSV) there
#   --plot FILE        draw p99 against offered load with scripts/plot.sh
#   --no-netns         plain loopback even as root (env NO_NETNS=1)
#   --keep             keep the work directory (server logs, load JSON)
#
# Runs as root inside a fresh network namespace (deleted on exit); everything
# stays on 127.0.0.1. Example (the BENCHMARKS.md run):
#   scripts/compare.sh --runs 1 --plot docs/p99-vs-load.svg --results /tmp/cmp.tsv
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVERS="udpd,udpd-default,py_echo,socat,sockperf,udpd-sockperf,nginx,tokio,minimal-plain,minimal-gso,minimal-grogso"
BULK_RATES="200000,1000000,2000000"
SPREAD_RATES="50000,100000,200000"
SOCKPERF_RATES="10000,50000,100000"
DO_MAX=1
WORKERS=1
PLOT=""
BASELINE=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --servers) SERVERS=$2; shift 2 ;;
    --rates) BULK_RATES=$2; SPREAD_RATES=$2; shift 2 ;;
    --bulk-rates) BULK_RATES=$2; shift 2 ;;
    --spread-rates) SPREAD_RATES=$2; shift 2 ;;
    --sockperf-rates) SOCKPERF_RATES=$2; shift 2 ;;
    --no-max) DO_MAX=0; shift ;;
    --workers) WORKERS=$2; shift 2 ;;
    --plot) PLOT=$2; shift 2 ;;
    --baseline) BASELINE=$2; [[ -x $BASELINE ]] || die "--baseline $BASELINE is not executable"; shift 2 ;;
    *) shared_option "$@"; shift "$OPTION_WORDS" ;;
  esac
done
SOCKPERF_REGIMES_OK=1  # lib.sh: this script also has the regimes pingpong and underload
shared_options_checked
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer"

IFS=, read -r -a server_list <<<"$SERVERS"
# rates_of REGIME: the rates swept in that regime, max (0) first (pingpong:
# only its closed loop, recorded as max).
rates_of() {
  local r
  [[ $1 == pingpong ]] && { echo 0; return; }
  case $1 in
    bulk) r=$BULK_RATES ;;
    underload) r=$SOCKPERF_RATES ;;
    *) r=$SPREAD_RATES ;;
  esac
  if ((DO_MAX)); then echo "0,$r"; else echo "$r"; fi
}

start_results
first_cpu=${SERVER_CPUS%%[,-]*}

# start_peer NAME PORT: start one server; returns 1 (after one clear line) if
# that peer cannot be had.
start_peer() {
  local name=$1 port=$2
  case $name in
    udpd | udpd-base | udpd-default)
      local binary=$UDPD listen="127.0.0.1:$port"
      if [[ $name == udpd-base ]]; then
        [[ -n $BASELINE ]] || { log "SKIP udpd-base: no --baseline PATH"; return 1; }
        binary=$BASELINE
      fi
      [[ $name == udpd-default ]] && listen="0.0.0.0:$port"
      # shellcheck disable=SC2046
      start_server "$name" "$SERVER_CPUS" line "$port" "$binary" serve --listen "$listen" \
        --workers "$WORKERS" $(udpd_cpu_args "$WORKERS") --quiet ;;
    py_echo)
      start_server py_echo "$first_cpu" line "$port" python3 "$PEERS_DIR/py_echo.py" "$port" 127.0.0.1 ;;
    socat)
      command -v socat >/dev/null || ensure_pkgs socat || { log "SKIP socat: not installable"; return 1; }
      # socat has no multi-client UDP echo mode. UDP4-LISTEN,fork hands each
      # *peer* to a child on a connected socket, but with several peers
      # arriving at once replies cross over to the wrong client (verified:
      # echo_check.py with 4 flows gets other flows' datagrams). UDP4-RECVFROM
      # with fork forks one child per *datagram*, which answers that datagram
      # to its sender through PIPE: correct for any number of clients, but a
      # fork per datagram caps it at a few thousand per second, and datagrams
      # arriving meanwhile queue or drop in the socket buffer. -T0.05 ends each
      # child 50 ms after its reply so they do not pile up.
      start_server socat "$first_cpu" probe "$port" socat -T0.05 \
        "UDP4-RECVFROM:$port,bind=127.0.0.1,fork,reuseaddr" PIPE ;;
    sockperf)
      command -v sockperf >/dev/null || ensure_pkgs sockperf || { log "SKIP sockperf: not installable"; return 1; }
      start_server sockperf "$first_cpu" probe "$port" sockperf server -i 127.0.0.1 -p "$port" ;;
    udpd-sockperf)
      command -v sockperf >/dev/null || ensure_pkgs sockperf || { log "SKIP udpd-sockperf: no sockperf client"; return 1; }
      # shellcheck disable=SC2046
      start_server "$name" "$SERVER_CPUS" line "$port" "$UDPD" serve --listen "127.0.0.1:$port" \
        --workers "$WORKERS" $(udpd_cpu_args "$WORKERS") --handler sockperf --quiet ;;
    nginx)
      { command -v nginx >/dev/null && [[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]]; } ||
        ensure_pkgs nginx-light libnginx-mod-stream || ensure_pkgs nginx libnginx-mod-stream ||
        { log "SKIP nginx: nginx with the stream module not installable"; return 1; }
      local dir="$WORK_DIR/nginx"
      mkdir -p "$dir"
      local load_module=""
      [[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] &&
        load_module="load_module /usr/lib/nginx/modules/ngx_stream_module.so;"
      cat >"$dir/nginx.conf" <<EOF
$load_module
worker_processes 1;
daemon off;
master_process off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
stream {
  server { listen 127.0.0.1:$port udp; return "ACK"; }
}
EOF
      start_server nginx "$first_cpu" probe "$port" nginx -c "$dir/nginx.conf" -p "$dir" ;;
    tokio)
      build_tokio_echo || { log "SKIP tokio: tokio-echo does not build"; return 1; }
      start_server tokio "$first_cpu" line "$port" "$TOKIO_ECHO" "127.0.0.1:$port" ;;
    minimal-plain | minimal-gso | minimal-grogso)
      [[ -n ${MINIMAL_ECHO:-} ]] || build_minimal_echo || { log "SKIP $name: minimal_echo does not build"; return 1; }
      start_server "$name" "$first_cpu" line "$port" "$MINIMAL_ECHO" "$port" "${name#minimal-}" ;;
    *) die "unknown server $name" ;;
  esac
}

port=19000
for server in "${server_list[@]}"; do
  port=$((port + 1))
  p=$(pick_port "$port")
  log "== $server"
  start_peer "$server" "$p" || { log "SKIP $server: did not start (see above)"; continue; }
  expect="echo"
  [[ $server == nginx ]] && expect=ack:ACK
  workers=1
  [[ $server == udpd || $server == udpd-base || $server == udpd-sockperf ]] && workers=$WORKERS
  for regime in "${regime_list[@]}"; do
    if [[ $regime == pingpong || $regime == underload ]] && ! speaks_sockperf "$server"; then
      log "  $server: no $regime cells (sockperf's client, which only sockperf and udpd-sockperf answer)"
      continue
    fi
    read -r -a rargs <<<"$(regime_args "$regime")"
    IFS=, read -r -a rate_list <<<"$(rates_of "$regime")"
    for payload in "${payload_list[@]}"; do
      for rate in "${rate_list[@]}"; do
        for ((run = 1; run <= RUNS; run++)); do
          if [[ -z $SERVER_PID ]] || ! kill -0 "$SERVER_PID" 2>/dev/null; then
            log "  $server is not running; restarting it"
            start_peer "$server" "$p" || continue 2
          fi
          if speaks_sockperf "$server"; then
            run_sockperf_cell "$RESULTS" "$server" "$regime" "$payload" "$rate" "$run" "$p" "$workers"
          else
            run_load_cell "$RESULTS" "$server" "$workers" "$regime" "$payload" "$rate" "$run" "$p" "$expect" -- \
              "${rargs[@]}" --timeout 1 "${extra_load_args[@]}"
          fi
        done
      done
    done
  done
  stop_server
done

results_heading "servers"
report_table "$RESULTS" --ratios
if [[ -n $PLOT ]]; then
  "$SCRIPTS_DIR/plot.sh" "$RESULTS" "$PLOT" "$(dirname "$PLOT")/served-and-cpu.svg"
fi
