#!/usr/bin/env python3
"""Side-by-side benchmark of ``assay.evaluate`` against scikit-learn, NumPy, polars and pure Python.

Usage::

    python benches/bench_evaluate.py               # 10M rows, best of 3
    python benches/bench_evaluate.py --quick       # 1M rows, 1 repeat
    python benches/bench_evaluate.py --write       # also (over)write benches/RESULTS.md

Generated data is cached as parquet under ``benches/_data/`` (gitignored). See benches/README.md.
If ``import assay`` fails, the assay timings are skipped and only the peers run (useful to check
the peer code); validation then is skipped too.
"""

from __future__ import annotations

import os

# Peers run single-threaded where that can be controlled: BLAS/OpenMP pools are pinned here,
# before NumPy / scikit-learn are imported. polars reads POLARS_MAX_THREADS only at import time,
# so the in-process polars run uses its default pool and a single-threaded polars run is made in
# a subprocess (see ``_polars_worker``).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import datetime as _dt
import json
import math
import platform
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

import benchlib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "_data"
RESULTS = HERE / "RESULTS.md"

SEED = 20240611
N_SEGMENTS = 100
THRESHOLD = 0.5
SUBSAMPLE = 100_000  # rows for the pure-Python loop
BATCH_ROWS = 65_536  # rows per batch on the streamed path
DATA_VERSION = 1  # bump when the generator changes, to invalidate the cache

ONE_PASS = [
    "base_rate",
    "prediction_rate",
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "specificity",
    "fpr",
    "fnr",
    "f1",
    "mcc",
    "log_loss",
    "brier",
]
ALL_METRICS = ONE_PASS + ["roc_auc", "average_precision"]
POLARS_METRICS = ["base_rate", "prediction_rate", "brier", "log_loss"]

RTOL = 1e-9  # validation: |a - b| <= RTOL * max(1, |b|)


# --------------------------------------------------------------------------------------------
# data


def data_path(rows: int) -> Path:
    return DATA_DIR / f"bench_n{rows}_seed{SEED}_v{DATA_VERSION}.parquet"


def generate(rows: int) -> pa.Table:
    """Synthetic scored data from an informative model.

    Each row falls in one of 100 segments ``s000``..``s099`` (uniformly). Segment ``k`` has its
    own positive rate, spread evenly over 5%..15% (about 10% overall). The score is
    ``sigmoid(-3 + 3*y + 0.2*seg_shift + N(0, 1.5))``: ROC-AUC around 0.9, about 7% of rows scored
    at or above 0.5. ``w`` is a positive weight, uniform on [0.5, 2).
    """
    rng = np.random.default_rng(SEED)
    seg = rng.integers(0, N_SEGMENTS, size=rows, dtype=np.int32)
    seg_rate = np.linspace(0.05, 0.15, N_SEGMENTS)
    y = (rng.random(rows) < seg_rate[seg]).astype(np.int8)
    seg_shift = np.linspace(-1.0, 1.0, N_SEGMENTS)
    logit = -3.0 + 3.0 * y + 0.2 * seg_shift[seg] + rng.normal(0.0, 1.5, size=rows)
    p = 1.0 / (1.0 + np.exp(-logit))
    w = rng.uniform(0.5, 2.0, size=rows)
    names = pa.array([f"s{k:03d}" for k in range(N_SEGMENTS)], type=pa.string())
    seg_col = pa.DictionaryArray.from_arrays(pa.array(seg), names).cast(pa.string())
    return pa.table({"y": pa.array(y), "p": pa.array(p), "seg": seg_col, "w": pa.array(w)})


def load_data(rows: int) -> tuple[pa.Table, float, bool]:
    """The benchmark table (one chunk per column), seconds spent, and whether it came from cache."""
    path = data_path(rows)
    t0 = time.perf_counter()
    cached = path.exists()
    if cached:
        table = pq.read_table(path)
    else:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        table = generate(rows)
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp, compression="zstd")
        tmp.replace(path)
    table = table.combine_chunks()
    return table, time.perf_counter() - t0, cached


# --------------------------------------------------------------------------------------------
# timing



# --------------------------------------------------------------------------------------------
# peers


def _sk():
    from sklearn import metrics as skm

    return skm


def sklearn_one_pass(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> dict[str, float]:
    """The 13 one-pass metrics, one scikit-learn (or NumPy) call each."""
    skm = _sk()
    pred = (p >= THRESHOLD).astype(np.int8)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1], sample_weight=w).ravel()
    return {
        "base_rate": float(np.average(y, weights=w)),
        "prediction_rate": float(np.average(pred, weights=w)),
        "accuracy": skm.accuracy_score(y, pred, sample_weight=w),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred, sample_weight=w),
        "precision": skm.precision_score(y, pred, zero_division=np.nan, sample_weight=w),
        "recall": skm.recall_score(y, pred, zero_division=np.nan, sample_weight=w),
        "specificity": skm.recall_score(y, pred, pos_label=0, zero_division=np.nan, sample_weight=w),
        "fpr": fp / (fp + tn) if fp + tn else math.nan,
        "fnr": fn / (fn + tp) if fn + tp else math.nan,
        "f1": skm.f1_score(y, pred, zero_division=np.nan, sample_weight=w),
        "mcc": skm.matthews_corrcoef(y, pred, sample_weight=w),
        "log_loss": skm.log_loss(y, p, labels=[0, 1], sample_weight=w),
        "brier": skm.brier_score_loss(y, p, sample_weight=w),
    }


def sklearn_all(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> dict[str, float]:
    """All 15 metrics (the 13 above plus ROC-AUC and average precision)."""
    skm = _sk()
    out = sklearn_one_pass(y, p, w)
    both = 0 < int(y.sum()) < len(y)
    out["roc_auc"] = skm.roc_auc_score(y, p, sample_weight=w) if both else math.nan
    out["average_precision"] = skm.average_precision_score(y, p, sample_weight=w) if both else math.nan
    return {k: float(v) for k, v in out.items()}


def numpy_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Exact ROC-AUC by Mann-Whitney U: one argsort, tied scores get their average rank.

    Ranks are kept doubled (``start + end + 1`` for a tie group covering sorted positions
    ``start..end-1``) so the rank sum is an exact int64.
    """
    n = len(p)
    order = np.argsort(p)
    ps = p[order]
    ys = y[order]
    starts = np.flatnonzero(np.concatenate(([True], ps[1:] != ps[:-1])))
    ends = np.append(starts[1:], n)
    pos_in_group = np.add.reduceat(ys.astype(np.int64), starts)
    rank_sum_x2 = int(np.dot(pos_in_group, starts + ends + 1))
    n_pos = int(pos_in_group.sum())
    n_neg = n - n_pos
    u_x2 = rank_sum_x2 - n_pos * (n_pos + 1)
    return u_x2 / (2.0 * n_pos * n_neg)


def group_rows(seg_codes: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """Row indices of each group, by one stable argsort of the group codes."""
    order = np.argsort(seg_codes, kind="stable")
    bounds = np.searchsorted(seg_codes[order], np.arange(n_groups + 1))
    return [order[bounds[g] : bounds[g + 1]] for g in range(n_groups)]


def sklearn_sliced(y, p, groups, names) -> dict[str, dict[str, float]]:
    return {name: sklearn_all(y[idx], p[idx]) for name, idx in zip(names, groups)}


def polars_query(df):
    import polars as pl

    y = pl.col("y").cast(pl.Float64)
    p = pl.col("p")
    return df.group_by("seg").agg(
        y.mean().alias("base_rate"),
        (p >= THRESHOLD).cast(pl.Float64).mean().alias("prediction_rate"),
        ((y - p) ** 2).mean().alias("brier"),
        (-(y * p.log() + (1.0 - y) * (1.0 - p).log())).mean().alias("log_loss"),
    )


def polars_time(path: Path, repeat: int) -> tuple[float, int, object]:
    import polars as pl

    df = pl.read_parquet(path).rechunk()
    polars_query(df.head(1000))  # warm-up
    secs, out = benchlib.best_of(lambda: polars_query(df), repeat)
    return secs, pl.thread_pool_size(), out


def _polars_worker(path: str, repeat: int) -> None:
    secs, threads, _ = polars_time(Path(path), repeat)
    print(json.dumps({"seconds": secs, "threads": threads}))


def polars_single_thread(path: Path, repeat: int) -> tuple[float, int]:
    env = dict(os.environ, POLARS_MAX_THREADS="1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_polars-worker", str(path), "--repeat", str(repeat)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return out["seconds"], out["threads"]


def pure_python_acc_logloss(ys: list[int], ps: list[float]) -> tuple[float, float]:
    correct = 0
    loss = 0.0
    log = math.log
    for yi, pi in zip(ys, ps):
        pred = 1 if pi >= THRESHOLD else 0
        if pred == yi:
            correct += 1
        loss -= log(pi) if yi else log(1.0 - pi)
    n = len(ys)
    return correct / n, loss / n


# --------------------------------------------------------------------------------------------
# validation


class Checker:
    def __init__(self) -> None:
        self.n_checked = 0
        self.mismatches: list[str] = []

    def check(self, what: str, got, want) -> None:
        self.n_checked += 1
        try:
            g = float(got)
            w = float(want)
        except (TypeError, ValueError):
            self._fail(f"{what}: assay={got!r} peer={want!r} (not numeric)")
            return
        if math.isnan(g) and math.isnan(w):
            return
        if math.isnan(g) or math.isnan(w) or abs(g - w) > RTOL * max(1.0, abs(w)):
            self._fail(f"{what}: assay={g!r} peer={w!r} diff={g - w:.3e}")

    def _fail(self, msg: str) -> None:
        self.mismatches.append(msg)
        print(f"!!! MISMATCH {msg}", flush=True)


def overall_row(report) -> dict:
    tbl = report.table
    if tbl.height != 1:
        raise AssertionError(f"unsliced report should have 1 row, got {tbl.height}:\n{tbl}")
    return tbl.row(0, named=True)


def slice_rows(report, names) -> dict[str, dict]:
    """Rows of a report sliced by ``seg``, keyed by segment value (other rows, e.g. an overall
    row with a null ``seg``, are ignored)."""
    wanted = set(names)
    rows = {}
    for row in report.table.iter_rows(named=True):
        if row.get("seg") in wanted:
            rows[row["seg"]] = row
    return rows


# --------------------------------------------------------------------------------------------
# output


def fmt_s(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 1:
        return f"{x:.2f}"
    if x >= 0.01:
        return f"{x:.3f}"
    return f"{x:.4f}"


def fmt_ratio(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.0f}x" if x >= 100 else f"{x:.2f}x" if x < 10 else f"{x:.1f}x"


HEADER = ["benchmark", "assay s", "assay 1t s", "peer", "peer s", "ratio", "target", "met"]


def render_table(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        met = r.get("met")
        out.append(
            [
                r["name"],
                fmt_s(r.get("assay")),
                fmt_s(r.get("assay1")),
                r["peer_name"],
                fmt_s(r.get("peer")),
                fmt_ratio(r.get("ratio")),
                r.get("target", "-"),
                "-" if met is None else ("yes" if met else "NO"),
            ]
        )
    return out


def text_table(cells: list[list[str]]) -> str:
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(HEADER)]
    line = "  ".join(h.ljust(wd) for h, wd in zip(HEADER, widths))
    sep = "  ".join("-" * wd for wd in widths)
    body = ["  ".join(c.ljust(wd) for c, wd in zip(row, widths)) for row in cells]
    return "\n".join([line, sep, *body])


def md_table(cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(["---"] * len(HEADER)) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines)



def versions(assay_mod) -> str:
    import polars as pl
    import sklearn

    parts = [
        f"Python {platform.python_version()}",
        f"numpy {np.__version__}",
        f"pyarrow {pa.__version__}",
        f"polars {pl.__version__}",
        f"scikit-learn {sklearn.__version__}",
    ]
    if assay_mod is not None:
        parts.append(f"assay {getattr(assay_mod, '__version__', '?')}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows to generate (default 10M)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per measurement; best is kept")
    ap.add_argument("--write", action="store_true", help="(over)write benches/RESULTS.md")
    ap.add_argument("--quick", action="store_true", help="1M rows, 1 repeat")
    ap.add_argument("--skip-validate", action="store_true", help="skip the correctness checks")
    ap.add_argument("--_polars-worker", dest="polars_worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.polars_worker:
        _polars_worker(args.polars_worker, args.repeat)
        return 0
    if args.quick:
        args.rows, args.repeat = 1_000_000, 1
    if args.rows < SUBSAMPLE:
        ap.error(f"--rows must be at least {SUBSAMPLE}")
    repeat = max(1, args.repeat)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning)

    try:
        import assay
    except ImportError as e:  # peers still run
        print(f"*** import assay failed ({e}); assay timings and validation are skipped ***", flush=True)
        assay = None

    n = args.rows
    table, load_s, cached = load_data(n)
    src = "read from cache" if cached else "generated"
    print(f"data: {n:,} rows, {src} in {load_s:.1f}s ({data_path(n).relative_to(HERE.parent)})", flush=True)
    y = table.column("y").to_numpy()
    p = table.column("p").to_numpy()
    w = table.column("w").to_numpy()
    # segment codes: arrow dictionary-encodes the strings (fast), np.unique orders the values
    enc = table.column("seg").combine_chunks().dictionary_encode()
    names, remap = np.unique(np.array(enc.dictionary.to_pylist()), return_inverse=True)
    names = [str(s) for s in names]
    seg_codes = remap.astype(np.int32)[enc.indices.to_numpy()]
    del enc
    print(f"      base rate {y.mean():.4f}, prediction rate {(p >= THRESHOLD).mean():.4f}, "
          f"{len(names)} segments", flush=True)

    # tiny warm-up of every peer so first-call imports are not timed
    small = slice(0, 2000)
    sklearn_all(y[small], p[small])
    numpy_auc(y[small], p[small])

    def run_assay(data_fn, label, n_threads=None, **kw):
        """Best-of timing of assay with default threads and with one thread."""
        if assay is None:
            return None, None, None
        assay.evaluate(table.slice(0, 2000), label="y", score="p", **kw)  # warm-up
        t, rep = benchlib.best_of(lambda: assay.evaluate(data_fn(), label="y", score="p", **kw), repeat)
        t1, _ = benchlib.best_of(lambda: assay.evaluate(data_fn(), label="y", score="p", n_threads=1, **kw), repeat)
        print(f"  assay  {label}: {t:.4f}s (1 thread {t1:.4f}s)", flush=True)
        return t, t1, rep

    def run_peer(fn, label):
        t, out = benchlib.best_of(fn, repeat)
        print(f"  peer   {label}: {t:.4f}s", flush=True)
        return t, out

    rows: list[dict] = []

    def add(name, assay_s, assay1_s, peer_name, peer_s, target, ratio_kind="speedup", min_ratio=None,
            max_ratio=None):
        if assay_s is None or peer_s is None:
            ratio = None
        elif ratio_kind == "speedup":
            ratio = peer_s / assay_s
        else:  # "slowdown": assay_s relative to peer_s
            ratio = assay_s / peer_s
        met = None
        if ratio is not None and (min_ratio is not None or max_ratio is not None):
            met = (min_ratio is None or ratio >= min_ratio) and (max_ratio is None or ratio <= max_ratio)
        rows.append(dict(name=name, assay=assay_s, assay1=assay1_s, peer_name=peer_name, peer=peer_s,
                         ratio=ratio, target=target, met=met))

    def mem():
        return table

    # 1. the 13 one-pass metrics, overall
    print("[1] 13 one-pass metrics, overall", flush=True)
    a, a1, rep_one = run_assay(mem, "one-pass", metrics=ONE_PASS)
    s, sk_one = run_peer(lambda: sklearn_one_pass(y, p), "sklearn (sum of 13 calls)")
    add("13 one-pass metrics, overall", a, a1, "sklearn, sum of calls", s, ">= 50x", min_ratio=50)

    # 2. exact ROC-AUC and average precision, overall
    print("[2] ROC-AUC / average precision, overall", flush=True)
    a, a1, rep_auc = run_assay(mem, "roc_auc", metrics=["roc_auc"])
    s, sk_auc = run_peer(lambda: _sk().roc_auc_score(y, p), "sklearn roc_auc_score")
    add("exact ROC-AUC, overall", a, a1, "sklearn roc_auc_score", s, ">= 20x", min_ratio=20)
    s, np_auc = run_peer(lambda: numpy_auc(y, p), "numpy argsort rank-sum AUC")
    add("exact ROC-AUC, overall", a, a1, "NumPy argsort rank-sum", s, ">= 2x", min_ratio=2)
    a, a1, rep_ap = run_assay(mem, "average_precision", metrics=["average_precision"])
    s, sk_ap = run_peer(lambda: _sk().average_precision_score(y, p), "sklearn average_precision_score")
    add("average precision, overall", a, a1, "sklearn average_precision_score", s, "(info)")

    # 3. all 15 metrics for 100 slices
    print("[3] 15 metrics x 100 slices", flush=True)
    t0 = time.perf_counter()
    groups = group_rows(seg_codes, len(names))
    group_s = time.perf_counter() - t0
    print(f"  peer   grouping (np.unique inverse + argsort, untimed in the loop): {group_s:.4f}s", flush=True)
    a_sl, a1_sl, rep_sl = run_assay(mem, "15 metrics x 100 slices", slices=["seg"], metrics=ALL_METRICS)
    s, sk_sl = run_peer(lambda: sklearn_sliced(y, p, groups, names), "sklearn per-slice loop")
    add("15 metrics x 100 slices", a_sl, a1_sl, "sklearn per-slice loop", s, ">= 30x", min_ratio=30)

    pq_path = data_path(n)
    pl_s, pl_threads, pl_out = polars_time(pq_path, repeat)
    print(f"  peer   polars group_by 4 means ({pl_threads} threads): {pl_s:.4f}s", flush=True)
    add("15 metrics x 100 slices", a_sl, a1_sl, f"polars group_by, 4 means ({pl_threads} thr)", pl_s,
        "assay faster", min_ratio=1)
    pl1_s, pl1_threads = polars_single_thread(pq_path, repeat)
    print(f"  peer   polars group_by 4 means ({pl1_threads} thread, subprocess): {pl1_s:.4f}s", flush=True)
    # single-threaded pair: assay n_threads=1 vs polars POLARS_MAX_THREADS=1
    add("15 metrics x 100 slices, 1 thread each", a1_sl, a1_sl, f"polars group_by, 4 means ({pl1_threads} thr)",
        pl1_s, "assay faster", min_ratio=1)
    a4, a41, _ = run_assay(mem, "4 mean metrics x 100 slices", slices=["seg"], metrics=POLARS_METRICS)
    add("4 mean metrics x 100 slices (same work as polars)", a4, a41,
        f"polars group_by, 4 means ({pl_threads} thr)", pl_s, "(info)")

    # 4. streamed path
    print("[4] streamed (RecordBatchReader, 64k-row batches)", flush=True)
    batches = table.to_batches(max_chunksize=BATCH_ROWS)

    def reader():
        return pa.RecordBatchReader.from_batches(table.schema, batches)

    a_st, a1_st, rep_st = run_assay(reader, "streamed 15 x 100 slices", slices=["seg"], metrics=ALL_METRICS)
    add(f"streamed 15 x 100 slices ({len(batches)} batches)", a_st, a1_st, "assay in-memory (same job)", a_sl,
        "<= 1.3x of in-memory", ratio_kind="slowdown", max_ratio=1.3)

    # 5. pure Python, scaled
    print(f"[5] pure Python loop on {SUBSAMPLE:,} rows, scaled to {n:,}", flush=True)
    ys = y[:SUBSAMPLE].tolist()
    ps = p[:SUBSAMPLE].tolist()
    s_sub, py_sub = run_peer(lambda: pure_python_acc_logloss(ys, ps), f"pure Python ({SUBSAMPLE:,} rows)")
    a, a1, _ = run_assay(mem, "accuracy + log_loss", metrics=["accuracy", "log_loss"])
    add("accuracy + log_loss, overall", a, a1, f"pure Python loop (x{n / SUBSAMPLE:g} from {SUBSAMPLE // 1000}k)",
        s_sub * n / SUBSAMPLE, "(info)")

    # ---------------------------------------------------------------------------------------
    # validation (untimed)
    chk = Checker()
    validated = False
    if assay is not None and not args.skip_validate:
        print("[validate] assay vs peers, tolerance "
              f"|a-b| <= {RTOL:g} * max(1, |b|)", flush=True)
        validated = True
        got = overall_row(rep_one)
        for m in ONE_PASS:
            chk.check(f"overall {m} vs sklearn", got[m], sk_one[m])
        chk.check("overall n", got.get("n"), n)
        got_auc = overall_row(rep_auc)["roc_auc"]
        chk.check("overall roc_auc vs sklearn", got_auc, sk_auc)
        chk.check("overall roc_auc vs numpy", got_auc, np_auc)
        chk.check("overall average_precision vs sklearn", overall_row(rep_ap)["average_precision"], sk_ap)
        # pure Python on the subsample, against assay on the same subsample
        sub_rep = assay.evaluate(table.slice(0, SUBSAMPLE), label="y", score="p", metrics=["accuracy", "log_loss"])
        sub = overall_row(sub_rep)
        chk.check("subsample accuracy vs pure Python", sub["accuracy"], py_sub[0])
        chk.check("subsample log_loss vs pure Python", sub["log_loss"], py_sub[1])

        # sliced, in-memory vs the sklearn loop and vs polars; streamed vs in-memory
        sl = slice_rows(rep_sl, names)
        st = slice_rows(rep_st, names)
        if len(sl) != len(names):
            chk._fail(f"sliced report has {len(sl)} of {len(names)} segments")
        if len(st) != len(names):
            chk._fail(f"streamed report has {len(st)} of {len(names)} segments")
        pl_rows = {r["seg"]: r for r in pl_out.iter_rows(named=True)}
        for g, name in enumerate(names):
            row = sl.get(name)
            if row is None:
                continue
            chk.check(f"slice {name} n", row.get("n"), len(groups[g]))
            for m in ALL_METRICS:
                chk.check(f"slice {name} {m} vs sklearn", row[m], sk_sl[name][m])
            for m in POLARS_METRICS:
                chk.check(f"slice {name} {m} vs polars", row[m], pl_rows[name][m])
            srow = st.get(name)
            if srow is not None:
                for m in ALL_METRICS:
                    chk.check(f"slice {name} {m} streamed vs in-memory", srow[m], row[m])

        # weighted, overall (all 15 metrics) vs sklearn with sample_weight
        print("[validate] weighted (w column), overall, vs sklearn sample_weight", flush=True)
        rep_w = assay.evaluate(table, label="y", score="p", weight="w", metrics=ALL_METRICS)
        got_w = overall_row(rep_w)
        want_w = sklearn_all(y, p, w)
        for m in ALL_METRICS:
            chk.check(f"weighted overall {m} vs sklearn", got_w[m], want_w[m])
        if "weight_sum" in got_w:
            chk.check("weighted overall weight_sum", got_w["weight_sum"], float(w.sum()))

        if chk.mismatches:
            print(f"!!! VALIDATION FAILED: {len(chk.mismatches)} of {chk.n_checked} checks mismatched", flush=True)
        else:
            print(f"[validate] OK: {chk.n_checked} checks passed", flush=True)

    # ---------------------------------------------------------------------------------------
    cells = render_table(rows)
    print()
    print(f"{n:,} rows, best of {repeat}; ratio = peer s / assay s (streamed row: streamed s / in-memory s)")
    print(text_table(cells))

    if args.write:
        write_results(args, n, repeat, cells, group_s, chk, validated, assay)
        print(f"\nwrote {RESULTS.relative_to(HERE.parent)}")
    return 1 if chk.mismatches else 0


def write_results(args, n, repeat, cells, group_s, chk, validated, assay_mod) -> None:
    cmd = "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0])), *sys.argv[1:]])
    if not validated:
        vline = "not run (assay unavailable or `--skip-validate`)."
    elif chk.mismatches:
        vline = f"**FAILED**: {len(chk.mismatches)} of {chk.n_checked} checks mismatched:\n\n" + "\n".join(
            f"- `{m}`" for m in chk.mismatches[:50]
        )
    else:
        vline = (f"all {chk.n_checked} checks passed (|assay - peer| <= {RTOL:g} * max(1, |peer|)).")
    text = f"""# assay benchmark results

Generated by `benches/bench_evaluate.py`; do not edit by hand.

- date: {_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")}
- machine: {os.cpu_count()} CPUs (nproc), {benchlib.cpu_model()}, {platform.system()} {platform.release()}
- software: {versions(assay_mod)}
- command: `{cmd}`
- data: {n:,} rows, best of {repeat} runs per measurement

{md_table(cells)}

`assay s` is `assay.evaluate` with its default thread count (all cores); `assay 1t s` is the same
call with `n_threads=1`. `ratio` is peer seconds / assay seconds (default threads), except in the
streamed row, where it is streamed seconds / in-memory seconds. The "1 thread each" row compares
assay `n_threads=1` against polars with `POLARS_MAX_THREADS=1`.

Validation: {vline}

## Methodology

- **Data.** Seeded (seed {SEED}) synthetic data cached as parquet in `benches/_data/`: label `y`
  (int8, about 10% positives; segment k has positive rate 5%..15%), float64 score
  `p = sigmoid(-3 + 3y + 0.2 shift(seg) + N(0, 1.5))` (informative, ROC-AUC about 0.9), string
  column `seg` with 100 values `s000`..`s099` (uniform), float64 weight `w` uniform on [0.5, 2).
  The table is loaded once (columns as single chunks) and passed to assay as a `pyarrow.Table`.
- **Timing.** Wall clock by `time.perf_counter`, best of {repeat} runs after a small warm-up call
  (so import and first-call costs are not timed); `gc.collect()` before each run. Loading data is
  not timed. Thresholded metrics use `score >= {THRESHOLD}`.
- **Threads.** OMP/OpenBLAS/MKL pools are pinned to 1 thread before NumPy is imported.
  scikit-learn and NumPy calls here are single-threaded. polars reads `POLARS_MAX_THREADS` only at
  import, so it is measured twice: in-process with its default pool, and in a subprocess with
  `POLARS_MAX_THREADS=1`.
- **1. one-pass metrics.** Peer: the sum of one scikit-learn call per metric
  (`accuracy_score`, `balanced_accuracy_score`, `precision_score`, `recall_score`,
  `recall_score(pos_label=0)` for specificity, `f1_score`, `matthews_corrcoef`, `log_loss`,
  `brier_score_loss`), `confusion_matrix` once for fpr/fnr, NumPy means for base and prediction
  rate; thresholding the scores is included.
- **2. ROC-AUC.** assay `metrics=["roc_auc"]` (exact) vs `sklearn.metrics.roc_auc_score` and vs
  a NumPy Mann-Whitney implementation: one `np.argsort`, tie groups get their average rank, exact
  int64 rank sum. Average precision vs `average_precision_score` (no target, for information).
- **3. 100 slices.** assay `slices=["seg"]`, all 15 metrics. Peer: a loop over the 100 segments
  calling the same 15 scikit-learn functions on each segment's rows. Row groups come from
  `np.unique(..., return_inverse=True)` and one stable argsort, computed once outside the timed
  loop ({group_s:.3f}s, not included), so the loop pays only fancy indexing and the metric calls.
  polars: `group_by("seg").agg(...)` computing only 4 means (base rate, prediction rate, Brier
  term, log-loss term), i.e. much less work than assay's 15 metrics; an extra row times assay on
  just those 4 metrics for a like-for-like comparison.
- **4. streamed.** The same 100-slice job fed as
  `pa.RecordBatchReader.from_batches(schema, table.to_batches(max_chunksize={BATCH_ROWS}))`
  (reader creation is inside the timing; the batches are zero-copy views), vs the in-memory table.
- **5. pure Python.** A Python `for` loop over `{SUBSAMPLE:,}` rows (lists, not NumPy) computing
  accuracy and log loss, timed on the subsample and **scaled linearly** to {n:,} rows; assay runs
  `metrics=["accuracy", "log_loss"]` on all rows.
- **Validation** (untimed): assay's values are compared with the peers' on the benchmark data —
  overall one-pass metrics, ROC-AUC (sklearn and NumPy), average precision, all 15 metrics per
  segment vs the scikit-learn loop, the 4 polars means per segment, streamed vs in-memory, the
  pure-Python subsample, and a weighted (`weight="w"`) overall run of all 15 metrics vs
  scikit-learn with `sample_weight`.
"""
    # Keep the sections other benchmarks own (bench_bootstrap.py writes below its marker).
    marker = "<!-- bench_bootstrap -->"
    old = RESULTS.read_text() if RESULTS.exists() else ""
    if marker in old:
        text = text.rstrip("\n") + "\n\n" + old[old.index(marker):]
    RESULTS.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
