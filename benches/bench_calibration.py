#!/usr/bin/env python3
"""Calibration: assay's reliability tables, calibration metrics and isotonic fit against the usual
alternatives.

Usage::

    python benches/bench_calibration.py                    # 10M rows, best of 5
    python benches/bench_calibration.py --only isotonic    # just part 3 (1M rows)
    python benches/bench_calibration.py --write            # also write its section of RESULTS.md

Measured in one run, on the same data (``p`` uniform float64 scores, ``y ~ Bernoulli(p)`` as
int8, string slice column ``g`` with 10 values; one pyarrow Table built outside the timing):

1. ``reliability``: ``assay.reliability(table, n_bins=10, strategy="quantile")`` vs
   ``sklearn.calibration.calibration_curve(y, p, n_bins=10, strategy="quantile")`` (target
   >= 10x), and the same with ``strategy="uniform"``; the per-bin values are compared.
2. ``overhead``: ``assay.evaluate`` with the 15 default metrics plus the 12 calibration metrics vs
   the same call without them, with ``slices=["g"]`` and without slices (target < 20% more time).
3. ``isotonic``: ``assay.calibrate.Isotonic().fit`` vs
   ``sklearn.isotonic.IsotonicRegression(out_of_bounds="clip").fit`` on min(1M, --rows) rows (for
   information); the fitted maps are compared on a grid.

Every measurement is the best of ``--repeat`` runs after an untimed warm-up call (the two calls of
part 2 alternate, so that drift in the machine's speed hits both alike). assay runs with
its default thread count (all cores); scikit-learn runs single-threaded (OMP/MKL/OpenBLAS pools
pinned to 1 thread before NumPy is imported). ``--write`` replaces the section between
``<!-- bench_calibration -->`` and ``<!-- /bench_calibration -->`` in benches/RESULTS.md (appended
at the end if absent) and leaves the rest of the file as it is.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import datetime
import math
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

import benchlib
import numpy as np
import pyarrow as pa
import sklearn
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression

import assay

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- bench_calibration -->", "<!-- /bench_calibration -->"

SEED = 20240612
N_BINS = 10
N_SLICES = 10
ISO_ROWS = 1_000_000
PARTS = ("reliability", "overhead", "isotonic")
CAL = list(assay.CALIBRATION_METRICS)




def data(n: int, seed: int = SEED) -> pa.Table:
    """Perfectly calibrated scores: p ~ U(0, 1), y ~ Bernoulli(p); g uniform over g0..g9."""
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    y = (rng.random(n) < p).astype(np.int8)
    codes = rng.integers(0, N_SLICES, n, dtype=np.int32)
    names = pa.array([f"g{k}" for k in range(N_SLICES)], type=pa.string())
    g = pa.DictionaryArray.from_arrays(pa.array(codes), names).cast(pa.string())
    return pa.table({"y": pa.array(y), "p": pa.array(p), "g": g})



def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}x" if x >= 100 else f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


def skipped(what: str, err: BaseException) -> None:
    print(f"  *** {what}: assay side skipped ({type(err).__name__}: {err})", flush=True)


# --------------------------------------------------------------------------------------------
# 1. reliability tables


def overall_bins(rel) -> tuple[np.ndarray, np.ndarray, int]:
    """(mean_score, frac_positive) of the non-empty bins of an unsliced reliability table, in bin
    order, and the number of rows of the table."""
    import polars as pl

    if "slice" in rel.columns and rel["slice"].n_unique() > 1:
        rel = rel.filter(pl.col("slice") == "overall")
    ne = rel.filter(pl.col("count") > 0).sort("bin")
    return ne["mean_score"].to_numpy(), ne["frac_positive"].to_numpy(), rel.height


def bench_reliability(t: pa.Table, y: np.ndarray, p: np.ndarray, repeat: int, rows: list,
                      notes: list) -> None:
    small_y, small_p = y[:10_000], p[:10_000]
    for strategy, target, goal in (("quantile", ">= 10x", 10.0), ("uniform", "(info)", None)):
        print(f"[1] reliability, {N_BINS} {strategy} bins", flush=True)
        calibration_curve(small_y, small_p, n_bins=N_BINS, strategy=strategy)  # imports
        s, (prob_true, prob_pred) = benchlib.best_of(
            lambda st=strategy: calibration_curve(y, p, n_bins=N_BINS, strategy=st), repeat, warmup=True)
        print(f"  sklearn calibration_curve: {s:.4f}s", flush=True)
        a = None
        try:
            a, rel = benchlib.best_of(lambda st=strategy: assay.reliability(
                t, label="y", score="p", n_bins=N_BINS, strategy=st), repeat, warmup=True)
        except (AttributeError, ValueError) as e:
            skipped(f"assay.reliability({strategy})", e)
        peer = f'sklearn calibration_curve(strategy="{strategy}")'
        name = f"reliability table, {N_BINS} {strategy} bins"
        if a is None:
            rows.append((name, None, peer, s, None, target, None))
            continue
        print(f"  assay  reliability:       {a:.4f}s  -> {s / a:.1f}x", flush=True)
        rows.append((name, a, peer, s, s / a, target, None if goal is None else s / a >= goal))
        ms, fp, height = overall_bins(rel)
        if height != N_BINS or len(ms) != len(prob_pred):
            line = (f"{strategy}: !!! assay has {height} bins ({len(ms)} non-empty), sklearn "
                    f"{len(prob_pred)} non-empty bins")
        else:
            line = (f"{strategy} bins: max |assay - sklearn| over the {len(ms)} non-empty bins: "
                    f"mean_score {np.max(np.abs(ms - prob_pred)):.2e}, "
                    f"frac_positive {np.max(np.abs(fp - prob_true)):.2e}")
        print(f"  check  {line}", flush=True)
        notes.append(line)


# --------------------------------------------------------------------------------------------
# 2. overhead of the calibration metrics inside evaluate


def bench_overhead(t: pa.Table, repeat: int, rows: list, notes: list) -> None:
    base = list(assay.METRICS)  # the 15 defaults
    with_cal = base + CAL
    try:  # is the metric set supported? (tiny call, untimed)
        assay.evaluate(t.slice(0, 10_000), label="y", score="p", metrics=with_cal)
    except ValueError as e:
        skipped("calibration metrics in evaluate", e)
        return
    for slices, label in ((["g"], f"{N_SLICES} slices"), ((), "no slices")):
        print(f"[2] {len(base)} default metrics + {len(CAL)} calibration metrics, {label}",
              flush=True)
        kw = dict(label="y", score="p", slices=slices)
        # Alternate the two calls, so that drift in the machine's speed hits both alike.
        b = w = math.inf
        rep = None
        assay.evaluate(t, metrics=None, **kw)
        assay.evaluate(t, metrics=with_cal, **kw)
        for _ in range(repeat):
            b = min(b, benchlib.best_of(lambda kw=kw: assay.evaluate(t, metrics=None, **kw), 1)[0])
            tw, rep = benchlib.best_of(lambda kw=kw: assay.evaluate(t, metrics=with_cal, **kw), 1)
            w = min(w, tw)
        over = w / b - 1.0
        print(f"  assay  without {b:.4f}s, with {w:.4f}s: {over:+.1%}", flush=True)
        rows.append((f"evaluate: 15 defaults + 12 calibration metrics, {label}", w,
                     "same call, 15 defaults only", b, f"{over:+.1%}", "< +20%", over < 0.20))
        row = rep.table.row(0, named=True)  # the overall row
        line = (f"{label}, overall (perfectly calibrated data): " + ", ".join(
            f"{m} {row[m]:.4g}" if isinstance(row.get(m), float) else f"{m} {row.get(m)}"
            for m in ("ece", "ace", "smooth_ece", "calibration_slope", "calibration_intercept",
                      "oe_ratio")))
        print(f"  check  {line}", flush=True)
        notes.append(line)


# --------------------------------------------------------------------------------------------
# 3. isotonic fit


def bench_isotonic(y: np.ndarray, p: np.ndarray, repeat: int, rows: list, notes: list) -> None:
    m = len(p)
    print(f"[3] isotonic fit, {m:,} rows", flush=True)
    s, ir = benchlib.best_of(lambda: IsotonicRegression(out_of_bounds="clip").fit(p, y), repeat, warmup=True)
    print(f"  sklearn IsotonicRegression.fit: {s:.4f}s", flush=True)
    a, iso = benchlib.best_of(lambda: assay.calibrate.Isotonic().fit(p, y), repeat, warmup=True)
    print(f"  assay  calibrate.Isotonic.fit:  {a:.4f}s  -> {s / a:.1f}x", flush=True)
    rows.append((f"isotonic fit, {m:,} rows", a,
                 'sklearn IsotonicRegression(out_of_bounds="clip").fit', s, s / a, "(info)", None))
    grid = np.linspace(-0.01, 1.01, 10_001)
    line = (f"isotonic: max |assay - sklearn| of the fitted maps on {len(grid):,} points in "
            f"[-0.01, 1.01]: {np.max(np.abs(iso.transform(grid) - ir.predict(grid))):.2e}")
    print(f"  check  {line}", flush=True)
    notes.append(line)


# --------------------------------------------------------------------------------------------
# output



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000,
                    help="rows for parts 1-2 (default 10M); part 3 uses min(1M, rows)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per measurement; best kept")
    ap.add_argument("--only", default=",".join(PARTS),
                    help=f"comma list of parts to run: {','.join(PARTS)} (default all)")
    ap.add_argument("--write", action="store_true", help="write our section of RESULTS.md")
    args = ap.parse_args(argv)
    parts = [x.strip() for x in args.only.split(",") if x.strip()]
    bad = [x for x in parts if x not in PARTS]
    if bad or not parts:
        ap.error(f"--only takes a comma list of {', '.join(PARTS)}; got {args.only!r}")
    if args.rows < 10_000:
        ap.error("--rows must be at least 10000")
    repeat = max(1, args.repeat)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning)

    n = args.rows
    need_big = "reliability" in parts or "overhead" in parts
    n_data = n if need_big else min(n, ISO_ROWS)
    t0 = time.perf_counter()
    t = data(n_data)
    y, p = t["y"].to_numpy(), t["p"].to_numpy()
    ncores = benchlib.cores()
    threads = (f"assay with its default threads ({ncores} cores), scikit-learn single-threaded "
               "(OMP/MKL/OpenBLAS pinned to 1)")
    print(f"data: {n_data:,} rows in {time.perf_counter() - t0:.1f}s (untimed); {threads}; "
          f"best of {repeat} after a warm-up", flush=True)

    rows: list[tuple] = []
    notes: list[str] = []
    if "reliability" in parts:
        bench_reliability(t, y, p, repeat, rows, notes)
    if "overhead" in parts:
        bench_overhead(t, repeat, rows, notes)
    if "isotonic" in parts:
        m = min(n, ISO_ROWS)
        bench_isotonic(y[:m], p[:m], repeat, rows, notes)

    cmd = shlex.join(["python", "benches/bench_calibration.py",
                      *(sys.argv[1:] if argv is None else argv)])
    now = datetime.datetime.now(datetime.UTC)
    rows_used = "; ".join(
        f"{part}: {min(n, ISO_ROWS) if part == 'isotonic' else n:,} rows" for part in parts)
    lines = [
        f"## Calibration ({', '.join(parts)}; {now:%Y-%m-%d %H:%M} UTC)",
        "",
        f"- command: `{cmd}`",
        f"- machine: {ncores} cores (sched_getaffinity), {benchlib.cpu_model()}, "
        f"{platform.system()} {platform.release()}",
        f"- software: Python {platform.python_version()}, numpy {np.__version__}, pyarrow "
        f"{pa.__version__}, scikit-learn {sklearn.__version__}, assay "
        f"{getattr(assay, '__version__', '?')}",
        f"- {threads}; wall clock, best of {repeat} after an untimed warm-up call",
        f"- data: p ~ U(0, 1) float64, y ~ Bernoulli(p) int8, slice column g with {N_SLICES} "
        "string values (seeded); one pyarrow Table built outside the timing (scikit-learn gets "
        f"its NumPy columns); {rows_used}",
        "",
        "| benchmark | assay s | peer | peer s | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, a_s, peer, p_s, ratio, target, met in rows:
        r = ratio if isinstance(ratio, str) else fmt_ratio(ratio)
        ok = "-" if met is None else "yes" if met else "NO"
        lines.append(f"| {name} | {fmt_s(a_s)} | {peer} | {fmt_s(p_s)} | {r} | {target} | {ok} |")
    lines += ["", "`ratio` is peer seconds / assay seconds" + (
        "; for the evaluate rows it is the extra time of the call with the calibration metrics "
        "(`assay s`) over the same call without them (`peer s`)."
        if "overhead" in parts else ".")]
    if notes:
        lines += ["", "Checks (untimed):", ""] + [f"- {x}" for x in notes]
    text = "\n".join(lines)
    print()
    print(text)
    if args.write:
        benchlib.write_section(RESULTS, BEGIN, END, text)
        print(f"\nwrote the {BEGIN} section of {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
