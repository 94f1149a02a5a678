"""Values: NaN/inf/null scores, bad labels, out-of-range probabilities, zero/negative/NaN/inf
weights, extreme weights (metrics must not change when every weight is scaled), subnormal
edges, huge F-beta, empty and tiny inputs, single-class slices."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa
from _harness import add, case, check, close, evaluate, row, same_metrics, toy


def _assay() -> Any:
    import assay

    return assay


def _metrics_all() -> list[str]:
    a = _assay()
    return list(a.METRICS) + list(a.CALIBRATION_METRICS)


# --- bad score values ------------------------------------------------------------------------


def _bad_score(value: float | None, policy: str):  # type: ignore[no-untyped-def]
    def body() -> None:
        d = toy(100)
        p = d["p"].astype(object)
        p[[3, 50]] = value
        t = pa.table({"y": d["y"], "p": pa.array(list(p), pa.float64()), "g": d["g"]})
        rep = evaluate(t, label="y", score="p", slices=["g"], nan_policy=policy)
        keep = np.ones(100, bool)
        keep[[3, 50]] = False
        ref = evaluate({"y": d["y"][keep], "p": d["p"][keep], "g": d["g"][keep]},
                       label="y", score="p", slices=["g"])
        check(rep.dropped == 2, f"dropped={rep.dropped}, expected 2")
        same_metrics(rep, ref, f"score {value} dropped")

    return body


for _v, _name in ((math.nan, "nan"), (math.inf, "inf"), (-math.inf, "neginf"), (None, "null")):
    add(f"values-score-{_name}-raise", _bad_score(_v, "raise"), expect="typed",
        words=[r"\bp\b|score", r"nan|inf|null|finite"])
    add(f"values-score-{_name}-drop", _bad_score(_v, "drop"))


# --- bad labels -------------------------------------------------------------------------------


def _bad_label(value: Any, dtype: Any):  # type: ignore[no-untyped-def]
    def body() -> None:
        d = toy(50)
        y = d["y"].astype(np.float64 if isinstance(value, float) else np.int64)
        y[7] = value
        evaluate({"y": y.astype(dtype), "p": d["p"]}, label="y", score="p")

    return body


add("values-label-2", _bad_label(2, np.int64), expect="typed", words=[r"\by\b|label", "2"])
add("values-label-neg1", _bad_label(-1, np.int64), expect="typed", words=[r"\by\b|label", "-1"])
add("values-label-0.5", _bad_label(0.5, np.float64), expect="typed",
    words=[r"\by\b|label", r"0\.5"])
add("values-label-nan", _bad_label(math.nan, np.float64), expect="typed",
    words=[r"\by\b|label", "nan|null"])
add("values-label-255-uint8", _bad_label(255, np.uint8), expect="typed",
    words=[r"\by\b|label", "255"])


@case(expect="typed", words=[r"\by\b|label", "null"])
def values_label_null() -> None:
    d = toy(50)
    y = pa.array([None if i == 4 else int(v) for i, v in enumerate(d["y"])], pa.int64())
    evaluate(pa.table({"y": y, "p": d["p"]}), label="y", score="p")


# --- probabilities outside [0, 1] -------------------------------------------------------------


def _outside(value: float, metric: str):  # type: ignore[no-untyped-def]
    def body() -> None:
        d = toy(60)
        d["p"][9] = value
        evaluate({"y": d["y"], "p": d["p"]}, label="y", score="p", metrics=[metric])

    return body


for _m in ("log_loss", "brier", "ece"):
    add(f"values-prob-1.5-{_m}", _outside(1.5, _m), expect="typed",
        words=[r"\bp\b|score", r"\[0, ?1\]|probabilit|range"])
add("values-prob-neg-log_loss", _outside(-1e-300, "log_loss"), expect="typed",
    words=[r"\bp\b|score", r"\[0, ?1\]|probabilit|range"])


@case()
def values_prob_outside_rank_metrics_ok() -> None:
    """Scores outside [0, 1] are fine for rank/threshold metrics."""
    d = toy(80)
    rep = evaluate({"y": d["y"], "p": d["p"] * 1e6 - 3e5}, label="y", score="p",
                   metrics=["roc_auc", "accuracy"], threshold=0.5 * 1e6 - 3e5)
    ref = evaluate({"y": d["y"], "p": d["p"]}, label="y", score="p",
                   metrics=["roc_auc", "accuracy"])
    same_metrics(rep, ref, "affine scores")


@case()
def values_log_loss_exact_0_1() -> None:
    y = np.array([0, 1, 0, 1])
    rep = evaluate({"y": y, "p": np.array([0.0, 1.0, 1.0, 0.0])}, label="y", score="p",
                   metrics=["log_loss", "brier"])
    v = row(rep)["log_loss"]
    eps = 2.220446049250313e-16
    close(v, -math.log(eps) / 2, "log_loss with confident mistakes", rtol=1e-6)


# --- weights ----------------------------------------------------------------------------------


def _weights_with(value: float, at: list[int]):  # type: ignore[no-untyped-def]
    def body() -> None:
        d = toy(100)
        w = d["w"].copy()
        w[at] = value
        evaluate({"y": d["y"], "p": d["p"], "w": w, "g": d["g"]}, label="y", score="p",
                 weight="w", slices=["g"])

    return body


# Weights must be positive (README): a zero weight is refused, never dropped or summed.
add("values-weight-zero", _weights_with(0.0, [1, 2, 3]), expect="typed",
    words=[r"\bw\b|weight", "positive", r"0\.0", "row 1"])
add("values-weight-negative", _weights_with(-1.0, [5]), expect="typed",
    words=[r"\bw\b|weight", "negative|positive|-1"])
add("values-weight-nan", _weights_with(math.nan, [5]), expect="typed",
    words=[r"\bw\b|weight", "nan|finite"])
add("values-weight-inf", _weights_with(math.inf, [5]), expect="typed",
    words=[r"\bw\b|weight", "inf|finite"])


@case(expect="typed", words=[r"\bw\b|weight", "positive", r"0\.0", "row 0"])
def values_weight_all_zero() -> None:
    d = toy(50)
    evaluate({"y": d["y"], "p": d["p"], "w": np.zeros(50)}, label="y", score="p", weight="w")


def _scaled(scale: float, varied: bool):  # type: ignore[no-untyped-def]
    """Every weight times ``scale``: the metrics equal those of the unscaled weights."""

    def body() -> None:
        d = toy(200, seed=3)
        # Varied weights are random (no exact ties between cumulative weights and quantile
        # boundaries, which ulp-level rounding may legitimately flip).
        rng = np.random.default_rng(4)
        base = rng.uniform(0.5, 1.0, 200) if varied else np.ones(200)
        metrics = _metrics_all()
        kw: dict[str, Any] = {"label": "y", "score": "p", "slices": ["g"], "weight": "w",
                              "metrics": metrics}
        rep = evaluate({"y": d["y"], "p": d["p"], "g": d["g"], "w": base * scale}, **kw)
        ref = evaluate({"y": d["y"], "p": d["p"], "g": d["g"], "w": base}, **kw)
        # smooth_ece and friends are iterative: a looser tolerance, still far from garbage.
        same_metrics(rep, ref, f"weights x {scale:g}", rtol=1e-7, atol=1e-9)
        ws = rep.to_arrow().column("weight_sum").to_pylist()
        for v in ws:
            check(v is None or math.isfinite(v), f"weight_sum holds {v!r}")

    return body


for _s in (1e-300, 1e-100, 1e80, 1e160, 1e300, 1e308):
    add(f"values-weights-x{_s:g}", _scaled(_s, varied=True))
add("values-weights-x5e-324-subnormal", _scaled(5e-324, varied=False))
add("values-weights-x1e-310-subnormal", _scaled(1e-310, varied=True))


def _mixed_extremes(lo: int, hi: int):  # type: ignore[no-untyped-def]
    return lambda: _mixed(lo, hi)


add("values-weights-mixed-1e-150..1e150", _mixed_extremes(-150, 150))
# Beyond the float64 range of ratios: the exact value, or a clear refusal.
add("values-weights-mixed-1e-300..1e300", _mixed_extremes(-300, 300), expect=("ok", "typed"),
    words=[r"\bw\b|weight"])


@case()
def values_unit_weights_equal_unweighted() -> None:
    """A weight column of ones gives the unweighted job's numbers, every metric but those on
    quantile bins (documented: weighted quantile edges are inverted-CDF ones, unweighted
    ones interpolate)."""
    d = toy(200, seed=3)
    metrics = [m for m in _metrics_all() if m != "ace"]
    kw: dict[str, Any] = {"label": "y", "score": "p", "slices": ["g"], "metrics": metrics}
    rep = evaluate({"y": d["y"], "p": d["p"], "g": d["g"], "w": np.ones(200)}, weight="w",
                   **kw)
    ref = evaluate({"y": d["y"], "p": d["p"], "g": d["g"]}, **kw)
    same_metrics(rep, ref, "unit weights vs none", rtol=1e-9, atol=1e-12)


def _mixed(lo: int, hi: int) -> None:
    """Weights from 10**lo to 10**hi in one input; exact rational reference."""
    rng = np.random.default_rng(5)
    n = 60
    y = rng.integers(0, 2, n)
    p = np.round(rng.random(n), 1)
    w = 10.0 ** rng.integers(lo, hi + 1, n).astype(np.float64)
    rep = evaluate({"y": y, "p": p, "w": w}, label="y", score="p", weight="w",
                   metrics=["accuracy", "precision", "recall", "roc_auc"])
    fw = [Fraction(float(x)) for x in w]
    pred = p >= 0.5
    tp = sum(f for f, a, b in zip(fw, y, pred, strict=True) if a == 1 and b)
    fp = sum(f for f, a, b in zip(fw, y, pred, strict=True) if a == 0 and b)
    tn = sum(f for f, a, b in zip(fw, y, pred, strict=True) if a == 0 and not b)
    fn = sum(f for f, a, b in zip(fw, y, pred, strict=True) if a == 1 and not b)
    auc_num = Fraction(0)
    for i in range(n):
        for j in range(n):
            if y[i] == 1 and y[j] == 0:
                s = 1 if p[i] > p[j] else Fraction(1, 2) if p[i] == p[j] else 0
                auc_num += fw[i] * fw[j] * s
    r = row(rep)
    close(r["accuracy"], float((tp + tn) / (tp + tn + fp + fn)), "accuracy", rtol=1e-9)
    close(r["precision"], float(tp / (tp + fp)) if tp + fp else None, "precision", rtol=1e-9)
    close(r["recall"], float(tp / (tp + fn)) if tp + fn else None, "recall", rtol=1e-9)
    close(r["roc_auc"], float(auc_num / ((tp + fn) * (tn + fp))), "roc_auc", rtol=1e-9)


# --- huge beta, subnormal edges, tiny inputs ---------------------------------------------------


@case(expect=("ok", "typed"), words=["f1e200|beta"])
def values_fbeta_huge() -> None:
    """F-beta with beta = 1e200 is recall (to rounding), or refused; never NaN."""
    _fbeta_limit("f1e200", "recall")


def _fbeta_limit(beta: str, limit: str) -> None:
    """F-beta with a huge (tiny) beta is recall (precision) to rounding, checked against the
    counts of the data; a null needs a note."""
    d = toy(100)
    rep = evaluate({"y": d["y"], "p": d["p"]}, label="y", score="p", metrics=[beta])
    r = row(rep)
    name = rep.metrics[0]
    pred, pos = d["p"] >= 0.5, d["y"] == 1
    tp = int(np.sum(pred & pos))
    ref = tp / int(np.sum(pos)) if limit == "recall" else tp / int(np.sum(pred))
    if r[name] is None:
        notes = rep.notes.to_dicts()
        check(any(n["metric"] == name and n["slice"] == "overall" and n["note"] for n in notes),
              f"null {name} without a note: {notes}")
    else:
        close(r[name], ref, f"{name} vs {limit} from the counts", rtol=1e-9)


@case(expect=("ok", "typed"), words=["beta|f1e-200"])
def values_fbeta_tiny() -> None:
    """F-beta with beta = 1e-200 is precision (to rounding), or refused; never NaN."""
    _fbeta_limit("f1e-200", "precision")


@case(expect=("ok", "typed"), words=[r"\bx\b", "bin|edge"])
def values_subnormal_bin_edges() -> None:
    """Quantile bins over subnormal values: distinct labels, every row in one slice."""
    a = _assay()
    x = np.array([0.0, 5e-324, 1e-323, 1.5e-323, 2e-323, 1e-322] * 20)
    d = toy(len(x))
    rep = evaluate({"y": d["y"], "p": d["p"], "x": x}, label="y", score="p",
                   slices=[a.bins("x", 4)], metrics=["accuracy"])
    labels = rep.to_arrow().column("slice").to_pylist()
    check(len(set(labels)) == len(labels), f"duplicate slice labels: {labels}")
    n = rep.to_arrow().column("n").to_pylist()
    check(sum(n[1:]) == n[0], f"slices n {n[1:]} do not sum to overall {n[0]}")


@case(expect=("ok", "typed"), words=[r"\bx\b"])
def values_uniform_bins_full_range() -> None:
    """Uniform bins over +-1.7e308 (the width overflows): fine, or a clear error that does
    not blame edges the user never gave."""
    a = _assay()
    x = np.array([-1.7e308, -1.0, 0.0, 1.0, 1.7e308] * 10)
    d = toy(len(x))
    try:
        rep = evaluate({"y": d["y"], "p": d["p"], "x": x}, label="y", score="p",
                       slices=[a.bins("x", 4, strategy="uniform")], metrics=["accuracy"])
    except a.AssayError as e:
        check("strictly increasing" not in str(e), f"blames edges the user never gave: {e}")
        raise
    n = rep.to_arrow().column("n").to_pylist()
    check(sum(n[1:]) == n[0], f"slices n {n[1:]} do not sum to overall {n[0]}")


@case(expect="typed", words=["empty|no rows"])
def values_empty_table() -> None:
    t = pa.table({"y": pa.array([], pa.int64()), "p": pa.array([], pa.float64())})
    evaluate(t, label="y", score="p")


@case(expect="typed", words=["empty|no rows|dropped"])
def values_all_rows_dropped() -> None:
    evaluate({"y": np.array([0, 1]), "p": np.array([math.nan, math.nan])}, label="y",
             score="p", nan_policy="drop")


@case()
def values_single_row() -> None:
    rep = evaluate({"y": np.array([1]), "p": np.array([0.8])}, label="y", score="p",
                   metrics=_metrics_all())
    r = row(rep)
    close(r["accuracy"], 1.0, "accuracy")
    close(r["roc_auc"], None, "roc_auc of one row")
    close(r["brier"], 0.04, "brier", rtol=1e-12)


@case()
def values_single_class_slice() -> None:
    """A slice with one class: rank metrics null with a note, never NaN."""
    d = toy(100)
    g = d["g"].copy()
    g[(g == 1) & (d["y"] == 0)] = 2  # slice g=1 holds positives only
    rep = evaluate({"y": d["y"], "p": d["p"], "g": g}, label="y", score="p", slices=["g"],
                   metrics=_metrics_all(), bootstrap=50)
    r = row(rep, "g=1")
    check(r["roc_auc"] is None, f"roc_auc of a single-class slice is {r['roc_auc']}")
    notes = rep.notes.filter((rep.notes["slice"] == "g=1") & (rep.notes["metric"] == "roc_auc"))
    check(notes.height >= 1, "no note for a null roc_auc")


@case()
def values_constant_scores() -> None:
    d = toy(100)
    rep = evaluate({"y": d["y"], "p": np.full(100, 0.3), "g": d["g"]}, label="y", score="p",
                   metrics=_metrics_all(), slices=["g"])
    close(row(rep)["roc_auc"], 0.5, "roc_auc of constant scores")


@case()
def values_tiny_score_differences() -> None:
    """Scores differing only in the last ulp still rank."""
    y = np.array([0, 1, 0, 1])
    base = 0.5
    p = np.array([base, np.nextafter(base, 1), np.nextafter(base, 0), base + 1e-16 * 3])
    rep = evaluate({"y": y, "p": p}, label="y", score="p", metrics=["roc_auc"])
    from sklearn.metrics import roc_auc_score

    close(row(rep)["roc_auc"], float(roc_auc_score(y, p)), "roc_auc at ulp distance")


@case(expect="typed", words=["duplicate|ambiguous", r"\bp\b"])
def values_duplicate_column_names() -> None:
    t = pa.table([pa.array([0, 1, 0, 1]), pa.array([0.1, 0.9, 0.2, 0.8]),
                  pa.array([0.9, 0.1, 0.8, 0.2])], names=["y", "p", "p"])
    evaluate(t, label="y", score="p")


@case()
def values_nan_in_binned_numeric_slice() -> None:
    a = _assay()
    d = toy(100)
    x = d["x"].copy()
    x[:7] = np.nan
    rep = evaluate({"y": d["y"], "p": d["p"], "x": x}, label="y", score="p",
                   slices=[a.bins("x", 3)], metrics=["accuracy"])
    n = dict(zip(rep.to_arrow().column("slice").to_pylist(),
                 rep.to_arrow().column("n").to_pylist(), strict=True))
    check(sum(v for k, v in n.items() if k != "overall") == 100, f"slices {n}")
