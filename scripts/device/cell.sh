#!/usr/bin/env bash
# scripts/device/cell.sh: one measured cell on a many-core machine, printed as one `RESULT` line.
#
#   cell.sh LABEL SERVER_CPUS LOAD_CPUS LOAD_THREADS -- SERVER COMMAND...
#
# Starts the server (which must listen on 127.0.0.1:47001) pinned to SERVER_CPUS, runs `udpd load` pinned
# to LOAD_CPUS with LOAD_THREADS threads, reads the server's CPU time from /proc/PID/stat around the run,
# and prints served rate, loss, CPU per datagram and RTT percentiles. Environment: RATE (0 = max),
# FLOWS, LOADFLAGS (default bulk with --gso --gro), PAYLOAD, DUR (seconds), TAG (a column), UDPD (binary).
label=$1; scpu=$2; lcpu=$3; lthreads=$4; shift 5
taskset -c $scpu "$@" > /tmp/ab-srv.out 2>&1 & SP=$!
sleep 0.4
t0=$(awk '{print $14+$15}' /proc/$SP/stat)
out=$(taskset -c $lcpu ${UDPD:-target/release/udpd} load 127.0.0.1:47001 --threads $lthreads --rate ${RATE:-0} --flows ${FLOWS:-4} ${LOADFLAGS:---gso --gro --pattern bulk} --payload ${PAYLOAD:-64} --duration ${DUR:-3} --timeout 0.5 --json - --quiet 2>/dev/null | tail -1)
t1=$(awk '{print $14+$15}' /proc/$SP/stat)
kill -TERM $SP; wait $SP 2>/dev/null
python3 -c "
import json,sys
label,tag=sys.argv[2],sys.argv[3]
try: d=json.loads(sys.argv[1])
except Exception: print('RESULT',tag,label,'NO-RESULT'); sys.exit()
cpu=($t1-$t0)/100.0
r=d['received']; l=d['latency_us'] or {}
print(f\"RESULT {tag} {label} offered={d['offered_pps']} sent_pps={d['sent_pps']:.0f} served_pps={d['received_pps']:.0f} loss_pct={d['loss_ratio']*100:.3f} mism={d['mismatched']} cpu_s={cpu:.2f} cpu_us_per_dgram={cpu*1e6/max(r,1):.3f} p50={l.get('p50',0):.1f} p99={l.get('p99',0):.1f} p99_9={l.get('p99_9',0):.1f} max={l.get('max',0):.1f}\")
" "$out" "$label" "${TAG:-x}"
