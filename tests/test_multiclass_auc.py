"""The multiclass ROC-AUCs (one-vs-rest and one-vs-one, macro and weighted) against
scikit-learn per slice, exact and binned, their bootstrap replicates against scikit-learn with
the replicate weights, the calibration errors on quantile bins (which, like the exact ROC-AUCs,
read every row's probabilities at finalization) against a numpy reference, and multiclass
through the rest of assay: split jobs and their state bytes, paired comparisons, slice
discovery and the command line."""

from __future__ import annotations

import json
import warnings

import calib_reference as ref
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import sklearn.metrics as skm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import assay
from assay import _native
from assay.cli import main
from assay.errors import InvalidArgumentError

AUCS = ["roc_auc_ovr", "roc_auc_ovr_weighted", "roc_auc_ovo", "roc_auc_ovo_weighted"]
ONE_CLASS = "undefined: the slice has rows of one class only"


def sk_aucs(y: np.ndarray, p: np.ndarray, w: np.ndarray | None) -> list[float | None]:
    """scikit-learn's four multiclass ROC-AUCs over the classes present in ``y`` (their
    columns of ``p``: the one-vs-rest AUC of a class does not depend on the others' columns,
    and Hand & Till's pairs read only the pair's two columns); None with fewer than two."""
    present = np.unique(y)
    if len(present) < 2:
        return [None] * 4
    ovr = [skm.roc_auc_score(y == c, p[:, c], sample_weight=w) for c in present]
    lw = np.array([(w[y == c].sum() if w is not None else (y == c).sum()) for c in present])
    pairs, prev = [], []
    for i, a in enumerate(present):
        for b in present[i + 1:]:
            m = (y == a) | (y == b)
            sw = None if w is None else w[m]
            aab = skm.roc_auc_score(y[m] == a, p[m, a], sample_weight=sw)
            abb = skm.roc_auc_score(y[m] == b, p[m, b], sample_weight=sw)
            pairs.append(0.5 * (aab + abb))
            prev.append(w[m].sum() if w is not None else m.sum())
    return [float(np.mean(ovr)), float(np.dot(ovr, lw) / lw.sum()),
            float(np.mean(pairs)), float(np.dot(pairs, prev) / np.sum(prev))]


@st.composite
def cases(draw):
    k = draw(st.integers(2, 8))
    n = draw(st.integers(1, 150))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    present = rng.choice(k, size=draw(st.integers(1, k)), replace=False)
    y = rng.choice(present, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += rng.random() * 2
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    if draw(st.booleans()):  # ties
        p = np.round(p, 1) + 1e-3
        p /= p.sum(1, keepdims=True)
    w = rng.random(n) + 0.05 if draw(st.booleans()) else None
    g = rng.choice(["a", "b", "c"], n)
    return k, y, p, w, g


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_the_four_aucs_of_every_slice_match_scikit_learn(case):
    k, y, p, w, g = case
    data = {"y": y, "p": p.tolist(), "g": g}
    if w is not None:
        data["w"] = w
    df = pl.DataFrame(data).with_columns(pl.col("p").cast(pl.Array(pl.Float64, k)))
    rep = assay.evaluate(df, task="multiclass", label="y", score="p", metrics=AUCS,
                         slices=["g"], weight="w" if w is not None else None)
    table = rep.table
    for row in table.iter_rows(named=True):
        m = np.ones(len(y), bool) if row["slice"] == "overall" else g == row["slice"][2:]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = sk_aucs(y[m], p[m], None if w is None else w[m])
        for name, v in zip(AUCS, want, strict=True):
            got = row[name]
            if v is None:
                assert got is None, (row["slice"], name)
                note = rep.notes.filter((pl.col("slice") == row["slice"])
                                        & (pl.col("metric") == name))["note"]
                assert note.to_list() == [ONE_CLASS]
            else:
                assert got == pytest.approx(v, rel=1e-9, abs=1e-12), (row["slice"], name)
    # per_class(): each present class's one-vs-rest AUC.
    pc = rep.per_class().filter(pl.col("slice") == "overall")
    for c, got in zip(pc["class"].to_list(), pc["roc_auc"].to_list(), strict=True):
        c = int(c)
        if (y == c).any() and (y != c).any():
            want = skm.roc_auc_score(y == c, p[:, c], sample_weight=w)
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
        else:
            assert got is None


def test_replicates_equal_scikit_learn_under_the_replicate_weights():
    rng = np.random.default_rng(3)
    n, k, b = 400, 4, 12
    y = rng.integers(0, k, n)
    p = rng.dirichlet(np.ones(k), n)
    ids = np.arange(n, dtype=np.int64) * 7 + 3
    df = pl.DataFrame({"y": y, "p": p, "id": ids})
    rep = assay.evaluate(df, task="multiclass", label="y", score="p", metrics=AUCS,
                         bootstrap=b, row_id="id", seed=5)
    _, draws, _ = _native.replicate_draws(5, b, ids.view(np.uint64).tobytes())
    d = np.frombuffer(draws, dtype=np.uint32).reshape(n, b)
    for name, i in zip(AUCS, range(4), strict=True):
        reps = rep._replicates(name)[0]
        for r in range(b):
            want = sk_aucs(y, p, d[:, r].astype(float))[i]
            assert reps[r] == pytest.approx(want, rel=1e-9, abs=1e-12), (name, r)
        lo, hi = rep.table[f"{name}_lo"][0], rep.table[f"{name}_hi"][0]
        assert lo < rep.table[name][0] < hi


def test_split_jobs_with_aucs_equal_one_evaluate():
    from assay.demo import SPECIES, make_multiclass_data

    t = make_multiclass_data(30_000, seed=2)
    df = pl.from_arrow(t).with_row_index("id").with_columns(pl.col("id").cast(pl.Int64))
    spec = assay.Spec(label="species", score="probs", task="multiclass", classes=SPECIES,
                      slices=["light"], metrics=["accuracy", "roc_auc_ovr", "roc_auc_ovo"],
                      bootstrap=50, row_id="id")
    parts = [spec.accumulate(df[a:b]) for a, b in ((0, 10_000), (10_000, 21_000), (21_000, 30_000))]
    shipped = [assay.PartialState.from_bytes(s.to_bytes()) for s in reversed(parts)]
    got = assay.merge(shipped).finalize()
    want = spec.evaluate(df)
    for c in ("accuracy", "roc_auc_ovr", "roc_auc_ovr_lo", "roc_auc_ovo_hi"):
        assert got.table[c].to_list() == want.table[c].to_list(), c
    assert got.per_class().equals(want.per_class())
    assert assay.Spec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_a_spec_without_classes_records_the_list_size_it_read():
    rng = np.random.default_rng(0)
    df = pl.DataFrame({"y": rng.integers(0, 3, 50), "p": rng.dirichlet(np.ones(3), 50)})
    spec = assay.Spec(label="y", score="p", task="multiclass", metrics=["accuracy"])
    state = spec.accumulate(df)
    assert state.spec.classes == (0, 1, 2) and spec.classes is None
    rep = assay.PartialState.from_bytes(state.to_bytes()).finalize()
    assert rep.table["accuracy"][0] == spec.evaluate(df).table["accuracy"][0]


def test_compare_of_two_classifiers_is_paired_and_directed():
    from assay.demo import SPECIES, make_multiclass_data

    t = pl.from_arrow(make_multiclass_data(20_000, seed=1))
    # A worse model: the same probabilities blurred towards uniform.
    blurred = t.with_columns(
        worse=(pl.col("probs").cast(pl.Array(pl.Float64, 4)) * 0.3 + 0.7 / 4))
    cmp = assay.compare(blurred, task="multiclass", label="species", classes=SPECIES,
                        scores={"base": "probs", "blurred": "worse"},
                        metrics=["accuracy", "log_loss", "roc_auc_ovr"], bootstrap=100)
    row = cmp.table.filter(pl.col("slice") == "overall")
    verdicts = dict(zip(row["metric"].to_list(), row["verdict"].to_list(), strict=True))
    # The argmax is unchanged (accuracy and ranks equal), the log loss is worse.
    assert verdicts["log_loss"] == "worse"
    assert verdicts["accuracy"] == "no significant difference"
    assert verdicts["roc_auc_ovr"] == "no significant difference"
    assert set(cmp.reports) == {"base", "blurred"}
    # The per-class tables of a comparison are the reference model's.
    assert cmp.reports["base"].per_class().height == 4
    with pytest.raises(InvalidArgumentError, match="reference model only"):
        cmp.reports["blurred"].confusion()


def test_discover_slices_finds_the_weak_slice_of_a_multiclass_model():
    from assay.demo import SPECIES, make_multiclass_data

    t = make_multiclass_data(50_000, seed=0)
    found = assay.discover_slices(t, task="multiclass", label="species", score="probs",
                                  classes=SPECIES, features=["camera", "light"], k=3)
    assert found["slice"][0] == "light=night"
    zero_one = assay.discover_slices(t, task="multiclass", label="species", score="probs",
                                     classes=SPECIES, error="zero_one",
                                     features=["camera", "light"], k=1)
    df = pl.from_arrow(t)
    night = df.filter(pl.col("light") == "night")
    p = np.stack(night["probs"].to_numpy())
    y = np.searchsorted(np.array(SPECIES), night["species"].to_numpy(), sorter=np.argsort(SPECIES))
    y = np.argsort(SPECIES)[y]
    assert zero_one["error_mean"][0] == pytest.approx(np.mean(p.argmax(1) != y))
    with pytest.raises(InvalidArgumentError, match="log_loss.*zero_one"):
        assay.discover_slices(t, task="multiclass", label="species", score="probs",
                              classes=SPECIES, error="squared", features=["light"])
    # (discover_regressions takes multiclass models: tests/test_discover_regressions.py.)
    with pytest.raises(InvalidArgumentError, match="both models read the column 'probs'"):
        assay.discover_regressions(t, task="multiclass", label="species", classes=SPECIES,
                                   scores={"a": "probs", "b": "probs"}, features=["light"])


def _bounds(rep) -> dict[tuple[str, str], float]:
    """(slice, metric) -> the report's guaranteed error bound (auc="sketch")."""
    n = rep.notes.filter(pl.col("error_bound").is_not_null())
    return {(a, b): c for a, b, c in n.select("slice", "metric", "error_bound").iter_rows()}


def _check_within_bounds(got, want, names, exact: bool) -> None:
    """Every ROC-AUC of ``got`` (auc="sketch") within its bound of ``want`` (exact), the bound
    0 and the values equal to rounding when ``exact``; the per-class tables alike."""
    bounds = _bounds(got)
    assert got.table["slice"].to_list() == want.table["slice"].to_list()
    for g, w in zip(got.table.iter_rows(named=True), want.table.iter_rows(named=True),
                    strict=True):
        for name in names:
            if w[name] is None:
                assert g[name] is None and (g["slice"], name) not in bounds
                continue
            b = bounds[(g["slice"], name)]
            assert 0.0 <= b <= 1.0
            assert abs(g[name] - w[name]) <= b + 1e-12, (g["slice"], name, g[name], w[name], b)
            if exact:
                assert b == 0.0 and g[name] == pytest.approx(w[name], rel=1e-12, abs=1e-14)
    gp, wp = got.per_class(), want.per_class()
    assert gp.drop("roc_auc", "roc_auc_bound").equals(wp.drop("roc_auc"))
    for a, b, w in zip(gp["roc_auc"], gp["roc_auc_bound"], wp["roc_auc"], strict=True):
        if w is None:
            assert a is None and b is None
        else:
            assert abs(a - w) <= b + 1e-12
            if exact:
                assert b == 0.0 and a == pytest.approx(w, rel=1e-12, abs=1e-14)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), budget=st.sampled_from([16, 40, 1_000_000]), ovo=st.booleans())
def test_sketch_aucs_lie_within_their_bounds_of_the_exact_ones(case, budget, ovo):
    """auc="sketch": every multiclass ROC-AUC (the four averages and each class's
    one-vs-rest value) within its reported bound of the exact one (checked against
    scikit-learn above), over ties, weights, absent classes and one-class slices; with a
    budget above the rows, the sketches are exact (bound 0)."""
    k, y, p, w, g = case
    data = {"y": y, "p": p.tolist(), "g": g}
    if w is not None:
        data["w"] = w
    df = pl.DataFrame(data).with_columns(pl.col("p").cast(pl.Array(pl.Float64, k)))
    names = AUCS if ovo else AUCS[:2]
    kw = dict(task="multiclass", label="y", score="p", metrics=names, slices=["g"],
              weight="w" if w is not None else None)
    got = assay.evaluate(df, auc="sketch", auc_max_runs=budget, **kw)
    want = assay.evaluate(df, **kw)
    # (The slice's budget is shared: K sketches, K x K with the pairs, 16 runs each at least;
    # a sketch holds at most the rows.)
    share = max(budget // (k * k if ovo else k), 16)
    _check_within_bounds(got, want, names, exact=share >= len(y))


def test_sketch_states_merge_in_any_order_to_the_same_bits_within_their_bounds():
    from assay.demo import SPECIES, make_multiclass_data

    t = pl.from_arrow(make_multiclass_data(30_000, seed=4))
    kw = dict(label="species", score="probs", task="multiclass", classes=SPECIES,
              slices=["light"], metrics=["accuracy", *AUCS])
    spec = assay.Spec(auc="sketch", auc_max_runs=64, **kw)
    cuts = ((0, 9_000), (9_000, 21_000), (21_000, 30_000))
    parts = [spec.accumulate(t[a:b], row_offset=a) for a, b in cuts]
    blobs = [p.to_bytes() for p in parts]
    forward = assay.merge([assay.PartialState.from_bytes(b) for b in blobs]).finalize()
    backward = assay.merge([assay.PartialState.from_bytes(b) for b in blobs[::-1]]).finalize()
    assert forward.table.equals(backward.table) and forward.notes.equals(backward.notes)
    assert forward.per_class().equals(backward.per_class())
    exact = assay.Spec(**kw).evaluate(t)
    _check_within_bounds(forward, exact, AUCS, exact=False)
    # The sketches are bounded: the 4 x 4 sketches of a slice (the pairs) share its 64 runs,
    # 16 each at least (at most 44 bytes a run), however many rows; an exact state grows with
    # the rows.
    slices = 1 + t["light"].n_unique()
    whole = spec.accumulate(t).to_bytes()
    assert max(len(b) for b in [*blobs, whole]) < slices * 16 * 16 * 44 + 8_192
    assert len(assay.Spec(**kw).accumulate(t).to_bytes()) > 4 * len(whole)
    one_pass = spec.evaluate(t)
    _check_within_bounds(one_pass, exact, AUCS, exact=False)


def test_a_streamed_sketch_job_flushes_its_entries_and_stays_within_its_bounds():
    # 64 classes: the entries become runs every 65,536 rows (a binary job: every 4M rows).
    rng = np.random.default_rng(9)
    n, k = 140_000, 64
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k)).astype(np.float32)
    z[np.arange(n), y] += 1.5
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    t = pa.table({"y": y, "p": pa.FixedSizeListArray.from_arrays(pa.array(p.ravel()), k),
                  "g": rng.integers(0, 2, n)})
    kw = dict(task="multiclass", label="y", score="p", slices=["g"], metrics=AUCS[:2],
              normalize="divide")
    # (The budget of a slice, shared: 256 runs for each class's sketch.)
    got = assay.evaluate(t.to_reader(max_chunksize=30_000), auc="sketch",
                         auc_max_runs=64 * 256, **kw)
    want = assay.evaluate(t, **kw)
    _check_within_bounds(got, want, AUCS[:2], exact=False)
    assert max(_bounds(got).values()) < 0.01


def test_sketch_mode_refusals_say_what_to_do():
    df = pl.DataFrame({"y": [0, 1, 2] * 4, "p": np.tile(np.eye(3), (4, 1)),
                       "g": [str(i) for i in range(12)]})
    kw = dict(task="multiclass", label="y", score="p", auc="sketch")
    with pytest.raises(InvalidArgumentError, match="bootstrap intervals of the multiclass "
                       "ROC-AUCs need auc=\"exact\".*run sketch"):
        assay.evaluate(df, bootstrap=10, metrics=["accuracy", "roc_auc_ovo"], **kw)
    with pytest.raises(InvalidArgumentError, match="bootstrap intervals of the multiclass"):
        assay.Spec(label="y", score="p", task="multiclass", auc="sketch", bootstrap=10,
                   metrics=["roc_auc_ovr"])
    # (Without a ROC-AUC, auc= has nothing to do: the bootstrap runs.)
    assert assay.evaluate(df, bootstrap=10, metrics=["accuracy"], **kw).table.height == 1
    with pytest.raises(InvalidArgumentError, match="quantile calibration bins .* keep every row"):
        assay.evaluate(df, metrics=["roc_auc_ovr", "ece_top_label"],
                       calibration_strategy="quantile", **kw)
    # K x K sketches per slice with the one-vs-one pairs: too many for this many slices.
    k, n = 300, 600
    rng = np.random.default_rng(0)
    big = pl.DataFrame({"y": rng.integers(0, k, n), "p": rng.dirichlet(np.ones(k), n),
                        "g": np.arange(n) % 50})
    with pytest.raises(InvalidArgumentError, match="90000 run sketches per slice.*pair"):
        assay.evaluate(big, task="multiclass", label="y", score="p", slices=["g"],
                       metrics=["roc_auc_ovo"], auc="sketch")
    # One per class without the pairs: accepted.
    rep = assay.evaluate(big, task="multiclass", label="y", score="p", slices=["g"],
                         metrics=["roc_auc_ovr"], auc="sketch")
    assert rep.table.height == 51


@st.composite
def binned_cases(draw):
    k, y, p, w, g = draw(cases())
    bins = draw(st.sampled_from([2, 3, 7, 64, 4096]))
    return k, y, p, w, g, bins


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=binned_cases())
def test_binned_aucs_are_the_exact_aucs_of_the_binned_probabilities(case):
    """auc="binned" replaces each probability by its equal-width bin over [0, 1] (the binary
    rule, the top bin closed): its four averages and per-class values equal scikit-learn's on
    the bin indices, per slice, weighted or not."""
    k, y, p, w, g, bins = case
    df = pl.DataFrame({"y": y, "p": p, "g": g, **({} if w is None else {"w": w})})
    rep = assay.evaluate(df, task="multiclass", label="y", score="p", classes=list(range(k)),
                         slices=["g"], metrics=AUCS, weight=None if w is None else "w",
                         auc="binned", auc_bins=bins)
    binned = np.minimum(np.floor(p * bins), bins - 1)
    per_class = rep.per_class()
    for row in rep.table.iter_rows(named=True):
        m = np.ones(len(y), bool) if row["g"] is None else g == row["g"]
        want = sk_aucs(y[m], binned[m], None if w is None else w[m])
        for name, v in zip(AUCS, want, strict=True):
            if v is None:
                assert row[name] is None, name
            else:
                assert row[name] == pytest.approx(v, rel=1e-9, abs=1e-12), name
        got = per_class.filter(pl.col("slice") == row["slice"])
        for c, auc in zip(got["class"].cast(pl.Int64), got["roc_auc"], strict=True):
            pos = y[m] == c
            if pos.all() or not pos.any():
                assert auc is None
            else:
                want_c = skm.roc_auc_score(pos, binned[m][:, c],
                                           sample_weight=None if w is None else w[m])
                assert auc == pytest.approx(want_c, rel=1e-9, abs=1e-12)


def test_binned_states_merge_to_one_pass_and_have_no_bootstrap():
    from assay.demo import SPECIES, make_multiclass_data

    t = make_multiclass_data(20_000, seed=4)
    df = pl.from_arrow(t).with_row_index("id").with_columns(pl.col("id").cast(pl.Int64))
    spec = assay.Spec(label="species", score="probs", task="multiclass", classes=SPECIES,
                      slices=["light"], metrics=["accuracy", "roc_auc_ovr", "roc_auc_ovo"],
                      auc="binned", auc_bins=256)
    parts = [spec.accumulate(df[a:b]) for a, b in ((0, 7_000), (7_000, 20_000))]
    shipped = [assay.PartialState.from_bytes(s.to_bytes()) for s in reversed(parts)]
    got = assay.merge(shipped).finalize()
    want = spec.evaluate(df)
    assert got.table.equals(want.table) and got.per_class().equals(want.per_class())
    # The state holds a fixed histogram per slice, however many rows.
    assert len(parts[0].to_bytes()) == len(parts[1].to_bytes())
    # The histograms have no replicates: a bootstrap of the ROC-AUCs is refused before any
    # row is read, naming the way out.
    boot = assay.Spec(label="species", score="probs", task="multiclass", classes=SPECIES,
                      metrics=["accuracy", "roc_auc_ovr"], auc="binned", bootstrap=20)
    with pytest.raises(InvalidArgumentError,
                       match="multiclass ROC-AUCs need auc=\"exact\".*job of their own"):
        boot.evaluate(df)
    # A histogram the job cannot hold is refused before any row is read, naming the remedy.
    many = pl.DataFrame({"y": np.arange(50), "p": np.eye(50)})
    with pytest.raises(InvalidArgumentError,
                       match="50 x 50 x 1000000 histogram cells per slice: use fewer auc_bins"):
        assay.evaluate(many, task="multiclass", label="y", score="p", metrics=["roc_auc_ovo"],
                       auc="binned", auc_bins=1_000_000)


def test_the_command_line_evaluates_a_multiclass_model(tmp_path, capsys):
    from assay.demo import make_multiclass_data

    path = tmp_path / "animals.parquet"
    pl.from_arrow(make_multiclass_data(5_000)).write_parquet(path)
    code = main(["evaluate", str(path), "--task", "multiclass", "--label", "species",
                 "--score", "probs", "--classes", "cat,dog,bird,fox", "--slice", "light",
                 "--metrics", "accuracy,macro_f1,top_k_accuracy@2", "--format", "json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    want = assay.evaluate(pl.read_parquet(path), task="multiclass", label="species",
                          score="probs", classes=["cat", "dog", "bird", "fox"],
                          slices=["light"], metrics=["accuracy", "macro_f1"], k=2)
    assert [r["accuracy"] for r in out["rows"]] == want.table["accuracy"].to_list()
    # A job file: classes as a list, the K columns of a model as a list.
    df = pl.read_parquet(path)
    p = np.stack(df["probs"].to_numpy())
    cols = {f"p_{c}": p[:, i] for i, c in enumerate(["cat", "dog", "bird", "fox"])}
    df.with_columns(**{k: pl.Series(v) for k, v in cols.items()}).write_parquet(path)
    job = tmp_path / "job.toml"
    job.write_text('command = "evaluate"\ndata = "animals.parquet"\ntask = "multiclass"\n'
                   'label = "species"\nscore = ["p_cat", "p_dog", "p_bird", "p_fox"]\n'
                   'classes = ["cat", "dog", "bird", "fox"]\nmetrics = ["accuracy"]\n'
                   'format = "json"\n')
    assert main(["run", str(job)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"][0]["accuracy"] == want.table["accuracy"][0]


def test_review_cases_get_clear_errors_and_notes():
    import pyarrow as pa

    from assay.errors import EmptyInputError, InvalidInputError

    # A multiclass metric name is not a binary confusion metric of assay.selective.
    binary = {"y": [0, 1, 1, 0], "p": [0.1, 0.8, 0.6, 0.3]}
    with pytest.raises(InvalidArgumentError):
        assay.selective(binary, label="y", score="p", metrics=["macro_f1"])
    # An all-null dictionary label column: every row is null (dropped), not a panic.
    labels = pa.array([None] * 4, pa.string()).dictionary_encode()
    t = pa.table({"y": labels, "p": pa.FixedSizeListArray.from_arrays(
        pa.array(np.tile([0.2, 0.3, 0.5], 4)), 3)})
    with pytest.raises(EmptyInputError):
        assay.evaluate(t, task="multiclass", label="y", score="p", classes=["a", "b", "c"],
                       nan_policy="drop")
    with pytest.raises(InvalidInputError, match="label is null at row 0"):
        assay.evaluate(t, task="multiclass", label="y", score="p", classes=["a", "b", "c"])
    # K score columns: the error names the column of the class at fault.
    cols = {"y": [0, 1], "a": [0.5, 0.5], "b": [0.5, 0.5], "c": [0.0, None]}
    with pytest.raises(InvalidInputError, match=r'"c".*class 2 is null at row 1') as e:
        assay.evaluate(cols, task="multiclass", label="y", score=["a", "b", "c"])
    assert e.value.column == "c"
    # An integer label outside explicit integer classes: no advice about leaving them out.
    with pytest.raises(InvalidInputError, match="label 5 at row 1 is not one of the 3 classes "
                                                r"\(\"10\", \"20\", \"30\"\); add it"):
        assay.evaluate({"y": [10, 5], "p": np.array([[0.2, 0.3, 0.5]] * 2)},
                       task="multiclass", label="y", score="p", classes=[10, 20, 30])
    # Analytic intervals: the ROC-AUCs say so.
    df = pl.DataFrame({"y": [0, 1, 2, 1], "p": np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2],
                                                         [0.1, 0.2, 0.7], [0.3, 0.4, 0.3]])})
    rep = assay.evaluate(df, task="multiclass", label="y", score="p", metrics=["roc_auc_ovr"],
                         ci_method="analytic")
    notes = rep.long().filter(pl.col("metric") == "roc_auc_ovr")["note"].to_list()
    assert notes[0] == "no analytic interval for multiclass metrics: use bootstrap=B"


def test_discovery_with_categorical_labels_equals_string_labels():
    from assay.demo import SPECIES, make_multiclass_data

    t = pl.from_arrow(make_multiclass_data(20_000, seed=3))
    kw = dict(task="multiclass", label="species", score="probs", classes=SPECIES,
              features=["camera", "light"], k=3)
    a = assay.discover_slices(t, **kw)
    b = assay.discover_slices(t.with_columns(pl.col("species").cast(pl.Categorical)), **kw)
    assert a.equals(b)


def test_the_torch_path_refuses_multiclass_first():
    torch = pytest.importorskip("torch")
    from assay import torch as at

    spec = assay.Spec(label="y", score="p", task="multiclass")
    with pytest.raises(InvalidArgumentError, match="multiclass.*not on the torch path"):
        at.Evaluator(spec, device=torch.device("cpu"))


def _scores(p: np.ndarray, form: str) -> dict:
    """The probability columns of ``p`` in one of the layouts the engine reads."""
    k = p.shape[1]
    if form in ("columns", "columns32"):
        dtype = pa.float32() if form == "columns32" else pa.float64()
        return {f"p{c}": pa.array(p[:, c], dtype) for c in range(k)}
    if form == "int_columns":
        return {f"p{c}": pa.array(p[:, c].astype(np.int64)) for c in range(k)}
    flat = pa.array(p.ravel(), pa.float32() if form == "fixed32" else pa.float64())
    if form in ("fixed32", "fixed64"):
        return {"p": pa.FixedSizeListArray.from_arrays(flat, k)}
    offsets = np.arange(0, p.size + 1, k)
    if form == "list":
        return {"p": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), flat)}
    return {"p": pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), flat)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.integers(2, 12), n=st.integers(1, 300), seed=st.integers(0, 2**32 - 1),
       form=st.sampled_from(["fixed32", "fixed64", "list", "large_list", "columns",
                             "columns32", "int_columns"]),
       normalize=st.sampled_from(["raise", "divide", "softmax"]),
       weighted=st.booleans(), bootstrap=st.sampled_from([None, 20]), bad_rows=st.booleans(),
       cuts=st.lists(st.integers(0, 300), max_size=3))
def test_a_job_that_reads_its_batches_again_equals_one_that_keeps_its_probabilities(
        k, n, seed, form, normalize, weighted, bootstrap, bad_rows, cuts):
    """evaluate() over an in-memory table keeps one entry a row and reads the probability
    matrix again for the ROC-AUCs (sorting float32 probabilities as 8-byte records); a partial
    state keeps every row's K probabilities (16-byte records). Both give the same bits, for
    every layout of the scores, normalization, dropped rows, weights, replicates and
    batching."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    if form == "int_columns":
        p = rng.integers(0, 4, (n, k)).astype(float)
        p[p.sum(axis=1) == 0, 0] = 1.0
        normalize = "divide"
    elif normalize == "softmax":
        p = np.round(rng.normal(0, 2, (n, k)), 1)  # logits, with ties
    else:
        p = np.round(rng.dirichlet(np.ones(k), n), 2)  # (ties)
        p[p.sum(axis=1) == 0, 0] = 1.0
        if normalize == "raise":
            p = p / p.sum(axis=1, keepdims=True)
    y_col = pa.array(y)
    if bad_rows and n > 2:
        y_col = pa.array([None if i == 1 else int(v) for i, v in enumerate(y)], pa.int64())
        if form != "int_columns":
            p[2, 0] = np.nan  # (with "drop", the row is dropped)
    cols = {"y": y_col, **_scores(p, form),
            "g": pa.array(rng.choice(["a", "b", "c"], n)),
            "id": pa.array(np.arange(n, dtype=np.int64))}
    if weighted:
        cols["w"] = pa.array(rng.uniform(0.1, 3.0, n))
    table = pa.table(cols)
    bounds = sorted({0, n, *(min(c, n) for c in cuts)})
    table = pa.Table.from_batches(
        [b for lo, hi in zip(bounds, bounds[1:], strict=False)
         for b in table.slice(lo, hi - lo).to_batches()],
        schema=table.schema)
    score = [f"p{c}" for c in range(k)] if "columns" in form else "p"
    spec = assay.Spec(label="y", score=score, task="multiclass", classes=list(range(k)),
                      normalize=normalize, slices=["g"], metrics=[*AUCS, "accuracy"],
                      weight="w" if weighted else None, bootstrap=bootstrap,
                      row_id="id" if bootstrap else None, seed=seed % 1000,
                      nan_policy="drop" if bad_rows else "raise")
    try:
        replayed = spec.evaluate(table)
    except assay.errors.AssayError as e:  # (every row dropped)
        assert bad_rows and "no rows" in str(e).lower()
        return
    kept = spec.accumulate(table).finalize()
    for a, b in ((replayed.table, kept.table), (replayed.per_class(), kept.per_class())):
        assert a.columns == b.columns
        for c in a.columns:
            assert a[c].to_list() == b[c].to_list() or (
                a[c].dtype == pl.Float64
                and np.array_equal(a[c].to_numpy(), b[c].to_numpy(), equal_nan=True)), c


def quantile_ece(s: np.ndarray, y: np.ndarray, w: np.ndarray | None, n_bins: int) -> float:
    """The binary calibration module's ECE on quantile bins (docs/calibration.md)."""
    ids, _ = ref.bin_ids(s, n_bins, "quantile", w)
    w = np.ones(len(s)) if w is None else w
    gap = np.bincount(ids, w * (y - s), n_bins)
    return float(np.abs(gap).sum() / w.sum())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), n_bins=st.sampled_from([1, 3, 10, 15]), form=st.sampled_from(
    ["evaluate", "accumulate"]))
def test_calibration_errors_on_quantile_bins_match_the_reference(case, n_bins, form):
    """calibration_strategy="quantile": the top-label error bins each slice's top
    probabilities at their own quantiles (against whether the argmax, ties to the lowest
    index, is the label); the classwise error bins each class's probabilities (against whether
    the label is the class) and averages over the K classes. Both routes of the kept rows (read
    again from memory, or kept K a row in a partial state) give the reference."""
    k, y, p, w, g = case
    df = pl.DataFrame({"y": y, "p": p, "g": g, **({} if w is None else {"w": w})})
    spec = assay.Spec(label="y", score="p", task="multiclass", classes=list(range(k)),
                      slices=["g"], metrics=["ece_top_label", "ece_classwise", "accuracy"],
                      weight=None if w is None else "w", calibration_strategy="quantile",
                      calibration_bins=n_bins)
    rep = spec.evaluate(df) if form == "evaluate" else spec.accumulate(df).finalize()
    for row in rep.table.iter_rows(named=True):
        m = np.ones(len(y), bool) if row["g"] is None else g == row["g"]
        ym, pm, wm = y[m], p[m], None if w is None else w[m]
        conf, hit = pm.max(axis=1), (pm.argmax(axis=1) == ym).astype(float)
        assert row["ece_top_label"] == pytest.approx(
            quantile_ece(conf, hit, wm, n_bins), rel=1e-9, abs=1e-12)
        classwise = np.mean([quantile_ece(pm[:, c], (ym == c).astype(float), wm, n_bins)
                             for c in range(k)])
        assert row["ece_classwise"] == pytest.approx(classwise, rel=1e-9, abs=1e-12)


def test_quantile_calibration_errors_have_no_interval_and_merge_like_one_pass():
    from assay.demo import SPECIES, make_multiclass_data

    t = make_multiclass_data(12_000, seed=5)
    df = pl.from_arrow(t).with_row_index("id").with_columns(pl.col("id").cast(pl.Int64))
    spec = assay.Spec(label="species", score="probs", task="multiclass", classes=SPECIES,
                      slices=["light"], metrics=["accuracy", "ece_top_label", "ece_classwise",
                                                 "roc_auc_ovr"],
                      calibration_strategy="quantile", bootstrap=20, row_id="id")
    rep = spec.evaluate(df)
    assert rep.table["accuracy_lo"].null_count() == 0
    assert rep.table["ece_top_label_lo"].null_count() == rep.table.height
    notes = rep.notes.filter(pl.col("metric") == "ece_classwise")["note"].unique().to_list()
    assert notes == ["no interval: quantile bins take their edges from the data; use "
                     'calibration_strategy="uniform"']
    parts = [spec.accumulate(df[a:b]) for a, b in ((0, 5_000), (5_000, 12_000))]
    got = assay.merge([assay.PartialState.from_bytes(p.to_bytes()) for p in parts]).finalize()
    for c in ("ece_top_label", "ece_classwise", "roc_auc_ovr", "accuracy_hi"):
        assert got.table[c].to_list() == rep.table[c].to_list(), c
