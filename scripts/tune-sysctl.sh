#!/usr/bin/env bash
# tune-sysctl.sh: raise the kernel limits `udpd doctor` checks (socket buffer maxima, netdev backlog) for high UDP rates.
#
# Usage: scripts/tune-sysctl.sh [--dry-run] [--persist] [--buffer BYTES] [--backlog N]
#   --dry-run   print what would be done, change nothing (no root needed)
#   --persist   also write /etc/sysctl.d/60-udpd.conf so the values survive a reboot
#   --buffer    net.core.rmem_max / wmem_max target in bytes (default 8388608 = 8 MiB: RECOMMENDED_BUFFER of `udpd doctor`)
#   --backlog   net.core.netdev_max_backlog target (default 10000: RECOMMENDED_BACKLOG of `udpd doctor`)
# Values already at or above the target are left alone: this script only raises limits.
set -euo pipefail

dry_run=0
persist=0
buffer=8388608
backlog=10000
conf=/etc/sysctl.d/60-udpd.conf

die() { echo "tune-sysctl.sh: error: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --persist) persist=1 ;;
        --buffer) [ $# -ge 2 ] || die "--buffer needs a value in bytes"; buffer=$2; shift ;;
        --backlog) [ $# -ge 2 ] || die "--backlog needs a value"; backlog=$2; shift ;;
        -h|--help) sed -n '2,9s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

case "$buffer" in ''|*[!0-9]*) die "--buffer $buffer is not a number of bytes" ;; esac
case "$backlog" in ''|*[!0-9]*) die "--backlog $backlog is not a number" ;; esac

if [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "changing sysctls needs root: run with sudo, or with --dry-run to see what would change"
fi

run() {
    if [ "$dry_run" -eq 1 ]; then
        echo "would run: $*"
    else
        echo "running: $*"
        "$@"
    fi
}

lines=()
for pair in "net.core.rmem_max=$buffer" "net.core.wmem_max=$buffer" "net.core.netdev_max_backlog=$backlog"; do
    key=${pair%%=*}
    want=${pair#*=}
    path=/proc/sys/${key//.//}
    lines+=("$key = $want")
    if [ ! -r "$path" ]; then
        echo "skip: $key ($path not readable)"
        continue
    fi
    have=$(cat "$path")
    if [ "$have" -ge "$want" ]; then
        echo "ok: $key is $have (>= $want)"
    else
        run sysctl -w "$key=$want"
    fi
done

if [ "$persist" -eq 1 ]; then
    if [ "$dry_run" -eq 1 ]; then
        echo "would write $conf:"
        printf '  %s\n' "${lines[@]}"
    else
        echo "writing $conf"
        { echo "# written by udpd scripts/tune-sysctl.sh"; printf '%s\n' "${lines[@]}"; } > "$conf"
    fi
fi
