#!/usr/bin/env bash
# scripts/profile.sh: where one server's CPU goes per served datagram, in ns.
# Runs the server on CPU 0 and `udpd load` (spread pattern) on CPU 1 at a fixed
# rate, records CPU 0 with `perf record -g` for a few seconds, counts the
# datagrams CPU 0 sent in that time (`net:net_dev_xmit`), and prints, per served
# datagram, the inclusive time of the kernel entry points and costs that tell
# servers apart (syscalls, timestamps, packet info, softirq) and the time in
# user space. Several servers in one call are profiled one after another, so
# their columns come from the same few minutes.
#
# Usage: scripts/profile.sh [--rate PPS] [--payload BYTES] [--seconds N] NAME=COMMAND...
# COMMAND runs under bash with $PORT (where it must serve), $UDPD (the udpd
# binary built here) and $MINIMAL_ECHO (scripts/peers/minimal_echo.c, built
# here) set. Example (udpd at its defaults against the minimal loop, 150 k/s):
#   scripts/profile.sh 'udpd=$UDPD serve --listen 0.0.0.0:$PORT --workers 1 --cpus 0' \
#     'minimal=$MINIMAL_ECHO $PORT plain 64 1'
# Needs root and perf (linux-perf is installed when missing). Plain loopback.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RATE=150000
PAYLOAD=64
SECONDS_RECORDED=3
SERVERS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --rate) RATE=$2; shift 2 ;;
    --payload) PAYLOAD=$2; shift 2 ;;
    --seconds) SECONDS_RECORDED=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *=*) SERVERS+=("$1"); shift ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ ${#SERVERS[@]} -gt 0 ]] || die "name at least one NAME=COMMAND (see --help)"
[[ $RATE =~ ^[1-9][0-9]*$ ]] || die "--rate must be a positive integer"
[[ $SECONDS_RECORDED =~ ^[1-9][0-9]*$ ]] || die "--seconds must be a positive integer"
command -v perf >/dev/null || ensure_pkgs linux-perf || die "perf is needed (apt-get install linux-perf)"
build_udpd
build_minimal_echo || log "minimal_echo does not build: \$MINIMAL_ECHO is unset"
export UDPD MINIMAL_ECHO

OUT="$WORK_DIR/profile"
mkdir -p "$OUT"
port=7600
args=()
for spec in "${SERVERS[@]}"; do
  name=${spec%%=*} command=${spec#*=}
  port=$((port + 1))
  PORT=$port taskset -c 0 bash -c "exec $command" >"$OUT/$name.server" 2>&1 &
  server=$!
  sleep 0.5
  kill -0 "$server" 2>/dev/null || die "$name did not start: $(head -3 "$OUT/$name.server")"
  taskset -c 1 "$UDPD" load "127.0.0.1:$port" --rate "$RATE" --flows 1000 --pattern spread \
    --payload "$PAYLOAD" --duration $((SECONDS_RECORDED + 3)) >"$OUT/$name.load" 2>&1 &
  load=$!
  sleep 1.5
  perf stat -C 0 -e net:net_dev_xmit -x, -o "$OUT/$name.xmit" -- sleep "$SECONDS_RECORDED" &
  perf record -q -C 0 -g -o "$OUT/$name.data" -- sleep "$SECONDS_RECORDED" >/dev/null 2>&1
  wait %2 2>/dev/null || true
  wait "$load" || true
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  sent=$(awk -F, '/net_dev_xmit/ {print $1}' "$OUT/$name.xmit")
  log "$name: $((sent / SECONDS_RECORDED)) datagrams/s sent by CPU 0"
  args+=("$name:$OUT/$name.data:$((sent / SECONDS_RECORDED)):$SECONDS_RECORDED")
done

python3 - "${args[@]}" <<'EOF'
import re, subprocess, sys

KEYS = ["__x64_sys_recvmmsg", "__x64_sys_sendmmsg", "__x64_sys_epoll_wait", "__x64_sys_epoll_ctl",
        "__x64_sys_setsockopt", "handle_softirqs", "__sock_recv_timestamp", "put_cmsg", "ip_cmsg_send",
        "__ip_dev_find", "sock_wfree", "udp_sendmsg", "udp_recvmsg"]
IDLE = "pv_native_safe_halt"

def report(path, *extra):
    return subprocess.run(["perf", "report", "-i", path, "--stdio", "-g", "none", *extra],
                          capture_output=True, text=True).stdout

columns = []
for arg in sys.argv[1:]:
    name, path, per_second, seconds = arg.split(":")
    datagrams = int(per_second) * int(seconds)
    samples, user = 0, 0
    for line in report(path, "--no-children", "--sort", "dso", "-n").splitlines():
        m = re.match(r"\s+[\d.]+%\s+(\d+)\s+(\S+)", line)
        if m:
            samples += int(m.group(1))
            user += 0 if "kernel" in m.group(2) else int(m.group(1))
    inclusive = {}
    for line in report(path, "--children", "--sort", "sym", "-n").splitlines():
        m = re.match(r"\s+([\d.]+)%\s+[\d.]+%\s+\d+\s+\[.\]\s+(\S+)", line)
        if m:
            inclusive[m.group(2)] = float(m.group(1)) / 100 * samples
    # perf's default cpu-clock rate is 4,000 samples a second: 250 us each.
    ns = 250_000.0 / max(datagrams, 1)
    row = {key: inclusive.get(key, 0.0) * ns for key in KEYS}
    row["user space"] = user * ns
    row["all but idle"] = (samples - inclusive.get(IDLE, 0.0)) * ns
    columns.append((name, row))

print(f"ns per served datagram ({', '.join(name for name, _ in columns)})")
print(f"{'':26s}" + "".join(f"{name:>12s}" for name, _ in columns))
for key in KEYS + ["user space", "all but idle"]:
    print(f"{key:26s}" + "".join(f"{row[key]:12.0f}" for _, row in columns))
EOF
