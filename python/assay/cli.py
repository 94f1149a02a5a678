"""The ``assay`` command line (also ``python -m assay``): ``assay demo``, ``assay evaluate``,
``assay compare`` (with a ``--gate``), ``assay reliability``, ``assay discover``,
``assay discover-regressions`` and ``assay finalize STATE... [-o OUT]``, with the names and
defaults of the Python API; ``assay report RUN [-o PAGE.html]`` turns a saved run
(``rep.save("run.assay.parquet")``) into a self-contained HTML page (:mod:`assay.html`);
``assay run JOB.toml`` runs a job file that holds one of these commands with its options
(see :func:`job_argv`). ``PATH`` is anything ``data=`` takes as a path: a file, a directory
(Hive partitions included), a glob, or several of them; ``--where EXPR`` keeps the rows where
the SQL expression ``EXPR`` holds (a polars SQL predicate, pushed into the scan). ``--format json``
output carries the assay version, the arguments and a fingerprint of the input files (their
paths, sizes and modification times, hashed).

``assay evaluate PATH ... --save-state FILE [--row-offset K]`` writes the partial state of the
rows of ``PATH`` (see :class:`assay.PartialState`) instead of a report, and prints one line on
stderr (rows and bytes); ``assay finalize`` merges such states and writes the report: Parquet,
CSV or JSON by the extension of ``-o`` (``.parquet``/``.pq``, ``.csv``, ``.json``), a table on
stdout without ``-o``. With ``--save-state`` every ``--bins`` needs explicit edges
(``--bins age:18,30,45,65``): ``--bins age:5`` fits its edges to each file's own rows.

Every failure is one line on stderr, ``assay: error: ...``, never a traceback. Exit codes:

- 0: success (``assay compare --gate``: no regression);
- 1: ``assay compare --gate``: a regression was detected (the gate's message on stderr);
- 2: a usage error: a malformed or out-of-range option (as argparse reports its own), a column
  named on the command line that is not in the data, no state files, an ``-o`` whose
  extension names no known format, or a job file that cannot be read or holds an unknown key
  or a value of the wrong type;
- 3: the data or the engine failed (a bad value, an unreadable file, an output that cannot be
  written, a state file that is unreadable, corrupt or was saved with another spec, a saved
  run that cannot be read), or an unexpected internal error (``assay: error: internal error: ...``);
- 130: interrupted (Ctrl-C).

Text output escapes control characters in user data (see :mod:`assay._text`): a slice value
``"a\\nb"`` prints as ``a\\nb`` on one row, never as two rows, and escape sequences, NUL and bidi
overrides cannot reach the terminal. ``--format json`` escapes them by JSON's own rules; CSV and
Parquet written to ``--out`` keep the data as it is.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import polars as pl

from . import _evaluate
from ._args import U64_MAX
from ._native import __version__
from ._spec import PartialState, Spec, _spec_diff, merge
from ._text import escape, escape_frame
from .errors import (
    AssayError,
    ColumnNotFoundError,
    InvalidArgumentError,
    NothingFoundWarning,
    RegressionDetected,
    StateFormatError,
)
from .report import Report

SUMMARY = ["n", "base_rate", "accuracy", "precision", "recall", "f1", "roc_auc",
           "average_precision", "log_loss", "brier"]

MAX_DEMO_ROWS = 50_000_000

# The arguments of the running command (recorded in JSON output).
_ARGV: list[str] = []
# The job file of ``assay run`` (its path and hash, recorded in JSON output), if any.
_JOB: dict[str, str] | None = None

EXIT_REGRESSION = 1
EXIT_USAGE = 2
EXIT_DATA = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class UsageError(Exception):
    """A command-line option is malformed or out of range (exit code 2)."""


class DataError(Exception):
    """A file the command reads is unreadable or invalid (exit code 3)."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its messages escaped (they quote what the user typed)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"assay: error: {escape(message)}\n")


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            v = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer in [{lo}, {hi}], got {text!r}"
            ) from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer in [{lo}, {hi}], got {v}")
        return v

    parse.__name__ = "integer"
    return parse


def _support(text: str) -> float | int:
    """An argparse type: a row count (an integer) or a fraction of the rows (a float)."""
    t = text.strip()
    try:
        return int(t) if t.isascii() and t.isdigit() else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction of the rows in (0, 1) or a row count, got {text!r}") from None


def _max_slices_arg(text: str) -> int | None:
    """An argparse type: ``--max-slices N`` (a count >= 1) or ``none`` (no limit)."""
    if text.strip().lower() == "none":
        return None
    return _int_in(1, U64_MAX)(text)


def _print_table(df: pl.DataFrame) -> None:
    # A report's `spec` and bin-edge columns repeat what the slice label says: a terminal
    # table leaves them out (CSV, JSON and Parquet keep them).
    edges = [c for c in df.columns if c.endswith(("_lower", "_upper"))
             and c.rsplit("_", 1)[0] in df.columns]
    if "slice" in df.columns:
        df = df.drop([c for c in ("spec", *edges) if c in df.columns])
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, float_precision=4,
                   tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True,
                   fmt_str_lengths=60):
        print(escape_frame(df))


def _demo(args: argparse.Namespace) -> int:
    from .demo import make_data

    data = make_data(args.rows, args.seed)
    t0 = time.perf_counter()
    rep = _evaluate.evaluate(
        data, label="churned", score="p_churn",
        slices=["country", "device", ("country", "device"),
                _evaluate.bins("age", min(4, args.rows)), "plan"],
        min_slice_size=min(200, max(1, args.rows // 100)),
    )
    dt = time.perf_counter() - t0
    print(f"assay demo: a churn model on {rep.rows:,} generated rows, "
          f"{rep.table.height} slices, {len(rep.metrics)} metrics each, in {dt * 1000:.0f} ms\n")
    shown = rep.table.filter(~pl.col("slice").str.contains(" & ")).select(
        "slice", *[c for c in SUMMARY if c in rep.table.columns])
    _print_table(shown)
    overall = rep.table["roc_auc"][0]
    worst = (rep.table.filter(pl.col("roc_auc").is_not_null())
             .sort("roc_auc").head(5).select("slice", "n", "roc_auc", "log_loss"))
    shown_overall = "undefined" if overall is None else f"{overall:.4f}"
    print(f"\nWorst slices by ROC-AUC (overall {shown_overall}), crosses included:")
    _print_table(worst)
    return 0


BINS_USAGE = ("--bins expects COLUMN:N (N quantile bins, e.g. age:5) or COLUMN:E1,E2,... "
              "(explicit edges, e.g. age:18,30,45,65)")


def _parse_bins(spec: str) -> _evaluate.Bins:
    col, sep, rest = spec.rpartition(":")
    rest = rest.strip()
    if not sep or not col or not rest:
        raise UsageError(f"{BINS_USAGE}, got {spec!r}")
    try:
        if "," in rest:
            try:
                edges = [float(x) for x in rest.split(",")]
            except ValueError:
                raise UsageError(f"{BINS_USAGE}, got {spec!r}") from None
            return _evaluate.bins(col, edges=edges)
        if not (rest.isascii() and rest.isdigit()):
            raise UsageError(f"{BINS_USAGE}, got {spec!r}")
        return _evaluate.bins(col, int(rest))
    except InvalidArgumentError as e:
        raise UsageError(f"--bins {spec!r}: {e}") from e


def _parse_slice(spec: str) -> str | tuple[str, ...]:
    parts = tuple(p.strip() for p in spec.split(",") if p.strip())
    if not parts:
        raise UsageError(f"--slice expects a column or a cross a,b, got {spec!r}")
    return parts[0] if len(parts) == 1 else parts


def _check_out(out: str | None, option: str = "--out") -> None:
    """Refuse an --out whose directory does not exist, before any work is done."""
    if out is None:
        return
    if not out:
        raise UsageError(f"{option} needs a file name")
    if os.path.isdir(out):
        raise UsageError(f"{option} {out!r} is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise UsageError(f"{option} {out!r}: the directory {parent!r} does not exist")


def _spec(args: argparse.Namespace) -> Spec:
    """The spec of ``assay evaluate``'s options."""
    slices: list[_evaluate.SliceLike] = [_parse_slice(s) for s in args.slice or []]
    slices += [_parse_bins(b) for b in args.bins or []]
    metrics = None
    if args.metrics is not None:
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
        if not metrics:
            raise UsageError(f"--metrics expects comma-separated metric names, got "
                             f"{args.metrics!r}")
    column, other = ("--prediction", "--score") if args.task == "regression" else \
        ("--score", "--prediction")
    if getattr(args, other[2:]) is not None:
        raise UsageError(f"--task {args.task} takes {column}, not {other}")
    if getattr(args, column[2:]) is None:
        raise UsageError(f"--task {args.task} needs {column} COLUMN")
    return Spec(
        label=args.label, score=_multiclass_score(args, args.score),
        prediction=args.prediction, task=args.task, slices=slices, metrics=metrics,
        **_multiclass_args(args), **_ranking_args(args),
        threshold=args.threshold, weight=args.weight, min_slice_size=args.min_slice_size,
        nan_policy=args.nan_policy, auc=args.auc, auc_bins=args.auc_bins,
        auc_max_runs=args.auc_max_runs, bootstrap=args.bootstrap, ci=args.ci,
        ci_method=args.ci_method, seed=args.seed, row_id=args.row_id,
        calibration_bins=args.calibration_bins, calibration_strategy=args.calibration_strategy,
    )


def _evaluate_cmd(args: argparse.Namespace) -> int:
    spec = _spec(args)
    if args.save_state is not None:
        return _save_state(args, spec)
    if args.row_offset is not None:
        raise UsageError("--row-offset only applies with --save-state")
    fmt = args.format or "table"
    if fmt == "parquet" and not args.out:
        raise UsageError("--format parquet needs --out FILE")
    _check_out(args.out)
    rep = spec.evaluate(_data(args), max_slices=args.max_slices)
    assert isinstance(rep, Report)  # the command line has no comparison specs
    _output(rep, fmt, args)
    if rep.dropped:
        print(f"({rep.dropped} rows dropped by nan_policy=drop)", file=sys.stderr)
    return 0


def _format(args: argparse.Namespace) -> str:
    """The output format, checked with ``--out`` before any work is done."""
    fmt = args.format or "table"
    if fmt == "parquet" and not args.out:
        raise UsageError("--format parquet needs --out FILE")
    _check_out(args.out)
    return str(fmt)


def _output(result: Any, fmt: str, args: argparse.Namespace) -> None:
    """Writes a result (anything with ``.table`` and ``.to_json()``, or a polars frame) in
    ``fmt`` to ``args.out`` or stdout; JSON carries the run's metadata."""
    if fmt == "parquet" and not args.out:
        raise UsageError("--format parquet needs --out FILE")
    if fmt == "table":
        table = result if isinstance(result, pl.DataFrame) else result.table
        if args.out:
            with open(args.out, "w") as f, pl.Config(tbl_rows=-1, tbl_cols=-1,
                                                     tbl_width_chars=200):
                f.write(str(escape_frame(table)) + "\n")
        else:
            _print_table(table)
    else:
        _write_result(result, fmt, args.out, _metadata(args))


def _metadata(args: argparse.Namespace) -> dict[str, Any]:
    """What JSON output records about its run: the version, the arguments, the input."""
    meta: dict[str, Any] = {"assay_version": __version__, "arguments": list(_ARGV)}
    if _JOB is not None:
        meta["job"] = dict(_JOB)
    path = getattr(args, "path", None)
    if path is not None:
        meta["input"] = {"path": path, "fingerprint": _fingerprint(path)}
    return meta


def _fingerprint(path: str | list[str]) -> str | None:
    """A hash of the input files' paths, sizes and modification times (not their bytes: it
    costs no read), or None when they cannot be listed."""
    import glob as _glob

    files: list[str] = []
    found: list[str] = []
    for item in [path] if isinstance(path, str) else path:
        found += [item] if os.path.lexists(item) else sorted(_glob.glob(item, recursive=True))
    for p in found:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs.sort()
                files += [os.path.join(root, n) for n in sorted(names)]
        else:
            files.append(p)
    h = hashlib.sha256()
    try:
        for f in files:
            st = os.stat(f)
            h.update(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode(
                "utf-8", "surrogateescape"))
    except OSError:
        return None
    return "sha256:" + h.hexdigest()


def _data(args: argparse.Namespace) -> Any:
    """The command's input: ``args.path`` (a file, directory or glob), filtered by
    ``--where`` in the scan when given."""
    where = getattr(args, "where", None)
    if where is None:
        return args.path
    from ._input import _path_dataset

    dataset, _ = _path_dataset(args.path)
    try:
        predicate = pl.sql_expr(where)
    except Exception as e:  # polars' SQL errors have no common base class
        raise UsageError(f"--where {where!r} is not a SQL predicate: {e}") from e
    lf = pl.scan_pyarrow_dataset(dataset).filter(predicate)
    try:
        lf.collect_schema()  # a column the predicate names must be in the data
    except Exception as e:
        raise UsageError(f"--where {where!r}: {str(e).splitlines()[0]}") from e
    return lf


def _scores(items: Sequence[str]) -> dict[str, str]:
    """``--score NAME=COLUMN`` (or ``COLUMN``, named after itself), repeated."""
    models: dict[str, str] = {}
    for item in items:
        name, sep, col = item.partition("=")
        name, col = (name.strip(), col.strip()) if sep else (item.strip(), item.strip())
        if not name or not col:
            raise UsageError(f"--score expects NAME=COLUMN or COLUMN, got {item!r}")
        if name in models:
            raise UsageError(f"--score: the model name {name!r} is given twice")
        models[name] = col
    return models


def _multiclass_score(args: argparse.Namespace, score: str | None) -> Any:
    """A multiclass model's scores: one list column, or K columns given as ``p0,p1,...``."""
    if args.task == "multiclass" and score is not None and "," in score:
        return _names([score])
    return score


def _ranking_args(args: argparse.Namespace) -> dict[str, Any]:
    """``query=``, ``k=`` (the cutoffs), ``gain=``, ``ties=`` and ``empty=`` of ``--query``,
    ``--cutoffs 5,10``, ``--gain``, ``--ties`` and ``--empty`` (only when given: the Python API
    refuses them for another task, naming them)."""
    out: dict[str, Any] = {}
    for name in ("query", "gain", "ties", "empty"):
        if getattr(args, name, None) is not None:
            out[name] = getattr(args, name)
    if getattr(args, "cutoffs", None) is not None:
        names = _names([args.cutoffs])
        if not names or not all(c.isdigit() for c in names):
            raise UsageError(f"--cutoffs expects comma-separated whole numbers, got "
                             f"{args.cutoffs!r}")
        out["k"] = [int(c) for c in names]
    return out


def _ranking_options(p: argparse.ArgumentParser) -> None:
    """``--query``, ``--cutoffs``, ``--gain``, ``--ties``, ``--empty`` (task ranking)."""
    p.add_argument("--query", help="task ranking: the column of the query (or user) of each "
                                   "row; --label is then the relevance")
    p.add_argument("--cutoffs", metavar="K1,K2,...",
                   help="task ranking: the cutoffs k of ndcg@k, map@k, ... (default 10)")
    p.add_argument("--gain", choices=["exponential", "linear"],
                   help="task ranking: the DCG gain 2^rel - 1 (default) or rel")
    p.add_argument("--ties", choices=["average", "stable"],
                   help="task ranking: tied scores averaged over their orderings (default) or "
                        "in input order")
    p.add_argument("--empty", choices=["skip", "zero"],
                   help="task ranking: queries without a relevant item skipped (default) or "
                        "scored 0")


def _multiclass_args(args: argparse.Namespace) -> dict[str, Any]:
    """``classes=`` and ``normalize=`` of ``--classes A,B,C`` and ``--normalize`` (only when
    given: the Python API refuses them for another task, naming them)."""
    out: dict[str, Any] = {}
    if getattr(args, "classes", None) is not None:
        names = _names([args.classes])
        if len(names) < 2:
            raise UsageError(f"--classes expects two or more comma-separated classes, got "
                             f"{args.classes!r}")
        # (Integer classes when every one is an integer: the labels are then integers.)
        out["classes"] = [int(c) for c in names] if all(
            c.lstrip("-").isdigit() for c in names) else names
    if getattr(args, "normalize", None) is not None:
        out["normalize"] = args.normalize
    return out


def _one_score(args: argparse.Namespace, command: str, hint: str = "") -> str:
    """The one ``--score COLUMN`` of a one-model command."""
    if len(args.score or []) != 1:
        raise UsageError(f"{command} takes one --score COLUMN{hint}")
    return str(args.score[0])


def _names(items: Sequence[str] | None) -> list[str]:
    """Repeatable, comma-separated names (``--gate a,b --gate c``)."""
    return [x.strip() for item in items or [] for x in item.split(",") if x.strip()]


def _slices(args: argparse.Namespace) -> list[_evaluate.SliceLike]:
    slices: list[_evaluate.SliceLike] = [_parse_slice(s) for s in args.slice or []]
    return slices + [_parse_bins(b) for b in args.bins or []]


def _compare_cmd(args: argparse.Namespace) -> int:
    """``assay compare PATH --label Y --score old=P --score new=Q [--gate METRIC ...]``."""
    from ._compare import compare

    models = _scores(args.score or [])
    if len(models) < 2:
        raise UsageError("compare needs at least two --score NAME=COLUMN")
    gate = _names(args.gate)
    if args.margin is not None and not gate:
        raise UsageError("--margin applies to a --gate")
    metrics = _names([args.metrics]) if args.metrics else None
    if gate:
        if metrics is None:  # the defaults, plus gate metrics computed only when named
            metrics = list(_evaluate._default_metrics(args.task))
        metrics += [g for g in gate if g not in metrics]
    fmt = _format(args)
    cmp = compare(_data(args), label=args.label, scores=models, task=args.task,
                  slices=_slices(args), metrics=metrics, reference=args.reference,
                  threshold=args.threshold, weight=args.weight,
                  min_slice_size=args.min_slice_size, nan_policy=args.nan_policy,
                  bootstrap=args.bootstrap, ci=args.ci, ci_method=args.ci_method,
                  seed=args.seed, row_id=args.row_id, correction=args.correction,
                  max_slices=args.max_slices, **_multiclass_args(args))
    if not gate:
        _output(cmp, fmt, args)
        return 0
    try:
        table = cmp.assert_not_worse(gate, margin=args.margin or 0.0,
                                     correction=args.correction,
                                     min_slice_size=args.min_slice_size)
        verdict, code = None, 0
    except RegressionDetected as e:
        table, verdict, code = e.table, str(e), EXIT_REGRESSION
    _output(table, fmt, args)
    if verdict is not None:
        print(f"assay: regression: {escape(verdict)}", file=sys.stderr)
    return code


def _reliability_cmd(args: argparse.Namespace) -> int:
    from ._reliability import reliability

    fmt = _format(args)
    table = reliability(_data(args), label=args.label, score=_one_score(args, "reliability"),
                        n_bins=args.n_bins,
                        strategy=args.strategy, slices=_slices(args), weight=args.weight,
                        ci=args.ci, nan_policy=args.nan_policy, max_slices=args.max_slices)
    _output(_Framed(table), fmt, args)
    return 0


def _discover_cmd(args: argparse.Namespace) -> int:
    from ._discovery import discover_regressions, discover_slices

    features: list[str | _evaluate.Bins] = [*_names(args.feature)]
    features += [_parse_bins(b) for b in args.bins or []]
    if not features:
        raise UsageError("discover needs at least one --feature (or --bins)")
    fmt = _format(args)
    common = dict(label=args.label, features=features, task=args.task, error=args.error,
                  k=args.k, max_level=args.max_level, min_support=args.min_support,
                  method=args.method, nan_policy=args.nan_policy)
    if args.command == "discover":
        score = _one_score(args, "discover", " (discover-regressions compares two models)")
        output = {"score": score} if args.task != "regression" else {"prediction": score}
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", NothingFoundWarning)
            table = discover_slices(_data(args), **output, **common, **_multiclass_args(args))
        for w in caught:  # why nothing was found: a note, not a Python warning dump
            print(f"assay: note: {escape(str(w.message))}", file=sys.stderr)
    else:
        models = _scores(args.score or [])
        if len(models) != 2:
            raise UsageError("discover-regressions compares two models: --score "
                             "NAME=COLUMN twice (the first is the reference)")
        table = discover_regressions(_data(args), scores=models, correction=args.correction,
                                     **common)
    # (The predicates, a list of structs, have no CSV form; the slice label says it all.)
    shown = table.drop("predicates") if fmt in ("table", "csv") else table
    _output(_Framed(shown), fmt, args)
    return 0


class _Framed:
    """A polars frame with the result interface ``_output`` writes (``table``,
    ``to_json``)."""

    def __init__(self, table: pl.DataFrame) -> None:
        self.table = table

    def to_json(self) -> str:
        return json.dumps({"columns": self.table.columns, "rows": self.table.to_dicts()},
                          default=str)


def _save_state(args: argparse.Namespace, spec: Spec) -> int:
    """``assay evaluate ... --save-state FILE``: the partial state of the file's rows."""
    if args.out is not None or args.format is not None:
        raise UsageError("--save-state writes a partial state, not a report: drop --out and "
                         "--format (assay finalize STATE... -o REPORT writes the report)")
    for f in spec.slices:
        for b in f if isinstance(f, tuple) else (f,):
            if isinstance(b, _evaluate.Bins) and b.edges is None:
                raise UsageError(
                    f"--bins {b.column}:{b.n} fits its edges to this file's rows, so every "
                    "shard saved with --save-state would bin differently: give explicit "
                    f"edges, --bins {b.column}:E1,E2,... (e.g. {b.column}:18,30,45,65)"
                )
    _check_out(args.save_state, "--save-state")
    state = spec.accumulate(_data(args), row_offset=args.row_offset or 0,
                            max_slices=args.max_slices)
    blob = state.to_bytes()
    _write_bytes(args.save_state, blob)
    print(f"assay: saved the state of {state.rows:,} rows ({len(blob):,} bytes) to "
          f"{escape(args.save_state)}", file=sys.stderr)
    return 0


def _write_bytes(path: str, blob: bytes) -> None:
    """Writes ``blob`` to ``path`` through a temporary file, so that a reader never sees a
    partly written state."""
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                       f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_OUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".json": "json"}


def _read_bytes(path: str, what: str, error: type[Exception]) -> bytes:
    """The bytes of file ``path``; ``error`` naming ``what`` it is when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise error(f"cannot read the {what} {path!r}: {e.strerror or e}") from e


def _read_state(path: str) -> PartialState:
    """The state in file ``path`` (DataError naming the file when it cannot be had)."""
    blob = _read_bytes(path, "state file", DataError)
    try:
        return PartialState.from_bytes(blob)
    except StateFormatError as e:
        raise DataError(f"{path!r} is not a valid assay state: {e}") from e


def _finalize_cmd(args: argparse.Namespace) -> int:
    """``assay finalize STATE... [-o OUT]``: merge the states and write the report."""
    fmt = "table"
    if args.out is not None:
        _check_out(args.out, "-o/--out")
        fmt = _OUT_FORMATS.get(os.path.splitext(args.out)[1].lower(), "")
        if not fmt:
            raise UsageError(f"-o {args.out!r}: the extension names no report format; use "
                             ".parquet (or .pq), .csv or .json")
    if not args.states:
        raise UsageError("finalize needs at least one state file")
    states = [_read_state(p) for p in args.states]
    first = states[0]
    for path, s in zip(args.states[1:], states[1:], strict=True):
        if s.spec != first.spec:
            raise DataError(
                f"{path!r} was saved with another spec than {args.states[0]!r}: they differ "
                f"in {_spec_diff(first.spec._json, s.spec._json)}"
            )
    result = merge(states).finalize()
    if fmt == "table":
        _print_table(result.table)
    else:
        _write_result(result, fmt, args.out, _metadata(args))
    dropped = getattr(result, "dropped", 0)
    if dropped:
        print(f"({dropped} rows dropped by nan_policy=drop)", file=sys.stderr)
    return 0


def _write_result(result: Any, fmt: str, out: str | None,
                  meta: dict[str, Any] | None = None) -> None:
    """A report (or comparison, or frame) as CSV, JSON or Parquet, to ``out`` or stdout; JSON
    gets ``meta``'s keys too."""
    table = result if isinstance(result, pl.DataFrame) else result.table
    if fmt == "csv":
        if out:
            table.write_csv(out)  # a data file: the values as they are
        else:
            sys.stdout.write(escape_frame(table).write_csv())
    elif fmt == "json":
        text = (_Framed(table) if isinstance(result, pl.DataFrame) else result).to_json()
        if meta:
            text = json.dumps({**json.loads(text), **meta})
        _emit(text + "\n", out)  # JSON escapes control characters itself
    else:
        table.write_parquet(out)


def _emit(text: str, out: str | None) -> None:
    if out:
        with open(out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


def _report_cmd(args: argparse.Namespace) -> int:
    """``assay report RUN [-o PAGE.html] [--title T]``: the HTML page of a saved run."""
    if args.out is not None:
        _check_out(args.out, "-o/--out")
    if not os.path.isfile(args.run):
        raise DataError(f"cannot read the saved run {args.run!r}: "
                        + ("it is a directory" if os.path.isdir(args.run) else "no such file"))
    from . import load
    from .html import render

    page = render(load(args.run), title=args.title)
    if args.out is not None:
        _write_bytes(args.out, page.encode("utf-8"))
        return 0
    # The page is UTF-8 (it says so) whatever the terminal's encoding: write bytes where the
    # stream has them.
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(page)
    else:
        sys.stdout.flush()
        buffer.write(page.encode("utf-8"))
        buffer.flush()
    return 0


def _multiclass_options(p: argparse.ArgumentParser) -> None:
    """``--classes`` and ``--normalize`` (task multiclass)."""
    p.add_argument("--classes", metavar="A,B,...",
                   help="task multiclass: the classes in score order (default: integer labels "
                        "0..K-1; classes that are all integers are integer label values); "
                        "--score names a list column, or K columns as p0,p1,...")
    p.add_argument("--normalize", choices=["raise", "divide", "softmax"],
                   help="task multiclass: scores that do not sum to 1 raise (default), are "
                        "divided by their sum, or are logits (softmax)")


def _input_options(p: argparse.ArgumentParser, score_help: str,
                   max_slices: bool = True, multiclass: bool = True) -> None:
    """The options every data command shares (``--max-slices`` where slices are reported)."""
    p.add_argument("path", nargs="+", help="a Parquet, CSV or Arrow IPC file, a directory "
                                           "(Hive partitions included) or a glob (repeatable)")
    p.add_argument("--label", required=True)
    p.add_argument("--score", action="append", help=score_help)
    # (Ranking is on `assay evaluate` only: the other commands have no --query.)
    p.add_argument("--task", choices=[t for t in _evaluate.TASKS if t != "ranking"],
                   default="binary")
    if multiclass:
        _multiclass_options(p)
    p.add_argument("--where", metavar="EXPR",
                   help="keep the rows where this SQL predicate holds, e.g. \"day >= 3\"")
    p.add_argument("--bins", action="append",
                   help="COLUMN:N quantile bins, or COLUMN:E1,E2,... explicit edges "
                        "(repeatable)")
    p.add_argument("--nan-policy", choices=["raise", "drop"], default="raise")
    if max_slices:
        p.add_argument("--max-slices", type=_max_slices_arg, default=_evaluate.MAX_SLICES,
                       help=f"the most slices one --slice may make (default "
                            f"{_evaluate.MAX_SLICES}; none: no limit)")
    p.add_argument("--format", choices=["table", "csv", "json", "parquet"],
                   help="table (default), csv, json (with the version, arguments and input "
                        "fingerprint) or parquet")
    p.add_argument("-o", "--out", help="write the result to this file instead of stdout")


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = _Parser(
        prog="assay", description="Sliced model evaluation.",
        epilog="Exit codes: 0 success, 1 regression detected (compare --gate), 2 usage error, "
               "3 data or engine error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"assay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    d = sub.add_parser("demo", help="evaluate a generated churn model and print the report")
    d.add_argument("--rows", type=_int_in(1, MAX_DEMO_ROWS), default=300_000,
                   help=f"rows to generate, in [1, {MAX_DEMO_ROWS}] (default 300000)")
    d.add_argument("--seed", type=_int_in(0, U64_MAX), default=0)
    e = sub.add_parser("evaluate", help="sliced metrics of one model")
    e.add_argument("path", nargs="+", help="a Parquet, CSV or Arrow IPC file, a directory "
                                           "(Hive partitions included) or a glob (repeatable)")
    e.add_argument("--label", required=True)
    e.add_argument("--score", help="the score column (task binary)")
    e.add_argument("--task", choices=list(_evaluate.TASKS), default="binary")
    e.add_argument("--prediction", help="the prediction column (task regression)")
    _multiclass_options(e)
    _ranking_options(e)
    e.add_argument("--where", metavar="EXPR",
                   help="keep the rows where this SQL predicate holds, e.g. \"day >= 3\"")
    e.add_argument("--slice", action="append", help="a column, or a cross a,b (repeatable)")
    e.add_argument("--bins", action="append",
                   help="COLUMN:N quantile bins, or COLUMN:E1,E2,... explicit edges "
                        "(repeatable)")
    e.add_argument("--metrics", help="comma-separated metric names (default: all)")
    e.add_argument("--threshold", type=float, default=0.5)
    e.add_argument("--weight")
    e.add_argument("--min-slice-size", type=_int_in(0, U64_MAX), default=0)
    e.add_argument("--nan-policy", choices=["raise", "drop"], default="raise")
    e.add_argument("--max-slices", type=_max_slices_arg, default=_evaluate.MAX_SLICES,
                   help=f"the most slices one --slice may make (default "
                        f"{_evaluate.MAX_SLICES}; none: no limit)")
    e.add_argument("--auc", choices=["exact", "binned", "sketch"], default="exact")
    e.add_argument("--auc-bins", type=_int_in(1, _evaluate.MAX_BINS), default=4096,
                   help="histogram bins of --auc binned (default 4096)")
    e.add_argument("--auc-max-runs", type=_int_in(_evaluate.MIN_RUNS, _evaluate.MAX_RUNS),
                   help="run budget of --auc sketch (default: assay's)")
    e.add_argument("--bootstrap", type=_int_in(2, _evaluate.MAX_BOOTSTRAP),
                   help="bootstrap replicates for intervals (1000 is usual)")
    e.add_argument("--ci", type=float, default=0.95, help="confidence level (default 0.95)")
    e.add_argument("--ci-method", choices=["percentile", "basic", "bca", "analytic"])
    e.add_argument("--seed", type=_int_in(0, U64_MAX), default=0)
    e.add_argument("--row-id", help="integer column identifying each row (bootstrap)")
    e.add_argument("--calibration-bins", type=_int_in(1, _evaluate.MAX_CALIBRATION_BINS),
                   default=15)
    e.add_argument("--calibration-strategy", choices=["uniform", "quantile"], default="uniform")
    e.add_argument("--format", choices=["table", "csv", "json", "parquet"],
                   help="table (default), csv, json (with the version, arguments and input "
                        "fingerprint) or parquet")
    e.add_argument("-o", "--out", help="write the report to this file instead of stdout")
    e.add_argument("--save-state", metavar="FILE",
                   help="write the partial state of these rows to FILE instead of a report "
                        "(merge states with assay finalize)")
    e.add_argument("--row-offset", type=_int_in(0, U64_MAX), metavar="K",
                   help="with --save-state: the global position of this file's first row "
                        "(bootstrap replicate weights follow it)")

    c = sub.add_parser("compare", help="compare models on the same rows (paired bootstrap), "
                                       "optionally as a CI gate")
    _input_options(c, "NAME=COLUMN of a model's scores (repeat; the first is the reference "
                      "unless --reference)")
    c.add_argument("--reference", help="the name of the reference model")
    c.add_argument("--slice", action="append", help="a column, or a cross a,b (repeatable)")
    c.add_argument("--metrics", help="comma-separated metric names (default: all)")
    c.add_argument("--threshold", type=float, default=0.5)
    c.add_argument("--weight")
    c.add_argument("--min-slice-size", type=_int_in(0, U64_MAX), default=0,
                   help="slices with fewer rows are left out of the gate (listed as skipped)")
    c.add_argument("--bootstrap", type=_int_in(2, _evaluate.MAX_BOOTSTRAP), default=1000)
    c.add_argument("--ci", type=float, default=0.95)
    c.add_argument("--ci-method", choices=["percentile", "basic", "bca"], default="percentile")
    c.add_argument("--seed", type=_int_in(0, U64_MAX), default=0)
    c.add_argument("--row-id", help="integer column identifying each row")
    c.add_argument("--correction", choices=["simultaneous", "holm", "bh", "none"],
                   default="simultaneous")
    c.add_argument("--gate", action="append", metavar="METRIC",
                   help="fail (exit 1) when a model is worse than the reference on METRIC "
                        "(repeatable, comma-separated) in any slice; prints the gate's table")
    c.add_argument("--margin", type=float, help="tolerated worsening of a --gate metric")

    r = sub.add_parser("reliability", help="the reliability table (calibration per bin)")
    _input_options(r, "the score column", multiclass=False)
    r.add_argument("--slice", action="append", help="a column, or a cross a,b (repeatable)")
    r.add_argument("--n-bins", type=_int_in(1, 100_000), default=15)
    r.add_argument("--strategy", choices=["uniform", "quantile"], default="uniform")
    r.add_argument("--weight")
    r.add_argument("--ci", type=float, default=0.95)

    commands = {"demo": d, "evaluate": e, "compare": c, "reliability": r}
    for name, what, score_help in (
            ("discover", "the slices where the model's error is much higher than average",
             "the score (or, --task regression, prediction) column"),
            ("discover-regressions", "the slices where a new model got worse than the "
             "reference (paired errors)", "NAME=COLUMN of each model, twice (reference "
             "first)")):
        q = sub.add_parser(name, help=what)
        _input_options(q, score_help, max_slices=False, multiclass=name == "discover")
        q.add_argument("--feature", action="append",
                       help="a column slices are made of (repeatable, comma-separated)")
        q.add_argument("--error", help="log_loss (default), zero_one, squared; absolute or "
                                       "squared with --task regression; log_loss or zero_one "
                                       "with --task multiclass")
        q.add_argument("--k", type=_int_in(1, 1_000_000), default=10)
        q.add_argument("--max-level", type=_int_in(1, 1_000), default=3)
        q.add_argument("--min-support", type=_support, default=0.01,
                       help="smallest slice: a fraction of the rows (< 1) or a row count")
        q.add_argument("--method", choices=["sliceline", "beam"], default="sliceline")
        if name == "discover-regressions":
            q.add_argument("--correction", choices=["holm", "bh", "none"], default="holm")
        commands[name] = q

    f = sub.add_parser("finalize", help="merge partial states (--save-state) into a report")
    f.add_argument("states", nargs="*", metavar="STATE",
                   help="state files written by assay evaluate --save-state")
    f.add_argument("-o", "--out",
                   help="write the report to this file: .parquet/.pq, .csv or .json "
                        "(default: a table on stdout)")
    commands["finalize"] = f

    h = sub.add_parser("report", help="a self-contained HTML page of a saved run")
    h.add_argument("run", metavar="RUN",
                   help="a run saved by rep.save(...) / cmp.save(...) (*.assay.parquet)")
    h.add_argument("-o", "--out", help="write the page to this file (default: stdout)")
    h.add_argument("--title", help="the page's title (default: what the run is)")
    commands["report"] = h

    j = sub.add_parser(
        "run", help="run the command a job file (TOML) describes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Runs the command a TOML job file describes: `command`, `data` (a path, "
                    "glob or directory,\nor a list of them) and the command's options under "
                    "their Python names. Relative paths\nare relative to the job file.",
        epilog="example:\n"
               '  command = "compare"\n'
               '  data = "preds/day=*/"\n'
               '  label = "y"\n'
               '  scores = { prod = "p_old", cand = "p_new" }\n'
               '  slices = ["country", ["country", "device"]]\n'
               '  bins = { age = [18, 30, 45, 65] }\n'
               '  bootstrap = 1000\n'
               '  gate = ["roc_auc"]\n'
               '  margin = 0.005\n'
               '  format = "json"\n'
               '  out = "gate.json"\n')
    j.add_argument("job", metavar="JOB", help="a TOML job file (see the README)")
    j.add_argument("--dry-run", action="store_true",
                   help="print the equivalent command line and stop")
    commands["run"] = j
    return parser, commands


JOB_COMMANDS = ("evaluate", "compare", "reliability", "discover", "discover-regressions")


def _scalar(value: Any, key: str, where: str) -> str:
    """A job file's scalar value as a command-line word."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UsageError(f"{where}: {key} must be a string or a number, got "
                         f"{type(value).__name__} {value!r}")
    return str(value)


def _strings(value: Any, key: str, where: str) -> list[str]:
    """A job file's string, or list of strings (names: without commas, which the command
    line reads as separators)."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(x, str) for x in items):
        raise UsageError(f"{where}: {key} must be a string or a list of strings, got {value!r}")
    if key != "data":
        for x in items:
            if "," in x:
                raise UsageError(f"{where}: {key}: {x!r} holds a comma, which the command line "
                                 "reads as a separator; name such a column from the Python API")
    return items


def job_argv(path: str) -> list[str]:
    """The command line a job file stands for (what ``assay run JOB`` runs).

    A job file is TOML: ``command`` (one of ``evaluate``, ``compare``, ``reliability``,
    ``discover``, ``discover-regressions``), ``data`` (a path, glob or directory, or a list of
    them) and the command's options under their Python names (``min_slice_size``, not
    ``--min-slice-size``). ``slices`` is a list of columns and crosses (``[["country",
    "device"]]``); ``bins`` a table of ``column = N`` or ``column = [edges]``; ``scores`` a
    table of ``name = "column"`` (``score`` a column); ``features``, ``metrics`` and ``gate``
    lists of names. Relative paths (``data``, ``out``, ``save_state``) are relative to the job
    file, so a scheduler can run it from anywhere. Raises :class:`UsageError` on anything
    else (an unknown key names the keys that command takes)."""
    return _job(path)[0]


def _job(path: str) -> tuple[list[str], str]:
    """:func:`job_argv`, and the hash of the bytes it read."""
    import tomllib

    where = f"job file {path!r}"
    raw = _read_bytes(path, "job file", UsageError)
    try:
        job = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{where} is not valid TOML: {e}") from e
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    command = job.pop("command", None)
    if command not in JOB_COMMANDS:
        raise UsageError(f"{where}: command must be one of {', '.join(JOB_COMMANDS)}, got "
                         f"{command!r}")
    if "data" not in job:
        raise UsageError(f"{where}: data (a path, glob or directory, or a list of them) is "
                         "missing")
    base = os.path.dirname(os.path.abspath(path))

    def here(p: str) -> str:
        p = os.path.expanduser(p)
        return os.path.normpath(p if os.path.isabs(p) else os.path.join(base, p))

    argv = [command, *(here(p) for p in _strings(job.pop("data"), "data", where))]
    known = {a.dest: a for a in _parser()[1][command]._actions
             if a.option_strings and a.dest not in ("help", "slice", "feature", "score")}
    allowed = _JOB_KEYS[command] | set(known)
    for key, value in job.items():
        if key not in allowed:
            raise UsageError(f"{where}: unknown key {key!r} for command {command}; it takes "
                             f"{', '.join(sorted(allowed))}")
        if key == "slices":
            if not isinstance(value, list):
                raise UsageError(f"{where}: slices must be a list of columns and crosses "
                                 f"([\"a\", [\"a\", \"b\"]]), got {value!r}")
            for item in value:
                argv.append("--slice=" + ",".join(_strings(item, "a slice", where)))
        elif key == "bins":
            if not isinstance(value, dict):
                raise UsageError(f"{where}: bins must be a table of column = N or column = "
                                 f"[edges], got {value!r}")
            for col, b in value.items():
                if isinstance(b, list):  # edges
                    if len(b) < 2:
                        raise UsageError(f"{where}: bins.{col}: edges need at least two "
                                         f"numbers, got {b!r} (bins.{col} = N: N quantile bins)")
                    spec = ",".join(_scalar(x, f"bins.{col}", where) for x in b)
                elif isinstance(b, int) and not isinstance(b, bool):
                    spec = str(b)
                else:
                    raise UsageError(f"{where}: bins.{col} must be a number of bins or a list "
                                     f"of edges, got {b!r}")
                argv.append(f"--bins={col}:{spec}")
        elif key == "scores":
            if not isinstance(value, dict):
                raise UsageError(f"{where}: scores must be a table of name = \"column\", got "
                                 f"{value!r}")
            for name, col in value.items():
                if "=" in name:
                    raise UsageError(f"{where}: scores: a model name cannot hold '=', got "
                                     f"{name!r}")
                argv.append(f"--score={name}={_scalar(col, f'scores.{name}', where)}")
        elif key == "score":
            # (A multiclass model's K columns: a list.)
            word = ",".join(_strings(value, key, where)) if isinstance(value, list) else \
                _scalar(value, key, where)
            argv.append(f"--score={word}")
        elif key == "classes":
            if not isinstance(value, list) or not all(
                    isinstance(x, (str, int)) and not isinstance(x, bool) for x in value):
                raise UsageError(f"{where}: classes must be a list of class names or integers, "
                                 f"got {value!r}")
            argv.append("--classes=" + ",".join(_strings([str(x) for x in value], key, where)))
        elif key == "features":
            argv += [f"--feature={c}" for c in _strings(value, key, where)]
        elif key in ("metrics", "gate"):
            argv.append(f"--{key}=" + ",".join(_strings(value, key, where)))
        else:
            action = known[key]
            if action.nargs == 0:  # a flag
                if not isinstance(value, bool):
                    raise UsageError(f"{where}: {key} must be true or false, got {value!r}")
                argv += [action.option_strings[-1]] if value else []
                continue
            word = _scalar(value, key, where)
            # (--opt=value: a value may start with '-', e.g. a column named "-y".)
            argv.append(f"{action.option_strings[-1]}="
                        f"{here(word) if key in ('out', 'save_state') else word}")
    return argv, digest


# The list-valued keys each job command takes (besides its options).
_JOB_KEYS = {
    "evaluate": {"slices", "bins", "score", "metrics", "classes"},
    "compare": {"slices", "bins", "scores", "metrics", "gate", "classes"},
    "reliability": {"slices", "bins", "score"},
    "discover": {"bins", "score", "features", "classes"},
    "discover-regressions": {"bins", "scores", "features"},
}


def _error(message: str, code: int) -> int:
    print(f"assay: error: {escape(message)}", file=sys.stderr)
    return code


def _run(argv: Sequence[str] | None) -> int:
    parser, commands = _parser()
    args = parser.parse_args(argv)
    global _ARGV
    _ARGV = list(sys.argv[1:] if argv is None else argv)
    if isinstance(getattr(args, "path", None), list) and len(args.path) == 1:
        args.path = args.path[0]
    if args.command == "run":
        try:
            job_args, digest = _job(args.job)
        except UsageError as err:
            commands["run"].print_usage(sys.stderr)
            return _error(str(err), EXIT_USAGE)
        if args.dry_run:
            import shlex

            print(shlex.join(["assay", *job_args]))
            return 0
        global _JOB
        _JOB = {"path": os.path.abspath(args.job), "sha256": digest}
        note = (f"assay: note: the options came from the job file {escape(args.job)!r} "
                "(assay run --dry-run JOB prints them)")
        try:
            code = _run(job_args)
        except SystemExit as e:  # argparse's own usage errors
            if e.code == EXIT_USAGE:
                print(note, file=sys.stderr)
            raise
        if code == EXIT_USAGE:
            print(note, file=sys.stderr)
        return code
    run = {"demo": _demo, "evaluate": _evaluate_cmd, "compare": _compare_cmd,
           "reliability": _reliability_cmd, "discover": _discover_cmd,
           "discover-regressions": _discover_cmd, "finalize": _finalize_cmd,
           "report": _report_cmd}[args.command]
    try:
        return run(args)
    except UsageError as err:
        commands[args.command].print_usage(sys.stderr)
        return _error(str(err), EXIT_USAGE)
    except DataError as err:
        return _error(str(err), EXIT_DATA)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``assay`` command; returns the exit code (see the module docs)."""
    global _JOB
    _JOB = None  # (set by assay run for this call only)
    try:
        return _run(argv)
    except SystemExit as e:  # argparse: --help (0) and usage errors (2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
    except KeyboardInterrupt:
        print("assay: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `| head`): stop quietly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return EXIT_BROKEN_PIPE
    except (InvalidArgumentError, ColumnNotFoundError) as err:
        return _error(str(err), EXIT_USAGE)
    except AssayError as err:
        return _error(str(err), EXIT_DATA)
    except OSError as err:
        return _error(str(err), EXIT_DATA)
    except MemoryError:
        return _error("out of memory", EXIT_DATA)
    except Exception as err:  # a bug: still one line, never a traceback
        return _error(f"internal error: {type(err).__name__}: {err} (please report this)",
                      EXIT_DATA)


if __name__ == "__main__":
    sys.exit(main())
