"""``assay.simpson``: flags Simpson's paradox, an aggregate comparison that reverses within
strata."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

from . import _common as c
from ._text import escape, escape_frame
from .errors import InvalidArgumentError
from .report import ArrowResult, frame_to_arrow

__all__ = ["simpson", "SimpsonResult"]

_O, _G, _S, _W, _K = "__assay_o", "__assay_g", "__assay_s", "__assay_w", "__assay_k"


class SimpsonResult(ArrowResult):
    """The outcome of :func:`simpson`. ``to_arrow()``/``to_dict()``/``to_json()`` give
    ``table`` without polars (safe in a forked child).

    Attributes
    ----------
    flagged : bool
        True when the group that is better on aggregate is worse in every stratum
        (``rule="all"``) or in more than half of the strata where both groups occur
        (``rule="majority"``).
    table : polars.DataFrame
        ``stratum`` (``"overall"`` for the aggregate row, first), then per group ``<g>_n``
        (rows), ``<g>_successes`` and ``<g>_rate``, then ``delta`` (second group's rate minus
        the first's), ``better`` (the group with the higher rate; null on a tie or where a
        group is absent) and ``reversed`` (the stratum favours the group that loses on
        aggregate).
    groups : tuple[str, str]
        The two groups, in the order of the table's columns.
    aggregate_better : str or None
        The group with the higher aggregate rate (None on a tie).
    reversed_strata : list[str]
        The strata whose better group is not the aggregate's.
    compared_strata : int
        Strata in which both groups occur.
    adjusted_delta : float or None
        The difference of rates (second minus first) standardized to the pooled stratum
        sizes: ``sum_s (n_s / n) (rate_2s - rate_1s)`` over the compared strata. When it has
        the opposite sign to the aggregate ``delta``, the strata's composition explains the
        aggregate gap.
    """

    def __init__(self, flagged: bool, table: pl.DataFrame, groups: tuple[str, str],
                 aggregate_better: str | None, reversed_strata: list[str],
                 compared_strata: int, adjusted_delta: float | None, rule: str,
                 outcome: str) -> None:
        self.flagged = flagged
        self.table = table
        self._arrow = frame_to_arrow(table)
        self.groups = groups
        self.aggregate_better = aggregate_better
        self.reversed_strata = reversed_strata
        self.compared_strata = compared_strata
        self.adjusted_delta = adjusted_delta
        self.rule = rule
        self.outcome = outcome

    def __bool__(self) -> bool:
        return self.flagged

    def __repr__(self) -> str:
        a, b = self.groups
        agg = self.table.row(0, named=True)
        rates = (f"{agg[f'{a}_rate']:.1%} for {a!r} vs {agg[f'{b}_rate']:.1%} for {b!r}"
                 if agg[f"{a}_rate"] is not None and agg[f"{b}_rate"] is not None else "")
        if self.aggregate_better is None:
            head = f"no aggregate difference in {escape(self.outcome)} ({rates})"
        else:
            other = b if self.aggregate_better == a else a
            strata = ", ".join(escape(s) for s in self.reversed_strata[:10]) + (
                " ..." if len(self.reversed_strata) > 10 else "")
            head = (f"{self.aggregate_better!r} has the higher {escape(self.outcome)} rate on "
                    "aggregate "
                    f"({rates}), but {other!r} is better in {len(self.reversed_strata)} of "
                    f"{self.compared_strata} strata" + (f": {strata}" if strata else ""))
        verdict = "REVERSAL FLAGGED (Simpson's paradox)" if self.flagged else "no reversal"
        adj = "" if self.adjusted_delta is None else (
            f"\nstratum-adjusted delta ({escape(b)} - {escape(a)}): {self.adjusted_delta:+.4g}")
        return f"assay.simpson: {verdict}\n{head}{adj}\n{escape_frame(self.table)}"


def simpson(
    data: Any,
    *,
    outcome: str | Mapping[str, str],
    stratum: str,
    group: str | None = None,
    groups: Sequence[Any] | None = None,
    weight: str | None = None,
    rule: Literal["majority", "all"] = "majority",
) -> SimpsonResult:
    """Flag Simpson's paradox: one group better on aggregate, the other better within strata.

    Compares the success rate of ``outcome`` (0/1) between two groups overall and within each
    stratum. An aggregate can lie when the groups are spread differently over strata with
    different base rates: the kidney-stone treatment that is better for small *and* for large
    stones can look worse overall because it was given the harder cases.

    Two layouts:

    - **long** -- ``outcome="success", group="treatment"``: one row per case, ``group`` says
      which of the two groups it belongs to (``groups=(a, b)`` picks two of several).
    - **wide** -- ``outcome={"A": "a_correct", "B": "b_correct"}`` without ``group``: two
      outcome columns on the same rows. This is how to compare **two models' accuracy across
      strata**: make a 0/1 correctness column per model (``pred == label``) and pass them as
      the outcome mapping; the models are the groups.

    Parameters
    ----------
    data
        Any input :func:`assay.evaluate` accepts; it is read into memory.
    outcome : str or mapping
        A 0/1 (or bool) column, or ``{group name: column}`` for two groups on the same rows.
    stratum : str
        The column that defines the strata (any type; null is a stratum of its own).
    group : str, optional
        The group column (long layout).
    groups : sequence, optional
        The two groups to compare, in this order (default: the two distinct values, sorted).
    weight : str, optional
        Column of positive weights: rates and successes are weighted (``<g>_n`` stays a row
        count).
    rule : {"majority", "all"}
        Flag when the aggregate loser is better in more than half of the strata where both
        groups occur (``"majority"``), or in every one of them (``"all"``). Tied strata count
        as not reversed.

    Returns
    -------
    SimpsonResult
        ``.flagged``, ``.table`` (per-stratum rates and counts, aggregate row first),
        ``.reversed_strata``, ``.adjusted_delta``, and a readable ``repr``.

    Examples
    --------
    Kidney stones (Charig et al. 1986): treatment A succeeds in 81/87 small and 192/263 large
    stones, B in 234/270 and 55/80; A is better for both sizes, B is better overall.

    >>> import assay, polars as pl
    >>> cells = [("A", "small", 87, 81), ("A", "large", 263, 192),
    ...          ("B", "small", 270, 234), ("B", "large", 80, 55)]
    >>> df = pl.concat([pl.DataFrame({"treatment": [t] * n, "size": [s] * n,
    ...                               "success": [1] * k + [0] * (n - k)})
    ...                 for t, s, n, k in cells])
    >>> res = assay.simpson(df, outcome="success", group="treatment", stratum="size")
    >>> res.flagged, res.aggregate_better, res.reversed_strata
    (True, 'B', ['large', 'small'])
    >>> res.table.select("stratum", "A_rate", "B_rate").with_columns(pl.selectors.float().round(3))
    shape: (3, 3)
    ┌─────────┬────────┬────────┐
    │ stratum ┆ A_rate ┆ B_rate │
    │ ---     ┆ ---    ┆ ---    │
    │ str     ┆ f64    ┆ f64    │
    ╞═════════╪════════╪════════╡
    │ overall ┆ 0.78   ┆ 0.826  │
    │ large   ┆ 0.73   ┆ 0.688  │
    │ small   ┆ 0.931  ┆ 0.867  │
    └─────────┴────────┴────────┘
    """
    what = "simpson"
    if rule not in ("majority", "all"):
        raise InvalidArgumentError(f"{what}: rule must be 'majority' or 'all', got {rule!r}")
    df = c.load(data, what)
    c.not_empty(df.height, what)
    strat = c.column(df, stratum, "stratum", what)
    w = c.weights(df, weight, what)
    wser = pl.Series(_W, np.ones(df.height) if w is None else w)
    if isinstance(outcome, Mapping):
        if group is not None:
            raise InvalidArgumentError(
                f"{what}: with an outcome mapping (one column per group) leave group=None"
            )
        if len(outcome) != 2:
            raise InvalidArgumentError(
                f"{what}: an outcome mapping names exactly two groups, got {len(outcome)}"
            )
        names = [str(k) for k in outcome]
        if groups is not None:
            raise InvalidArgumentError(f"{what}: groups= goes with group=, not with an outcome "
                                       "mapping (its keys are the groups)")
        long = pl.concat([
            pl.DataFrame({
                _O: c.labels(df, col, what, role="outcome"),
                _G: [name] * df.height,
                _S: strat,
                _W: wser,
            })
            for name, col in zip(names, outcome.values(), strict=True)
        ])
        order = names
    else:
        if group is None:
            raise InvalidArgumentError(
                f"{what}: give group= (the column of groups), or outcome as a mapping "
                "{group name: column}"
            )
        gser = c.column(df, group, "group", what)
        if gser.null_count():
            raise InvalidArgumentError(f"{what}: group column {group!r} has nulls")
        gstr = gser.cast(pl.String)
        domain = gstr.unique().sort().to_list()
        if groups is None:
            if len(domain) != 2:
                raise InvalidArgumentError(
                    f"{what}: group column {group!r} has {len(domain)} distinct values "
                    f"({', '.join(map(repr, domain[:10]))}); pass groups=(a, b) to pick two"
                )
            order = domain
        else:
            if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence) \
                    or len(groups) != 2:
                raise InvalidArgumentError(f"{what}: groups must be two values of {group!r}, "
                                           f"got {c.show(groups)}")
            order = [str(g) for g in groups]
            if order[0] == order[1]:
                raise InvalidArgumentError(f"{what}: groups must be two different values")
            for g in order:
                if g not in domain:
                    raise InvalidArgumentError(
                        f"{what}: group {g!r} does not occur in column {group!r} (values: "
                        f"{', '.join(map(repr, domain[:10]))})"
                    )
        long = pl.DataFrame({
            _O: c.labels(df, outcome, what, role="outcome"), _G: gstr, _S: strat, _W: wser,
        }).filter(pl.col(_G).is_in(order))
    a, b = order

    weighted = w is not None
    succ = (pl.col(_O) * pl.col(_W)).sum()
    aggs = [pl.len().cast(pl.Int64).alias("n"),
            (succ if weighted else pl.col(_O).sum().cast(pl.Int64)).alias("successes"),
            (succ / pl.col(_W).sum()).alias("rate"), pl.col(_W).sum().alias("w")]
    # Strata are keyed by an integer (the rank of their value, null last; 0 is the aggregate),
    # so that a stratum whose value prints as "overall" or "null" stays a stratum of its own.
    rank = pl.col(_S).rank("dense")
    long = long.with_columns(rank.fill_null(rank.max().fill_null(0) + 1).cast(pl.Int64)
                             .alias(_K))
    strata = long.select(_K, pl.col(_S).cast(pl.String).fill_null("null")).unique(_K).sort(_K)
    per = long.group_by(_K, _G).agg(aggs)
    tot = long.group_by(_G).agg(aggs).with_columns(pl.lit(0, dtype=pl.Int64).alias(_K))

    def side(frame: pl.DataFrame, g: str) -> pl.DataFrame:
        return frame.filter(pl.col(_G) == g).select(
            _K, pl.col("n").alias(f"{g}_n"), pl.col("successes").alias(f"{g}_successes"),
            pl.col("rate").alias(f"{g}_rate"), pl.col("w").alias(f"_w_{g}"))

    keys = pl.concat([pl.DataFrame({_K: [0], _S: ["overall"]},
                                   schema={_K: pl.Int64, _S: pl.String}), strata])
    table = keys.join(pl.concat([side(tot, a), side(per, a)]), on=_K, how="left").join(
        pl.concat([side(tot, b), side(per, b)]), on=_K, how="left").sort(_K).drop(_K)
    for g in (a, b):
        table = table.with_columns(pl.col(f"{g}_n").fill_null(0),
                                   pl.col(f"{g}_successes").fill_null(0))
    ra, rb = pl.col(f"{a}_rate"), pl.col(f"{b}_rate")
    table = table.with_columns(
        (rb - ra).alias("delta"),
        pl.when(rb > ra).then(pl.lit(b)).when(ra > rb).then(pl.lit(a)).otherwise(None)
        .alias("better"),
    )
    agg_better = table.get_column("better")[0]
    reversed_expr = (pl.col("better").is_not_null() & (pl.col("better") != agg_better)) \
        if agg_better is not None else pl.lit(False)
    table = table.with_columns(reversed_expr.fill_null(False).alias("reversed")).rename(
        {_S: "stratum"})

    strata_rows = table.slice(1)
    compared = strata_rows.filter(pl.col("delta").is_not_null())
    reversed_strata = compared.filter(pl.col("reversed")).get_column("stratum").to_list()
    n_cmp = compared.height
    if agg_better is None or n_cmp == 0:
        flagged = False
    elif rule == "all":
        flagged = len(reversed_strata) == n_cmp
    else:
        flagged = 2 * len(reversed_strata) > n_cmp
    if n_cmp:
        sizes = (compared.get_column(f"_w_{a}") + compared.get_column(f"_w_{b}")).to_numpy()
        d = compared.get_column("delta").to_numpy()
        adjusted: float | None = float(np.sum(sizes * d) / np.sum(sizes))
    else:
        adjusted = None
    table = table.drop(f"_w_{a}", f"_w_{b}")
    label = outcome if isinstance(outcome, str) else "outcome"
    return SimpsonResult(bool(flagged), table, (a, b), agg_better, reversed_strata, n_cmp,
                         adjusted, rule, label)
