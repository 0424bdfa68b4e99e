#!/usr/bin/env bash
# scripts/plot.sh: draw the raw results file that compare.sh / bench.sh write
# (--results FILE) as two SVGs:
#   - p99 latency against offered load, one curve per server, one panel per
#     regime and payload, one shared legend;
#   - per regime and payload, bars of the rate served at max offered load and
#     of the server CPU time per reply, one bar per server, value on each bar.
#
#   scripts/plot.sh RESULTS [OUT_P99.svg] [OUT_BARS.svg]
#     OUT_P99 default docs/p99-vs-load.svg; OUT_BARS default served-and-cpu.svg
#     in OUT_P99's folder (so docs/served-and-cpu.svg when neither is given)
#
# Each server keeps one colour, dash and point type in every panel of both
# SVGs (the palette is STYLES in results.py: udpd and its variants in warm
# colours with bold lines and filled points, peers in cool or neutral colours).
# Max-load cells are plotted at the rate actually sent. The p99 axes are
# logarithmic; a bar axis is when its values span over 30x.
# Needs gnuplot (installs gnuplot-nox with apt-get if missing).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -ge 1 && -s $1 ]] || die "usage: plot.sh RESULTS [OUT_P99.svg] [OUT_BARS.svg]"
results=$1
out_p99=${2:-$REPO_ROOT/docs/p99-vs-load.svg}
out_bars=${3:-$(dirname "$out_p99")/served-and-cpu.svg}
command -v gnuplot >/dev/null || ensure_pkgs gnuplot-nox || die "gnuplot is not available"

data=$WORK_DIR/plot
plot_data "$results" "$data"
mapfile -t panels <"$data/panels.txt"
mapfile -t bars <"$data/bars.txt"
((${#panels[@]} + ${#bars[@]} > 0)) || die "nothing to plot (no cell with a p99, served rate or CPU time)"

# Canvas geometry, in pixels: drawn at 1120 wide, to be read at ~1100.
WIDTH=1120
TITLE_H=40
PANEL_H=400          # one p99 panel
KEY_COLS=5           # legend entries per row under the p99 panels
KEY_ROW_H=26
BAR_H=24             # one bar
BAR_EXTRA_H=110      # a bar panel's title, axis and tic labels
MACHINE="loopback, server CPU $SERVER_CPUS, load CPU $LOAD_CPU"

# style_lines: a gnuplot line style per series (number N of styles.txt).
style_lines() {
  local n name colour dash point width
  while read -r n name colour dash point width; do
    echo "set style line $n lc rgb '$colour' dt $dash pt $point lw $width ps 1.3"
  done <"$data/styles.txt"
}

# common_setup HEIGHT OUT: terminal, output and styles shared by both SVGs.
common_setup() {
  echo "set terminal svg size $WIDTH,$1 dynamic font 'sans,12' background rgb 'white'"
  echo "set output '$2'"
  echo "set termoption noenhanced"
  echo "W = $WIDTH.0; H = $1.0"
  echo "set style fill solid 0.9 noborder"
  echo "set lmargin 12; set rmargin 4; set tmargin 2.5; set bmargin 3.5"
  style_lines
}

# p99_script: every p99 panel (two a row), then one legend across the bottom.
p99_script() {
  local -A style_of
  local n name _ line regime payload specs spec i=0 x y plot sep
  while read -r n name _; do style_of[$name]=$n; done <"$data/styles.txt"
  local cols=2 count=${#style_of[@]}
  ((${#panels[@]} == 1)) && cols=1
  local rows=$(((${#panels[@]} + cols - 1) / cols))
  local key_h=$((20 + KEY_ROW_H * ((count + KEY_COLS - 1) / KEY_COLS)))
  local height=$((TITLE_H + rows * PANEL_H + key_h))
  common_setup "$height" "$out_p99"
  echo "set multiplot title 'udpd and peers: p99 RTT vs offered load ($MACHINE)' font ',14'"
  echo "set size $((WIDTH / cols)).0/W, $PANEL_H.0/H"
  echo "set logscale xy; set grid; unset key"
  echo "set xlabel 'offered load (datagrams/s)' offset 0,0.3"
  echo "set ylabel 'p99 RTT (us)' offset 1,0"
  echo "set format x '%.0s%c'; set format y '%.0s%c'"
  for line in "${panels[@]}"; do
    read -r regime payload specs <<<"$line"
    x=$((i % cols * WIDTH / cols))
    y=$((key_h + (rows - 1 - i / cols) * PANEL_H))
    echo "set origin $x.0/W, $y.0/H"
    echo "set title '$regime, $payload-byte payload'"
    plot="plot"
    sep=""
    for spec in $specs; do
      name=${spec%%=*}
      plot+="$sep '${spec#*=}' using 1:2 with linespoints ls ${style_of[$name]} notitle"
      sep=","
    done
    echo "$plot"
    i=$((i + 1))
  done
  # The legend: a plot whose curves lie outside its range, so that only its
  # key shows, under the panels (gnuplot 5.4's keyentry alone trips an assert).
  echo "set origin 0, 0; set size 1, $key_h.0/H"
  echo "unset title; unset xlabel; unset ylabel; unset logscale; unset grid; unset border; unset tics"
  echo "set xrange [0:1]; set yrange [0:1]; set samples 2"
  echo "set key center center horizontal Left reverse maxcols $KEY_COLS samplen 5 width 1 spacing 1.4 font ',12'"
  plot="plot"
  sep=""
  while read -r n name _; do
    plot+="$sep 2 with linespoints ls $n title '$name'"
    sep=","
  done <"$data/styles.txt"
  echo "$plot"
  echo "unset multiplot"
}

# bar_panel FILE AXIS LOW HIGH COL TITLE XLABEL: one horizontal bar chart of
# column COL of FILE (its label at COL+1, text at COL+2), on a log or lin axis.
bar_panel() {
  local file=$1 axis=$2 low=$3 high=$4 col=$5 title=$6 xlabel=$7
  local y name tics="" sep="" count=0
  while read -r y name _; do
    tics+="$sep'$name' $y"
    sep=", "
    count=$y
  done <"$file"
  echo "set title '$title'"
  echo "set xlabel '$xlabel' offset 0,0.3"
  if [[ $axis == log ]]; then echo "set logscale x"; else echo "unset logscale x"; fi
  echo "set xrange [$low:$high]; set yrange [0.4:$count.6]"
  echo "set ytics ($tics) nomirror scale 0"
  echo "plot '$file' using ($low):1:($low):$col:(\$1-0.38):(\$1+0.38):3 with boxxyerror fc rgb variable notitle, \\"
  echo "  '' using $((col + 1)):1:$((col + 2)) with labels left offset char 0.6,0 font ',11' notitle"
}

# bars_script: a row per regime and payload; served rate left, CPU right.
bars_script() {
  local line regime payload file s_axis s_low s_high c_axis c_low c_high y lines i=0 most=1
  for line in "${bars[@]}"; do
    read -r _ _ file _ <<<"$line"
    lines=$(wc -l <"$file")
    ((lines > most)) && most=$lines
  done
  local row_h=$((BAR_EXTRA_H + BAR_H * most))
  local height=$((TITLE_H + ${#bars[@]} * row_h))
  common_setup "$height" "$out_bars"
  echo "set multiplot title 'udpd and peers at max offered load ($MACHINE)' font ',14'"
  echo "set size 0.5, $row_h.0/H"
  echo "set grid xtics; set xtics nomirror; unset key; set border 3; set lmargin 17"
  for line in "${bars[@]}"; do
    read -r regime payload file s_axis s_low s_high c_axis c_low c_high <<<"$line"
    y=$(((${#bars[@]} - 1 - i) * row_h))
    echo "set origin 0, $y.0/H"
    echo "set format x '%.0s%c'"
    bar_panel "$file" "$s_axis" "$s_low" "$s_high" 4 \
      "$regime, $payload-byte payload: replies served at max offered load" "replies served (datagrams/s)"
    echo "set origin 0.5, $y.0/H"
    echo "set format x '%g'"
    bar_panel "$file" "$c_axis" "$c_low" "$c_high" 7 \
      "$regime, $payload-byte payload: server CPU per reply" "server CPU time per reply (us)"
    i=$((i + 1))
  done
  echo "unset multiplot"
}

if ((${#panels[@]} > 0)); then
  p99_script >"$WORK_DIR/p99.gp"
  gnuplot "$WORK_DIR/p99.gp"
  log "wrote $out_p99"
else
  log "no cell with a p99: $out_p99 not written"
fi
if ((${#bars[@]} > 0)); then
  bars_script >"$WORK_DIR/bars.gp"
  gnuplot "$WORK_DIR/bars.gp"
  log "wrote $out_bars"
else
  log "no max-load cell: $out_bars not written"
fi
