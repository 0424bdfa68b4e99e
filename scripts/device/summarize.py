#!/usr/bin/env python3
"""scripts/device/summarize.py: medians per (tag, server, offered rate) over the RESULT lines of suite logs."""
import collections, statistics, sys
rows = collections.defaultdict(list)
for path in sys.argv[1:]:
    for line in open(path):
        if not line.startswith('RESULT') or 'NO-RESULT' in line:
            continue
        parts = line.split()
        kv = dict(p.split('=') for p in parts[3:])
        rows[(parts[1], parts[2], kv.get('offered', '0'))].append({k: float(v) for k, v in kv.items()})
for (tag, label, offered), runs in rows.items():
    med = lambda k: statistics.median(r[k] for r in runs if k in r)
    line = f"{tag:<15} {label:<18} offered={int(float(offered)):>8} n={len(runs)} served={med('served_pps')/1e6:7.3f}M loss={med('loss_pct'):6.2f}% cpu/dgram={med('cpu_us_per_dgram'):6.3f}us p50={med('p50'):9.1f} p99={med('p99'):9.1f}"
    if 'p99_9' in runs[0]:
        line += f" p99.9={med('p99_9'):9.1f} max={med('max'):9.1f}"
    line += "  served: " + " ".join(f"{r['served_pps']/1e6:.2f}" for r in runs)
    print(line)
