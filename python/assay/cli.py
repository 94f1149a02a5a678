"""The ``assay`` command line: ``assay demo`` and ``assay evaluate PATH ...``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import polars as pl

from . import _evaluate
from .errors import AssayError

SUMMARY = ["n", "base_rate", "accuracy", "precision", "recall", "f1", "roc_auc",
           "average_precision", "log_loss", "brier"]


def _print_table(df: pl.DataFrame) -> None:
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, float_precision=4,
                   tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True,
                   fmt_str_lengths=60):
        print(df)


def _demo(args: argparse.Namespace) -> int:
    from .demo import make_data

    data = make_data(args.rows, args.seed)
    t0 = time.perf_counter()
    rep = _evaluate.evaluate(
        data, label="churned", score="p_churn",
        slices=["country", "device", ("country", "device"), _evaluate.bins("age", 4), "plan"],
        min_slice_size=200,
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
    print(f"\nWorst slices by ROC-AUC (overall {overall:.4f}), crosses included:")
    _print_table(worst)
    return 0


def _parse_bins(spec: str) -> _evaluate.Bins:
    col, _, n = spec.rpartition(":")
    if not col or not n.isdigit():
        raise SystemExit(f"--bins expects COLUMN:N (e.g. age:5), got {spec!r}")
    return _evaluate.bins(col, int(n))


def _evaluate_cmd(args: argparse.Namespace) -> int:
    slices: list[_evaluate.SliceLike] = []
    for s in args.slice or []:
        parts = tuple(p.strip() for p in s.split(",") if p.strip())
        slices.append(parts[0] if len(parts) == 1 else parts)
    slices += [_parse_bins(b) for b in args.bins or []]
    rep = _evaluate.evaluate(
        args.path, label=args.label, score=args.score, slices=slices,
        metrics=args.metrics.split(",") if args.metrics else None,
        threshold=args.threshold, weight=args.weight, min_slice_size=args.min_slice_size,
        nan_policy=args.nan_policy, auc=args.auc,
    )
    fmt = args.format
    if fmt == "parquet" and not args.out:
        raise SystemExit("--format parquet needs --out FILE")
    if fmt == "table":
        if args.out:
            with open(args.out, "w") as f:
                with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200):
                    f.write(str(rep.table) + "\n")
        else:
            _print_table(rep.table)
        if rep.dropped:
            print(f"({rep.dropped} rows dropped by nan_policy=drop)", file=sys.stderr)
    elif fmt == "csv":
        text = rep.table.write_csv()
        _emit(text, args.out)
    elif fmt == "json":
        _emit(rep.to_json() + "\n", args.out)
    else:
        rep.table.write_parquet(args.out)
    return 0


def _emit(text: str, out: str | None) -> None:
    if out:
        with open(out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``assay`` command."""
    parser = argparse.ArgumentParser(prog="assay", description="Sliced model evaluation.")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="evaluate a generated churn model and print the report")
    d.add_argument("--rows", type=int, default=300_000)
    d.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("evaluate", help="evaluate a Parquet, CSV or Arrow IPC file")
    e.add_argument("path")
    e.add_argument("--label", required=True)
    e.add_argument("--score", required=True)
    e.add_argument("--slice", action="append", help="a column, or a cross a,b (repeatable)")
    e.add_argument("--bins", action="append", help="COLUMN:N quantile bins (repeatable)")
    e.add_argument("--metrics", help="comma-separated metric names (default: all)")
    e.add_argument("--threshold", type=float, default=0.5)
    e.add_argument("--weight")
    e.add_argument("--min-slice-size", type=int, default=0)
    e.add_argument("--nan-policy", choices=["raise", "drop"], default="raise")
    e.add_argument("--auc", choices=["exact", "binned"], default="exact")
    e.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    e.add_argument("--out")
    args = parser.parse_args(argv)
    try:
        return _demo(args) if args.command == "demo" else _evaluate_cmd(args)
    except AssayError as err:
        print(f"assay: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
