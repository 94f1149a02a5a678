#!/usr/bin/env python3
"""Ranking metrics per slice: ``assay.evaluate(task="ranking")`` (NDCG@10 over 200k queries,
20 slices) against a NumPy and a polars implementation of NDCG@10 per query and against ranx,
on the same data in the same run.

Usage::

    python benches/bench_ranking.py             # 10M rows in 200k queries, 20 slices, best of 3
    python benches/bench_ranking.py --quick     # 1M rows, 1 repeat
    python benches/bench_ranking.py --write     # also write the section of RESULTS.md

Data (cached as parquet under ``benches/_data/``, gitignored): ``q`` (int64 query id; rows /
50 queries of about 50 rows each, every query's rows contiguous, the queries in shuffled
order), ``s`` (float64 score: continuous, so ties are rare), ``rel`` (int64 relevance 0..3,
about 15% relevant, the rate varying by query so that some queries have no relevant item) and
``seg`` (string, 20 values: a query attribute, the same on every row of a query).

The job: ``ndcg@10`` with the exponential gain ``2**rel - 1``, the discount
``1 / log2(p + 2)`` at the 0-based position ``p``, IDCG from the query's own relevances sorted
descending, tied scores in input order (``ties="stable"``), queries without a relevant item
left out of the means (``empty="skip"``); overall and per ``seg``. Every peer starts from the
same in-memory data (a pyarrow Table; polars from a DataFrame made of it, untimed), and what it
needs to convert is part of its time:

- NumPy: one ``np.lexsort`` by (query, -score), the position within each query from the run
  starts, DCG and IDCG (one more stable sort of the gains within each query) by
  ``np.bincount`` over the top-10 rows; no Python loop over queries. The query's ``seg`` is
  read at its first row.
- polars, two ways (the faster counts for the target): a stable sort by (query, -score) and
  the position ``cum_count().over("q")``; or no global sort, the position
  ``s.rank("ordinal", descending=True).over("q")`` (ordinal: ties in row order). Then the
  ideal position ``rel.rank("ordinal", descending=True).over("q")``, a filter to the rows in
  either top 10, one ``group_by("q")`` and one ``group_by("seg")``, at polars' default thread
  count.
- ranx: ``Qrels.from_df`` (the relevant rows) and ``Run.from_df`` (every row) from pandas
  (string ids, as ranx requires), ``evaluate(..., "ndcg_burges@10", make_comparable=True)``
  (``ndcg_burges`` is ranx's exponential-gain NDCG; its ``ndcg`` is the linear Järvelin gain;
  ``make_comparable`` drops the run's queries absent from the qrels, i.e. those without a
  relevant item, which ranx would otherwise score 0), then the per-slice means from its
  per-query scores. Timed once (building the Qrels and Run takes about a minute and ~5 GB at
  10M rows); the evaluate call alone, on prebuilt Qrels and Run, is shown for information.

A second assay row times the same rows shuffled (queries not contiguous: one sort of (query,
row) pairs instead of sorting the run keys), for information. Every assay value (and the
query counts) is checked against NumPy (within 1e-9), polars (1e-9) and ranx (1e-6).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import platform
import shlex
import sys
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import benchlib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "_data"
SEED = 20261208
DATA_VERSION = 1  # bump when the generator changes, to invalidate the cache
ROWS_PER_QUERY = 50
N_SEGMENTS = 20
K = 10
METRIC = f"ndcg@{K}"
TOL_EXACT = 1e-9  # NumPy and polars
TOL_RANX = 1e-6
TARGET = 10.0  # x the fastest peer


# --------------------------------------------------------------------------------------------
# data


def data_path(rows: int) -> Path:
    return DATA_DIR / f"ranking_n{rows}_seed{SEED}_v{DATA_VERSION}.parquet"


def generate(rows: int) -> pa.Table:
    """``rows`` rows in ``rows // 50`` queries (Poisson(50) rows each), each query's rows
    contiguous and the queries in shuffled order. A query's relevance rate is Beta(2, 11.3)
    (mean 15%; about 4% of the queries have no relevant item); a relevant item's grade is 1, 2
    or 3 (60/30/10%); the score is ``signal[seg] * rel + N(0, 1)``, the signal rising from 0.3
    to 1.0 over the 20 slices."""
    rng = np.random.default_rng(SEED)
    n_q = max(1, rows // ROWS_PER_QUERY)
    counts = np.bincount(rng.integers(0, n_q, rows), minlength=n_q)
    q = np.repeat(rng.permutation(n_q).astype(np.int64), counts)  # ids in shuffled order
    seg_of = rng.integers(0, N_SEGMENTS, n_q)
    rate = rng.beta(2.0, 11.3, n_q)
    relevant = rng.random(rows) < rate[q]
    grade = 1 + np.searchsorted([0.6, 0.9], rng.random(rows), side="right")
    rel = np.where(relevant, grade, 0).astype(np.int64)
    seg = seg_of[q]
    signal = np.linspace(0.3, 1.0, N_SEGMENTS)
    s = signal[seg] * rel + rng.normal(0.0, 1.0, rows)
    names = pa.array([f"s{i:02d}" for i in range(N_SEGMENTS)], type=pa.string())
    seg_col = pa.DictionaryArray.from_arrays(pa.array(seg.astype(np.int32)), names)
    return pa.table({"q": q, "s": s, "rel": rel, "seg": seg_col.cast(pa.string())})


def load_data(rows: int) -> tuple[pa.Table, float, bool]:
    """The benchmark table (one chunk per column), seconds spent, and whether it came from
    the cache."""
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
    return table.combine_chunks(), time.perf_counter() - t0, cached


# --------------------------------------------------------------------------------------------
# peers: each returns {"overall": (queries, mean), "seg=<v>": (queries, mean), ...}


def _means(nd: np.ndarray, seg_q: pa.Array | pa.ChunkedArray) -> dict[str, tuple[int, float]]:
    """Overall and per-slice means of the per-query values ``nd`` (queries with a relevant
    item), ``seg_q`` the slice of each."""
    if isinstance(seg_q, pa.ChunkedArray):
        seg_q = seg_q.combine_chunks()
    enc = seg_q.dictionary_encode()
    codes = enc.indices.to_numpy()
    n = np.bincount(codes, minlength=len(enc.dictionary))
    total = np.bincount(codes, weights=nd, minlength=len(enc.dictionary))
    out = {"overall": (len(nd), float(nd.sum() / len(nd)))}
    for i, name in enumerate(enc.dictionary.to_pylist()):
        if n[i]:
            out[f"seg={name}"] = (int(n[i]), float(total[i] / n[i]))
    return out


def numpy_ndcg(t: pa.Table, k: int = K) -> dict[str, tuple[int, float]]:
    q, s, rel = (t[c].to_numpy() for c in ("q", "s", "rel"))
    n = len(q)
    order = np.lexsort((-s, q))  # by query, then score descending; stable: ties in row order
    qo = q[order]
    starts = np.flatnonzero(np.concatenate(([True], qo[1:] != qo[:-1])))
    sizes = np.diff(np.append(starts, n))
    gid = np.repeat(np.arange(len(starts)), sizes)
    pos = np.arange(n) - np.repeat(starts, sizes)  # 0-based position within the query
    gain = np.exp2(rel[order].astype(np.float64)) - 1.0
    disc = 1.0 / np.log2(np.arange(k) + 2.0)
    top = np.flatnonzero(pos < k)
    dcg = np.bincount(gid[top], weights=gain[top] * disc[pos[top]], minlength=len(starts))
    ideal = gain[np.lexsort((-gain, gid))]  # each query's gains, descending
    idcg = np.bincount(gid[top], weights=ideal[top] * disc[pos[top]], minlength=len(starts))
    has = idcg > 0
    seg_q = t["seg"].take(pa.array(order[starts[has]]))
    return _means(dcg[has] / idcg[has], seg_q)


def polars_query(df, k: int = K, sort: bool = True):
    """With ``sort``: a stable sort by (query, -score) and the position by ``cum_count``;
    without: the position as the score's ordinal rank within its query (ties in row order),
    no global sort."""
    import polars as pl

    lf = df.lazy()
    if sort:
        lf = lf.sort(["q", "s"], descending=[False, True], maintain_order=True)
        r = pl.col("q").cum_count().over("q")  # 1-based position by score
    else:
        r = pl.col("s").rank("ordinal", descending=True).over("q")
    ir = pl.col("rel").rank("ordinal", descending=True).over("q")  # in the ideal order
    g = pl.lit(2.0).pow(pl.col("rel")) - 1.0
    per_q = (
        lf.with_columns(r=r, ir=ir, g=g)
        .filter((pl.col("r") <= k) | (pl.col("ir") <= k))
        .group_by("q")
        .agg((pl.col("g") / (pl.col("r") + 1).log(2)).filter(pl.col("r") <= k).sum().alias("dcg"),
             (pl.col("g") / (pl.col("ir") + 1).log(2)).filter(pl.col("ir") <= k).sum()
             .alias("idcg"),
             pl.col("seg").first())
        .filter(pl.col("idcg") > 0)
        .with_columns(ndcg=pl.col("dcg") / pl.col("idcg"))
    )
    overall = per_q.select(pl.len().alias("n"), pl.col("ndcg").mean())
    by_seg = per_q.group_by("seg").agg(pl.len().alias("n"), pl.col("ndcg").mean())
    return pl.collect_all([overall, by_seg])


def polars_ndcg(df, k: int = K, sort: bool = True) -> dict[str, tuple[int, float]]:
    overall, by_seg = polars_query(df, k, sort)
    out = {"overall": (overall["n"][0], overall["ndcg"][0])}
    for seg, n, v in by_seg.iter_rows():
        out[f"seg={seg}"] = (n, v)
    return out


def ranx_build(t: pa.Table):
    """ranx's Qrels (the relevant rows) and Run (every row) from pandas, with string ids."""
    from ranx import Qrels, Run

    df = t.select(["q", "s", "rel"]).to_pandas()
    df["q_id"] = df["q"].astype(str).astype(object)
    df["doc_id"] = df.index.to_series().astype(str).astype(object)  # the row, a unique id
    qrels = Qrels.from_df(df.loc[df["rel"] > 0], q_id_col="q_id", doc_id_col="doc_id",
                          score_col="rel")
    run = Run.from_df(df, q_id_col="q_id", doc_id_col="doc_id", score_col="s")
    return qrels, run


def ranx_eval(t: pa.Table, qrels, run, k: int = K) -> dict[str, tuple[int, float]]:
    """``ndcg_burges@k`` per query (queries without a relevant item dropped by
    ``make_comparable``), then the overall and per-slice means."""
    from ranx import evaluate

    metric = f"ndcg_burges@{k}"
    evaluate(qrels, run, metric, make_comparable=True)  # per-query scores kept in run.scores
    per_q = run.scores[metric]
    ids = np.fromiter(per_q.keys(), dtype=np.int64, count=len(per_q))
    scores = np.fromiter(per_q.values(), dtype=np.float64, count=len(per_q))
    q = t["q"].to_numpy()
    starts = np.flatnonzero(np.concatenate(([True], q[1:] != q[:-1])))
    first = np.full(int(q.max()) + 1, -1, dtype=np.int64)
    first[q[starts[::-1]]] = starts[::-1]  # a row of each query (its first)
    return _means(scores, t["seg"].take(pa.array(first[ids])))


def ranx_ndcg(t: pa.Table, k: int = K) -> dict[str, tuple[int, float]]:
    qrels, run = ranx_build(t)
    return ranx_eval(t, qrels, run, k)


# --------------------------------------------------------------------------------------------
# validation


def assay_rows(rep) -> dict[str, tuple[int, float]]:
    return {r["slice"]: (r["n"], r[METRIC]) for r in rep.table.iter_rows(named=True)}


def check(got: dict, want: dict, name: str, tol: float) -> tuple[float, list[str]]:
    """The largest |difference| of assay's values from the peer's, and the mismatch lines
    (a slice missing on either side, a query count or a value off by more than ``tol``)."""
    worst, bad = 0.0, []
    for label in sorted(set(got) | set(want)):
        if label not in got or label not in want:
            bad.append(f"{name}: slice {label!r} only in {'assay' if label in got else name}")
            continue
        (n_a, v_a), (n_p, v_p) = got[label], want[label]
        err = abs(v_a - v_p)
        worst = max(worst, err)
        if n_a != n_p or not err <= tol:
            bad.append(f"{name}: {label}: assay n={n_a} {METRIC}={v_a!r}, "
                       f"{name} n={n_p} {METRIC}={v_p!r} (|diff| {err:.2e} > {tol:g})")
    return worst, bad


# --------------------------------------------------------------------------------------------


def speedup(peer_s: float, assay_s: float) -> str:
    r = peer_s / assay_s
    return f"{r:.1f}x faster" if r >= 1 else f"{1 / r:.1f}x slower"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1M rows, 1 repeat")
    ap.add_argument("--no-ranx", action="store_true", help="skip the ranx peer")
    ap.add_argument("--write", action="store_true", help="write the section of RESULTS.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.repeat = 1_000_000, 1

    import polars as pl

    import assay

    t, load_s, cached = load_data(args.rows)
    n_q = len(np.unique(t["q"].to_numpy()))
    print(f"data: {args.rows:,} rows, {n_q:,} queries, {'read from cache' if cached else 'generated'}"
          f" in {load_s:.1f}s (untimed)", flush=True)

    def run_assay(table):
        return assay.evaluate(table, task="ranking", query="q", score="s", label="rel", k=[K],
                              metrics=["ndcg"], slices=["seg"], gain="exponential",
                              ties="stable", empty="skip")

    a_s, rep = benchlib.best_of(lambda: run_assay(t), args.repeat, warmup=True)
    got = assay_rows(rep)
    shuffled = t.take(pa.array(np.random.default_rng(SEED + 1).permutation(t.num_rows)))
    sh_s, rep_sh = benchlib.best_of(lambda: run_assay(shuffled), args.repeat, warmup=True)
    shuffled = None  # frees the copy
    print(f"assay: {a_s:.3f}s (contiguous queries), {sh_s:.3f}s (shuffled rows)", flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np_s, want_np = benchlib.best_of(lambda: numpy_ndcg(t), args.repeat)
    print(f"numpy: {np_s:.3f}s", flush=True)

    df = pl.from_arrow(t)
    polars_query(df.head(1000))  # warm-up
    pl_s, want_pl = benchlib.best_of(lambda: polars_ndcg(df), args.repeat)
    plr_s, want_plr = benchlib.best_of(lambda: polars_ndcg(df, sort=False), args.repeat)
    threads = pl.thread_pool_size()
    print(f"polars: {pl_s:.3f}s (sort + cum_count), {plr_s:.3f}s (rank over q)", flush=True)

    rx = None
    if args.no_ranx:
        ranx_note = "ranx skipped (--no-ranx)"
    else:
        try:
            import numba
            import ranx  # noqa: F401
        except ImportError as e:
            ranx_note = f"ranx skipped: not installed ({e}; `pip install ranx`)"
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numba's type-safety notes
                ranx_ndcg(t.slice(0, 2000))  # warm-up: numba compiles (or loads) its kernels
                rx_s, want_rx = benchlib.best_of(lambda: ranx_ndcg(t), 1)
                built = ranx_build(t)
                rx_eval_s, _ = benchlib.best_of(lambda: ranx_eval(t, *built), 1)
                built = None  # frees ranx's dicts
            rx = (rx_s, rx_eval_s, want_rx)
            ranx_note = (f"ranx {version('ranx')} (numba {numba.get_num_threads()} threads), "
                         "ndcg_burges@10 = exponential gain, make_comparable=True = queries "
                         "without a relevant item dropped (assay's empty=\"skip\")")
            print(f"ranx: {rx_s:.3f}s end to end, {rx_eval_s:.3f}s evaluate alone", flush=True)

    # Validation: assay (both row orders) against every peer.
    problems, worst = [], {}
    for name, want, tol in (("NumPy", want_np, TOL_EXACT), ("polars (sort)", want_pl, TOL_EXACT),
                            ("polars (rank)", want_plr, TOL_EXACT),
                            ("assay (shuffled rows)", assay_rows(rep_sh), TOL_EXACT),
                            *([("ranx", rx[2], TOL_RANX)] if rx else [])):
        worst[name], bad = check(got, want, name, tol)
        problems += bad
    if len(got) != N_SEGMENTS + 1:
        problems.append(f"assay: {len(got)} report rows, expected {N_SEGMENTS + 1}")
    if problems:
        print("VALIDATION FAILED:")
        for p in problems:
            print(f"!!! MISMATCH {p}")
        return 1

    peers = {"NumPy": np_s, "polars (sort)": pl_s, "polars (rank)": plr_s}
    if rx:
        peers["ranx"] = rx[0]
    fastest = min(peers, key=peers.get)
    ratio = peers[fastest] / a_s
    counted = got["overall"][0]
    lines = [
        f"Ranking job: {args.rows:,} rows in {n_q:,} queries ({n_q - counted:,} without a relevant "
        f"item, skipped), {METRIC} (exponential gain, stable ties), {N_SEGMENTS} slices of "
        f"queries (and overall); best of {args.repeat} (ranx: once).",
        "",
        "| what | seconds | assay is |",
        "|---|---|---|",
        f"| assay.evaluate(task=\"ranking\"), each query's rows contiguous | {a_s:.3f} | 1x |",
        f"| the same, the rows shuffled (queries not contiguous; for information) | {sh_s:.3f} | "
        f"{sh_s / a_s:.2f}x the time above |",
        f"| NumPy: lexsort by (query, -score) + bincount segment sums | {np_s:.3f} | "
        f"{speedup(np_s, a_s)} |",
        f"| polars: sort by (q, -s) + cum_count().over(\"q\") + group_by ({threads} threads; "
        f"assay uses {benchlib.cores()}) | {pl_s:.3f} | {speedup(pl_s, a_s)} |",
        f"| polars: rank(\"ordinal\").over(\"q\") of the score, no global sort; the same "
        f"group_by | {plr_s:.3f} | {speedup(plr_s, a_s)} |",
    ]
    if rx:
        rx_s, rx_eval_s, _ = rx
        lines += [
            f"| ranx: Qrels/Run.from_df + evaluate(\"ndcg_burges@10\") + per-slice means | "
            f"{rx_s:.3f} | {speedup(rx_s, a_s)} |",
            f"| ranx evaluate alone, Qrels and Run prebuilt (for information) | {rx_eval_s:.3f} | "
            f"{speedup(rx_eval_s, a_s)} |",
        ]
    lines += [
        "",
        f"assay: {args.rows / a_s / 1e6:.1f}M rows/s, {n_q / a_s / 1e6:.2f}M queries/s "
        f"(shuffled: {args.rows / sh_s / 1e6:.1f}M rows/s); NumPy {args.rows / np_s / 1e6:.1f}M "
        f"rows/s, polars {args.rows / min(pl_s, plr_s) / 1e6:.1f}M rows/s"
        + (f", ranx {args.rows / rx[0] / 1e6:.2f}M rows/s." if rx else "."),
        f"Target (ranking): >= {TARGET:g}x the fastest peer ({fastest}, {peers[fastest]:.3f}s): "
        f"{'met' if ratio >= TARGET else 'missed'} ({ratio:.1f}x).",
        "",
        "Validation: assay's overall and per-slice " + METRIC + " and query counts against "
        + ", ".join(f"{name} (max |diff| {max(w, 1e-16):.1e})" for name, w in worst.items())
        + f"; tolerance {TOL_EXACT:g} ({TOL_RANX:g} for ranx).",
        f"Conventions: {ranx_note}.",
        f"Machine: {benchlib.cpu_model()}, {benchlib.cores()} cores; Python "
        f"{platform.python_version()}, numpy {np.__version__}, polars {pl.__version__}, "
        f"assay {assay.__version__}.",
        "Command: `" + " ".join(["python benches/bench_ranking.py",
                                 *map(shlex.quote, sys.argv[1:])]) + "`",
    ]
    benchlib.publish("## Ranking\n\n" + "\n".join(lines), "bench_ranking", args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
