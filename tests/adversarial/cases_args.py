"""Arguments: sizes and numbers a user controls (threads, bins, auc_bins, min_slice_size,
threshold, seed, min_support, k...), out-of-range Python integers, odd objects. Each must be
honoured, bounded with a clear error naming the argument, or refused; never an OverflowError,
an abort on a huge allocation, or minutes spent spawning threads."""

from __future__ import annotations

from typing import Any

import numpy as np
from _harness import add, case, check, close, evaluate, row, same_metrics, toy

EITHER = ("ok", "typed")


def _assay() -> Any:
    import assay

    return assay


def _data(n: int = 200) -> dict[str, Any]:
    d = toy(n)
    return {"y": d["y"], "p": d["p"], "g": d["g"], "x": d["x"], "w": d["w"]}


def _eval(**kw: Any):  # type: ignore[no-untyped-def]
    n = kw.pop("_rows", 200)

    def body() -> None:
        evaluate(_data(n), label="y", score="p", **kw)

    return body


# --- threads ----------------------------------------------------------------------------------


@case(expect=EITHER, words=["n_threads"], timeout=40)
def args_n_threads_100000() -> None:
    rep = evaluate(_data(), label="y", score="p", slices=["g"], n_threads=100_000)
    ref = evaluate(_data(), label="y", score="p", slices=["g"], n_threads=1)
    same_metrics(rep, ref, "n_threads=100000 vs 1", rtol=0, atol=0)


@case(expect=EITHER, words=["ASSAY_NUM_THREADS"], timeout=40,
      env={"ASSAY_NUM_THREADS": "100000"})
def args_env_num_threads_100000() -> None:
    evaluate(_data(), label="y", score="p", slices=["g"])


@case(expect="typed", words=["ASSAY_NUM_THREADS"], env={"ASSAY_NUM_THREADS": "lots"})
def args_env_num_threads_garbage() -> None:
    evaluate(_data(), label="y", score="p")


for _v, _nm in ((0, "0"), (-1, "neg"), (2.5, "float"), (True, "bool"), (2**70, "2e70")):
    add(f"args-n_threads-{_nm}", _eval(n_threads=_v), expect="typed", words=["n_threads"])


# --- bins -------------------------------------------------------------------------------------


def _bins(n: Any, strategy: str = "quantile", rows: int = 3000):  # type: ignore[no-untyped-def]
    def body() -> None:
        a = _assay()
        rep = evaluate(_data(rows), label="y", score="p",
                       slices=[a.bins("p", n, strategy=strategy)], metrics=["accuracy"])
        t = rep.to_arrow()
        check(t.num_rows - 1 <= rows, f"{t.num_rows - 1} bins from {rows} rows")
        ns = t.column("n").to_pylist()
        check(sum(ns[1:]) == ns[0], f"bins n {sum(ns[1:])} != overall {ns[0]}")

    return body


add("args-bins-1e9-quantile", _bins(10**9), expect=EITHER, words=[r"\bp\b|bins", r"\d"],
    timeout=60)
add("args-bins-1e9-uniform", _bins(10**9, "uniform"), expect=EITHER,
    words=[r"\bp\b|bins", r"\d"])
add("args-bins-2e70", _bins(2**70), expect="typed", words=[r"\bp\b|bins", r"\bn\b|number"])
add("args-bins-2e63", _bins(2**63), expect="typed", words=[r"\bp\b|bins"])
add("args-bins-float", _bins(3.5), expect="typed", words=[r"\bp\b|bins"])


@case(expect="typed", words=["edge"])
def args_bins_edges_nan() -> None:
    _assay().bins("x", edges=[0.0, float("nan"), 1.0])


@case(expect=EITHER, words=["edge"])
def args_bins_edges_huge_count() -> None:
    """Ten million explicit edges: fine (memory is the user's) or bounded with a message."""
    a = _assay()
    evaluate(_data(100), label="y", score="p",
             slices=[a.bins("x", edges=np.linspace(-1e3, 1e3, 10_000_000).tolist())],
             metrics=["accuracy"])


# --- other integers ---------------------------------------------------------------------------


add("args-min_slice_size-2e64", _eval(min_slice_size=2**64), expect="typed",
    words=["min_slice_size"])
add("args-threshold-1e400", _eval(threshold=10**400), expect="typed", words=["threshold"])
add("args-threshold-nan", _eval(threshold=float("nan")), expect="typed", words=["threshold"])
add("args-seed-neg", _eval(bootstrap=20, seed=-1), expect="typed", words=["seed"])
add("args-auc_bins-3.5", _eval(auc="binned", auc_bins=3.5), expect="typed",
    words=["auc_bins"])
add("args-auc_bins-0", _eval(auc="binned", auc_bins=0), expect="typed", words=["auc_bins"])
add("args-auc_bins-2e70", _eval(auc="binned", auc_bins=2**70), expect="typed",
    words=["auc_bins"])
add("args-auc_bins-1e10", _eval(auc="binned", auc_bins=10**10, slices=["g"]), expect=EITHER,
    words=["auc_bins"])
add("args-calibration_bins-1e9", _eval(metrics=["ece"], calibration_bins=10**9),
    expect="typed", words=["calibration_bins"])
add("args-bootstrap-2e70", _eval(bootstrap=2**70), expect="typed", words=["bootstrap"])
add("args-ci-1.5", _eval(bootstrap=20, ci=1.5), expect="typed", words=[r"\bci\b"])


@case(expect=EITHER, words=["bootstrap|slice|memory|limit"], timeout=90)
def args_bootstrap_times_slices_too_big() -> None:
    """100,000 replicates x 20,000 slices: far beyond memory; must be refused cleanly."""
    rng = np.random.default_rng(0)
    n = 40_000
    d = {"y": rng.integers(0, 2, n), "p": rng.random(n), "g": rng.integers(0, 20_000, n)}
    evaluate(d, label="y", score="p", slices=["g"], bootstrap=100_000,
             metrics=["accuracy", "roc_auc"])


@case(expect=EITHER, words=["seed"])
def args_seed_2e64_differs_from_0() -> None:
    """seed=2**64 must not silently equal seed=0."""
    d = _data()
    a = evaluate(d, label="y", score="p", bootstrap=30, seed=2**64, metrics=["roc_auc"])
    b = evaluate(d, label="y", score="p", bootstrap=30, seed=0, metrics=["roc_auc"])
    check(row(a)["roc_auc_lo"] != row(b)["roc_auc_lo"], "seed=2**64 gives seed=0's intervals")


# --- slices / metrics / odd objects -----------------------------------------------------------


add("args-slices-None", _eval(slices=None), expect="typed", words=["slice"])
add("args-slices-int", _eval(slices=[3]), expect="typed", words=["slice"])
add("args-slices-empty-tuple", _eval(slices=[()]), expect="typed", words=["slice"])
add("args-slices-missing-column", _eval(slices=["nope"]), expect="typed",
    words=["nope", "available"])
add("args-metrics-unknown", _eval(metrics=["accurracy"]), expect="typed", words=["accurracy"])
add("args-metrics-f-nan", _eval(metrics=["fnan"]), expect="typed", words=["fnan|beta"])
add("args-metrics-f-inf", _eval(metrics=["finf"]), expect="typed", words=["finf|beta"])
add("args-metrics-f0", _eval(metrics=["f0"]), expect=EITHER, words=["f0|beta"])
add("args-weight-missing", _eval(weight="nope"), expect="typed", words=["nope"])
add("args-label-int", lambda: evaluate(_data(), label=3, score="p"), expect="typed",
    words=["label"])
add("args-nan_policy-bad", _eval(nan_policy="ignore"), expect="typed", words=["nan_policy"])


@case(expect="typed", words=["min_support"])
def args_discover_min_support_1e30() -> None:
    _assay().discover_slices(_data(), label="y", score="p", features=["g"],
                             min_support=10**30)


@case(expect=EITHER, words=[r"\bk\b|max_level|level"], timeout=60)
def args_discover_huge_k_and_level() -> None:
    _assay().discover_slices(_data(), label="y", score="p", features=["g"], k=10**9,
                             max_level=10**6)


@case(expect="typed", words=["n_bins"])
def args_histogram_binning_2e70() -> None:
    from assay import calibrate

    calibrate.HistogramBinning(2**70).fit(np.linspace(0, 1, 50), np.arange(50) % 2)


@case(expect=EITHER, words=["n_bins"])
def args_histogram_binning_1e9() -> None:
    from assay import calibrate

    m = calibrate.HistogramBinning(10**9).fit(np.linspace(0, 1, 50), np.arange(50) % 2)
    out = m.transform(np.array([0.3]))
    check(np.isfinite(out).all(), f"transform gives {out}")


@case(expect="typed", words=["n_bins"])
def args_reliability_bins_2e70() -> None:
    _assay().reliability(_data(), label="y", score="p", n_bins=2**70)


@case(expect=EITHER, words=["scores|constant"])
def args_platt_constant_scores() -> None:
    """Platt on constant scores: the fitted map is the base rate (or it is refused, like
    Temperature)."""
    from assay import calibrate

    y = (np.arange(100) % 25 < 13).astype(np.int64)  # base rate 0.52
    m = calibrate.Platt(smoothing=False).fit(np.full(100, 0.0), y)
    out = m.transform(np.array([0.0]))
    close(float(out[0]), 0.52, "Platt(smoothing=False) on constant scores", rtol=1e-6)
    m = calibrate.Platt().fit(np.full(100, 0.0), y)
    out = m.transform(np.array([0.0]))
    check(abs(float(out[0]) - 0.52) < 0.01, f"Platt on constant scores gives {out[0]}")


@case(expect=EITHER, words=["scores|constant"])
def args_temperature_constant_scores() -> None:
    from assay import calibrate

    y = (np.arange(100) % 25 < 13).astype(np.int64)
    m = calibrate.Temperature().fit(np.full(100, 0.4), y)
    out = m.transform(np.array([0.4]))
    check(np.isfinite(out).all() and 0 <= out[0] <= 1, f"Temperature gives {out}")


@case(expect="typed", words=[r"\bp\b|score|mixed|object"])
def args_mixed_object_score() -> None:
    evaluate({"y": np.array([0, 1, 1]), "p": np.array([0.1, "x", 0.3], dtype=object)},
             label="y", score="p")


@case(expect="typed", words=[r"\by\b|label|mixed|object"])
def args_mixed_object_label() -> None:
    evaluate({"y": np.array([0, 1, "1"], dtype=object), "p": np.array([0.1, 0.2, 0.3])},
             label="y", score="p")


@case(expect=EITHER, words=[r"\bg\b|slice|mixed|object"])
def args_mixed_object_slice() -> None:
    rep = evaluate({"y": np.array([0, 1, 1, 0]), "p": np.array([0.1, 0.2, 0.3, 0.9]),
                    "g": np.array(["a", 1, 2.5, None], dtype=object)},
                   label="y", score="p", slices=["g"], metrics=["accuracy"])
    labels = rep.to_arrow().column("slice").to_pylist()
    check(len(set(labels)) == 5, f"4 distinct values should give 4 slices: {labels}")


@case(expect="typed", words=["length|rows|same"])
def args_dict_unequal_lengths() -> None:
    evaluate({"y": np.array([0, 1, 1]), "p": np.array([0.1, 0.2])}, label="y", score="p")


# (A 2-d float array is a list column, for a multiclass model's probabilities: as a binary
# label it is refused by type.)
@case(expect="typed", words=[r"2-d|2d|dimension|shape|one-dimensional|1-d|FixedSizeList"])
def args_dict_2d_array() -> None:
    evaluate({"y": np.zeros((3, 2)), "p": np.zeros(3)}, label="y", score="p")


@case(expect="typed", words=["data|input|type"])
def args_data_is_int() -> None:
    evaluate(42, label="y", score="p")


@case(expect="typed", words=["GiB", "classes"])
def args_multiclass_too_many_classes_for_memory() -> None:
    import pyarrow as pa

    k = 65_536  # the K x K confusion state of one slice would take 64 GiB
    t = pa.table({"y": pa.array([], pa.int64()),
                  "p": pa.FixedSizeListArray.from_arrays(pa.array([], pa.float64()), k)})
    evaluate(t, task="multiclass", label="y", score="p")


def _multiclass_table(n: int = 30, k: int = 3):
    import numpy as np
    import pyarrow as pa

    p = np.full((n, k), 1.0 / k)
    return pa.table({"y": pa.array(np.arange(n) % k), "y_ref": pa.array(np.arange(n) % k),
                     "g": pa.array(["a", "b"] * (n // 2)),
                     "p": pa.FixedSizeListArray.from_arrays(pa.array(p.ravel()), k),
                     "q": pa.FixedSizeListArray.from_arrays(pa.array(2 * p.ravel()), k)})


@case(expect="typed", words=["histogram cells", "auc_bins"])
def args_multiclass_binned_histograms_too_big() -> None:
    evaluate(_multiclass_table(k=64), task="multiclass", label="y", score="p",
             metrics=["roc_auc_ovo"], auc="binned", auc_bins=1_000_000)


@case(expect="typed", words=["bootstrap", "exact", "sketch"])
def args_multiclass_sketch_auc_bootstrap() -> None:
    evaluate(_multiclass_table(), task="multiclass", label="y", score="p",
             metrics=["roc_auc_ovr"], auc="sketch", bootstrap=10)


@case(expect="typed", words=["bootstrap", "exact"])
def args_multiclass_binned_auc_bootstrap() -> None:
    evaluate(_multiclass_table(), task="multiclass", label="y", score="p",
             metrics=["roc_auc_ovr"], auc="binned", bootstrap=10)


@case(expect="typed", words=["q", "sum"])
def args_multiclass_regressions_bad_reference_probabilities() -> None:
    import assay

    # The reference model's rows sum to 2: named by its column, not the candidate's.
    assay.discover_regressions(_multiclass_table(), task="multiclass", label="y",
                               scores=["q", "p"], features=["g"])


# --- ranking ----------------------------------------------------------------------------------


def _ranking_table(n: int = 40):
    import pyarrow as pa

    q = np.arange(n) // 4
    return pa.table({"q": q, "s": np.linspace(0, 1, n), "rel": (np.arange(n) % 3 == 0) * 1.0,
                     "g": np.array(["a", "b"])[q % 2]})


@case(expect="typed", words=["k", "ranking cutoff", "1048576"])
def args_ranking_huge_cutoff() -> None:
    evaluate(_ranking_table(), task="ranking", query="q", score="s", label="rel",
             k=10**12)


@case(expect="ok")
def args_ranking_cutoff_above_every_query() -> None:
    rep = evaluate(_ranking_table(), task="ranking", query="q", score="s", label="rel",
                   k=1_000_000, metrics=["precision", "ndcg", "n_items"])
    # precision@k divides by k, even when the query has fewer items.
    check(rep.table["precision@1000000"][0] < 1e-5, "precision@k divides by k")
    check(rep.table["ndcg@1000000"][0] > 0, "ndcg over every item")


@case(expect="typed", words=["query", "varies", "rows"])
def args_ranking_slice_inside_a_query() -> None:
    import pyarrow as pa

    t = _ranking_table()
    t = t.append_column("item", pa.array([f"i{j}" for j in range(t.num_rows)]))
    evaluate(t, task="ranking", query="q", score="s", label="rel", slices=["item"])


@case(expect="typed", words=["same query", "shard"])
def args_ranking_merge_of_a_split_query() -> None:
    assay = _assay()
    t = _ranking_table()
    spec = assay.Spec(task="ranking", query="q", score="s", label="rel")
    assay.merge([spec.accumulate(t.slice(0, 6)), spec.accumulate(t.slice(6), row_offset=6)])


@case(expect="typed", words=["query", "integer or string"])
def args_ranking_float_query() -> None:
    t = _ranking_table()
    evaluate(t, task="ranking", query="s", score="s", label="rel")


@case(expect="typed", words=["run sketches per slice", "pair", "slices"])
def args_multiclass_sketches_too_many() -> None:
    import pyarrow as pa

    # 300 classes with the one-vs-one pairs: 90,000 sketches per slice, x 51 slices.
    k, n = 300, 600
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(k), n)
    t = pa.table({"y": rng.integers(0, k, n), "g": np.arange(n) % 50,
                  "p": pa.FixedSizeListArray.from_arrays(pa.array(p.ravel()), k)})
    evaluate(t, task="multiclass", label="y", score="p", slices=["g"],
             metrics=["roc_auc_ovo"], auc="sketch")
