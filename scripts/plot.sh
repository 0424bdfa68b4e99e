#!/usr/bin/env bash
# scripts/plot.sh: plot p99 latency against offered load, one curve per
# server, one panel per regime and payload, from the raw results file that
# compare.sh / bench.sh write (--results FILE).
#
#   scripts/plot.sh RESULTS [OUT.svg]      (OUT default docs/p99-vs-load.svg)
#
# Needs gnuplot (installs gnuplot-nox with apt-get if missing). Max-load cells
# are plotted at the rate actually sent. Both axes are logarithmic.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -ge 1 && -s $1 ]] || die "usage: plot.sh RESULTS [OUT.svg]"
results=$1
out=${2:-$REPO_ROOT/docs/p99-vs-load.svg}
command -v gnuplot >/dev/null || ensure_pkgs gnuplot-nox || die "gnuplot is not available"

plot_data "$results" "$WORK_DIR/plot"
mapfile -t panels <"$WORK_DIR/plot/panels.txt"
((${#panels[@]} > 0)) || die "nothing to plot (no cell with a p99)"
cols=2
rows=$(((${#panels[@]} + cols - 1) / cols))
((${#panels[@]} == 1)) && cols=1

{
  echo "set terminal svg size $((cols * 560)),$((rows * 420)) dynamic font 'sans,11' background rgb 'white'"
  echo "set output '$out'"
  echo "set multiplot layout $rows,$cols title 'udpd and peers: p99 RTT vs offered load (loopback, server CPU $SERVER_CPUS, load CPU $LOAD_CPU)'"
  echo "set termoption noenhanced"
  echo "set logscale xy"
  echo "set grid"
  echo "set xlabel 'offered load (datagrams/s)'"
  echo "set ylabel 'p99 RTT (us)'"
  echo "set key outside right top vertical font ',9'"
  echo "set format x '%.0s%c'"
  for line in "${panels[@]}"; do
    read -r regime payload specs <<<"$line"
    echo "set title '$regime, $payload-byte payload'"
    plot="plot"
    sep=""
    for spec in $specs; do
      name=${spec%%=*}
      file=${spec#*=}
      plot+="$sep '$file' using 1:2 with linespoints title '$name'"
      sep=","
    done
    echo "$plot"
  done
  echo "unset multiplot"
} >"$WORK_DIR/plot.gp"
gnuplot "$WORK_DIR/plot.gp"
log "wrote $out"
