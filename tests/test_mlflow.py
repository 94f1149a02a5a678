"""assay.mlflow: logging a Report and a Comparison to a local MLflow file store (a temporary
directory, no server): valid, documented, collision-free metric names with the report's
values, interval bounds, the slice table round trip, params, tags, artifacts, deltas, the
guards, and the error without mlflow."""

from __future__ import annotations

import doctest
import importlib
import json
import math
import os
import posixpath
import re
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

# MLflow 3 starts a telemetry client when imported (here, at collection, before pytest sets the
# variables it looks for): tests send nothing anywhere.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
mlflow = pytest.importorskip("mlflow")

import assay  # noqa: E402
import assay.mlflow as amlflow  # noqa: E402
from assay.demo import make_comparison_data  # noqa: E402
from assay.errors import InvalidArgumentError  # noqa: E402
from assay.mlflow import safe_name  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "mlflow.md"
# The documented name scheme: prefix, then 1-4 parts of [A-Za-z0-9_.-].
PART = r"[A-Za-z0-9_.\-]+"
# Labels that are not metric names (the issue's "=" and "&", spaces, unicode, markup), and
# labels that only differ in the characters that are replaced.
WEIRD = ["branch", "a=b", "a&b", "a b", "a<b>", "a_b", "Zürich", "東京", "..", ".", "x" * 120,
         "</table><script>", "a/b", "a:b"]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A local file store in a temporary directory; no run is left active afterwards."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    yield mlflow.tracking.MlflowClient()
    while mlflow.active_run() is not None:
        mlflow.end_run()


def _weird_data(rows: int = 6000, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    p = np.clip(0.35 * y + 0.65 * rng.random(rows), 0, 1)
    return pl.DataFrame({
        "y": y, "p": p,
        "channel": rng.choice(np.array(WEIRD, dtype=object), rows).tolist(),
        "tier": rng.integers(1, 4, rows),
    })


@pytest.fixture(scope="module")
def report() -> assay.Report:
    return assay.evaluate(_weird_data(), label="y", score="p",
                          slices=["channel", "tier", ("channel", "tier")],
                          metrics=["roc_auc", "log_loss", "accuracy"], bootstrap=50, seed=0)


@pytest.fixture(scope="module")
def comparison() -> assay.Comparison:
    return assay.compare(make_comparison_data(6000, seed=1), label="churned",
                         scores={"old": "p_old", "new model": "p_new"}, reference="old",
                         slices=["channel"], metrics=["roc_auc", "log_loss"], bootstrap=50,
                         seed=0)


def _valid(name: str) -> bool:
    """MLflow's own rule (mlflow/utils/validation.py), checked with its validator."""
    from mlflow.utils.validation import _validate_metric_name

    try:
        _validate_metric_name(name)
    except Exception:
        return False
    return len(name) <= 250 and not re.search(r"[: ]", name)  # valid on Windows too


def _row(rep: assay.Report, label: str) -> dict:
    return rep.table.filter(pl.col("slice") == label).row(0, named=True)


def _download(client, run_id: str, path: str, tmp_path: Path) -> Path:
    return Path(client.download_artifacts(run_id, path, str(tmp_path)))


# ---- names ----------------------------------------------------------------------------------

def test_safe_name_keeps_valid_names_and_cleans_the_rest():
    assert safe_name("roc_auc") == "roc_auc"
    assert safe_name("new-model.v2") == "new-model.v2"
    # Fixed values: the names must not change between runs, processes or versions.
    assert safe_name("channel=branch") == "channel_branch-377f52e6"
    assert safe_name("channel=branch & employment=null") == \
        "channel_branch_employment_null-3e930dc9"
    names = [safe_name(s) for s in WEIRD]
    assert len(set(names)) == len(WEIRD)
    assert all(re.fullmatch(PART, n) and n not in (".", "..") for n in names)
    assert all(_valid(f"eval/{n}") for n in names)
    assert safe_name("x" * 120).startswith("x" * 48 + "-") and len(safe_name("x" * 120)) == 57
    assert safe_name("Zürich").startswith("Z_rich-")
    with pytest.raises(InvalidArgumentError):
        safe_name(3)


def test_metric_names_are_valid_documented_and_carry_the_reports_values(store, report):
    run_id = amlflow.log(report, prefix="eval")
    logged = store.get_run(run_id).data.metrics
    assert logged == pytest.approx(amlflow.metrics(report, "eval"), rel=0, abs=0)
    assert all(_valid(k) for k in logged)
    assert all(re.fullmatch(rf"eval/({PART}|slice/{PART}/{PART})", k) for k in logged)
    assert not amlflow._folders(logged) & logged.keys()  # no name is another's folder

    overall = _row(report, "overall")
    for m in report.metrics:
        for col in (m, f"{m}_lo", f"{m}_hi"):
            assert logged[f"eval/{col}"] == overall[col]
        assert logged[f"eval/{m}_lo"] <= logged[f"eval/{m}"] <= logged[f"eval/{m}_hi"]
    assert logged["eval/n"] == overall["n"] == 6000

    labels = [s for s in dict.fromkeys(report.table["slice"].to_list()) if s != "overall"]
    assert len(labels) == len(WEIRD) + 3 + 3 * len(WEIRD)
    keys = {s: safe_name(s) for s in labels}
    assert len(set(keys.values())) == len(labels)  # '=', '&', ' ', unicode, '<>' stay apart
    for s, key in keys.items():
        row = _row(report, s)
        assert logged[f"eval/slice/{key}/n"] == row["n"]
        for col in ("roc_auc", "roc_auc_lo", "roc_auc_hi", "log_loss", "accuracy_hi"):
            if row[col] is None:  # undefined values are not logged
                assert f"eval/slice/{key}/{col}" not in logged
            else:
                assert logged[f"eval/slice/{key}/{col}"] == row[col]
    # Exactly the documented names: 1 + 3 per metric, for overall and each slice.
    assert len(logged) <= (1 + 3 * len(report.metrics)) * (1 + len(labels))
    assert f"eval/slice/{safe_name('channel=a=b')}/roc_auc" in logged


def test_the_issues_label_is_logged_under_a_valid_name(store):
    df = pl.DataFrame({"y": [0, 1] * 50, "p": np.linspace(0.01, 0.99, 100),
                       "channel": ["branch", "branch", "online", "online"] * 25})
    rep = assay.evaluate(df, label="y", score="p", slices=["channel"], metrics=["roc_auc"])
    with mlflow.start_run() as run:
        assert amlflow.log(rep) == run.info.run_id
    logged = store.get_run(run.info.run_id).data.metrics
    assert logged["eval/slice/channel_branch-377f52e6/roc_auc"] == _row(
        rep, "channel=branch")["roc_auc"]
    assert "eval/roc_auc_lo" not in logged  # no intervals without bootstrap


def test_comparison_logs_the_reference_metrics_and_the_deltas(store, comparison, tmp_path):
    run_id = amlflow.log(comparison, prefix="cmp")
    logged = store.get_run(run_id).data.metrics
    assert all(_valid(k) for k in logged)
    ref = comparison.reports["old"]
    assert logged["cmp/roc_auc"] == _row(ref, "overall")["roc_auc"]
    assert logged["cmp/roc_auc_hi"] == _row(ref, "overall")["roc_auc_hi"]
    model = safe_name("new model")
    assert model.startswith("new_model-")
    rows = comparison.table.filter(pl.col("model") == "new model")
    assert len(rows) == 2 * 4  # (overall + 3 channels) x 2 metrics
    for r in rows.iter_rows(named=True):
        where = "" if r["slice"] == "overall" else f"slice/{safe_name(r['slice'])}/"
        for col, suffix in (("delta", ""), ("delta_lo", "_lo"), ("delta_hi", "_hi")):
            assert logged[f"cmp/delta/{model}/{where}{r['metric']}{suffix}"] == r[col]
    partner = rows.filter((pl.col("slice") == "channel=partner")
                          & (pl.col("metric") == "roc_auc")).row(0, named=True)
    assert partner["delta_hi"] < 0  # the candidate's broken channel is visible in MLflow
    assert len([k for k in logged if k.startswith("cmp/delta/")]) == 3 * len(rows)

    files = {f.path for f in store.list_artifacts(run_id, "cmp")}
    assert {"cmp/slices.json", "cmp/comparison.json"} <= files
    table = json.loads(_download(store, run_id, "cmp/comparison.json", tmp_path).read_text())
    assert table["columns"] == comparison.table.columns
    assert len(table["data"]) == len(comparison.table)
    if getattr(comparison, "provenance", None) is not None:
        params = store.get_run(run_id).data.params
        assert json.loads(params["cmp/spec/scores"]) == [["old", "p_old"], ["new model", "p_new"]]
        assert params["cmp/spec/reference"] == "old"
        assert "cmp/provenance.json" in files
    if hasattr(comparison, "save"):
        assert "cmp/comparison.assay.parquet" in files
        back = assay.load(_download(store, run_id, "cmp/comparison.assay.parquet", tmp_path))
        assert back.table.equals(comparison.table)
    if hasattr(comparison, "to_html"):
        assert "cmp/comparison.html" in files


# ---- artifacts ------------------------------------------------------------------------------

def test_slice_table_round_trips_with_nulls_and_types(store, report, tmp_path):
    run_id = amlflow.log(report, prefix="eval")
    path = _download(store, run_id, "eval/slices.json", tmp_path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    expected = report.to_dict()
    assert doc["columns"] == list(expected)
    got = {c: [row[i] for row in doc["data"]] for i, c in enumerate(doc["columns"])}
    for c, want in expected.items():
        assert len(got[c]) == len(want), c
        for a, b in zip(got[c], want, strict=True):
            if isinstance(b, float):  # pandas writes 10 decimals
                assert a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-10), c
            else:  # strings (unicode and markup intact), ints (not 2.0), nulls (None)
                assert a == b and type(a) is type(b), (c, a, b)
    assert got["tier"].count(None) > 0 and got["n"][0] == 6000
    assert "channel=Zürich" in got["slice"] and "channel=</table><script>" in got["slice"]
    # MLflow's own reader, as docs/mlflow.md says.
    frame = mlflow.load_table("eval/slices.json", run_ids=[run_id])
    assert frame["slice"].tolist() == expected["slice"]
    tags = store.get_run(run_id).data.tags
    assert {"path": "eval/slices.json", "type": "table"} in json.loads(
        tags["mlflow.loggedArtifacts"])


def test_table_types_json_cannot_hold_are_written_as_text(store, tmp_path):
    import datetime
    import decimal

    import pyarrow as pa

    table = pa.table({
        "i": pa.array([1, None, 3], pa.int64()),
        "u": pa.array([2**63 + 1, 0, None], pa.uint64()),
        "b": pa.array([True, None, False]),
        "f": pa.array([0.5, None, float("nan")]),
        "d": pa.array(["x", None, "x"]).dictionary_encode(),
        "day": pa.array([datetime.date(2024, 2, 29), None, datetime.date(1970, 1, 1)]),
        "dec": pa.array([decimal.Decimal("1.50"), None, decimal.Decimal("-2")],
                        pa.decimal128(5, 2)),
        "s": pa.array(["ü<&>", None, ""]),
    })
    with mlflow.start_run() as run:
        store.log_table(run.info.run_id, amlflow._pandas(table), "t.json")
    doc = json.loads(_download(store, run.info.run_id, "t.json", tmp_path).read_text("utf-8"))
    assert doc["columns"] == table.column_names
    assert [dict(zip(doc["columns"], r, strict=True)) for r in doc["data"]] == [
        {"i": 1, "u": 2**63 + 1, "b": True, "f": 0.5, "d": "x", "day": "2024-02-29",
         "dec": "1.50", "s": "ü<&>"},
        {"i": None, "u": 0, "b": None, "f": None, "d": None, "day": None, "dec": None,
         "s": None},
        {"i": 3, "u": None, "b": False, "f": None, "d": "x", "day": "1970-01-01",
         "dec": "-2.00", "s": ""},
    ]


def test_params_tags_and_artifacts(store, report, tmp_path):
    if not hasattr(report, "provenance"):
        pytest.skip("Report.provenance is not there yet")
    run_id = amlflow.log(report, prefix="eval")
    run = store.get_run(run_id)
    spec = report.provenance.to_dict()["spec"]
    params = run.data.params
    assert params["eval/spec/label"] == "y"
    assert params["eval/spec/bootstrap"] == "50"
    assert params["eval/spec/ci"] == "0.95"
    assert json.loads(params["eval/spec/slices"]) == spec["slices"]
    assert json.loads(params["eval/spec/metrics"]) == ["roc_auc", "log_loss", "accuracy"]
    assert all(len(v) <= 500 for v in params.values())
    assert set(params) == {f"eval/spec/{k}" for k, v in spec.items() if v is not None}
    assert run.data.tags["assay.version"] == assay.__version__
    commit = report.provenance.to_dict()["git_commit"]
    assert run.data.tags.get("assay.git_commit") == commit

    files = {f.path for f in store.list_artifacts(run_id, "eval")}
    assert {"eval/slices.json", "eval/spec.json", "eval/provenance.json"} <= files
    saved = json.loads(_download(store, run_id, "eval/spec.json", tmp_path).read_text())
    assert assay.Spec.from_dict(saved).to_dict() == spec
    prov = json.loads(_download(store, run_id, "eval/provenance.json", tmp_path).read_text())
    assert prov == json.loads(json.dumps(report.provenance.to_dict()))
    if hasattr(report, "save"):
        assert "eval/report.assay.parquet" in files
        back = assay.load(_download(store, run_id, "eval/report.assay.parquet", tmp_path))
        assert back.table.equals(report.table)
    if hasattr(report, "to_html"):
        assert "eval/report.html" in files
        html = _download(store, run_id, "eval/report.html", tmp_path).read_text("utf-8")
        assert "roc_auc" in html and "channel=</table><script>" not in html  # escaped


def test_save_and_html_are_logged_when_the_result_can_write_them(store, report, tmp_path):
    for name in ("save", "to_html"):
        if not hasattr(assay.Report, name):
            pytest.skip(f"Report.{name} is not there yet")
    run_id = amlflow.log(report, prefix="eval")
    files = {f.path: f for f in store.list_artifacts(run_id, "eval")}
    assert files["eval/report.assay.parquet"].file_size > 0
    assert files["eval/report.html"].file_size > 0


def test_long_params_are_cut_and_the_spec_file_is_whole():
    params = amlflow._params({"format": 1, "label": "y", "weight": None,
                              "metrics": [f"metric_{i}" for i in range(100)]}, "eval")
    assert params["eval/spec/format"] == "1" and params["eval/spec/label"] == "y"
    assert "eval/spec/weight" not in params
    assert len(params["eval/spec/metrics"]) == 500
    assert params["eval/spec/metrics"].endswith("...")


# ---- arguments and guards -------------------------------------------------------------------

def test_one_call_per_prefix_and_run(store, report):
    with mlflow.start_run() as run:
        amlflow.log(report, prefix="val")
        amlflow.log(report, prefix="test/fold_1")
        before = store.get_run(run.info.run_id).data.metrics
        with pytest.raises(InvalidArgumentError, match="another prefix"):
            amlflow.log(report, prefix="val")
    after = store.get_run(run.info.run_id).data
    assert after.metrics == before
    assert "val/roc_auc" in before and "test/fold_1/roc_auc" in before
    files = {f.path for f in store.list_artifacts(run.info.run_id, "test/fold_1")}
    assert "test/fold_1/slices.json" in files


def test_a_prefix_inside_anothers_names_is_refused(store, report):
    with mlflow.start_run() as run:
        amlflow.log(report, prefix="eval", artifacts=False)
        with pytest.raises(InvalidArgumentError, match="both a metric and a folder"):
            amlflow.log(report, prefix="eval/roc_auc", artifacts=False)
        amlflow.log(report, prefix="eval2", artifacts=False)
    assert "eval2/roc_auc" in store.get_run(run.info.run_id).data.metrics


def test_run_id_no_active_run_and_options(store, report):
    other = store.create_run(store.get_experiment_by_name("Default").experiment_id)
    assert amlflow.log(report, run_id=other.info.run_id, slices=False,
                       artifacts=False) == other.info.run_id
    assert mlflow.active_run() is None
    data = store.get_run(other.info.run_id).data
    assert data.metrics and all(k.count("/") == 1 for k in data.metrics)  # overall only
    assert store.list_artifacts(other.info.run_id) == []

    run_id = amlflow.log(report, prefix="")  # no active run: one is started, as MLflow does
    assert mlflow.active_run().info.run_id == run_id
    logged = store.get_run(run_id).data.metrics
    assert "roc_auc" in logged and f"slice/{safe_name('tier=2')}/roc_auc" in logged
    assert {"slices.json"} <= {f.path for f in store.list_artifacts(run_id)}


def test_max_slices_keeps_the_largest_and_warns(report):
    with pytest.warns(UserWarning, match="the metrics of the 3 largest"):
        m = amlflow.metrics(report, "eval", max_slices=3)
    slices = report.table.filter(pl.col("slice") != "overall").unique("slice", keep="first",
                                                                      maintain_order=True)
    largest = slices.sort("n", descending=True, maintain_order=True)["slice"][:3].to_list()
    logged = {k.split("/")[2] for k in m if k.startswith("eval/slice/")}
    assert logged == {safe_name(s) for s in largest}
    assert len(amlflow.metrics(report, "eval", max_slices=None)) > len(m)
    assert len(amlflow.metrics(report, "eval", slices=False)) == 1 + 3 * 3


def test_log_warns_about_left_out_slices_at_the_callers_line(store, report):
    with pytest.warns(UserWarning, match="the metrics of the 2 largest") as record:
        run_id = amlflow.log(report, max_slices=2, artifacts=False)
    assert record[0].filename == __file__
    slices = {k.split("/")[2] for k in store.get_run(run_id).data.metrics if "/slice/" in k}
    assert len(slices) == 2


def test_thousands_of_metrics_are_logged_in_batches(store):
    rng = np.random.default_rng(3)
    rows = 40_000
    y = rng.integers(0, 2, rows)
    df = pl.DataFrame({"y": y, "p": np.clip(0.3 * y + 0.7 * rng.random(rows), 0, 1),
                       "shop": rng.integers(0, 300, rows)})
    rep = assay.evaluate(df, label="y", score="p", slices=["shop"],
                         metrics=["roc_auc", "accuracy"], bootstrap=20, seed=0)
    run_id = amlflow.log(rep, max_slices=None, artifacts=False)
    logged = store.get_run(run_id).data.metrics
    assert len(logged) == 7 * 301 > 1000
    assert logged[f"eval/slice/{safe_name('shop=299')}/accuracy_hi"] == _row(
        rep, "shop=299")["accuracy_hi"]


@pytest.mark.parametrize("prefix", ["a b", "eval/", "/eval", "a//b", "..", "eval/./x", "é", 3])
def test_invalid_prefix(report, prefix):
    with pytest.raises(InvalidArgumentError, match="prefix"):
        amlflow.metrics(report, prefix)


def test_invalid_arguments(report):
    with pytest.raises(InvalidArgumentError, match="Report or an assay.Comparison"):
        amlflow.metrics(report.table)
    with pytest.raises(InvalidArgumentError, match="max_slices"):
        amlflow.metrics(report, max_slices=-1)
    with pytest.raises(InvalidArgumentError, match="longer than"):
        amlflow.metrics(report, "p" * 200)
    with pytest.raises(InvalidArgumentError, match="run_id"):
        amlflow.log(report, run_id=5)


# ---- imports --------------------------------------------------------------------------------

def test_missing_mlflow_says_what_to_install(monkeypatch, report):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(ImportError, match=re.escape('pip install "assay[mlflow]"')):
        amlflow.log(report)
    assert amlflow.metrics(report)  # the names need no MLflow


def test_missing_pandas_fails_before_logging(monkeypatch, store, report):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with mlflow.start_run() as run:
        with pytest.raises(ImportError, match="artifacts=False"):
            amlflow.log(report)
    assert store.get_run(run.info.run_id).data.metrics == {}


def test_assay_mlflow_does_not_shadow_mlflow():
    real = importlib.import_module("mlflow")
    assert real is mlflow and real is not amlflow
    assert hasattr(real, "start_run") and not hasattr(amlflow, "start_run")
    assert Path(real.__file__).parent.name == "mlflow"
    assert amlflow._mlflow() is real
    assert assay.mlflow is amlflow and sys.modules["mlflow"] is real


# ---- docs -----------------------------------------------------------------------------------

def test_docstring_examples_run():
    result = doctest.testmod(amlflow, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_docs_example_runs(store, capsys):
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)[0]
    exec(compile(code, str(DOC), "exec"), {})
    value, lo, hi = map(float, capsys.readouterr().out.split())
    assert lo <= value <= hi


def test_readme_section_runs_as_written(store, tmp_path, monkeypatch):
    readme = (DOC.parents[1] / "README.md").read_text(encoding="utf-8")
    start = readme.find("\n### Log to MLflow\n")
    if start < 0:
        pytest.skip("README has no 'Log to MLflow' section yet")
    end = re.compile(r"\n#{2,3} ").search(readme, start + 1)
    code = re.findall(r"```python\n(.*?)```", readme[start:end.start() if end else None], re.S)
    assert code
    monkeypatch.chdir(tmp_path)
    ns: dict[str, object] = {}
    for block in code:
        exec(compile(block, "README.md", "exec"), ns)
    runs = mlflow.search_runs(output_format="list", search_all_experiments=True)
    assert runs and "eval/roc_auc" in runs[0].data.metrics


def test_docs_name_table_matches_safe_name():
    text = DOC.read_text(encoding="utf-8")
    for label, part in re.findall(r"^\| `([^`]+)` \| `([^`]+-[0-9a-f]{8})` \|$", text, re.M):
        assert safe_name(label) == part
    assert "channel_branch-377f52e6" in amlflow.__doc__
    assert "eval/slice/channel_branch-377f52e6/roc_auc" in text
    assert posixpath.normpath("eval/slice/channel_branch-377f52e6/roc_auc") == \
        "eval/slice/channel_branch-377f52e6/roc_auc"
