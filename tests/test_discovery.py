"""assay.discover_slices: exact top-k against brute force (tests/discovery_reference.py) and the
``sliceline`` package, planted slices, false discoveries on null data, beam search, bad input,
determinism, and the helpers around it (slice_filters, the result table's shape).

Tests with "reference" in their name check the brute-force reference itself (against SciPy,
hand-computed values and the ``sliceline`` package) and run without the engine.
"""

from __future__ import annotations

import doctest
import math
import warnings

import discovery_reference as ref
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import scipy.stats as st

import assay
import assay._discovery as disc
from assay.errors import (
    AssayError,
    ColumnNotFoundError,
    InvalidArgumentError,
    InvalidInputError,
)

FEATURES6 = [f"f{i}" for i in range(6)]


# ----------------------------------------------------------------------------------------------
# data and comparison helpers
# ----------------------------------------------------------------------------------------------


def random_data(seed: int, n: int = 2000, domains=None, ties: bool = False) -> dict:
    """Categorical features f0..f5 with 2-5 string values each (uneven frequencies) and a
    per-row error column ``err`` that depends on a few of them.

    Continuous errors (no ties in score) unless ``ties``: then small integers.
    """
    rng = np.random.default_rng(seed)
    domains = domains or [int(d) for d in rng.integers(2, 6, 6)]
    cols: dict = {}
    mult = np.ones(n)
    for i, d in enumerate(domains):
        p = rng.dirichlet(np.full(d, 3.0))
        codes = rng.choice(d, n, p=p)
        cols[f"f{i}"] = np.array([f"v{j}" for j in range(d)])[codes]
        bump = rng.uniform(0.5, 2.5, d)
        mult *= bump[codes] ** rng.uniform(0.5, 1.0)
    a, b, c = rng.choice(6, 3, replace=False)
    mult *= np.where((cols[f"f{a}"] == "v0") & (cols[f"f{b}"] == "v1"), 3.0, 1.0)
    mult *= np.where((cols[f"f{a}"] == "v1") & (cols[f"f{b}"] == "v0") & (cols[f"f{c}"] == "v0"),
                     4.0, 1.0)
    if ties:
        err = rng.poisson(mult).astype(np.float64)
    else:
        err = rng.exponential(1.0, n) * mult
    cols["err"] = err
    return cols


def run(data: dict, **kw) -> disc.Discovery:
    """The engine on ``data`` (a dict of columns) with error="err" unless told otherwise."""
    kw.setdefault("error", "err")
    return disc._discover(pa.table(data), **kw)


def brute(data: dict, features=FEATURES6, **kw) -> ref.Reference:
    kw.setdefault("dedupe", False)
    return ref.discover({f: data[f] for f in features}, data["err"], **kw)


def _feature_values(table: pl.DataFrame) -> list:
    """The (feature, value) pairs of each slice (the reference records no bin edges)."""
    return [[(p["feature"], p["value"]) for p in ps] for ps in table["predicates"].to_list()]


def assert_same(found: pl.DataFrame, expected: pl.DataFrame, what: str = "") -> None:
    """Same slices in the same order; statistics equal (p-values to 1e-6 relative)."""
    assert found.columns == list(disc.COLUMNS), what
    got, exp = found["slice"].to_list(), expected["slice"].to_list()
    assert got == exp, f"{what}\n got: {got}\n exp: {exp}"
    assert found["rank"].to_list() == list(range(1, found.height + 1))
    assert found["level"].to_list() == expected["level"].to_list(), what
    assert found["size"].to_list() == expected["size"].to_list(), what
    assert _feature_values(found) == _feature_values(expected), what
    for c, rtol in (("support", 1e-15), ("error_mean", 1e-12), ("error_ratio", 1e-12),
                    ("score", 1e-12), ("effect_size", 1e-9)):
        a, b = found[c].to_numpy(), expected[c].to_numpy()
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-13, err_msg=f"{what} {c}")
    np.testing.assert_allclose(found["p_value"].to_numpy(), expected["p_value"].to_numpy(),
                               rtol=1e-6, atol=1e-300, err_msg=f"{what} p_value")


def assert_q_consistent(d: disc.Discovery, r: ref.Reference, fdr: float = 0.05) -> None:
    """What holds of the q-values whatever candidates the search scored: BH over a family of
    ``n_scored`` p-values containing the reported ones, between every level-1 slice with
    enough rows and every slice of the lattice with enough rows."""
    t = d.table
    level1 = r.scored.filter(pl.col("level") == 1).height
    assert min(level1, r.n_family) <= d.n_scored <= r.n_family
    p, q = t["p_value"].to_numpy(), t["q_value"].to_numpy()
    assert np.all(q >= p - 1e-15) and np.all(q <= 1.0)
    assert np.all(q <= np.minimum(1.0, p * d.n_scored) * (1 + 1e-9))
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(q[order]) >= -1e-15), "q-values must be monotone in p"
    assert t["significant"].to_list() == [bool(x <= fdr) for x in q]


# ----------------------------------------------------------------------------------------------
# the reference itself (runs without the engine)
# ----------------------------------------------------------------------------------------------


def test_reference_hand_computed_example():
    # 8 rows, errors 0..7; g = a on the last 4 rows. mean = 3.5.
    g = ["b", "b", "b", "b", "a", "a", "a", "a"]
    e = np.arange(8.0)
    r = ref.discover({"g": g}, e, k=5, max_level=1, min_support=1, alpha=0.5)
    a = r.by_slice()["g=a"]
    # g=a: mean 5.5, size 4: 0.5 * (5.5 / 3.5 - 1) - 0.5 * (8 / 4 - 1) = 2/7 - 1/2 < 0
    assert a["score"] == pytest.approx(0.5 * (5.5 / 3.5 - 1) - 0.5 * (8 / 4 - 1), rel=1e-15)
    assert r.top.height == 0  # no positive score
    r = ref.discover({"g": g}, e, k=5, max_level=1, min_support=1, alpha=0.9)
    assert r.top["slice"].to_list() == ["g=a"]
    assert r.top["score"][0] == pytest.approx(0.9 * (5.5 / 3.5 - 1) - 0.1, rel=1e-15)
    # Welch: both sides have variance 5/3 and 4 rows: t = 4 / sqrt(5/6), df = 6
    t = 4 / math.sqrt(5 / 6)
    assert r.top["p_value"][0] == pytest.approx(st.t.sf(t, 6), rel=1e-12)
    assert r.top["effect_size"][0] == pytest.approx(4 / math.sqrt(5 / 3), rel=1e-12)
    assert r.top["error_ratio"][0] == pytest.approx(5.5 / 3.5)
    assert r.n_family == 2


def test_reference_statistics_match_scipy():
    data = random_data(3, n=600)
    r = brute(data, k=10, max_level=2, min_support=5, alpha=0.9)
    e = np.asarray(data["err"])
    for row in r.scored.sample(40, seed=1).iter_rows(named=True):
        m = ref.slice_rows(r, row["preds"])
        assert m.sum() == row["size"]
        res = st.ttest_ind(e[m], e[~m], equal_var=False, alternative="greater")
        assert row["p_value"] == pytest.approx(res.pvalue, rel=1e-9, abs=1e-300)
        n1, n2 = m.sum(), (~m).sum()
        sd = math.sqrt(((n1 - 1) * e[m].var(ddof=1) + (n2 - 1) * e[~m].var(ddof=1))
                       / (n1 + n2 - 2))
        assert row["effect_size"] == pytest.approx((e[m].mean() - e[~m].mean()) / sd, rel=1e-9)
    q = ref.benjamini_hochberg(r.scored["p_value"].to_numpy())
    np.testing.assert_allclose(q, st.false_discovery_control(r.scored["p_value"].to_numpy()),
                               rtol=1e-12)
    np.testing.assert_allclose(r.scored["q_value"].to_numpy(), q)


def test_reference_bh_and_welch_conventions():
    np.testing.assert_allclose(ref.benjamini_hochberg([0.01, 0.04, 0.03, 0.5]),
                               [0.04, 0.16 / 3, 0.16 / 3, 0.5], rtol=1e-15)
    # fewer than 2 rows on a side: 1; zero variance on both sides: 0 if higher, else 1
    assert ref.welch_greater(1, 5.0, 0.0, 10, 1.0, 3.0)[0] == 1.0
    assert ref.welch_greater(3, 5.0, 0.0, 10, 1.0, 0.0)[0] == 0.0
    assert ref.welch_greater(3, 1.0, 0.0, 10, 5.0, 0.0)[0] == 1.0
    assert np.isnan(ref.effect_size(3, 1.0, 0.0, 10, 1.0, 0.0)[0])


def test_reference_bin_labels_and_ids():
    edges = [18.0, 30.0, 45.5, 65.0]
    assert ref.bin_labels(edges) == ["[18, 30)", "[30, 45.5)", "[45.5, 65]", "(-inf, 18)",
                                     "(65, inf)"]
    ids = ref.bin_ids([17.0, 18.0, 29.9, 30.0, 65.0, 65.1, np.nan], edges)
    assert ids.tolist() == [3, 0, 0, 1, 2, 4, 5]
    assert ref.bin_labels([0.1234567, 0.1234568]) == [
        "[0.1234567, 0.1234568]", "(-inf, 0.1234567)", "(0.1234568, inf)"]
    f = ref.encode("x", [20.0, None, 70.0], edges)
    assert [f.labels[c] for c in f.codes] == ["[18, 30)", None, "(65, inf)"]


def test_reference_categorical_order():
    f = ref.encode("c", ["b", None, "a", "B"])
    assert f.labels == ["B", "a", "b", None]  # code point order, null last
    f = ref.encode("i", [10, -2, 3])
    assert f.labels == ["-2", "3", "10"]
    f = ref.encode("t", [True, False, None])
    assert f.labels == ["false", "true", None]


def test_reference_ties_broken_by_level_then_predicates():
    # a=x and b=p hold the same rows with the same errors, so do c=z and (a=y & b=q):
    # equal scores, broken by level, then feature position, then value order.
    a = ["x", "x", "y", "y", "x", "y", "x", "y"]
    b = ["p", "p", "q", "q", "p", "q", "p", "q"]
    c = ["z", "z", "w", "w", "z", "w", "z", "w"]
    e = np.array([3.0, 3.0, 0.0, 0.0, 3.0, 0.0, 3.0, 0.0])
    r = ref.discover({"a": a, "b": b, "c": c}, e, k=20, max_level=2, min_support=1, alpha=0.9)
    top = r.top["slice"].to_list()
    assert top[:3] == ["a=x", "b=p", "c=z"]
    assert top[3:] == ["a=x & b=p", "a=x & c=z", "b=p & c=z"]
    assert len(set(r.top["score"].to_list())) == 1


def test_reference_planted_slices_recovered():
    data, planted = planted_data(0)
    r = ref.discover({f: data[f] for f in FEATURES6},
                     ref.row_errors("zero_one", data["y"], data["p"]),
                     k=10, max_level=3, min_support=0.01, alpha=0.95, dedupe=True)
    assert set(r.top["slice"].to_list()[:3]) == set(planted)
    assert r.top["significant"].to_list()[:3] == [True] * 3


# ----------------------------------------------------------------------------------------------
# (a) exact top-k against brute force
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("alpha", [0.85, 0.95, 0.99, 1.0])
@pytest.mark.parametrize("min_support", [0.01, 0.05, 25])
def test_top_k_equals_brute_force(seed, alpha, min_support):
    data = random_data(seed)
    max_level = 1 + (seed + int(alpha * 100)) % 4  # 1..4 across the grid
    kw = dict(k=10, max_level=max_level, min_support=min_support, alpha=alpha)
    d = run(data, features=FEATURES6, dedupe=False, **kw)
    r = brute(data, **kw)
    assert_same(d.table, r.top, f"seed={seed} alpha={alpha} min_support={min_support}")
    assert d.min_support == r.min_support
    assert d.rows == 2000 and d.dropped == 0
    assert d.error_mean == pytest.approx(r.error_mean, rel=1e-13)
    assert_q_consistent(d, r)
    if max_level == 1:  # no pruning at level 1: the family is every slice with enough rows
        assert d.n_scored == r.n_family
        np.testing.assert_allclose(d.table["q_value"].to_numpy(), r.top["q_value"].to_numpy(),
                                   rtol=1e-6, atol=1e-300)


@pytest.mark.parametrize("seed", range(3))
def test_top_k_with_dedupe_equals_brute_force(seed):
    data = random_data(seed + 10)
    k = 8
    kw = dict(k=k, max_level=3, min_support=0.01, alpha=0.95)
    d = run(data, features=FEATURES6, dedupe=True, **kw)
    # the engine dedupes among the best max(4k, k + 20) valid slices (docs/discovery.md)
    r = brute(data, dedupe=True, dedupe_pool=max(4 * k, k + 20), **kw)
    assert_same(d.table, r.top, f"seed={seed}")
    levels = d.table["level"].to_list()
    assert max(levels) > 1 and d.table.height == k


@pytest.mark.parametrize("alpha", [0.5, 0.6, 0.7])
def test_low_alpha_against_brute_force(alpha):
    # a low alpha weighs size: only large slices with strong effects score above 0, and with
    # alpha <= 0.5 none can (error_mean_S / error_mean <= n / size_S)
    data = random_data(8)
    values, counts = np.unique(data["f1"], return_counts=True)
    common = values[np.argmax(counts)]
    data["err"] = data["err"] * np.where(data["f1"] == common, 10.0, 1.0)
    kw = dict(k=10, max_level=3, min_support=0.01, alpha=alpha)
    d = run(data, features=FEATURES6, dedupe=False, **kw)
    r = brute(data, **kw)
    assert (r.top.height == 0) == (alpha <= 0.5)
    assert_same(d.table, r.top, f"alpha={alpha}")


@pytest.mark.parametrize("k", [1, 3, 40])
def test_top_k_sizes(k):
    data = random_data(7)
    d = run(data, features=FEATURES6, dedupe=False, k=k, alpha=0.9)
    r = brute(data, k=k, alpha=0.9)
    assert_same(d.table, r.top, f"k={k}")


def tied_data(seed: int) -> dict:
    """Few rows, 0/1 errors and f5 a relabelled copy of f0: many slices share (size, error
    sum), so their scores are equal bit for bit, across levels too (f0=v0 & f5=w0 holds the
    rows of f0=v0)."""
    rng = np.random.default_rng(seed)
    n = 150
    cols = {f"f{i}": np.array([f"v{j}" for j in range(d)])[rng.integers(0, d, n)]
            for i, d in enumerate([2, 3, 2, 3, 2])}
    cols["f5"] = np.where(cols["f0"] == "v0", "w0", "w1")
    rate = np.where(cols["f1"] == "v2", 0.6, 0.25)
    cols["err"] = (rng.random(n) < rate).astype(np.float64)
    return cols


@pytest.mark.parametrize("seed", range(3))
def test_ties_in_score_are_broken_as_documented(seed):
    data = tied_data(seed)
    kw = dict(k=60, max_level=3, min_support=2, alpha=0.95)
    d = run(data, features=FEATURES6, dedupe=False, **kw)
    r = brute(data, **kw)
    scores = r.top["score"].to_list()
    assert len(scores) - len(set(scores)) >= 5, "the data must have ties"
    assert_same(d.table, r.top, f"seed={seed}")


def test_ties_hand_example():
    a = ["x", "x", "y", "y", "x", "y", "x", "y"]
    b = ["p", "p", "q", "q", "p", "q", "p", "q"]
    c = ["z", "z", "w", "w", "z", "w", "z", "w"]
    e = [3.0, 3.0, 0.0, 0.0, 3.0, 0.0, 3.0, 0.0]
    d = disc._discover({"a": np.array(a), "b": np.array(b), "c": np.array(c),
                        "err": np.array(e)}, features=["a", "b", "c"], error="err", k=20,
                       max_level=2, min_support=1, alpha=0.9, dedupe=False)
    assert d.table["slice"].to_list() == ["a=x", "b=p", "c=z", "a=x & b=p", "a=x & c=z",
                                          "b=p & c=z"]


def test_null_values_and_other_types_against_brute_force():
    rng = np.random.default_rng(5)
    n = 1500
    s = rng.choice(np.array(["BR", "NG", "US", "DE"], dtype=object), n)
    s[rng.random(n) < 0.1] = None
    i = rng.integers(-2, 3, n)
    flag = rng.random(n) < 0.3
    cat = pa.array(rng.choice(["mobile", "desktop", "tablet"], n)).dictionary_encode()
    e = rng.exponential(1.0, n) * np.where(s == None, 3.0, 1.0) * np.where(flag, 1.5, 1.0)  # noqa: E711
    e *= np.where(i == -2, 2.0, 1.0)
    t = pa.table({"s": pa.array(s, pa.string()), "i": pa.array(i), "flag": pa.array(flag),
                  "cat": cat, "err": pa.array(e)})
    kw = dict(k=15, max_level=3, min_support=10, alpha=0.95)
    d = disc._discover(t, features=["s", "i", "flag", "cat"], error="err", dedupe=False, **kw)
    r = ref.discover({c: t[c] for c in ["s", "i", "flag", "cat"]}, e, **kw)
    assert_same(d.table, r.top)
    assert "s=null" in d.table["slice"].to_list()
    row = d.table.filter(pl.col("slice") == "s=null").row(0, named=True)
    assert row["predicates"] == [{"feature": "s", "value": None, "edges": None}]


def test_numeric_features_are_binned_like_assay_bins():
    rng = np.random.default_rng(2)
    n = 3000
    age = np.round(rng.normal(40, 12, n), 1)
    age[:30] = np.nan
    amount = rng.lognormal(3, 1, n).astype(np.float32)
    g = rng.choice(["a", "b", "c"], n)
    e = rng.exponential(1.0, n) * np.where(age > 50, 3.0, 1.0) * np.where(amount > 50, 2.0, 1.0)
    t = pa.table({"age": age, "amount": amount, "g": g, "err": e,
                  "n_items": rng.integers(0, 4, n)})
    feats = ["age", assay.bins("amount", edges=[10, 20, 50, 100]), "g", "n_items"]
    kw = dict(k=12, max_level=2, min_support=0.02, alpha=0.95)
    d = disc._discover(t, features=feats, error="err", n_bins=4, dedupe=False, **kw)
    age_edges = list(assay.bins("age", 4).resolve(assay._input.to_source(t)))
    assert d.edges == {"age": age_edges, "amount": [10.0, 20.0, 50.0, 100.0]}
    r = ref.discover({c: t[c] for c in ["age", "amount", "g", "n_items"]}, e,
                     bins=d.edges, **kw)
    assert_same(d.table, r.top)
    values = {p["value"] for ps in d.table["predicates"].to_list() for p in ps
              if p["feature"] == "age"}
    assert values and all(v is None or v[0] in "[(" for v in values)
    # the integer column stays categorical (as in assay.evaluate)
    int_values = {p[1] for ps in r.scored["preds"].to_list() for p in ps if p[0] == "n_items"}
    assert int_values <= {"0", "1", "2", "3"}


@pytest.mark.parametrize("error", ["log_loss", "zero_one", "squared"])
def test_builtin_errors_against_brute_force(error):
    data, _ = planted_data(1, n=4000)
    kw = dict(k=10, max_level=2, min_support=0.02, alpha=0.9)
    d = disc._discover(pa.table(data), label="y", score="p", features=FEATURES6, error=error,
                       threshold=0.5, dedupe=False, **kw)
    e = ref.row_errors(error, data["y"], data["p"], 0.5)
    r = ref.discover({f: data[f] for f in FEATURES6}, e, **kw)
    assert_same(d.table, r.top, error)


def test_min_support_fraction_is_int_of_fraction_times_rows():
    data = random_data(0, n=1999)
    assert run(data, features=FEATURES6, min_support=0.013).min_support == int(0.013 * 1999)
    assert run(data, features=FEATURES6, min_support=0.0001).min_support == 1
    assert run(data, features=FEATURES6, min_support=7).min_support == 7


def test_nan_policy_drop_counts_rows():
    data = random_data(0, n=1000)
    err = np.array(data["err"])
    err[:13] = np.nan
    data["err"] = err
    d = run(data, features=FEATURES6, nan_policy="drop", min_support=10, dedupe=False)
    assert (d.rows, d.dropped) == (1000, 13)
    kept = {c: np.asarray(v)[13:] for c, v in data.items()}
    r = brute(kept, min_support=10)
    assert_same(d.table, r.top)


def test_inputs_polars_pandas_and_stream_agree():
    data = random_data(4, n=1500)
    kw = dict(features=FEATURES6, error="err", k=10, min_support=15, alpha=0.9)
    base = disc.discover_slices(pa.table(data), **kw)
    df = pl.DataFrame(data)
    assert base.equals(assay.discover_slices(df, **kw))
    assert base.equals(assay.discover_slices(df.lazy(), **kw))
    reader = pa.table(data).to_reader(max_chunksize=100)
    assert base.equals(assay.discover_slices(reader, **kw))
    pd = pytest.importorskip("pandas")
    assert base.equals(assay.discover_slices(pd.DataFrame(data), **kw))


def test_inputs_files_and_duckdb(tmp_path):
    import pyarrow.parquet as pq

    data = random_data(4, n=1500)
    data["x"] = np.random.default_rng(0).normal(size=1500)  # a float feature: binned
    kw = dict(features=[*FEATURES6, "x"], error="err", k=10, min_support=0.01, alpha=0.95)
    base = disc._discover(pa.table(data), **kw)
    assert "x" in base.edges
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table(data), path)
    from_file = disc._discover(str(path), **kw)
    assert from_file.min_support == base.min_support == 15
    assert from_file.edges == base.edges
    assert base.table.equals(from_file.table)
    duckdb = pytest.importorskip("duckdb")
    rel = duckdb.from_arrow(pa.table(data))
    assert base.table.equals(disc.discover_slices(rel, **kw))


# ----------------------------------------------------------------------------------------------
# (b) planted slices
# ----------------------------------------------------------------------------------------------


def planted_data(seed: int, n: int = 30_000):
    """Labels, scores and 6 features; the model errs 10% of the time, but 30% on f0=v0 (one
    predicate), 45% on f1=v0 & f2=v0 (two) and 60% on f3=v0 & f4=v0 & f5=v0 (three)."""
    rng = np.random.default_rng(seed)
    domains = [4, 3, 4, 3, 3, 3]
    cols = {f"f{i}": np.array([f"v{j}" for j in range(d)])[rng.integers(0, d, n)]
            for i, d in enumerate(domains)}
    rate = np.full(n, 0.10)
    s1 = cols["f0"] == "v0"
    s2 = (cols["f1"] == "v0") & (cols["f2"] == "v0")
    s3 = (cols["f3"] == "v0") & (cols["f4"] == "v0") & (cols["f5"] == "v0")
    rate = np.where(s1, 0.30, rate)
    rate = np.where(s2, 0.45, rate)
    rate = np.where(s3, 0.60, rate)
    y = rng.integers(0, 2, n)
    wrong = rng.random(n) < rate
    confidence = rng.uniform(0.55, 0.95, n)
    p = np.where((y == 1) != wrong, confidence, 1.0 - confidence)
    cols["y"] = y
    cols["p"] = p
    planted = ["f0=v0", "f1=v0 & f2=v0", "f3=v0 & f4=v0 & f5=v0"]
    return cols, planted


@pytest.mark.parametrize("seed", range(3))
def test_planted_slices_are_found_first(seed):
    data, planted = planted_data(seed)
    found = assay.discover_slices(pa.table(data), label="y", score="p", features=FEATURES6,
                                  error="zero_one", k=10, max_level=3, min_support=0.01,
                                  alpha=0.95)
    assert set(found["slice"].to_list()[:3]) == set(planted)
    assert found["significant"].to_list()[:3] == [True, True, True]
    assert found["level"].to_list()[:3] != [1, 1, 1]


# ----------------------------------------------------------------------------------------------
# (c) false discoveries on null data
# ----------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::assay.NothingFoundWarning")  # empty by design
def test_null_data_rarely_has_a_significant_slice():
    # errors independent of the features: any significant slice is a false discovery, so the
    # fraction of data sets with one estimates the family-wise error, which BH keeps near fdr.
    n_sets, hits = 50, 0
    for seed in range(n_sets):
        rng = np.random.default_rng(1000 + seed)
        n = 2000
        cols = {f"f{i}": rng.integers(0, int(d), n).astype(str)
                for i, d in enumerate(rng.integers(2, 6, 5))}
        p = rng.uniform(0.05, 0.95, n)
        cols["y"] = (rng.random(n) < p).astype(np.int8)
        cols["p"] = p
        found = assay.discover_slices(pa.table(cols), label="y", score="p",
                                      features=[f"f{i}" for i in range(5)], error="log_loss",
                                      k=10, max_level=3, min_support=0.01, fdr=0.05)
        hits += bool(found["significant"].any())
    assert hits / n_sets <= 0.05 + 0.12, f"{hits} of {n_sets} null data sets"


# ----------------------------------------------------------------------------------------------
# (d) agreement with the sliceline package
# ----------------------------------------------------------------------------------------------


def sliceline_data(seed: int):
    """Small data where every feature has a value with higher errors, so that the package's
    top-k is full after level 1 (it prunes against a partial top-k otherwise)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(800, 2000))
    domains = [int(d) for d in rng.integers(2, 5, 5)]
    cols = {}
    mult = np.ones(n)
    for i, d in enumerate(domains):
        codes = rng.integers(0, d, n)
        cols[f"f{i}"] = np.array([f"v{j}" for j in range(d)])[codes]
        mult *= np.where(codes == 0, rng.uniform(1.3, 2.2), 1.0)
    mult *= np.where((cols["f1"] == "v1") & (cols["f3"] == "v1"), 2.0, 1.0)
    cols["err"] = rng.exponential(1.0, n) * mult
    return cols


def run_sliceline(cols, features, k, max_level, min_support, alpha):
    """The package's (set of predicate sets, scores by predicate set)."""
    pytest.importorskip("sliceline")
    from sliceline.slicefinder import Slicefinder

    x = np.column_stack([np.asarray(cols[f], dtype=object) for f in features])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sf = Slicefinder(alpha=alpha, k=k, max_l=max_level, min_sup=min_support,
                         verbose=False).fit(x, np.asarray(cols["err"]))
    out = {}
    for row, stats in zip(sf.top_slices_, sf.top_slices_statistics_, strict=True):
        key = frozenset((f, v) for f, v in zip(features, row, strict=True) if v is not None)
        out[key] = stats["slice_score"]
    return out


def as_sets(table: pl.DataFrame) -> dict:
    return {frozenset((p["feature"], p["value"]) for p in ps): s
            for ps, s in zip(table["predicates"].to_list(), table["score"].to_list(),
                             strict=True)}


# (seed, k, alpha, min_support): cases where the package's level-1 top-k is full
SLICELINE_CASES = [
    (0, 5, 0.9, 0.01), (1, 4, 0.9, 0.02), (2, 4, 0.95, 0.05), (3, 3, 0.9, 20),
    (4, 5, 0.99, 0.01), (5, 3, 0.95, 10), (6, 5, 0.95, 0.01),
]


def _exact_case(cols, k, alpha, ms):
    features = [f for f in cols if f.startswith("f")]
    r = ref.discover({f: cols[f] for f in features}, cols["err"], k=k, max_level=3,
                     min_support=ms, alpha=alpha)
    level1_positive = r.scored.filter((pl.col("level") == 1) & (pl.col("score") > 0)).height
    assert level1_positive >= k, "the package is exact only when its level-1 top-k is full"
    return features, r


@pytest.mark.parametrize("seed,k,alpha,ms", SLICELINE_CASES)
def test_reference_agrees_with_sliceline_package(seed, k, alpha, ms):
    cols = sliceline_data(seed)
    features, r = _exact_case(cols, k, alpha, ms)
    theirs = run_sliceline(cols, features, k, 3, ms, alpha)
    mine = as_sets(r.top)
    assert set(mine) == set(theirs)
    for key, s in mine.items():
        assert s == pytest.approx(theirs[key], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed,k,alpha,ms", SLICELINE_CASES)
def test_agrees_with_sliceline_package(seed, k, alpha, ms):
    cols = sliceline_data(seed)
    features, _ = _exact_case(cols, k, alpha, ms)
    theirs = run_sliceline(cols, features, k, 3, ms, alpha)
    found = run(cols, features=features, k=k, max_level=3, min_support=ms, alpha=alpha,
                dedupe=False).table
    mine = as_sets(found)
    assert set(mine) == set(theirs)
    for key, s in mine.items():
        assert s == pytest.approx(theirs[key], rel=1e-9, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# (e) beam search
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_beam_slices_have_brute_force_statistics(seed):
    data = random_data(seed + 30)
    kw = dict(k=10, max_level=3, min_support=0.01, alpha=0.9)
    d = run(data, features=FEATURES6, method="beam", beam_width=3, dedupe=False, **kw)
    r = brute(data, **kw)
    every = r.by_slice()
    assert d.table.height > 0
    for row in d.table.iter_rows(named=True):
        e = every[row["slice"]]
        assert row["size"] == e["size"]
        assert row["score"] == pytest.approx(e["score"], rel=1e-12)
        assert row["p_value"] == pytest.approx(e["p_value"], rel=1e-6, abs=1e-300)
    scores = d.table["score"].to_list()
    assert scores == sorted(scores, reverse=True) and min(scores) > 0
    # a beam never beats the exact search, slice for slice
    exact = r.top["score"].to_list()
    assert all(b <= x * (1 + 1e-12) for b, x in zip(scores, exact, strict=False))


def test_wide_beam_is_exact():
    data = random_data(40)
    kw = dict(k=10, max_level=3, min_support=0.01, alpha=0.9)
    d = run(data, features=FEATURES6, method="beam", beam_width=100_000, dedupe=False, **kw)
    assert_same(d.table, brute(data, **kw).top)


def xor_data(n=4000, seed=0):
    """a=1 & b=1 (and a=0 & b=0) have high errors, a=1 & b=0 and a=0 & b=1 low ones, so a=1 and
    b=1 alone are average; c=1 is moderately bad on its own. A beam of width 1 keeps only c=1
    at level 1 and never scores a=1 & b=1."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n)
    b = rng.integers(0, 2, n)
    c = rng.integers(0, 2, n)
    base = np.where(a == b, 3.0, 1 / 3)
    base = base * np.where(c == 1, 1.9, 1.0)
    err = rng.exponential(1.0, n) * base
    return {"a": a.astype(str), "b": b.astype(str), "c": c.astype(str), "err": err}


def test_beam_width_is_honoured():
    data = xor_data()
    kw = dict(features=["a", "b", "c"], k=5, max_level=2, min_support=0.01, alpha=0.9,
              dedupe=False, method="beam")
    narrow = run(data, beam_width=1, **kw).table["slice"].to_list()
    wide = run(data, beam_width=50, **kw).table["slice"].to_list()
    assert "a=1 & b=1" not in narrow
    assert "a=1 & b=1" in wide[:2]
    exact = run(data, **{**kw, "method": "sliceline"}).table["slice"].to_list()
    assert wide == exact


def test_reference_xor_example_is_what_the_beam_test_needs():
    data = xor_data()
    r = ref.discover({f: data[f] for f in "abc"}, data["err"], k=5, max_level=2,
                     min_support=0.01, alpha=0.9)
    level1 = r.scored.filter(pl.col("level") == 1).sort("score", descending=True)
    assert level1["slice"][0] == "c=1"
    assert "a=1 & b=1" in r.top["slice"].to_list()[:2]


# ----------------------------------------------------------------------------------------------
# (f) bad input
# ----------------------------------------------------------------------------------------------


def small():
    return random_data(0, n=300)


@pytest.mark.parametrize("kw,match", [
    (dict(k=0), "k must"),
    (dict(k=-3), "k must"),
    (dict(k=2.5), "k must"),
    (dict(max_level=0), "max_level"),
    (dict(alpha=0.0), "alpha"),
    (dict(alpha=1.5), "alpha"),
    (dict(alpha=-0.1), "alpha"),
    (dict(min_support=0), "min_support"),
    (dict(min_support=-5), "min_support"),
    (dict(min_support=0.0), "min_support"),
    (dict(min_support=1.0), "min_support"),
    (dict(min_support=1.5), "min_support"),
    (dict(min_support=True), "min_support"),
    (dict(method="exhaustive"), "method"),
    (dict(method="beam", beam_width=0), "beam_width"),
    (dict(fdr=0.0), "fdr"),
    (dict(fdr=1.0), "fdr"),
    (dict(n_bins=0), "n_bins"),
    (dict(max_values=0), "max_values"),
    (dict(max_values=70_000), "max_values"),
    (dict(nan_policy="ignore"), "nan_policy"),
    (dict(dedupe="yes"), "dedupe"),
    (dict(threshold=float("nan")), "threshold"),
    (dict(features=[]), "at least one feature"),
    (dict(features=["f0", "f0"]), "twice"),
    (dict(features=[("f0", "f1")]), "feature"),
    (dict(error="no_such_error_column"), "no_such_error_column"),
    (dict(error="err", label="y"), "label"),
    (dict(error=3), "error"),
])
def test_bad_arguments(kw, match):
    kw = {"features": FEATURES6, **kw}
    with pytest.raises(InvalidArgumentError, match=match):
        run(small(), **kw)


def test_builtin_error_needs_label_and_score():
    with pytest.raises(InvalidArgumentError, match="label= and score="):
        assay.discover_slices(pa.table(small()), features=FEATURES6, error="log_loss")
    with pytest.raises(InvalidArgumentError, match="label= and score="):
        assay.discover_slices(pa.table(small()), score="err", features=FEATURES6)


def test_unknown_feature():
    with pytest.raises(ColumnNotFoundError, match="nope") as ei:
        run(small(), features=["f0", "nope"])
    assert ei.value.column == "nope" and isinstance(ei.value, KeyError)


def test_unknown_feature_in_a_stream_without_names():
    class Stream:  # only the Arrow C stream: names are unknown before the pass
        def __init__(self, t):
            self.t = t

        def __arrow_c_stream__(self, requested_schema=None):
            return self.t.__arrow_c_stream__(requested_schema)

    with pytest.raises(ColumnNotFoundError, match="nope"):
        disc.discover_slices(Stream(pa.table(small())), features=["f0", "nope"], error="err",
                             min_support=5)


def test_fraction_min_support_needs_a_row_count():
    reader = pa.table(small()).to_reader()
    with pytest.raises(InvalidArgumentError, match="count"):
        disc.discover_slices(reader, features=FEATURES6, error="err", min_support=0.05)


def test_too_many_distinct_values_suggests_bins():
    data = small()
    data["id"] = np.array([f"u{i}" for i in range(300)])
    with pytest.raises(InvalidArgumentError, match=r"assay\.bins"):
        run(data, features=["f0", "id"], max_values=100)
    assert run(data, features=["f0", "id"], max_values=1000).rows == 300


@pytest.mark.parametrize("bad", [np.nan, -0.5, np.inf])
def test_bad_error_values(bad):
    data = small()
    err = np.array(data["err"])
    err[17] = bad
    data["err"] = err
    with pytest.raises(InvalidInputError) as ei:
        run(data, features=FEATURES6)
    assert ei.value.column == "err"
    assert "err" in str(ei.value)


def test_null_error_values():
    data = small()
    t = pa.table(data)
    err = pa.array([None if i == 5 else v for i, v in enumerate(data["err"])], pa.float64())
    t = t.set_column(t.schema.get_field_index("err"), "err", err)
    with pytest.raises(InvalidInputError) as ei:
        disc.discover_slices(t, features=FEATURES6, error="err")
    assert ei.value.column == "err"
    d = disc._discover(t, features=FEATURES6, error="err", nan_policy="drop")
    assert d.dropped == 1


def test_log_loss_needs_probabilities():
    data, _ = planted_data(0, n=500)
    data["p"] = data["p"] * 2
    with pytest.raises(InvalidInputError) as ei:
        assay.discover_slices(pa.table(data), label="y", score="p", features=FEATURES6)
    assert ei.value.column == "p"


def test_errors_are_assay_errors():
    for cls in (ColumnNotFoundError, InvalidArgumentError, InvalidInputError):
        assert issubclass(cls, AssayError)


# ----------------------------------------------------------------------------------------------
# (g) determinism
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sliceline", "beam"])
def test_same_result_for_any_thread_count(method):
    data = random_data(50, n=20_000)
    kw = dict(features=FEATURES6, error="err", k=15, max_level=3, min_support=0.005,
              alpha=0.9, method=method, beam_width=4)
    one = disc.discover_slices(pa.table(data), n_threads=1, **kw)
    two = disc.discover_slices(pa.table(data), n_threads=2, **kw)
    assert one.height > 0
    assert one.equals(two)
    again = disc.discover_slices(pa.table(data).to_reader(max_chunksize=777), n_threads=2,
                                 **{**kw, "min_support": 100})
    assert again.equals(disc.discover_slices(pa.table(data), n_threads=1,
                                             **{**kw, "min_support": 100}))


# ----------------------------------------------------------------------------------------------
# the table and slice_filters
# ----------------------------------------------------------------------------------------------


def test_table_schema_and_predicates():
    data = random_data(1)
    found = run(data, features=FEATURES6, k=10, alpha=0.9).table
    assert found.columns == list(disc.COLUMNS)
    assert found.schema == pl.Schema({
        "rank": pl.UInt32, "slice": pl.String, "level": pl.UInt32,
        "predicates": pl.List(pl.Struct({"feature": pl.String, "value": pl.String,
                                          "edges": pl.List(pl.Float64)})),
        "size": pl.UInt64, "support": pl.Float64, "error_mean": pl.Float64,
        "error_ratio": pl.Float64, "score": pl.Float64, "effect_size": pl.Float64,
        "p_value": pl.Float64, "q_value": pl.Float64, "significant": pl.Boolean,
    })
    for label, preds, level in found.select("slice", "predicates", "level").iter_rows():
        assert label == " & ".join(f"{p['feature']}={p['value']}" for p in preds)
        assert len(preds) == level
        positions = [FEATURES6.index(p["feature"]) for p in preds]
        assert positions == sorted(positions)


def test_empty_result_has_the_schema():
    data = random_data(1)
    data["err"] = np.ones(2000)  # no slice is worse than average
    found = run(data, features=FEATURES6).table
    assert found.height == 0 and found.columns == list(disc.COLUMNS)
    assert found.schema["predicates"] == pl.List(pl.Struct(
        {"feature": pl.String, "value": pl.String, "edges": pl.List(pl.Float64)}))


def test_slice_filters_select_each_slice():
    rng = np.random.default_rng(9)
    n = 4000
    age = rng.normal(40, 12, n)
    age[:40] = np.nan
    s = rng.choice(np.array(["a", "b", "c"], dtype=object), n)
    s[rng.random(n) < 0.05] = None
    df = pl.DataFrame({"age": age, "s": pl.Series(s, dtype=pl.String),
                       "i": rng.integers(0, 3, n), "flag": rng.random(n) < 0.4,
                       "err": rng.exponential(1.0, n) * np.where(age > 50, 3, 1)})
    d = disc._discover(df, features=["age", "s", "i", "flag"], error="err", k=30,
                       min_support=5, alpha=0.97, dedupe=False, n_bins=3)
    assert d.table.height > 10
    exact = disc.slice_filters(d.table, edges=d.edges)
    sizes = df.select(exact).sum().row(0)
    assert list(sizes) == d.table["size"].to_list()
    assert [e.meta.output_name() for e in exact] == d.table["slice"].to_list()
    # without the edges the labels are parsed: exact here up to the printed digits
    parsed = df.select(disc.slice_filters(d.table)).sum().row(0)
    assert sum(abs(a - b) for a, b in zip(parsed, sizes, strict=True)) <= 0.01 * sum(sizes)


def test_slice_filters_bins_rules():
    df = pl.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, None, float("nan"), 9.0]})
    found = pl.DataFrame({
        "slice": ["x=[1, 2)", "x=[2, 4]", "x=(-inf, 1)", "x=(4, inf)", "x=null"],
        "predicates": [[{"feature": "x", "value": v}] for v in
                       ["[1, 2)", "[2, 4]", "(-inf, 1)", "(4, inf)", None]],
    })
    got = df.select(disc.slice_filters(found))
    assert got.to_dict(as_series=False) == {
        "x=[1, 2)": [False, True, False, False, False, False, False, False],
        "x=[2, 4]": [False, False, True, True, True, False, False, False],
        "x=(-inf, 1)": [True, False, False, False, False, False, False, False],
        "x=(4, inf)": [False, False, False, False, False, False, False, True],
        "x=null": [False, False, False, False, False, True, True, False],
    }
    with pytest.raises(InvalidArgumentError):
        disc.slice_filters(found, edges={"x": [0.0, 5.0]})
    with pytest.raises(InvalidArgumentError):
        disc.slice_filters(pl.DataFrame({"slice": ["a"]}))


def test_docstring_examples_run():
    result = doctest.testmod(disc, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
    assert "discover_slices" in assay.__all__
    assert assay.discover_slices is disc.discover_slices


def test_found_slices_feed_back_into_evaluate():
    rng = np.random.default_rng(21)
    n = 6000
    x = rng.normal(size=n)
    g = rng.choice(["a", "b", "c"], n)
    err = rng.random(n) * 0.2 + 0.6 * ((g == "b") & (x > 0.5))
    y = (rng.random(n) < 0.3).astype(int)
    t = pa.table({"x": x, "g": g, "err": err, "y": y, "p": rng.random(n)})
    d = disc._discover(t, features=["g", "x"], error="err", k=5, max_level=2)
    found = d.table
    assert found.height > 0
    # The bin edges travel with the predicates, so evaluate cuts the same bins.
    binned = [p for ps in found["predicates"].to_list() for p in ps if p["feature"] == "x"]
    assert all(p["edges"] == d.edges["x"] for p in binned) and binned
    rep = assay.evaluate(t, label="y", score="p", slices=found, metrics=["base_rate"])
    assert rep.table["slice"].to_list() == ["overall", *found["slice"].to_list()]
    assert rep.table["n"].to_list()[1:] == found["size"].to_list()
    # Mixed with ordinary specs, and through the row filters: the same rows.
    rep2 = assay.evaluate(t, label="y", score="p", slices=["g", found], metrics=["base_rate"])
    assert rep2.table["slice"].to_list()[4:] == found["slice"].to_list()
    counts = pl.from_arrow(t).select(disc.slice_filters(found)).sum().row(0)
    assert list(counts) == found["size"].to_list()


def test_found_slices_work_in_the_python_side_methods():
    rng = np.random.default_rng(5)
    n = 3000
    g = rng.choice(["a", "b"], n)
    x = rng.normal(size=n)
    y = (rng.random(n) < 0.4).astype(int)
    p = np.clip(0.4 + 0.1 * x, 0, 1)
    err = rng.random(n) * 0.1 + 0.5 * (g == "b")
    df = pl.DataFrame({"g": g, "x": x, "y": y, "p": p, "err": err})
    found = assay.discover_slices(df, features=["g"], error="err", k=3, max_level=1)
    assert found["slice"].to_list()[0] == "g=b"
    th = assay.thresholds(df, label="y", score="p", slices=found, n=5)
    assert set(th["slice"].to_list()) == {"overall", *found["slice"].to_list()}

    def model(batch):
        return np.clip(0.4 + 0.1 * batch["x"].to_numpy(), 0, 1)

    res = assay.checks.perturbation(model, df, label="y", slices=found, repeats=2,
                                    perturb={"x": assay.noise.gaussian(0.1)},
                                    features=["x"])
    assert res.table["slice"].to_list() == ["overall", *found["slice"].to_list()]
