"""Progress of long passes: a line on stderr (rows of the total where known, throughput, ETA)
when asked for or when someone watches, nothing otherwise, and never a different result."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import assay
import assay._progress as progress
from assay.errors import InvalidArgumentError

KW = dict(label="y", score="p", slices=["g"], metrics=["accuracy", "roc_auc"])


@pytest.fixture
def immediate(monkeypatch):
    """Draw from the first batch (the default waits a second)."""
    monkeypatch.setattr(progress, "MIN_SECONDS", 0.0)
    monkeypatch.setattr(progress, "INTERVAL", 0.0)


def table(n: int = 300_000) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({"y": rng.integers(0, 2, n), "p": rng.random(n),
                     "g": rng.choice(["a", "b"], n)})


def test_progress_line_with_a_total(immediate, capsys):
    t = table()
    rep = assay.evaluate(t, progress=True, **KW)
    err = capsys.readouterr().err
    lines = [x.strip() for x in err.split("\r") if x.strip()]
    assert any(x.startswith("assay: 300,000/300,000 rows (100%)") for x in lines), lines
    assert lines[-1].startswith("assay: 300,000 rows read in ") and "computed in" in lines[-1]
    assert err.endswith("\n")
    assert rep.table.equals(assay.evaluate(t, progress=False, **KW).table)


def test_the_line_goes_on_while_the_metrics_are_computed(immediate, capsys, monkeypatch):
    import threading

    monkeypatch.setattr(progress, "TICK", 0.01)
    t = table(200_000).append_column("q", table(200_000)["p"])
    assay.compare(t, label="y", scores=["p", "q"], slices=["g"], bootstrap=300,
                  metrics=["roc_auc"], progress=True)
    err = capsys.readouterr().err
    assert "; computing... " in err and "computed in" in err.rsplit("\r", 1)[-1], err[-300:]
    assert not [x for x in threading.enumerate() if x.name == "assay-progress"]
    # A failed call ends the line too (erased), and stops the ticker.
    with pytest.raises(assay.AssayError):
        assay.evaluate(t.set_column(1, "p", pa.array(np.full(t.num_rows, 2.0))), label="y",
                       score="p", progress=True)
    assert not [x for x in threading.enumerate() if x.name == "assay-progress"]
    assert "computed in" not in capsys.readouterr().err


def test_files_give_their_total_from_metadata_and_streams_count_without_one(
        immediate, capsys, tmp_path):
    t = table()
    pq.write_table(t, tmp_path / "a.parquet", row_group_size=50_000)
    assay.evaluate(str(tmp_path / "a.parquet"), progress=True, **KW)
    assert "300,000/300,000 rows" in capsys.readouterr().err
    reader = pa.RecordBatchReader.from_batches(t.schema, t.to_batches(max_chunksize=50_000))
    assay.evaluate(reader, progress=True, **KW)
    err = capsys.readouterr().err
    assert "assay: 300,000 rows," in err and "/" not in err.split("assay:")[-1].split(",")[0]


def test_off_by_default_when_nobody_watches(immediate, capsys, monkeypatch):
    monkeypatch.delenv("ASSAY_PROGRESS", raising=False)
    assay.evaluate(table(), **KW)  # pytest's stderr is no terminal
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("ASSAY_PROGRESS", "1")
    assay.evaluate(table(), **KW)
    assert "assay: " in capsys.readouterr().err
    monkeypatch.setenv("ASSAY_PROGRESS", "0")
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True, raising=False)
    assert progress.enabled(None) is False
    assert progress.enabled(True) is True  # the call's own argument wins


@pytest.mark.filterwarnings("ignore::assay.NothingFoundWarning")  # random data: nothing to find
def test_every_long_entry_point_takes_it(immediate, capsys):
    t = table(100_000)
    t = t.append_column("q", pa.array(t["p"].to_numpy()[::-1].copy()))
    assay.compare(t, label="y", scores=["p", "q"], bootstrap=10, metrics=["accuracy"],
                  progress=True)
    assay.reliability(t, label="y", score="p", progress=True)
    assay.Spec(**KW).accumulate(t, progress=True)
    assay.discover_slices(t, label="y", score="p", features=["g"], progress=True)
    err = capsys.readouterr().err
    assert err.count("computed in") == 4, err  # (compare, reliability, accumulate, discovery)


@pytest.mark.parametrize("bad", ["yes", 1, 0.5])
def test_bad_progress(bad):
    with pytest.raises(InvalidArgumentError, match="progress"):
        assay.evaluate(table(10), progress=bad, **KW)
