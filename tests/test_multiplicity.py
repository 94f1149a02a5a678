"""Honest gates across many slices: the corrections of ``Comparison`` (simultaneous max-T
bands, Holm, Benjamini-Hochberg) against independent references, and A/A and power
simulations of ``assert_not_worse``."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

import assay
from assay import _multiplicity as mt

# --------------------------------------------------------------------------------------------
# the corrections against references
# --------------------------------------------------------------------------------------------

p_values = st.lists(st.one_of(st.floats(0, 1), st.sampled_from([0.01, 0.05, 0.5, 1.0])),
                    min_size=1, max_size=40)


@given(p_values, st.lists(st.integers(0, 39), max_size=5))
def test_holm_and_bh_equal_statsmodels(ps, holes):
    p = np.array(ps)
    for h in holes:  # NaN cells are left out of the family
        if h < len(p):
            p[h] = np.nan
    ok = ~np.isnan(p)
    for how, method in ((mt.holm, "holm"), (mt.bh, "fdr_bh")):
        got = how(p)
        assert np.isnan(got[~ok]).all()
        if ok.any():
            want = multipletests(p[ok], method=method)[1]
            np.testing.assert_allclose(got[ok], want, rtol=1e-12, atol=1e-15)


def brute_max_t(delta, se, reps, level):
    """max-T written as loops, from the definition."""
    cells, b = reps.shape
    usable = [c for c in range(cells)
              if math.isfinite(delta[c]) and math.isfinite(se[c]) and se[c] > 0]
    m = []
    for j in range(b):
        vals = [abs(reps[c, j] - delta[c]) / se[c] for c in usable
                if not math.isnan(reps[c, j])]
        if vals:
            m.append(max(vals))
    q = float(np.quantile(m, level)) if m else float("nan")
    p, lo, hi = [], [], []
    for c in range(cells):
        if not (math.isfinite(delta[c]) and math.isfinite(se[c])):
            p.append(float("nan"))
            lo.append(float("nan"))
            hi.append(float("nan"))
            continue
        t = 0.0 if delta[c] == 0 else (math.inf if se[c] == 0 else abs(delta[c]) / se[c])
        if m:
            p.append(min(1.0, (1 + sum(x >= t for x in m)) / (len(m) + 1)))
        else:  # no usable replicate: a cell beyond doubt (se 0, delta not 0) is certain
            p.append(1 / (b + 1) if t == math.inf else 1.0)
        half = 0.0 if se[c] == 0 else q * se[c]
        lo.append(delta[c] - half)
        hi.append(delta[c] + half)
    return q, np.array(p), np.array(lo), np.array(hi)


@settings(max_examples=60)
@given(st.integers(1, 12), st.integers(2, 30), st.integers(0, 2**32 - 1), st.floats(0.5, 0.99))
def test_max_t_equals_its_definition(cells, b, seed, level):
    rng = np.random.default_rng(seed)
    reps = rng.normal(0, rng.uniform(0.1, 2, cells)[:, None], (cells, b))
    reps[rng.random((cells, b)) < 0.05] = np.nan
    delta = rng.normal(0, 1, cells)
    with warnings.catch_warnings():  # a cell whose replicates are all NaN has no spread
        warnings.simplefilter("ignore", RuntimeWarning)
        se = np.nanstd(reps, axis=1)
    # A constant cell (se 0), an undefined cell, an exact zero delta.
    if cells > 2:
        reps[0] = delta[0]
        se[0] = 0.0
        delta[1] = se[1] = np.nan
        delta[2] = 0.0
    got = mt.max_t(delta, se, reps, level)
    want = brute_max_t(delta, se, reps, level)
    assert (math.isnan(got[0]) and math.isnan(want[0])) or math.isclose(got[0], want[0],
                                                                        rel_tol=1e-12)
    for g, w in zip(got[1:], want[1:], strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15, equal_nan=True)


def test_one_sided_p_is_the_normal_tail_beyond_the_margin():
    from scipy.stats import norm

    delta = np.array([-0.3, 0.2, 0.0, np.nan, -0.5, 0.1])
    se = np.array([0.1, 0.05, 0.0, 0.1, 0.0, 0.2])
    lower = np.array([False, True, False, False, False, True])
    got = mt.one_sided_p(delta, se, 0.05, lower)
    want = [norm.cdf((-0.3 + 0.05) / 0.1), norm.cdf((0.05 - 0.2) / 0.05), 1.0, np.nan, 0.0,
            norm.cdf((0.05 - 0.1) / 0.2)]
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)


# --------------------------------------------------------------------------------------------
# the gate
# --------------------------------------------------------------------------------------------


def pair(seed: int, n: int = 12_000, slices: int = 120, broken: int | None = None):
    """Two models of equal quality (the same logit, independent noise), ``slices`` slices;
    with ``broken``, the new model is noise on that slice."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    z = rng.normal(size=n) + 1.2 * y
    g = rng.integers(0, slices, n)
    old = 1 / (1 + np.exp(-(z + rng.normal(0, 0.7, n))))
    new = 1 / (1 + np.exp(-(z + rng.normal(0, 0.7, n))))
    if broken is not None:
        new = np.where(g == broken, rng.random(n), new)
    return {"y": y, "old": old, "new": new, "g": g}


METRICS = ["accuracy", "roc_auc", "log_loss"]


def compare(data, bootstrap: int = 200, seed: int = 0) -> assay.Comparison:
    return assay.compare(data, label="y", scores={"old": "old", "new": "new"}, slices=["g"],
                         metrics=METRICS, bootstrap=bootstrap, seed=seed)


def fails(cmp: assay.Comparison, correction: str) -> bool:
    try:
        cmp.assert_not_worse(METRICS, correction=correction)
    except assay.RegressionDetected:
        return True
    return False


def test_a_a_gates_fail_at_their_level_only_when_corrected():
    # 200 seeded A/A data sets, 121 slices x 3 metrics = 363 cells each. A gate whose
    # confidence holds for all cells at once fails in at most 5% of them (plus Monte Carlo
    # slack: 3 standard deviations of a binomial(200, 0.05)); uncorrected per-slice intervals
    # fail almost always.
    runs = 200
    counts = {c: 0 for c in ("simultaneous", "holm", "bh", "none")}
    for seed in range(runs):
        cmp = compare(pair(seed), seed=seed)
        for c in counts:
            counts[c] += fails(cmp, c)
    slack = 3 * math.sqrt(runs * 0.05 * 0.95)
    assert counts["simultaneous"] <= runs * 0.05 + slack, counts
    assert counts["holm"] <= runs * 0.05 + slack, counts
    assert counts["bh"] <= runs * 0.05 + slack, counts  # all nulls true: FDR = FWER
    assert counts["none"] >= runs * 0.5, counts


def test_a_planted_regression_in_one_slice_is_caught():
    cmp = compare(pair(7, n=24_000, broken=13), bootstrap=300)
    for correction in ("simultaneous", "holm", "bh"):
        with pytest.raises(assay.RegressionDetected, match="g=13") as e:
            cmp.assert_not_worse("roc_auc", correction=correction)
        assert set(e.value.slices["slice"].to_list()) == {"g=13"}, correction
    with pytest.raises(assay.RegressionDetected,
                       match="in 1 cell.*by simultaneous 95% bands over 121 cell"):
        cmp.assert_not_worse("roc_auc")


def test_the_table_has_the_corrected_columns_for_every_cell():
    cmp = compare(pair(3, n=4000, slices=30))
    t = cmp.table
    i = t.columns.index("p_value")
    assert t.columns[i + 1:i + 4] == ["p_adjusted", "simultaneous_lo", "simultaneous_hi"]
    assert t.columns[t.columns.index("verdict") + 1] == "verdict_adjusted"
    assert cmp.replicates.shape == (t.height, 200)
    q, p, lo, hi = mt.max_t(t["delta"].to_numpy(), t["delta_se"].to_numpy(),
                            cmp.replicates, 0.95)
    np.testing.assert_array_equal(t["simultaneous_lo"].to_numpy(), lo)
    np.testing.assert_array_equal(t["p_adjusted"].to_numpy(), p)
    # Simultaneous bands hold every per-slice percentile interval's cells together: wider.
    wider = (t["simultaneous_hi"] - t["simultaneous_lo"]) >= (t["delta_hi"] - t["delta_lo"])
    assert wider.all()
    assert set(t["verdict_adjusted"].to_list()) <= {"better", "worse",
                                                    "no significant difference"}


def test_min_slice_size_skips_and_lists_small_slices():
    data = pair(5, n=24_000, slices=40, broken=2)
    data["g"] = data["g"].copy()
    data["g"][:300] = 100 + np.arange(300) % 10  # ten slices of 30 rows
    cmp = compare(data, bootstrap=300)
    with pytest.raises(assay.RegressionDetected,
                       match="10 cell.s. of slices with fewer than 100 rows were skipped") as e:
        cmp.assert_not_worse("roc_auc", min_slice_size=100)
    assert e.value.slices["slice"].to_list() == ["g=2"]
    cmp2 = compare(pair(6, n=24_000, slices=40) | {"g": data["g"]}, bootstrap=100)
    gate = cmp2.assert_not_worse("roc_auc", min_slice_size=100)
    skipped = gate.filter(gate["status"] == "skipped: n < min_slice_size")
    assert sorted(skipped["slice"].to_list()) == sorted(f"g={k}" for k in range(100, 110))
    assert skipped["lo"].null_count() == skipped.height
    gate = cmp2.assert_not_worse("roc_auc", min_slice_size=10**9)
    # As compare(min_slice_size=...): the overall row is never left out.
    assert gate["status"][0] == "not worse" and gate["slice"][0] == "overall"
    assert set(gate["status"][1:].to_list()) == {"skipped: n < min_slice_size"}


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"correction": "bonferroni"}, "correction must be one of"),
    ({"min_slice_size": -1}, "min_slice_size"),
    ({"metric": []}, "metric must be"),
    ({"metric": ["roc_auc", "nope"]}, "'nope' was not compared"),
    ({"metric": "base_rate"}, "no better or worse direction"),
])
def test_gate_arguments_are_checked(kwargs, match):
    cmp = compare(pair(1, n=2000, slices=5), bootstrap=50)
    with pytest.raises(assay.InvalidArgumentError, match=match):
        cmp.assert_not_worse(**kwargs)


def test_a_certain_difference_gates_and_reads_coherently():
    # Every replicate of a 0/1-perfect and a 0/1-wrong model differs by the same amount: the
    # standard error is 0, and every correction must still call it worse (not crash).
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    old = np.where(y == 1, 0.9, 0.1)
    data = {"y": y, "old": old, "new": 1 - old}
    cmp = assay.compare(data, label="y", scores={"old": "old", "new": "new"},
                        metrics=["accuracy"], bootstrap=50)
    row = cmp.table.row(0, named=True)
    assert row["delta"] == -1.0 and row["delta_se"] == 0.0
    assert row["simultaneous_lo"] == row["simultaneous_hi"] == -1.0
    assert row["verdict_adjusted"] == "worse" and row["p_adjusted"] is not None
    for correction in ("simultaneous", "holm", "bh", "none"):
        with pytest.raises(assay.RegressionDetected, match="accuracy"):
            cmp.assert_not_worse("accuracy", correction=correction)


def test_adjusted_p_values_are_never_below_the_rows_own_and_follow_the_correction():
    cmp = compare(pair(4, n=6000, slices=30, broken=3), bootstrap=200)
    for correction in ("simultaneous", "holm", "bh", "none"):
        c = cmp.with_correction(correction)
        t = c.table
        assert c.correction == correction
        ok = t["p_value"].is_not_null()
        assert (t.filter(ok)["p_adjusted"] >= t.filter(ok)["p_value"]).all(), correction
        # The bands are the max-T bands whatever the correction.
        assert t["simultaneous_lo"].to_list() == cmp.table["simultaneous_lo"].to_list()
        if correction == "none":
            assert t["verdict_adjusted"].to_list() == t["verdict"].to_list()
            assert t["p_adjusted"].to_list() == t["p_value"].to_list()
        broken = t.filter((t["slice"] == "g=3") & (t["metric"] == "roc_auc")).row(0, named=True)
        assert broken["verdict_adjusted"] == "worse", correction
    direct = assay.compare(pair(4, n=6000, slices=30, broken=3), label="y",
                           scores={"old": "old", "new": "new"}, slices=["g"], metrics=METRICS,
                           bootstrap=200, correction="holm")
    assert direct.table.equals(cmp.with_correction("holm").table)
    with pytest.raises(assay.InvalidArgumentError, match="correction must be one of"):
        cmp.with_correction("bonferroni")  # type: ignore[arg-type]


def test_the_replicates_stay_out_of_the_table_and_survive_pickling():
    import pickle

    cmp = compare(pair(2, n=2000, slices=5), bootstrap=40)
    assert "_delta_replicates" not in cmp.to_arrow().column_names
    assert "_delta_replicates" not in cmp.to_dict() and "_delta_replicates" not in cmp.to_json()
    assert not cmp.replicates.flags.writeable
    back = pickle.loads(pickle.dumps(cmp))
    assert back.table.equals(cmp.table)
    np.testing.assert_array_equal(back.replicates, cmp.replicates)
    assert back.assert_not_worse("roc_auc").equals(cmp.assert_not_worse("roc_auc"))


@pytest.mark.parametrize("name", ["p_adjusted", "simultaneous_lo", "verdict_adjusted",
                                  "_delta_replicates"])
def test_model_names_that_are_table_columns_are_refused(name):
    data = pair(1, n=500, slices=3)
    with pytest.raises(assay.InvalidArgumentError, match="also a column"):
        assay.compare(data, label="y", scores={"old": "old", name: "new"}, bootstrap=20)


def test_a_model_named_n_does_not_confuse_the_gate():
    data = pair(1, n=3000, slices=3)
    cmp = assay.compare(data, label="y", scores={"old": "old", "n": "new"}, slices=["g"],
                        metrics=["roc_auc"], bootstrap=30)
    gate = cmp.assert_not_worse("roc_auc", min_slice_size=500)
    sizes = dict(cmp.reports["old"].table.select("slice", "n").iter_rows())
    assert gate["n"].to_list() == [sizes[s] for s in gate["slice"].to_list()]
    assert set(gate["status"].to_list()) == {"not worse"}
