"""The counts-only pass against the machine's read bandwidth over the same bytes.

A counts-only job (accuracy, precision, recall, ... at a threshold: no logarithms, no sort)
reads each row's label and score once and bumps four counters. Its speed limit is reading the
columns. This bench times it on an int8 label and a float64 score column (9 bytes a row), next
to a NumPy sum of the same two columns in the same run (one thread; NumPy's sum reads each
byte once and does one add per value), and reports assay's bytes per second per core as a
fraction of that read bandwidth::

    python benches/bench_bandwidth.py              # 100M rows, best of 3
    python benches/bench_bandwidth.py --write      # ... and record it in RESULTS.md

Loading is not timed: the columns are made in memory, once. assay runs with one thread (the
per-core figure) and with all cores.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import platform  # noqa: E402

import benchlib  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

import assay  # noqa: E402

COUNTS = ["base_rate", "prediction_rate", "accuracy", "balanced_accuracy", "precision",
          "recall", "specificity", "fpr", "fnr", "f1", "mcc"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="write our section of RESULTS.md")
    args = ap.parse_args()
    n = args.rows
    rng = np.random.default_rng(7)
    y = (rng.random(n) < 0.1).astype(np.int8)
    p = rng.random(n)
    p[y == 1] = np.sqrt(p[y == 1])  # informative: positives score higher
    table = pa.table({"y": y, "p": p})
    nbytes = y.nbytes + p.nbytes
    cores = benchlib.cores()

    def numpy_read() -> tuple[int, float]:
        return int(y.sum(dtype=np.int64)), float(p.sum())

    t_np, _ = benchlib.best_of(numpy_read, args.repeat, warmup=True)
    t_1, rep = benchlib.best_of(
        lambda: assay.evaluate(table, label="y", score="p", metrics=COUNTS, n_threads=1),
        args.repeat, warmup=True)
    t_all, rep_all = benchlib.best_of(
        lambda: assay.evaluate(table, label="y", score="p", metrics=COUNTS), args.repeat)

    # Validation (untimed): the counts against NumPy's.
    pred = p >= 0.5
    acc = float(np.mean(pred == (y == 1)))
    prec = float(np.sum(pred & (y == 1)) / np.sum(pred))
    got = rep.table.row(0, named=True)
    got_all = rep_all.table.row(0, named=True)
    ok = (abs(got["accuracy"] - acc) <= 1e-12 and abs(got["precision"] - prec) <= 1e-12
          and all(got[m] == got_all[m] for m in COUNTS))

    bw = nbytes / t_np
    per_core_1 = nbytes / t_1
    per_core_all = nbytes / t_all / cores
    lines = [
        f"## Counts-only pass vs read bandwidth (issue 22; "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"- command: `python benches/bench_bandwidth.py{' --write' if args.write else ''}`",
        f"- machine: {cores} cores, {benchlib.cpu_model()}; Python {platform.python_version()}, "
        f"numpy {np.__version__}, assay {assay.__version__}",
        f"- data: {n:,} rows in memory, int8 label + float64 score ({nbytes / 1e9:.2f} GB); "
        f"metrics: {', '.join(COUNTS)} at threshold 0.5; best of {args.repeat}",
        "",
        "| what | seconds | rows/s | GB/s | GB/s per core | fraction of the read bandwidth |",
        "|---|---|---|---|---|---|",
        f"| NumPy sum of both columns (1 thread): the read bandwidth | {t_np:.3f} | "
        f"{n / t_np:.3g} | {bw / 1e9:.2f} | {bw / 1e9:.2f} | 1 |",
        f"| assay counts-only, 1 thread | {t_1:.3f} | {n / t_1:.3g} | {per_core_1 / 1e9:.2f} | "
        f"{per_core_1 / 1e9:.2f} | {per_core_1 / bw:.0%} |",
        f"| assay counts-only, {cores} threads | {t_all:.3f} | {n / t_all:.3g} | "
        f"{nbytes / t_all / 1e9:.2f} | {per_core_all / 1e9:.2f} | {per_core_all / bw:.0%} |",
        "",
        f"Target (issue 22): >= 25% of the read bandwidth per core: "
        f"{'met' if per_core_1 / bw >= 0.25 else 'missed'} with one thread "
        f"({per_core_1 / bw:.0%}), {'met' if per_core_all / bw >= 0.25 else 'missed'} per "
        f"core with {cores} ({per_core_all / bw:.0%}).",
        f"Validation: accuracy and precision equal NumPy's to 1e-12, and the 1-thread and "
        f"{cores}-thread reports are equal: {'yes' if ok else '**NO**'}.",
    ]
    benchlib.publish("\n".join(lines), "bench_bandwidth", args.write)
    if not ok:
        raise SystemExit("validation failed")


if __name__ == "__main__":
    main()
