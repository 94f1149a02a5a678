"""Bootstrap intervals: assay's single-pass Poisson bootstrap against the usual alternatives.

Usage::

    python benches/bench_bootstrap.py            # 1M rows, B = 1000
    python benches/bench_bootstrap.py --write    # also write its section of benches/RESULTS.md
    python benches/bench_bootstrap.py --coverage # + the long coverage study (1000 data sets)

Measured in one run, on the same data:

1. ROC-AUC with B = 1000 on 1M rows vs a naive loop of ``sklearn.metrics.roc_auc_score`` on
   resampled indices. The loop is timed with B = 20 and scaled linearly to 1000 (said in the
   table).
2. Additive metrics (accuracy, log loss, Brier, confusion counts) with B = 1000: row-replicates
   per second.
3. ``scipy.stats.bootstrap`` on the mean of 1M values (B = 1000, percentile) vs assay's
   bootstrap of ``base_rate``.
4. Peak resident memory of B = 1000 with 100 slices (``--rows`` rows; 10M with ``--big``).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import datetime
import math
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import scipy.stats as st
from sklearn.metrics import roc_auc_score

import assay


def data(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(np.int8)
    p = 1 / (1 + np.exp(-(-3 + 3 * y + rng.normal(0, 1.5, n))))
    seg = np.array([f"s{i:03d}" for i in range(100)])[rng.integers(0, 100, n)]
    return pa.table({"y": y, "p": p, "seg": seg})


def best(f, repeat=2):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def peak_memory_child(rows: int) -> float:
    """Peak resident memory (GiB) of B=1000 x 100 slices over `rows` rows, beyond the input:
    a child builds the data, then samples its own RSS every 5 ms while the job runs."""
    code = f"""
import os, sys, threading, time
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
from bench_bootstrap import data
import assay
t = data({rows})
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
base, peak, done = rss(), [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.005)
th = threading.Thread(target=sample); th.start()
assay.evaluate(t, label="y", score="p", slices=["seg"], bootstrap=1000)
done.set(); th.join()
print(base, peak[0])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    return (int(out[1]) - int(out[0])) / 2**30


def coverage_study(sets: int) -> list[str]:
    true_auc = st.norm.cdf(1 / math.sqrt(2))
    lines = []
    for method in ("percentile", "basic", "bca", "analytic"):
        hits = 0
        for k in range(sets):
            rng = np.random.default_rng(50_000 + k)
            y = (rng.random(2_000) < 0.3).astype(np.int8)
            s = rng.normal(0, 1, 2_000) + y
            rep = assay.evaluate({"y": y, "s": s}, label="y", score="s", metrics=["roc_auc"],
                                 ci=0.9, ci_method=method,
                                 bootstrap=None if method == "analytic" else 1000, seed=k)
            row = rep.table.row(0, named=True)
            hits += row["roc_auc_lo"] <= true_auc <= row["roc_auc_hi"]
        lines.append(f"| coverage of 90% ROC-AUC intervals, {method} | {hits / sets:.3f} "
                     f"({sets} data sets of 2000 rows, B=1000) |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--big", action="store_true", help="peak memory on 10M rows")
    ap.add_argument("--coverage", action="store_true")
    args = ap.parse_args()
    n = args.rows
    t = data(n)
    y, p = t["y"].to_numpy(), t["p"].to_numpy()
    rows: list[tuple[str, float, str, float, str]] = []

    # 1. ROC-AUC, B = 1000
    assay.evaluate(t.slice(0, 10_000), label="y", score="p", metrics=["roc_auc"], bootstrap=10)
    a = best(lambda: assay.evaluate(t, label="y", score="p", metrics=["roc_auc"],
                                    bootstrap=1000))
    rng = np.random.default_rng(0)
    idx = [rng.integers(0, n, n) for _ in range(20)]
    naive = best(lambda: [roc_auc_score(y[i], p[i]) for i in idx], repeat=1) * 1000 / 20
    rows.append(("ROC-AUC, B=1000", a, "sklearn roc_auc_score loop (B=20, x50)", naive,
                 ">= 300x"))

    # 2. additive metrics, B = 1000
    add = ["accuracy", "log_loss", "brier", "precision", "recall"]
    a2 = best(lambda: assay.evaluate(t, label="y", score="p", metrics=add, bootstrap=1000))
    rate = n * 1000 / a2

    # 3. scipy.stats.bootstrap on a mean
    yf = y.astype(np.float64)
    a3 = best(lambda: assay.evaluate(t, label="y", score="p", metrics=["base_rate"],
                                     bootstrap=1000))
    # batch=100 bounds scipy's memory (it would otherwise allocate B x N at once).
    s3 = best(lambda: st.bootstrap((yf,), np.mean, n_resamples=1000, method="percentile",
                                   batch=100, random_state=np.random.default_rng(0)), repeat=1)
    rows.append(("base_rate, B=1000", a3, "scipy.stats.bootstrap mean, B=1000 (batch=100)", s3,
                 "(info)"))

    mem_rows = 10_000_000 if args.big else n
    mem = peak_memory_child(mem_rows)

    lines = [
        f"## Bootstrap ({n:,} rows; {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"command: `python benches/bench_bootstrap.py{' --big' if args.big else ''}"
        f"{' --coverage' if args.coverage else ''}`; assay with default threads "
        f"({os.cpu_count()} cores), peers single-threaded.",
        "",
        "| benchmark | assay s | peer | peer s | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for name, a_s, peer, p_s, target in rows:
        lines.append(f"| {name} | {a_s:.3g} | {peer} | {p_s:.3g} | {p_s / a_s:.1f}x | {target} |")
    lines += [
        "",
        "| measurement | value |",
        "|---|---|",
        f"| additive metrics ({', '.join(add)}), B=1000 | {a2:.3g} s = {rate:.3g} "
        "row-replicates/s (target >= 1e9) |",
        f"| peak memory beyond the input, B=1000, 100 slices, {mem_rows:,} rows | {mem:.2f} GiB "
        "(target < 2 GiB) |",
    ]
    if args.coverage:
        lines += coverage_study(1000)
    text = "\n".join(lines)
    print(text)
    if args.write:
        # Our section of RESULTS.md starts at the marker (bench_evaluate.py keeps it).
        path = os.path.join(os.path.dirname(__file__), "RESULTS.md")
        marker = "<!-- bench_bootstrap -->"
        old = open(path).read() if os.path.exists(path) else ""
        head = old[: old.index(marker)] if marker in old else old
        # Sections written by later benches (bench_calibration.py) follow ours: keep them.
        later = [old.index(m) for m in ("<!-- bench_calibration -->", "<!-- bench_discovery -->")
                 if m in old]
        tail = old[min(later):] if later else ""
        with open(path, "w") as f:
            f.write(head.rstrip("\n") + "\n\n" + marker + "\n" + text + "\n")
            if tail:
                f.write("\n" + tail)


if __name__ == "__main__":
    main()
