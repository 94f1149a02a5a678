"""assay.discover_regressions: the paired search for slices where a model got worse than a
reference model on the same rows.

Checked against the brute-force reference in tests/regressions_reference.py (exact top-k,
every statistic, Holm/BH over the family the search scores, dedupe), on a planted scenario
(assay.demo.make_comparison_data: the candidate is broken for channel=partner), for
determinism (threads, batches), bad input and nan_policy.

Tests with "reference" in their name check the brute-force reference itself and run without
the engine. A test marked ``xfail(strict=True)`` with a reason starting "BUG:" documents a bug
of the implementation (it fails today; it will XPASS, and so fail, once the bug is fixed).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import regressions_reference as rref
import scipy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hs
from sklearn import metrics as skm
from statsmodels.stats.multitest import multipletests

import assay
import assay._discovery as disc
from assay.demo import make_comparison_data
from assay.errors import (
    AssayError,
    ColumnNotFoundError,
    InvalidArgumentError,
    InvalidInputError,
)

FEATS = ["f0", "f1", "f2", "f3", "f4"]
DEMO_FEATURES = ["country", "device", "channel", "plan", "gender"]
DEMO_SCORES = {"prod": "p_old", "cand": "p_new"}


# ----------------------------------------------------------------------------------------------
# data and helpers
# ----------------------------------------------------------------------------------------------


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def pair_data(seed: int, n: int = 3000, domains=(3, 4, 2, 3, 5), dyadic: bool = False) -> dict:
    """Features f0..f4 (strings, uneven frequencies), 0/1 labels ``y`` and two models'
    probabilities: ``p_ref`` and ``p_new`` equally good except where ``p_new`` is degraded
    (f0=v0; f1=v1 & f2=v0; f3=v0 & f4=v1 & f1=v0) and a segment (f4=v0) that is hard for
    both. ``dyadic``: probabilities rounded to multiples of 1/8, so that squared and 0/1 errors
    and their sums are exact in binary (ties in score are then exact)."""
    rng = np.random.default_rng(seed)
    cols: dict = {}
    for i, dom in enumerate(domains):
        p = rng.dirichlet(np.full(dom, 3.0))
        cols[f"f{i}"] = np.array([f"v{j}" for j in range(dom)])[rng.choice(dom, n, p=p)]
    z = rng.normal(0, 1, n)
    y = (rng.random(n) < _sigmoid(1.6 * z)).astype(np.int64)

    def model():
        return _sigmoid(1.6 * (z + rng.normal(0, 0.6, n)) / 1.3)

    p_ref, p_new = model(), model()
    weak = _sigmoid(1.6 * (0.3 * z + rng.normal(0, 1.0, n)))
    bad = ((cols["f0"] == "v0")
           | ((cols["f1"] == "v1") & (cols["f2"] == "v0"))
           | ((cols["f3"] == "v0") & (cols["f4"] == "v1") & (cols["f1"] == "v0")))
    p_new = np.where(bad, weak, p_new)
    hard = cols["f4"] == "v0"
    p_ref = np.where(hard, rng.uniform(0.05, 0.95, n), p_ref)
    p_new = np.where(hard, rng.uniform(0.05, 0.95, n), p_new)
    if dyadic:
        p_ref, p_new = np.round(p_ref * 8) / 8, np.round(p_new * 8) / 8
    cols.update(y=y, p_ref=p_ref, p_new=p_new)
    return cols


def regress(data, *, features=FEATS, label="y", model="p_new", reference="p_ref",
            **kw) -> pl.DataFrame:
    """The public function, with the model names equal to the columns."""
    t = data if isinstance(data, pa.Table) else pa.table(data)
    return assay.discover_regressions(t, label=label, scores=[reference, model],
                                      features=features, **kw)


def internal(data, *, features=FEATS, label="y", model="p_new", reference="p_ref",
             task="binary", ci=0.95, correction="holm", **kw) -> disc.Discovery:
    """The same search through ``_discover`` (to read ``n_scored``, ``dropped``, ``edges``)."""
    t = data if isinstance(data, pa.Table) else pa.table(data)
    out = {"score": model} if task == "binary" else {"prediction": model}
    return disc._discover(t, label=label, task=task, features=features,
                          paired=(reference, ci, correction), **out, **kw)


def brute(data, *, features=FEATS, label="y", model="p_new", reference="p_ref",
          error="log_loss", threshold=0.5, task="binary", **kw) -> rref.Reference:
    d, b = rref.paired_errors(error, data[label], data[model], data[reference], threshold, task)
    return rref.discover({f: data[f] for f in features}, d, b, **kw)


def _feature_values(table: pl.DataFrame) -> list:
    return [[(p["feature"], p["value"]) for p in ps] for ps in table["predicates"].to_list()]


def _close(found: pl.DataFrame, expected: pl.DataFrame, col: str, rtol: float, atol: float,
           skip=None, what: str = "") -> None:
    got, exp = found[col].to_list(), expected[col].to_list()
    for i, (a, b) in enumerate(zip(got, exp, strict=True)):
        if skip is not None and skip[i]:
            continue
        where = f"{what} {col} of {found['slice'][i]!r}"
        if b is None:
            assert a is None, f"{where}: expected null, got {a!r}"
        else:
            assert a is not None and not math.isnan(a), f"{where}: expected {b!r}, got {a!r}"
            assert a == pytest.approx(b, rel=rtol, abs=atol), where


def assert_same(found: pl.DataFrame, r: rref.Reference, *, adjusted: bool = True,
                strict_constant: bool = True, what: str = "") -> None:
    """The engine's table against the reference's: same slices in the same order, the same
    statistics. ``adjusted``: also p_adjusted/significant (only where the reference family is
    the one the engine scores). ``strict_constant=False`` leaves out effect_size and the
    interval of slices whose differences are all equal (see the xfail test below)."""
    expected = r.top
    assert found.columns == list(disc.REGRESSION_COLUMNS), what
    got, exp = found["slice"].to_list(), expected["slice"].to_list()
    assert got == exp, f"{what}\n got: {got}\n exp: {exp}"
    assert found["rank"].to_list() == list(range(1, found.height + 1)), what
    assert found["level"].to_list() == expected["level"].to_list(), what
    assert found["size"].to_list() == expected["size"].to_list(), what
    assert _feature_values(found) == _feature_values(expected), what
    skip = None
    if not strict_constant:
        by = r.by_slice()
        skip = [by[s]["size"] >= 2 and by[s]["sd"] == 0 for s in got]
    _close(found, expected, "support", 1e-15, 0, what=what)
    for c in ("error_reference", "error_model", "delta", "contribution"):
        _close(found, expected, c, 1e-9, 1e-12, what=what)
    for c in ("delta_lo", "delta_hi"):
        _close(found, expected, c, 1e-9, 1e-12, skip=skip, what=what)
    _close(found, expected, "effect_size", 1e-8, 1e-12, skip=skip, what=what)
    _close(found, expected, "p_value", 1e-6, 1e-300, what=what)
    if adjusted:
        _close(found, expected, "p_adjusted", 1e-6, 1e-300, what=what)
        assert found["significant"].to_list() == expected["significant"].to_list(), what


def assert_adjusted_consistent(d: disc.Discovery, r: rref.Reference, ci: float = 0.95,
                               correction: str = "holm") -> None:
    """What holds of p_adjusted whatever candidates were pruned: an adjustment over a family
    of ``n_scored`` p-values that holds the reported ones, between the level-1 slices with
    enough rows and the whole lattice."""
    t = d.table
    level1 = sum(1 for s in r.slices if s["level"] == 1)
    if t.height:
        assert min(level1, len(r.family)) <= d.n_scored <= len(r.family)
    p, q = t["p_value"].to_numpy(), t["p_adjusted"].to_numpy()
    if correction == "none":
        np.testing.assert_array_equal(q, p)
    else:
        assert np.all(q >= p * (1 - 1e-12)) and np.all(q <= 1.0)
        assert np.all(q <= np.minimum(1.0, p * d.n_scored) * (1 + 1e-9))
        order = np.argsort(p, kind="stable")
        assert np.all(np.diff(q[order]) >= -1e-15), "p_adjusted must be monotone in p_value"
    assert t["significant"].to_list() == [bool(x <= (1 - ci) / 2) for x in q]


# ----------------------------------------------------------------------------------------------
# the reference itself (no engine)
# ----------------------------------------------------------------------------------------------


def test_reference_hand_computed_example():
    # g=a: d = 1, 3, 2 (mean 2, sd 1); g=b: d = -1, 0, -2 (mean -1, sd 1); n = 6.
    g = ["a", "a", "a", "b", "b", "b"]
    d = np.array([1.0, 3.0, 2.0, -1.0, 0.0, -2.0])
    base = np.array([0.5, 0.5, 1.0, 2.0, 2.0, 2.0])
    r = rref.discover({"g": g}, d, base, k=5, max_level=1, min_support=1, ci=0.9)
    assert r.top["slice"].to_list() == ["g=a"]
    row = r.top.row(0, named=True)
    z = st.norm.ppf(0.95)
    se = 1 / math.sqrt(3)
    assert row["delta"] == 2.0 and row["contribution"] == 1.0
    assert row["error_reference"] == pytest.approx(2 / 3) and row["error_model"] == pytest.approx(
        8 / 3)
    assert row["delta_lo"] == pytest.approx(2 - z * se) and row["delta_hi"] == pytest.approx(
        2 + z * se)
    assert row["effect_size"] == pytest.approx(2.0)
    p_a = st.norm.sf(2 / se)
    assert row["p_value"] == pytest.approx(p_a, rel=1e-12)
    # Holm over the family {g=a, g=b}: p_b = sf(-1/se) ~ 0.96; the smaller is doubled.
    assert row["p_adjusted"] == pytest.approx(2 * p_a, rel=1e-12)
    assert r.by_slice()["g=b"]["p_adjusted"] == pytest.approx(st.norm.sf(-1 / se), rel=1e-12)
    assert row["significant"] == bool(2 * p_a <= 0.05)


def test_reference_conventions():
    assert rref.paired_p(1, 5.0, math.nan) == 1.0
    assert rref.paired_p(4, 0.5, 0.0) == 0.0
    assert rref.paired_p(4, 0.0, 0.0) == 1.0
    assert rref.paired_p(4, -0.5, 0.0) == 1.0
    assert rref.paired_p_of(np.array([1.0, 2.0, 3.0])) == pytest.approx(
        st.norm.sf(2 / (1 / math.sqrt(3))))
    np.testing.assert_allclose(rref.adjust([0.01, 0.04, 0.03, 0.5], "holm"),
                               [0.04, 0.09, 0.09, 0.5])
    np.testing.assert_allclose(rref.adjust([0.01, 0.04, 0.03, 0.5], "bh"),
                               [0.04, 0.16 / 3, 0.16 / 3, 0.5])
    # log loss clips at 2**-52, as the engine and discovery_reference
    e = rref.model_errors("log_loss", [1, 0], [0.0, 1.0])
    np.testing.assert_allclose(e, -np.log(2.0**-52))
    np.testing.assert_array_equal(rref.model_errors("absolute", [1.0, 2.0], [3.0, 1.5],
                                                    task="regression"), [2.0, 0.5])


def test_reference_sliceline_family_skips_children_of_slices_that_never_got_worse():
    # h=y never gets worse (d <= 0): a search does not extend it, so g=a & h=y is not scored.
    g = ["a", "a", "b", "b", "a", "b"]
    h = ["x", "y", "x", "y", "y", "y"]
    d = np.array([1.0, -1.0, 2.0, 0.0, -0.5, -1.0])
    r = rref.discover({"g": g, "h": h}, d, np.zeros(6), k=100, max_level=2, min_support=1,
                      family="sliceline")
    lattice = rref.discover({"g": g, "h": h}, d, np.zeros(6), k=100, max_level=2,
                            min_support=1, family="lattice")
    assert len(lattice.family) == lattice.lattice_size == 4 + 4
    names = {s["slice"] for s in r.slices if s["pairs"] in set(r.family)}
    assert names == {"g=a", "g=b", "h=x", "h=y", "g=a & h=x", "g=b & h=x"}


def test_reference_dedupe_drops_a_slice_that_is_worse_only_through_a_slice_above():
    rng = np.random.default_rng(0)
    n = 400
    a = rng.integers(0, 2, n)
    b = rng.integers(0, 2, n)  # neutral: b=1 holds half of the broken a=1 rows
    c = np.where(a == 0, rng.integers(0, 2, n), 0)  # a second regression, outside a=1
    noise = rng.normal(0, 0.3, n)
    d = noise + 4.0 * (a == 1)
    plain = rref.discover({"a": a, "b": b}, d, np.zeros(n), k=5, max_level=1, min_support=1)
    assert set(plain.top["slice"].to_list()[1:3]) == {"b=0", "b=1"}
    kept = rref.discover({"a": a, "b": b}, d, np.zeros(n), k=5, max_level=1, min_support=1,
                         dedupe=True)
    assert kept.top["slice"].to_list()[0] == "a=1"
    assert not {"b=0", "b=1"} & set(kept.top["slice"].to_list())
    d = noise + 4.0 * (a == 1) + 1.0 * (c == 1)
    # disjoint from a=1: kept whatever its p-value against a=1's rows
    kept = rref.discover({"a": a, "c": c}, d, np.zeros(n), k=5, max_level=1, min_support=1,
                         dedupe=True)
    assert kept.top["slice"].to_list()[:2] == ["a=1", "c=1"]


# ----------------------------------------------------------------------------------------------
# exact top-k and statistics against brute force
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("min_support", [0.01, 0.05, 40])
@pytest.mark.parametrize("k", [1, 7, 25])
def test_top_k_equals_brute_force_log_loss(seed, min_support, k):
    data = pair_data(seed)
    kw = dict(k=k, max_level=3, min_support=min_support)
    found = regress(data, dedupe=False, **kw)
    r = brute(data, **kw)
    assert found.height == min(k, sum(1 for s in r.slices if s["contribution"] > 0))
    assert found.height > 0
    assert_same(found, r, adjusted=False, what=f"seed={seed} k={k}")
    d = internal(data, dedupe=False, **kw)
    assert d.table.equals(found)
    assert d.min_support == r.min_support
    assert_adjusted_consistent(d, r)


@pytest.mark.parametrize("error", ["log_loss", "zero_one", "squared"])
@pytest.mark.parametrize("correction", ["holm", "bh", "none"])
def test_whole_family_p_adjusted_equals_statsmodels(error, correction):
    # k above the lattice's size: the top list never fills, the pruning threshold stays 0 and
    # the family is every slice a level-wise search reaches (rref's "sliceline" family).
    data = pair_data(7, n=2500, dyadic=error != "log_loss")
    kw = dict(k=100_000, max_level=3, min_support=5)
    d = internal(data, error=error, correction=correction, dedupe=False, **kw)
    r = brute(data, error=error, correction=correction, **kw)
    assert d.n_scored == len(r.family)
    assert d.table.height == sum(1 for s in r.slices if s["contribution"] > 0)
    assert_same(d.table, r, strict_constant=error != "squared", what=f"{error} {correction}")
    # the same adjustment, computed here straight from the family's p-values
    fam = set(r.family)
    p_fam = [s["p_value"] for s in r.slices if s["pairs"] in fam]
    method = {"holm": "holm", "bh": "fdr_bh"}.get(correction)
    if method is not None:
        adj = multipletests(p_fam, method=method)[1]
        best = int(np.argmin(p_fam))
        top_row = d.table.filter(pl.col("p_value") == d.table["p_value"].min()).row(0, named=True)
        assert top_row["p_adjusted"] == pytest.approx(adj[best], rel=1e-6, abs=1e-300)


def test_family_is_the_whole_lattice_when_every_slice_got_worse_somewhere():
    # the model is worse on every row (by a random amount): no slice is left unextended, so
    # the family is every slice with enough rows.
    data = pair_data(3, n=1500)
    y = data["y"]
    u = np.random.default_rng(3).uniform(0.5, 0.95, 1500)
    data["p_new"] = np.where(y == 1, data["p_ref"] * u, 1 - (1 - data["p_ref"]) * u)
    assert (rref.paired_errors("log_loss", y, data["p_new"], data["p_ref"])[0] > 0).all()
    kw = dict(k=100_000, max_level=3, min_support=1)
    d = internal(data, dedupe=False, **kw)
    r = brute(data, family="lattice", **kw)
    assert d.n_scored == r.lattice_size == len(r.family)
    assert d.table.height == r.lattice_size  # every slice is positive
    assert_same(d.table, r)


@pytest.mark.parametrize("seed", range(3))
def test_pruned_search_p_adjusted_properties(seed):
    data = pair_data(seed, n=4000)
    kw = dict(k=5, max_level=3, min_support=10, dedupe=False)
    r = brute(data, **kw)
    tables = {}
    for correction in ("holm", "bh", "none"):
        d = internal(data, correction=correction, **kw)
        assert_same(d.table, r, adjusted=False)
        assert_adjusted_consistent(d, r, correction=correction)
        # the search prunes, so it scores fewer candidates than a full level-wise search
        assert d.n_scored < len(r.family)
        tables[correction] = d.table
    # one family whatever the correction: Holm >= BH >= unadjusted
    holm, bh, none = (tables[c]["p_adjusted"].to_numpy() for c in ("holm", "bh", "none"))
    assert np.all(holm >= bh * (1 - 1e-12)) and np.all(bh >= none * (1 - 1e-12))
    assert np.any(holm > bh)


@pytest.mark.parametrize("error", ["zero_one", "squared"])
@pytest.mark.parametrize("seed", range(2))
def test_ties_in_score_broken_by_level_then_predicates(error, seed):
    # few rows, dyadic probabilities and f5 a relabelled copy of f0: many exact ties
    data = pair_data(seed, n=160, domains=(2, 3, 2, 3, 2), dyadic=True)
    data["f5"] = np.where(data["f0"] == "v0", "w0", "w1")
    feats = [*FEATS, "f5"]
    kw = dict(k=80, max_level=3, min_support=2)
    found = regress(data, features=feats, error=error, dedupe=False, **kw)
    r = brute(data, features=feats, error=error, **kw)
    scores = r.top["contribution"].to_list()
    assert len(scores) - len(set(scores)) >= 5, "the data must have ties"
    assert_same(found, r, adjusted=False, strict_constant=False)


def test_ties_hand_example():
    # a=x and b=p hold the same rows; so do c=z and a=x & b=p: equal contributions, broken
    # by level, then feature position.
    a = ["x", "x", "y", "y", "x", "y", "x", "y"]
    b = ["p", "p", "q", "q", "p", "q", "p", "q"]
    c = ["z", "z", "w", "w", "z", "w", "z", "w"]
    y = np.array([1, 0, 1, 0, 1, 0, 0, 1])
    ref_p = y.astype(float)  # the reference is always right
    new_p = np.where(np.array(a) == "x", 1.0 - y, y).astype(float)  # wrong on a=x
    t = pa.table({"a": a, "b": b, "c": c, "y": y, "old": ref_p, "new": new_p})
    found = assay.discover_regressions(t, label="y", scores=["old", "new"],
                                       features=["a", "b", "c"], error="zero_one", k=20,
                                       max_level=2, min_support=1, dedupe=False)
    assert found["slice"].to_list() == ["a=x", "b=p", "c=z", "a=x & b=p", "a=x & c=z",
                                        "b=p & c=z"]
    assert found["contribution"].to_list() == [0.5] * 6
    assert found["delta"].to_list() == [1.0] * 6


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [3, 10])
def test_dedupe_equals_brute_force(seed, k):
    data = pair_data(seed, n=4000)
    kw = dict(k=k, max_level=3, min_support=20)
    found = regress(data, dedupe=True, **kw)
    r = brute(data, dedupe=True, **kw)
    assert_same(found, r, adjusted=False, what=f"seed={seed}")
    plain = brute(data, dedupe=False, k=max(4 * k, k + 20), max_level=3, min_support=20)
    assert set(found["slice"]) < set(plain.top["slice"]), "dedupe must drop something"


@pytest.mark.parametrize("error", ["zero_one", "squared"])
def test_builtin_errors_against_brute_force(error):
    data = pair_data(11, n=3000)
    kw = dict(k=12, max_level=3, min_support=0.02)
    found = regress(data, error=error, dedupe=False, **kw)
    r = brute(data, error=error, **kw)
    assert found.height == 12
    assert_same(found, r, adjusted=False)


def test_zero_one_uses_the_threshold_for_both_models():
    data = pair_data(2, n=3000)
    kw = dict(k=10, max_level=2, min_support=10)
    found = regress(data, error="zero_one", threshold=0.3, dedupe=False, **kw)
    r = brute(data, error="zero_one", threshold=0.3, **kw)
    at_half = brute(data, error="zero_one", threshold=0.5, **kw)
    assert r.top["slice"].to_list() != at_half.top["slice"].to_list()
    assert_same(found, r, adjusted=False)


def test_per_model_errors_match_sklearn():
    # error_reference / error_model are each model's own mean log loss on the slice
    data = pair_data(4, n=3000)
    found = regress(data, k=8, max_level=2, min_support=30, dedupe=False)
    r = brute(data, k=8, max_level=2, min_support=30)
    y = np.asarray(data["y"])
    for row in found.iter_rows(named=True):
        m = rref.slice_mask(r, [(p["feature"], p["value"]) for p in row["predicates"]])
        assert m.sum() == row["size"]
        e_ref = skm.log_loss(y[m], data["p_ref"][m], labels=[0, 1])
        e_new = skm.log_loss(y[m], data["p_new"][m], labels=[0, 1])
        assert row["error_reference"] == pytest.approx(e_ref, rel=1e-9)
        assert row["error_model"] == pytest.approx(e_new, rel=1e-9)
        dd = rref.model_errors("log_loss", y[m], data["p_new"][m]) - rref.model_errors(
            "log_loss", y[m], data["p_ref"][m])
        res = st.ttest_1samp(dd, 0.0)  # the t statistic is delta / se
        assert row["delta"] / ((row["delta_hi"] - row["delta"]) / st.norm.ppf(0.975)) == (
            pytest.approx(float(res.statistic), rel=1e-9))
        assert row["p_value"] == pytest.approx(st.norm.sf(float(res.statistic)), rel=1e-6)


def test_binned_float_feature_against_brute_force():
    data = pair_data(5, n=3000)
    rng = np.random.default_rng(5)
    data["x"] = np.round(rng.normal(40, 12, 3000), 2)
    feats = ["f0", "f1", "x"]
    kw = dict(k=10, max_level=2, min_support=15)
    d = internal(data, features=feats, dedupe=False, **kw)
    assert set(d.edges) == {"x"}
    r = brute(data, features=feats, bins=d.edges, **kw)
    assert any("x=" in s for s in r.top["slice"].to_list())
    assert_same(d.table, r, adjusted=False)


def test_null_values_and_other_feature_types_against_brute_force():
    data = pair_data(12, n=3000)
    rng = np.random.default_rng(12)
    s = rng.choice(np.array(["BR", "NG", "US"], dtype=object), 3000)
    null = rng.random(3000) < 0.1
    s[null] = None
    wrong = np.where(data["y"] == 1, 0.1, 0.9)
    data["p_new"] = np.where(null & (rng.random(3000) < 0.5), wrong, data["p_new"])
    cols = {
        "s": pa.array(s, pa.string()),
        "i": pa.array(rng.integers(-2, 3, 3000)),
        "flag": pa.array(data["f0"] == "v0"),  # the broken segment, as a boolean
        "cat": pa.array(data["f1"]).dictionary_encode(),
        "y": pa.array(data["y"]), "p_ref": pa.array(data["p_ref"]),
        "p_new": pa.array(data["p_new"]),
    }
    feats = ["s", "i", "flag", "cat"]
    kw = dict(k=15, max_level=3, min_support=10)
    found = regress(pa.table(cols), features=feats, dedupe=False, **kw)
    d, b = rref.paired_errors("log_loss", data["y"], data["p_new"], data["p_ref"])
    r = rref.discover({f: cols[f] for f in feats}, d, b, **kw)
    assert {"flag=true", "s=null"} <= set(found["slice"].to_list()[:4])
    assert "s=null" in found["slice"].to_list()
    row = found.filter(pl.col("slice") == "s=null").row(0, named=True)
    assert row["predicates"] == [{"feature": "s", "value": None, "edges": None}]
    assert_same(found, r, adjusted=False)


def test_beam_search_statistics_and_wide_beam():
    data = pair_data(3, n=3000)
    kw = dict(k=15, min_support=10, dedupe=False)
    r = brute(data, k=100_000, min_support=10)
    by = r.by_slice()
    narrow = regress(data, method="beam", beam_width=1, **kw)
    assert narrow.height > 0
    for row in narrow.iter_rows(named=True):
        e = by[row["slice"]]
        for c in ("size", "delta", "contribution", "error_reference", "delta_lo",
                  "effect_size"):
            assert row[c] == pytest.approx(e[c], rel=1e-9), (row["slice"], c)
        assert row["p_value"] == pytest.approx(e["p_value"], rel=1e-6, abs=1e-300)
    c = narrow["contribution"].to_numpy()
    assert np.all(np.diff(c) <= 0)
    exact = regress(data, **kw)
    wide = regress(data, method="beam", beam_width=100_000, **kw)
    cols = [c for c in disc.REGRESSION_COLUMNS if c not in ("p_adjusted", "significant")]
    assert wide.select(cols).equals(exact.select(cols))


# ----------------------------------------------------------------------------------------------
# statistics: consistency and edge cases
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ci", [0.8, 0.95, 0.99])
def test_interval_and_significance_are_consistent(ci):
    data = pair_data(6, n=3000)
    found = regress(data, k=200, max_level=3, min_support=3, dedupe=False, ci=ci,
                    correction="none")
    alpha = (1 - ci) / 2
    z = st.norm.ppf(0.5 + ci / 2)
    assert found.height == 200
    assert (found["delta"] > 0).all() and (found["contribution"] > 0).all()
    n = 3000
    np.testing.assert_allclose(found["contribution"].to_numpy(),
                               found["delta"].to_numpy() * found["size"].to_numpy() / n,
                               rtol=1e-12)
    np.testing.assert_allclose(found["support"].to_numpy(), found["size"].to_numpy() / n,
                               rtol=1e-15)
    np.testing.assert_allclose(found["error_model"] - found["error_reference"],
                               found["delta"], rtol=1e-9, atol=1e-12)
    half = (found["delta_hi"] - found["delta"]).to_numpy()
    np.testing.assert_allclose((found["delta"] - found["delta_lo"]).to_numpy(), half,
                               rtol=1e-9, atol=1e-15)
    se = half / z
    np.testing.assert_allclose(found["p_value"].to_numpy(),
                               st.norm.sf(found["delta"].to_numpy() / se), rtol=1e-6)
    # docs: delta_lo > 0 exactly when p_value < (1 - ci) / 2
    lo_pos = (found["delta_lo"] > 0).to_list()
    assert lo_pos == [p < alpha for p in found["p_value"].to_list()]
    assert any(lo_pos) and not all(lo_pos)
    assert found["p_adjusted"].to_list() == found["p_value"].to_list()
    assert found["significant"].to_list() == [p <= alpha for p in found["p_value"]]
    # effect size: delta over the sd of the differences
    np.testing.assert_allclose(found["effect_size"].to_numpy(),
                               found["delta"].to_numpy() / (se * np.sqrt(found["size"])),
                               rtol=1e-9)


def test_ci_changes_the_interval_and_the_significance_level():
    # a slightly noisier model: small regressions everywhere, p-values of every size
    data = pair_data(1, n=3000)
    noise = np.random.default_rng(1).normal(0, 0.15, 3000)
    data["p_alt"] = _sigmoid(np.log(data["p_ref"] / (1 - data["p_ref"])) + noise)
    kw = dict(k=30, max_level=2, min_support=20, dedupe=False, correction="none",
              model="p_alt")
    a = regress(data, ci=0.95, **kw)
    b = regress(data, ci=0.5, **kw)
    assert a["slice"].to_list() == b["slice"].to_list()
    assert a["p_value"].to_list() == b["p_value"].to_list()
    wa = (a["delta_hi"] - a["delta_lo"]).to_numpy()
    wb = (b["delta_hi"] - b["delta_lo"]).to_numpy()
    np.testing.assert_allclose(wb / wa, st.norm.ppf(0.75) / st.norm.ppf(0.975), rtol=1e-9)
    assert b["significant"].to_list() == [q <= 0.25 for q in b["p_adjusted"]]
    assert b["significant"].sum() > a["significant"].sum()


def test_single_row_slice_has_null_interval_and_p_one():
    # g=c has one row, where the model is worse; n = 9
    g = ["a", "a", "a", "b", "b", "b", "b", "b", "c"]
    y = [1, 0, 1, 0, 1, 0, 1, 0, 1]
    old = [0.9, 0.2, 0.8, 0.1, 0.7, 0.3, 0.6, 0.4, 0.9]
    new = [0.9, 0.2, 0.8, 0.1, 0.7, 0.3, 0.6, 0.4, 0.2]
    t = pa.table({"g": g, "y": y, "old": old, "new": new})
    found = assay.discover_regressions(t, label="y", scores=["old", "new"], features="g",
                                       min_support=1, error="squared")
    assert found["slice"].to_list() == ["g=c"]
    row = found.row(0, named=True)
    assert row["size"] == 1
    assert row["delta"] == pytest.approx(0.8**2 - 0.1**2)
    assert row["contribution"] == pytest.approx((0.8**2 - 0.1**2) / 9)
    assert row["delta_lo"] is None and row["delta_hi"] is None and row["effect_size"] is None
    assert row["p_value"] == 1.0 and row["p_adjusted"] == 1.0 and row["significant"] is False


@pytest.mark.parametrize("error, old_p, new_p, n, delta", [
    # zero_one: every row of g=a is wrong for the model and right for the reference: d = 1
    ("zero_one", 0.1, 0.9, 50, 1.0),
    # squared: d = 0.3^2 - 0.2^2 = 0.05 on every row, not exact in binary: the one-pass sum
    # of squares leaves a rounding residue that must not count as variance
    ("squared", 0.2, 0.3, 100, 0.05),
])
def test_constant_differences_have_zero_sd(error, old_p, new_p, n, delta):
    g = np.array(["a"] * n + ["b"] * n)
    y = np.zeros(2 * n, dtype=np.int64)
    old = np.full(2 * n, old_p)
    new = np.r_[np.full(n, new_p), np.full(n, old_p)]
    t = pa.table({"g": g, "y": y, "old": old, "new": new})
    found = assay.discover_regressions(t, label="y", scores=["old", "new"], features="g",
                                       error=error, min_support=1)
    row = found.row(0, named=True)
    assert found.height == 1 and row["slice"] == "g=a" and row["size"] == n
    assert row["delta"] == pytest.approx(delta, rel=1e-12)
    assert row["effect_size"] is None, f"sd of constant differences is 0, got {row}"
    assert row["delta_lo"] == row["delta"] == row["delta_hi"]
    assert row["p_value"] == 0.0 and row["significant"] is True


def test_docstring_describes_the_z_test_and_the_one_sided_level():
    doc = " ".join(assay.discover_regressions.__doc__.split())
    assert "t-test" not in doc and "t-interval" not in doc
    assert "p_adjusted <= 1 - ci" not in doc
    assert "(1 - ci) / 2" in doc


def test_min_support_above_the_rows_gives_the_empty_table():
    found = regress(pair_data(0, n=500), min_support=501)
    assert found.height == 0 and found.columns == list(disc.REGRESSION_COLUMNS)
    assert regress(pair_data(0, n=500), min_support=500, max_level=1).height == 0


def test_nothing_got_worse_gives_the_empty_table():
    data = pair_data(0, n=500)
    data["p_new"] = data["p_ref"].copy()
    data["p_new"][:10] = np.where(data["y"][:10] == 1, 0.999, 0.001)  # better, never worse
    assert (rref.paired_errors("log_loss", data["y"], data["p_new"], data["p_ref"])[0]
            <= 0).all()
    d = internal(data)
    assert d.table.height == 0 and d.n_scored == 0
    assert d.table.columns == list(disc.REGRESSION_COLUMNS)
    assert d.table.schema["predicates"] == pl.List(pl.Struct(
        {"feature": pl.String, "value": pl.String, "edges": pl.List(pl.Float64)}))


def test_table_schema():
    found = regress(pair_data(0, n=1500), k=10)
    assert found.height > 0
    assert found.schema == pl.Schema({
        "rank": pl.UInt32, "slice": pl.String, "level": pl.UInt32,
        "predicates": pl.List(pl.Struct({"feature": pl.String, "value": pl.String,
                                          "edges": pl.List(pl.Float64)})),
        "size": pl.UInt64, "support": pl.Float64, "error_reference": pl.Float64,
        "error_model": pl.Float64, "delta": pl.Float64, "delta_lo": pl.Float64,
        "delta_hi": pl.Float64, "contribution": pl.Float64, "effect_size": pl.Float64,
        "p_value": pl.Float64, "p_adjusted": pl.Float64, "significant": pl.Boolean,
    })
    for label, preds, level in found.select("slice", "predicates", "level").iter_rows():
        assert label == " & ".join(f"{p['feature']}={p['value']}" for p in preds)
        assert len(preds) == level <= 3


# ----------------------------------------------------------------------------------------------
# randomized brute-force equality
# ----------------------------------------------------------------------------------------------


@hs.composite
def small_problems(draw):
    n = draw(hs.integers(12, 90))
    nf = draw(hs.integers(3, 4))
    feats = {}
    for i in range(nf):
        dom = draw(hs.integers(2, 4))
        values = [f"v{j}" for j in range(dom)] + ([None] if draw(hs.booleans()) else [])
        feats[f"f{i}"] = draw(hs.lists(hs.sampled_from(values), min_size=n, max_size=n))
    task = draw(hs.sampled_from(["binary", "regression"]))
    eighths = hs.integers(0, 8).map(lambda v: v / 8)  # exact in binary: exact ties
    if task == "binary":
        y = draw(hs.lists(hs.integers(0, 1), min_size=n, max_size=n))
        error = draw(hs.sampled_from(["zero_one", "squared"]))
    else:
        y = draw(hs.lists(hs.integers(0, 4).map(float), min_size=n, max_size=n))
        error = draw(hs.sampled_from(["absolute", "squared"]))
        eighths = hs.integers(0, 40).map(lambda v: v / 8)
    old = draw(hs.lists(eighths, min_size=n, max_size=n))
    new = draw(hs.lists(eighths, min_size=n, max_size=n))
    opts = dict(
        k=draw(hs.sampled_from([1, 3, 10])),
        max_level=draw(hs.integers(1, 3)),
        min_support=draw(hs.sampled_from([1, 2, 5, 0.1])),
        dedupe=draw(hs.booleans()),
        ci=draw(hs.sampled_from([0.9, 0.95])),
    )
    return feats, np.array(y), np.array(old), np.array(new), task, error, opts


@settings(max_examples=25, deadline=None)
@given(small_problems())
def test_random_problems_equal_brute_force(problem):
    feats, y, old, new, task, error, opts = problem
    cols = {**{f: pa.array(v, pa.string()) for f, v in feats.items()}, "y": y, "old": old,
            "new": new}
    t = pa.table(cols)
    names = list(feats)
    d_row, b_row = rref.paired_errors(error, y, new, old, task=task)

    found = assay.discover_regressions(t, label="y", scores={"old": "old", "new": "new"},
                                       features=names, task=task, error=error, **opts)
    r = rref.discover(feats, d_row, b_row, **opts)
    assert_same(found, r, adjusted=False, what=str(opts))

    # the whole family (k above the lattice): p_adjusted too
    full = {**opts, "k": 100_000, "dedupe": False}
    out = {"score": "new"} if task == "binary" else {"prediction": "new"}
    d = disc._discover(t, label="y", task=task, features=names, error=error, **out,
                       paired=("old", full.pop("ci"), "holm"), **full)
    r_full = rref.discover(feats, d_row, b_row, **{**opts, "k": 100_000, "dedupe": False})
    assert d.n_scored == len(r_full.family)
    assert_same(d.table, r_full, what=f"full {opts}")


# ----------------------------------------------------------------------------------------------
# regression task
# ----------------------------------------------------------------------------------------------


def regression_data(seed: int, n: int = 3000) -> dict:
    """House prices (assay.demo) with a second model: equally good, but biased for
    city=berlin & bedrooms >= 3."""
    t = assay.demo.make_regression_data(n, seed=seed).to_pydict()
    rng = np.random.default_rng(seed)
    price = np.asarray(t["price"])
    truth = np.asarray(t["pred"])
    old = np.round(truth * np.exp(rng.normal(0, 0.05, n)), -2)
    new = np.round(truth * np.exp(rng.normal(0, 0.05, n)), -2)
    bad = (np.asarray(t["city"]) == "berlin") & (np.asarray(t["bedrooms"]) >= 3)
    new = np.where(bad, new * 1.25, new)
    return {"price": price, "old": old, "new": new, "city": np.asarray(t["city"]),
            "bedrooms": np.asarray(t["bedrooms"]),
            "big": np.where(np.asarray(t["sqft"]) > 1500, "yes", "no")}


@pytest.mark.parametrize("error", [None, "absolute", "squared"])
def test_regression_task_against_brute_force(error):
    data = regression_data(0)
    feats = ["city", "bedrooms", "big"]
    kw = dict(k=10, max_level=3, min_support=10)
    found = assay.discover_regressions(pa.table(data), label="price",
                                       scores={"old": "old", "new": "new"}, features=feats,
                                       task="regression", error=error, dedupe=False, **kw)
    r = brute(data, features=feats, label="price", model="new", reference="old",
              error=error or "absolute", task="regression", **kw)
    assert_same(found, r, adjusted=False)
    top = regress(data, features=feats, label="price", model="new", reference="old",
                  task="regression", error=error, **kw)
    assert top["slice"][0] == "city=berlin" or top["slice"][0].startswith("city=berlin & ")
    assert top["significant"][0]


# ----------------------------------------------------------------------------------------------
# the planted scenario
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_broken_channel_is_found_first(seed):
    t = make_comparison_data(20_000, seed=seed)
    found = assay.discover_regressions(t, label="churned", scores=DEMO_SCORES,
                                       features=DEMO_FEATURES)
    assert found["slice"][0] == "channel=partner"
    row = found.row(0, named=True)
    assert row["significant"] and row["delta_lo"] > 0.1
    assert row["error_model"] > row["error_reference"]
    # dedupe: no slice is reported only because it holds partner rows
    assert "gender=female" not in found["slice"].to_list()
    assert "gender=male" not in found["slice"].to_list()


def test_without_dedupe_large_slices_ride_on_the_broken_channel():
    t = make_comparison_data(20_000, seed=0)
    plain = assay.discover_regressions(t, label="churned", scores=DEMO_SCORES,
                                       features=DEMO_FEATURES, dedupe=False, k=40)
    slices = plain["slice"].to_list()
    assert "gender=female" in slices and "gender=male" in slices
    # ... and they are worse only through channel=partner: outside it they are not
    cols = t.to_pydict()
    d, _ = rref.paired_errors("log_loss", cols["churned"], cols["p_new"], cols["p_old"])
    outside = (np.asarray(cols["gender"]) == "female") & (np.asarray(cols["channel"])
                                                          != "partner")
    assert rref.paired_p_of(d[outside]) > 0.025


def test_reverse_comparison_has_no_significant_slice_in_most_seeds():
    hits = 0
    for seed in range(6):
        t = make_comparison_data(20_000, seed=seed)
        found = assay.discover_regressions(t, label="churned",
                                           scores={"prod": "p_new", "cand": "p_old"},
                                           features=DEMO_FEATURES)
        assert "channel=partner" not in found["slice"].to_list()
        hits += bool(found["significant"].any())
    assert hits <= 1


def test_reference_argument_reverses_the_comparison():
    t = make_comparison_data(20_000, seed=1)
    default = assay.discover_regressions(t, label="churned", scores=DEMO_SCORES,
                                         features=DEMO_FEATURES, k=5)
    named = assay.discover_regressions(t, label="churned", scores=DEMO_SCORES,
                                       features=DEMO_FEATURES, k=5, reference="prod")
    assert default.equals(named)
    as_list = assay.discover_regressions(t, label="churned", scores=["p_old", "p_new"],
                                         features=DEMO_FEATURES, k=5)
    assert default.equals(as_list)
    rev = assay.discover_regressions(t, label="churned", scores=DEMO_SCORES,
                                     features=DEMO_FEATURES, k=5, reference="cand")
    swapped = assay.discover_regressions(t, label="churned", scores=["p_new", "p_old"],
                                         features=DEMO_FEATURES, k=5)
    assert rev.equals(swapped)
    assert "channel=partner" not in rev["slice"].to_list()
    # the reverse search is the brute force of the negated differences
    cols = {c: np.asarray(v) for c, v in t.to_pydict().items()}
    r = brute(cols, features=DEMO_FEATURES, label="churned", model="p_old",
              reference="p_new", k=5, max_level=3, min_support=0.01, dedupe=True)
    assert_same(rev, r, adjusted=False)


@pytest.mark.parametrize("same", [True, False])
def test_segment_hard_for_both_models_is_not_a_regression(same):
    # region=hard: both models predict noise there (the same noise, or independent noise of
    # the same size): discover_slices on the new model finds it, discover_regressions not.
    t = make_comparison_data(20_000, seed=4)
    rng = np.random.default_rng(44)
    n = t.num_rows
    region = rng.choice(np.array(["north", "south", "hard"]), n, p=[0.45, 0.4, 0.15])
    hard = region == "hard"
    noise_old = rng.uniform(0.03, 0.97, n)
    noise_new = noise_old if same else rng.uniform(0.03, 0.97, n)
    p_old = np.where(hard, noise_old, t["p_old"].to_numpy())
    p_new = np.where(hard, noise_new, t["p_new"].to_numpy())
    t = t.set_column(t.schema.get_field_index("p_old"), "p_old", pa.array(p_old))
    t = t.set_column(t.schema.get_field_index("p_new"), "p_new", pa.array(p_new))
    t = t.append_column("region", pa.array(region))
    feats = [*DEMO_FEATURES, "region"]

    alone = assay.discover_slices(t, label="churned", score="p_new", features=feats,
                                  error="log_loss", k=10)
    assert "region=hard" in alone["slice"].to_list()[:3]
    assert alone.filter(pl.col("slice") == "region=hard")["significant"][0]

    found = assay.discover_regressions(t, label="churned", scores=DEMO_SCORES,
                                       features=feats, k=10)
    assert found["slice"][0] == "channel=partner" and found["significant"][0]
    with_hard = [s for s in found["slice"].to_list() if "region=hard" in s]
    if same:  # d = 0 on every hard row: no slice of it can have a positive score
        plain = assay.discover_regressions(t, label="churned", scores=DEMO_SCORES,
                                           features=feats, k=1000, dedupe=False)
        assert not [s for s in plain["slice"].to_list() if "region=hard" in s]
    else:
        sig = found.filter(pl.col("slice").str.contains("region=hard"))["significant"]
        assert not sig.any(), with_hard


# ----------------------------------------------------------------------------------------------
# determinism, inputs and nan_policy
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dedupe", [False, True])
def test_same_bits_for_any_thread_count_and_batching(dedupe):
    t = make_comparison_data(20_000, seed=2)
    kw = dict(label="churned", scores=DEMO_SCORES, features=DEMO_FEATURES, k=30,
              min_support=100, dedupe=dedupe)
    one = assay.discover_regressions(t, n_threads=1, **kw)
    two = assay.discover_regressions(t, n_threads=2, **kw)
    assert one.height >= (1 if dedupe else 20)
    assert one.equals(two)
    for chunk in (777, 4096):
        reader = t.to_reader(max_chunksize=chunk)
        assert assay.discover_regressions(reader, n_threads=2, **kw).equals(one), chunk
    many = pa.Table.from_batches(t.to_batches(max_chunksize=1000))
    assert many.column(0).num_chunks == 20
    assert assay.discover_regressions(many, n_threads=3, **kw).equals(one)


def test_polars_and_pandas_inputs_agree():
    data = pair_data(8, n=2000)
    kw = dict(k=10, min_support=20)
    base = regress(data, **kw)
    df = pl.DataFrame(data)
    assert base.equals(assay.discover_regressions(df, label="y", scores=["p_ref", "p_new"],
                                                  features=FEATS, **kw))
    pd = pytest.importorskip("pandas")
    assert base.equals(assay.discover_regressions(pd.DataFrame(data), label="y",
                                                  scores=["p_ref", "p_new"], features=FEATS,
                                                  **kw))


@pytest.mark.parametrize("column", ["p_ref", "p_new", "y"])
def test_nan_policy_drop_equals_removing_the_rows(column):
    data = pair_data(9, n=2000)
    bad = np.zeros(2000, dtype=bool)
    bad[[3, 50, 51, 700, 1999]] = True
    # the only row with f1=v9: dropped, it must leave no trace
    data["f1"] = data["f1"].astype(object)
    data["f1"][700] = "v9"
    cols = {c: pa.array(v) for c, v in data.items()}
    if column == "y":
        cols["y"] = pa.array(np.asarray(data["y"]), mask=bad)
    else:
        v = np.asarray(data[column]).copy()
        v[bad] = np.nan
        cols[column] = pa.array(v)
    t = pa.table(cols)
    kw = dict(k=15, min_support=10)
    d = internal(t, nan_policy="drop", **kw)
    assert (d.rows, d.dropped) == (2000, 5)
    kept = pa.table({c: pa.array(np.asarray(v)[~bad]) for c, v in data.items()})
    assert d.table.equals(regress(kept, **kw))
    assert d.table.equals(regress(t, nan_policy="drop", **kw))
    with pytest.raises(InvalidInputError) as e:
        regress(t, **kw)
    assert e.value.column == column and column in str(e.value)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------


def small() -> dict:
    data = pair_data(0, n=200)
    return {c: data[c] for c in ["f0", "f1", "y", "p_ref", "p_new"]}


@pytest.mark.parametrize("kw,column", [
    (dict(features=["f0", "nope"]), "nope"),
    (dict(label="nope"), "nope"),
    (dict(scores={"old": "p_ref", "new": "nope"}), "nope"),
    (dict(scores={"old": "nope", "new": "p_new"}), "nope"),
    (dict(scores={"old": "p_ref", "new": "p_new"}, reference="new",
          features=["f0"], label="y"), None),
])
def test_missing_columns(kw, column):
    args = dict(label="y", scores={"old": "p_ref", "new": "p_new"}, features=["f0", "f1"],
                min_support=1)
    args.update(kw)
    if column is None:  # a control: the same call without a missing column works
        assert isinstance(assay.discover_regressions(pa.table(small()), **args), pl.DataFrame)
        return
    with pytest.raises(ColumnNotFoundError) as e:
        assay.discover_regressions(pa.table(small()), **args)
    assert e.value.column == column and column in str(e.value)


@pytest.mark.parametrize("kw,match", [
    (dict(scores={"only": "p_new"}), "two models|at least two"),
    (dict(scores=["p_new"]), "two models|at least two"),
    (dict(scores={"a": "p_ref", "b": "p_new", "c": "p_ref"}), "two models"),
    (dict(reference="zzz"), "reference"),
    (dict(error="p_ref"), "error"),
    (dict(error="absolute"), "error"),
    (dict(task="regression", error="log_loss"), "error"),
    (dict(ci=0), "ci"),
    (dict(ci=1), "ci"),
    (dict(ci=1.5), "ci"),
    (dict(ci=float("nan")), "ci"),
    (dict(correction="bonferroni"), "correction"),
    (dict(correction=None), "correction"),
    (dict(scores={"old": "p_ref", "new": "p_ref"}), "both models"),
    (dict(k=0), "k"),
    (dict(max_level=0), "max_level"),
    (dict(min_support=0), "min_support"),
    (dict(nan_policy="keep"), "nan_policy"),
    (dict(scores="p_ref"), "scores"),
])
def test_bad_arguments(kw, match):
    args = dict(label="y", scores={"old": "p_ref", "new": "p_new"}, features=["f0", "f1"])
    args.update(kw)
    with pytest.raises(InvalidArgumentError, match=match):
        assay.discover_regressions(pa.table(small()), **args)


@pytest.mark.parametrize("column,value,kw,match", [
    ("p_ref", np.nan, {}, "null, NaN"),
    ("p_new", np.nan, {}, "null, NaN"),
    ("p_ref", np.inf, dict(error="squared"), "null, NaN or infinite"),
    ("y", 2, {}, "0 or 1"),
    ("p_ref", 1.5, {}, r"outside \[0, 1\]"),
    ("p_new", -0.25, {}, r"outside \[0, 1\]"),
])
def test_bad_values_name_the_column(column, value, kw, match):
    data = small()
    v = np.asarray(data[column]).copy()
    v = v.astype(np.float64) if isinstance(value, float) else v
    v[17] = value
    data[column] = v
    with pytest.raises(InvalidInputError, match=match) as e:
        assay.discover_regressions(pa.table(data), label="y", scores=["p_ref", "p_new"],
                                   features=["f0", "f1"], **kw)
    assert e.value.column == column
    assert column in str(e.value) and "17" in str(e.value)
    assert isinstance(e.value, AssayError)


def test_out_of_range_probabilities_are_fine_for_squared_error():
    data = small()
    data["p_ref"] = data["p_ref"].copy()
    data["p_ref"][17] = 1.5
    found = assay.discover_regressions(pa.table(data), label="y", scores=["p_ref", "p_new"],
                                       features=["f0", "f1"], error="squared", dedupe=False,
                                       min_support=1, k=5)
    r = brute(data, features=["f0", "f1"], error="squared", k=5, min_support=1)
    assert_same(found, r, adjusted=False)


@pytest.mark.parametrize("shift_a, shift_b", [(0.3, 0.08), (1.0, 1.0)])
def test_a_second_independent_regression_survives_dedupe(shift_a, shift_b):
    # Two overlapping broken segments (a=0 and b=0): dedupe must keep b=0, whose rows
    # outside a=0 are worse on their own, and must not let the slices that are worse only
    # through b=0's rows (a=3, a=2 & b=0, ...) take its place. With strong effects every
    # rejected p-value underflows to 0: dedupe's level must still be the correction's.
    rng = np.random.default_rng(1)
    n = 40_000
    a = rng.integers(0, 4, n).astype(str)
    b = rng.integers(0, 4, n).astype(str)
    ref = rng.normal(0, 0.3, n)
    cand = rng.normal(0, 0.3, n) + shift_a * (a == "0") + shift_b * (b == "0")
    data = {"a": a, "b": b, "y": np.zeros(n), "ref": ref, "cand": cand}
    found = assay.discover_regressions(data, label="y", scores={"ref": "ref", "cand": "cand"},
                                       task="regression", features=["a", "b"], k=5)
    assert found["slice"].to_list()[:2] == ["a=0", "b=0"], found
    assert found["significant"].to_list()[:2] == [True, True]
    # Every other significant slice is a cell of both (worse than each parent's other rows).
    others = found.filter(pl.col("significant"))["slice"].to_list()[2:]
    assert others in ([], ["a=0 & b=0"]), others


# ----------------------------------------------------------------------------------------------
# multiclass models
# ----------------------------------------------------------------------------------------------


def multiclass_pair(seed: int, n: int = 2500, k: int = 4) -> dict:
    """Labels of ``k`` classes (as strings), features f0..f2 and two models' probabilities
    (float32 lists): ``new`` degraded where f0=v1 & f1=v0, and rows tied in argmax."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    f = {f"f{i}": np.array([f"v{v}" for v in rng.integers(0, d, n)])
         for i, d in enumerate((3, 2, 4))}
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += 1.5
    z2 = z + 0.3 * rng.normal(size=(n, k))
    bad = (f["f0"] == "v1") & (f["f1"] == "v0")
    z2[bad] = rng.normal(size=(int(bad.sum()), k))
    z2[rng.random(n) < 0.05] = 0.0  # (uniform rows: every class ties for the argmax)

    def probs(v):
        e = np.exp(v - v.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    return {"y": np.array([f"c{c}" for c in y]), "y_idx": y, **f,
            "p_ref": probs(z), "p_new": probs(z2)}


def multiclass_errors(kind: str, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """-log p(label) clipped at 2^-52 (float64 of the float32 probabilities), or argmax
    (ties to the lowest index) != label."""
    p = p.astype(np.float64)
    if kind == "zero_one":
        return (p.argmax(axis=1) != y).astype(float)
    eps = 2.0 ** -52
    return -np.log(np.clip(p[np.arange(len(y)), y], eps, 1 - eps))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("error", ["log_loss", "zero_one"])
def test_multiclass_regressions_match_the_brute_force_reference(seed, error):
    """task="multiclass": each row's paired difference is the difference of the two models'
    multiclass errors; the search, statistics and dedupe are the binary ones."""
    data = multiclass_pair(seed)
    feats = ["f0", "f1", "f2"]
    t = pl.DataFrame({c: data[c] for c in ("y", *feats)}).with_columns(
        p_ref=pl.Series(data["p_ref"]), p_new=pl.Series(data["p_new"]))
    found = assay.discover_regressions(
        t, label="y", scores=["p_ref", "p_new"], features=feats, task="multiclass",
        classes=["c0", "c1", "c2", "c3"], error=error, k=5, min_support=20, dedupe=False)
    y = data["y_idx"]
    e_new = multiclass_errors(error, y, data["p_new"])
    e_ref = multiclass_errors(error, y, data["p_ref"])
    r = rref.discover({f: data[f] for f in feats}, e_new - e_ref, e_ref, k=5, min_support=20)
    assert_same(found, r, adjusted=False, strict_constant=False, what=f"{error} seed {seed}")
    if error == "log_loss":  # (the planted segment, or a slice above it, ranks first)
        assert found["slice"][0] in ("f0=v1 & f1=v0", "f0=v1", "f1=v0")


def test_multiclass_regressions_refuse_bad_reference_rows_by_name():
    data = multiclass_pair(0, n=50)
    p_ref = data["p_ref"].astype(np.float64)
    p_ref[7] = [0.5, 0.5, 0.5, 0.5]  # (sums to 2)
    t = pl.DataFrame({"y": data["y"], "f0": data["f0"], "p_ref": p_ref,
                      "p_new": data["p_new"].astype(np.float64)})
    kw = dict(label="y", scores=["p_ref", "p_new"], features=["f0"], task="multiclass",
              classes=["c0", "c1", "c2", "c3"])
    with pytest.raises(InvalidInputError, match=r'"p_ref".*row 7.*sum to 2\.0'):
        assay.discover_regressions(t, **kw)
    # normalize= applies to both models; with "drop", a row either model cannot score goes.
    found = assay.discover_regressions(t, normalize="divide", **kw)
    assert found.columns == list(disc.REGRESSION_COLUMNS)
    t2 = t.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(None)
                        .otherwise(pl.col("p_ref")).alias("p_ref"))
    d = disc._discover(t2.to_arrow(), label="y", task="multiclass", features=["f0"], score="p_new",
                       classes=["c0", "c1", "c2", "c3"], normalize="divide",
                       nan_policy="drop", paired=("p_ref", 0.95, "holm"))
    assert d.dropped == 1 and d.rows == 50
