#!/usr/bin/env bash
# scripts/lib.sh: shared functions for bench.sh and compare.sh (source it; it
# runs nothing by itself).
#
# What it provides:
#   log/die                      messages on stderr
#   ensure_pkgs PKG...           apt-get install what is missing (update once)
#   build_udpd                   cargo build --release; sets UDPD
#   build_minimal_echo / build_tokio_echo   the peers under scripts/peers/
#   netns_setup / in_ns CMD...   a fresh network namespace udpd-bench-$$ when
#                                root (lo up), plain loopback otherwise
#   start_server NAME CPUS READY PORT CMD...   start CMD pinned with taskset,
#                                wait for readiness (READY=line: a "listening on"
#                                line in its output; READY=probe: a UDP probe
#                                gets an answer), sets SERVER_PID / SERVER_LOG
#   stop_server                  SIGTERM (children too), wait, SIGKILL if needed
#   cpu_ticks PID                utime+stime+cutime+cstime (clock ticks)
#   busy_mark                    wall clock and unused time of the SERVER_CPUS
#   snmp_udp                     "InDatagrams OutDatagrams RcvbufErrors SndbufErrors"
#   run_load_cell ...            one measured cell with udpd load, appends a row
#   run_sockperf_cell ...        one measured cell with sockperf's own client
#                                (under-load, or ping-pong in regime pingpong)
#   speaks_sockperf SERVER       whether SERVER answers only sockperf's header
#                                (sockperf, udpd-sockperf): driven by sockperf
#   report_table TSV             the table (median per cell over runs) + ratios
#   shared_option / shared_options_checked / start_results / results_heading
#                                the options, results file and heading both
#                                scripts share
#   cleanup                      kill servers, delete the netns and work dir
#                                (installed as the EXIT trap when sourced)
#
# Environment knobs shared by both scripts (each also has flags for them):
#   SERVER_CPUS (default 0)  LOAD_CPU (default 1)  NO_NETNS=1 (plain loopback)
#   KEEP=1 (keep the work directory with logs and JSON files)
#   NICE=-10 (as root, servers and load run at this nice level so that other
#     work on the machine disturbs them less; NICE=0 to disable)
#   UDPD=/path/to/udpd (use that binary, skip the cargo build)

SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPTS_DIR/.." && pwd)"
PEERS_DIR="$SCRIPTS_DIR/peers"
SERVER_CPUS="${SERVER_CPUS:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
NO_NETNS="${NO_NETNS:-0}"
KEEP="${KEEP:-0}"
NICE="${NICE:--10}"
[[ $EUID -eq 0 ]] || NICE=0
CLK_TCK="$(getconf CLK_TCK)"
NETNS=""
SERVER_PID=""
SERVER_LOG=""
SERVER_NAME=""
APT_UPDATED=0
WORK_DIR="${WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/udpd-bench.XXXXXX")}"
# Columns of the raw results file (one row per measured run).
# shellcheck disable=SC2034  # used by the scripts that source this file
RESULT_HEADER=$'server\tworkers\tregime\tpayload\trate\trun\toffered_pps\tserved_pps\tloss_pct\tcpu_us\tp50\tp99\tp999\tin_dg\tout_dg\trcvbuf_err\tsndbuf_err\tclient\tp99_sent\tcpu_busy_us'

log() { printf '%s\n' "$*" >&2; }
die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# ensure_pkgs PKG...: install the Debian packages that are missing. Returns 1
# when one cannot be had (not root, no apt-get, install failed).
ensure_pkgs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
    log "cannot install ${missing[*]} (need root and apt-get)"
    return 1
  fi
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update"
    apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed"
    APT_UPDATED=1
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1
}

# build_udpd: UDPD=/path/to/udpd in the environment skips the build.
build_udpd() {
  if [[ -n ${UDPD:-} ]]; then
    [[ -x $UDPD ]] || die "UDPD=$UDPD is not executable"
    log "using UDPD=$UDPD (no build)"
    return 0
  fi
  log "building udpd (cargo build --release)"
  (cd "$REPO_ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
  UDPD="$REPO_ROOT/target/release/udpd"
  [[ -x $UDPD ]] || die "no $UDPD after the build"
}

# Peers' build outputs live in the work directory (C) or the crate's own
# target directory (tokio-echo, git-ignored).
build_minimal_echo() {
  MINIMAL_ECHO="$WORK_DIR/minimal_echo"
  command -v gcc >/dev/null || ensure_pkgs gcc libc6-dev || return 1
  gcc -O2 -pthread -o "$MINIMAL_ECHO" "$PEERS_DIR/minimal_echo.c"
}

build_tokio_echo() {
  TOKIO_ECHO="$PEERS_DIR/tokio-echo/target/release/tokio-echo"
  cargo build --release --quiet --manifest-path "$PEERS_DIR/tokio-echo/Cargo.toml" \
    --target-dir "$PEERS_DIR/tokio-echo/target" && [[ -x $TOKIO_ECHO ]]
}

# netns_setup: as root, a fresh namespace whose only traffic is ours (so the
# /proc/net/snmp deltas read inside it are exact); otherwise plain loopback.
netns_setup() {
  if [[ $EUID -eq 0 && $NO_NETNS != 1 ]] && command -v ip >/dev/null; then
    NETNS="udpd-bench-$$"
    ip netns add "$NETNS" || die "ip netns add $NETNS failed"
    ip netns exec "$NETNS" ip link set lo up
    log "network namespace $NETNS (loopback only)"
  else
    NETNS=""
    log "plain loopback (not root or NO_NETNS=1): kernel counters include other traffic"
  fi
}

# in_ns CMD...: run CMD inside the namespace if there is one. `ip netns exec`,
# `nice` and `taskset` all exec, so a background job's $! is the command's
# own PID.
in_ns() {
  if [[ -n $NETNS ]]; then ip netns exec "$NETNS" "$@"; else "$@"; fi
}

# A free UDP port: fixed in the private namespace, asked of the kernel otherwise.
pick_port() {
  if [[ -n $NETNS ]]; then
    echo "${1:-19000}"
  else
    python3 -c 'import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
  fi
}

# start_server NAME CPUS READY PORT CMD...
start_server() {
  local name=$1 cpus=$2 ready=$3 port=$4; shift 4
  SERVER_NAME=$name
  SERVER_LOG="$WORK_DIR/server-$name.log"
  if [[ -n $NETNS ]]; then
    ip netns exec "$NETNS" nice -n "$NICE" taskset -c "$cpus" "$@" >"$SERVER_LOG" 2>&1 &
  else
    nice -n "$NICE" taskset -c "$cpus" "$@" >"$SERVER_LOG" 2>&1 &
  fi
  SERVER_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      log "$name exited at start: $(tail -n 3 "$SERVER_LOG" | tr '\n' ' ')"
      SERVER_PID=""
      return 1
    fi
    if [[ $ready == line ]]; then
      grep -q "listening on" "$SERVER_LOG" && return 0
      sleep 0.1
    else
      # The probe is a valid sockperf ping (sequence, flags=ping, length), so
      # echo servers, ack servers and sockperf all answer it.
      in_ns python3 "$PEERS_DIR/echo_check.py" 127.0.0.1 "$port" --probe --tries 2 && return 0
    fi
  done
  log "$name did not become ready on port $port"
  stop_server
  return 1
}

stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  local pid=$SERVER_PID i
  SERVER_PID=""
  pkill -TERM -P "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$SERVER_NAME ignored SIGTERM, killing it"
    pkill -KILL -P "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  stop_server
  if [[ -n $NETNS ]]; then
    ip netns pids "$NETNS" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns delete "$NETNS" 2>/dev/null || true
    NETNS=""
  fi
  if [[ $KEEP == 1 ]]; then log "work directory kept: $WORK_DIR"; else rm -rf "$WORK_DIR"; fi
  return "$rc"
}

# cpu_ticks PID: CPU time of the process (all threads) plus its reaped
# children (socat forks one per datagram), in clock ticks.
cpu_ticks() {
  # Fields after the ")" that ends the command name: utime is field 14 of the
  # full line, i.e. the 12th after it.
  local stat
  stat=$(<"/proc/$1/stat") || { echo 0; return; }
  stat=${stat##*) }
  # shellcheck disable=SC2086
  set -- $stat
  echo $(( ${12} + ${13} + ${14} + ${15} ))
}

# busy_mark: "SECONDS NOT_BUSY" for the SERVER_CPUS: the wall clock, and their
# idle, iowait and steal time of /proc/stat in clock ticks. The busy time
# between two marks is the wall time the CPUs had less what they did not use
# (the kernel measures idle time exactly; its user and system figures are
# only sampled at its tick). Unlike cpu_ticks it also counts what runs there
# outside the server process: the switches to and from the idle task, and
# interrupts and softirqs taken while idle. It is the server's cost only while
# nothing else is pinned to those CPUs.
busy_mark() {
  awk -v list="$SERVER_CPUS" -v now="$EPOCHREALTIME" 'BEGIN {
      n = split(list, parts, ",")
      for (i = 1; i <= n; i++) {
        if (split(parts[i], r, "-") == 2) { for (c = r[1]; c <= r[2]; c++) want["cpu" c] = 1 }
        else want["cpu" parts[i]] = 1
      }
    }
    $1 in want { cpus++; unused += $5 + $6 + $9 }
    END { printf "%s %d %d\n", now, unused, cpus }' /proc/stat
}

# snmp_udp: InDatagrams OutDatagrams RcvbufErrors SndbufErrors of the Udp: line.
snmp_udp() {
  # shellcheck disable=SC2016  # awk program, not shell
  in_ns awk '/^Udp:/ { if (!h) { for (i = 2; i <= NF; i++) k[$i] = i; h = 1 }
                       else { print $k["InDatagrams"], $k["OutDatagrams"], $k["RcvbufErrors"], $k["SndbufErrors"] } }' /proc/net/snmp
}

# json_fields FILE: the load JSON as tab-separated
# offered_pps served_pps loss_pct received p50 p99 p999 sent duration_s p99_sent
# (p99_sent: p99 over every request sent, the unanswered counted as slowest;
# inf when more than 1 % went unanswered)
json_fields() {
  python3 - "$1" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
lat = j.get("latency_us") or {}
sent_lat = j.get("latency_of_sent_us")
def f(v, fmt="%.0f"):
    return "-" if v is None else fmt % v
p99_sent = "-" if not sent_lat else ("inf" if sent_lat.get("p99") is None else "%.1f" % sent_lat["p99"])
print("\t".join([f(j.get("offered_pps") or j.get("sent_pps")), f(j.get("received_pps")),
                 f((j.get("loss_ratio") or 0) * 100, "%.3f"), f(j.get("received")),
                 f(lat.get("p50"), "%.1f"), f(lat.get("p99"), "%.1f"), f(lat.get("p99_9"), "%.1f"),
                 f(j.get("sent")), f(j.get("duration_s"), "%.3f"), p99_sent]))
EOF
}

# run_load_cell RESULTS SERVER WORKERS REGIME PAYLOAD RATE RUN PORT EXPECT -- LOADARGS...
# Runs `udpd load` pinned to LOAD_CPU against the running server and appends
# one row to RESULTS. Server CPU per datagram = server CPU time over the whole
# load run / replies received (the load runs with --warmup 0 so both cover the
# same window).
run_load_cell() {
  local results=$1 server=$2 workers=$3 regime=$4 payload=$5 rate=$6 run=$7 port=$8 expect=$9
  shift 10
  local json="$WORK_DIR/load-$server-$regime-$payload-$rate-$run.json"
  local t0 t1 s0 s1 b0 b1
  t0=$(cpu_ticks "$SERVER_PID"); s0=$(snmp_udp); b0=$(busy_mark)
  if ! in_ns nice -n "$NICE" taskset -c "$LOAD_CPU" "$UDPD" load "127.0.0.1:$port" --rate "$rate" --payload "$payload" \
      --duration "$DURATION" --warmup 0 --expect "$expect" --json "$json" --quiet "$@" \
      >"$WORK_DIR/load-last.out" 2>&1; then
    log "  udpd load failed against $server: $(tail -n 2 "$WORK_DIR/load-last.out" | tr '\n' ' ')"
    [[ -s $json ]] || return 0
  fi
  t1=$(cpu_ticks "$SERVER_PID"); s1=$(snmp_udp); b1=$(busy_mark)
  local offered served loss received p50 p99 p999 _sent _dur p99_sent
  IFS=$'\t' read -r offered served loss received p50 p99 p999 _sent _dur p99_sent < <(json_fields "$json")
  [[ $rate == 0 ]] && offered=$_sent && [[ $_dur != - && $_dur != 0.000 ]] &&
    offered=$(awk -v s="$_sent" -v d="$_dur" 'BEGIN { printf "%.0f", s / d }')
  emit_row "$results" "$server" "$workers" "$regime" "$payload" "$rate" "$run" "$offered" "$served" "$loss" \
    "$t0" "$t1" "$received" "$p50" "$p99" "$p999" "$s0" "$s1" udpd-load "$p99_sent" "$b0" "$b1"
}

# run_sockperf_cell RESULTS SERVER REGIME PAYLOAD RATE RUN PORT [WORKERS]
# sockperf server only answers sockperf's own header (8-byte sequence, 2-byte
# flags with the client and pong-request bits, 4-byte length) and clears the
# client bit in its reply, so it never answers udpd load's datagrams; neither
# does udpd --handler sockperf. Both are driven by sockperf's own client:
# `sockperf under-load --reply-every 1` (open loop at --mps, one socket, no
# GSO/GRO, its RTT percentiles are not corrected for coordinated omission),
# or in regime pingpong `sockperf ping-pong` (closed loop: one message in
# flight, RATE ignored, recorded as max). Percentiles are full round trips
# (--full-rtt) in both.
run_sockperf_cell() {
  local results=$1 server=$2 regime=$3 payload=$4 rate=$5 run=$6 port=$7 workers=${8:-1}
  local out="$WORK_DIR/sockperf-$server-$regime-$payload-$rate-$run.out" mps=$rate t0 t1 s0 s1 b0 b1
  [[ $rate == 0 ]] && mps=max
  local secs  # sockperf -t takes whole seconds
  secs=$(awk -v d="$DURATION" 'BEGIN { s = int(d); if (s < d) s++; if (s < 1) s = 1; print s }')
  local mode=(under-load --mps "$mps" --reply-every 1) client=sockperf-ul
  [[ $regime == pingpong ]] && mode=(ping-pong) client=sockperf-pp
  t0=$(cpu_ticks "$SERVER_PID"); s0=$(snmp_udp); b0=$(busy_mark)
  in_ns nice -n "$NICE" taskset -c "$LOAD_CPU" sockperf "${mode[@]}" -i 127.0.0.1 -p "$port" -m "$payload" -t "$secs" \
    --full-rtt >"$out" 2>&1 || log "  sockperf ${mode[0]} failed: $(tail -n 1 "$out")"
  t1=$(cpu_ticks "$SERVER_PID"); s1=$(snmp_udp); b1=$(busy_mark)
  local fields
  fields=$(python3 - "$out" <<'EOF'
import re, sys
t = re.sub(r"\x1b\[[0-9;]*m", "", open(sys.argv[1]).read())
tot = re.search(r"\[Total Run\] RunTime=([\d.]+) sec;.*?SentMessages=(\d+); ReceivedMessages=(\d+)", t)
val = re.search(r"\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=(\d+); ReceivedMessages=(\d+)", t)
pct = {m.group(1): float(m.group(2)) for m in re.finditer(r"percentile (\d+\.\d+) =\s*([\d.]+)", t)}
if not (tot and val):
    print("\t".join(["-"] * 7)); sys.exit()
d, s, r = float(val.group(1)), int(val.group(2)), int(val.group(3))
loss = 100.0 * (s - r) / s if s else 0
g = lambda k: "%.1f" % pct[k] if k in pct else "-"
print("\t".join(["%.0f" % (s / d), "%.0f" % (r / d), "%.3f" % loss, tot.group(3),
                 g("50.000"), g("99.000"), g("99.900")]))
EOF
)
  local offered served loss received p50 p99 p999
  IFS=$'\t' read -r offered served loss received p50 p99 p999 <<<"$fields"
  emit_row "$results" "$server" "$workers" "$regime" "$payload" "$rate" "$run" "$offered" "$served" "$loss" \
    "$t0" "$t1" "$received" "$p50" "$p99" "$p999" "$s0" "$s1" "$client" - "$b0" "$b1"
}

# speaks_sockperf SERVER: whether SERVER answers only sockperf's header (so
# sockperf's client drives it in every regime, and only it runs the regimes
# pingpong and underload).
speaks_sockperf() { [[ $1 == sockperf || $1 == udpd-sockperf ]]; }

# emit_row: compute CPU us/datagram (the server process's, and the server
# CPUs' busy time) and counter deltas, append the row.
emit_row() {
  local results=$1 server=$2 workers=$3 regime=$4 payload=$5 rate=$6 run=$7 offered=$8 served=$9
  local loss=${10} t0=${11} t1=${12} received=${13} p50=${14} p99=${15} p999=${16} s0=${17} s1=${18} client=${19}
  local p99_sent=${20:--} b0=${21:-} b1=${22:-}
  local cpu_us="-" cpu_busy_us="-"
  if [[ $received =~ ^[0-9]+$ ]] && ((received > 0)); then
    cpu_us=$(awk -v a="$t0" -v b="$t1" -v n="$received" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / hz * 1e6 / n }')
    [[ -n $b0 && -n $b1 ]] &&
      cpu_busy_us=$(awk -v a="$b0" -v b="$b1" -v n="$received" -v hz="$CLK_TCK" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        busy = (y[1] - x[1]) * y[3] - (y[2] - x[2]) / hz
        printf "%.2f", busy * 1e6 / n }')
  fi
  local deltas
  deltas=$(awk -v a="$s0" -v b="$s1" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%d\t%d\t%d\t%d", y[1]-x[1], y[2]-x[2], y[3]-x[3], y[4]-x[4] }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$workers" "$regime" "$payload" "$rate" "$run" \
    "$offered" "$served" "$loss" "$cpu_us" "$p50" "$p99" "$p999" "$deltas	$client	$p99_sent	$cpu_busy_us" >>"$results"
  log "  $(printf '%-14s %-6s %5sB rate=%-7s served=%-9s loss=%-7s%% cpu=%-6sus busy=%-6sus p99=%sus' "$server" "$regime" "$payload" "$rate" "$served" "$loss" "$cpu_us" "$cpu_busy_us" "$p99")"
}

# regime_args REGIME: the `udpd load` flags of a regime (none for pingpong and
# underload, which only sockperf's client runs: compare.sh sets
# SOCKPERF_REGIMES_OK=1 to allow them).
regime_args() {
  case $1 in
    bulk) echo "--pattern bulk --flows 4 --gso --gro" ;;
    spread) echo "--pattern spread --flows 1000" ;;
    pingpong | underload)
      ((${SOCKPERF_REGIMES_OK:-0})) || die "regime $1 is compare.sh's (sockperf's client): use bulk or spread"
      echo "" ;;
    *) die "unknown regime $1 (bulk or spread; compare.sh also has pingpong and underload)" ;;
  esac
}

# udpd_cpu_args WORKERS: udpd's own --cpus when SERVER_CPUS names enough CPUs
# for the workers, otherwise --no-pin (the workers share SERVER_CPUS, to
# which taskset confines the process).
udpd_cpu_args() {
  local n
  n=$(python3 -c '
import sys
cpus = set()
for part in sys.argv[1].split(","):
    a, _, b = part.partition("-")
    cpus.update(range(int(a), int(b or a) + 1))
print(len(cpus))' "$SERVER_CPUS")
  if ((n >= $1)); then echo "--cpus $SERVER_CPUS"; else echo "--no-pin"; fi
}

# machine_line: date, CPUs, CPU model, kernel.
machine_line() {
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), Linux $(uname -r)"
}

# report_table RESULTS [--ratios]: the table, median per cell over runs (see
# results.py); plot_data RESULTS DIR: per-panel gnuplot data files.
report_table() { python3 "$SCRIPTS_DIR/results.py" table "$@"; }
plot_data() { python3 "$SCRIPTS_DIR/results.py" plotdata "$@"; }

# ---- what bench.sh and compare.sh share: options, results, heading ----
# Defaults of the shared options (each script's --help lists them).
REGIMES="bulk,spread"
PAYLOADS="64,1400"
DURATION=2
RUNS=1
LOAD_ARGS=""
RESULTS_COPY=""

# shared_option ARGS...: takes the option at $1 if both scripts have it
# (--regimes --payloads --duration --runs --server-cpus --load-cpu --load-args
# --results --no-netns --keep -h/--help) and sets OPTION_WORDS to the words it
# used; any other option is an error. The last case of a script's option loop:
#   *) shared_option "$@"; shift "$OPTION_WORDS" ;;
shared_option() {
  OPTION_WORDS=2
  case $1 in
    --regimes) REGIMES=$2 ;;
    --payloads) PAYLOADS=$2 ;;
    --duration) DURATION=$2 ;;
    --runs) RUNS=$2 ;;
    --server-cpus) SERVER_CPUS=$2 ;;
    --load-cpu) LOAD_CPU=$2 ;;
    --load-args) LOAD_ARGS=$2 ;;
    --results) RESULTS_COPY=$2 ;;
    --no-netns) NO_NETNS=1; OPTION_WORDS=1 ;;
    --keep) KEEP=1; OPTION_WORDS=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
}

# shared_options_checked: after the option loop, checks the shared options,
# splits them into regime_list, payload_list and extra_load_args, and makes
# INT/TERM end the script (the EXIT trap cleans up).
shared_options_checked() {
  [[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
  trap 'exit 130' INT TERM
  IFS=, read -r -a regime_list <<<"$REGIMES"
  IFS=, read -r -a payload_list <<<"$PAYLOADS"
  read -r -a extra_load_args <<<"$LOAD_ARGS"
  local r
  for r in "${regime_list[@]}"; do regime_args "$r" >/dev/null; done
}

# start_results: build udpd, set up the namespace, and start RESULTS (the raw
# per-run TSV in the work directory) with its header.
start_results() {
  build_udpd
  netns_setup
  RESULTS="$WORK_DIR/results.tsv"
  echo "$RESULT_HEADER" >"$RESULTS"
}

# results_heading WHO: copies RESULTS where --results asked, then prints the
# lines above the table (the machine, where WHO ran, the run's shape).
results_heading() {
  if [[ -n $RESULTS_COPY ]]; then cp "$RESULTS" "$RESULTS_COPY"; fi
  echo
  echo "udpd $(basename "$0"): $(machine_line)"
  echo "$1 on CPU $SERVER_CPUS, load on CPU $LOAD_CPU, ${DURATION}s per cell, median of $RUNS run(s), $([[ -n $NETNS ]] && echo "private netns" || echo "host loopback")"
  echo
}

# Every script that sources this file cleans up on exit (servers, namespace,
# work directory), whatever the reason.
trap cleanup EXIT
