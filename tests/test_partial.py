"""Partial states (issue 13): ``assay.Spec``, ``Spec.accumulate``, ``assay.merge``,
``PartialState.finalize``, their byte format and their refusals.

The central property: for any split of the rows into shards (1 to 16, some empty), any batch
sizes, dictionary encodings that differ between shards, and any merge tree, ``finalize`` equals
``assay.evaluate`` (or ``assay.compare``) on the concatenated rows: counts exactly, every float
within 1e-12 relative, nulls and notes identical; and merging the same shards in any list order
gives the same bits.
"""

from __future__ import annotations

import gc
import json
import math
import pickle
import random
import sys

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import assay
from assay import PartialState, Spec

EXAMPLES = 25
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

STRINGS = np.array(["a", "b", "c", "d", "zz", "é", "rare"])
STRING_P = [0.3, 0.25, 0.2, 0.1, 0.1, 0.04, 0.01]
DICT_VALUES = np.array(["mobile", "desktop", "tablet", "tv"])
EDGES = [-1.0, 0.0, 0.5, 2.0]
SLICES = ["s", "i", "b", "d", ("s", "b"), assay.bins("x", edges=EDGES), ("d", "i")]
CALIBRATION = ["ece", "ace", "smooth_ece", "brier_reliability", "oe_ratio", "mce"]
# The logistic calibration fit, on slices of any size: tiny ones are often (quasi-)separated,
# which must give null in every merge order (a CI run once found a slope in one order only).
FIT = ["calibration_slope", "calibration_intercept", "ece"]


# --------------------------------------------------------------------------------------------
# data, shards and merge trees
# --------------------------------------------------------------------------------------------


def make_table(seed: int, n: int, *, nan_scores: bool = False) -> pa.Table:
    """``n`` rows with ties, weights, two scores, a row id and slice columns of every kind
    (string, int, bool, a string to dictionary-encode per shard, a float to bin), with nulls
    and rare values."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(np.int64)
    ties = seed % 3
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    if ties == 1:
        p = np.round(p, 1)
    elif ties == 2:
        p = rng.choice([0.1, 0.35, 0.5, 0.8, 0.95], n)
    q = np.clip(p + rng.normal(0, 0.2, n), 0, 1)
    p_list: list[float | None] = p.tolist()
    if nan_scores:
        for j in range(1, n):
            if rng.random() < 0.05:
                p_list[j] = float("nan") if rng.random() < 0.5 else None
    s = rng.choice(STRINGS, n, p=STRING_P).tolist()
    i = rng.integers(-3, 6, n).tolist()
    b = (rng.random(n) < 0.4).tolist()
    d = rng.choice(DICT_VALUES, n, p=[0.5, 0.3, 0.15, 0.05]).tolist()
    x = rng.normal(0.4, 0.6, n).tolist()
    for col in (s, i, b, d, x):
        for j in range(n):
            if rng.random() < 0.04:
                col[j] = None
    ids = (rng.permutation(n) * 3 + 7).astype(np.int64)
    return pa.table({
        "y": pa.array(y),
        "p": pa.array(p_list, pa.float64()),
        "q": pa.array(q),
        "w": pa.array(rng.uniform(0.1, 5.0, n)),
        "id": pa.array(ids),
        "s": pa.array(s, pa.string()),
        "i": pa.array(i, pa.int64()),
        "b": pa.array(b, pa.bool_()),
        "d": pa.array(d, pa.string()),
        "x": pa.array(x, pa.float64()),
    })


def shard_table(full: pa.Table, start: int, stop: int, rnd: random.Random) -> pa.Table:
    """Rows [start, stop) of ``full``, in random batches, with ``d`` dictionary-encoded (in a
    shuffled dictionary order, with an unused value) in about half of the shards."""
    t = full.slice(start, stop - start)
    if rnd.random() < 0.5:
        values = t.column("d").combine_chunks()
        dictionary = list(DICT_VALUES) + ["unused"]
        rnd.shuffle(dictionary)
        pos = {v: k for k, v in enumerate(dictionary)}
        idx = pa.array([None if v is None else pos[v] for v in values.to_pylist()], pa.int32())
        enc = pa.DictionaryArray.from_arrays(idx, pa.array(dictionary))
        t = t.set_column(t.schema.get_field_index("d"), "d", enc)
    if t.num_rows > 1 and rnd.random() < 0.7:
        cuts = sorted(rnd.sample(range(1, t.num_rows), min(3, t.num_rows - 1)))
        bounds = [0, *cuts, t.num_rows]
        t = pa.concat_tables([t.slice(a, b - a) for a, b in zip(bounds, bounds[1:], strict=False)])
    return t


def accumulate_shards(spec: Spec, full: pa.Table, bounds: list[int], rnd: random.Random,
                      offsets: bool = True) -> list[PartialState]:
    out = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        t = shard_table(full, a, b, rnd)
        data: object = t
        if rnd.random() < 0.3:
            data = pa.RecordBatchReader.from_batches(t.schema, t.to_batches())
        out.append(spec.accumulate(data, row_offset=a if offsets else 0))
    return out


def roundtrip(state: PartialState, rnd: random.Random) -> PartialState:
    r = rnd.random()
    if r < 0.15:
        return PartialState.from_bytes(state.to_bytes())
    if r < 0.25:
        return pickle.loads(pickle.dumps(state))
    return state


def merge_tree(states: list[PartialState], rnd: random.Random) -> PartialState:
    """A random merge tree: random groups of 2-4 nodes, by ``a.merge(b)`` or ``assay.merge``,
    with random byte and pickle round trips on the way."""
    nodes = [roundtrip(s, rnd) for s in states]
    while len(nodes) > 1:
        k = rnd.randint(2, min(4, len(nodes)))
        picks = sorted(rnd.sample(range(len(nodes)), k), reverse=True)
        group = [nodes.pop(j) for j in picks]
        rnd.shuffle(group)
        if k == 2 and rnd.random() < 0.5:
            merged = group[0].merge(group[1])
        elif rnd.random() < 0.3:
            merged = group[0].merge(group[1:])
        else:
            merged = assay.merge(group)
        nodes.append(roundtrip(merged, rnd))
    return nodes[0]


# --------------------------------------------------------------------------------------------
# comparing results
# --------------------------------------------------------------------------------------------


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


def assert_frames_close(got: pl.DataFrame, want: pl.DataFrame, what: str) -> None:
    assert got.columns == want.columns, what
    assert got.dtypes == want.dtypes, what
    assert got.height == want.height, what
    for c in want.columns:
        g, w = got[c].to_list(), want[c].to_list()
        if want[c].dtype in (pl.Float64, pl.Float32):
            for r, (x, y) in enumerate(zip(g, w, strict=True)):
                assert (x is None) == (y is None), f"{what}: null differs in {c} row {r}"
                if x is not None:
                    assert close(x, y), f"{what}: {c} row {r}: {x!r} vs {y!r}"
        else:
            assert g == w, f"{what}: column {c} differs"


def assert_same_report(got: assay.Report, want: assay.Report, what: str = "report") -> None:
    assert isinstance(got, assay.Report), type(got)
    assert (got.rows, got.dropped) == (want.rows, want.dropped), what
    assert got.metrics == want.metrics and got.ci_method == want.ci_method, what
    assert_frames_close(got.table, want.table, f"{what} table")
    assert_frames_close(got.long(), want.long(), f"{what} long")
    assert got.notes.to_dicts() == want.notes.to_dicts(), f"{what}: notes differ"


def assert_same_result(got: object, want: object) -> None:
    if isinstance(want, assay.Comparison):
        assert isinstance(got, assay.Comparison), type(got)
        assert (got.reference, got.level, got.method) == (want.reference, want.level,
                                                          want.method)
        assert_frames_close(got.table, want.table, "comparison")
        assert list(got.reports) == list(want.reports)
        for name in want.reports:
            assert_same_report(got.reports[name], want.reports[name], name)
    else:
        assert_same_report(got, want)  # type: ignore[arg-type]


def assert_bit_identical(a: object, b: object) -> None:
    assert a.to_arrow().equals(b.to_arrow())  # type: ignore[attr-defined]
    if isinstance(a, assay.Report):
        assert a.notes.to_dicts() == b.notes.to_dicts()  # type: ignore[attr-defined]
        assert a.long().equals(b.long())  # type: ignore[attr-defined]
    else:
        for name in a.reports:  # type: ignore[attr-defined]
            assert_bit_identical(a.reports[name], b.reports[name])  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# the property
# --------------------------------------------------------------------------------------------

SPECS = {
    "plain": dict(slices=SLICES, threshold=0.4),
    "min-size": dict(slices=SLICES, min_slice_size=5, metrics=["accuracy", "roc_auc", "f1"]),
    "weighted-drop": dict(slices=SLICES, weight="w", nan_policy="drop"),
    "binned": dict(slices=SLICES, auc="binned", auc_bins=64),
    "percentile": dict(slices=SLICES, bootstrap=40, seed=3,
                       metrics=["accuracy", "roc_auc", "average_precision", "log_loss"]),
    "bca": dict(slices=SLICES, bootstrap=40, ci_method="bca", seed=5, weight="w",
                metrics=["accuracy", "roc_auc", "brier", "mcc"]),
    "basic-row-id": dict(slices=SLICES, bootstrap=40, ci_method="basic", row_id="id",
                         metrics=["accuracy", "recall", "roc_auc"]),
    "analytic": dict(slices=SLICES, ci_method="analytic", weight="w"),
    "calibration-uniform": dict(slices=["s", ("b", "d")], metrics=CALIBRATION,
                                calibration_bins=5, bootstrap=20),
    "calibration-quantile": dict(slices=["s", ("b", "d")], metrics=CALIBRATION,
                                 calibration_bins=4, calibration_strategy="quantile",
                                 weight="w"),
    "calibration-fit": dict(slices=["s", "b"], metrics=FIT, weight="w"),
    "comparison": dict(scores={"old": "p", "new": "q"}, slices=["s", ("i", "b"), "d"],
                       bootstrap=30, metrics=["accuracy", "roc_auc", "brier", "ece"]),
    "comparison-bca-row-id": dict(scores={"new": "q", "old": "p"}, reference="old",
                                  slices=["s", "d"], bootstrap=30, ci_method="bca",
                                  row_id="id", metrics=["roc_auc", "f1"]),
}


def direct(full: pa.Table, kw: dict) -> object:
    """assay.evaluate / assay.compare on all the rows (not through the Spec)."""
    if "scores" in kw:
        return assay.compare(full, label="y", **kw)
    return assay.evaluate(full, label="y", score="p", **kw)


@st.composite
def splits(draw: st.DrawFn) -> tuple[int, int, list[int], int]:
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(1, 400))
    k = draw(st.integers(1, 16))
    cuts = sorted(draw(st.lists(st.integers(0, n), min_size=k - 1, max_size=k - 1)))
    return seed, n, [0, *cuts, n], draw(st.integers(0, 2**32 - 1))


@pytest.mark.parametrize("kind", list(SPECS))
@SETTINGS
@given(case=splits())
def test_finalize_of_any_split_and_merge_tree_equals_one_evaluate(kind, case):
    seed, n, bounds, tree_seed = case
    kw = SPECS[kind]
    full = make_table(seed, n, nan_scores=kw.get("nan_policy") == "drop")
    spec = Spec("y", None if "scores" in kw else "p", **kw)
    rnd = random.Random(tree_seed)
    try:
        want = direct(full, kw)
    except assay.AssayError as e:  # e.g. BCa's jackknife on too few rows: refused alike
        with pytest.raises(type(e)):
            spec.evaluate(full)
        with pytest.raises(type(e)):
            merge_tree(accumulate_shards(spec, full, bounds, rnd, "row_id" not in kw),
                       rnd).finalize()
        return
    assert_same_result(spec.evaluate(full), want)  # the spec's own one-pass path

    parts = accumulate_shards(spec, full, bounds, rnd, offsets="row_id" not in kw)
    assert sum(p.rows for p in parts) == n
    tree = merge_tree(parts, rnd)
    assert tree.rows == n and tree.spec == spec
    assert_same_result(tree.finalize(), want)

    # The order of the list does not matter, to the bit.
    flat = assay.merge(parts).finalize()
    assert_same_result(flat, want)
    shuffled = parts[:]
    rnd.shuffle(shuffled)
    assert_bit_identical(assay.merge(reversed(parts)).finalize(), flat)
    assert_bit_identical(assay.merge(shuffled).finalize(), flat)
    # Finalizing does not consume or change a state.
    assert_bit_identical(assay.merge(parts).finalize(), flat)


def test_empty_shard_is_a_valid_state_and_merges_as_the_identity():
    full = make_table(1, 50)
    spec = Spec("y", "p", slices=SLICES, bootstrap=20)
    empty = spec.accumulate(full.slice(0, 0), row_offset=0)
    assert empty.rows == 0 and empty.dropped == 0
    assert PartialState.from_bytes(empty.to_bytes()).rows == 0
    part = spec.accumulate(full, row_offset=0)
    assert_bit_identical(assay.merge([empty, part]).finalize(), part.finalize())
    assert_bit_identical(assay.merge([part, empty, empty]).finalize(), part.finalize())
    with pytest.raises(assay.EmptyInputError):
        empty.finalize()


# --------------------------------------------------------------------------------------------
# Spec
# --------------------------------------------------------------------------------------------


def test_spec_to_dict_is_json_ready_and_round_trips():
    found = pl.DataFrame({
        "slice": ["s=a & x=[0, 0.5)"],
        "predicates": [[{"feature": "s", "value": "a", "edges": None},
                        {"feature": "x", "value": "[0, 0.5)", "edges": EDGES}]],
    })
    spec = Spec("y", "p", slices=["s", ("s", "b"), assay.bins("x", 3, strategy="uniform"),
                                  assay.bins("x", edges=[0, 1]), found],
                metrics=["f2", "accuracy"], threshold=0.25, weight="w", bootstrap=100,
                ci=0.9, ci_method="bca", seed=2**64 - 1, row_id="id", auc="exact",
                calibration_bins=7, calibration_strategy="quantile", nan_policy="drop")
    d = spec.to_dict()

    def plain(x: object) -> bool:
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, list):
            return all(plain(v) for v in x)
        return x is None or isinstance(x, (str, int, float, bool))

    assert plain(d) and d["format"] == 1
    assert d["slices"] == [
        "s", ["s", "b"], {"column": "x", "bins": 3, "strategy": "uniform"},
        {"column": "x", "edges": [0.0, 1.0]},
        {"features": ["s", {"column": "x", "edges": EDGES}], "only": "s=a & x=[0, 0.5)"},
    ]
    assert d["metrics"] == ["f2", "accuracy"]
    text = json.dumps(d)
    back = Spec.from_dict(json.loads(text))
    assert back == spec and hash(back) == hash(spec) and back.to_dict() == d
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert "assay.Spec(label='y', score='p'" in repr(spec)
    # to_dict hands out a copy
    d["label"] = "changed"
    assert spec.label == "y"
    with pytest.raises(AttributeError):
        spec.label = "z"  # type: ignore[misc]


def test_comparison_spec_round_trips_and_orders_the_reference_first():
    a = Spec("y", scores={"old": "p", "new": "q"}, reference="new", bootstrap=50)
    b = Spec("y", scores={"new": "q", "old": "p"}, bootstrap=50)
    assert a == b and a.is_comparison and a.reference == "new"
    assert a.scores == {"new": "q", "old": "p"} and a.ci_method == "percentile"
    assert a.to_dict()["scores"] == [["new", "q"], ["old", "p"]]
    assert Spec.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    assert pickle.loads(pickle.dumps(a)) == a


def test_spec_equality_follows_the_job():
    base = Spec("y", "p")
    assert base == Spec("y", "p", metrics=list(assay.METRICS), seed=7, ci=0.5)  # unused
    assert base == Spec("y", "p", auc_bins=17)  # unused unless auc="binned"
    assert Spec("y", "p", slices="s") == Spec("y", "p", slices=[("s",)])
    assert base != Spec("y", "p", threshold=0.3)
    assert Spec("y", "p", bootstrap=10) != Spec("y", "p", bootstrap=10, seed=1)
    assert Spec("y", "p", auc="binned", auc_bins=17) != Spec("y", "p", auc="binned")
    assert Spec("y", "p", auc="sketch").auc_max_runs == assay._evaluate._default_max_runs()
    assert len({base, Spec("y", "p"), Spec("y", "p", weight="w")}) == 2
    assert base != "not a spec"


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "exactly one of score"),
    (dict(score="p", scores={"a": "p", "b": "q"}), "exactly one of score"),
    (dict(score="p", reference="a"), "reference"),
    (dict(scores={"a": "p", "b": "q"}), "bootstrap"),
    (dict(scores={"a": "p"}, bootstrap=10), "at least two"),
    (dict(scores={"a": "p", "b": "q"}, bootstrap=10, ci_method="analytic"), "resamples"),
    (dict(scores={"a": "p", "b": "q"}, bootstrap=10, reference="c"), "reference"),
    (dict(score="p", threshold=float("nan")), "threshold"),
    (dict(score="p", metrics=["nope"]), "nope"),
    (dict(score="p", slices=None), "slices"),
    (dict(score="p", slices=[()]), "empty tuple"),
    (dict(score="p", auc="fast"), "auc"),
    (dict(score="p", auc="sketch", auc_max_runs=3), "auc_max_runs"),
    (dict(score="p", auc="sketch", auc_max_runs=10**9), "auc_max_runs"),
    (dict(score="p", ci_method="bca"), "bootstrap"),
    (dict(score="p", row_id="id"), "row_id"),
    (dict(score="p", seed=-1), "seed"),
    (dict(score="p", calibration_strategy="equal"), "calibration_strategy"),
    (dict(score="p", nan_policy="skip"), "nan_policy"),
    (dict(score=3), "column names"),
])
def test_spec_validates_at_construction_like_evaluate(kwargs, match):
    with pytest.raises(assay.InvalidArgumentError, match=match):
        Spec("y", **kwargs)


@pytest.mark.parametrize("change, match", [
    ({"format": 2}, "newer"),
    ({"format": "1"}, "format"),
    ({"colour": "red"}, "unknown key"),
    ({"slices": "s"}, "slices"),
    ({"slices": [{"column": "x", "edges": [1.0, 0.0]}]}, "increasing"),
    ({"slices": [{"column": "x", "edges": [0.0, float("inf")]}]}, "finite"),
    ({"slices": [{"column": "x", "bins": 0, "strategy": "quantile"}]}, "n must be"),
    ({"slices": [{"column": "x"}]}, "slice feature"),
    ({"slices": [[]]}, "empty"),
    ({"metrics": ["nope"]}, "nope"),
    ({"seed": 1.5}, "seed"),
    ({"scores": [["a", "p"], ["a", "q"]], "score": None, "bootstrap": 5}, "own name"),
])
def test_from_dict_refuses_what_it_cannot_read(change, match):
    d = Spec("y", "p").to_dict()
    d.update(change)
    with pytest.raises(assay.InvalidArgumentError, match=match):
        Spec.from_dict(d)
    with pytest.raises(assay.InvalidArgumentError, match="dict"):
        Spec.from_dict([("label", "y")])  # type: ignore[arg-type]
    no_format = Spec("y", "p").to_dict()
    del no_format["format"]
    with pytest.raises(assay.InvalidArgumentError, match="format"):
        Spec.from_dict(no_format)


def test_resolve_fixes_data_derived_bins_and_accumulate_refuses_them():
    full = make_table(4, 300)
    spec = Spec("y", "p", slices=["s", assay.bins("x", 4), ("b", assay.bins("x", 4)),
                                  assay.bins("x", 3, strategy="uniform")])
    with pytest.raises(assay.InvalidArgumentError, match=r"'x'.*spec\.resolve\(data\)") as e:
        spec.accumulate(full)
    assert e.value.column == "x"
    fixed = spec.resolve(full)
    assert fixed != spec and fixed.resolve(full) is fixed
    assert Spec("y", "p").resolve(full) == Spec("y", "p")
    x = np.array([v for v in full.column("x").to_pylist() if v is not None])
    assert fixed.slices[1].edges == tuple(np.quantile(x, np.linspace(0, 1, 5)))
    assert fixed.slices[2][1] == fixed.slices[1]
    assert fixed.slices[3].edges == tuple(np.linspace(x.min(), x.max(), 4))
    # A resolved spec's states finalize to evaluate with the data-derived bins.
    parts = [fixed.accumulate(full.slice(a, 100), row_offset=a) for a in (0, 100, 200)]
    assert_same_report(assay.merge(parts).finalize(), spec.evaluate(full))
    # A constant column resolves to one degenerate bin, which to_dict/from_dict keeps.
    const = Spec("y", "p", slices=[assay.bins("c", 3)]).resolve({"c": [2.0, 2.0, 2.0]})
    assert Spec.from_dict(const.to_dict()) == const


# --------------------------------------------------------------------------------------------
# PartialState
# --------------------------------------------------------------------------------------------


def _parts(spec: Spec, n: int = 120, k: int = 3, seed: int = 0) -> list[PartialState]:
    full = make_table(seed, n)
    step = n // k
    return [spec.accumulate(full.slice(a, step), row_offset=a) for a in range(0, n, step)]


def test_state_attributes_pickle_and_repr():
    spec = Spec("y", "p", slices=["s", "b"], bootstrap=20)
    a, b, c = _parts(spec)
    assert (a.rows, a.dropped, a.row_ranges) == (40, 0, [(0, 40)])
    assert a.spec == spec and a.nbytes == len(a.to_bytes()) > 0
    assert a.format_version == assay._native.STATE_FORMAT_VERSION
    m = a.merge([b, c])
    assert m.rows == 120 and sum(e - s for s, e in m.row_ranges) == 120
    assert (a.rows, b.rows, c.rows) == (40, 40, 40)  # inputs unchanged
    again = pickle.loads(pickle.dumps(m))
    assert again.to_bytes() == m.to_bytes() and again.spec == spec
    assert_bit_identical(again.finalize(), m.finalize())
    assert PartialState.from_bytes(bytearray(m.to_bytes())).rows == 120
    assert PartialState.from_bytes(memoryview(m.to_bytes())).rows == 120
    assert repr(m).startswith("assay.PartialState(120 rows, 2 slice specs, ")
    with pytest.raises(TypeError):
        PartialState()


def test_merging_different_specs_is_refused():
    a = _parts(Spec("y", "p", slices=["s"]))[0]
    b = _parts(Spec("y", "p", slices=["s"], threshold=0.3))[1]
    with pytest.raises(assay.StateMismatchError, match="threshold"):
        assay.merge([a, b])
    with pytest.raises(assay.StateMismatchError):
        a.merge(b)
    c = _parts(Spec("y", "p", slices=["s"], bootstrap=10))[1]
    d = _parts(Spec("y", "p", slices=["s"], bootstrap=10, seed=1))[2]
    with pytest.raises(assay.StateMismatchError, match="seed"):
        c.merge(d)


def test_overlapping_rows_of_a_bootstrap_spec_are_refused():
    spec = Spec("y", "p", slices=["s"], bootstrap=10)
    full = make_table(2, 100)
    a = spec.accumulate(full.slice(0, 50))
    b = spec.accumulate(full.slice(50, 50))  # forgot row_offset=50: both start at 0
    with pytest.raises(assay.StateMismatchError, match=r"row|overlap"):
        assay.merge([a, b])
    with pytest.raises(assay.StateMismatchError):
        a.merge(a)
    # Without resampling the offsets only label the rows: merging is fine.
    plain = Spec("y", "p", slices=["s"])
    plain.accumulate(full.slice(0, 50)).merge(plain.accumulate(full.slice(50, 50)))
    # With row_id the replicate weights follow the ids: fine too.
    by_id = Spec("y", "p", slices=["s"], bootstrap=10, row_id="id")
    by_id.accumulate(full.slice(0, 50)).merge(by_id.accumulate(full.slice(50, 50)))


@pytest.mark.parametrize("bad, match", [
    ([], "at least one"),
    ([1, 2], "item 0"),
    ("states", "list"),
    (None, "list"),
])
def test_merge_arguments_are_checked(bad, match):
    with pytest.raises(assay.InvalidArgumentError, match=match):
        assay.merge(bad)


def test_merge_of_one_state_is_a_copy_and_bad_merge_arguments():
    (a, b, _c) = _parts(Spec("y", "p"))
    one = assay.merge([a])
    assert one is not a and one.to_bytes() == a.to_bytes()
    with pytest.raises(assay.InvalidArgumentError, match="list"):
        assay.merge(a)  # type: ignore[arg-type]
    with pytest.raises(assay.InvalidArgumentError, match="PartialState"):
        a.merge(3)  # type: ignore[arg-type]
    with pytest.raises(assay.InvalidArgumentError, match="item 2"):
        a.merge([b, "x"])  # type: ignore[list-item]


def test_row_offset_is_checked():
    spec = Spec("y", "p")
    data = {"y": [0, 1], "p": [0.2, 0.8]}
    assert spec.accumulate(data, row_offset=2**64 - 3).row_ranges == [(2**64 - 3, 2**64 - 1)]
    with pytest.raises(assay.InvalidArgumentError, match="row_offset"):
        spec.accumulate(data, row_offset=2**64 - 2)  # its rows would end past 2**64 - 1
    for bad in (-1, 2**64, 1.5, "3", True):
        with pytest.raises(assay.InvalidArgumentError, match="row_offset"):
            spec.accumulate(data, row_offset=bad)


def test_sketch_refuses_bootstrap_of_rank_metrics():
    data = make_table(3, 200)
    with pytest.raises(assay.InvalidArgumentError, match="analytic"):
        Spec("y", "p", auc="sketch", bootstrap=10)
    with pytest.raises(assay.InvalidArgumentError, match="analytic"):
        assay.evaluate(data, label="y", score="p", auc="sketch", bootstrap=10)
    with pytest.raises(assay.InvalidArgumentError, match="analytic"):
        Spec("y", scores={"a": "p", "b": "q"}, auc="sketch", bootstrap=10)
    # Additive metrics resample fine with a sketch; rank metrics get analytic intervals.
    spec = Spec("y", "p", auc="sketch", bootstrap=10, metrics=["accuracy", "brier"])
    assert_same_report(spec.accumulate(data).finalize(), spec.evaluate(data))
    rep = Spec("y", "p", auc="sketch", ci_method="analytic").accumulate(data).finalize()
    assert rep.table["roc_auc_lo"][0] < rep.table["roc_auc"][0] < rep.table["roc_auc_hi"][0]
    # Quantile calibration bins keep every row: refused next to sketched rank metrics.
    for kw in (dict(metrics=["ace", "roc_auc"]),
               dict(metrics=["ece", "average_precision"], calibration_strategy="quantile")):
        with pytest.raises(assay.InvalidArgumentError, match="uniform"):
            Spec("y", "p", auc="sketch", **kw)
        with pytest.raises(assay.InvalidArgumentError, match="uniform"):
            assay.evaluate(data, label="y", score="p", auc="sketch", **kw)
    # Without rank metrics there is nothing to sketch: they work (and keep their rows).
    Spec("y", "p", auc="sketch", metrics=["ace"]).accumulate(data).finalize()


@SETTINGS
@given(case=splits(), runs=st.sampled_from([16, 40, 200, 1000]))
def test_sketch_error_stays_within_its_reported_bound(case, runs):
    seed, n, bounds, tree_seed = case
    full = make_table(seed, n)
    spec = Spec("y", "p", slices=["s", "b"], auc="sketch", auc_max_runs=runs,
                metrics=["roc_auc", "average_precision", "accuracy"])
    exact = assay.evaluate(full, label="y", score="p", slices=["s", "b"],
                           metrics=["roc_auc", "average_precision", "accuracy"])
    rnd = random.Random(tree_seed)
    parts = accumulate_shards(spec, full, bounds, rnd)
    got = merge_tree(parts, rnd).finalize()
    flat = assay.merge(parts).finalize()
    assert_bit_identical(assay.merge(reversed(parts)).finalize(), flat)
    assert got.table["slice"].to_list() == exact.table["slice"].to_list()
    assert got.table["n"].to_list() == exact.table["n"].to_list()
    bounds_ = sketch_bounds(got)
    if exact.table["roc_auc"][0] is not None:
        assert ("overall", "roc_auc") in bounds_  # every sketched value states its bound
        assert "error_bound" in got.long().columns
    for row_got, row_exact in zip(got.table.iter_rows(named=True),
                                  exact.table.iter_rows(named=True), strict=True):
        assert row_got["accuracy"] == pytest.approx(row_exact["accuracy"], rel=1e-12)
        for m in ("roc_auc", "average_precision"):
            g, e = row_got[m], row_exact[m]
            assert (g is None) == (e is None)
            if g is not None:
                bound = bounds_.get((row_got["slice"], m), 0.0)
                assert abs(g - e) <= bound + 1e-12, (row_got["slice"], m, g, e, bound)


def sketch_bounds(rep: assay.Report) -> dict[tuple[str, str], float]:
    """The error bounds a sketch report states, per (slice, metric): the notes'
    ``error_bound`` (also in ``long()``), said in words in the note."""
    out = {}
    for r in rep.notes.iter_rows(named=True):
        if r.get("error_bound") is not None:
            assert "guaranteed bound" in r["note"], r
            out[(r["slice"], r["metric"])] = r["error_bound"]
    return out


# --------------------------------------------------------------------------------------------
# the byte format
# --------------------------------------------------------------------------------------------


def _blob() -> bytes:
    spec = Spec("y", "p", slices=["s", ("b", "d")], bootstrap=10,
                metrics=["accuracy", "roc_auc", "ece"])
    return assay.merge(_parts(spec, n=60)).to_bytes()


BLOB = None


def blob() -> bytes:
    global BLOB
    if BLOB is None:
        BLOB = _blob()
    return BLOB


def test_from_bytes_refuses_broken_bytes():
    good = blob()
    assert PartialState.from_bytes(good).rows == 60
    bad = [b"", good[:1], good[:10], good[: len(good) // 2], good[:-1],
           good + b"\x00", bytes(64), b"not an assay state at all, just text",
           random.Random(0).randbytes(len(good))]
    for i in (0, 5, len(good) // 2, len(good) - 1):
        flipped = bytearray(good)
        flipped[i] ^= 0x10
        bad.append(bytes(flipped))
    for b in bad:
        with pytest.raises(assay.StateFormatError):
            PartialState.from_bytes(b)
    # The header: magic (8 bytes), version (u32 LE), flags (u32), length (u64), checksum (u64).
    assert good[:8] == b"ASSAYPS\0"
    version = assay._native.STATE_FORMAT_VERSION
    newer = good[:8] + (version + 1).to_bytes(4, "little") + good[12:]
    with pytest.raises(assay.StateFormatError, match="newer"):
        PartialState.from_bytes(newer)
    # Format 1 (development builds before exact states were compacted) is refused by name.
    older = good[:8] + (1).to_bytes(4, "little") + good[12:]
    with pytest.raises(assay.StateFormatError, match="earlier development build"):
        PartialState.from_bytes(older)
    with pytest.raises(assay.StateFormatError):
        PartialState.from_bytes(good[:12] + (1).to_bytes(4, "little") + good[16:])  # flags
    # A state whose spec this assay cannot read (a newer spec format, a metric it does not
    # know) is refused too, though its bytes are sound.
    assert PartialState.from_bytes(with_spec_text(good, b'"seed":0', b'"seed":0')).rows == 60
    for old, new in [(b'"format":1', b'"format":9'), (b'"accuracy"', b'"accurac2"')]:
        with pytest.raises(assay.StateFormatError, match="spec"):
            PartialState.from_bytes(with_spec_text(good, old, new))


def test_a_large_state_is_checked_while_it_is_decoded():
    # Payloads of 1 MiB and more are checksummed on one thread while another decodes them:
    # a corrupted one is still refused as corrupted, and a sound one decodes to the same state.
    rng = np.random.default_rng(0)
    n = 200_000
    t = pa.table({"y": rng.integers(0, 2, n), "p": rng.random(n),
                  "s": rng.choice(["a", "b"], n)})
    spec = Spec("y", "p", slices=["s"], metrics=["roc_auc"])
    good = spec.accumulate(t).to_bytes()
    assert len(good) > 1 << 20
    back = PartialState.from_bytes(good)
    assert back.to_bytes() == good
    assert back.finalize().table.equals(spec.evaluate(t).table)
    for i in (40, len(good) // 3, len(good) - 2):
        flipped = bytearray(good)
        flipped[i] ^= 0x40
        with pytest.raises(assay.StateFormatError, match="corrupted"):
            PartialState.from_bytes(bytes(flipped))
    # A sound checksum over unsound contents: the checks still refuse it.
    payload = bytearray(good[32:])
    payload[-20] ^= 0x01
    payload = bytes(payload)
    forged = good[:24] + _checksum(payload).to_bytes(8, "little") + payload
    try:
        PartialState.from_bytes(forged)
    except assay.StateFormatError:
        pass



@pytest.mark.parametrize("case", ["narrow ids", "wide ids, weights and resampling keys"])
def test_large_columns_of_kept_rows_round_trip(case):
    """Kept-row columns of over 1 MiB each (a payload decoded beside its checksum): scores,
    labels, weights, resampling keys and slice ids of 1 and 4 bytes come back as they were
    written."""
    rng = np.random.default_rng(5)
    if case == "narrow ids":  # 1-byte ids and labels: over 1 MiB each
        n = 1_100_000
        t = pa.table({"y": rng.integers(0, 2, n), "p": rng.random(n),
                      "s": rng.choice(["a", "b", "c"], n)})
        spec = Spec("y", "p", slices=["s"], metrics=["roc_auc"])
        part = spec.accumulate(t)
    else:  # 4-byte ids (70,000 slices), weights and resampling keys
        n = 300_000
        t = pa.table({"y": rng.integers(0, 2, n), "p": rng.random(n),
                      "w": rng.uniform(0.5, 2.0, n),
                      "g": np.r_[np.arange(70_000), rng.integers(0, 70_000, n - 70_000)]})
        spec = Spec("y", "p", slices=["g"], metrics=["roc_auc"], weight="w", bootstrap=2,
                    seed=1)
        part = spec.accumulate(t, max_slices=None)
    blob = part.to_bytes()
    assert len(blob) > 1 << 20
    back = PartialState.from_bytes(blob)
    assert back.to_bytes() == blob
    if case == "narrow ids":
        assert_bit_identical(back.finalize(), part.finalize())

def test_a_state_read_from_bytes_keeps_them_alive_and_equals_a_copied_one():
    """``from_bytes`` of a ``bytes`` object reads the kept rows where they lie (the state
    holds a reference to the object); a bytearray or memoryview is copied. Both give the same
    state, and the state stays whole after the caller drops the bytes."""
    rng = np.random.default_rng(11)
    n = 400_000  # kept-row columns over 1 MiB: decoded beside the checksum
    t = pa.table({"y": rng.integers(0, 2, n).astype(np.int8), "p": rng.random(n),
                  "s": rng.choice(["a", "b", "c", "d"], n)})
    spec = Spec("y", "p", slices=["s"], metrics=["roc_auc", "average_precision", "accuracy"])
    part = spec.accumulate(t)
    blob = part.to_bytes()
    copied = PartialState.from_bytes(bytearray(blob))
    viewed = PartialState.from_bytes(memoryview(blob))
    in_place = PartialState.from_bytes(blob)
    # The name, getrefcount's argument and the in-place state's own reference (the copies
    # hold none).
    assert sys.getrefcount(blob) == 3
    del blob
    gc.collect()
    want = part.finalize()
    for state in (copied, viewed, in_place):
        assert_bit_identical(state.finalize(), want)
        assert state.to_bytes() == part.to_bytes()
    merged = assay.merge([in_place, spec.accumulate(t.slice(0, 10), row_offset=n)])
    assert merged.rows == n + 10


def _checksum(payload: bytes) -> int:
    """The payload checksum of the state format (rust/assay-core/src/state/codec.rs): XXH3-64,
    from the independent xxhash package."""
    return int(xxhash.xxh3_64_intdigest(payload))


def with_spec_text(blob: bytes, old: bytes, new: bytes) -> bytes:
    """``blob`` with ``old`` replaced by ``new`` in the spec text that opens its payload, and
    its length and checksum fixed: a sound state of another spec."""
    payload = blob[32:]
    assert _checksum(payload) == int.from_bytes(blob[24:32], "little")
    n = int.from_bytes(payload[:8], "little")
    text = payload[8:8 + n]
    assert old in text
    text = text.replace(old, new)
    payload = len(text).to_bytes(8, "little") + text + payload[8 + n:]
    return (blob[:16] + len(payload).to_bytes(8, "little")
            + _checksum(payload).to_bytes(8, "little") + payload)
    for b in ("text", None, 3, [1, 2]):
        with pytest.raises(assay.InvalidArgumentError, match="bytes"):
            PartialState.from_bytes(b)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_from_bytes_fuzz(data):
    """Every mutation of a valid state is a valid state or a StateFormatError, never another
    exception (a panic, an OverflowError, a wrong result)."""
    good = blob()
    b = bytearray(good)
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["truncate", "flip", "set", "splice", "delete",
                                        "duplicate"]))
        if not b:
            break
        i = data.draw(st.integers(0, len(b) - 1))
        if op == "truncate":
            del b[i:]
        elif op == "flip":
            b[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            b[i] = data.draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif op == "splice":
            b[i:i] = data.draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del b[i:i + data.draw(st.integers(1, 16))]
        else:
            j = data.draw(st.integers(i, min(len(b), i + 32)))
            b[i:i] = b[i:j]
    try:
        state = PartialState.from_bytes(bytes(b))
    except assay.StateFormatError:
        return
    # A mutation that still reads must be a sound state.
    assert state.rows >= 0 and state.spec is not None
    state.finalize()


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("weighted", [False, True])
def test_repeated_scores_compact_into_runs_and_still_equal_one_evaluate(weighted, strategy):
    """Scores with few distinct values: a state keeps one entry per distinct (score, slice,
    label), so its size follows the distinct scores, not the rows, and the report is unchanged
    (quantile bins of an unweighted job are order statistics of the rows the counts stand for)."""
    rng = np.random.default_rng(5)
    n = 60_000
    y = (rng.random(n) < 0.3).astype(np.int64)
    p = np.round(np.clip(0.25 * y + 0.75 * rng.random(n), 0, 1), 2)
    t = pa.table({"y": y, "p": p, "w": rng.uniform(0.5, 2.0, n),
                  "s": rng.choice(["a", "b", "c"], n)})
    # (ece_debiased reads each bin's row count and sum of squared weights.)
    kw = dict(slices=["s"], metrics=["roc_auc", "average_precision", "ece", "ace", "mce",
                                     "ece_debiased", "smooth_ece", "calibration_slope"],
              weight="w" if weighted else None, calibration_bins=8,
              calibration_strategy=strategy)
    spec = Spec("y", "p", **kw)
    parts = [spec.accumulate(t.slice(a, 15_000), row_offset=a) for a in range(0, n, 15_000)]
    merged = assay.merge(parts)
    if not weighted:
        # About 101 scores x 3 slices x 2 labels entries instead of 60,000 rows. (A weighted
        # job whose calibration bins are read from the kept rows keeps every row: a bin's row
        # count and sum of squared weights are not functions of the combined weights.)
        assert len(merged.to_bytes()) < 40_000
    plain = Spec("y", "p", **{**kw, "metrics": ["roc_auc", "average_precision"]})
    assert len(assay.merge([plain.accumulate(t.slice(a, 15_000), row_offset=a)
                            for a in range(0, n, 15_000)]).to_bytes()) < 40_000
    assert_same_result(merged.finalize(), assay.evaluate(t, label="y", score="p", **kw))
    assert_bit_identical(assay.merge(parts[::-1]).finalize(), merged.finalize())
    # A shard whose scores are all distinct keeps its rows; it merges with compacted ones.
    distinct = t.slice(0, 2_000).set_column(1, "p", pa.array(rng.random(2_000)))
    mixed = assay.merge([spec.accumulate(distinct, row_offset=n), *parts])
    whole = pa.concat_tables([t, distinct])
    assert_same_result(mixed.finalize(), assay.evaluate(whole, label="y", score="p", **kw))


@pytest.mark.parametrize("n_slices", [3, 300, 70_000])
def test_kept_slice_ids_of_every_width_round_trip(n_slices):
    """Slice ids are written in 1, 2 or 4 bytes (as few as hold the spec's slices)."""
    rng = np.random.default_rng(n_slices)
    n = 2 * n_slices + 500
    t = pa.table({"y": rng.integers(0, 2, n), "p": rng.random(n),
                  "g": np.r_[np.arange(n_slices), rng.integers(0, n_slices, n - n_slices)]})
    spec = Spec("y", "p", slices=["g"], metrics=["roc_auc"])
    part = spec.accumulate(t, max_slices=None)
    again = PartialState.from_bytes(part.to_bytes())
    assert_bit_identical(again.finalize(), part.finalize())
    assert_same_result(again.finalize(), assay.evaluate(t, label="y", score="p", slices=["g"],
                                                        metrics=["roc_auc"], max_slices=None))
