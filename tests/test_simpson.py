"""Simpson's paradox: the kidney-stone and Berkeley admissions examples, the majority/minority
accuracy gap, both layouts, weights and bad input."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import assay


def _cases(cells, group, stratum, outcome):
    """One row per case from (group, stratum, n, successes) cells."""
    return pl.concat([
        pl.DataFrame({group: [g] * n, stratum: [s] * n, outcome: [1] * k + [0] * (n - k)})
        for g, s, n, k in cells
    ])


KIDNEY = [("A", "small", 87, 81), ("A", "large", 263, 192),
          ("B", "small", 270, 234), ("B", "large", 80, 55)]

# Bickel et al. (1975): applicants and admission rates of men and women, departments A-F
BERKELEY = {"A": (825, 0.62, 108, 0.82), "B": (560, 0.63, 25, 0.68),
            "C": (325, 0.37, 593, 0.34), "D": (417, 0.33, 375, 0.35),
            "E": (191, 0.28, 393, 0.24), "F": (373, 0.06, 341, 0.07)}


def _berkeley():
    cells = []
    for dept, (nm, rm, nw, rw) in BERKELEY.items():
        cells.append(("men", dept, nm, round(nm * rm)))  # counts rebuilt from rounded rates
        cells.append(("women", dept, nw, round(nw * rw)))
    return _cases(cells, "sex", "dept", "admitted")


def test_kidney_stones(assay):
    df = _cases(KIDNEY, "treatment", "size", "success")
    res = assay.simpson(df, outcome="success", group="treatment", stratum="size")
    assert res.flagged and bool(res)
    assert res.groups == ("A", "B")
    assert res.aggregate_better == "B"
    assert res.reversed_strata == ["large", "small"]
    t = {r["stratum"]: r for r in res.table.to_dicts()}
    assert list(t) == ["overall", "large", "small"]
    assert (t["small"]["A_successes"], t["small"]["A_n"]) == (81, 87)
    assert (t["large"]["A_successes"], t["large"]["A_n"]) == (192, 263)
    assert (t["small"]["B_successes"], t["small"]["B_n"]) == (234, 270)
    assert (t["large"]["B_successes"], t["large"]["B_n"]) == (55, 80)
    assert t["overall"]["A_rate"] == pytest.approx(273 / 350)  # 78%
    assert t["overall"]["B_rate"] == pytest.approx(289 / 350)  # 83%
    assert round(t["small"]["A_rate"], 2) == 0.93 and round(t["large"]["A_rate"], 2) == 0.73
    assert round(t["small"]["B_rate"], 2) == 0.87 and round(t["large"]["B_rate"], 2) == 0.69
    assert t["small"]["better"] == t["large"]["better"] == "A"
    assert t["overall"]["better"] == "B" and not t["overall"]["reversed"]
    assert res.adjusted_delta < 0 < t["overall"]["delta"]  # adjusted for size, A is better
    assert assay.simpson(df, outcome="success", group="treatment", stratum="size",
                         rule="all").flagged
    text = repr(res)
    assert "REVERSAL FLAGGED" in text and "'B' has the higher" in text and "large, small" in text


def test_berkeley_admissions(assay):
    df = _berkeley()
    res = assay.simpson(df, outcome="admitted", group="sex", stratum="dept")
    t = {r["stratum"]: r for r in res.table.to_dicts()}
    assert list(t) == ["overall", "A", "B", "C", "D", "E", "F"]
    assert t["overall"]["men_rate"] == pytest.approx(0.45, abs=0.01)
    assert t["overall"]["women_rate"] == pytest.approx(0.30, abs=0.01)
    assert t["overall"]["men_n"] == 2691 and t["overall"]["women_n"] == 1835
    for dept, (nm, rm, nw, rw) in BERKELEY.items():
        assert t[dept]["men_n"] == nm and t[dept]["women_n"] == nw
        assert t[dept]["men_rate"] == pytest.approx(rm, abs=0.005)
        assert t[dept]["women_rate"] == pytest.approx(rw, abs=0.005)
    assert res.aggregate_better == "men"
    assert res.reversed_strata == ["A", "B", "D", "F"]  # women higher in four of six
    assert res.compared_strata == 6
    assert res.flagged  # "most" strata
    assert not assay.simpson(df, outcome="admitted", group="sex", stratum="dept",
                             rule="all").flagged
    assert res.adjusted_delta > 0  # standardized over departments, women are ahead


def _two_models():
    """Model A right on 98% of the majority and 80% of the minority; model B 95% on both."""
    n_maj, n_min = 900, 100
    group = np.r_[["majority"] * n_maj, ["minority"] * n_min]
    y = np.tile([0, 1], 500)

    def preds(right_maj, right_min):
        right = np.r_[np.arange(n_maj) < right_maj, np.arange(n_min) < right_min]
        return np.where(right, y, 1 - y)

    return {"y": y, "group": group, "a": preds(882, 80), "b": preds(855, 95)}


def test_majority_minority_gap_shows_in_the_slice_report(assay):
    d = _two_models()
    cmp_scores = {"y": d["y"], "group": d["group"], "a": d["a"].astype(float),
                  "b": d["b"].astype(float)}
    rep_a = assay.evaluate(cmp_scores, label="y", score="a", slices=["group"],
                           metrics=["accuracy"]).table
    rep_b = assay.evaluate(cmp_scores, label="y", score="b", slices=["group"],
                           metrics=["accuracy"]).table
    acc_a = dict(zip(rep_a["slice"], rep_a["accuracy"], strict=True))
    acc_b = dict(zip(rep_b["slice"], rep_b["accuracy"], strict=True))
    assert acc_a["overall"] == pytest.approx(0.962) and acc_b["overall"] == pytest.approx(0.95)
    assert acc_a["group=majority"] == pytest.approx(0.98)
    assert acc_a["group=minority"] == pytest.approx(0.80)  # the gap the aggregate hides
    assert acc_b["group=minority"] == pytest.approx(0.95)
    # the same through simpson, wide layout: one correctness column per model
    correct = pl.DataFrame({"group": d["group"], "a_ok": d["a"] == d["y"],
                            "b_ok": d["b"] == d["y"]})
    res = assay.simpson(correct, outcome={"A": "a_ok", "B": "b_ok"}, stratum="group")
    assert res.aggregate_better == "A"
    assert res.reversed_strata == ["minority"]
    assert not res.flagged  # one stratum of two is not "most"
    t = {r["stratum"]: r for r in res.table.to_dicts()}
    assert t["minority"]["A_rate"] == pytest.approx(0.80)
    assert t["minority"]["delta"] == pytest.approx(0.15)


def test_long_and_wide_layouts_agree(assay):
    d = _two_models()
    wide = pl.DataFrame({"group": d["group"], "a_ok": (d["a"] == d["y"]).astype(int),
                         "b_ok": (d["b"] == d["y"]).astype(int)})
    long = pl.concat([
        wide.select("group", pl.col("a_ok").alias("ok"), pl.lit("A").alias("model")),
        wide.select("group", pl.col("b_ok").alias("ok"), pl.lit("B").alias("model")),
    ])
    a = assay.simpson(wide, outcome={"A": "a_ok", "B": "b_ok"}, stratum="group")
    b = assay.simpson(long, outcome="ok", group="model", stratum="group")
    assert a.table.equals(b.table)


def test_weights_equal_repeated_rows(assay):
    df = _cases(KIDNEY, "treatment", "size", "success")
    agg = df.group_by("treatment", "size", "success").len().rename({"len": "w"})
    res_w = assay.simpson(agg, outcome="success", group="treatment", stratum="size", weight="w")
    res = assay.simpson(df, outcome="success", group="treatment", stratum="size")
    assert res_w.flagged == res.flagged
    np.testing.assert_allclose(res_w.table["A_rate"], res.table["A_rate"])
    np.testing.assert_allclose(res_w.table["B_successes"],
                               res.table["B_successes"].cast(pl.Float64))


def test_groups_pick_two_and_strata_order(assay):
    df = pl.DataFrame({"g": ["x", "y", "z"] * 4, "s": [3, 1, 2, None] * 3,
                       "o": [1, 0, 1, 1, 0, 0, 1, 1, 0, 1, 0, 1]})
    res = assay.simpson(df, outcome="o", group="g", stratum="s", groups=("z", "x"))
    assert res.groups == ("z", "x")
    assert res.table["stratum"].to_list() == ["overall", "1", "2", "3", "null"]
    assert res.table.columns[:4] == ["stratum", "z_n", "z_successes", "z_rate"]


def test_bad_input(assay):
    df = _cases(KIDNEY, "treatment", "size", "success")
    three = df.with_columns(pl.when(pl.int_range(pl.len()) < 5).then(pl.lit("C"))
                            .otherwise(pl.col("treatment")).alias("treatment"))
    with pytest.raises(assay.InvalidArgumentError, match="groups="):
        assay.simpson(three, outcome="success", group="treatment", stratum="size")
    with pytest.raises(assay.InvalidArgumentError, match="does not occur"):
        assay.simpson(df, outcome="success", group="treatment", stratum="size",
                      groups=("A", "Z"))
    with pytest.raises(assay.InvalidArgumentError, match="rule"):
        assay.simpson(df, outcome="success", group="treatment", stratum="size", rule="most")
    with pytest.raises(assay.InvalidArgumentError, match="group"):
        assay.simpson(df, outcome="success", stratum="size")
    with pytest.raises(assay.InvalidArgumentError, match="exactly two"):
        assay.simpson(df, outcome={"A": "success"}, stratum="size")
    with pytest.raises(assay.InvalidArgumentError, match="group=None"):
        assay.simpson(df, outcome={"A": "success", "B": "success"}, group="treatment",
                      stratum="size")
    with pytest.raises(assay.ColumnNotFoundError, match="stone"):
        assay.simpson(df, outcome="success", group="treatment", stratum="stone")
    with pytest.raises(assay.InvalidInputError, match="0/1"):
        assay.simpson(df.with_columns(pl.col("success") * 2), outcome="success",
                      group="treatment", stratum="size")
    with pytest.raises(assay.InvalidArgumentError, match="nulls"):
        assay.simpson(df.with_columns(pl.lit(None, dtype=pl.String).alias("treatment")),
                      outcome="success", group="treatment", stratum="size")


def test_strata_named_like_the_aggregate_or_null_stay_separate():
    df = pl.DataFrame({"g": list("AABBAB"), "s": ["overall", "x", "overall", "x", "x", "overall"],
                       "o": [1, 0, 0, 1, 1, 0]})
    res = assay.simpson(df, outcome="o", group="g", stratum="s")
    assert res.table.height == 3  # the aggregate, then the strata "overall" and "x"
    assert res.table["A_n"].to_list() == [3, 1, 2]
    df2 = df.with_columns(pl.Series("s", ["null", None, "null", None, "x", "x"]))
    res2 = assay.simpson(df2, outcome="o", group="g", stratum="s")
    assert res2.table.height == 4 and res2.table["A_n"].to_list()[0] == 3
