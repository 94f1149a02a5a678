"""The Report object: table layout, row order, long form, min_slice_size, exports, fbeta."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from conftest import ALL_METRICS, assert_row, assert_value, reference, rows_by_slice


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), 2)
    w = rng.uniform(0.5, 2.0, n)
    country = np.array(["US", "BR", "DE"])[rng.integers(0, 3, n)]
    device = np.array(["mobile", "desktop"])[rng.integers(0, 2, n)]
    age = rng.integers(18, 90, n).astype(np.float64)
    t = pa.table({"label": y, "score": s, "w": w, "country": country, "device": device, "age": age})
    return t, dict(y=y, s=s, w=w, country=country, device=device, age=age)


EDGES = [0, 31, 45, 60, 100]


def test_columns_order_and_types(assay):
    t, _ = _data()
    rep = assay.evaluate(
        t,
        label="label",
        score="score",
        weight="w",
        slices=["country", ("country", "device"), assay.bins("age", edges=EDGES)],
        metrics=["mcc", "accuracy", "f2"],
    )
    tab = rep.table
    assert isinstance(tab, pl.DataFrame)
    assert tab.columns == [
        "slice",
        "spec",
        "country",
        "device",
        "age",
        "age_lower",
        "age_upper",
        "n",
        "weight_sum",
        "mcc",
        "accuracy",
        "f2",
    ]
    assert tab.dtypes == [pl.String] * 5 + [pl.Float64] * 2 + [pl.UInt64] + [pl.Float64] * 4


def test_columns_without_weight_and_default_metrics(assay):
    t, _ = _data()
    tab = assay.evaluate(t, label="label", score="score").table
    assert tab.columns == ["slice", "spec", "n"] + ALL_METRICS
    assert tab.dtypes == [pl.String, pl.String, pl.UInt64] + [pl.Float64] * len(ALL_METRICS)
    assert tab.height == 1
    assert tab["slice"].to_list() == ["overall"]
    tab2 = assay.evaluate(t, label="label", score="score", metrics=None, slices=()).table
    assert tab2.equals(tab)


def test_feature_columns_in_order_of_first_use(assay):
    t, _ = _data()
    tab = assay.evaluate(
        t,
        label="label",
        score="score",
        slices=[("device", "country"), "country"],
        metrics=["accuracy"],
    ).table
    assert tab.columns == ["slice", "spec", "device", "country", "n", "accuracy"]


def test_row_order(assay):
    t, d = _data()
    rep = assay.evaluate(
        t,
        label="label",
        score="score",
        weight="w",
        slices=["device", "country", ("country", "device"), assay.bins("age", edges=EDGES)],
        metrics=["accuracy"],
    )
    tab = rep.table
    expected = (
        ["overall", "device=desktop", "device=mobile", "country=BR", "country=DE", "country=US"]
        + [f"country={c} & device={v}" for c in ["BR", "DE", "US"] for v in ["desktop", "mobile"]]
        + ["age=[0, 31)", "age=[31, 45)", "age=[45, 60)", "age=[60, 100]"]
    )
    assert tab["slice"].to_list() == expected
    assert tab["device"].to_list() == (
        [None, "desktop", "mobile", None, None, None] + ["desktop", "mobile"] * 3 + [None] * 4
    )
    assert tab["country"].to_list() == (
        [None, None, None, "BR", "DE", "US"] + ["BR", "BR", "DE", "DE", "US", "US"] + [None] * 4
    )
    assert tab["age"].to_list() == [None] * 12 + ["[0, 31)", "[31, 45)", "[45, 60)", "[60, 100]"]
    # n and weight_sum per row
    age = d["age"]
    masks = (
        [np.ones(len(age), bool), d["device"] == "desktop", d["device"] == "mobile"]
        + [d["country"] == c for c in ["BR", "DE", "US"]]
        + [
            (d["country"] == c) & (d["device"] == v)
            for c in ["BR", "DE", "US"]
            for v in ["desktop", "mobile"]
        ]
        + [
            (age >= 0) & (age < 31),
            (age >= 31) & (age < 45),
            (age >= 45) & (age < 60),
            (age >= 60) & (age <= 100),
        ]
    )
    assert tab["n"].to_list() == [int(m.sum()) for m in masks]
    np.testing.assert_allclose(
        tab["weight_sum"].to_numpy(), [d["w"][m].sum() for m in masks], rtol=1e-12
    )
    for r, m in zip(tab.to_dicts(), masks, strict=True):
        assert_value(
            r["accuracy"],
            reference(d["y"][m], d["s"][m], d["w"][m], 0.5, ["accuracy"])["accuracy"],
            r["slice"],
        )


def test_long_form(assay):
    t = pa.table(
        {
            "label": [0, 0, 1, 1, 0, 1, 0],
            "score": [0.1, 0.2, 0.9, 0.3, 0.7, 0.8, 0.4],
            "g": ["a", "a", "b", "b", "c", "c", "c"],
        }
    )
    rep = assay.evaluate(t, label="label", score="score", slices=["g"])
    tab = rep.table
    long = rep.long()
    assert isinstance(long, pl.DataFrame)
    assert long.columns == ["slice", "metric", "value", "note"]
    assert long.dtypes == [pl.String, pl.String, pl.Float64, pl.String]
    assert long.height == tab.height * len(ALL_METRICS)
    pairs = set(zip(long["slice"].to_list(), long["metric"].to_list(), strict=True))
    assert pairs == {(s, m) for s in tab["slice"].to_list() for m in ALL_METRICS}
    rows = rows_by_slice(rep)
    n_null = 0
    for r in long.to_dicts():
        assert_value(r["value"], rows[r["slice"]][r["metric"]], f"{r['slice']} {r['metric']}")
        if r["value"] is None:
            n_null += 1
            assert isinstance(r["note"], str) and r["note"].strip(), r
        else:
            assert r["note"] is None or r["note"] == "", r
            assert not math.isnan(r["value"])
    # g=a has no positives: recall, fnr, average_precision, roc_auc, balanced_accuracy,
    # mcc... are null
    assert n_null >= 6
    a_rows = {r["metric"]: r for r in long.filter(pl.col("slice") == "g=a").to_dicts()}
    for m in (
        "recall",
        "fnr",
        "average_precision",
        "roc_auc",
        "balanced_accuracy",
        "mcc",
        "precision",
        "f1",
    ):
        assert a_rows[m]["value"] is None, m
        assert a_rows[m]["note"], m
    assert a_rows["specificity"]["value"] == pytest.approx(1.0)
    assert a_rows["accuracy"]["value"] == pytest.approx(1.0)


def test_min_slice_size(assay):
    n = 30
    g = ["tiny"] * 2 + ["exact"] * 5 + ["big"] * 23
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = np.round(rng.random(n), 2)
    t = pa.table({"label": y, "score": s, "g": g})
    rep = assay.evaluate(t, label="label", score="score", slices=["g"], min_slice_size=5)
    rows = rows_by_slice(rep)
    assert rows["g=tiny"]["n"] == 2
    assert all(rows["g=tiny"][m] is None for m in ALL_METRICS)
    ga = np.array(g)
    for v in ("exact", "big"):  # n == k is kept
        m = ga == v
        assert rows[f"g={v}"]["n"] == int(m.sum())
        assert_row(rows[f"g={v}"], reference(y[m], s[m]), v)
    assert_row(rows["overall"], reference(y, s), "overall")
    long = rep.long().filter(pl.col("slice") == "g=tiny")
    assert long.height == len(ALL_METRICS)
    assert long["value"].null_count() == len(ALL_METRICS)
    for note in long["note"].to_list():
        assert "min_slice_size" in note, note


def test_min_slice_size_never_hides_overall(assay):
    t = pa.table({"label": [0, 1, 1], "score": [0.2, 0.7, 0.4], "g": ["a", "b", "b"]})
    rep = assay.evaluate(t, label="label", score="score", slices=["g"], min_slice_size=100)
    rows = rows_by_slice(rep)
    assert_row(rows["overall"], reference([0, 1, 1], [0.2, 0.7, 0.4]), "overall")
    assert rows["g=a"]["n"] == 1 and rows["g=b"]["n"] == 2
    assert all(rows["g=b"][m] is None for m in ALL_METRICS)


def test_exports_round_trip(assay):
    t, _ = _data(n=80, seed=3)
    rep = assay.evaluate(
        t,
        label="label",
        score="score",
        weight="w",
        slices=["country", assay.bins("age", edges=EDGES)],
        min_slice_size=3,
    )
    tab = rep.table
    # to_arrow
    at = rep.to_arrow()
    assert isinstance(at, pa.Table)
    assert at.column_names == tab.columns
    assert at.schema.field("n").type == pa.uint64()
    assert pl.from_arrow(at).equals(tab)
    # to_dict
    d = rep.to_dict()
    assert isinstance(d, dict)
    assert list(d) == tab.columns
    assert d == tab.to_dict(as_series=False)
    # to_json
    # The contract fixes no JSON layout: accept records, columns, or {"columns", "rows"}.
    j = json.loads(rep.to_json())
    if isinstance(j, dict) and "rows" in j:
        if "columns" in j:
            assert j["columns"] == tab.columns
        records = j["rows"]
        if "dropped" in j:
            assert j["dropped"] == rep.dropped
    elif isinstance(j, dict):
        assert list(j) == tab.columns
        records = [dict(zip(j, vals, strict=True)) for vals in zip(*j.values(), strict=True)]
    else:
        assert isinstance(j, list)
        records = j
    expected = tab.to_dicts()
    assert len(records) == len(expected)
    for got, exp in zip(records, expected, strict=True):
        assert list(got) == list(exp)
        for k, v in exp.items():
            if isinstance(v, float):
                assert got[k] == pytest.approx(v, rel=1e-15, abs=0), (k, got[k], v)
            else:
                assert got[k] == v, (k, got[k], v)


def test_json_has_no_nan(assay):
    t = pa.table({"label": [0, 0, 0], "score": [0.2, 0.3, 0.9]})
    s = assay.evaluate(t, label="label", score="score").to_json()

    def no_constants(c):
        raise AssertionError(f"non-JSON constant {c} in to_json output")

    json.loads(s, parse_constant=no_constants)


def test_dropped_defaults_to_zero(assay):
    t, _ = _data(n=20)
    assert assay.evaluate(t, label="label", score="score").dropped == 0


def test_fbeta(assay):
    assert assay.fbeta(2.0) == "f2"
    assert assay.fbeta(2) == "f2"
    assert assay.fbeta(0.5) == "f0.5"
    t, d = _data(n=200, seed=9)
    rep = assay.evaluate(
        t,
        label="label",
        score="score",
        weight="w",
        slices=["country"],
        metrics=[assay.fbeta(2.0), "f0.5", "f1", "f3"],
        threshold=0.4,
    )
    tab = rep.table
    assert tab.columns == ["slice", "spec", "country", "n", "weight_sum", "f2", "f0.5", "f1", "f3"]
    ms = ["f2", "f0.5", "f1", "f3"]
    rows = rows_by_slice(rep)
    assert_row(rows["overall"], reference(d["y"], d["s"], d["w"], 0.4, ms), "overall")
    for c in ["BR", "DE", "US"]:
        m = d["country"] == c
        assert_row(rows[f"country={c}"], reference(d["y"][m], d["s"][m], d["w"][m], 0.4, ms), c)


def test_metric_order_follows_request(assay):
    t, d = _data(n=50)
    ms = ["brier", "base_rate", "roc_auc", "fnr", "f0.5"]
    rep = assay.evaluate(t, label="label", score="score", metrics=ms)
    assert rep.table.columns == ["slice", "spec", "n"] + ms
    assert_row(rep.table.row(0, named=True), reference(d["y"], d["s"], None, 0.5, ms))
    assert sorted(rep.long()["metric"].to_list()) == sorted(ms)
