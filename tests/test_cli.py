"""The command line as users run it: ``python -m assay`` (and the installed ``assay`` console
script) in a subprocess: compare with a gate and its exit codes, discovery, reliability,
``--where``, directories and globs, JSON metadata, ``--version``, and the exit codes of usage and
data errors."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import assay
from assay.demo import make_comparison_data

MODELS = ["--score", "prod=p_old", "--score", "cand=p_new"]


def run(*argv, cwd, script: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ASSAY_ALLOW_DEBUG_BUILD": "1"}
    cmd = (script or [sys.executable, "-m", "assay"]) + [str(a) for a in argv]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert "Traceback" not in p.stderr, p.stderr
    return p


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    t = make_comparison_data(20_000, seed=0)
    pq.write_table(t, d / "cmp.parquet")
    # The same rows as a Hive tree by channel, for directories and globs.
    for ch in ("web", "app", "partner"):
        part = t.filter(pa.compute.equal(t["channel"], ch)).drop_columns(["channel"])
        (d / "tree" / f"channel={ch}").mkdir(parents=True)
        pq.write_table(part, d / "tree" / f"channel={ch}" / "part-0.parquet")
    return d


def test_version_and_module_entry_point(data_dir):
    p = run("--version", cwd=data_dir)
    assert p.returncode == 0 and p.stdout.strip() == f"assay {assay.__version__}"
    p = run("--help", cwd=data_dir)
    for command in ("evaluate", "compare", "reliability", "discover", "discover-regressions",
                    "finalize", "run"):
        assert command in p.stdout
    assert "1 regression detected" in p.stdout and "3 data" in p.stdout


def test_compare_gate_exit_codes(data_dir):
    gate = ["--slice", "channel", "--metrics", "log_loss", "--bootstrap", "100",
            "--gate", "log_loss", "--margin", "0.01"]
    p = run("compare", "cmp.parquet", "--label", "churned", *MODELS, *gate, "--format", "csv",
            cwd=data_dir)
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith("assay: regression: ") and "simultaneous" in p.stderr
    table = pl.read_csv(io.StringIO(p.stdout))
    assert table.filter(pl.col("slice") == "channel=partner")["status"][0] == "worse"
    # The candidate is fine everywhere but on partner rows: the gate passes without them.
    p = run("compare", "cmp.parquet", "--label", "churned", *MODELS, *gate, "--where",
            "channel <> 'partner'", "--format", "csv", cwd=data_dir)
    assert p.returncode == 0, p.stderr
    table = pl.read_csv(io.StringIO(p.stdout))
    assert set(table["status"]) == {"not worse"} and "channel=partner" not in table["slice"]


def test_compare_table_json_has_the_run_metadata(data_dir):
    p = run("compare", "tree", "--label", "churned", *MODELS, "--slice", "channel",
            "--metrics", "roc_auc", "--bootstrap", "50", "--format", "json", cwd=data_dir)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["assay_version"] == assay.__version__
    assert out["arguments"][:2] == ["compare", "tree"]
    assert out["input"]["path"] == "tree"
    assert out["input"]["fingerprint"].startswith("sha256:")
    # The same rows from the file: the same numbers (the Hive key is the slice column).
    ref = assay.compare(str(data_dir / "cmp.parquet"), label="churned",
                        scores={"prod": "p_old", "cand": "p_new"}, slices=["channel"],
                        metrics=["roc_auc"], bootstrap=50)
    got = {(r["slice"], r["metric"]): r["delta"] for r in out["rows"]}
    for r in ref.table.iter_rows(named=True):
        assert got[(r["slice"], r["metric"])] == pytest.approx(r["delta"], rel=1e-12)
    # A second run on the same files has the same fingerprint; touching a file changes it.
    again = json.loads(run("compare", "tree", "--label", "churned", *MODELS, "--metrics",
                           "roc_auc", "--bootstrap", "20", "--format", "json",
                           cwd=data_dir).stdout)
    assert again["input"]["fingerprint"] == out["input"]["fingerprint"]


def test_discovery_and_reliability_commands(data_dir):
    p = run("discover-regressions", "tree/*/*.parquet", "--label", "churned", *MODELS,
            "--feature", "country,device", "--feature", "channel", "--format", "csv",
            cwd=data_dir)
    assert p.returncode == 0, p.stderr
    found = pl.read_csv(io.StringIO(p.stdout))
    assert found["slice"][0] == "channel=partner" and found["significant"][0]
    p = run("discover", "cmp.parquet", "--label", "churned", "--score", "p_new", "--feature",
            "country,device,channel", "--k", "3", "--min-support", "500", "--format", "json",
            cwd=data_dir)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)["rows"]
    assert rows[0]["slice"] == "channel=partner" and rows[0]["size"] >= 500
    p = run("reliability", "cmp.parquet", "--label", "churned", "--score", "p_old",
            "--n-bins", "4", "--slice", "channel", "--format", "csv", cwd=data_dir)
    assert p.returncode == 0, p.stderr
    rel = pl.read_csv(io.StringIO(p.stdout))
    assert rel.filter(pl.col("slice") == "overall")["count"].sum() == 20_000


@pytest.mark.parametrize("argv, code, words", [
    (["compare", "cmp.parquet", "--label", "churned", "--score", "p_old"], 2,
     "at least two --score"),
    (["evaluate", "cmp.parquet", "--label", "churned", "--score", "p_new", "--where",
      "channel = (("], 2, "not a SQL predicate"),
    (["evaluate", "cmp.parquet", "--label", "churned", "--score", "p_new", "--where",
      "nope > 1"], 2, "nope"),
    (["evaluate", "cmp.parquet", "--label", "nope", "--score", "p_new"], 2, "nope"),
    (["discover", "cmp.parquet", "--label", "churned", "--score", "p_new"], 2,
     "at least one --feature"),
    (["compare", "cmp.parquet", "--label", "churned", *MODELS, "--margin", "0.1"], 2,
     "--margin applies to a --gate"),
    (["evaluate", "nan.parquet", "--label", "y", "--score", "p"], 3, "NaN"),
    (["evaluate", "corrupt.parquet", "--label", "y", "--score", "p"], 3, "corrupt"),
])
def test_usage_and_data_errors(data_dir, argv, code, words):
    pq.write_table(pa.table({"y": [0, 1, 1], "p": [0.2, np.nan, 0.7]}), data_dir / "nan.parquet")
    (data_dir / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    p = run(*argv, cwd=data_dir)
    assert p.returncode == code, (p.returncode, p.stderr)
    assert "assay: error: " in p.stderr and words in p.stderr, p.stderr


def test_the_installed_console_script(data_dir):
    script = shutil.which("assay")
    if script is None:
        pytest.skip("no assay console script on PATH (pip install . puts one there)")
    probe = run("compare", "--help", cwd=data_dir, script=[script])
    if "--gate" not in probe.stdout:
        pytest.skip(f"{script} belongs to another (older) install of assay")
    p = run("compare", "cmp.parquet", "--label", "churned", *MODELS, "--slice", "channel",
            "--metrics", "log_loss", "--bootstrap", "50", "--gate", "log_loss",
            cwd=data_dir, script=[script])
    assert p.returncode == 1 and "assay: regression: " in p.stderr


def test_a_gate_on_a_metric_outside_the_defaults_and_formats_checked_first(data_dir):
    # ece is computed only when named: the gate adds it to the default metrics.
    p = run("compare", "cmp.parquet", "--label", "churned", *MODELS, "--bootstrap", "30",
            "--gate", "ece", "--margin", "1", "--format", "csv", cwd=data_dir)
    assert p.returncode == 0, p.stderr
    assert set(pl.read_csv(io.StringIO(p.stdout))["metric"]) == {"ece"}
    # A parquet output without -o is refused before the (long) job runs.
    for command in (["compare", *MODELS, "--gate", "log_loss"],
                    ["reliability", "--score", "p_old"],
                    ["discover", "--score", "p_old", "--feature", "country"]):
        p = run(command[0], "cmp.parquet", "--label", "churned", *command[1:], "--format",
                "parquet", cwd=data_dir)
        assert p.returncode == 2 and "--format parquet needs --out" in p.stderr, p.stderr


# ----------------------------------------------------------------------------------------------
# assay run JOB.toml: a whole job in a file, for schedulers

GATE_JOB = """\
# The nightly gate: the candidate may not be worse than prod on log loss in any channel.
command = "compare"
data = "../tree"
label = "churned"
scores = { prod = "p_old", cand = "p_new" }
slices = ["channel", ["country", "device"]]
metrics = ["log_loss"]
bootstrap = 100
gate = ["log_loss"]
margin = 0.01
format = "json"
out = "gate.json"
"""


def test_a_job_file_runs_its_command_from_any_directory(data_dir, tmp_path):
    jobs = data_dir / "jobs"
    jobs.mkdir(exist_ok=True)
    (jobs / "gate.toml").write_text(GATE_JOB)
    # Run from elsewhere: data and out are relative to the job file.
    p = run("run", jobs / "gate.toml", cwd=tmp_path)
    assert p.returncode == 1 and p.stderr.startswith("assay: regression: "), p.stderr
    out = json.loads((jobs / "gate.json").read_text())
    assert out["job"]["path"] == str(jobs / "gate.toml")
    assert out["job"]["sha256"].startswith("sha256:")
    assert out["arguments"][:2] == ["compare", str(data_dir / "tree")]
    import hashlib

    assert out["job"]["sha256"] == "sha256:" + hashlib.sha256(
        (jobs / "gate.toml").read_bytes()).hexdigest()
    # The same table as the command line it stands for, which --dry-run prints.
    dry = run("run", jobs / "gate.toml", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and dry.stdout.startswith("assay compare ")
    import shlex

    argv = [f"--out={tmp_path / 'direct.json'}" if a.startswith("--out=") else a
            for a in shlex.split(dry.stdout)[1:]]
    assert run(*argv, cwd=tmp_path).returncode == 1
    direct = json.loads((tmp_path / "direct.json").read_text())
    assert direct["rows"] == out["rows"]
    # Without the partner rows the gate passes.
    (jobs / "pass.toml").write_text(GATE_JOB.replace(
        'out = "gate.json"', 'out = "pass.json"\nwhere = "channel <> \'partner\'"'))
    assert run("run", jobs / "pass.toml", cwd=tmp_path).returncode == 0


def test_job_files_for_every_command(data_dir):
    jobs = data_dir / "jobs"
    jobs.mkdir(exist_ok=True)
    common = 'data = ["../cmp.parquet"]\nlabel = "churned"\nformat = "csv"\n'
    bodies = {
        "evaluate": 'score = "p_new"\nslices = ["channel"]\nbins = { p_old = [0, 0.3, 0.6, 1] }\n'
                    'metrics = ["roc_auc", "accuracy"]\nout = "e.csv"',
        "reliability": 'score = "p_old"\nn_bins = 4\nslices = ["channel"]\nout = "r.csv"',
        "discover": 'score = "p_new"\nfeatures = ["country", "device", "channel"]\nk = 3\n'
                    'min_support = 500\nout = "d.csv"',
        "discover-regressions": 'scores = { prod = "p_old", cand = "p_new" }\n'
                                'features = ["channel", "device"]\nout = "dr.csv"',
    }
    for command, body in bodies.items():
        (jobs / f"{command}.toml").write_text(f'command = "{command}"\n{common}{body}\n')
        p = run("run", jobs / f"{command}.toml", cwd=data_dir)
        assert p.returncode == 0, (command, p.stderr)
    e = pl.read_csv(jobs / "e.csv")
    ref = assay.evaluate(str(data_dir / "cmp.parquet"), label="churned", score="p_new",
                         slices=["channel", assay.bins("p_old", edges=[0, 0.3, 0.6, 1])],
                         metrics=["roc_auc", "accuracy"]).table
    assert e["slice"].to_list() == ref["slice"].to_list()
    assert np.allclose(e["roc_auc"].to_numpy(), ref["roc_auc"].to_numpy(), rtol=1e-12)
    assert pl.read_csv(jobs / "r.csv").filter(pl.col("slice") == "overall")["count"].sum() \
        == 20_000
    assert pl.read_csv(jobs / "d.csv")["slice"][0] == "channel=partner"
    assert pl.read_csv(jobs / "dr.csv")["slice"][0] == "channel=partner"


@pytest.mark.parametrize("body, words", [
    ('command = "compare"\ndata = "x.parquet"\nbootstrapp = 3', "unknown key 'bootstrapp'"),
    ('command = "discover"\ndata = "x.parquet"\nslices = ["a"]', "unknown key 'slices' for "
                                                               "command discover"),
    ('command = "evaluate"\ndata = "x.parquet"\nbootstrap = true', "bootstrap must be a string"),
    ('command = "evaluate"\ndata = "x.parquet"\nslices = "a"', "slices must be a list"),
    ('command = "evaluate"\ndata = "x.parquet"\nbins = [3]', "bins must be a table"),
    ('command = "compare"\ndata = "x.parquet"\nscores = ["a"]', "scores must be a table"),
    ('command = "evaluat"\ndata = "x.parquet"', "command must be one of"),
    ('command = "evaluate"', "data (a path"),
    ('command = "evaluate', "is not valid TOML"),
    ('command = "finalize"\ndata = "x"', "command must be one of"),
    ('command = "evaluate"\ndata = "x"\nbins = { age = [18] }', "at least two numbers"),
    ('command = "evaluate"\ndata = "x"\nbins = { age = 2.5 }', "a number of bins or a list"),
    ('command = "evaluate"\ndata = "x"\nslices = ["a,b"]', "holds a comma"),
    ('command = "compare"\ndata = "x"\nscores = { "a=b" = "p" }', "cannot hold '='"),
])
def test_bad_job_files_are_usage_errors(data_dir, body, words):
    (data_dir / "bad.toml").write_text(body)
    p = run("run", "bad.toml", cwd=data_dir)
    assert p.returncode == 2 and "assay: error: " in p.stderr and words in p.stderr, p.stderr
    p = run("run", "missing.toml", cwd=data_dir)
    assert p.returncode == 2 and "cannot read the job file" in p.stderr


def test_several_paths_on_the_command_line(data_dir):
    parts = [f"tree/channel={ch}/part-0.parquet" for ch in ("web", "app")]
    p = run("evaluate", *parts, "--label", "churned", "--score", "p_new", "--metrics",
            "accuracy", "--format", "json", cwd=data_dir)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    web_app = assay.evaluate([str(data_dir / x) for x in parts], label="churned",
                             score="p_new", metrics=["accuracy"]).table
    assert out["rows"][0]["n"] == web_app["n"][0] < 20_000
    assert out["input"]["path"] == parts and out["input"]["fingerprint"].startswith("sha256:")


def test_job_values_are_values_not_options(data_dir, tmp_path):
    """A value that starts with '-' is a value (a column named "-p"); the job's metadata is
    that run's only; a usage error of the job's options says where they came from."""
    t = pa.table({"y": [0, 1, 1, 0], "-p": [0.2, 0.7, 0.6, 0.1]})
    pq.write_table(t, tmp_path / "dash.parquet")
    (tmp_path / "dash.toml").write_text('command = "evaluate"\ndata = "dash.parquet"\n'
                                        'label = "y"\nscore = "-p"\nmetrics = ["accuracy"]\n'
                                        'format = "json"\nout = "dash.json"\n')
    p = run("run", "dash.toml", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "dash.json").read_text())["rows"][0]["accuracy"] == 1.0
    from assay.cli import main

    assert main(["run", str(tmp_path / "dash.toml")]) == 0
    assert main(["evaluate", str(tmp_path / "dash.parquet"), "--label", "y", "--score=-p",
                 "--format", "json", "-o", str(tmp_path / "plain.json")]) == 0
    assert "job" not in json.loads((tmp_path / "plain.json").read_text())
    (tmp_path / "bad.toml").write_text('command = "evaluate"\ndata = "dash.parquet"\n'
                                       'label = "y"\nscore = "-p"\nmin_slice_size = 2.5\n')
    p = run("run", "bad.toml", cwd=tmp_path)
    assert p.returncode == 2 and "came from the job file 'bad.toml'" in p.stderr, p.stderr
