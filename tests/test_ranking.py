"""task="ranking": per-query metrics averaged per slice, against the brute-force reference
(tests/ranking_reference.py, itself checked against scikit-learn), under every convention
(gain, ties, empty), with weights per query, slices that are query attributes, rows of a query
in any order and any batch split, bootstrap intervals that resample queries, comparisons
paired by query, partial states of shards split by query, and the typed errors."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import ranking_reference as ref
import sklearn.metrics as skm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import assay
from assay import _native
from assay.errors import InvalidArgumentError, InvalidInputError

CUTOFF = ["ndcg", "map", "precision", "recall", "hit_rate"]


@st.composite
def ranking_data(draw):
    """Queries of 1-6 items (few orderings of their ties), shuffled across the rows, with
    graded or binary relevance, ties, queries without relevant items, a query-level slice
    column and optional query weights."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_q = draw(st.integers(1, 25))
    sizes = rng.integers(1, 7, n_q)
    q = np.repeat(np.arange(n_q) * 7 + 3, sizes)
    n = len(q)
    graded = draw(st.booleans())
    rel = rng.integers(0, 4 if graded else 2, n).astype(float)
    rel[rng.random(n) < 0.3] = 0.0
    score = np.round(rng.random(n), 1)  # ties
    seg = np.array(["a", "b", "c"])[(np.arange(n_q) % 3)][np.repeat(np.arange(n_q), sizes)]
    wq = np.round(rng.random(n_q) * 3 + 0.5, 2)
    w = np.repeat(wq, sizes)
    perm = rng.permutation(n) if draw(st.booleans()) else np.arange(n)
    return q[perm], score[perm], rel[perm], seg[perm], w[perm]


def _check(rep, q, score, rel, seg, w, k, names, gain, ties, empty) -> None:
    table = rep.table
    for row in table.iter_rows(named=True):
        m = np.ones(len(q), bool) if row["slice"] == "overall" else seg == row["slice"][4:]
        want = ref.reference(q[m], score[m], rel[m], k=k, metrics=names, gain=gain, ties=ties,
                             empty=empty, weight=None if w is None else w[m])
        assert row["n"] == want["n_queries"], row["slice"]
        assert row["n_items"] == want["n_items"]
        assert row["n_skipped"] == want["n_skipped"]
        for name in ref.metric_names(names, k):
            got, exp = row[name], want[name]
            if exp is None:
                assert got is None, (row["slice"], name, got)
            else:
                assert got == pytest.approx(exp, rel=1e-12, abs=1e-12), (row["slice"], name)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=ranking_data(), gain=st.sampled_from(["exponential", "linear"]),
       ties=st.sampled_from(["average", "stable"]), empty=st.sampled_from(["skip", "zero"]),
       k=st.sampled_from([[1], [3], [2, 5]]), weighted=st.booleans())
def test_every_metric_and_convention_matches_the_reference(data, gain, ties, empty, k,
                                                           weighted):
    q, score, rel, seg, w = data
    df = pl.DataFrame({"q": q, "s": score, "rel": rel, "seg": seg, "w": w})
    names = [*CUTOFF, "mrr", "auc_per_query"]
    rep = assay.evaluate(df, task="ranking", query="q", score="s", label="rel", k=k,
                         metrics=[*names, "n_items", "n_skipped"], slices=["seg"],
                         weight="w" if weighted else None, gain=gain, ties=ties, empty=empty)
    _check(rep, q, score, rel, seg, w if weighted else None, k, names, gain, ties, empty)


def _queries(n_q: int, seed: int, size: int = 20):
    rng = np.random.default_rng(seed)
    q = np.repeat(np.arange(n_q), size)
    rel = (rng.random(n_q * size) < 0.2).astype(float) * rng.integers(1, 4, n_q * size)
    score = rel * 0.3 + rng.random(n_q * size)
    seg = np.array(["x", "y"])[np.repeat(np.arange(n_q) % 2, size)]
    return q, score, rel, seg


def test_ndcg_matches_scikit_learn_with_its_conventions():
    q, score, rel, _ = _queries(200, 0)
    score = np.round(score, 1)  # ties, which scikit-learn averages
    df = pl.DataFrame({"q": q, "s": score, "rel": rel})
    rep = assay.evaluate(df, task="ranking", query="q", score="s", label="rel", k=[5, 20],
                         metrics=["ndcg"], gain="linear", ties="average")
    y_true, y_score = rel.reshape(200, 20), score.reshape(200, 20)
    has = y_true.sum(1) > 0
    for kk in (5, 20):
        want = skm.ndcg_score(y_true[has], y_score[has], k=kk)
        assert rep.table[f"ndcg@{kk}"][0] == pytest.approx(want, rel=1e-12)


def test_row_order_and_batches_do_not_change_the_result():
    q, score, rel, seg = _queries(300, 1)
    t = pa.table({"q": q.astype(str), "s": score, "rel": rel, "seg": seg})
    kw = dict(task="ranking", query="q", score="s", label="rel", k=[3, 10], slices=["seg"])
    one = assay.evaluate(t, **kw).table
    rng = np.random.default_rng(0)
    shuffled = t.take(rng.permutation(t.num_rows))
    for other in (assay.evaluate(shuffled, **kw).table,
                  assay.evaluate(shuffled.to_reader(max_chunksize=77), **kw).table,
                  assay.evaluate(t.to_reader(max_chunksize=1000), **kw).table):
        assert other.columns == one.columns
        for c in one.columns:
            if one[c].dtype.is_float():
                np.testing.assert_allclose(other[c].to_numpy(), one[c].to_numpy(), rtol=1e-12)
            else:
                assert other[c].to_list() == one[c].to_list()
    # Dictionary-encoded and integer query columns give the same queries.
    enc = t.set_column(0, "q", pa.array(q.astype(str)).dictionary_encode())
    assert assay.evaluate(enc, **kw).table.equals(one)
    ints = t.set_column(0, "q", pa.array(q))
    np.testing.assert_allclose(assay.evaluate(ints, **kw).table["ndcg@10"].to_numpy(),
                               one["ndcg@10"].to_numpy(), rtol=1e-12)


def test_the_same_bits_for_any_thread_count():
    q, score, rel, seg = _queries(500, 8)
    rng = np.random.default_rng(1)
    perm = rng.permutation(len(q))  # not contiguous: the sorted path
    df = pl.DataFrame({"q": q[perm], "s": score[perm], "rel": rel[perm], "seg": seg[perm]})
    kw = dict(task="ranking", query="q", score="s", label="rel", k=[3, 10], slices=["seg"],
              bootstrap=40, seed=2, metrics=["ndcg", "map", "mrr", "auc_per_query"])
    one = assay.evaluate(df, n_threads=1, **kw).table
    for threads in (2, 3, 8):
        assert assay.evaluate(df, n_threads=threads, **kw).table.equals(one)


def test_bootstrap_resamples_queries():
    q, score, rel, _ = _queries(150, 2, size=8)
    df = pl.DataFrame({"q": q, "s": score, "rel": rel})
    b = 40
    rep = assay.evaluate(df, task="ranking", query="q", score="s", label="rel", k=[5],
                         metrics=["ndcg", "mrr"], bootstrap=b, seed=3)
    # Each query weighs its Poisson draw, hashed from the query key (an integer query's
    # value): the replicate values are the reference's weighted means under those weights.
    keys = np.arange(150, dtype=np.int64)
    _, draws, _ = _native.replicate_draws(3, b, keys.view(np.uint64).tobytes())
    d = np.frombuffer(draws, dtype=np.uint32).reshape(150, b)
    for name in ("ndcg@5", "mrr"):
        reps = rep._replicates(name)[0]
        for r in range(b):
            want = ref.reference(q, score, rel, k=[5], metrics=[name.split("@")[0]],
                                 ties="average", weight=np.repeat(d[:, r], 8).astype(float))
            exp = want[name]
            if exp is None:
                assert math.isnan(reps[r])
            else:
                assert reps[r] == pytest.approx(exp, rel=1e-12), (name, r)
        lo, hi = rep.table[f"{name}_lo"][0], rep.table[f"{name}_hi"][0]
        assert lo < rep.table[name][0] < hi


def test_compare_is_paired_by_query():
    q, score, rel, seg = _queries(400, 4)
    rng = np.random.default_rng(5)
    df = pl.DataFrame({"q": q, "good": score, "bad": score + rng.normal(0, 0.6, len(q)),
                       "rel": rel, "seg": seg})
    cmp = assay.compare(df, task="ranking", query="q", label="rel",
                        scores={"good": "good", "bad": "bad"}, k=[10], metrics=["ndcg", "mrr"],
                        bootstrap=200, slices=["seg"])
    row = cmp.table.filter((pl.col("slice") == "overall") & (pl.col("metric") == "ndcg@10"))
    assert row["verdict"][0] == "worse"
    assert set(cmp.reports) == {"good", "bad"}
    one = assay.evaluate(df, task="ranking", query="q", score="bad", label="rel", k=[10],
                         metrics=["ndcg", "mrr"], slices=["seg"])
    np.testing.assert_allclose(cmp.reports["bad"].table["ndcg@10"].to_numpy(),
                               one.table["ndcg@10"].to_numpy(), rtol=1e-12)


def test_shards_split_by_query_merge_to_one_pass_and_a_split_query_is_refused():
    q, score, rel, seg = _queries(300, 6)
    df = pl.DataFrame({"q": q, "s": score, "rel": rel, "seg": seg})
    spec = assay.Spec(task="ranking", query="q", score="s", label="rel", k=[5, 10],
                      slices=["seg"], bootstrap=30, seed=1)
    cut = 20 * 130  # a query boundary
    parts = [spec.accumulate(df[:cut]), spec.accumulate(df[cut:], row_offset=cut)]
    shipped = [assay.PartialState.from_bytes(p.to_bytes()) for p in parts]
    got = assay.merge(shipped[::-1]).finalize().table
    want = spec.evaluate(df).table
    for c in want.columns:
        if want[c].dtype.is_float():
            np.testing.assert_allclose(got[c].to_numpy(), want[c].to_numpy(), rtol=1e-12)
        else:
            assert got[c].to_list() == want[c].to_list()
    assert assay.Spec.from_dict(spec.to_dict()) == spec
    # A cut inside a query: each shard would finish the query from part of its rows.
    bad = [spec.accumulate(df[: cut + 5]), spec.accumulate(df[cut + 5:], row_offset=cut + 5)]
    with pytest.raises(assay.StateMismatchError, match="same query.*shard ranking data by query"):
        assay.merge(bad)


def test_rows_in_input_order_break_ties_under_stable():
    df = pl.DataFrame({"q": [1, 1, 1], "s": [0.5, 0.5, 0.1], "rel": [0, 1, 0]})
    kw = dict(task="ranking", query="q", score="s", label="rel", metrics=["mrr", "precision"],
              k=[1])
    stable = assay.evaluate(df, ties="stable", **kw).table
    average = assay.evaluate(df, **kw).table
    assert stable["mrr"][0] == 0.5 and stable["precision@1"][0] == 0.0
    assert average["mrr"][0] == 0.75 and average["precision@1"][0] == 0.5


def test_defaults_name_the_metrics_of_each_cutoff():
    q, score, rel, _ = _queries(10, 7)
    df = pl.DataFrame({"q": q, "s": score, "rel": rel})
    rep = assay.evaluate(df, task="ranking", query="q", score="s", label="rel")
    assert rep.table.columns == ["slice", "spec", "n", "ndcg@10", "map@10",
                                 "precision@10", "recall@10", "hit_rate@10", "mrr", "n_items",
                                 "n_skipped"]
    rep = assay.evaluate(df, task="ranking", query="q", score="s", label="rel", k=[5, 1])
    assert "ndcg@5" in rep.table.columns and "hit_rate@1" in rep.table.columns
    assert "auc_per_query" in assay.RANKING_METRICS and "ndcg@<k>" in assay.RANKING_METRICS


@pytest.mark.parametrize(("kwargs", "data", "error", "message"), [
    ({}, {"rel": [0, -1]}, InvalidInputError, r'column "rel".*relevance grades must be >= 0'),
    ({}, {"s": [0.1, float("nan")]}, InvalidInputError, r"score is NaN at row 1"),
    ({}, {"q": [1, None]}, InvalidInputError, r"query is null at row 1"),
    ({}, {"seg": ["a", "b"]}, InvalidInputError, r"query attributes.*rows 0 and 1"),
    ({"weight": "w"}, {"w": [1.0, 2.0]}, InvalidInputError, r"weigh queries"),
    ({"query": None}, {}, InvalidArgumentError, r"needs query="),
    ({"gain": "log"}, {}, InvalidArgumentError, r"gain must be one of"),
    ({"ties": "first"}, {}, InvalidArgumentError, r"ties must be one of"),
    ({"empty": "drop"}, {}, InvalidArgumentError, r"empty must be one of"),
    ({"k": 0}, {}, InvalidArgumentError, r"k \(a ranking cutoff\)"),
    ({"bootstrap": 10, "row_id": "q"}, {}, InvalidArgumentError, r"resamples queries"),
    ({"metrics": ["accuracy"]}, {}, InvalidArgumentError, r"not a ranking metric"),
    ({"threshold": 0.3}, {}, InvalidArgumentError, r"threshold only applies"),
    ({"metrics": ["ndcg@0"]}, {}, InvalidArgumentError, r"ranking cutoff"),
    ({"ci_method": "analytic"}, {}, InvalidArgumentError, r"no analytic intervals"),
])
def test_bad_input_gets_a_typed_error(kwargs, data, error, message):
    cols = {"q": [1, 1], "s": [0.2, 0.1], "rel": [1, 0], "seg": ["a", "a"], "w": [1.0, 1.0]}
    cols.update(data)
    kw = {"task": "ranking", "query": "q", "score": "s", "label": "rel", "slices": ["seg"],
          **kwargs}
    with pytest.raises(error, match=message):
        assay.evaluate(pl.DataFrame(cols), **kw)


def test_ranking_options_are_refused_for_other_tasks_and_nan_drop_drops_rows():
    df = pl.DataFrame({"q": [1, 1, 2, 2], "s": [0.2, float("nan"), 0.3, 0.1],
                       "rel": [1, 0, 0, 1]})
    with pytest.raises(InvalidArgumentError, match="query only applies to task='ranking'"):
        assay.evaluate(df, label="rel", score="s", query="q")
    with pytest.raises(InvalidArgumentError, match="k only applies to task='multiclass'.*"
                       "task='ranking'"):
        assay.evaluate(df, label="rel", score="s", k=3)
    rep = assay.evaluate(df, task="ranking", query="q", score="s", label="rel", k=[1],
                         metrics=["mrr"], nan_policy="drop")
    assert rep.dropped == 1 and rep.table["mrr"][0] == pytest.approx((1 + 0.5) / 2)


def test_the_command_line_evaluates_a_ranker(tmp_path, capsys):
    import pyarrow.parquet as pq

    from assay.cli import main
    from assay.demo import make_ranking_data

    path = tmp_path / "recs.parquet"
    pq.write_table(make_ranking_data(500, seed=1), path)
    assert main(["evaluate", str(path), "--task", "ranking", "--query", "user_id", "--score",
                 "score", "--label", "relevance", "--cutoffs", "5,10", "--metrics", "ndcg,mrr",
                 "--ties", "stable", "--slice", "market", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("slice,spec,market,n,ndcg@5,ndcg@10,mrr")
    want = assay.evaluate(pq.read_table(path), task="ranking", query="user_id", score="score",
                          label="relevance", k=[5, 10], metrics=["ndcg", "mrr"], ties="stable",
                          slices=["market"])
    assert out.splitlines()[1].startswith(f"overall,overall,,{want.table['n'][0]},")
    assert main(["evaluate", str(path), "--task", "ranking", "--score", "score", "--label",
                 "relevance"]) == 2
    assert "query=" in capsys.readouterr().err


def test_the_torch_path_refuses_ranking():
    torch = pytest.importorskip("torch")
    from assay import torch as at

    spec = assay.Spec(task="ranking", query="q", score="s", label="rel")
    with pytest.raises(InvalidArgumentError, match="ranking.*not on the torch path"):
        at.Evaluator(spec, device=torch.device("cpu"))


def test_review_cases():
    # A dictionary query column whose dictionary is empty (every row null).
    t = pa.table({"q": pa.array([None, None], pa.string()).dictionary_encode(),
                  "s": [0.2, 0.1], "rel": [1, 0]})
    with pytest.raises(InvalidInputError, match="query is null at row 0"):
        assay.evaluate(t, task="ranking", query="q", score="s", label="rel")
    # A cutoff metric named bare and at the default k is one metric; numpy integers are k.
    df = pl.DataFrame({"q": [1, 1, 2, 2], "s": [0.2, 0.1, 0.3, 0.1], "rel": [1, 0, 0, 1]})
    rep = assay.evaluate(df, task="ranking", query="q", score="s", label="rel",
                         metrics=["ndcg", "ndcg@10"], k=np.int64(10))
    assert rep.table.columns == ["slice", "spec", "n", "ndcg@10"]
    # With several bad queries the error names the first in key order, whatever the threads.
    bad = pl.DataFrame({"q": [9, 9, 3, 3, 5], "s": [0.1] * 5, "rel": [1, 0, 1, 0, 1],
                        "g": ["a", "b", "c", "d", "e"]})
    for threads in (1, 2, 4):
        with pytest.raises(InvalidInputError, match="rows 2 and 3"):
            assay.evaluate(bad, task="ranking", query="q", score="s", label="rel",
                           slices=["g"], n_threads=threads)
    # The slice blocks of a ranking job must fit, like any other family's.
    n = 10_000
    many = pl.DataFrame({"q": np.arange(n), "s": np.zeros(n), "rel": np.ones(n),
                         "g": np.arange(n)})
    with pytest.raises(InvalidArgumentError, match="per-slice state"):
        assay.evaluate(many, task="ranking", query="q", score="s", label="rel", slices=["g"],
                       bootstrap=50_000)


def test_slice_discovery_says_it_does_not_take_ranking_yet():
    df = pl.DataFrame({"q": [1, 1], "s": [0.2, 0.1], "rel": [1, 0], "g": ["a", "a"]})
    with pytest.raises(InvalidArgumentError, match="does not take task='ranking' yet"):
        assay.discover_slices(df, task="ranking", label="rel", score="s", features=["g"])
