"""Checks of the brute-force ranking reference (tests/ranking_reference.py) itself.

Against scikit-learn where the conventions match (ndcg/dcg with linear gain and averaged ties,
per-query ROC AUC), and against small cases computed by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import ranking_reference as ref
from hypothesis import given
from hypothesis import strategies as st
from sklearn import metrics as skm

LOG2_3 = math.log2(3)


@st.composite
def small_query(draw, min_size=2, max_size=7):
    """A small query with many tied scores and graded relevance (0 often)."""
    n = draw(st.integers(min_size, max_size))
    score = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0]), min_size=n, max_size=n))
    rel = draw(st.lists(st.sampled_from([0.0, 0.0, 1.0, 2.0, 3.0, 0.5]), min_size=n, max_size=n))
    return np.array(score), np.array(rel)


# ----------------------------------------------------------------------------------------------
# against scikit-learn
# ----------------------------------------------------------------------------------------------


@given(small_query(), st.integers(1, 8))
def test_ndcg_dcg_match_sklearn_linear_average(query, k):
    score, rel = query
    got = ref.query_metrics(score, rel, [k], gain="linear", ties="average")
    assert got[f"dcg@{k}"] == pytest.approx(skm.dcg_score([rel], [score], k=k), abs=1e-12)
    if np.any(rel > 0):
        want = skm.ndcg_score([rel], [score], k=k)
        assert got[f"ndcg@{k}"] == pytest.approx(want, abs=1e-12)
    else:
        assert got[f"ndcg@{k}"] is None


@given(small_query(min_size=1))
def test_auc_matches_sklearn(query):
    score, rel = query
    y = rel > 0
    for ties in ref.TIES:
        got = ref.query_metrics(score, rel, [1], ties=ties)["auc_per_query"]
        if y.all() or not y.any():
            assert got is None
        else:
            assert got == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)


@given(small_query(min_size=1), st.integers(1, 8), st.sampled_from(ref.GAINS))
def test_average_equals_stable_without_ties(query, k, gain):
    _, rel = query
    score = np.random.default_rng(len(rel)).permutation(len(rel)).astype(float)  # distinct
    stable = ref.query_metrics(score, rel, [k], gain=gain, ties="stable")
    average = ref.query_metrics(score, rel, [k], gain=gain, ties="average")
    assert stable.keys() == average.keys()
    for name, value in stable.items():
        assert average[name] == (pytest.approx(value, abs=1e-12) if value is not None else None)


@given(small_query(min_size=1), st.integers(1, 8), st.sampled_from(ref.TIES))
def test_bounds_and_consistency(query, k, ties):
    score, rel = query
    m = ref.query_metrics(score, rel, [k], gain="exponential", ties=ties)
    n_rel = int(np.sum(rel > 0))
    for name in (f"ndcg@{k}", f"precision@{k}", f"recall@{k}", f"hit_rate@{k}", f"map@{k}", "mrr"):
        assert m[name] is None or -1e-12 <= m[name] <= 1 + 1e-12
    if n_rel == 0:
        assert m[f"precision@{k}"] == 0 and m[f"hit_rate@{k}"] == 0
        assert m[f"ndcg@{k}"] is None and m[f"recall@{k}"] is None
        assert m[f"map@{k}"] is None and m["mrr"] is None
    else:
        # precision@k * k = recall@k * n_rel: both count the relevant items in the top k.
        assert m[f"precision@{k}"] * k == pytest.approx(m[f"recall@{k}"] * n_rel, abs=1e-12)
    if n_rel and k >= len(rel):
        assert m[f"recall@{k}"] == pytest.approx(1.0) and m[f"hit_rate@{k}"] == 1.0


# ----------------------------------------------------------------------------------------------
# by hand
# ----------------------------------------------------------------------------------------------


def test_hand_case_no_ties():
    m = ref.query_metrics([3, 2, 1], [0, 1, 1], [1, 2, 3], gain="linear")
    assert m["mrr"] == 0.5
    assert m["precision@2"] == 0.5
    assert m["map@2"] == pytest.approx(0.25)  # (precision@2 = 1/2) / min(2, 2)
    assert m["hit_rate@1"] == 0.0
    assert m["hit_rate@2"] == 1.0
    assert m["recall@2"] == 0.5
    assert m["recall@1"] == 0.0
    assert m["map@1"] == 0.0
    assert m["precision@3"] == pytest.approx(2 / 3)
    assert m["map@3"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["dcg@3"] == pytest.approx(1 / LOG2_3 + 1 / 2)
    assert m["idcg@3"] == pytest.approx(1 + 1 / LOG2_3)
    assert m["ndcg@3"] == pytest.approx((1 / LOG2_3 + 1 / 2) / (1 + 1 / LOG2_3))
    assert m["ndcg@1"] == 0.0
    assert m["auc_per_query"] == 0.0  # both relevant items score below the non-relevant one


def test_hand_case_tie():
    avg = ref.query_metrics([1, 1], [1, 0], [1, 2], ties="average")
    assert avg["mrr"] == 0.75  # (1 + 1/2) / 2
    assert avg["precision@1"] == 0.5
    assert avg["hit_rate@1"] == 0.5
    assert avg["recall@1"] == 0.5
    assert avg["map@1"] == 0.5
    assert avg["ndcg@2"] == pytest.approx((1 + 1 / LOG2_3) / 2)
    assert avg["auc_per_query"] == 0.5

    stable = ref.query_metrics([1, 1], [1, 0], [1, 2], ties="stable")
    assert stable["mrr"] == 1.0
    assert stable["precision@1"] == 1.0
    assert stable["ndcg@2"] == 1.0
    assert stable["auc_per_query"] == 0.5

    # The stable order breaks the tie by input position: the relevant item second this time.
    stable = ref.query_metrics([1, 1], [0, 1], [1], ties="stable")
    assert stable["mrr"] == 0.5 and stable["precision@1"] == 0.0


def test_hand_case_three_way_tie():
    m = ref.query_metrics([5, 1, 1, 1], [0, 0, 1, 0], [2], ties="average")
    # The relevant item is at rank 1, 2 or 3, each with probability 1/3.
    assert m["mrr"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)
    assert m["precision@2"] == pytest.approx((1 / 3) / 2)
    assert m["map@2"] == pytest.approx((1 / 3) * (1 / 2))
    assert m["auc_per_query"] == pytest.approx((0 + 0.5 + 0.5) / 3)


def test_gain():
    assert ref.gain_value(2.0, "exponential") == 3.0
    assert ref.gain_value(2.0, "linear") == 2.0
    exp = ref.query_metrics([2, 1], [1, 2], [1, 2], gain="exponential")
    lin = ref.query_metrics([2, 1], [1, 2], [1, 2], gain="linear")
    assert exp["dcg@2"] == pytest.approx(1 + 3 / LOG2_3)
    assert exp["idcg@2"] == pytest.approx(3 + 1 / LOG2_3)
    assert exp["ndcg@1"] == pytest.approx(1 / 3)
    assert lin["dcg@2"] == pytest.approx(1 + 2 / LOG2_3)
    assert lin["idcg@2"] == pytest.approx(2 + 1 / LOG2_3)
    assert lin["ndcg@1"] == pytest.approx(1 / 2)


def test_cutoff_beyond_n():
    m = ref.query_metrics([1.0], [1.0], [5])
    assert m["precision@5"] == pytest.approx(1 / 5)  # divided by k even when n < k
    assert m["recall@5"] == 1.0
    assert m["hit_rate@5"] == 1.0
    assert m["map@5"] == 1.0  # 1 / min(5, 1) * precision@1
    assert m["ndcg@5"] == 1.0
    assert m["auc_per_query"] is None


def test_refuses_too_many_orderings():
    assert ref.n_orderings([1.0] * 8) == math.factorial(8) <= ref.MAX_ORDERINGS
    with pytest.raises(ValueError, match="orderings"):
        ref.query_metrics([1.0] * 9, [1.0] + [0.0] * 8, [3], ties="average")
    # The stable order does not enumerate, so it has no limit.
    ref.query_metrics([1.0] * 9, [1.0] + [0.0] * 8, [3], ties="stable")


def test_bad_arguments():
    with pytest.raises(ValueError):
        ref.query_metrics([1, 2], [0, 1], [0])
    with pytest.raises(ValueError):
        ref.query_metrics([1, 2], [0, -1], [1])
    with pytest.raises(ValueError):
        ref.query_metrics([1, 2], [0, 1], [1], gain="log")
    with pytest.raises(ValueError):
        ref.reference([1], [1.0], [1.0], metrics=["ndcg@x"])


# ----------------------------------------------------------------------------------------------
# aggregation: empty rule and weights, by hand
# ----------------------------------------------------------------------------------------------

# Query a: scores [2, 1], rel [1, 0] -> everything 1 (recall@1 1, auc 1), weight 1.
# Query b: scores [2, 1], rel [0, 1] -> ndcg@1 = precision@1 = recall@1 = hit@1 = map@1 = 0,
#          mrr 1/2, auc 0, weight 3.
# Query c: scores [1, 1, 1], rel all 0 -> empty, weight 4.
# Query d: scores [1, 2], rel [1, 1] -> ndcg@1 = precision@1 = hit@1 = map@1 = mrr = 1,
#          recall@1 = 1/2, auc undefined (one class), weight 2.
# The rows are interleaved: a query's rows are not contiguous.
ROWS = [
    # (query, score, rel, weight)
    ("a", 2.0, 1.0, 1.0),
    ("c", 1.0, 0.0, 4.0),
    ("b", 2.0, 0.0, 3.0),
    ("d", 1.0, 1.0, 2.0),
    ("a", 1.0, 0.0, 1.0),
    ("c", 1.0, 0.0, 4.0),
    ("b", 1.0, 1.0, 3.0),
    ("c", 1.0, 0.0, 4.0),
    ("d", 2.0, 1.0, 2.0),
]
Q = np.array([r[0] for r in ROWS])
S = np.array([r[1] for r in ROWS])
R = np.array([r[2] for r in ROWS])
W = np.array([r[3] for r in ROWS])


@pytest.mark.parametrize("ties", ref.TIES)
def test_aggregate_skip_weighted(ties):
    got = ref.reference(Q, S, R, k=[1], gain="linear", ties=ties, empty="skip", weight=W)
    # Counted: a (1), b (3), d (2); total weight 6.
    assert got["n_queries"] == 3 and got["n_skipped"] == 1 and got["n_items"] == 9
    assert got["ndcg@1"] == pytest.approx(3 / 6)
    assert got["precision@1"] == pytest.approx(3 / 6)
    assert got["hit_rate@1"] == pytest.approx(3 / 6)
    assert got["map@1"] == pytest.approx(3 / 6)
    assert got["recall@1"] == pytest.approx((1 + 2 * 0.5) / 6)
    assert got["mrr"] == pytest.approx((1 + 3 * 0.5 + 2) / 6)
    assert got["auc_per_query"] == pytest.approx(1 / 4)  # a and b only


@pytest.mark.parametrize("ties", ref.TIES)
def test_aggregate_zero_weighted(ties):
    got = ref.reference(Q, S, R, k=[1], gain="linear", ties=ties, empty="zero", weight=W)
    # Counted: all four; c scores 0; total weight 10. auc still over a and b only.
    assert got["n_queries"] == 4 and got["n_skipped"] == 0 and got["n_items"] == 9
    assert got["ndcg@1"] == pytest.approx(3 / 10)
    assert got["precision@1"] == pytest.approx(3 / 10)
    assert got["recall@1"] == pytest.approx(2 / 10)
    assert got["mrr"] == pytest.approx(4.5 / 10)
    assert got["auc_per_query"] == pytest.approx(1 / 4)


def test_aggregate_unweighted_and_int_keys():
    keys = {"a": 10, "b": 20, "c": 30, "d": 40}
    qi = np.array([keys[q] for q in Q])
    got = ref.reference(qi, S, R, k=[1], metrics=["mrr", "precision@1"], empty="skip")
    assert set(got) == {"mrr", "precision@1", "n_queries", "n_skipped", "n_items"}
    assert got["mrr"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert got["precision@1"] == pytest.approx(2 / 3)
    assert got == ref.reference(Q, S, R, k=[1], metrics=["mrr", "precision@1"], empty="skip")
    zero = ref.reference(qi, S, R, k=[1], metrics=["mrr"], empty="zero")
    assert zero["mrr"] == pytest.approx(2.5 / 4)


def test_metric_names_expand():
    got = ref.reference(Q, S, R, k=[1, 3])
    want = {f"{m}@{k}" for m in ref.CUTOFF_METRICS for k in (1, 3)} | {"mrr", "auc_per_query"}
    assert set(got) == want | {"n_queries", "n_skipped", "n_items"}


def test_aggregate_all_skipped_gives_none():
    got = ref.reference(["x", "x", "y"], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0], k=[2], empty="skip")
    assert got["n_queries"] == 0 and got["n_skipped"] == 2 and got["n_items"] == 3
    assert all(got[name] is None for name in got if not name.startswith("n_"))
    zero = ref.reference(["x", "x", "y"], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0], k=[2], empty="zero")
    assert zero["n_queries"] == 2 and zero["ndcg@2"] == 0.0 and zero["mrr"] == 0.0
    assert zero["auc_per_query"] is None


def test_weight_must_be_constant_within_query():
    with pytest.raises(ValueError, match="constant"):
        ref.reference(["a", "a"], [1.0, 2.0], [1.0, 0.0], k=[1], weight=[1.0, 2.0])


def test_input_order_within_query_follows_rows():
    # Query "q" has rows 0 and 2 tied on score; the stable order puts row 0 first.
    q = ["q", "other", "q"]
    first = ref.reference(q, [1.0, 5.0, 1.0], [1.0, 1.0, 0.0], k=[1], metrics=["mrr"])
    second = ref.reference(q, [1.0, 5.0, 1.0], [0.0, 1.0, 1.0], k=[1], metrics=["mrr"])
    assert first["mrr"] == 1.0  # q: 1, other: 1
    assert second["mrr"] == pytest.approx((0.5 + 1) / 2)
