"""Regression (``task="regression"``): non-finite labels, predictions and interval bounds,
values outside a metric's domain, huge and tiny values, extreme weights, wrong column types,
corrupt regression states, options of the other task."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
from _harness import add, case, check, close, evaluate, row, same_metrics


def _assay() -> Any:
    import assay

    return assay


def _data(n: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.gamma(2.0, 5.0, n)
    p = y * rng.lognormal(0, 0.2, n)
    return {"y": y, "p": p, "lo": 0.8 * p, "hi": 1.25 * p, "w": rng.random(n) + 0.5,
            "g": rng.choice(np.array(["a", "b", "c"]), n)}


KW = dict(task="regression", label="y", prediction="p", slices=["g"])


# --- non-finite values, raise and drop --------------------------------------------------------

def _bad(column: str, value: float | None, policy: str):  # type: ignore[no-untyped-def]
    def body() -> None:
        d = _data()
        v = d[column].astype(object)
        v[[3, 77]] = value
        t = pa.table({**{k: d[k] for k in d if k != column},
                      column: pa.array(list(v), pa.float64())})
        kw = dict(KW, lower="lo", upper="hi") if column in ("lo", "hi") else dict(KW)
        rep = evaluate(t, nan_policy=policy, **kw)
        keep = np.ones(200, bool)
        keep[[3, 77]] = False
        ref = evaluate({k: x[keep] for k, x in d.items()}, **kw)
        check(rep.dropped == 2, f"dropped={rep.dropped}, expected 2")
        same_metrics(rep, ref, f"{column}={value} dropped")

    return body


for _col in ("y", "p", "lo"):
    for _v, _name in ((math.nan, "nan"), (math.inf, "inf"), (None, "null")):
        add(f"regression-{_col}-{_name}-raise", _bad(_col, _v, "raise"), expect="typed",
            words=[rf'"{_col}"', r"nan|inf|null", "row 3"])
        add(f"regression-{_col}-{_name}-drop", _bad(_col, _v, "drop"))


# --- domains -----------------------------------------------------------------------------------

@case(expect="typed", words=['"p"', ">= 0", "row 5"])
def regression_msle_negative_prediction() -> None:
    d = _data()
    d["p"][5] = -0.25
    evaluate(d, metrics=["msle"], **KW)


@case(expect="typed", words=['"y"', "gamma_deviance", "> 0", "row 9"])
def regression_gamma_deviance_zero_label() -> None:
    d = _data()
    d["y"][9] = 0.0
    evaluate(d, metrics=["gamma_deviance"], **KW)


@case(expect="typed", words=['"p"', "power 1.5", "> 0"])
def regression_tweedie_zero_prediction() -> None:
    d = _data()
    d["p"][0] = 0.0
    evaluate(d, metrics=["tweedie_deviance"], power=1.5, **KW)


@case(expect="typed", words=["power", "<= 0 or >= 1"])
def regression_power_between_0_and_1() -> None:
    evaluate(_data(), metrics=["tweedie_deviance"], power=0.5, **KW)


@case(expect="typed", words=['"lo"', "exceeds the upper bound", "row 4"])
def regression_lower_above_upper() -> None:
    d = _data()
    d["lo"][4] = d["hi"][4] + 1.0
    evaluate(d, lower="lo", upper="hi", **KW)


@case(expect="typed", words=["quantile", "between 0 and 1"])
def regression_pinball_at_one() -> None:
    evaluate(_data(), metrics=["pinball@1"], **KW)


# --- extreme values ----------------------------------------------------------------------------

@case()
def regression_values_beyond_float64() -> None:
    """Errors of 2e308 overflow: null with a note, never NaN or inf in a column."""
    rep = evaluate({"y": [-1e308, 1e308, 0.0], "p": [1e308, -1e308, 0.0]},
                   task="regression", label="y", prediction="p")
    check(row(rep)["mae"] is None, "mae of overflowing errors should be null")


@case()
def regression_labels_around_1e15() -> None:
    """A spread of 1 around 1e15: R^2 and Pearson keep their digits."""
    rng = np.random.default_rng(1)
    y = 1e15 + np.round(rng.random(10_000) * 64)  # exact in float64
    p = y + np.round(rng.normal(0, 4, 10_000))
    rep = evaluate({"y": y, "p": p}, task="regression", label="y", prediction="p",
                   metrics=["r2", "pearson"])
    ys, ps = y - 1e15, p - 1e15
    want = 1 - np.sum((ps - ys) ** 2) / np.sum((ys - ys.mean()) ** 2)
    close(row(rep)["r2"], want, "r2 around 1e15")


@case()
def regression_weights_scaled_by_1e300() -> None:
    """Scaling every weight leaves every metric as it is."""
    d = _data()
    a = evaluate(d, weight="w", **KW)
    b = evaluate(dict(d, w=d["w"] * 1e300), weight="w", **KW)
    same_metrics(a, b, "weights x 1e300")


@case()
def regression_one_row_slices_and_constant_labels() -> None:
    rep = evaluate({"y": [1.0, 1.0, 1.0, 5.0], "p": [1.0, 2.0, 0.0, 5.0],
                    "g": ["a", "a", "a", "b"]}, **KW)
    check(row(rep, "g=a")["r2"] is None and row(rep, "g=b")["mae"] == 0.0,
          "constant labels: r2 null; one exact row: mae 0")


# --- types -------------------------------------------------------------------------------------

@case(expect="typed", words=['"y"', "label"])
def regression_string_labels() -> None:
    evaluate({"y": ["1.5", "2"], "p": [1.0, 2.0]}, task="regression", label="y",
             prediction="p")


@case(expect="typed", words=["prediction", "column"])
def regression_prediction_not_a_name() -> None:
    evaluate({"y": [1.0], "p": [1.0]}, task="regression", label="y", prediction=["p"])


@case(expect="typed", words=["threshold", "task='binary'"])
def regression_with_a_threshold() -> None:
    evaluate(_data(), threshold=0.3, **KW)


@case(expect="typed", words=["roc_auc", "not a regression metric"])
def regression_with_a_binary_metric() -> None:
    evaluate(_data(), metrics=["roc_auc"], **KW)


@case(expect="typed", words=["all 2 rows were dropped"])
def regression_all_rows_dropped() -> None:
    evaluate({"y": [math.nan, math.nan], "p": [1.0, 2.0]}, task="regression", label="y",
             prediction="p", nan_policy="drop")


# --- states ------------------------------------------------------------------------------------

def _state_bytes() -> bytes:
    a = _assay()
    spec = a.Spec(label="y", prediction="p", task="regression", slices=["g"],
                  metrics=["mae", "r2", "median_absolute_error"], bootstrap=20, row_id="i")
    d = _data()
    d["i"] = np.arange(200)
    return bytes(spec.accumulate(d).to_bytes())


@case(expect="typed", words=["state"])
def regression_state_truncated() -> None:
    _assay().PartialState.from_bytes(_state_bytes()[:-17])


@case(expect="typed", words=["state"])
def regression_state_bit_flip() -> None:
    b = bytearray(_state_bytes())
    b[len(b) // 2] ^= 0x10
    _assay().PartialState.from_bytes(bytes(b))


@case(expect="typed", words=["spec"])
def regression_state_merged_with_a_binary_state() -> None:
    a = _assay()
    d = _data()
    d["i"] = np.arange(200)
    d["b"] = (d["y"] > 10).astype(np.int8)
    reg = a.Spec(label="y", prediction="p", task="regression").accumulate(d)
    binary = a.Spec(label="b", score="hi", metrics=["accuracy"], threshold=10).accumulate(d)
    a.merge([reg, binary])
