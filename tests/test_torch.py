"""assay.torch (issue 15): the Evaluator against the CPU engine, its replicate draws against
the Rust hash, its errors, and torch.distributed merges across gloo processes.

Everything runs on the CPU here; the tests marked ``cuda`` run the same checks on a GPU where
one exists.
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np
import polars as pl
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import assay
import assay.torch as at
from assay import _native

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
VOCAB = ["BR", "DE", "NG", "US", "unused"]
EDGES = [18.0, 30.0, 45.0, 65.0]
SLICES = ["country", assay.bins("age", edges=EDGES), ("country", "device"),
          ("device", assay.bins("age", edges=EDGES))]
CATEGORIES = {"country": VOCAB, "device": 3}
KINDS = {
    "plain": dict(threshold=0.4),
    "weighted": dict(weight="w"),
    "percentile": dict(bootstrap=30, seed=3, row_id="id",
                       metrics=["accuracy", "roc_auc", "average_precision", "log_loss", "f1"]),
    "bca-weighted": dict(bootstrap=25, ci_method="bca", seed=5, weight="w", row_id="id",
                         metrics=["accuracy", "roc_auc", "brier", "mcc"]),
    "basic-positions": dict(bootstrap=20, ci_method="basic", metrics=["recall", "roc_auc"]),
    "analytic": dict(ci_method="analytic", weight="w"),
    "calibration": dict(metrics=["ece", "mce", "brier_reliability", "oe_ratio", "roc_auc"],
                        calibration_bins=5, bootstrap=20, row_id="id"),
    "calibration-sorted": dict(metrics=["ece", "rmsce", "roc_auc"], weight="w"),
    "binned": dict(auc="binned", auc_bins=32, metrics=["roc_auc", "average_precision"]),
    "drop": dict(nan_policy="drop", metrics=["accuracy", "roc_auc", "log_loss"]),
    "quantile-bins": dict(metrics=["ece", "ace", "accuracy"], calibration_strategy="quantile",
                          calibration_bins=6),
    "quantile-bins-weighted": dict(metrics=["ece", "mce", "roc_auc"],
                                   calibration_strategy="quantile", weight="w"),
    "smooth-slope": dict(metrics=["smooth_ece", "calibration_slope", "calibration_intercept",
                                  "ece"], weight="w"),
    "smooth-slope-bootstrap": dict(metrics=["smooth_ece", "calibration_slope", "brier"],
                                   bootstrap=10, row_id="id"),
}


def make_data(seed: int, n: int, *, nan_scores: bool = False) -> dict[str, np.ndarray]:
    """Rows with ties, weights, null and unused categories, and a shared row id."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(np.int64)
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    if seed % 3 == 1:
        p = np.round(p, 1)
    elif seed % 3 == 2:
        p = rng.choice([0.1, 0.35, 0.5, 0.8, 0.95], n)
    if nan_scores and n:
        p[rng.random(n) < 0.05] = np.nan
    country = rng.choice([-1, 0, 1, 2, 3], n, p=[0.05, 0.4, 0.3, 0.2, 0.05])
    device = rng.integers(0, 3, n)
    age = rng.normal(40, 15, n)
    age[rng.random(n) < 0.03] = np.nan
    q = np.clip(np.nan_to_num(p, nan=0.5) + rng.normal(0, 0.2, n), 0, 1)
    return {"y": y, "p": p, "q": q, "country": country, "device": device, "age": age,
            "w": rng.uniform(0.1, 5.0, n), "id": (rng.permutation(n) * 3 + 7).astype(np.int64)}


def as_table(d: dict[str, np.ndarray]) -> pl.DataFrame:
    """The rows as the CPU engine reads them (codes turned into their values)."""
    extra = {k: d[k] for k in ("lo", "hi") if k in d}
    return pl.DataFrame({
        **extra,
        "y": d["y"], "p": d["p"], "q": d["q"],
        "country": pl.Series([None if c < 0 else VOCAB[c] for c in d["country"].tolist()],
                             dtype=pl.String),
        "device": d["device"], "age": d["age"], "w": d["w"], "id": d["id"],
    })


def feed(ev: at.Evaluator, d: dict[str, np.ndarray], cuts: list[int], spec: assay.Spec,
         device: str = "cpu") -> None:
    """The rows of ``d`` in batches cut at ``cuts``, as a user's loop feeds them: scores (or
    predictions) per model, the features, and the weights, ids and bounds the spec names."""
    column = {"p": "p", "q": "q"}
    arg = "score" if spec.task == "binary" else "prediction"
    for a, b in zip(cuts, cuts[1:], strict=False):
        t = {k: torch.as_tensor(v[a:b], device=device) for k, v in d.items()}
        models = {name: t[column[col]] for name, col in spec.scores.items()} \
            if spec.scores else t["p"]
        ev.update(**{arg: models}, label=t["y"],
                  features={"country": t["country"], "device": t["device"], "age": t["age"]},
                  weight=t["w"] if spec.weight else None,
                  row_id=t["id"] if spec.row_id else None,
                  lower=t["lo"] if spec.lower else None, upper=t["hi"] if spec.upper else None)


def assert_parity(spec: assay.Spec, d: dict[str, np.ndarray], cuts: list[int],
                  rel_bounds: float | None = None) -> None:
    """The Evaluator fed in batches equals ``spec.evaluate`` on all the rows (a Report or a
    Comparison), or both refuse the job with the same error type."""
    ev = at.Evaluator(spec, categories=CATEGORIES)
    feed(ev, d, cuts, spec)
    try:
        want = spec.evaluate(as_table(d))
    except assay.AssayError as e:  # e.g. BCa's jackknife on too few rows: refused alike
        with pytest.raises(type(e)):
            ev.compute()
        return
    got = ev.compute()
    assert type(got) is type(want)
    assert_same_table(got.table, want.table, rel_bounds=rel_bounds)
    if isinstance(want, assay.Comparison):
        for name in want.reports:
            assert_same_table(got.reports[name].table, want.reports[name].table,
                              rel_bounds=rel_bounds)
    else:
        assert got.notes.to_dicts() == want.notes.to_dicts()
        assert (got.rows, got.dropped) == (want.rows, want.dropped)


def assert_same_table(got: pl.DataFrame, want: pl.DataFrame, rel: float = 1e-9,
                      rel_bounds: float | None = None) -> None:
    """Counts and labels equal, floats within ``rel`` (interval bounds and bootstrap standard
    errors within ``rel_bounds``, when given), nulls alike."""
    assert got.columns == want.columns
    assert got["slice"].to_list() == want["slice"].to_list()
    # d2_tweedie = 1 - deviance / null deviance: on a slice whose labels nearly agree, the
    # null deviance is a small difference of large terms (a CI run: labels 265.61 and 265.68,
    # d2 = -6.7e6, the two paths 2.5e-8 apart), and d2's error grows with |d2| itself.
    d2_rows = (got["metric"] == "d2_tweedie").to_list() if "metric" in got.columns \
        else [False] * got.height
    for c in got.columns:
        a, b = got[c].to_list(), want[c].to_list()
        tol = rel_bounds if rel_bounds is not None and c.endswith(("_lo", "_hi", "_se")) \
            else rel
        if got[c].dtype == pl.Float64:
            for r, (x, y) in enumerate(zip(a, b, strict=True)):
                assert (x is None) == (y is None), f"{c} row {r}: {x} vs {y}"
                if x is not None:
                    scale = max(1.0, abs(y)) if (c.startswith("d2_tweedie") or d2_rows[r]) \
                        else 1.0
                    assert (math.isnan(x) and math.isnan(y)) or x == y or \
                        abs(x - y) <= tol * scale * max(1.0, abs(y)), f"{c} row {r}: {x} vs {y}"
        else:
            assert a == b, c


@st.composite
def cases(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(1, 300))
    k = draw(st.integers(1, 6))
    cuts = sorted(draw(st.lists(st.integers(0, n), min_size=k - 1, max_size=k - 1)))
    return seed, n, [0, *cuts, n]


@pytest.mark.parametrize("kind", list(KINDS))
@SETTINGS
@given(case=cases())
def test_evaluator_equals_evaluate(kind, case):
    seed, n, cuts = case
    kw = KINDS[kind]
    spec = assay.Spec(label="y", score="p", slices=SLICES, **kw)
    assert_parity(spec, make_data(seed, n, nan_scores=kw.get("nan_policy") == "drop"), cuts)


REGRESSION_KINDS = {
    "plain": dict(),
    "weighted-all": dict(weight="w", metrics=[
        "mae", "mse", "rmse", "r2", "explained_variance", "mean_error", "max_error", "mape",
        "smape", "wmape", "pearson", "concordance", "msle", "rmsle"]),
    "percentile": dict(bootstrap=20, seed=3, row_id="id"),
    "bca-weighted": dict(bootstrap=15, ci_method="bca", weight="w", row_id="id",
                         metrics=["mae", "rmse", "r2", "pearson"]),
    "basic-positions": dict(bootstrap=10, ci_method="basic", metrics=["mae", "msle"]),
    "analytic": dict(ci_method="analytic", weight="w"),
    "drop": dict(nan_policy="drop", metrics=["mae", "r2", "max_error"]),
    "extras": dict(metrics=["poisson_deviance", "gamma_deviance", "tweedie_deviance",
                            "d2_tweedie", "pinball@0.1", "pinball@0.9", "coverage",
                            "interval_width", "median_absolute_error", "mae"],
                   power=1.5, lower="lo", upper="hi", weight="w"),
    "extras-bootstrap": dict(metrics=["d2_tweedie", "pinball@0.5", "coverage", "r2"],
                             power=3.0, lower="lo", upper="hi", bootstrap=12, row_id="id"),
    "extras-negative-power": dict(metrics=["tweedie_deviance", "d2_tweedie",
                                           "median_absolute_error"], power=-1.0,
                                  ci_method="analytic"),
    "extras-drop": dict(metrics=["d2_tweedie", "coverage", "pinball@0.25"], power=0.0,
                        lower="lo", upper="hi", nan_policy="drop", bootstrap=8,
                        ci_method="bca", row_id="id"),
}


def make_regression_data(seed: int, n: int, *, nan: bool = False) -> dict[str, np.ndarray]:
    d = make_data(seed, n)
    rng = np.random.default_rng(seed + 1)
    y = rng.gamma(2.0, 50.0, n) + 10 * d["device"]
    if seed % 3 == 1:
        y = np.round(y, -1)  # ties, constant slices
    p = np.abs(y * rng.lognormal(0, 0.2, n) + rng.normal(0, 5, n)) + 0.01
    lo = p - rng.gamma(2.0, 10.0, n)
    hi = p + rng.gamma(2.0, 10.0, n)
    q = np.abs(p * rng.lognormal(0, 0.1, n)) + 0.01  # a second model
    if nan and n:
        y[rng.random(n) < 0.04] = np.nan
        p[rng.random(n) < 0.04] = np.inf
        lo[rng.random(n) < 0.03] = np.nan
    return {**d, "y": y, "p": p, "q": q, "lo": lo, "hi": hi}


@pytest.mark.parametrize("kind", list(REGRESSION_KINDS))
@SETTINGS
@given(case=cases())
def test_regression_evaluator_equals_evaluate(kind, case):
    seed, n, cuts = case
    kw = REGRESSION_KINDS[kind]
    spec = assay.Spec(label="y", prediction="p", task="regression", slices=SLICES, **kw)
    # A replicate whose labels barely vary has an ill-conditioned r2 (bounds such as -1.5e6):
    # the device's sums and the engine's differ in the last bits, which such a ratio magnifies.
    assert_parity(spec, make_regression_data(seed, n, nan=kw.get("nan_policy") == "drop"), cuts,
                  rel_bounds=1e-6)


REGRESSION_COMPARE_KINDS = {
    "percentile": dict(bootstrap=12, row_id="id",
                       metrics=["mae", "r2", "d2_tweedie", "pinball@0.7",
                                "median_absolute_error"], power=1.5),
    # (Not pearson: in a replicate that drew two distinct rows both models' r is +-1, and
    # whether their delta is 0, 1e-16 or -1e-16 is rounding: the p-value counts its sign.)
    "bca-weighted-drop": dict(bootstrap=10, ci_method="bca", weight="w", row_id="id",
                              nan_policy="drop", metrics=["rmse", "mae", "msle"]),
}


@pytest.mark.parametrize("kind", list(REGRESSION_COMPARE_KINDS))
@SETTINGS
@given(case=cases())
def test_regression_comparison_equals_compare(kind, case):
    seed, n, cuts = case
    kw = REGRESSION_COMPARE_KINDS[kind]
    spec = assay.Spec(label="y", task="regression", scores={"old": "p", "new": "q"},
                      slices=SLICES, **kw)
    assert_parity(spec, make_regression_data(seed, n, nan=kw.get("nan_policy") == "drop"), cuts,
                  rel_bounds=1e-6)


def test_regression_bad_values_and_options():
    spec = assay.Spec(label="y", prediction="p", task="regression", metrics=["mae", "msle"])
    ev = at.Evaluator(spec)
    ev.update(prediction=torch.tensor([1.0, -2.0]), label=torch.tensor([1.0, 2.0]))
    with pytest.raises(assay.InvalidInputError, match="msle and rmsle need"):
        ev.compute()
    ev = at.Evaluator(spec)
    ev.update(prediction=torch.tensor([1.0, 2.0]), label=torch.tensor([np.nan, 2.0]))
    with pytest.raises(assay.InvalidInputError, match="'y': label is NaN"):
        ev.compute()
    with pytest.raises(assay.InvalidInputError, match="takes prediction="):
        ev.update(score=torch.zeros(2), label=torch.zeros(2))
    with pytest.raises(assay.InvalidArgumentError, match="logits=True"):
        at.Evaluator(spec, logits=True)


COMPARE_KINDS = {
    "percentile": dict(bootstrap=20, row_id="id",
                       metrics=["accuracy", "roc_auc", "log_loss", "ece", "f1"]),
    "bca-weighted": dict(bootstrap=15, ci_method="bca", weight="w", row_id="id",
                         metrics=["roc_auc", "brier", "recall"]),
    "drop-positions": dict(bootstrap=10, ci_method="basic", nan_policy="drop",
                           metrics=["accuracy", "average_precision"]),
}


@pytest.mark.parametrize("kind", list(COMPARE_KINDS))
@SETTINGS
@given(case=cases())
def test_comparison_evaluator_equals_compare(kind, case):
    seed, n, cuts = case
    kw = COMPARE_KINDS[kind]
    spec = assay.Spec(label="y", scores={"old": "p", "new": "q"}, slices=SLICES, **kw)
    assert_parity(spec, make_data(seed, n, nan_scores=kw.get("nan_policy") == "drop"), cuts)
    ev = at.Evaluator(spec, categories=CATEGORIES)
    with pytest.raises(assay.InvalidInputError, match="score=\\{name: tensor\\}"):
        ev.update(score=torch.zeros(2), label=torch.zeros(2),
                  features={"country": torch.zeros(2, dtype=torch.long),
                            "device": torch.zeros(2, dtype=torch.long),
                            "age": torch.zeros(2)})


def test_logits_bool_labels_and_integer_categories():
    d = make_data(4, 500)
    x = np.log(d["p"].clip(1e-6, 1 - 1e-6) / (1 - d["p"].clip(1e-6, 1 - 1e-6)))
    spec = assay.Spec(label="y", score="p", slices=["device"], metrics=["accuracy", "roc_auc"])
    ev = at.Evaluator(spec, categories={"device": [10, 20, 30]}, logits=True)
    ev.update(score=torch.tensor(x), label=torch.tensor(d["y"]).bool(),
              features={"device": torch.tensor(d["device"])})
    table = pl.DataFrame({"y": d["y"], "p": 1 / (1 + np.exp(-x)),
                          "device": np.array([10, 20, 30])[d["device"]]})
    assert_same_table(ev.compute().table, spec.evaluate(table).table)


def test_partial_state_merges_with_cpu_states_and_round_trips():
    d = make_data(7, 900)
    spec = assay.Spec(label="y", score="p", slices=SLICES, bootstrap=20, row_id="id",
                      metrics=["accuracy", "roc_auc", "ece"])
    ev = at.Evaluator(spec, categories=CATEGORIES)
    feed(ev, {k: v[:400] for k, v in d.items()}, [0, 400], spec)
    cpu = spec.accumulate(as_table({k: v[400:] for k, v in d.items()}))
    part = ev.partial()
    assert part.rows == 400
    merged = assay.merge([assay.PartialState.from_bytes(part.to_bytes()), cpu])
    assert_same_table(merged.finalize().table, spec.evaluate(as_table(d)).table)


def test_replicate_draws_equal_the_rust_hash_on_a_million_pairs():
    rng = np.random.default_rng(11)
    ids = np.concatenate([rng.integers(-(2**63), 2**63 - 1, 9_990, dtype=np.int64),
                          np.array([0, 1, -1, 2**63 - 1, -(2**63), 42, 7, 8, 9, 10])])
    for seed, reps in [(0, 100), (2**64 - 1, 7), (123456789, 33)]:
        keys, draws, groups = at.replicate_draws(seed, reps, torch.tensor(ids))
        k, dr, g = _native.replicate_draws(seed, reps, ids.view(np.uint64).tobytes())
        assert np.array_equal(keys.numpy().view(np.uint64), np.frombuffer(k, np.uint64))
        assert np.array_equal(draws.numpy().reshape(-1), np.frombuffer(dr, np.uint32))
        assert np.array_equal(groups.numpy(), np.frombuffer(g, np.uint32))
    # 10,000 rows x 100 replicates = 1e6 (row, b) pairs above; their mean is Poisson(1)'s.
    assert abs(float(at.replicate_draws(0, 100, torch.tensor(ids))[1].double().mean()) - 1) < 0.01


def test_update_never_synchronizes_with_the_host(monkeypatch):
    spec = assay.Spec(label="y", score="p", slices=SLICES, bootstrap=10, row_id="id",
                      weight="w", metrics=["accuracy", "roc_auc", "ece", "log_loss"])
    ev = at.Evaluator(spec, categories=CATEGORIES)
    d = make_data(1, 200)
    for name in ("item", "cpu", "tolist", "numpy", "__bool__", "__int__", "__float__"):
        monkeypatch.setattr(torch.Tensor, name, _forbidden(name))
    feed(ev, d, [0, 50, 200], spec)
    monkeypatch.undo()
    assert ev.compute().rows == 200


def _forbidden(name):
    def f(*a, **k):
        raise AssertionError(f"host synchronization in update: Tensor.{name}")
    return f


@pytest.mark.parametrize(("change", "match"), [
    (lambda d: d["p"].__setitem__(3, np.nan), "'p': score is NaN"),
    (lambda d: d["y"].__setitem__(5, 2), "'y': labels must be 0 or 1"),
    (lambda d: d["p"].__setitem__(1, 1.5), "'p': score outside"),
    (lambda d: d["w"].__setitem__(2, -1.0), "'w': weights must be positive"),
    (lambda d: d["country"].__setitem__(4, 5), "'country': codes must be -1"),
    (lambda d: d["country"].__setitem__(4, -2), "'country': codes must be -1"),
])
def test_bad_values_are_raised_at_compute_naming_the_column(change, match):
    spec = assay.Spec(label="y", score="p", slices=SLICES, weight="w",
                      metrics=["accuracy", "log_loss"])
    d = make_data(2, 50)
    change(d)
    ev = at.Evaluator(spec, categories=CATEGORIES)
    feed(ev, d, [0, 50], spec)
    with pytest.raises(assay.InvalidInputError, match=match):
        ev.compute()
    with pytest.raises(assay.InvalidInputError, match="first at row"):
        ev.partial()


def test_bad_arguments_are_refused_up_front():
    spec = assay.Spec(label="y", score="p", slices=SLICES)
    with pytest.raises(assay.InvalidArgumentError, match="needs its categories"):
        at.Evaluator(spec, categories={"country": VOCAB})
    with pytest.raises(assay.InvalidArgumentError, match="no slice uses"):
        at.Evaluator(spec, categories={**CATEGORIES, "other": 3})
    with pytest.raises(assay.InvalidArgumentError, match="repeats a value"):
        at.Evaluator(spec, categories={"country": ["a", "a"], "device": 3})
    with pytest.raises(assay.InvalidArgumentError, match="fitted to the data"):
        at.Evaluator(assay.Spec(label="y", score="p", slices=[assay.bins("age", 4)]))
    for kw, what in [(dict(auc="sketch"), "sketch"),
                     ]:
        s = assay.Spec(label="y", score="p", **kw)
        with pytest.raises(assay.InvalidArgumentError, match=what):
            at.Evaluator(s)
    ev = at.Evaluator(spec, categories=CATEGORIES)
    t = torch.zeros(4)
    with pytest.raises(assay.InvalidInputError, match="lacks the slice column 'device'"):
        ev.update(score=t, label=t, features={"country": t.long(), "age": t})
    with pytest.raises(assay.InvalidInputError, match="has shape"):
        ev.update(score=t, label=torch.zeros(3),
                  features={"country": t.long(), "device": t.long(), "age": t})
    with pytest.raises(assay.InvalidInputError, match="integer tensor"):
        ev.update(score=t, label=t, features={"country": t, "device": t.long(), "age": t})
    with pytest.raises(assay.InvalidInputError, match="no weight"):
        ev.update(score=t, label=t, features={"country": t.long(), "device": t.long(),
                                              "age": t}, weight=t)


def test_no_rows_is_empty_input_as_in_evaluate():
    spec = assay.Spec(label="y", score="p", slices=SLICES)
    ev = at.Evaluator(spec, categories=CATEGORIES)
    with pytest.raises(assay.EmptyInputError):
        ev.compute()
    assert ev.partial().rows == 0


# ---- torch.distributed: gloo processes -------------------------------------------------------


def _job(kind: str) -> tuple[assay.Spec, dict[str, np.ndarray]]:
    """A distributed test's spec and rows: a binary kind, or "regression:<kind>"; "@ties"
    draws the scores from five values."""
    kind, ties = kind.removesuffix("@ties"), kind.endswith("@ties")
    seed = 23 if ties else 21  # (seed % 3 == 2: five distinct scores)
    if kind.startswith("regression:"):
        spec = assay.Spec(label="y", prediction="p", task="regression", slices=SLICES,
                          **REGRESSION_KINDS[kind.split(":")[1]])
        return spec, make_regression_data(seed, 1000)
    return (assay.Spec(label="y", score="p", slices=SLICES, **KINDS[kind]),
            make_data(seed, 1000))


def _rank_main(rank: int, world: int, store: str, kind: str, bounds: list[int], out: str):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world)
    try:
        spec, d = _job(kind)
        a, b = bounds[rank], bounds[rank + 1]
        ev = at.Evaluator(spec, categories=CATEGORIES)
        feed(ev, {k: v[a:b] for k, v in d.items()}, [0, (b - a) // 2, b - a], spec)
        ev.sync()
        ev.compute().table.write_parquet(os.path.join(out, f"rank{rank}.parquet"))
        with open(os.path.join(out, f"kept{rank}.txt"), "w") as f:
            f.write(str(sum(int(k.shape[0]) for k in ev._kept)))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(("world", "kind", "bounds"), [
    (2, "percentile", [0, 150, 1000]),
    (3, "bca-weighted", [0, 0, 700, 1000]),       # a rank with no rows
    (3, "calibration", [0, 333, 334, 1000]),
    (2, "regression:percentile", [0, 420, 1000]),
    (3, "regression:analytic", [0, 0, 10, 1000]),
    (2, "regression:extras-bootstrap", [0, 600, 1000]),
    (3, "drop@ties", [0, 200, 500, 1000]),                 # kept rows compacted on each rank
    (2, "calibration-sorted@ties", [0, 999, 1000]),        # weighted: summed, not counted
    (2, "regression:extras@ties", [0, 300, 1000]),         # the median's |e| compacted
])
def test_gloo_ranks_merge_to_one_process(world, kind, bounds):
    spec, d = _job(kind)
    want = spec.evaluate(as_table(d)).table
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank_main, args=(world, os.path.join(tmp, "store"), kind, bounds, tmp),
                 nprocs=world, join=True)
        for r in range(world):
            assert_same_table(pl.read_parquet(os.path.join(tmp, f"rank{r}.parquet")), want,
                              rel_bounds=1e-6)
        if kind == "drop@ties":
            # Entries of (label, score, slice cell): about 660 for the ~950 counted rows.
            with open(os.path.join(tmp, "kept0.txt")) as f:
                assert int(f.read()) < 750


def _sampler_job(task: str, n: int) -> tuple[assay.Spec, dict[str, np.ndarray]]:
    if task == "regression":
        return (assay.Spec(label="y", prediction="p", task="regression", slices=SLICES,
                           ci_method="analytic", row_id="id", weight="w", power=1.5,
                           lower="lo", upper="hi",
                           metrics=["mae", "r2", "d2_tweedie", "coverage", "pinball@0.8",
                                    "median_absolute_error"]),
                make_regression_data(33, n))
    return (assay.Spec(label="y", score="p", slices=SLICES, **KINDS["percentile"]),
            make_data(33, n))


def _rank_sampler(rank: int, world: int, store: str, n: int, task: str, out: str):
    from torch.utils.data.distributed import DistributedSampler

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world)
    try:
        spec, d = _sampler_job(task, n)
        idx = np.array(list(DistributedSampler(range(n), num_replicas=world, rank=rank,
                                               shuffle=True, seed=1)))
        ev = at.Evaluator(spec, categories=CATEGORIES)
        shard = {k: v[idx] for k, v in d.items()}
        feed(ev, shard, list(range(0, len(idx), 64)) + [len(idx)], spec)
        ev.sync()
        ev.compute().table.write_parquet(os.path.join(out, f"rank{rank}.parquet"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(("world", "n", "task"), [(2, 1001, "binary"), (3, 1000, "binary"),
                                                 (4, 998, "binary"), (3, 1000, "regression")])
def test_distributed_sampler_padding_is_counted_once_with_row_ids(world, n, task):
    assert n % world  # DistributedSampler pads: some rows reach two ranks
    spec, d = _sampler_job(task, n)
    want = spec.evaluate(as_table(d)).table
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank_sampler, args=(world, os.path.join(tmp, "store"), n, task, tmp),
                 nprocs=world, join=True)
        for r in range(world):
            assert_same_table(pl.read_parquet(os.path.join(tmp, f"rank{r}.parquet")), want)


def _rank_positions(rank: int, world: int, store: str, out: str):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world)
    try:
        spec = assay.Spec(label="y", score="p", bootstrap=10)
        ev = at.Evaluator(spec)
        ev.update(score=torch.rand(10, dtype=torch.float64), label=torch.ones(10))
        try:
            ev.sync()
        except assay.InvalidArgumentError as e:
            with open(os.path.join(out, f"rank{rank}.txt"), "w") as f:
                f.write(str(e))
    finally:
        dist.destroy_process_group()


def test_bootstrap_by_position_refuses_to_sync_across_ranks():
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank_positions, args=(2, os.path.join(tmp, "store"), tmp), nprocs=2,
                 join=True)
        for r in range(2):
            with open(os.path.join(tmp, f"rank{r}.txt")) as f:
                assert "row_id" in f.read()


# ---- CUDA (skipped without a GPU) ------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda
@pytest.mark.parametrize("kind", list(KINDS))
def test_cuda_evaluator_equals_evaluate(kind):
    kw = KINDS[kind]
    spec = assay.Spec(label="y", score="p", slices=SLICES, **kw)
    d = make_data(5, 20_000, nan_scores=kw.get("nan_policy") == "drop")
    ev = at.Evaluator(spec, categories=CATEGORIES, device="cuda")
    t = {k: torch.as_tensor(v, device="cuda") for k, v in d.items()}  # copied before updates
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host synchronization in update raises
    try:
        for a, b in ((0, 7000), (7000, 20_000)):
            ev.update(score=t["p"][a:b], label=t["y"][a:b],
                      features={k: t[k][a:b] for k in ("country", "device", "age")},
                      weight=t["w"][a:b] if spec.weight else None,
                      row_id=t["id"][a:b] if spec.row_id else None)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert_same_table(ev.compute().table, spec.evaluate(as_table(d)).table)


@cuda
def test_cuda_replicate_draws_equal_the_rust_hash():
    ids = np.random.default_rng(3).integers(-(2**63), 2**63 - 1, 10_000, dtype=np.int64)
    keys, draws, groups = at.replicate_draws(9, 100, torch.tensor(ids, device="cuda"))
    k, dr, g = _native.replicate_draws(9, 100, ids.view(np.uint64).tobytes())
    assert np.array_equal(keys.cpu().numpy().view(np.uint64), np.frombuffer(k, np.uint64))
    assert np.array_equal(draws.cpu().numpy().reshape(-1), np.frombuffer(dr, np.uint32))
    assert np.array_equal(groups.cpu().numpy(), np.frombuffer(g, np.uint32))


def test_native_refuses_inconsistent_device_blocks():
    import pyarrow as pa

    spec = assay.Spec(label="y", score="p", slices=["g"], metrics=["accuracy"])
    job = spec._job.native(None, None)
    keys = pa.table({"y": pa.array([0], pa.int64()), "p": [0.5], "g": ["a"]})

    def block(rows, n, counts_len=7):
        return {"key_rows": np.array(rows, np.uint32).tobytes(),
                "n": np.array(n, np.uint64).tobytes(),
                "counts": np.ones(len(rows) * counts_len).tobytes()}

    ok = [[block([0], [1]), block([0], [1])]]
    state = _native.state_from_blocks(keys, job, spec._json, ok, [], 1, 0, None, 0)
    assert assay.PartialState._wrap(state, spec).rows == 1
    with pytest.raises(ValueError, match="unknown device block"):
        _native.state_from_blocks(keys, job, spec._json, [[{**block([0], [1]), "x": b""},
                                                            block([0], [1])]], [], 1, 0, None, 0)
    nan = {**block([0], [1]), "counts": np.array([1, np.nan, 0, 0, 0, 0, 0.0]).tobytes()}
    for blocks, rows in [([[nan, block([0], [1])]], 1),                  # a NaN sum
                         ([[block([0], [1]), block([0, 0], [2**64 - 1, 1])]], 1),  # wraps
                         ([[block([0], [1], 6), block([0], [1])]], 1),   # a short block
                         ([[block([0], [1]), block([3], [1])]], 1),      # no such key row
                         ([[block([0], [1]), block([0], [1])]], 5),      # counts != rows
                         ([[block([0], [1])]], 1)]:                      # a spec missing
        with pytest.raises(assay.StateFormatError):
            _native.state_from_blocks(keys, job, spec._json, blocks, [], rows, 0, None, 0)


def test_nan_labels_are_dropped_like_evaluate_drops_them():
    d = make_data(9, 400)
    y = d["y"].astype(np.float64)
    y[[3, 50, 51]] = np.nan
    spec = assay.Spec(label="y", score="p", slices=["device"], nan_policy="drop",
                      metrics=["accuracy", "roc_auc", "log_loss", "brier"])
    ev = at.Evaluator(spec, categories={"device": 3})
    ev.update(score=torch.tensor(d["p"]), label=torch.tensor(y),
              features={"device": torch.tensor(d["device"])})
    got = ev.compute()
    want = spec.evaluate(pl.DataFrame({"y": y, "p": d["p"], "device": d["device"]},
                                      nan_to_null=False))
    assert (got.rows, got.dropped) == (want.rows, want.dropped) == (400, 3)
    assert_same_table(got.table, want.table)


def test_review_cases_bools_by_value_negative_binned_scores_and_refusals():
    # Boolean categories map by value, in any order.
    spec = assay.Spec(label="y", score="p", slices=["flag"], metrics=["accuracy"])
    flag = torch.tensor([True, False, True, True])
    ev = at.Evaluator(spec, categories={"flag": [True, False]})
    ev.update(score=torch.tensor([0.9, 0.2, 0.1, 0.8], dtype=torch.float64),
              label=torch.tensor([1, 0, 1, 1]), features={"flag": flag})
    table = pl.DataFrame({"y": [1, 0, 1, 1], "p": [0.9, 0.2, 0.1, 0.8],
                          "flag": [True, False, True, True]})
    assert_same_table(ev.compute().table, spec.evaluate(table).table)
    with pytest.raises(assay.InvalidInputError, match="boolean categories"):
        at.Evaluator(spec, categories={"flag": 2}).update(
            score=torch.zeros(4), label=torch.zeros(4), features={"flag": flag})
    # A negative score with binned AUC is bad input, not an index error (or a device assert).
    spec = assay.Spec(label="y", score="p", auc="binned", metrics=["roc_auc", "smooth_ece"],
                      slices=["g"])
    ev = at.Evaluator(spec, categories={"g": 2})
    ev.update(score=torch.tensor([-0.5, 0.5, 1.5]), label=torch.tensor([0, 1, 1]),
              features={"g": torch.tensor([1, 1, 0])})
    with pytest.raises(assay.InvalidInputError, match="outside \\[0, 1\\]"):
        ev.compute()
    # row_id= without a spec row id is refused; a float code tensor is refused before the
    # state moves, so the evaluator stays usable.
    spec = assay.Spec(label="y", score="p", slices=["g"], bootstrap=5, metrics=["accuracy"])
    ev = at.Evaluator(spec, categories={"g": 2})
    t = torch.tensor([0.2, 0.7], dtype=torch.float64)
    with pytest.raises(assay.InvalidInputError, match="no row_id"):
        ev.update(score=t, label=torch.tensor([0, 1]), features={"g": torch.tensor([0, 1])},
                  row_id=torch.tensor([5, 6]))
    with pytest.raises(assay.InvalidInputError, match="integer tensor"):
        ev.update(score=t, label=torch.tensor([0, 1]), features={"g": t})
    ev.update(score=t, label=torch.tensor([0, 1]), features={"g": torch.tensor([0, 1])})
    assert ev.compute().rows == 2


def test_kept_rows_with_tied_scores_are_compacted_like_accumulate():
    d = make_data(2, 20_000)  # seed % 3 == 2: five distinct scores
    spec = assay.Spec(label="y", score="p", slices=["device"], metrics=["roc_auc"])
    ev = at.Evaluator(spec, categories={"device": 3})
    ev.update(score=torch.tensor(d["p"]), label=torch.tensor(d["y"]),
              features={"device": torch.tensor(d["device"])})
    part = ev.partial()
    cpu = spec.accumulate(as_table(d))
    assert part.nbytes == cpu.nbytes < 20_000  # 5 scores x 3 devices x 2 labels entries
    assert_same_table(part.finalize().table, cpu.finalize().table)
