"""The command-line pair of issue 13: ``assay evaluate ... --save-state FILE`` per shard, then
``assay finalize STATE... [-o OUT]``."""

from __future__ import annotations

import json
import math

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import assay
from assay.cli import main
from assay.demo import make_data

ROWS = 3000
SHARDS = [(0, 1000), (1000, 2200), (2200, 3000)]
OPTS = ["--label", "churned", "--score", "p_churn", "--slice", "country",
        "--slice", "country,device", "--bins", "age:18,30,45,65"]
KW = dict(label="churned", score="p_churn",
          slices=["country", ("country", "device"), assay.bins("age", edges=[18, 30, 45, 65])])


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    table = make_data(ROWS, seed=3)
    paths = []
    for k, (a, b) in enumerate(SHARDS):
        p = d / f"part-{k}.parquet"
        pq.write_table(table.slice(a, b - a), p)
        paths.append(str(p))
    return table, paths


def _save(paths, tmp_path, capsys, *extra, offsets=True):
    states = []
    for k, (path, (a, _)) in enumerate(zip(paths, SHARDS, strict=True)):
        out = tmp_path / f"part-{k:04d}.assay"
        args = ["evaluate", path, *OPTS, *extra, "--save-state", str(out)]
        if offsets:
            args += ["--row-offset", str(a)]
        assert main(args) == 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{SHARDS[k][1] - a:,} rows" in err[0] and "bytes" in err[0]
        states.append(str(out))
    return states


def _close_frames(got: pl.DataFrame, want: pl.DataFrame) -> None:
    assert got.columns == want.columns and got.height == want.height
    for c in want.columns:
        g, w = got[c].to_list(), want[c].to_list()
        if want[c].dtype == pl.Float64:
            assert all((x is None and y is None) or math.isclose(x, y, rel_tol=1e-12,
                                                                  abs_tol=1e-12)
                       for x, y in zip(g, w, strict=True)), c
        else:
            assert g == w, c


@pytest.mark.parametrize("extra, kw", [
    ((), {}),
    (("--bootstrap", "30", "--seed", "4", "--metrics", "accuracy,roc_auc,brier"),
     dict(bootstrap=30, seed=4, metrics=["accuracy", "roc_auc", "brier"])),
    (("--auc", "binned", "--auc-bins", "128", "--metrics", "roc_auc,ece"),
     dict(auc="binned", auc_bins=128, metrics=["roc_auc", "ece"])),
])
def test_save_state_then_finalize_equals_evaluate_on_the_whole_file(shards, tmp_path, capsys,
                                                                    extra, kw):
    table, paths = shards
    states = _save(paths, tmp_path, capsys, *extra)
    want = assay.evaluate(table, **KW, **kw).table
    out = tmp_path / "report.parquet"
    assert main(["finalize", *states, "-o", str(out)]) == 0
    _close_frames(pl.read_parquet(out), want)
    # The order of the files does not matter.
    out2 = tmp_path / "report2.parquet"
    assert main(["finalize", *reversed(states), "-o", str(out2)]) == 0
    assert pl.read_parquet(out2).equals(pl.read_parquet(out))


def test_finalize_writes_csv_json_and_a_table(shards, tmp_path, capsys):
    table, paths = shards
    states = _save(paths, tmp_path, capsys)
    want = assay.evaluate(table, **KW)
    csv_out, json_out = tmp_path / "r.csv", tmp_path / "r.JSON"
    assert main(["finalize", *states, "-o", str(csv_out)]) == 0
    assert csv_out.read_text().startswith("slice,spec,country,device,age,age_lower,age_upper,n,")
    assert pl.read_csv(csv_out)["slice"].to_list() == want.table["slice"].to_list()
    assert main(["finalize", *states, "-o", str(json_out)]) == 0
    doc = json.loads(json_out.read_text())
    assert [r["slice"] for r in doc["rows"]] == want.table["slice"].to_list()
    capsys.readouterr()
    assert main(["finalize", *states]) == 0
    out = capsys.readouterr().out  # the table of `assay evaluate` (long labels wrap)
    assert "overall" in out and "NG" in out and "roc_au" in out


def test_a_state_of_one_file_finalizes_like_evaluate(shards, tmp_path, capsys):
    table, paths = shards
    whole = tmp_path / "whole.parquet"
    pq.write_table(table, whole)
    state = tmp_path / "whole.assay"
    assert main(["evaluate", str(whole), *OPTS, "--save-state", str(state)]) == 0
    capsys.readouterr()
    blob = assay.PartialState.from_bytes(state.read_bytes())
    assert blob.rows == ROWS and blob.row_ranges == [(0, ROWS)]
    assert blob.spec == assay.Spec(**KW)
    _close_frames(blob.finalize().table, assay.evaluate(table, **KW).table)


def _err(capsys) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("assay: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_usage_errors_exit_2(shards, tmp_path, capsys):
    _, paths = shards
    state = _save(paths, tmp_path, capsys)[0]
    cases = [
        (["finalize"], "at least one state"),
        (["finalize", state, "-o", str(tmp_path / "r.xlsx")], ".parquet"),
        (["finalize", state, "-o", str(tmp_path / "no" / "dir" / "r.csv")], "does not exist"),
        (["evaluate", paths[0], *OPTS[:4], "--bins", "age:4", "--save-state",
          str(tmp_path / "s.assay")], "explicit edges"),
        (["evaluate", paths[0], *OPTS, "--row-offset", "5"], "--save-state"),
        (["evaluate", paths[0], *OPTS, "--save-state", str(tmp_path / "s.assay"), "-o",
          str(tmp_path / "r.csv")], "--out"),
        (["evaluate", paths[0], *OPTS, "--save-state", str(tmp_path / "s.assay"), "--format",
          "json"], "--format"),
        (["evaluate", paths[0], *OPTS, "--save-state", str(tmp_path / "nodir" / "s.assay")],
         "does not exist"),
        (["evaluate", paths[0], *OPTS[:4], "--bins", "age:18,x,30"], "--bins"),
        (["evaluate", paths[0], *OPTS[:4], "--bins", "age:30,18"], "increasing"),
        (["evaluate", paths[0], *OPTS, "--row-id", "age"], "row_id"),
    ]
    for argv, word in cases:
        assert main(argv) == 2, argv
        assert word in _err(capsys), argv
    assert not (tmp_path / "s.assay").exists()


def test_bad_state_files_exit_1_naming_the_file(shards, tmp_path, capsys):
    _, paths = shards
    states = _save(paths, tmp_path, capsys)
    with open(states[0], "rb") as f:
        good = f.read()
    corrupt = tmp_path / "corrupt.assay"
    corrupt.write_bytes(good[:-7])
    foreign = tmp_path / "foreign.assay"
    foreign.write_bytes(b"PAR1 not a state")
    for bad, word in [(str(tmp_path / "absent.assay"), "absent.assay"),
                      (str(corrupt), "corrupt.assay"), (str(foreign), "foreign.assay"),
                      (str(tmp_path), "cannot read")]:
        assert main(["finalize", states[1], bad]) == 3
        assert word in _err(capsys)


def test_mismatched_or_overlapping_states_exit_1(shards, tmp_path, capsys):
    _, paths = shards
    states = _save(paths, tmp_path, capsys)
    other = tmp_path / "other.assay"
    assert main(["evaluate", paths[1], *OPTS, "--threshold", "0.3", "--save-state", str(other),
                 "--row-offset", "1000"]) == 0
    capsys.readouterr()
    assert main(["finalize", states[0], str(other)]) == 3
    msg = _err(capsys)
    assert "other.assay" in msg and "threshold" in msg
    # Bootstrap shards saved without --row-offset all start at row 0: refused.
    boot = [tmp_path / f"boot-{k}.assay" for k in range(2)]
    for path, out in zip(paths, boot, strict=False):
        assert main(["evaluate", path, *OPTS, "--bootstrap", "20", "--save-state",
                     str(out)]) == 0
    capsys.readouterr()
    assert main(["finalize", *map(str, boot)]) == 3
    assert "row" in _err(capsys)


def test_save_state_of_a_sketch(shards, tmp_path, capsys):
    table, paths = shards
    states = _save(paths, tmp_path, capsys, "--auc", "sketch", "--auc-max-runs", "64",
                   "--metrics", "roc_auc,accuracy")
    from pathlib import Path

    merged = assay.merge([assay.PartialState.from_bytes(Path(s).read_bytes()) for s in states])
    rep = merged.finalize()
    assert merged.spec.auc == "sketch" and merged.spec.auc_max_runs == 64
    exact = assay.evaluate(table, **KW, metrics=["roc_auc", "accuracy"])
    bound = rep.long().filter(pl.col("metric") == "roc_auc")["error_bound"][0]
    assert abs(rep.table["roc_auc"][0] - exact.table["roc_auc"][0]) <= bound + 1e-12


def test_help_lists_the_new_options(capsys):
    assert main(["evaluate", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--save-state" in out and "--row-offset" in out and "COLUMN:E1,E2" in out
    assert main(["finalize", "--help"]) == 0
    assert "-o" in capsys.readouterr().out


def test_a_parquet_written_table_round_trips_through_arrow(shards, tmp_path, capsys):
    _, paths = shards
    states = _save(paths, tmp_path, capsys)
    out = tmp_path / "r.pq"
    assert main(["finalize", *states, "-o", str(out)]) == 0
    assert isinstance(pq.read_table(out), pa.Table)
