"""Provenance, saved runs (save / load / diff), the table's ``spec`` and bin-edge columns and
the compact repr (issue 21)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import assay
import assay.demo
from assay._provenance import git_commit


@pytest.fixture(scope="module")
def data() -> pa.Table:
    return assay.demo.make_data(4000, seed=3)


def _evaluate(data, **kw):
    base = dict(label="churned", score="p_churn",
                slices=["plan", ("country", "device"), assay.bins("age", edges=[30, 50])])
    return assay.evaluate(data, **{**base, **kw})


# ---- provenance ------------------------------------------------------------------------------


def test_provenance_records_spec_version_time_and_input(data):
    before = dt.datetime.now(dt.UTC)
    rep = _evaluate(data, metrics=["roc_auc", "accuracy"], bootstrap=20)
    p = rep.provenance
    assert isinstance(p, assay.Provenance)
    assert p.kind == "evaluate"
    assert p.assay_version == assay.__version__
    assert before <= dt.datetime.fromisoformat(p.created) <= dt.datetime.now(dt.UTC)
    assert p.rows == 4000 and p.content_hash is None
    # The spec is the job's own, and rebuilds the same spec.
    spec = assay.Spec(label="churned", score="p_churn", metrics=["roc_auc", "accuracy"],
                      bootstrap=20,
                      slices=["plan", ("country", "device"), assay.bins("age", edges=[30, 50])])
    assert p.spec == spec.to_dict()
    assert assay.Spec.from_dict(p.spec) == spec
    # The columns read, with their Arrow types.
    assert dict(p.schema) == {"churned": "Boolean", "p_churn": "Float64", "plan": "Utf8",
                              "country": "Utf8", "device": "Utf8", "age": "Float64"}
    d = p.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert assay.Provenance.from_dict(d) == p
    assert "rows" in str(p)


def test_provenance_of_compare_and_finalize(data):
    cmp = assay.compare(data, label="churned", scores={"a": "p_churn", "b": "p_churn"},
                        metrics=["roc_auc"], bootstrap=20, slices=["plan"])
    assert cmp.provenance.kind == "compare"
    assert cmp.provenance.spec["scores"] == [["a", "p_churn"], ["b", "p_churn"]]
    assert all(r.provenance is cmp.provenance for r in cmp.reports.values())
    spec = assay.Spec(label="churned", score="p_churn", metrics=["accuracy"])
    rep = spec.accumulate(data).finalize()
    assert rep.provenance.kind == "finalize"
    assert rep.provenance.schema is None and rep.provenance.rows == 4000
    assert rep.provenance.spec == spec.to_dict()


def test_git_commit_is_read_from_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert git_commit() is None
    assert _evaluate({"churned": [0, 1], "p_churn": [0.2, 0.7], "plan": ["a", "b"],
                      "country": ["x", "y"], "device": ["m", "n"], "age": [20.0, 40.0]},
                     metrics=["accuracy"]).provenance.git_commit is None
    # A repository with a branch ref, then with the ref only in packed-refs, then detached.
    sha = "0123456789abcdef0123456789abcdef01234567"
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text(sha + "\n")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    assert git_commit(sub) == sha
    (git / "refs" / "heads" / "main").unlink()
    (git / "packed-refs").write_text(f"# pack-refs\n{sha} refs/heads/main\n")
    assert git_commit(sub) == sha
    (git / "HEAD").write_text(sha[::-1] + "\n")
    assert git_commit() == sha[::-1]
    (git / "HEAD").write_text("ref: refs/heads/unborn\n")
    assert git_commit() is None


def test_git_commit_matches_git_in_this_checkout():
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (or no git)")
    assert git_commit(here) == out


# ---- content fingerprint ---------------------------------------------------------------------


def _hash(data, **kw) -> str:
    rep = assay.evaluate(data, label="y", score="p", slices=["g"], metrics=["accuracy"],
                         fingerprint="content", **kw)
    assert rep.provenance.content_hash is not None
    return rep.provenance.content_hash


def _table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "y": rng.integers(0, 2, n).astype(np.int8),
        "p": rng.random(n),
        "g": pa.array(rng.choice(["a", "b", None], n).tolist(), pa.string()),
        "unused": rng.random(n),
    })


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3000), seed=st.integers(0, 2**32 - 1),
       cuts=st.lists(st.integers(0, 3000), max_size=6))
def test_content_hash_does_not_depend_on_batches(n, seed, cuts):
    t = _table(n, seed)
    whole = _hash(t)
    bounds = sorted({0, n, *(c for c in cuts if c < n)})
    batches = [b for lo, hi in zip(bounds, bounds[1:], strict=False)
               for b in t.slice(lo, hi - lo).to_batches()]
    reader = pa.RecordBatchReader.from_batches(t.schema, batches)
    assert _hash(reader) == whole
    # The shards of a split job add up to the whole input's hash.
    spec = assay.Spec(label="y", score="p", slices=["g"], metrics=["accuracy"])
    parts = [spec.accumulate(t.slice(lo, hi - lo), row_offset=lo, fingerprint="content")
             for lo, hi in zip(bounds, bounds[1:], strict=False)]
    merged = parts[0] if len(parts) == 1 else assay.merge(parts)
    assert merged.finalize().provenance.content_hash == whole


def test_content_hash_sees_values_and_order_not_encoding_or_unread_columns():
    t = _table(500, 1)
    base = _hash(t)
    # A column the job does not read does not count; a categorical hashes as its values.
    assert _hash(t.drop_columns(["unused"])) == base
    assert _hash(t.set_column(2, "g", t.column("g").dictionary_encode())) == base
    assert _hash(pl.from_arrow(t).with_columns(pl.col("g").cast(pl.Categorical))) == base
    p = t.column("p").to_numpy().copy()
    p[17] = np.nextafter(p[17], 2.0)
    assert _hash(t.set_column(1, "p", pa.array(p))) != base
    assert _hash(t.take(np.r_[1, 0, 2:500])) != base
    g = t.column("g").to_pylist()
    g[3] = None if g[3] is not None else "a"
    assert _hash(t.set_column(2, "g", pa.array(g, pa.string()))) != base
    # Without fingerprint="content" there is no hash; a bad value is refused.
    rep = assay.evaluate(t, label="y", score="p", metrics=["accuracy"])
    assert rep.provenance.content_hash is None
    with pytest.raises(assay.InvalidArgumentError, match="fingerprint"):
        assay.evaluate(t, label="y", score="p", fingerprint="md5")
    # A state without a hash merged with one that has one: no hash.
    spec = assay.Spec(label="y", score="p", metrics=["accuracy"])
    a = spec.accumulate(t.slice(0, 200), fingerprint="content")
    b = spec.accumulate(t.slice(200), row_offset=200)
    assert assay.merge([a, b]).finalize().provenance.content_hash is None
    # The hash travels with the state's bytes.
    back = assay.PartialState.from_bytes(a.to_bytes()).finalize()
    assert back.provenance.content_hash == a.finalize().provenance.content_hash


# ---- saved runs ------------------------------------------------------------------------------


def test_report_round_trips_exactly(data, tmp_path):
    rep = _evaluate(data, bootstrap=30, weight="age", fingerprint="content")
    path = rep.save(tmp_path / "run.assay.parquet")
    back = assay.load(path)
    assert isinstance(back, assay.Report)
    assert back.table.equals(rep.table)
    assert back.long().equals(rep.long())
    assert back.notes.equals(rep.notes)
    assert back.metrics == rep.metrics and back.rows == rep.rows
    assert back.ci_method == rep.ci_method
    assert back.provenance == rep.provenance
    d1 = rep.disparity("roc_auc", "plan").table
    assert back.disparity("roc_auc", "plan").table.equals(d1)
    # The file's rows are the table, for any Parquet reader.
    raw = pq.read_table(path)
    assert raw.column_names[:2] == ["slice", "spec"]
    assert raw.num_rows == rep.table.height
    meta = json.loads(raw.schema.metadata[b"assay"])
    assert meta["format"] == 1 and meta["kind"] == "report"
    assert meta["provenance"]["input"]["content_hash"] == rep.provenance.content_hash


def test_multiclass_and_comparison_round_trip(tmp_path):
    mc = assay.demo.make_multiclass_data(3000, seed=1)
    rep = assay.evaluate(mc, task="multiclass", label="species", score="probs",
                         classes=assay.demo.SPECIES, slices=["camera"],
                         metrics=["accuracy", "macro_f1", "roc_auc_ovr"])
    back = assay.load(rep.save(tmp_path / "mc.assay.parquet"))
    assert back.table.equals(rep.table)
    assert back.per_class().equals(rep.per_class())
    assert back.confusion().equals(rep.confusion())

    cd = assay.demo.make_comparison_data(3000, seed=2)
    cmp = assay.compare(cd, label="churned", scores={"old": "p_old", "new": "p_new"},
                        bootstrap=40,
                        slices=["country"], metrics=["roc_auc", "log_loss"],
                        correction="holm")
    back = assay.load(cmp.save(tmp_path / "cmp.assay.parquet"))
    assert isinstance(back, assay.Comparison)
    assert back.table.equals(cmp.table)
    assert back.correction == "holm" and back.reference == cmp.reference
    np.testing.assert_array_equal(back.replicates, cmp.replicates)
    assert back.with_correction("bh").table.equals(cmp.with_correction("bh").table)
    for name, r in cmp.reports.items():
        assert back.reports[name].table.equals(r.table)
    assert back.provenance == cmp.provenance


def test_load_refuses_what_is_not_a_saved_run(tmp_path, data):
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1]}), plain)
    with pytest.raises(assay.StateFormatError, match="not a saved assay run"):
        assay.load(plain)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(assay.StateFormatError, match="not a readable Parquet"):
        assay.load(junk)
    rep = _evaluate(data, metrics=["accuracy"])
    path = rep.save(tmp_path / "r.assay.parquet")
    t = pq.read_table(path)
    meta = json.loads(t.schema.metadata[b"assay"])
    meta["format"] = 99
    newer = tmp_path / "newer.assay.parquet"
    pq.write_table(t.replace_schema_metadata({b"assay": json.dumps(meta).encode()}), newer)
    with pytest.raises(assay.StateFormatError, match="format 99.*upgrade assay"):
        assay.load(newer)
    with pytest.raises(assay.InvalidArgumentError, match="an assay.Comparison, or the table"):
        assay._saved.save(rep.table, tmp_path / "x.parquet")


def test_load_and_save_refuse_bad_paths_with_typed_errors(tmp_path, data):
    for bad in (123, None, b"run.assay.parquet", ""):
        with pytest.raises(assay.InvalidArgumentError, match="path"):
            assay.load(bad)
    with pytest.raises(assay.InvalidArgumentError, match="no such file.*missing"):
        assay.load(tmp_path / "missing.assay.parquet")
    with pytest.raises(assay.InvalidArgumentError, match="is a directory"):
        assay.load(tmp_path)
    rep = _evaluate(data, metrics=["accuracy"])
    with pytest.raises(assay.InvalidArgumentError, match="directory .*nope.* does not exist"):
        rep.save(tmp_path / "nope" / "r.assay.parquet")
    with pytest.raises(assay.InvalidArgumentError, match="is a directory"):
        rep.save(tmp_path)
    with pytest.raises(assay.InvalidArgumentError, match="path"):
        rep.save(7)
    # Metadata that is JSON but not an object, or an object missing what the kind needs.
    path = rep.save(tmp_path / "r.assay.parquet")
    t = pq.read_table(path)
    for raw, match in ((b"[1, 2]", "not a JSON object"),
                       (json.dumps({"format": 1, "kind": "report"}).encode(), "damaged")):
        odd = tmp_path / "odd.assay.parquet"
        pq.write_table(t.replace_schema_metadata({b"assay": raw}), odd)
        with pytest.raises(assay.StateFormatError, match=match):
            assay.load(odd)


def test_diff_compares_values_slice_by_slice(data, tmp_path):
    a = _evaluate(data, metrics=["roc_auc", "accuracy"])
    b = _evaluate(data.slice(0, 3000), metrics=["roc_auc", "accuracy"])
    d = assay.diff(a, b.save(tmp_path / "b.assay.parquet"))
    assert d.columns == ["slice", "metric", "a", "b", "delta", "n_a", "n_b"]
    assert d.filter(pl.col("slice") == "overall")["metric"].to_list() == ["roc_auc", "accuracy"]
    for row in d.iter_rows(named=True):  # (a check over a few dozen rows)
        ra = a.table.filter(pl.col("slice") == row["slice"])
        rb = b.table.filter(pl.col("slice") == row["slice"])
        assert row["a"] == (ra[row["metric"]][0] if ra.height else None)
        assert row["b"] == (rb[row["metric"]][0] if rb.height else None)
        if row["a"] is not None and row["b"] is not None:
            assert row["delta"] == pytest.approx(row["b"] - row["a"], abs=0)
    assert assay.diff(a, a)["delta"].drop_nulls().abs().max() == 0.0
    with pytest.raises(assay.InvalidArgumentError, match="not in both runs"):
        assay.diff(a, b, metrics=["log_loss"])
    with pytest.raises(assay.InvalidArgumentError, match="must be an assay.Report"):
        assay.diff(a, 3)


# ---- the table ------------------------------------------------------------------------------


def test_spec_column_tells_not_in_spec_from_null_value():
    t = pa.table({"y": [0, 1, 1, 0, 1, 0], "p": [0.2, 0.8, 0.6, 0.3, 0.9, 0.1],
                  "channel": ["branch", "branch", "web", "web", "branch", "web"],
                  "employment": [None, None, "yes", "no", None, "yes"],
                  "age": [20.0, 35.0, 50.0, 70.0, 28.0, 45.0]})
    rep = assay.evaluate(t, label="y", score="p", metrics=["accuracy"],
                         slices=["channel", ("channel", "employment"),
                                 assay.bins("age", edges=[30, 60])])
    tab = rep.table
    assert tab.columns[:2] == ["slice", "spec"]
    assert tab["spec"][0] == "overall"
    one = tab.filter(pl.col("slice") == "channel=branch").row(0, named=True)
    two = tab.filter(pl.col("slice") == "channel=branch & employment=null").row(0, named=True)
    assert one["employment"] is None and two["employment"] is None
    assert one["spec"] == "channel" and two["spec"] == "channel & employment"
    bins = tab.filter(pl.col("spec") == "age").select("age", "age_lower", "age_upper")
    assert bins.rows() == [("(-inf, 30)", -np.inf, 30.0), ("[30, 60]", 30.0, 60.0),
                           ("(60, inf)", 60.0, np.inf)]
    assert tab.schema["age_lower"] == pl.Float64
    # to_arrow / to_dict carry the same columns.
    assert rep.to_arrow().column_names == tab.columns


def test_repr_is_compact_with_headline_metrics(data):
    rep = _evaluate(data, bootstrap=20)
    text = repr(rep)
    lines = text.splitlines()
    assert lines[0].startswith("assay.Report: 4,000 rows (0 dropped)")
    assert "intervals: percentile 95%" in lines[0]
    assert "overall" in lines[4] and "roc_auc" in lines[2] and "[" in lines[4]
    assert lines[-1].startswith("(") and ".table" in lines[-1]
    assert len(lines) <= 20
    assert "brier_lo" not in text  # not the wide table


# ---- reliability and discovery tables --------------------------------------------------------


def test_reliability_and_discovery_tables_keep_provenance_and_save(data, tmp_path):
    rel = assay.reliability(data, label="churned", score="p_churn", slices=["device"],
                            n_bins=5, strategy="quantile")
    assert isinstance(rel, assay.ReliabilityTable) and isinstance(rel, pl.DataFrame)
    assert rel.provenance.kind == "reliability" and rel.provenance.rows == 4000
    assert rel.provenance.spec["calibration_strategy"] == "quantile"
    # Operations give plain frames; the table itself is the DataFrame it was.
    assert type(rel.filter(pl.col("count") > 0)) is pl.DataFrame
    back = assay.load(rel.save(tmp_path / "rel.assay.parquet"))
    assert isinstance(back, assay.ReliabilityTable)
    assert back.equals(rel) and back.provenance == rel.provenance

    found = assay.discover_slices(data, label="churned", score="p_churn",
                                  features=["country", "device", assay.bins("age", 3)], k=5)
    assert isinstance(found, assay.DiscoveryTable)
    p = found.provenance
    assert p.kind == "discovery" and p.rows == 4000 and p.spec is None
    opts = p.extra["discover_slices"]
    assert opts["features"][:2] == ["country", "device"] and opts["k"] == 5
    assert json.loads(json.dumps(p.to_dict())) == p.to_dict()
    back = assay.load(found.save(tmp_path / "found.assay.parquet"))
    assert isinstance(back, assay.DiscoveryTable)
    assert back.equals(found) and back.provenance == found.provenance
    # Their pages, from the object and from the saved run.
    page = found.to_html()
    assert "Provenance" in page and "discover_slices" in page
    from assay.cli import main

    out = tmp_path / "rel.html"
    assert main(["report", str(tmp_path / "rel.assay.parquet"), "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8").count('<svg class="diagram"') >= 1


def test_reliability_and_discovery_hash_their_input_like_evaluate(data):
    kw = dict(label="churned", score="p_churn")
    rep = assay.evaluate(data, **kw, slices=["country", "device"], metrics=["accuracy"],
                         fingerprint="content")
    found = assay.discover_slices(data, **kw, features=["country", "device"], k=3,
                                  fingerprint="content")
    # The same columns read: the same hash, and the same schema.
    assert found.provenance.content_hash == rep.provenance.content_hash is not None
    assert dict(found.provenance.schema) == dict(rep.provenance.schema)
    batches = pa.RecordBatchReader.from_batches(data.schema, data.to_batches(max_chunksize=777))
    again = assay.discover_slices(batches, **kw, features=["country", "device"], k=3,
                                  min_support=40, fingerprint="content")
    assert again.provenance.content_hash == rep.provenance.content_hash
    rel = assay.reliability(data, **kw, fingerprint="content")
    assert rel.provenance.content_hash is not None
    assert rel.provenance.content_hash == assay.evaluate(
        data, **kw, metrics=["accuracy"], fingerprint="content").provenance.content_hash
    assert assay.discover_slices(data, **kw, features=["country"], k=3).provenance \
        .content_hash is None
    with pytest.raises(assay.InvalidArgumentError, match="fingerprint"):
        assay.discover_slices(data, **kw, features=["country"], fingerprint="sha")
