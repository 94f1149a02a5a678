"""README sections run as written: "Split jobs" (its Python blocks in order, in one namespace,
then its command-line block through ``assay.cli.main``, in a scratch directory),
"Regression", "Multiclass", "Ranking", "GPUs and torch.distributed" (with the example script it
names) and "Spark and Ray" (its Python block, in local mode)."""

from __future__ import annotations

import glob
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from assay.cli import main
from assay.demo import make_data

README = Path(__file__).resolve().parent.parent / "README.md"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n### {title}\n")
    end = re.compile(r"\n#{2,3} ").search(text, start + 1)
    return text[start:end.start() if end else len(text)]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def commands(block: str) -> Iterator[list[str]]:
    """The commands of a bash block: continuations joined, comments dropped, globs expanded
    (when the command's turn comes, after the commands before it ran)."""
    for line in block.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        if not argv:
            continue
        expanded: list[str] = []
        for a in argv:
            expanded += sorted(glob.glob(a)) if "*" in a else [a]
        yield expanded


def test_split_jobs_section_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = section("Split jobs")
    code = blocks(text, "python")
    assert len(code) >= 3
    ns: dict[str, object] = {}
    for block in code:
        exec(compile(block, str(README), "exec"), ns)
    total = ns["total"]
    assert (total.rows, total.row_ranges, total.spec == ns["spec"]) == (  # type: ignore[attr-defined]
        40000, [(0, 40000)], True)
    assert "error_bound" in ns["rep"].long().columns  # type: ignore[attr-defined]

    # The command-line pair, on the two daily files it names.
    for day in (1, 2):
        pq.write_table(make_data(10_000, seed=day), f"day-{day}.parquet")
    Path("parts").mkdir()
    (bash,) = blocks(text, "bash")
    for argv in commands(bash):
        assert argv[0] == "assay", argv
        assert main(argv[1:]) == 0, argv
    assert Path("report.parquet").exists()


def test_regression_section_runs_as_written():
    (code,) = blocks(section("Regression"), "python")
    ns: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), ns)
    rep = ns["rep"]
    table = rep.table  # type: ignore[attr-defined]
    assert table["slice"][0] == "overall" and table.height == 1 + 4 + 4
    lisbon = table.filter(table["slice"] == "city=lisbon").row(0, named=True)
    # The demo model under-predicts in Lisbon: a negative bias, and an interval around the mae.
    assert lisbon["mean_error"] < 0 and lisbon["mae_lo"] < lisbon["mae"] < lisbon["mae_hi"]


def test_multiclass_section_runs_as_written():
    (code,) = blocks(section("Multiclass"), "python")
    ns: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), ns)
    rep = ns["rep"]
    table = rep.table  # type: ignore[attr-defined]
    assert table["slice"][:3].to_list() == ["overall", "light=day", "light=night"]
    day, night = table["accuracy"][1], table["accuracy"][2]
    # The demo model is weak at night; the door camera sees no bird at night.
    assert night < day and table["accuracy_lo"][2] < night
    door_night = table.filter(table["slice"] == "camera=door & light=night")
    assert door_night["n_classes_present"][0] == 3
    assert {"precision", "recall", "f1"} <= set(rep.per_class().columns)  # type: ignore[attr-defined]
    # (Each row is counted once per slice spec: overall, light, camera x light.)
    assert rep.confusion()["count"].sum() == 100_000 * 3  # type: ignore[attr-defined]


def test_ranking_section_runs_as_written():
    (code,) = blocks(section("Ranking"), "python")
    ns: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), ns)
    table = ns["rep"].table  # type: ignore[attr-defined]
    assert table["slice"][:4].to_list() == ["overall", "market=BR", "market=DE", "market=US"]
    # The demo model is weak for new users in Brazil.
    weak = table.filter(table["slice"] == "market=BR & segment=new")["ndcg@10"][0]
    assert weak < table["ndcg@10"][0] - 0.1
    assert table["n"][0] + table["n_skipped"][0] == 20_000
    assert table["ndcg@10_lo"][0] < table["ndcg@10"][0] < table["ndcg@10_hi"][0]


def test_torch_section_runs_as_written():
    import subprocess
    import sys

    (code,) = blocks(section("GPUs and torch.distributed"), "python")
    ns: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), ns)
    got = ns["rep"].table  # type: ignore[attr-defined]
    want = ns["spec"].evaluate(ns["table"]).table  # type: ignore[attr-defined]
    assert got["slice"].to_list() == want["slice"].to_list()
    assert got["n"].to_list() == want["n"].to_list()
    for c in ("roc_auc", "roc_auc_lo", "f1_hi", "ece", "log_loss"):
        assert all(abs(a - b) <= 1e-9 for a, b in zip(got[c], want[c], strict=True)), c
    script = README.parent / "examples" / "torch_distributed.py"
    assert "python examples/torch_distributed.py" in section("GPUs and torch.distributed")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "equal to assay.evaluate on all rows: True" in run.stdout


def test_spark_and_ray_section_runs_as_written(tmp_path):
    import subprocess
    import sys

    # In a fresh process started in a scratch directory: a Spark session resolves relative
    # paths against the directory its JVM started in, so the test suite's session (started
    # elsewhere) would not find "preds.parquet".
    text = section("Spark and Ray")
    (code,) = blocks(text, "python")
    check = """
want = spec.evaluate(table).table
for got in (rep.table, rep_ray.table, part.finalize().table):
    assert got["slice"].to_list() == want["slice"].to_list()
    assert got["n"].to_list() == want["n"].to_list()
    for c in ("accuracy", "roc_auc", "roc_auc_lo", "roc_auc_hi", "ece"):
        assert all(abs(a - b) <= 1e-12 for a, b in zip(got[c], want[c], strict=True)), c
print("README Spark and Ray: equal to spec.evaluate")
"""
    script = tmp_path / "readme_spark_ray.py"
    script.write_text(code + check)
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "README Spark and Ray: equal to spec.evaluate" in run.stdout
    # The cluster commands name the real mechanisms (not run here: no cluster in CI).
    (bash,) = blocks(text, "bash")
    assert "--archives env.tar.gz#env" in bash and "runtime_env" in bash


def test_comparing_models_section_runs_as_written(capsys):
    (code,) = blocks(section("Comparing models"), "python")
    ns: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), ns)
    # The gate fails on the demo's broken channel and says which correction it used.
    assert "simultaneous" in capsys.readouterr().out
    found = ns["found"]
    assert found["slice"][0] == "channel=partner" and found["significant"][0]  # type: ignore[index]
    table = ns["cmp"].reports["cand"].disparity(  # type: ignore[attr-defined]
        "equalized_odds", spec="gender").table
    assert table["statistic"].to_list() == [
        "difference", "ratio", "difference_to_overall", "ratio_to_overall"]
    assert table["lo"].is_not_null().all()


def test_inputs_section_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (code,) = blocks(section("Inputs"), "python")
    ns: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), ns)
    table = ns["rep"].table  # type: ignore[attr-defined]
    assert table["n"][0] == 100_000
    assert "country=NG" in table["slice"].to_list()  # a Hive key as a slice
    ng = table.filter(table["slice"] == "country=NG")["n"][0]
    assert ns["ng"].table["n"][0] == ng  # type: ignore[attr-defined]


def test_command_line_job_file_runs_as_written(tmp_path, monkeypatch):
    """The job file of "Command line", verbatim, on generated data with its columns."""
    import json

    import numpy as np
    import pyarrow as pa

    from assay.demo import make_comparison_data

    monkeypatch.chdir(tmp_path)
    (toml,) = blocks(section("Command line"), "toml")
    Path("nightly.toml").write_text(toml)
    t = make_comparison_data(20_000, seed=3).rename_columns(
        ["y", *make_comparison_data(1).column_names[1:]])
    t = t.append_column("age", pa.array(np.random.default_rng(0).integers(18, 80, t.num_rows)))
    for day in range(5):
        Path(f"preds/day={day}").mkdir(parents=True)
        pq.write_table(t.slice(day * 4000, 4000), f"preds/day={day}/part-0.parquet")
    assert main(["run", "nightly.toml"]) in (0, 1)  # the gate's verdict on this data
    out = json.loads(Path("gate.json").read_text())
    assert out["job"]["path"] == str(tmp_path / "nightly.toml")
    assert out["rows"] and {r["metric"] for r in out["rows"]} == {"roc_auc", "log_loss"}
    # day >= 3: two of the five days.
    assert max(r["n"] for r in out["rows"]) == 8000


def test_results_to_keep_section_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (code,) = blocks(section("Results to keep and share"), "python")
    ns: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), ns)
    rep, same = ns["rep"], ns["same"]
    assert same.table.equals(rep.table)  # type: ignore[attr-defined]
    assert same.provenance == rep.provenance  # type: ignore[attr-defined]
    assert rep.provenance.content_hash is not None  # type: ignore[attr-defined]
    page = Path("report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "country=NG" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
