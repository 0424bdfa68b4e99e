#!/usr/bin/env python3
"""results.py: turn the raw results file of bench.sh / compare.sh into output.

  results.py table RESULTS [--ratios]   markdown table, median per cell over runs;
                                        --ratios adds udpd over the best peer
  results.py ratios REF RESULTS...     per-run ratios of every server to REF (the same
                                        payload, rate and run of one file), pooled over
                                        the files: median [quartiles] and n per cell, for
                                        CPU per reply (process and busy), served and p99
  results.py plotdata RESULTS DIR       gnuplot inputs for scripts/plot.sh:
      DIR/styles.txt   "N name colour dash point width", one line per series
                       in legend order: each server's fixed style (STYLES)
      DIR/panels.txt   "regime payload name=file ...", p99 panels, curves in
                       drawing order (udpd last, on top); each file
                       DIR/<regime>-<payload>-<name>.dat has "offered_pps p99_us"
      DIR/bars.txt     "regime payload file served_axis cpu_axis", bar panels;
                       an axis is "log|lin LOW HIGH"; each file has one line per
                       server: "y name colour served served_at served_label
                       cpu cpu_at cpu_label" (max offered load; NaN: not measured)

RESULTS is tab-separated with a header row (RESULT_HEADER in lib.sh), one row
per measured run. A cell is (server, workers, regime, payload, rate, client);
"rate" 0 means max offered load, whose "offered" is the rate actually sent.

"served at <0.1% loss" is the highest served rate among a server's cells (for
one regime and payload) whose loss is under 0.1%; "CPU per datagram" is the
server's at max offered load.
"""
import math
import os
import statistics
import sys

NUM = ["offered_pps", "served_pps", "loss_pct", "cpu_us", "p50", "p99", "p999",
       "in_dg", "out_dg", "rcvbuf_err", "sndbuf_err", "p99_sent", "cpu_busy_us"]
KEY = ("server", "workers", "regime", "payload", "rate", "client")


def load(path):
    rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
    hdr, rows = rows[0], rows[1:]
    idx = {k: i for i, k in enumerate(hdr)}
    cells, order = {}, []
    for r in rows:
        key = tuple(r[idx[k]] for k in KEY)
        if key not in cells:
            cells[key] = []
            order.append(key)
        cells[key].append(r)

    def med(rs, k):
        # Older files have no p99_sent or cpu_busy_us column.
        v = [float(r[idx[k]]) for r in rs if k in idx and len(r) > idx[k] and r[idx[k]] not in ("-", "")]
        return statistics.median(v) if v else None

    agg = {key: {k: med(cells[key], k) for k in NUM} for key in order}
    for key in order:
        agg[key]["runs"] = len(cells[key])
    return order, agg


def fmt(v, d=0):
    if v is None:
        return "-"
    return f"{v:,.0f}" if d == 0 else f"{v:.{d}f}"


def md_table(cols, rows, right=()):
    w = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    cell = lambda i, x: x.rjust(w[i]) if i in right else x.ljust(w[i])
    out = ["| " + " | ".join(cell(i, c) for i, c in enumerate(cols)) + " |",
           "|" + "|".join(("-" * (x + 1) + ":") if i in right else ("-" * (x + 2)) for i, x in enumerate(w)) + "|"]
    out += ["| " + " | ".join(cell(i, x) for i, x in enumerate(r)) + " |" for r in rows]
    return "\n".join(out)


def table(path, ratios):
    order, agg = load(path)
    cols = ["server", "workers", "regime", "payload", "offered/s", "served/s", "loss %", "cpu us/dg",
            "busy us/dg", "p50 us", "p99 us", "p99.9 us", "p99 of sent us", "InDatagrams", "OutDatagrams", "RcvbufErrors", "SndbufErrors", "client"]
    rows = []
    for key in order:
        a = agg[key]
        server, workers, regime, payload, rate, client = key
        offered = ("max " + fmt(a["offered_pps"])) if rate == "0" else fmt(float(rate))
        rows.append([server, workers, regime, payload, offered, fmt(a["served_pps"]), fmt(a["loss_pct"], 3),
                     fmt(a["cpu_us"], 2), fmt(a["cpu_busy_us"], 2), fmt(a["p50"], 1), fmt(a["p99"], 1), fmt(a["p999"], 1),
                     fmt(a["p99_sent"], 1), fmt(a["in_dg"]), fmt(a["out_dg"]), fmt(a["rcvbuf_err"]), fmt(a["sndbuf_err"]), client])
    print(md_table(cols, rows, right=set(range(3, 17))))
    if not ratios:
        return
    summ = {}
    for key in order:
        server, workers, regime, payload, rate, client = key
        a = agg[key]
        s = summ.setdefault((regime, payload), {}).setdefault(server, {"ok": None, "cpu": None})
        if a["loss_pct"] is not None and a["loss_pct"] < 0.1 and a["served_pps"]:
            s["ok"] = max(s["ok"] or 0, a["served_pps"])
        if rate == "0":
            s["cpu"] = a["cpu_us"]
    cols = ["regime", "payload", "udpd served@<0.1%", "best peer", "its served@<0.1%", "udpd/best",
            "udpd cpu us/dg", "best peer", "its cpu us/dg", "udpd/best"]
    rows = []
    for (regime, payload), by in summ.items():
        u = by.get("udpd", {"ok": None, "cpu": None})
        peers = {k: v for k, v in by.items() if k != "udpd"}
        bo = max(((v["ok"], k) for k, v in peers.items() if v["ok"]), default=(None, "-"))
        bc = min(((v["cpu"], k) for k, v in peers.items() if v["cpu"]), default=(None, "-"))
        r1 = fmt(u["ok"] / bo[0], 2) + "x" if u["ok"] and bo[0] else "-"
        r2 = fmt(u["cpu"] / bc[0], 2) + "x" if u["cpu"] and bc[0] else "-"
        rows.append([regime, payload, fmt(u["ok"]), bo[1], fmt(bo[0]), r1, fmt(u["cpu"], 2), bc[1], fmt(bc[0], 2), r2])
    print()
    print(md_table(cols, rows))
    print()
    print("served@<0.1%: highest served rate among the cells with loss under 0.1% (udpd/best: higher is better).")
    print("cpu us/dg: server CPU time per answered datagram at max offered load (udpd/best: lower is better).")


# One fixed style per series, the same in every panel of both plots:
# (colour, dash, point type, line width). gnuplot dash "1" is solid, "(a,b,..)"
# a dash pattern; point types 5/7/9/11/13 are filled, 1/2/4/6/8/10/12/14 open.
# udpd and its variants: warm colours, filled points, bold lines; peers: cool
# or neutral colours, open points, thin lines. Legend order is this order.
UDPD_WIDTH, PEER_WIDTH = 3.0, 1.5
STYLES = {
    "udpd":           ("#d62728", "1", 7, UDPD_WIDTH),
    "udpd-2w":        ("#e6ab02", "(8,3)", 11, UDPD_WIDTH),
    "udpd-default":   ("#ff7f0e", "(4,3)", 5, UDPD_WIDTH),
    "udpd-base":      ("#7f0000", "(12,3,3,3)", 9, UDPD_WIDTH),
    "udpd-sockperf":  ("#e7298a", "(2,2)", 13, UDPD_WIDTH),
    "py_echo":        ("#7f7f7f", "(2,3)", 6, PEER_WIDTH),
    "socat":          ("#9467bd", "(8,4)", 4, PEER_WIDTH),
    "sockperf":       ("#17becf", "(12,3,2,3)", 8, PEER_WIDTH),
    "nginx":          ("#2ca02c", "(4,4)", 10, PEER_WIDTH),
    "tokio":          ("#8c8c00", "(16,4)", 12, PEER_WIDTH),
    "minimal-plain":  ("#6baed6", "(6,3,2,3,2,3)", 14, PEER_WIDTH),
    "minimal-gso":    ("#2155b0", "(10,3,4,3)", 1, PEER_WIDTH),
    "minimal-grogso": ("#000000", "1", 2, PEER_WIDTH),
}
# Styles for series not named above (udpd-4w, udpd-base-2w, a new peer), handed
# out in order of first appearance so that no two share one.
SPARE_UDPD = [("#f768a1", "(6,2,2,2)", 15, UDPD_WIDTH), ("#a63603", "(3,3,9,3)", 5, UDPD_WIDTH),
              ("#fdae6b", "(14,2)", 9, UDPD_WIDTH), ("#c51b7d", "(1,2)", 11, UDPD_WIDTH)]
SPARE_PEER = [("#08306b", "(5,2)", 3, PEER_WIDTH), ("#006d2c", "(2,2,8,2)", 4, PEER_WIDTH),
              ("#54278f", "(10,2,2,2)", 6, PEER_WIDTH), ("#525252", "(7,5)", 8, PEER_WIDTH)]


def series_name(server, workers):
    """udpd (and its variants) run with several workers get a "-Nw" suffix."""
    return server if workers == "1" or not server.startswith("udpd") else f"{server}-{workers}w"


def assign_styles(names):
    """names in first-appearance order -> [(name, style)] in legend order."""
    spare = {True: list(SPARE_UDPD), False: list(SPARE_PEER)}
    styles = {}
    for name in names:
        if name in STYLES:
            styles[name] = STYLES[name]
        else:
            pool = spare[name.startswith("udpd")] or spare[not name.startswith("udpd")]
            if not pool:
                sys.exit(f"results.py: no plot style left for server {name}; add it to STYLES")
            styles[name] = pool.pop(0)
    known = [n for n in STYLES if n in styles]
    return [(n, styles[n]) for n in known + [n for n in names if n not in STYLES]]


def si(v):
    """1234567 -> 1.23M, 45600 -> 45.6k: a short bar label for a rate."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def bar_axis(values):
    """(scale, low, high) for values >= 0: log when they span over 30x; the
    upper end leaves room for the value labels to the right of the bars."""
    pos = [v for v in values if v and v > 0]
    if not pos:
        return "lin", 0.0, 1.0
    lo, hi = min(pos), max(pos)
    if hi / lo > 30:
        return "log", 10 ** math.floor(math.log10(lo) - 0.3), hi * 6
    return "lin", 0.0, hi * 1.3


def write_bars(outdir, regime, payload, names, styles, at_max):
    """One bar panel pair (served, CPU) for regime and payload; returns the
    bars.txt line."""
    served_axis = bar_axis([at_max[n]["served_pps"] for n in names])
    cpu_axis = bar_axis([at_max[n]["cpu_us"] for n in names])
    f = os.path.join(outdir, f"bars-{regime}-{payload}.dat")
    with open(f, "w") as fh:
        for y, name in enumerate(reversed(names), 1):
            colour = int(styles[name][0][1:], 16)
            cols = []
            for value, axis, label in ((at_max[name]["served_pps"], served_axis, si),
                                       (at_max[name]["cpu_us"], cpu_axis, lambda v: f"{v:.3g}")):
                if value is None or (axis[0] == "log" and value <= 0):  # no bar
                    cols += ["NaN", f"{axis[1]:g}", "n/a" if value is None else label(value)]
                else:
                    cols += [f"{value:g}", f"{value:g}", label(value)]
            fh.write(" ".join([str(y), name, str(colour)] + cols) + "\n")
    axes = " ".join(f"{a[0]} {a[1]:g} {a[2]:g}" for a in (served_axis, cpu_axis))
    return f"{regime} {payload} {f} {axes}\n"


def plotdata(path, outdir):
    order, agg = load(path)
    os.makedirs(outdir, exist_ok=True)
    series, at_max, names = {}, {}, []
    for key in order:
        server, workers, regime, payload, rate, client = key
        a = agg[key]
        name = series_name(server, workers)
        has_p99 = a["p99"] is not None and bool(a["offered_pps"])
        has_bar = rate == "0" and (a["served_pps"] is not None or a["cpu_us"] is not None)
        if not (has_p99 or has_bar):
            continue
        if name not in names:
            names.append(name)
        if has_p99:
            series.setdefault((regime, payload), {}).setdefault(name, []).append((a["offered_pps"], a["p99"]))
        if has_bar:
            at_max.setdefault((regime, payload), {})[name] = a
    legend = assign_styles(names)
    styles = dict(legend)
    with open(os.path.join(outdir, "styles.txt"), "w") as fh:
        for n, (name, (colour, dash, point, width)) in enumerate(legend, 1):
            fh.write(f"{n} {name} {colour} {dash} {point} {width}\n")
    with open(os.path.join(outdir, "panels.txt"), "w") as panels:
        for (regime, payload), by in series.items():
            files = []  # drawn in reverse legend order: udpd last, on top
            for name in reversed([n for n, _ in legend if n in by]):
                pts = by[name]
                f = os.path.join(outdir, f"{regime}-{payload}-{name}.dat")
                with open(f, "w") as fh:
                    for x, y in sorted(pts):
                        fh.write(f"{x:.0f} {y:.1f}\n")
                files.append(f"{name}={f}")
            panels.write(f"{regime} {payload} " + " ".join(files) + "\n")
    with open(os.path.join(outdir, "bars.txt"), "w") as bars:
        for (regime, payload), by in at_max.items():
            in_order = [name for name, _ in legend if name in by]
            bars.write(write_bars(outdir, regime, payload, in_order, styles, by))


RATIO_METRICS = [("cpu_us", "CPU per reply"), ("cpu_busy_us", "CPU busy per reply"),
                 ("served_pps", "served"), ("p99", "p99 of replies"), ("p99_sent", "p99 over every request sent")]


def ratios(ref, paths):
    """Per-run ratio server / REF for each (server, regime, payload, rate), pooled over the files."""
    pooled, order = {}, []
    for path in paths:
        rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
        idx = {k: i for i, k in enumerate(rows[0])}
        runs = {}
        for r in rows[1:]:
            key = (r[idx["server"]], r[idx["regime"]], r[idx["payload"]], r[idx["rate"]], r[idx["run"]])
            runs[key] = r
        for (server, regime, payload, rate, run), r in runs.items():
            base = runs.get((ref, regime, payload, rate, run))
            if server == ref or base is None:
                continue
            cell = (server, regime, int(payload), int(rate))
            if cell not in pooled:
                pooled[cell] = {m: [] for m, _ in RATIO_METRICS}
                order.append(cell)
            for metric, _ in RATIO_METRICS:
                if metric not in idx or len(r) <= idx[metric] or len(base) <= idx[metric]:
                    continue
                try:
                    a, b = float(r[idx[metric]]), float(base[idx[metric]])
                except ValueError:
                    continue
                # inf: more than 1 % unanswered (p99_sent), no ratio.
                if b > 0 and math.isfinite(a) and math.isfinite(b):
                    pooled[cell][metric].append(a / b)

    def summary(values):
        if not values:
            return "-"
        q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        return f"{statistics.median(values):.3f} [{q[0]:.2f}-{q[2]:.2f}] n={len(values)}"

    cols = ["server", "regime", "payload", "offered"] + [name for _, name in RATIO_METRICS]
    rows = []
    for cell in sorted(order):
        server, regime, payload, rate = cell
        rows.append([server, regime, str(payload), "max" if rate == 0 else fmt(float(rate))]
                    + [summary(pooled[cell][m]) for m, _ in RATIO_METRICS])
    print(f"Per-run ratio to {ref}, median [quartiles] n, pooled over {len(paths)} file(s):")
    print(md_table(cols, rows, right={2}))


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "ratios":
        ratios(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) >= 3 and sys.argv[1] == "table":
        table(sys.argv[2], "--ratios" in sys.argv[3:])
    elif len(sys.argv) == 4 and sys.argv[1] == "plotdata":
        plotdata(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
