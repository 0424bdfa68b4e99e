#!/usr/bin/env bash
# Scale-out drill: udpd behind a stateless L4 balancer (nftables), all inside network namespaces this
# script makes and removes. One client namespace runs `udpd load --check-source` against a virtual address
# (VIP); a balancer namespace hashes each datagram's source address and port into 64 buckets
# (`jhash ip saddr . udp sport mod 64`) and rewrites its destination to the bucket's backend; N backend
# namespaces each run `udpd serve --metrics`. Backends answer from their own address and the balancer
# routes the replies back untouched, so the client sees which backend answered each flow. Halfway through,
# one backend is stopped (SIGTERM) and its buckets are handed to the others; the script reports per-backend
# counts (Prometheus), their sum against the client's, flow stickiness, the flows that moved and the loss.
#
# Usage: scripts/scaleout.sh [--backends N] [--duration S] [--rate PPS] [--flows F] [--udpd PATH]
# Needs root, iproute2 and nft (Debian: apt-get install nftables). Ends with one machine-readable line:
#   scaleout: backends=N client_sent=.. client_received=.. backend_sum=.. lost=.. flows=F sticky_flows=..
#             moved_flows=.. expected_moves=.. flapping_flows=.. ...
# Exit status: 0 when every check held, 1 when one did not, 2 for bad usage or a missing tool.
set -euo pipefail

BACKENDS=3
DURATION=6
RATE=20000
FLOWS=32
UDPD=""
BUCKETS=64
PORT=7000
METRICS_PORT=9100
VIP=10.77.100.1
SEED=0x5ca1e
# Seconds between the backends' stats publications (what their Prometheus endpoints show lags by this much).
INTERVAL=0.2

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
}

die_usage() {
  echo "scaleout: $1" >&2
  exit 2
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --backends) BACKENDS="${2:-}"; shift 2 || die_usage "--backends needs a number" ;;
    --duration) DURATION="${2:-}"; shift 2 || die_usage "--duration needs a number of seconds" ;;
    --rate) RATE="${2:-}"; shift 2 || die_usage "--rate needs datagrams per second" ;;
    --flows) FLOWS="${2:-}"; shift 2 || die_usage "--flows needs a number" ;;
    --udpd) UDPD="${2:-}"; shift 2 || die_usage "--udpd needs the path of the udpd binary" ;;
    -h | --help) usage; exit 0 ;;
    *) die_usage "unknown option $1 (see --help)" ;;
  esac
done

is_uint "$BACKENDS" && ((BACKENDS >= 2 && BACKENDS <= 16)) \
  || die_usage "--backends must be 2 to 16 (one is stopped in the drill); got '$BACKENDS'"
is_uint "$DURATION" && ((DURATION >= 2 && DURATION <= 300)) \
  || die_usage "--duration must be 2 to 300 whole seconds (the drill is at half-time); got '$DURATION'"
is_uint "$RATE" && ((RATE >= 100 && RATE <= 2000000)) \
  || die_usage "--rate must be 100 to 2000000 datagrams per second; got '$RATE'"
is_uint "$FLOWS" && ((FLOWS >= 1 && FLOWS <= 4096)) \
  || die_usage "--flows must be 1 to 4096; got '$FLOWS'"

if [[ -z "$UDPD" ]]; then
  root="$(cd "$(dirname "$0")/.." && pwd)"
  for candidate in "$root/target/release/udpd" "$root/target/debug/udpd"; do
    if [[ -x "$candidate" ]]; then UDPD="$candidate"; break; fi
  done
  [[ -n "$UDPD" ]] || die_usage "no udpd binary under target/: run cargo build, or pass --udpd PATH"
fi
[[ -x "$UDPD" ]] || die_usage "--udpd $UDPD is not an executable file"
[[ "$(id -u)" == 0 ]] || die_usage "needs root (network namespaces, nftables): run it with sudo"
command -v ip >/dev/null || die_usage "needs iproute2 (ip): apt-get install iproute2"
command -v nft >/dev/null || die_usage "needs nft: apt-get install nftables"

# Everything this run makes is named after its pid, so two runs never meet.
TAG="sco$$"
NS_CLIENT="$TAG-client"
NS_LB="$TAG-lb"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/scaleout.XXXXXX")"
declare -a NAMESPACES=() PIDS=()

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  local ns
  for ns in "${NAMESPACES[@]}"; do
    # Anything still inside a namespace this run made was started by this run.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'echo "scaleout: interrupted, cleaning up" >&2; exit 130' INT TERM

in_ns() {
  local ns="$1"
  shift
  ip netns exec "$ns" "$@"
}

new_ns() {
  ip netns add "$1"
  NAMESPACES+=("$1")
  in_ns "$1" ip link set lo up
}

# Sleeps in the background and waits for it, so a Ctrl-C is handled at once rather than after the sleep.
pause() {
  sleep "$1" &
  PIDS+=("$!")
  wait "$!"
}

backend_ns() { echo "$TAG-b$1"; }
backend_addr() { echo "10.77.$1.2"; }

# --- topology ---------------------------------------------------------------------------------------
new_ns "$NS_CLIENT"
new_ns "$NS_LB"
ip link add c0 netns "$NS_CLIENT" type veth peer name lc netns "$NS_LB"
in_ns "$NS_CLIENT" ip addr add 10.77.0.2/24 dev c0
in_ns "$NS_CLIENT" ip link set c0 up
in_ns "$NS_CLIENT" ip route add default via 10.77.0.1
in_ns "$NS_LB" ip addr add 10.77.0.1/24 dev lc
in_ns "$NS_LB" ip link set lc up
in_ns "$NS_LB" sysctl -qw net.ipv4.ip_forward=1
in_ns "$NS_LB" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
for i in $(seq "$BACKENDS"); do
  ns="$(backend_ns "$i")"
  new_ns "$ns"
  ip link add b0 netns "$ns" type veth peer name "l$i" netns "$NS_LB"
  in_ns "$ns" ip addr add "$(backend_addr "$i")/24" dev b0
  in_ns "$ns" ip link set b0 up
  in_ns "$ns" ip route add default via "10.77.$i.1"
  in_ns "$NS_LB" ip addr add "10.77.$i.1/24" dev "l$i"
  in_ns "$NS_LB" ip link set "l$i" up
done

# --- the balancer -----------------------------------------------------------------------------------
# Stateless on purpose: `notrack` keeps every datagram out of conntrack, and the destination is rewritten
# per packet from the bucket map. A stateful `dnat` would pin each flow to the backend its conntrack entry
# names until the entry times out, so a map update would not move existing flows: the re-map would hide.
declare -a BUCKET=()
for b in $(seq 0 $((BUCKETS - 1))); do
  BUCKET[b]=$((b % BACKENDS + 1))
done
map_elements() {
  local b out=""
  for b in "$@"; do
    out+="${out:+, }$b : $(backend_addr "${BUCKET[b]}")"
  done
  echo "$out"
}
in_ns "$NS_LB" nft -f - <<EOF
table ip scaleout {
  map buckets {
    type mark : ipv4_addr
    elements = { $(map_elements $(seq 0 $((BUCKETS - 1)))) }
  }
  chain prerouting {
    type filter hook prerouting priority raw; policy accept;
    meta l4proto udp notrack
    iifname "lc" ip daddr $VIP udp dport $PORT meta mark set jhash ip saddr . udp sport mod $BUCKETS seed $SEED ip daddr set meta mark map @buckets counter
  }
}
EOF

# --- backends ---------------------------------------------------------------------------------------
declare -a SERVE_PID=()
for i in $(seq "$BACKENDS"); do
  # `ip netns exec` execs udpd, so $! is udpd itself (a shell function here would put a subshell between).
  ip netns exec "$(backend_ns "$i")" "$UDPD" serve --listen "0.0.0.0:$PORT" --workers 1 --no-pin \
    --quiet --interval "$INTERVAL" --metrics "127.0.0.1:$METRICS_PORT" >"$WORK/b$i.out" 2>"$WORK/b$i.err" &
  SERVE_PID[i]=$!
  PIDS+=("$!")
done

# Prints backend i's Prometheus text (bash's /dev/tcp inside its namespace; no curl needed).
scrape() {
  in_ns "$(backend_ns "$1")" timeout 3 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET /metrics HTTP/1.0\r\nHost: udpd\r\n\r\n" >&3
    cat <&3' scrape "$METRICS_PORT" 2>/dev/null
}

# The sum over workers of counter udpd_NAME_total in Prometheus text on stdin.
metric_sum() {
  awk -v name="udpd_$1_total" '$1 ~ "^" name "[{ ]" || $1 == name { sum += $NF } END { printf "%d\n", sum }'
}

for i in $(seq "$BACKENDS"); do
  ready=""
  for _ in $(seq 100); do
    if scrape "$i" | grep -q '^udpd_workers '; then ready=1; break; fi
    kill -0 "${SERVE_PID[i]}" 2>/dev/null || break
    sleep 0.05
  done
  if [[ -z "$ready" ]]; then
    echo "scaleout: backend b$i did not come up; its output:" >&2
    cat "$WORK/b$i.out" "$WORK/b$i.err" >&2
    exit 1
  fi
done

echo "== scale-out: $BACKENDS backends behind nftables jhash($BUCKETS buckets), VIP $VIP:$PORT =="
echo "client 10.77.0.2 -> balancer 10.77.0.1 -> backends $(for i in $(seq "$BACKENDS"); do printf '%s ' "$(backend_addr "$i")"; done)"
echo "load: $FLOWS flows, $RATE pps, $DURATION s; drill: backend b$BACKENDS stopped at $((DURATION / 2)) s"

# --- load -------------------------------------------------------------------------------------------
ip netns exec "$NS_CLIENT" timeout $((DURATION + 30)) "$UDPD" load "$VIP:$PORT" --check-source --flows "$FLOWS" \
  --rate "$RATE" --duration "$DURATION" --quiet --json "$WORK/load.json" >"$WORK/load.txt" 2>&1 &
LOAD_PID=$!
PIDS+=("$LOAD_PID")

# --- drill: stop one backend mid-run, then hand its buckets to the others ---------------------------
VICTIM=$BACKENDS
pause "$(awk -v d="$DURATION" 'BEGIN { print d / 2 }')"
victim_before="$(scrape "$VICTIM" | metric_sum tx)"
stop_ns=$(date +%s%N)
kill -TERM "${SERVE_PID[VICTIM]}"
for _ in $(seq 100); do kill -0 "${SERVE_PID[VICTIM]}" 2>/dev/null || break; sleep 0.02; done
if kill -0 "${SERVE_PID[VICTIM]}" 2>/dev/null; then
  echo "scaleout: backend b$VICTIM did not stop within 2 s of SIGTERM" >&2
  exit 1
fi
wait "${SERVE_PID[VICTIM]}" || true
declare -a moved_buckets=() survivors=()
for i in $(seq "$BACKENDS"); do ((i == VICTIM)) || survivors+=("$i"); done
turn=0
for b in $(seq 0 $((BUCKETS - 1))); do
  if ((BUCKET[b] == VICTIM)); then
    moved_buckets+=("$b")
    BUCKET[b]=${survivors[turn % ${#survivors[@]}]}
    turn=$((turn + 1))
  fi
done
in_ns "$NS_LB" nft -f - <<EOF
delete element ip scaleout buckets { $(IFS=,; echo "${moved_buckets[*]}") }
add element ip scaleout buckets { $(map_elements "${moved_buckets[@]}") }
EOF
remap_ns=$(date +%s%N)
gap_ms=$(((remap_ns - stop_ns) / 1000000))
echo "drill: b$VICTIM stopped (SIGTERM); its ${#moved_buckets[@]} of $BUCKETS buckets re-mapped ${gap_ms} ms later"

load_status=0
wait "$LOAD_PID" || load_status=$?
if [[ ! -s "$WORK/load.json" ]]; then
  echo "scaleout: udpd load failed (status $load_status):" >&2
  cat "$WORK/load.txt" >&2
  exit 1
fi

# --- results ----------------------------------------------------------------------------------------
json="$(cat "$WORK/load.json")"
json_num() { { grep -o "\"$1\":[0-9]*" <<<"$json" || echo ":0"; } | head -1 | cut -d: -f2; }
# by_source entries come with their keys sorted: addr, flows_first, flows_last, replies.
source_field() {
  grep -o "{\"addr\":\"$1\",\"flows_first\":[0-9]*,\"flows_last\":[0-9]*,\"replies\":[0-9]*}" <<<"$json" \
    | grep -o "\"$2\":[0-9]*" | cut -d: -f2 || true
}

sent=$(json_num sent)
received_ok=$(json_num received)
lost=$(json_num lost)
replies=$(json_num replies)
flows_answered=$(json_num flows_answered)
sticky=$(json_num single_source)
moved=$(json_num multi_source)
flapping=$(json_num flapping)

printf '\n%-8s %-11s %10s %10s %12s %11s %11s  %s\n' backend address "udpd_rx" "udpd_tx" "client saw" "flows first" "flows last" state
backend_sum=0
backend_rx_sum=0
saw_sum=0
for i in $(seq "$BACKENDS"); do
  addr="$(backend_addr "$i")"
  if ((i == VICTIM)); then
    # Its endpoint is gone with it: the counts come from the summary it printed on exit.
    total="$(grep '^total:' "$WORK/b$i.out" || true)"
    tx=$(sed -n 's/.* tx=\([0-9]*\).*/\1/p' <<<"$total")
    rx=$(sed -n 's/^total: rx=\([0-9]*\).*/\1/p' <<<"$total")
    state="stopped at $((DURATION / 2)) s (udpd_tx was $victim_before just before; counts from its exit summary)"
  else
    # The endpoint shows the last published interval: the counts are final once a publication after
    # the load ended changed nothing (two equal scrapes more than an interval apart).
    metrics="$(scrape "$i")"
    for _ in $(seq 20); do
      sleep 0.3
      again="$(scrape "$i")"
      if [[ "$(metric_sum tx <<<"$again")/$(metric_sum rx <<<"$again")" == "$(metric_sum tx <<<"$metrics")/$(metric_sum rx <<<"$metrics")" ]]; then
        break
      fi
      metrics="$again"
    done
    tx=$(metric_sum tx <<<"$metrics")
    rx=$(metric_sum rx <<<"$metrics")
    state="serving"
  fi
  tx=${tx:-0}
  rx=${rx:-0}
  backend_sum=$((backend_sum + tx))
  backend_rx_sum=$((backend_rx_sum + rx))
  saw=$(source_field "$addr" replies)
  saw_sum=$((saw_sum + ${saw:-0}))
  first=$(source_field "$addr" flows_first)
  last=$(source_field "$addr" flows_last)
  printf '%-8s %-11s %10s %10s %12s %11s %11s  %s\n' "b$i" "$addr" "$rx" "$tx" "${saw:-0}" "${first:-0}" "${last:-0}" "$state"
done
expected_moves=$(source_field "$(backend_addr "$VICTIM")" flows_first)
expected_moves=${expected_moves:-0}
victim_last=$(source_field "$(backend_addr "$VICTIM")" flows_last)
victim_last=${victim_last:-0}

never_reached=$((sent - backend_rx_sum))
unanswered=$((backend_rx_sum - backend_sum))
return_lost=$((backend_sum - replies))
echo
echo "client: sent $sent, received $replies replies ($received_ok correct and in time), lost $lost"
echo "sum of backends' udpd_tx $backend_sum vs client's replies $replies: difference $return_lost (lost on the way back)"
echo "loss: $never_reached never reached a live backend (sent to b$VICTIM between its stop and the re-map)," \
  "$unanswered reached one but were not answered, $return_lost answered but not received"
echo "flows: $flows_answered answered; $sticky sticky (one backend all along); $moved moved" \
  "(expected $expected_moves: those b$VICTIM served); $flapping went back and forth; $victim_last still on b$VICTIM at the end"

ok=1
check() {
  if eval "$1"; then echo "check: $2: holds"; else echo "check: $2: FAILED ($1)"; ok=0; fi
}
check "((backend_sum <= replies + lost && replies <= backend_sum))" \
  "client replies <= backends' udpd_tx sum <= client replies + lost"
check "((saw_sum == replies))" "every reply came from a backend's own address (nothing hides who answered)"
check "((expected_moves > 0))" "the stopped backend served flows (else the drill shows nothing: more --flows)"
check "((moved == expected_moves && victim_last == 0))" "exactly the stopped backend's flows moved, and left it"
check "((flapping == 0 && sticky + moved == flows_answered && flows_answered == FLOWS))" \
  "every flow stuck to one backend, or moved once"

echo "scaleout: backends=$BACKENDS client_sent=$sent client_received=$replies backend_sum=$backend_sum" \
  "lost=$lost flows=$FLOWS sticky_flows=$sticky moved_flows=$moved expected_moves=$expected_moves" \
  "flapping_flows=$flapping never_reached=$never_reached unanswered=$unanswered return_lost=$return_lost" \
  "remap_gap_ms=$gap_ms ok=$ok"
((ok == 1))
