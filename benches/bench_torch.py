#!/usr/bin/env python3
"""``assay.torch.Evaluator`` against the Rust engine and against torchmetrics, on the same
tensors in the same run: 100 slices x the default binary metrics (15), fed in batches.

Usage::

    python benches/bench_torch.py                  # 2M rows, CPU tensors, best of 3
    python benches/bench_torch.py --quick          # 200k rows, 1 repeat
    python benches/bench_torch.py --device cuda    # GPU tensors (torchmetrics on the GPU too)
    python benches/bench_torch.py --write          # also write the section of RESULTS.md

- ``Evaluator``: ``update`` per batch of 65,536 rows (slice codes as an integer tensor), then
  ``compute()`` (every default metric, exact ROC-AUC, 100 slices).
- the engine: ``assay.evaluate`` on the same rows as an Arrow table (the CPU path).
- torchmetrics, as its users write sliced metrics: one ``BinaryAccuracy``, ``BinaryF1Score``,
  ``BinaryAUROC`` and ``BinaryCalibrationError`` per slice, each updated per batch with the
  slice's rows (a boolean mask), then ``compute()``: 4 metrics, not 15.

Every Evaluator value is checked against the engine (counts exact, floats within 1e-9).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import platform
import shlex
import sys
from pathlib import Path

import benchlib
import numpy as np
import pyarrow as pa

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- bench_torch -->", "<!-- /bench_torch -->"
SEED = 20261206
N_SEGMENTS = 100
BATCH = 65_536


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="200k rows, 1 repeat")
    ap.add_argument("--no-torchmetrics", action="store_true")
    ap.add_argument("--write", action="store_true", help=f"write the section of {RESULTS.name}")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.repeat = 200_000, 1

    import torch

    import assay
    import assay.torch as at

    rng = np.random.default_rng(SEED)
    n = args.rows
    seg = rng.integers(0, N_SEGMENTS, n)
    y = (rng.random(n) < 0.3 + 0.002 * seg).astype(np.int64)
    p = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
    names = [f"s{i:03d}" for i in range(N_SEGMENTS)]
    table = pa.table({"y": y, "p": p, "seg": pa.DictionaryArray.from_arrays(
        pa.array(seg.astype(np.int32)), pa.array(names))})
    dev = torch.device(args.device)
    ty, tp, ts = (torch.as_tensor(a, device=dev) for a in (y, p, seg))
    spec = assay.Spec(label="y", score="p", slices=["seg"])

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def run_evaluator():
        ev = at.Evaluator(spec, device=dev, categories={"seg": names})
        for lo in range(0, n, BATCH):
            sl = slice(lo, lo + BATCH)
            ev.update(score=tp[sl], label=ty[sl], features={"seg": ts[sl]})
        sync()
        return ev.compute()

    def run_engine():
        return spec.evaluate(table)

    run_evaluator()
    ev_s, got = benchlib.best_of(run_evaluator, args.repeat)
    run_engine()
    en_s, want = benchlib.best_of(run_engine, args.repeat)
    worst = 0.0
    assert got.table["slice"].to_list() == want.table["slice"].to_list()
    assert got.table["n"].to_list() == want.table["n"].to_list()
    for c in got.table.columns:
        if got.table[c].dtype.is_float():
            for a, b in zip(got.table[c], want.table[c], strict=True):
                if (a is None) != (b is None):
                    print(f"VALIDATION FAILED: {c} null differs")
                    return 1
                if a is not None:
                    worst = max(worst, abs(a - b) / max(1.0, abs(b)))
    if worst > 1e-9:
        print(f"VALIDATION FAILED: largest relative difference {worst:.2e}")
        return 1
    n_metrics = len(spec.metrics)

    tm_s = None
    if not args.no_torchmetrics:
        from torchmetrics.classification import (
            BinaryAccuracy,
            BinaryAUROC,
            BinaryCalibrationError,
            BinaryF1Score,
        )

        def run_torchmetrics():
            per = [[m.to(dev) for m in (BinaryAccuracy(), BinaryF1Score(), BinaryAUROC(),
                                        BinaryCalibrationError(n_bins=15))]
                   for _ in range(N_SEGMENTS)]
            for lo in range(0, n, BATCH):
                sl = slice(lo, lo + BATCH)
                bp, by, bs = tp[sl], ty[sl], ts[sl]
                for g in range(N_SEGMENTS):
                    m = bs == g
                    for metric in per[g]:
                        metric.update(bp[m], by[m])
            out = [[float(metric.compute()) for metric in ms] for ms in per]
            sync()
            return out

        tm_rows = min(n, 500_000)  # the loop is slow: timed on the first rows, scaled
        full_n, n = n, tm_rows
        run_torchmetrics()
        tm_s, _ = benchlib.best_of(run_torchmetrics, 1)
        tm_s *= full_n / tm_rows
        n = full_n

    dev_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else benchlib.cpu_model()
    lines = [
        f"Sliced job on `{args.device}` tensors: {n:,} rows in batches of {BATCH:,}, "
        f"{N_SEGMENTS} slices, the {n_metrics} default binary metrics (exact ROC-AUC); "
        f"best of {args.repeat}.",
        "",
        "| what | seconds | rows/s | Evaluator is |",
        "|---|---|---|---|",
        f"| assay.torch.Evaluator (update + compute) | {ev_s:.3f} | {n / ev_s:.3g} | 1x |",
        f"| assay.evaluate (the Rust engine, Arrow input) | {en_s:.3f} | {n / en_s:.3g} | "
        f"{en_s / ev_s:.2f}x |",
    ]
    if tm_s is not None:
        lines.append(
            f"| torchmetrics, 4 metric objects per slice (accuracy, F1, AUROC, calibration "
            f"error), masked updates; timed on {min(n, 500_000):,} rows, scaled | {tm_s:.2f} | "
            f"{n / tm_s:.3g} | {tm_s / ev_s:.1f}x faster |")
    if dev.type != "cuda":
        lines += ["", "GPU targets (from device tensors: additive sliced metrics >= 2e9 rows/s, "
                  "exact ROC-AUC over 100 slices >= 3e8 rows/s, >= 10x torchmetrics on the same "
                  "GPU): not measured by this CPU run; run it with `--device cuda`."]
    lines += [
        "",
        f"Validation: every Evaluator value within {max(worst, 1e-16):.1e} (relative) of "
        "assay.evaluate; counts exact.",
        f"Machine: {dev_name}, {benchlib.cores()} cores; Python {platform.python_version()}, "
        f"torch {torch.__version__}, assay {assay.__version__}.",
        "Command: `" + " ".join(["python benches/bench_torch.py",
                                 *map(shlex.quote, sys.argv[1:])]) + "`",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        benchlib.write_section(RESULTS, BEGIN, END, "## torch path\n\n" + text)
        print(f"\nwrote the {BEGIN} section of {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
