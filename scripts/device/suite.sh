#!/usr/bin/env bash
# scripts/device/suite.sh: the single-worker comparisons and the worker scaling sweep behind the figures in
# docs/BENCHMARKS.md ("16-core machine"). Needs 16 CPUs, a release udpd (UDPD, default target/release/udpd)
# and scripts/peers/minimal_echo.c built as MINIMAL (default target/minimal_echo):
#   cargo build --release && gcc -O2 -o target/minimal_echo scripts/peers/minimal_echo.c
#   scripts/device/suite.sh | tee suite.log && scripts/device/summarize.py suite.log
cd "$(dirname "$0")/../.."
U=${UDPD:-target/release/udpd}; M=${MINIMAL:-target/minimal_echo}
S="$U serve --listen 127.0.0.1:47001 --quiet"
echo "machine: $(nproc) cpus, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
bulk() { export FLOWS=4 LOADFLAGS="--gso --gro --pattern bulk"; }
spread() { export FLOWS=1000 LOADFLAGS="--pattern spread"; }
export DUR=3
for run in 1 2 3 4 5; do
  bulk; export RATE=0 PAYLOAD=64 TAG=bulk64
  scripts/device/cell.sh udpd 0 2-3 2 -- $S --workers 1
  scripts/device/cell.sh minimal-grogso 0 2-3 2 -- $M 47001 grogso
  export PAYLOAD=1400 TAG=bulk1400
  scripts/device/cell.sh udpd 0 2-3 2 -- $S --workers 1
  scripts/device/cell.sh minimal-grogso 0 2-3 2 -- $M 47001 grogso
done
for run in 1 2 3; do
  bulk; export RATE=0 PAYLOAD=64 TAG=bulk64
  scripts/device/cell.sh udpd-no-latency 0 2-3 2 -- $S --workers 1 --no-latency
  spread; export PAYLOAD=64 TAG=spread64
  scripts/device/cell.sh udpd 0 2-3 2 -- $S --workers 1
  scripts/device/cell.sh minimal-plain 0 2-3 2 -- $M 47001 plain
  scripts/device/cell.sh minimal-grogso 0 2-3 2 -- $M 47001 grogso
done
for run in 1 2; do
  bulk; export RATE=0 PAYLOAD=64 TAG=bulk64
  scripts/device/cell.sh udpd-no-offloads 0 2-3 2 -- $S --workers 1 --no-gso --no-gro
  scripts/device/cell.sh udpd-gso-only 0 2-3 2 -- $S --workers 1 --no-gro
  scripts/device/cell.sh minimal-gso 0 2-3 2 -- $M 47001 gso
  scripts/device/cell.sh minimal-plain 0 2-3 2 -- $M 47001 plain
done
export RATE=0 PAYLOAD=64
for w in 1 2 4 8 14; do
  lt=$((16 - w)); [ $lt -gt 8 ] && lt=8
  bulk; export FLOWS=$((lt * 8 > w * 8 ? lt * 8 : w * 8)) TAG=scale-bulk64
  scripts/device/cell.sh udpd-w$w 0-$((w-1)) $w-15 $lt -- $S --workers $w
  spread; export FLOWS=$((lt * 1000)) TAG=scale-spread64
  scripts/device/cell.sh udpd-w$w 0-$((w-1)) $w-15 $lt -- $S --workers $w
done
