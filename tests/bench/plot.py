#!/usr/bin/python3
"""Turns bench/results/*.jsonl into PNG plots (gnuplot, pngcairo) in the same
folder. For each benchmark only its latest run (largest "time" stamp) is
plotted; benchmarks without results are skipped with a note. Each plot's
data and gnuplot script are kept next to it (NAME.dat, NAME.gp) so a figure
can be re-drawn or checked by hand.

usage: plot.py [RESULTS_DIR]     (default bench/results)
"""
import collections
import glob
import json
import os
import subprocess
import sys

RESULTS = sys.argv[1] if len(sys.argv) > 1 else "bench/results"


def load():
    by_bench = collections.defaultdict(list)
    for path in sorted(glob.glob(os.path.join(RESULTS, "*.jsonl"))):
        for line in open(path):
            line = line.strip()
            if line.startswith("{"):
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue
                by_bench[r.get("bench", os.path.basename(path))].append(r)
    latest = {}
    for bench, rows in by_bench.items():
        t = max(r.get("time", "") for r in rows)
        latest[bench] = [r for r in rows if r.get("time", "") == t]
    return latest


def gnuplot(name, script):
    gp = os.path.join(RESULTS, name + ".gp")
    png = os.path.join(RESULTS, name + ".png")
    with open(gp, "w") as f:
        f.write(f"set terminal pngcairo noenhanced size 900,560 font 'sans,11'\nset output '{png}'\n")
        f.write("set grid ytics mytics lc rgb '#dddddd'\nset key outside right top\n")
        f.write(script)
    subprocess.run(["gnuplot", gp], check=True)
    print(f"plot: {png}")


def q(s):
    return '"' + str(s).replace('"', "'") + '"'


def bars(name, title, ylabel, categories, series, logy=False, note=""):
    """series: {label: [value per category]} -> clustered bars."""
    dat = os.path.join(RESULTS, name + ".dat")
    labels = list(series)
    with open(dat, "w") as f:
        f.write("category " + " ".join(q(l) for l in labels) + "\n")
        for i, c in enumerate(categories):
            vals = [series[l][i] for l in labels]
            f.write(q(c) + " " + " ".join("NaN" if v is None else repr(v) for v in vals) + "\n")
    cols = ", ".join(f"'{dat}' using {j + 2}:xtic(1) title columnheader({j + 2})"
                     for j in range(len(labels)))
    gnuplot(name, f"""set title {q(title)}
set ylabel {q(ylabel)}
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set xtics rotate by -20 font ",9"
{"set logscale y" if logy else ""}
{f"set label 1 {q(note)} at graph 0.01, graph -0.22 font 'sans,9'" if note else ""}
set bmargin 6
plot {cols}
""")


def lines(name, title, xlabel, ylabel, series, logx=False, logy=False, note=""):
    """series: {label: [(x, y), ...]} -> lines with points."""
    dat = os.path.join(RESULTS, name + ".dat")
    with open(dat, "w") as f:
        for label, pts in series.items():
            f.write(f"# {label}\n")
            for x, y in sorted(pts):
                f.write(f"{x!r} {y!r}\n")
            f.write("\n\n")
    plots = ", ".join(f"'{dat}' index {i} using 1:2 with linespoints lw 2 title {q(l)}"
                      for i, l in enumerate(series))
    gnuplot(name, f"""set title {q(title)}
set xlabel {q(xlabel)}
set ylabel {q(ylabel)}
{"set logscale x 2" if logx else ""}
{"set logscale y" if logy else ""}
{f"set label 1 {q(note)} at graph 0.01, graph -0.16 font 'sans,9'" if note else ""}
set bmargin 5
plot {plots}
""")


def plot_peers(rows):
    peers = [r for r in rows if "tokens_per_s" in r and not r["peer"].startswith("limit_seq")]
    cats = []
    for r in peers:
        c = f"{r['peer']} {r['threads']}t"
        if c not in cats:
            cats.append(c)
    dists = sorted({r["dist"] for r in peers})
    series = {d: [next((r["tokens_per_s"] for r in peers if r["dist"] == d and
                        f"{r['peer']} {r['threads']}t" == c), None) for c in cats] for d in dists}
    r0 = peers[0]
    seq = next((r for r in rows if r["peer"] == "limit_seq_read"), None)
    note = (f"table {r0['rows']} x {r0['dim']} f32, batches of {r0['tokens']} tokens x k {r0['k']}; "
            f"seq read {seq['gb_per_s']:.2f} GB/s" if seq else "")
    bars("peers_tokens_per_s", "Weighted row lookups: tokens/s (higher is better, same rows, same run)",
         "tokens/s (log)", cats, series, logy=True, note=note)
    base = {r["dist"]: r["tokens_per_s"] for r in peers if r["peer"] == "ultrashard" and r["threads"] == 1}
    ratio_cats = [c for c in cats if not c.startswith("ultrashard 1t")]
    rs = {d: [(base[d] / v if v else None) for c, v in zip(cats, series[d]) if c in ratio_cats]
          for d in dists}
    bars("peers_ratio", "UltraShard (1 thread) / peer throughput ratio (>1: UltraShard faster)",
         "ratio (log)", ratio_cats, rs, logy=True, note=note)


def plot_plan_check(rows):
    gather = [r for r in rows if r.get("metric") == "gather_ns_per_row"]
    calib = {r["label"].split()[1]: r["predicted"] for r in rows
             if r.get("metric") == "gather_ns_per_row_calibrated"}
    if gather:
        cats = [r["label"].split()[1] + " B rows" for r in gather]
        bars("plan_check_gather", "ultrashard plan: gather cost per row, predicted vs measured (f32, 1 thread)",
             "ns per row (log)", cats,
             {"measured": [r["measured"] for r in gather],
              "predicted (defaults)": [r["predicted"] for r in gather],
              "predicted (calibrated here)": [calib.get(r["label"].split()[1]) for r in gather]},
             logy=True)
    lk = [r for r in rows if r.get("metric") in ("request_bytes_per_token", "response_bytes_per_token",
                                                 "messages_per_token", "round_latency_ms")]
    if lk:
        cases = []
        for r in lk:
            c = r["label"].split()[-1]
            if c not in cases:
                cases.append(c)
        names = {"request_bytes_per_token": "request bytes/token", "response_bytes_per_token":
                 "response bytes/token", "messages_per_token": "messages/token",
                 "round_latency_ms": "p50 round latency"}
        series = {names[m]: [next((r["error"] * 100 for r in lk if r["metric"] == m and
                                   r["label"].split()[-1] == c), None) for c in cases] for m in names}
        bars("plan_check_lookup", "ultrashard plan vs bench lookup: prediction error (predicted/measured - 1)",
             "error %", cases, series)


def plot_models(rows):
    ms = [r for r in rows if "ms_per_token" in r]
    series = collections.defaultdict(list)
    for r in ms:
        series[r["model"]].append((r["batch"], r["ms_per_token"]))
    note = ""
    if ms:
        r0 = ms[0]
        note = (f"d_model {r0.get('d_model')}, {r0.get('n_layers')} layers, segment {r0.get('segment')}, "
                f"context {r0.get('context')}; threads {r0.get('threads')}")
    lines("models_ms_per_token", "Decoding time per token vs batch size", "batch (sequences)",
          "ms per token (log)", dict(series), logx=True, logy=True, note=note)
    ratios = collections.defaultdict(list)
    by = {(r["model"], r["batch"]): r["ms_per_token"] for r in ms}
    for (m, b), v in by.items():
        if m.startswith("ultramem"):
            continue
        um = by.get(("ultramem", b))
        if um:
            ratios[f"{m} / ultramem"].append((b, v / um))
    if ratios:
        lines("models_ratio", "Time per token relative to UltraMem (same run)", "batch (sequences)",
              "ratio", dict(ratios), logx=True, note=note)
    bytes_s = collections.defaultdict(list)
    for r in ms:
        if "bytes_read_per_token" in r:
            bytes_s[r["model"]].append((r["batch"], r["bytes_read_per_token"] / 2**20))
    if bytes_s:
        lines("models_bytes_per_token", "Parameter bytes read from memory per token", "batch (sequences)",
              "MiB per token (log)", dict(bytes_s), logx=True, logy=True, note=note)


def plot_scaling(rows):
    for kind in ("strong", "weak"):
        pts = [(r["ranks"], r["tokens_per_s"]) for r in rows
               if r.get("scaling") == kind and "tokens_per_s" in r]
        if pts:
            lines(f"scaling_{kind}", f"Distributed lookup throughput, {kind} scaling (one host, mpi, row push)",
                  "ranks", "tokens/s", {"measured": pts,
                                        "ideal (linear from 1 rank; this box has 2 cores)" if kind == "strong" else "ideal":
                                        [(n, min(pts)[1] * n) for n, _ in pts]}, logx=True, logy=True)
    for kind in ("lab-strong", "lab-weak"):
        sel = [r for r in rows if r.get("scaling") == kind and "tokens_per_s" in r]
        series = collections.defaultdict(list)
        for r in sel:
            series[r["setting"]].append((r["ranks"], r["tokens_per_s"]))
        if series:
            lines(kind.replace("-", "_").replace("lab", "scaling_lab"),
                  f"Lookup throughput over 1-3 namespace hosts (2 ranks each), tbf 1 Gbit, "
                  f"{kind.split('-')[1]} scaling", "ranks", "tokens/s (log)", dict(series), logy=True)
    for kind, title in (("variants", "Lookup variants at 4 ranks (ratio to row/push/mpi, same run)"),
                        ("lab", "3 namespace hosts, tbf 1 Gbit: tokens/s by relay delay")):
        sel = [r for r in rows if r.get("scaling") == kind and "tokens_per_s" in r]
        if not sel:
            continue
        if kind == "variants":
            cats = [r["variant"] for r in sel]
            bars("scaling_variants", title, "ratio vs baseline", cats,
                 {"tokens/s ratio": [r.get("ratio_vs_sweep_baseline") for r in sel]})
            bars("scaling_variants_bytes", "Lookup variants at 4 ranks: coordinator bytes and messages per token",
                 "per token (log)", cats,
                 {"bytes sent": [r.get("bytes_sent_per_token") or None for r in sel],
                  "bytes received": [r.get("bytes_recv_per_token") or None for r in sel],
                  "messages x 1000": [r["msgs_per_batch"] / r["tokens"] * 1000 if r.get("msgs_per_batch") else None
                                      for r in sel]}, logy=True)
            bars("scaling_variants_latency", "Lookup variants at 4 ranks: batch latency percentiles",
                 "ms (log)", cats, {"p50": [r.get("p50_ms") for r in sel],
                                    "p99": [r.get("p99_ms") for r in sel]}, logy=True)
        else:
            cats = sorted({f"{r['transport']} {r['mode']}" for r in sel})
            series = {s: [next((r["tokens_per_s"] for r in sel if r["setting"] == s and
                                f"{r['transport']} {r['mode']}" == c), None) for c in cats]
                      for s in sorted({r["setting"] for r in sel})}
            bars("scaling_lab", title, "tokens/s (log)", cats, series, logy=True)


PLOTTERS = {"peers": plot_peers, "plan_check": plot_plan_check, "models": plot_models,
            "scaling": plot_scaling}


def main():
    latest = load()
    if not latest:
        print(f"plot: no results in {RESULTS}", file=sys.stderr)
        return
    for bench, fn in PLOTTERS.items():
        if bench in latest:
            fn(latest[bench])
        else:
            print(f"plot: no '{bench}' results: skipped", file=sys.stderr)


if __name__ == "__main__":
    main()
