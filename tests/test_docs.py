"""The runnable examples in the public docstrings are tests too."""

from __future__ import annotations

import doctest

import pytest

import assay
import assay._compare
import assay._evaluate
import assay._reliability
import assay._spec
import assay.calibrate
import assay.report
import assay.torch


@pytest.mark.parametrize("module", [assay._evaluate, assay._compare, assay._reliability,
                                    assay._spec, assay.calibrate, assay.report, assay.torch],
                         ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_public_functions_have_docstrings_with_examples():
    for name in ["evaluate", "bins", "fbeta", "compare", "reliability", "Spec", "merge",
                 "PartialState"]:
        doc = getattr(assay, name).__doc__
        assert doc and ">>>" in doc, name
    assert "Examples" in assay.evaluate.__doc__


def test_cli_demo_runs(capsys):
    from assay.cli import main

    assert main(["demo", "--rows", "20000"]) == 0
    out = capsys.readouterr().out
    assert "overall" in out and "country=NG" in out and "roc_auc" in out


def test_cli_evaluate_file(tmp_path, capsys):
    import json

    import pyarrow.parquet as pq

    from assay.cli import main
    from assay.demo import make_data

    path = tmp_path / "preds.parquet"
    pq.write_table(make_data(5000, seed=1), path)
    code = main([
        "evaluate", str(path), "--label", "churned", "--score", "p_churn",
        "--slice", "country", "--slice", "country,device", "--bins", "age:3",
        "--metrics", "accuracy,roc_auc", "--format", "json",
    ])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    slices = [r["slice"] for r in doc["rows"]]
    assert slices[0] == "overall"
    assert any(s.startswith("country=BR & device=") for s in slices)
    assert any(s.startswith("age=[") for s in slices)
    csv_out = tmp_path / "out.csv"
    assert main(["evaluate", str(path), "--label", "churned", "--score", "p_churn",
                 "--format", "csv", "--out", str(csv_out)]) == 0
    assert csv_out.read_text().startswith("slice,spec,n,")


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    import pyarrow.parquet as pq

    from assay.cli import main
    from assay.demo import make_data

    path = tmp_path / "preds.parquet"
    pq.write_table(make_data(100, seed=1), path)
    assert main(["evaluate", str(path), "--label", "nope", "--score", "p_churn"]) == 2
    assert "nope" in capsys.readouterr().err
