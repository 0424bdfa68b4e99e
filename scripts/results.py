#!/usr/bin/env python3
"""results.py: turn the raw results file of bench.sh / compare.sh into output.

  results.py table RESULTS [--ratios]   markdown table, median per cell over runs;
                                        --ratios adds udpd over the best peer
  results.py plotdata RESULTS DIR       DIR/<regime>-<payload>-<server>.dat files
                                        (offered_pps p99_us), and DIR/panels.txt

RESULTS is tab-separated with a header row (RESULT_HEADER in lib.sh), one row
per measured run. A cell is (server, workers, regime, payload, rate, client);
"rate" 0 means max offered load, whose "offered" is the rate actually sent.

"served at <0.1% loss" is the highest served rate among a server's cells (for
one regime and payload) whose loss is under 0.1%; "CPU per datagram" is the
server's at max offered load.
"""
import os
import statistics
import sys

NUM = ["offered_pps", "served_pps", "loss_pct", "cpu_us", "p50", "p99", "p999",
       "in_dg", "out_dg", "rcvbuf_err", "sndbuf_err"]
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
        v = [float(r[idx[k]]) for r in rs if r[idx[k]] not in ("-", "")]
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
            "p50 us", "p99 us", "p99.9 us", "InDatagrams", "OutDatagrams", "RcvbufErrors", "SndbufErrors", "client"]
    rows = []
    for key in order:
        a = agg[key]
        server, workers, regime, payload, rate, client = key
        offered = ("max " + fmt(a["offered_pps"])) if rate == "0" else fmt(float(rate))
        rows.append([server, workers, regime, payload, offered, fmt(a["served_pps"]), fmt(a["loss_pct"], 3),
                     fmt(a["cpu_us"], 2), fmt(a["p50"], 1), fmt(a["p99"], 1), fmt(a["p999"], 1),
                     fmt(a["in_dg"]), fmt(a["out_dg"]), fmt(a["rcvbuf_err"]), fmt(a["sndbuf_err"]), client])
    print(md_table(cols, rows, right=set(range(3, 15))))
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


def plotdata(path, outdir):
    order, agg = load(path)
    os.makedirs(outdir, exist_ok=True)
    series = {}
    for key in order:
        server, workers, regime, payload, rate, client = key
        a = agg[key]
        if a["p99"] is None or not a["offered_pps"]:
            continue
        name = server if workers == "1" or server != "udpd" else f"udpd-{workers}w"
        series.setdefault((regime, payload), {}).setdefault(name, []).append((a["offered_pps"], a["p99"]))
    with open(os.path.join(outdir, "panels.txt"), "w") as panels:
        for (regime, payload), by in series.items():
            files = []
            for name, pts in by.items():
                f = os.path.join(outdir, f"{regime}-{payload}-{name}.dat")
                with open(f, "w") as fh:
                    for x, y in sorted(pts):
                        fh.write(f"{x:.0f} {y:.1f}\n")
                files.append(f"{name}={f}")
            panels.write(f"{regime} {payload} " + " ".join(files) + "\n")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "table":
        table(sys.argv[2], "--ratios" in sys.argv[3:])
    elif len(sys.argv) == 4 and sys.argv[1] == "plotdata":
        plotdata(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
