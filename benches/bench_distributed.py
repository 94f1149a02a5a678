#!/usr/bin/env python3
"""``assay.spark.evaluate`` and ``assay.ray.evaluate`` against the floor of each engine (moving
the rows to Python and counting them), against the way their users compute sliced metrics
today (a grouped pandas UDF with scikit-learn), and against ``assay.evaluate`` in one process,
on the same Parquet file: 100 slices x the default binary metrics (15, exact ROC-AUC).

Usage::

    python benches/bench_distributed.py                      # 10M rows, best of 3
    python benches/bench_distributed.py --quick              # 300k rows, 1 repeat
    python benches/bench_distributed.py --engines spark      # only Spark (or: ray)
    python benches/bench_distributed.py --write              # also write the section of RESULTS.md

The data is the ``bench_evaluate.py`` table (seed 20240611; label ``y`` int8, score ``p``
float64, string column ``seg`` with 100 values; the weight column is left out), written once as
Parquet (zstd, 16 row groups, at least 65,536 rows each) to ``benches/_data/dist_n<rows>_*``
(gitignored). Both engines and the in-process runs read that file.

- in process: ``spec.evaluate(path)`` (the Parquet read included) and ``spec.evaluate(table)``
  (the table read beforehand), default threads.
- Spark ``local[2]`` (``spark.ui.enabled=false``, ``spark.driver.memory=8g``, everything else
  default, the Parquet read with Spark's default partitioning):
  ``assay.spark.evaluate(spark.read.parquet(path), spec)``; the floor, a ``mapInArrow`` over
  the three columns that only counts each partition's rows, collected to the driver;
  (a) ``groupBy("seg").applyInPandas`` computing the 15 metrics of each slice with
  scikit-learn; (b) ``pyspark.mllib.evaluation.BinaryClassificationMetrics`` on an RDD of
  (score, label) pairs: one global ROC-AUC, for reference.
- Ray (``ray.init(num_cpus=2)``, ``ray.data.read_parquet(path)`` with its default blocks):
  ``assay.ray.evaluate``; the floor, a ``map_batches(batch_format="pyarrow",
  batch_size=None)`` that only counts each block's rows, collected to the driver;
  ``groupby("seg").map_groups(batch_format="pandas")`` computing the 15 metrics with
  scikit-learn.

The scikit-learn metrics: ``accuracy_score``, ``balanced_accuracy_score``, ``precision_score``,
``recall_score``, ``recall_score(pos_label=0)`` (specificity), ``f1_score``,
``matthews_corrcoef``, ``roc_auc_score``, ``average_precision_score``, ``log_loss``,
``brier_score_loss`` (11 scikit-learn functions), ``confusion_matrix`` for fpr and fnr, and NumPy
means for the base and prediction rates: all 15.

Timings are wall clock, best of ``--repeat`` after an untimed warm-up run; the floor and the
assay engine alternate within each repeat. Building the Spark/Ray DataFrame (``read.parquet``)
is inside each timed call. The scikit-learn and mllib paths run once (warmed up on a small
file); when more than 2M rows would take them more than ~3 minutes (estimated from a run on
the first 1M rows), or with ``--peer-rows N``, they are timed on the first rows (written as
their own Parquet file the same way) and scaled linearly to ``--rows``, which the output says.

Checks (untimed, exit status 1 on a failure): each engine's report equals the in-process
report on the same file (slices and counts exact, floats within 1e-12 * max(1, |x|)); the
scikit-learn values of every slice equal assay's within 1e-9 * max(1, |x|); mllib's ROC-AUC
(pyspark's ``BinaryClassificationMetrics`` downsamples the ROC curve to 1,000 bins) is within
1e-4 of assay's overall one, and, computed exactly (``numBins=0``, through the JVM, on the
first 20,000 rows), within 1e-9. ``--write`` replaces the section between
``<!-- bench_distributed -->`` and ``<!-- /bench_distributed -->`` in benches/RESULTS.md
(appended at the end if absent).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import gc
import math
import platform
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from bench_evaluate import SEED, THRESHOLD, generate
from bench_evaluate import data_path as evaluate_data_path

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "_data"
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- bench_distributed -->", "<!-- /bench_distributed -->"
DATA_VERSION = 1  # bump when the file layout changes, to invalidate the cache
COLS = ["y", "p", "seg"]
N_ROW_GROUPS = 16
MIN_ROW_GROUP = 65_536
WARM_ROWS = 20_000  # the file the scikit-learn and mllib paths warm up on
PROBE_ROWS = 1_000_000  # the slow paths are first timed on this many rows ...
PEER_BUDGET_S = 180.0  # ... and only run on all rows when that would take less than this
RTOL_ENGINE = 1e-12  # engine report vs in-process report
RTOL_PEER = 1e-9  # scikit-learn / exact mllib vs assay
RTOL_MLLIB = 1e-4  # mllib's default, downsampled ROC curve vs assay's exact ROC-AUC
ENGINES = ("spark", "ray")
SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.driver.memory": "8g",
    "spark.ui.showConsoleProgress": "false",  # no progress bars in the output
}
SK_METRICS = ["base_rate", "prediction_rate", "accuracy", "balanced_accuracy", "precision",
              "recall", "specificity", "fpr", "fnr", "f1", "mcc", "roc_auc",
              "average_precision", "log_loss", "brier"]


# --------------------------------------------------------------------------------------------
# data


def row_group_rows(rows: int) -> int:
    return max(MIN_ROW_GROUP, math.ceil(rows / N_ROW_GROUPS))


def dist_path(rows: int, head: int | None = None) -> Path:
    tail = "" if head is None else f"_head{head}"
    return DATA_DIR / f"dist_n{rows}_seed{SEED}_v{DATA_VERSION}{tail}.parquet"


def _write(table: pa.Table, path: Path) -> None:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, row_group_size=row_group_rows(table.num_rows),
                   compression="zstd")
    tmp.replace(path)


def data_file(rows: int, head: int | None = None) -> Path:
    """The Parquet file of the first ``head`` (default all) of ``rows`` benchmark rows,
    written on first use (from bench_evaluate's cached table when there is one)."""
    path = dist_path(rows, head)
    if path.exists():
        return path
    full = dist_path(rows)
    if full.exists():
        table = pq.read_table(full)
    else:
        cached = evaluate_data_path(rows)
        table = (pq.read_table(cached) if cached.exists() else generate(rows)).select(COLS)
        _write(table, full)
    if head is not None:
        _write(table.slice(0, head), path)
    return path


def describe(path: Path) -> str:
    md = pq.ParquetFile(path).metadata
    return (f"{md.num_row_groups} row groups of up to {md.row_group(0).num_rows:,} rows, "
            f"{path.stat().st_size / 2**20:.1f} MiB")


# --------------------------------------------------------------------------------------------
# scikit-learn, as the pandas UDFs run it (defined here so that Spark and Ray ship it by value)


def sk_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The 15 default metrics of one slice, one scikit-learn (or NumPy) call each."""
    from sklearn import metrics as skm

    pred = (p >= THRESHOLD).astype(np.int8)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    both = 0 < int(y.sum()) < len(y)
    out = {
        "base_rate": float(np.mean(y)),
        "prediction_rate": float(np.mean(pred)),
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, zero_division=np.nan),
        "recall": skm.recall_score(y, pred, zero_division=np.nan),
        "specificity": skm.recall_score(y, pred, pos_label=0, zero_division=np.nan),
        "fpr": fp / (fp + tn) if fp + tn else math.nan,
        "fnr": fn / (fn + tp) if fn + tp else math.nan,
        "f1": skm.f1_score(y, pred, zero_division=np.nan),
        "mcc": skm.matthews_corrcoef(y, pred),
        "roc_auc": skm.roc_auc_score(y, p) if both else math.nan,
        "average_precision": skm.average_precision_score(y, p) if both else math.nan,
        "log_loss": skm.log_loss(y, p, labels=[0, 1]),
        "brier": skm.brier_score_loss(y, p),
    }
    return {k: float(v) for k, v in out.items()}


def sk_slice(pdf: Any) -> Any:
    """The grouped UDF: one slice's rows (pandas) in, one row of metrics out."""
    import pandas as pd

    row = {"seg": pdf["seg"].iloc[0], "n": len(pdf),
           **sk_metrics(pdf["y"].to_numpy(), pdf["p"].to_numpy())}
    return pd.DataFrame([row])


SK_SCHEMA = "seg string, n long, " + ", ".join(f"{m} double" for m in SK_METRICS)


def sk_rows(records: list[dict]) -> dict[str, dict]:
    return {r["seg"]: r for r in records}


# --------------------------------------------------------------------------------------------
# timing and checks


def alternate(fns: dict[str, Callable[[], Any]], repeat: int) -> tuple[dict[str, float],
                                                                         dict[str, Any]]:
    """Best wall seconds of each function over ``repeat`` rounds (one call of each per round,
    in turn, after one untimed call of each), and each one's last result."""
    for f in fns.values():
        f()
    best = dict.fromkeys(fns, math.inf)
    out: dict[str, Any] = {}
    for _ in range(repeat):
        for k, f in fns.items():
            gc.collect()
            t0 = time.perf_counter()
            out[k] = f()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best, out


def slow_path(run: Callable[[Path], Any], n: int, peer_rows: int | None,
              label: str) -> tuple[float, int, Any]:
    """(seconds for ``n`` rows, rows actually run, result) of a slow peer: one run, on all rows
    or (``peer_rows``, or when all rows would exceed the budget) on the first rows, scaled."""
    run(data_file(n, min(n, WARM_ROWS)))  # warm-up: imports, workers
    if peer_rows is None and n > 2 * PROBE_ROWS:
        t0 = time.perf_counter()
        out = run(data_file(n, PROBE_ROWS))
        secs = time.perf_counter() - t0
        est = secs * n / PROBE_ROWS
        print(f"    {label}: {secs:.2f}s on {PROBE_ROWS:,} rows; {n:,} rows estimated at "
              f"{est:.0f}s", flush=True)
        if est > PEER_BUDGET_S:
            return est, PROBE_ROWS, out
    rows = n if peer_rows is None or peer_rows >= n else peer_rows
    gc.collect()
    t0 = time.perf_counter()
    out = run(data_file(n, None if rows == n else rows))
    secs = time.perf_counter() - t0
    print(f"    {label}: {secs:.2f}s on {rows:,} rows", flush=True)
    return secs * n / rows, rows, out


class Checks:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failed = False

    def note(self, ok: bool, text: str) -> None:
        self.failed |= not ok
        line = text if ok else f"**FAILED**: {text}"
        self.lines.append(line)
        print(("    check: " if ok else "!!! ") + line, flush=True)


def close(a: float | None, b: float | None, rtol: float) -> tuple[bool, float]:
    """(a equals b within rtol * max(1, |b|) (null == null, NaN == NaN), the difference)."""
    if a is None or b is None:
        return a is None and b is None, 0.0
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b), 0.0
    d = abs(a - b) / max(1.0, abs(b))
    return d <= rtol, d


def compare_reports(got: Any, want: Any) -> tuple[bool, float, str]:
    """(equal, largest relative difference, what differs) of two reports' tables."""
    g, w = got.table, want.table
    if g.columns != w.columns or g.height != w.height:
        return False, math.inf, f"shape {g.shape} {g.columns} vs {w.shape} {w.columns}"
    worst, same, total = 0.0, 0, 0
    for c in w.columns:
        if g[c].dtype.is_float():
            for a, b in zip(g[c].to_list(), w[c].to_list(), strict=True):
                ok, d = close(a, b, RTOL_ENGINE)
                if not ok:
                    return False, d, f"{c}: {a!r} vs {b!r}"
                worst = max(worst, d)
                same += a == b or (a is not None and b is not None and a != a and b != b)
                total += 1
        elif g[c].to_list() != w[c].to_list():
            return False, math.inf, f"column {c} differs"
    return True, worst, f"{same:,} of {total:,} floats bit-identical"


def compare_sklearn(rows: dict[str, dict], want: Any) -> tuple[bool, float, str]:
    """scikit-learn's per-slice rows against the slice rows of an assay report."""
    ref = {r["seg"]: r for r in want.table.iter_rows(named=True) if r["seg"] is not None}
    if set(rows) != set(ref):
        return False, math.inf, f"{len(rows)} slices vs assay's {len(ref)}"
    worst = 0.0
    for seg, r in rows.items():
        if r["n"] != ref[seg]["n"]:
            return False, math.inf, f"slice {seg}: n {r['n']} vs {ref[seg]['n']}"
        for m in SK_METRICS:
            ok, d = close(r[m], ref[seg][m], RTOL_PEER)
            if not ok:
                return False, d, f"slice {seg} {m}: {r[m]!r} vs assay {ref[seg][m]!r}"
            worst = max(worst, d)
    return True, worst, f"{len(rows)} slices x {len(SK_METRICS)} metrics"


# --------------------------------------------------------------------------------------------
# Spark


def count_partition(batches: Any) -> Any:
    """The Spark floor's task: the rows and batches of its partition, nothing else."""
    n = k = 0
    for b in batches:
        n += b.num_rows
        k += 1
    yield pa.RecordBatch.from_pydict({"n": [n], "batches": [k]})


def run_spark(args: Any, spec: Any, ref: dict[Path, Any], path: Path, checks: Checks,
              timings: list[tuple[str, str, float, str]]) -> dict[str, Any]:
    import pyspark
    from pyspark import SparkContext
    from pyspark.mllib.evaluation import BinaryClassificationMetrics
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    import assay.spark as aspark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    n = args.rows
    t0 = time.perf_counter()
    builder = SparkSession.builder.master("local[2]").appName("bench_distributed")
    for k, v in SPARK_CONF.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    java = spark.sparkContext._jvm.java.lang.System.getProperty("java.version")
    info: dict[str, Any] = {"version": f"{pyspark.__version__} (Java {java})"}
    try:
        parts = spark.read.parquet(str(path)).rdd.getNumPartitions()
        print(f"[spark] pyspark {info['version']}, local[2], started in "
              f"{time.perf_counter() - t0:.1f}s (untimed); the file reads as {parts} "
              "partitions", flush=True)

        def floor() -> list[Any]:
            df = spark.read.parquet(str(path)).select(*COLS)
            return df.mapInArrow(count_partition, "n long, batches long").collect()

        def engine() -> Any:
            return aspark.evaluate(spark.read.parquet(str(path)), spec)

        best, out = alternate({"floor": floor, "engine": engine}, args.repeat)
        counted = sum(r["n"] for r in out["floor"])
        batches = sum(r["batches"] for r in out["floor"])
        print(f"    floor {best['floor']:.3f}s ({counted:,} rows in {len(out['floor'])} "
              f"partitions, {batches:,} Arrow batches); assay.spark {best['engine']:.3f}s",
              flush=True)
        checks.note(counted == n, f"Spark floor counted {counted:,} rows of {n:,}")
        ok, worst, what = compare_reports(out["engine"], ref[path])
        checks.note(ok, f"assay.spark report vs assay.evaluate: max relative difference "
                        f"{worst:.1e} ({what})")
        info.update(parts=parts, batches=batches)

        def udf_path(p: Path) -> list[dict]:
            df = spark.read.parquet(str(p))
            rows = df.groupBy("seg").applyInPandas(sk_slice, SK_SCHEMA).collect()
            return [r.asDict() for r in rows]

        sk_s, sk_n, sk_out = slow_path(udf_path, n, args.peer_rows, "applyInPandas")
        ok, worst, what = compare_sklearn(sk_rows(sk_out), ref[data_file(n, _head(n, sk_n))])
        checks.note(ok, f"Spark applyInPandas scikit-learn vs assay: max relative difference "
                        f"{worst:.1e} ({what})")

        def mllib_path(p: Path, exact: bool = False) -> tuple[float, int]:
            pairs = spark.read.parquet(str(p)).select(F.col("p"), F.col("y").cast("double"))
            metrics = BinaryClassificationMetrics(pairs.rdd.map(lambda r: (r[0], r[1])))
            if exact:  # the same pairs without the curve's downsampling (JVM only)
                jvm = spark.sparkContext._jvm
                model = jvm.org.apache.spark.mllib.evaluation.BinaryClassificationMetrics(
                    metrics._java_model.scoreAndLabels(), 0)
                auc, bins = model.areaUnderROC(), 0
                model.unpersist()
            else:
                auc, bins = metrics.areaUnderROC, int(metrics._java_model.numBins())
            metrics.unpersist()
            return auc, bins

        ml_s, ml_n, (ml_auc, ml_bins) = slow_path(mllib_path, n, args.peer_rows, "mllib")
        want = ref[data_file(n, _head(n, ml_n))].table.row(0, named=True)["roc_auc"]
        ok, d = close(ml_auc, want, RTOL_MLLIB)
        checks.note(ok, f"Spark mllib areaUnderROC vs assay's overall roc_auc: difference "
                        f"{d:.1e} (pyspark's BinaryClassificationMetrics downsamples the ROC "
                        f"curve to numBins={ml_bins}, so it is not exact; tolerance "
                        f"{RTOL_MLLIB:g})")
        small = data_file(n, min(n, WARM_ROWS))
        exact_auc, _ = mllib_path(small, exact=True)
        ok, d = close(exact_auc, ref[small].table.row(0, named=True)["roc_auc"], RTOL_PEER)
        checks.note(ok, f"Spark mllib areaUnderROC with numBins=0 (exact, through the JVM) vs "
                        f"assay on the first {min(n, WARM_ROWS):,} rows: difference {d:.1e}")

        eng = best["engine"]
        where = f"Spark local[2], {parts} partition{'s' * (parts != 1)}"
        timings += [
            (where, "floor: mapInArrow counting each partition's rows, collected",
             best["floor"], f"assay.spark is {eng / best['floor']:.2f}x this"),
            (where, "assay.spark.evaluate(spark.read.parquet(path), spec)", eng, "1x"),
            (where, "groupBy(\"seg\").applyInPandas, scikit-learn, 15 metrics"
             + _scaled(sk_n, n), sk_s, f"assay.spark is {sk_s / eng:.1f}x faster"),
            (where, "mllib BinaryClassificationMetrics (RDD of (score, label)), one global "
             f"ROC-AUC (numBins={ml_bins})" + _scaled(ml_n, n), ml_s, f"assay.spark is {ml_s / eng:.1f}x faster"),
        ]
        info.update(floor=best["floor"], engine=eng, peer=sk_s)
    finally:
        spark.stop()
        _stop_spark_jvm(SparkContext)
    return info


def _stop_spark_jvm(SparkContext: Any) -> None:
    """Ends the JVM that pyspark started (it would otherwise live until this process exits):
    its gateway server exits when its stdin closes."""
    gw = getattr(SparkContext, "_gateway", None)
    proc = getattr(gw, "proc", None)
    try:
        if gw is not None:
            gw.shutdown()
        if proc is not None:
            proc.stdin.close()
            proc.wait(timeout=60)
    except Exception as e:  # best effort: the JVM ends with this process anyway
        print(f"    (the Spark JVM did not stop cleanly: {e})", flush=True)
    SparkContext._gateway = None
    SparkContext._jvm = None


# --------------------------------------------------------------------------------------------
# Ray


def count_block(block: pa.Table) -> pa.Table:
    """The Ray floor's task: the rows of its block, nothing else."""
    return pa.table({"n": pa.array([block.num_rows], pa.int64())})


def run_ray(args: Any, spec: Any, ref: dict[Path, Any], path: Path, checks: Checks,
            timings: list[tuple[str, str, float, str]]) -> dict[str, Any]:
    import logging

    import ray

    import assay.ray as aray

    n = args.rows
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             logging_level=logging.ERROR, log_to_driver=False)
    info: dict[str, Any] = {"version": ray.__version__}
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.enable_auto_log_stats = False
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
        print(f"[ray] ray {ray.__version__}, num_cpus=2, started in "
              f"{time.perf_counter() - t0:.1f}s (untimed)", flush=True)

        def floor() -> list[int]:
            ds = ray.data.read_parquet(str(path)).select_columns(COLS)
            counts = ds.map_batches(count_block, batch_format="pyarrow", batch_size=None,
                                    zero_copy_batch=True)
            return [c for b in counts.iter_batches(batch_format="pyarrow", batch_size=None)
                    for c in b.column("n").to_pylist()]

        def engine() -> Any:
            return aray.evaluate(ray.data.read_parquet(str(path)), spec)

        best, out = alternate({"floor": floor, "engine": engine}, args.repeat)
        counted, blocks = sum(out["floor"]), len(out["floor"])
        print(f"    floor {best['floor']:.3f}s ({counted:,} rows in {blocks} blocks); "
              f"assay.ray {best['engine']:.3f}s", flush=True)
        checks.note(counted == n, f"Ray floor counted {counted:,} rows of {n:,}")
        ok, worst, what = compare_reports(out["engine"], ref[path])
        checks.note(ok, f"assay.ray report vs assay.evaluate: max relative difference "
                        f"{worst:.1e} ({what})")

        def groups_path(p: Path) -> list[dict]:
            ds = ray.data.read_parquet(str(p))
            return ds.groupby("seg").map_groups(sk_slice, batch_format="pandas").take_all()

        sk_s, sk_n, sk_out = slow_path(groups_path, n, args.peer_rows, "map_groups")
        ok, worst, what = compare_sklearn(sk_rows(sk_out), ref[data_file(n, _head(n, sk_n))])
        checks.note(ok, f"Ray map_groups scikit-learn vs assay: max relative difference "
                        f"{worst:.1e} ({what})")

        eng = best["engine"]
        where = f"Ray, num_cpus=2, {blocks} block{'s' * (blocks != 1)}"
        timings += [
            (where, "floor: map_batches(pyarrow, batch_size=None) counting each block's rows, "
             "collected", best["floor"], f"assay.ray is {eng / best['floor']:.2f}x this"),
            (where, "assay.ray.evaluate(ray.data.read_parquet(path), spec)", eng, "1x"),
            (where, "groupby(\"seg\").map_groups(batch_format=\"pandas\"), scikit-learn, 15 "
             "metrics" + _scaled(sk_n, n), sk_s, f"assay.ray is {sk_s / eng:.1f}x faster"),
        ]
        info.update(blocks=blocks, floor=best["floor"], engine=eng, peer=sk_s)
    finally:
        ray.shutdown()
    return info


# --------------------------------------------------------------------------------------------
# main


def _head(n: int, rows: int) -> int | None:
    return None if rows >= n else rows


def _scaled(rows: int, n: int) -> str:
    return "" if rows >= n else f"; timed on the first {rows:,} rows, scaled x{n / rows:g}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="300k rows, 1 repeat")
    ap.add_argument("--engines", default=",".join(ENGINES),
                    help="comma-separated: spark, ray (default both)")
    ap.add_argument("--peer-rows", type=int, default=None,
                    help="time the scikit-learn and mllib paths on the first N rows, scaled")
    ap.add_argument("--write", action="store_true", help=f"write the section of {RESULTS.name}")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.repeat = 300_000, 1
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not engines or any(e not in ENGINES for e in engines):
        ap.error(f"--engines takes a comma-separated subset of {', '.join(ENGINES)}")
    if args.rows < WARM_ROWS:
        ap.error(f"--rows must be at least {WARM_ROWS:,}")
    if args.peer_rows is not None and args.peer_rows < WARM_ROWS:
        ap.error(f"--peer-rows must be at least {WARM_ROWS:,}")
    args.repeat = max(1, args.repeat)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)

    import assay

    n = args.rows
    t0 = time.perf_counter()
    path = data_file(n)
    print(f"data: {n:,} rows, {path.relative_to(HERE.parent)} ({describe(path)}), ready in "
          f"{time.perf_counter() - t0:.1f}s", flush=True)
    spec = assay.Spec(label="y", score="p", slices=["seg"])

    # in process, before any engine starts; the reference reports of every file used
    table = pq.read_table(path).combine_chunks()
    best, out = alternate({"path": lambda: spec.evaluate(str(path)),
                           "table": lambda: spec.evaluate(table)}, args.repeat)
    table = None  # not needed past here
    print(f"[in process] assay.evaluate(path) {best['path']:.3f}s, (table) "
          f"{best['table']:.3f}s", flush=True)
    checks = Checks()
    ok, worst, what = compare_reports(out["path"], out["table"])
    checks.note(ok, f"assay.evaluate(path) vs (table): max relative difference {worst:.1e}")

    class Refs(dict):
        def __missing__(self, p: Path) -> Any:
            self[p] = spec.evaluate(str(p))
            return self[p]

    ref = Refs({path: out["table"]})
    inproc = {"path": best["path"], "table": best["table"]}
    timings: list[tuple[str, str, float, str]] = []
    infos: dict[str, dict[str, Any]] = {}
    if "spark" in engines:
        infos["spark"] = run_spark(args, spec, ref, path, checks, timings)
    if "ray" in engines:
        infos["ray"] = run_ray(args, spec, ref, path, checks, timings)
    for key, what in (("table", "assay.evaluate(table): the table read beforehand"),
                      ("path", "assay.evaluate(path): the Parquet read included")):
        slower = ", ".join(f"assay.{e} is {i['engine'] / inproc[key]:.2f}x this"
                           for e, i in infos.items())
        timings.insert(0, ("in process", what, inproc[key], slower))

    peers = {"spark": "applyInPandas", "ray": "map_groups"}
    lines = [
        f"Sliced job on one Parquet file: {n:,} rows ({describe(path)}; columns y int8, "
        f"p float64, seg string), 100 slices, the {len(spec.metrics)} default binary metrics "
        f"(exact ROC-AUC); best of {args.repeat} after a warm-up run (scikit-learn and mllib: "
        "1 run).",
        "",
        "| where | what | seconds | rows/s | ratio |",
        "|---|---|---|---|---|",
        *(f"| {w} | {what} | {s:.3f} | {n / s:.3g} | {r} |" for w, what, s, r in timings),
        "",
        "Targets:",
        "",
    ]
    for e, info in infos.items():
        name = f"assay.{e}"
        en, pe = info["engine"], info["peer"]
        f_ratio = en / info["floor"]
        lines.append(
            f"- {name}: {f_ratio:.2f}x the floor (target <= 1.5x: "
            f"{'met' if f_ratio <= 1.5 else 'missed'}); {pe / en:.1f}x faster than "
            f"{peers[e]} + scikit-learn (target >= 5x: {'met' if pe / en >= 5 else 'missed'}); "
            f"over assay.evaluate in process: {en / inproc['path']:.2f}x with the read "
            f"(+{en - inproc['path']:.3f}s), {en / inproc['table']:.2f}x the in-memory table "
            f"(+{en - inproc['table']:.3f}s).")
    lines += [
        "",
        "scikit-learn per slice: 11 scikit-learn functions (accuracy, balanced accuracy, "
        "precision, recall, specificity, F1, MCC, ROC-AUC, average precision, log loss, Brier), "
        "confusion_matrix for fpr/fnr and NumPy means for the two rates: all 15 metrics.",
        "",
        "Checks (untimed):",
        "",
        *(f"- {c}" for c in checks.lines),
        "",
        f"Machine: {benchlib.cpu_model()}, {benchlib.cores()} cores; Python "
        f"{platform.python_version()}, pyarrow {pa.__version__}, "
        + "".join(f"{'pyspark' if e == 'spark' else e} {i['version']}, "
                  for e, i in infos.items())
        + f"assay {assay.__version__}.",
        "Command: `" + " ".join(["python benches/bench_distributed.py",
                                 *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
        + "`",
    ]
    text = "\n".join(lines)
    print()
    print(text)
    if args.write:
        benchlib.write_section(RESULTS, BEGIN, END, "## Spark and Ray\n\n" + text)
        print(f"\nwrote the {BEGIN} section of {RESULTS}")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
