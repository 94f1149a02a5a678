"""Hardening of the Python facade (issue 12): arguments, threads, the CLI, text escaping and
fork safety of result objects.

Every bad argument must raise a typed :class:`assay.InvalidArgumentError` whose message names
the argument (and its range) -- never an ``OverflowError`` from the native conversion, a silent
truncation (``auc_bins=3.5 -> 3``) or a silent wrap (``seed=2**64 -> 0``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import unicodedata

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

import assay
from assay import calibrate, checks, noise
from assay._args import U64_MAX, max_threads
from assay._discovery import slice_filters
from assay._text import escape, escape_frame
from assay.cli import main
from assay.demo import make_data

HUGE = 10**400  # float(HUGE) raises OverflowError
BIG = 2**70  # does not fit the native layer's 64-bit integers

# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    return {
        "y": y, "p": p, "q": np.clip(p + rng.normal(0, 0.2, n), 0, 1),
        "g": rng.choice(["a", "b", "c"], n), "x": rng.normal(0, 1, n),
        "err": rng.random(n),
    }


D = _data()


def _model(batch):
    return batch["x"].to_numpy() * 0.1 + 0.5


# --------------------------------------------------------------------------------------------
# 1. out-of-range and wrong-typed arguments
# --------------------------------------------------------------------------------------------

ev = assay.evaluate


def _ev(**kw):
    return ev(D, label="y", score="p", **kw)


def _disc(**kw):
    return assay.discover_slices(D, features=["g"], error="err", **kw)


CASES = [
    # assay.bins
    ("bins n 2**70", lambda: assay.bins("p", BIG), ["n", "[1, 1000000]"]),
    ("bins n float", lambda: assay.bins("p", 3.5), ["n", "integer"]),
    ("bins n bool", lambda: assay.bins("p", True), ["n", "integer"]),
    ("bins n str", lambda: assay.bins("p", "5"), ["n", "integer"]),
    ("bins n 0", lambda: assay.bins("p", 0), ["n", "[1, 1000000]"]),
    ("Bins built directly", lambda: assay.Bins("p", BIG), ["n", "[1, 1000000]"]),
    ("bins edge nan", lambda: assay.bins("p", edges=[0, float("nan"), 1]), ["edge", "finite"]),
    ("bins edge inf", lambda: assay.bins("p", edges=[0, float("inf")]), ["edge", "finite"]),
    ("bins edge huge", lambda: assay.bins("p", edges=[0, HUGE]), ["edge", "too large"]),
    ("bins edges str", lambda: assay.bins("p", edges="0,1"), ["edges"]),
    ("bins too many edges", lambda: assay.bins("p", edges=np.arange(1_000_002.0)),
     ["1000001 edges", "1000002"]),
    # assay.evaluate
    ("min_slice_size 2**64", lambda: _ev(min_slice_size=2**64),
     ["min_slice_size", str(U64_MAX)]),
    ("min_slice_size -1", lambda: _ev(min_slice_size=-1), ["min_slice_size"]),
    ("min_slice_size bool", lambda: _ev(min_slice_size=True), ["min_slice_size"]),
    ("min_slice_size float", lambda: _ev(min_slice_size=2.0), ["min_slice_size"]),
    ("threshold 10**400", lambda: _ev(threshold=HUGE), ["threshold", "too large"]),
    ("threshold str", lambda: _ev(threshold="0.5"), ["threshold"]),
    ("threshold bool", lambda: _ev(threshold=True), ["threshold"]),
    ("threshold inf", lambda: _ev(threshold=float("inf")), ["threshold", "finite"]),
    ("seed 2**64", lambda: _ev(bootstrap=10, seed=2**64), ["seed", str(U64_MAX)]),
    ("seed -1", lambda: _ev(bootstrap=10, seed=-1), ["seed"]),
    ("seed float", lambda: _ev(bootstrap=10, seed=1.0), ["seed"]),
    ("auc_bins 3.5", lambda: _ev(auc="binned", auc_bins=3.5), ["auc_bins", "[2, 1000000]"]),
    ("auc_bins 2**70", lambda: _ev(auc="binned", auc_bins=BIG), ["auc_bins", "1000000"]),
    ("auc_bins 0", lambda: _ev(auc="binned", auc_bins=0), ["auc_bins"]),
    ("slices None", lambda: _ev(slices=None), ["slices", "None", "slices=()"]),
    ("slices int", lambda: _ev(slices=5), ["slices"]),
    ("slices set", lambda: _ev(slices={"g"}), ["slices"]),
    ("slices item", lambda: _ev(slices=["g", 3]), ["slice"]),
    ("metrics int", lambda: _ev(metrics=5), ["metrics"]),
    ("metrics item", lambda: _ev(metrics=["accuracy", 1]), ["metric"]),
    ("weight int", lambda: _ev(weight=5), ["weight"]),
    ("bootstrap 2**70", lambda: _ev(bootstrap=BIG), ["bootstrap", "100000"]),
    ("bootstrap float", lambda: _ev(bootstrap=10.0), ["bootstrap"]),
    ("ci huge", lambda: _ev(bootstrap=10, ci=HUGE), ["ci", "too large"]),
    ("ci str", lambda: _ev(bootstrap=10, ci="0.9"), ["ci"]),
    ("calibration_bins 2**70", lambda: _ev(calibration_bins=BIG),
     ["calibration_bins", "100000"]),
    ("calibration_bins float", lambda: _ev(calibration_bins=15.0), ["calibration_bins"]),
    ("n_threads 0", lambda: _ev(n_threads=0), ["n_threads"]),
    ("n_threads bool", lambda: _ev(n_threads=True), ["n_threads"]),
    ("n_threads float", lambda: _ev(n_threads=2.0), ["n_threads"]),
    ("n_threads 2**70", lambda: _ev(n_threads=BIG), ["n_threads", str(max_threads())]),
    ("row_id int", lambda: _ev(bootstrap=10, row_id=3), ["row_id"]),
    ("fbeta huge", lambda: assay.fbeta(HUGE), ["beta", "too large"]),
    ("fbeta inf", lambda: assay.fbeta(float("inf")), ["beta"]),
    ("fbeta bool", lambda: assay.fbeta(True), ["beta"]),
    # compare
    ("compare bootstrap 2**70", lambda: assay.compare(
        D, label="y", scores=["p", "q"], bootstrap=BIG), ["bootstrap"]),
    ("compare seed 2**64", lambda: assay.compare(
        D, label="y", scores=["p", "q"], bootstrap=10, seed=2**64), ["seed"]),
    ("compare min_slice_size 2**64", lambda: assay.compare(
        D, label="y", scores=["p", "q"], bootstrap=10, min_slice_size=2**64),
     ["min_slice_size"]),
    ("compare duplicate names", lambda: assay.compare(
        D, label="y", scores=["p", "p"], bootstrap=10), ["name"]),
    # reliability
    ("reliability n_bins 2**70", lambda: assay.reliability(D, label="y", score="p",
                                                           n_bins=BIG), ["n_bins", "100000"]),
    ("reliability ci 2", lambda: assay.reliability(D, label="y", score="p", ci=2),
     ["ci", "(0, 1)"]),
    # discover_slices
    ("discover min_support 10**30", lambda: _disc(min_support=10**30),
     ["min_support", str(U64_MAX)]),
    ("discover min_support huge float", lambda: _disc(min_support=1e300), ["min_support"]),
    ("discover k 2**70", lambda: _disc(k=BIG), ["k", "1000000"]),
    ("discover k float", lambda: _disc(k=3.0), ["k"]),
    ("discover max_level 2**70", lambda: _disc(max_level=BIG), ["max_level", "1000"]),
    ("discover beam_width 2**70", lambda: _disc(method="beam", beam_width=BIG),
     ["beam_width"]),
    ("discover n_bins 2**70", lambda: _disc(n_bins=BIG), ["n_bins"]),
    ("discover max_values 2**70", lambda: _disc(max_values=BIG), ["max_values", "65535"]),
    ("discover alpha huge", lambda: _disc(alpha=HUGE), ["alpha"]),
    ("discover fdr bool", lambda: _disc(fdr=True), ["fdr"]),
    ("discover threshold huge", lambda: _disc(threshold=HUGE), ["threshold"]),
    ("discover n_threads huge", lambda: _disc(n_threads=BIG), ["n_threads"]),
    # calibrate
    ("HistogramBinning 2**70", lambda: calibrate.HistogramBinning(BIG), ["n_bins", "1000000"]),
    ("HistogramBinning float", lambda: calibrate.HistogramBinning(3.5), ["n_bins"]),
    ("HistogramBinning bool", lambda: calibrate.HistogramBinning(True), ["n_bins"]),
    ("Platt smoothing str", lambda: calibrate.Platt(smoothing="no"), ["smoothing"]),
    ("Isotonic increasing int", lambda: calibrate.Isotonic(increasing=2), ["increasing"]),
    ("from_dict n_bins 2**70", lambda: calibrate.HistogramBinning.from_dict(
        {"kind": "histogram", "version": 1, "n_bins": BIG, "values": []}), ["n_bins"]),
    ("from_dict values mismatch", lambda: calibrate.HistogramBinning.from_dict(
        {"kind": "histogram", "version": 1, "n_bins": 3, "values": [0.5]}), ["values"]),
    ("from_dict missing key", lambda: calibrate.Platt.from_dict(
        {"kind": "platt", "version": 1, "a": 1.0}), ["Platt"]),
    ("from_dict not a dict", lambda: calibrate.Platt.from_dict([1, 2]), ["dict"]),
    ("from_dict temperature 0", lambda: calibrate.Temperature.from_dict(
        {"kind": "temperature", "version": 1, "temperature": 0.0}), ["temperature"]),
    # checks
    ("perturbation seed 2**64", lambda: checks.perturbation(
        _model, D, label="y", perturb={"x": noise.gaussian(0.1)}, seed=2**64), ["seed"]),
    ("perturbation repeats 2**70", lambda: checks.perturbation(
        _model, D, label="y", perturb={"x": noise.gaussian(0.1)}, repeats=BIG),
     ["repeats", "10000"]),
    ("perturbation bootstrap 2**70", lambda: checks.perturbation(
        _model, D, label="y", perturb={"x": noise.gaussian(0.1)}, bootstrap=BIG),
     ["bootstrap"]),
    ("perturbation separately str", lambda: checks.perturbation(
        _model, D, label="y", perturb={"x": noise.gaussian(0.1)}, separately="yes"),
     ["separately"]),
    ("perturbation threshold huge", lambda: checks.perturbation(
        _model, D, label="y", perturb={"x": noise.gaussian(0.1)}, threshold=HUGE),
     ["threshold"]),
    ("invariance tolerance huge", lambda: checks.invariance(
        _model, D, column="g", tolerance=HUGE), ["tolerance"]),
    ("directional delta huge", lambda: checks.directional(
        _model, D, column="x", delta=HUGE), ["delta"]),
    ("batch_size float", lambda: checks.directional(
        _model, D, column="x", delta=1.0, batch_size=10.5), ["batch_size"]),
    # thresholds, threshold_for, selective
    ("thresholds n 2**70", lambda: assay.thresholds(D, label="y", score="p", n=BIG),
     ["n", "1000000"]),
    ("thresholds at huge", lambda: assay.thresholds(D, label="y", score="p", at=[0.5, HUGE]),
     ["at"]),
    ("threshold_for goal huge", lambda: assay.threshold_for(
        D, label="y", score="p", target_precision=HUGE), ["target_precision"]),
    ("threshold_for bootstrap 2**70", lambda: assay.threshold_for(
        D, label="y", score="p", target_precision=0.5, bootstrap=BIG), ["bootstrap"]),
    ("threshold_for seed 2**64", lambda: assay.threshold_for(
        D, label="y", score="p", target_precision=0.5, bootstrap=10, seed=2**64), ["seed"]),
    ("selective n 2**70", lambda: assay.selective(D, label="y", score="p", n=BIG), ["n"]),
    ("selective threshold huge", lambda: assay.selective(D, label="y", score="p",
                                                         threshold=HUGE), ["threshold"]),
    # baselines, simpson, ensembles
    ("baselines seed 2**64", lambda: assay.baselines(D, label="y", score="p", seed=2**64),
     ["seed"]),
    ("baselines simulate 2**70", lambda: assay.baselines(D, label="y", score="p",
                                                         simulate=BIG), ["simulate"]),
    ("baselines prior huge", lambda: assay.baselines(D, label="y", score="p", prior=HUGE),
     ["prior"]),
    ("baselines min_slice_size 2**64", lambda: assay.baselines(
        D, label="y", score="p", min_slice_size=2**64), ["min_slice_size"]),
    ("simpson groups int", lambda: assay.simpson(
        {"o": D["y"], "s": D["g"], "t": np.where(D["x"] > 0, "A", "B")}, outcome="o",
        stratum="s", group="t", groups=5), ["groups"]),
    ("ensemble threshold huge", lambda: assay.ensemble_report(
        D, label="y", predictions=["p", "q"], threshold=HUGE), ["threshold"]),
    # noise
    ("gaussian scale huge", lambda: noise.gaussian(HUGE), ["scale"]),
    ("gaussian seed 2**64", lambda: noise.gaussian(0.1, seed=2**64), ["seed"]),
    ("gaussian relative str", lambda: noise.gaussian(0.1, relative="yes"), ["relative"]),
    ("swap rate huge", lambda: noise.swap(HUGE), ["rate"]),
    ("missing rate bool", lambda: noise.missing(True), ["rate"]),
    # the demo data and slice_filters
    ("make_data rows -5", lambda: make_data(-5), ["rows"]),
    ("make_data seed 2**64", lambda: make_data(10, 2**64), ["seed"]),
    ("slice_filters edges huge", lambda: slice_filters(
        pl.DataFrame({"slice": ["x=[0, 1)"],
                      "predicates": [[{"feature": "x", "value": "[0, 1)"}]]}),
        edges={"x": [0.0, HUGE]}), ["edge"]),
]


@pytest.mark.parametrize("call, words", [pytest.param(f, w, id=i) for i, f, w in CASES])
def test_bad_argument_is_a_clear_typed_error(call, words):
    with pytest.raises(assay.InvalidArgumentError) as ei:
        call()
    msg = str(ei.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert len(msg) < 400, msg  # a huge number is summarized, not printed in full


def test_huge_numbers_are_summarized_in_messages():
    with pytest.raises(assay.InvalidArgumentError) as ei:
        _ev(min_slice_size=10**5000)  # repr() of this raises ValueError in Python 3.11+
    assert "min_slice_size" in str(ei.value) and "2**" in str(ei.value)


@pytest.mark.filterwarnings("ignore::assay.NothingFoundWarning")  # empty by design
def test_numpy_integers_keep_working():
    kw = dict(slices=["g", assay.bins("x", 3)], metrics=["accuracy", "roc_auc", "ece"],
              min_slice_size=2, bootstrap=20, seed=7, calibration_bins=5, n_threads=1)
    py = _ev(**kw)
    npk = {**kw, "slices": ["g", assay.bins("x", np.int64(3))], "min_slice_size": np.int64(2),
           "bootstrap": np.int32(20), "seed": np.uint64(7), "calibration_bins": np.int16(5),
           "n_threads": np.int64(1), "threshold": np.float32(0.5)}
    assert _ev(**npk).to_dict() == py.to_dict()
    binned = _ev(auc="binned", auc_bins=64, metrics=["roc_auc"])
    assert _ev(auc="binned", auc_bins=np.int64(64), metrics=["roc_auc"]).to_dict() == \
        binned.to_dict()
    a = _disc(k=3, max_level=2, min_support=5)
    b = _disc(k=np.int64(3), max_level=np.int8(2), min_support=np.int64(5))
    assert a.equals(b)
    s, y = D["p"], D["y"]
    h = calibrate.HistogramBinning(np.int64(5)).fit(s, y)
    assert h.n_bins == 5 and isinstance(h.n_bins, int)
    np.testing.assert_array_equal(h.transform(s), calibrate.HistogramBinning(5).fit(s, y)
                                  .transform(s))


def test_seed_is_never_reduced_modulo_2_64():
    top = _ev(bootstrap=50, seed=U64_MAX, metrics=["accuracy"]).table
    zero = _ev(bootstrap=50, seed=0, metrics=["accuracy"]).table
    # The largest seed is accepted, and it is not seed 0 in disguise.
    assert (top["accuracy_lo"][0], top["accuracy_hi"][0]) != \
        (zero["accuracy_lo"][0], zero["accuracy_hi"][0]) or \
        top["accuracy_lo"].to_list() != zero["accuracy_lo"].to_list()
    with pytest.raises(assay.InvalidArgumentError, match="seed"):
        _ev(bootstrap=50, seed=2**64, metrics=["accuracy"])


def test_slices_empty_tuple_means_no_slices():
    assert _ev(slices=()).table["slice"].to_list() == ["overall"]
    assert _ev(slices=[]).table["slice"].to_list() == ["overall"]


# --------------------------------------------------------------------------------------------
# 2. threads
# --------------------------------------------------------------------------------------------


def test_max_threads_is_four_times_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert max_threads() == 4 * cores or max_threads() == 4 * (os.cpu_count() or 1)


def test_explicit_n_threads_above_the_limit_raises_with_the_limit():
    limit = max_threads()
    with pytest.raises(assay.InvalidArgumentError) as ei:
        _ev(n_threads=100_000)
    assert "n_threads" in str(ei.value) and str(limit) in str(ei.value)
    with pytest.raises(assay.InvalidArgumentError, match="n_threads"):
        _ev(n_threads=limit + 1)
    # The limit itself is allowed.
    assert _ev(n_threads=limit, metrics=["accuracy"]).table.height == 1


def test_env_threads_above_the_limit_are_capped_with_a_warning(monkeypatch):
    ref = _ev(slices=["g"], n_threads=1, metrics=["accuracy", "roc_auc"]).to_dict()
    monkeypatch.setenv("ASSAY_NUM_THREADS", "100000")
    with pytest.warns(RuntimeWarning, match=f"limit of {max_threads()}"):
        rep = _ev(slices=["g"], metrics=["accuracy", "roc_auc"])
    assert rep.to_dict() == ref  # bit-identical for any thread count
    monkeypatch.setenv("ASSAY_NUM_THREADS", "9" * 5000)  # more digits than int() allows
    with pytest.raises(assay.InvalidArgumentError, match="ASSAY_NUM_THREADS"):
        _ev()


@pytest.mark.parametrize("env", ["abc", "0", "-3", "2.5"])
def test_bad_env_threads(monkeypatch, env):
    monkeypatch.setenv("ASSAY_NUM_THREADS", env)
    with pytest.raises(assay.InvalidArgumentError, match="ASSAY_NUM_THREADS"):
        _ev()


# --------------------------------------------------------------------------------------------
# 3. min_slice_size never applies to overall
# --------------------------------------------------------------------------------------------


def test_min_slice_size_never_applies_to_overall():
    rep = _ev(slices=["g"], min_slice_size=10**6, metrics=["accuracy", "roc_auc"])
    t = rep.table
    y, p = D["y"], D["p"]
    assert t["accuracy"][0] == pytest.approx(skm.accuracy_score(y, p >= 0.5), rel=1e-12)
    assert t["roc_auc"][0] == pytest.approx(skm.roc_auc_score(y, p), rel=1e-12)
    assert t["accuracy"][1:].null_count() == t.height - 1  # every slice is below the size
    assert t["n"].to_list()[1:] == [int((D["g"] == v).sum()) for v in ("a", "b", "c")]
    cmp = assay.compare(D, label="y", scores=["p", "q"], slices=["g"], metrics=["accuracy"],
                        bootstrap=10, min_slice_size=10**6)
    ct = cmp.table
    assert ct.filter(pl.col("slice") == "overall")["delta"].null_count() == 0
    assert ct.filter(pl.col("slice") != "overall")["delta"].null_count() == 3
    for doc in (assay.evaluate.__doc__, assay.compare.__doc__):
        assert "never applies" in doc and "overall" in doc


# --------------------------------------------------------------------------------------------
# 4. escaping and the CLI
# --------------------------------------------------------------------------------------------

NASTY = ["a\nb\nc", "\x1b[2J\x1b[31mred", "nul\x00x", "\u202eevil", "tab\there", "ok",
         "bell\x07", "del\x7f", "c1\x85", "ls\u2028", "zw\u200bj", "caf\u00e9", "C:\\dir"]


def _is_printable_text(s, allowed="\n"):
    return all(ch.isprintable() or ch in allowed for ch in s)


def test_escape_matches_python_literals():
    # Reference: Python's own repr escapes exactly the non-printable characters.
    for code in list(range(0, 0x3000)) + [0x202E, 0x2066, 0xFEFF, 0xE0001, 0x10FFFD, 0x1F600]:
        ch = chr(code)
        want = ch if ch.isprintable() else repr(ch)[1:-1]
        assert escape(ch) == want, (hex(code), unicodedata.name(ch, "?"))
    assert escape("a\nb\nc") == "a\\nb\\nc"
    assert escape("x\u202ey") == "x\\u202ey"
    assert escape("C:\\dir") == "C:\\dir"  # backslashes are not doubled
    assert escape(5) == "5"


def test_escape_frame_escapes_every_text_cell():
    df = pl.DataFrame({"slice": NASTY + [None], "n": list(range(len(NASTY) + 1)),
                       "c\nol": pl.Series(NASTY + [None]).cast(pl.Categorical)})
    out = escape_frame(df)
    assert out.columns == ["slice", "n", "c\\nol"]
    want = [None if v is None else escape(v) for v in df["slice"].to_list()]
    assert out["slice"].to_list() == want
    assert out["c\\nol"].to_list() == want
    assert out["n"].to_list() == df["n"].to_list()
    assert _is_printable_text(str(out))


@pytest.fixture(scope="module")
def nasty_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "nasty.parquet"
    n = len(NASTY) * 4
    pq.write_table(pa.table({"y": [0, 1] * (n // 2), "p": [0.2, 0.7] * (n // 2),
                             "g": NASTY * 4}), path)
    return path


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_report_repr_escapes_slice_labels():
    rep = ev({"y": [0, 1] * len(NASTY), "p": [0.2, 0.7] * len(NASTY), "g": NASTY * 2},
             label="y", score="p", slices=["g"], metrics=["accuracy"])
    assert _is_printable_text(repr(rep))
    # (repr shows the first slices; every one of them, escaped, with a longer summary.)
    from assay.report import _summary

    text = _summary(rep, rows=len(NASTY) * 2 + 1)
    assert _is_printable_text(text)
    assert "\\u202eevil" in text and "a\\nb\\nc" in text
    assert _is_printable_text(rep._repr_html_(), allowed="\n")


@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_cli_escapes_control_characters(capsys, nasty_file, fmt):
    code, out, err = _cli(capsys, "evaluate", nasty_file, "--label", "y", "--score", "p",
                          "--slice", "g", "--metrics", "accuracy", "--format", fmt)
    assert code == 0, err
    assert _is_printable_text(out), repr(out)
    for v in NASTY:
        assert escape(v) in out
    if fmt == "csv":
        lines = out.strip("\n").split("\n")
        assert len(lines) == 1 + 1 + len(NASTY)  # header, overall, one line per value


def test_cli_json_escapes_and_csv_file_keeps_the_data(capsys, nasty_file, tmp_path):
    code, out, _ = _cli(capsys, "evaluate", nasty_file, "--label", "y", "--score", "p",
                        "--slice", "g", "--format", "json", "--metrics", "accuracy")
    assert code == 0 and out.isascii() and _is_printable_text(out)
    assert set(NASTY) <= {r["g"] for r in json.loads(out)["rows"]}
    dest = tmp_path / "out.csv"
    code, out, _ = _cli(capsys, "evaluate", nasty_file, "--label", "y", "--score", "p",
                        "--slice", "g", "--format", "csv", "-o", dest, "--metrics", "accuracy")
    assert code == 0 and out == ""
    assert set(NASTY) <= set(pl.read_csv(dest)["g"].drop_nulls().to_list())


def test_cli_error_messages_are_escaped(capsys, nasty_file):
    code, _, err = _cli(capsys, "evaluate", nasty_file, "--label", "no\x1b[2Jpe\u202e",
                        "--score", "p")
    assert code == 2
    assert err.startswith("assay: error: ") and _is_printable_text(err)


def test_cli_demo_rows(capsys):
    for rows in (1, 2, 5):
        code, out, err = _cli(capsys, "demo", "--rows", rows)
        assert code == 0, err
        assert "overall" in out
    code, out, err = _cli(capsys, "demo", "--rows", "-5")
    assert code == 2 and "assay: error:" in err and "--rows" in err
    code, _, err = _cli(capsys, "demo", "--rows", "many")
    assert code == 2 and "--rows" in err


@pytest.mark.parametrize("argv, code, words", [
    (["--bins", "p:99999999999"], 2, ["--bins", "1000000"]),
    (["--bins", "p"], 2, ["COLUMN:N"]),
    (["--bins", ":3"], 2, ["COLUMN:N"]),
    (["--bins", "p:x"], 2, ["COLUMN:N"]),
    (["--bins", "p:0"], 2, ["--bins", "[1, 1000000]"]),
    (["--slice", ","], 2, ["--slice"]),
    (["--metrics", ","], 2, ["--metrics"]),
    (["--metrics", "nope"], 2, ["nope"]),
    (["--min-slice-size", "-3"], 2, ["--min-slice-size"]),
    (["--min-slice-size", str(2**64)], 2, ["--min-slice-size"]),
    (["--threshold", "nan"], 2, ["threshold"]),
    (["--format", "parquet"], 2, ["--out"]),
    (["-o", "/nonexistent-assay-dir/x/out.csv"], 2, ["does not exist"]),
    (["--out", "/nonexistent-assay-dir/x/out.parquet", "--format", "parquet"], 2,
     ["does not exist"]),
    (["--label", "nope"], 2, ["nope"]),  # a column named on the command line
    (["--label", "g"], 3, ["label"]),  # the data: a string column as the label
])
def test_cli_errors(capsys, nasty_file, argv, code, words):
    base = ["evaluate", nasty_file, "--label", "y", "--score", "p"]
    got, out, err = _cli(capsys, *base, *argv)
    assert got == code, err
    assert "assay: error: " in err
    for w in words:
        assert w in err, err


def test_cli_out_directory_and_missing_input(capsys, nasty_file, tmp_path):
    code, _, err = _cli(capsys, "evaluate", nasty_file, "--label", "y", "--score", "p",
                        "-o", tmp_path)
    assert code == 2 and "directory" in err
    code, _, err = _cli(capsys, "evaluate", tmp_path / "missing.parquet", "--label", "y",
                        "--score", "p")
    # A missing input path: a usage error (the argument) or a data error, never a traceback.
    assert code in (2, 3) and "assay: error: " in err and "missing.parquet" in err


def test_cli_internal_error_and_interrupt(capsys, monkeypatch, nasty_file):
    import assay.cli as cli

    def boom(args):
        raise RuntimeError("a bug \x1b[31m")

    monkeypatch.setattr(cli, "_evaluate_cmd", boom)
    code, _, err = _cli(capsys, "evaluate", nasty_file, "--label", "y", "--score", "p")
    assert code == 3 and "assay: error: internal error: RuntimeError" in err
    assert _is_printable_text(err)

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_evaluate_cmd", interrupted)
    code, _, err = _cli(capsys, "evaluate", nasty_file, "--label", "y", "--score", "p")
    assert code == 130 and "interrupted" in err


def _env():
    return {**os.environ, "ASSAY_ALLOW_DEBUG_BUILD": "1"}


def test_cli_subprocess_never_prints_a_traceback(tmp_path, nasty_file):
    runs = [
        (["demo", "--rows", "-5"], 2),
        (["evaluate", str(tmp_path / "missing.parquet"), "--label", "y", "--score", "p"],
         (2, 3)),
        (["evaluate", str(nasty_file), "--label", "y", "--score", "p", "--bins",
          "p:99999999999"], 2),
        (["evaluate", str(nasty_file), "--label", "y", "--score", "p", "-o",
          str(tmp_path / "no" / "such" / "dir.csv")], 2),
    ]
    for argv, code in runs:
        proc = subprocess.run([sys.executable, "-m", "assay.cli", *argv], capture_output=True,
                              text=True, timeout=120, env=_env())
        assert proc.returncode in (code if isinstance(code, tuple) else (code,)), \
            (argv, proc.stderr)
        assert "Traceback" not in proc.stderr and "assay: error: " in proc.stderr, proc.stderr


# --------------------------------------------------------------------------------------------
# 5. result objects: Arrow accessors and fork safety
# --------------------------------------------------------------------------------------------


def _results():
    rep = _ev(slices=["g"], metrics=["accuracy", "roc_auc"])
    cmp = assay.compare(D, label="y", scores=["p", "q"], metrics=["accuracy"], bootstrap=10)
    from assay._discovery import _discover

    return {
        "report": rep,
        "comparison": cmp,
        "selective": assay.selective(D, label="y", score="p", n=5),
        "threshold_for": assay.threshold_for(D, label="y", score="p", target_precision=0.5),
        "simpson": assay.simpson({"o": D["y"], "s": D["g"],
                                  "t": np.where(D["x"] > 0, "A", "B")},
                                 outcome="o", stratum="s", group="t"),
        "ensemble": assay.ensemble_report(D, label="y", predictions=["p", "q", "x"]),
        "check": checks.directional(_model, D, column="x", delta=1.0),
        "discovery": _discover(D, features=["g"], error="err", min_support=5),
    }


def test_every_result_offers_arrow_dict_and_json():
    for name, res in _results().items():
        t = res.to_arrow()
        assert isinstance(t, pa.Table), name
        frame = res.table
        assert t.column_names == frame.columns, name
        assert res.to_dict() == frame.to_dict(as_series=False), name
        doc = json.loads(res.to_json())
        assert doc["columns"] == frame.columns, name
        assert len(doc["rows"]) == frame.height, name
        assert pa.table(res).equals(t) if hasattr(res, "__arrow_c_stream__") else True


def test_result_reprs_escape_user_text():
    data = {"o": [0, 1, 1, 0] * 6, "s": ["s\n1", "s\x1b2", "\u202es3"] * 8,
            "t": ["A\x00", "B\n"] * 12}
    res = assay.simpson(data, outcome="o", stratum="s", group="t")
    assert _is_printable_text(repr(res))
    sel = assay.selective({"y": data["o"], "p": [0.2, 0.8, 0.6, 0.4] * 6, "s": data["s"]},
                          label="y", score="p", slices=["s"], n=3)
    assert _is_printable_text(repr(sel))


FORK_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    import assay

    rng = np.random.default_rng(0)
    n = 20_000
    d = {"y": rng.integers(0, 2, n), "p": rng.random(n), "q": rng.random(n),
         "g": rng.choice(["a", "b", "c"], n)}
    rep = assay.evaluate(d, label="y", score="p", slices=["g"])
    cmp = assay.compare(d, label="y", scores=["p", "q"], metrics=["accuracy"], bootstrap=20)
    sel = assay.selective(d, label="y", score="p", slices=["g"], n=10)
    # The parent uses polars (its thread pool starts), then forks.
    rep.table.sort("n").to_dicts(); cmp.table.sort("slice"); sel.curve.sort("risk")
    want = json.dumps([rep.to_dict(), cmp.to_dict(), sel.to_dict()], default=str)
    pid = os.fork()
    if pid == 0:
        try:
            got = json.dumps([rep.to_dict(), cmp.to_dict(), sel.to_dict()], default=str)
            ok = (got == want and rep.to_arrow().num_rows == 4
                  and json.loads(rep.to_json())["columns"][0] == "slice")
            os._exit(0 if ok else 3)
        except BaseException:
            os._exit(4)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            sys.exit(os.waitstatus_to_exitcode(status))
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    sys.exit(5)  # the child hung
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_uses_arrow_accessors_without_hanging():
    proc = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True,
                          timeout=180, env=_env())
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
