"""``assay.ensemble_report``: members, majority vote and the diversity of an ensemble."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from . import _common as c
from ._text import escape_frame
from .errors import InvalidArgumentError
from .report import ArrowResult, frame_to_arrow

__all__ = ["ensemble_report", "EnsembleReport"]


class EnsembleReport(ArrowResult):
    """What :func:`ensemble_report` found. ``to_arrow()``/``to_dict()``/``to_json()`` give
    ``table`` without polars (safe in a forked child).

    Attributes
    ----------
    table : polars.DataFrame
        ``member`` (each member, then ``"majority_vote"``) and ``accuracy``.
    pairwise : polars.DataFrame
        One row per pair of members: ``a``, ``b``, ``error_correlation`` (Pearson correlation
        of the two members' 0/1 error indicators), ``kappa`` (Cohen's kappa of their
        predictions), ``disagreement`` (fraction of rows where the predictions differ) and
        ``double_fault`` (fraction of rows both get wrong). Null where undefined (a member
        that is never or always wrong has no error correlation).
    majority_accuracy : float
        Accuracy of the majority vote.
    """

    def __init__(self, table: pl.DataFrame, pairwise: pl.DataFrame) -> None:
        self.table = table
        self.pairwise = pairwise
        self._arrow = frame_to_arrow(table)
        self.majority_accuracy = float(table.get_column("accuracy")[-1])

    def __repr__(self) -> str:
        best = float(self.table.get_column("accuracy")[:-1].max())  # type: ignore[arg-type]
        gain = self.majority_accuracy - best
        return (f"assay.ensemble_report: majority vote accuracy {self.majority_accuracy:.4g} "
                f"({gain:+.4g} over the best member)\n{escape_frame(self.table)}\n"
                f"{escape_frame(self.pairwise)}")


def ensemble_report(
    data: Any,
    *,
    label: str,
    predictions: Sequence[str],
    threshold: float = 0.5,
    weight: str | None = None,
) -> EnsembleReport:
    """Each member's accuracy, the majority vote's, and how correlated the members' errors are.

    A majority vote helps only as far as its members err on different rows: three
    independent classifiers that are each right 70% of the time make a vote that is right
    ``0.7^3 + 3 x 0.7^2 x 0.3 = 0.784`` of the time, three perfectly correlated ones only 0.70.
    The pairwise error correlation and Cohen's kappa say which case an ensemble is closer to.

    Parameters
    ----------
    data
        Any input :func:`assay.evaluate` accepts; it is read into memory.
    label : str
        Column of 0/1 labels.
    predictions : list of str
        At least two columns of member predictions: 0/1 (or bool) labels, or scores that are
        positive when ``>= threshold``.
    threshold : float
        Threshold of the members' scores.
    weight : str, optional
        Column of positive sample weights.

    Returns
    -------
    EnsembleReport
        ``.table`` (member and majority-vote accuracy), ``.pairwise`` and
        ``.majority_accuracy``. The vote is positive when more than half of the members vote
        positive; with an even number of members a tie counts as a negative vote.

    Examples
    --------
    >>> import assay, numpy as np
    >>> y = np.array([1, 1, 1, 0, 0])
    >>> data = {"y": y, "m1": np.array([1, 1, 0, 0, 0]), "m2": np.array([1, 0, 1, 0, 1]),
    ...         "m3": np.array([0, 1, 1, 1, 0])}
    >>> rep = assay.ensemble_report(data, label="y", predictions=["m1", "m2", "m3"])
    >>> rep.table["accuracy"].to_list()
    [0.8, 0.6, 0.6, 1.0]
    >>> rep.pairwise.columns
    ['a', 'b', 'error_correlation', 'kappa', 'disagreement', 'double_fault']
    """
    what = "ensemble_report"
    df = c.load(data, what)
    y = c.labels(df, label, what)
    w = c.weights(df, weight, what)
    c.not_empty(df.height, what)
    if isinstance(predictions, str) or not isinstance(predictions, Sequence):
        raise InvalidArgumentError(f"{what}: predictions must be a list of columns, got "
                                   f"{predictions!r}")
    members = list(predictions)
    if len(members) < 2:
        raise InvalidArgumentError(f"{what}: an ensemble needs at least two members, got "
                                   f"{len(members)}")
    if len(set(members)) != len(members):
        raise InvalidArgumentError(f"{what}: a member is listed twice in {members}")
    thr = c.real_arg(threshold, "threshold", what)
    ww = np.ones(df.height) if w is None else w
    total = ww.sum()
    pred = np.column_stack([c.scores(df, m, what, role="prediction") >= thr for m in members])
    wrong = pred != (y[:, None] > 0.5)
    acc = 1.0 - (ww @ wrong) / total
    votes = pred.sum(axis=1)
    vote = 2 * votes > len(members)
    vote_acc = float(ww @ (vote == (y > 0.5)) / total)
    table = pl.DataFrame({"member": [*members, "majority_vote"],
                          "accuracy": [*acc.tolist(), vote_acc]})

    # weighted first and second moments of the errors and predictions, all pairs at once
    e = wrong.astype(np.float64)
    q = pred.astype(np.float64)
    me, mq = (ww @ e) / total, (ww @ q) / total
    ee = (e * ww[:, None]).T @ e / total  # E[e_i e_j]
    qq = (q * ww[:, None]).T @ q / total  # E[q_i q_j]
    ia, ib = np.triu_indices(len(members), k=1)
    cov = ee[ia, ib] - me[ia] * me[ib]
    var = me * (1.0 - me)
    corr = c.ratio(cov, np.sqrt(var[ia] * var[ib]))
    agree = 1.0 - (mq[ia] + mq[ib] - 2.0 * qq[ia, ib])  # P(q_i == q_j)
    chance = mq[ia] * mq[ib] + (1.0 - mq[ia]) * (1.0 - mq[ib])
    kappa = c.ratio(agree - chance, 1.0 - chance)
    pairwise = pl.DataFrame({
        "a": [members[i] for i in ia], "b": [members[j] for j in ib],
        "error_correlation": c.nullable(np.clip(corr, -1.0, 1.0), "x"),
        "kappa": c.nullable(kappa, "x"),
        "disagreement": 1.0 - agree,
        "double_fault": ee[ia, ib],
    })
    return EnsembleReport(table, pairwise)
