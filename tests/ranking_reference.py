"""Brute-force reference implementation of per-query ranking metrics.

Written for clarity, not speed, in plain Python (NumPy only to read the inputs), independently
of the engine, so that a fast implementation can be tested against it.

One query
---------
A query is a list of items given in an *input order*: item ``i`` has ``score[i]`` (a float, not
NaN) and ``rel[i]`` (its relevance, a finite float ``>= 0``); its *input position* is ``i``.
An item is *relevant* when ``rel[i] > 0``. ``n`` is the number of items, ``n_rel`` the number of
relevant items.

Options:

* ``gain``: ``"exponential"``, ``g(r) = 2**r - 1``; or ``"linear"``, ``g(r) = r``.
* ``ties``: ``"stable"`` ranks the items by score descending, ties broken by input position
  ascending. ``"average"`` gives the expected value of the metric when every ordering of the
  items within each group of equal scores is equally likely (McSherry & Najork 2008). It is
  computed by brute force here: every permutation of the positions within every tie group
  (``itertools.permutations``, product over the groups) gives one full ordering, the metric is
  computed for each ordering as under ``"stable"``, and the results are averaged. More than
  ``MAX_ORDERINGS`` (50 000) orderings raise ``ValueError``.
* ``k``: a positive int cutoff.

Metrics of one query, ``p`` the 0-based rank in the ordering above:

* ``dcg@k  = sum over p < min(k, n) of g(rel at p) / log2(p + 2)``
* ``idcg@k = dcg@k`` of the items sorted by relevance descending
* ``ndcg@k = dcg@k / idcg@k``; undefined (``None``) when ``idcg@k == 0`` (``n_rel == 0``)
* ``precision@k = (relevant items at p < k) / k``, divided by ``k`` even when ``n < k``
* ``recall@k = (relevant items at p < k) / n_rel``; undefined when ``n_rel == 0``
* ``hit_rate@k = 1`` if some relevant item is at ``p < k``, else ``0``
* ``map@k`` (average precision at k) ``= (1 / min(k, n_rel)) * sum over p < k with the item
  relevant of precision@(p + 1)``; undefined when ``n_rel == 0``
* ``mrr = 1 / (p_first + 1)``, ``p_first`` the rank of the first relevant item (no cutoff);
  undefined when ``n_rel == 0``
* ``auc_per_query``: the Mann-Whitney AUC of the scores of the relevant items against those of
  the non-relevant ones, a tie counting 1/2: the fraction of (relevant, non-relevant) pairs whose
  relevant item scores higher. Identical under both ``ties`` options. Defined only when the
  query has at least one relevant and one non-relevant item.

``precision@k`` and ``hit_rate@k`` of a query without relevant items are 0 (well defined), but
the aggregation below replaces every value of such a query by its ``empty`` rule anyway.

Aggregation over queries
------------------------
* ``empty="skip"``: a query with ``n_rel == 0`` is left out of every metric and counted as
  skipped. ``empty="zero"``: such a query scores 0 on ndcg@k, precision@k, recall@k,
  hit_rate@k, map@k and mrr.
* ``auc_per_query`` averages only over the queries with both relevant and non-relevant items,
  under both ``empty`` options.
* A metric's value is the weighted mean, query weight ``w_q`` (default 1), over the queries that
  count for it: ``sum(w_q * m_q) / sum(w_q)``; ``None`` when no query counts (or their weights
  sum to 0). Weights are finite and ``>= 0``.
* Also returned: ``n_queries`` (queries counted: all minus skipped), ``n_skipped`` and
  ``n_items`` (the items of all queries, skipped ones included).

(A query with ``n_rel > 0`` always has ``idcg@k > 0`` in exact arithmetic; should ``2**r - 1``
underflow to 0 for a tiny ``r`` its ndcg would be ``None`` and it is left out of that mean.)

Long format
-----------
``reference(query, score, rel, ...)`` takes one row per item: ``query`` holds the query keys
(ints or strings). The rows of a query need not be contiguous; within a query the input order
is the order of its rows in the arrays. An optional per-row ``weight`` must be constant within
a query (it is the query's weight).

Metric names: ``"ndcg@K"``, ``"map@K"``, ``"precision@K"``, ``"recall@K"``, ``"hit_rate@K"``
for each ``K``, plus ``"mrr"`` and ``"auc_per_query"``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

MAX_ORDERINGS = 50_000

GAINS = ("exponential", "linear")
TIES = ("stable", "average")
EMPTY = ("skip", "zero")
CUTOFF_METRICS = ("ndcg", "map", "precision", "recall", "hit_rate")
PLAIN_METRICS = ("mrr", "auc_per_query")
ALL_METRICS = CUTOFF_METRICS + PLAIN_METRICS


# ----------------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------------


def _check_option(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_k_list(k_list):
    k_list = list(k_list)
    for k in k_list:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
    return [int(k) for k in k_list]


def _query_arrays(score, rel):
    score = [float(s) for s in np.asarray(score, dtype=np.float64).ravel()]
    rel = [float(r) for r in np.asarray(rel, dtype=np.float64).ravel()]
    if len(score) != len(rel):
        raise ValueError(f"score and rel differ in length: {len(score)} != {len(rel)}")
    if any(math.isnan(s) for s in score):
        raise ValueError("a score is NaN")
    if any(not math.isfinite(r) or r < 0 for r in rel):
        raise ValueError("a relevance is negative or not finite")
    return score, rel


# ----------------------------------------------------------------------------------------------
# one query
# ----------------------------------------------------------------------------------------------


def gain_value(r, gain):
    """``g(r)``: ``2**r - 1`` (exponential) or ``r`` (linear)."""
    _check_option("gain", gain, GAINS)
    return 2.0**r - 1.0 if gain == "exponential" else r


def dcg_of_ordering(rel_in_order, k, gain):
    """``sum over p < min(k, n) of g(rel at p) / log2(p + 2)`` for relevances already ranked."""
    top = min(k, len(rel_in_order))
    return math.fsum(gain_value(rel_in_order[p], gain) / math.log2(p + 2) for p in range(top))


def idcg(rel, k, gain):
    """``dcg@k`` of the items sorted by relevance descending."""
    return dcg_of_ordering(sorted(rel, reverse=True), k, gain)


def tie_groups(score):
    """The input positions grouped by equal score, groups by score descending.

    Within a group the positions are ascending (the ``"stable"`` order).
    """
    groups = {}
    for i, s in enumerate(score):
        groups.setdefault(s, []).append(i)
    return [groups[s] for s in sorted(groups, reverse=True)]


def stable_order(score):
    """Input positions by score descending, ties by input position ascending."""
    return sorted(range(len(score)), key=lambda i: (-score[i], i))


def n_orderings(score):
    """The number of orderings ``"average"`` enumerates: product of the tie groups' sizes'!."""
    return math.prod(math.factorial(len(g)) for g in tie_groups(score))


def orderings(score, ties):
    """Every ordering (a list of input positions) the ``ties`` option averages over.

    ``"stable"``: the one stable order. ``"average"``: every permutation within every tie group
    (``ValueError`` above ``MAX_ORDERINGS``).
    """
    _check_option("ties", ties, TIES)
    if ties == "stable":
        return [stable_order(score)]
    count = n_orderings(score)
    if count > MAX_ORDERINGS:
        raise ValueError(f"{count} orderings of tied scores exceed the limit {MAX_ORDERINGS}")
    groups = tie_groups(score)
    per_group = [list(itertools.permutations(g)) for g in groups]
    return [
        [i for group_order in choice for i in group_order]
        for choice in itertools.product(*per_group)
    ]


def metrics_of_ordering(rel_in_order, k_list, gain, idcg_by_k):
    """Every rank-based metric of one fixed ordering (``rel_in_order``: relevances by rank)."""
    n = len(rel_in_order)
    relevant = [r > 0 for r in rel_in_order]
    n_rel = sum(relevant)
    out = {}
    for k in k_list:
        top = min(k, n)
        hits = sum(relevant[:top])
        dcg = dcg_of_ordering(rel_in_order, k, gain)
        out[f"dcg@{k}"] = dcg
        out[f"ndcg@{k}"] = dcg / idcg_by_k[k] if idcg_by_k[k] > 0 else None
        out[f"precision@{k}"] = hits / k
        out[f"recall@{k}"] = hits / n_rel if n_rel > 0 else None
        out[f"hit_rate@{k}"] = 1.0 if hits > 0 else 0.0
        if n_rel > 0:
            # precision@(p + 1) at each rank p < k holding a relevant item
            precisions = [sum(relevant[: p + 1]) / (p + 1) for p in range(top) if relevant[p]]
            out[f"map@{k}"] = math.fsum(precisions) / min(k, n_rel)
        else:
            out[f"map@{k}"] = None
    first = next((p for p in range(n) if relevant[p]), None)
    out["mrr"] = None if first is None else 1.0 / (first + 1)
    return out


def auc_per_query(score, rel):
    """Mann-Whitney AUC, relevant vs non-relevant, ties 1/2; ``None`` with a single class."""
    score, rel = _query_arrays(score, rel)
    pos = [s for s, r in zip(score, rel, strict=True) if r > 0]
    neg = [s for s, r in zip(score, rel, strict=True) if not r > 0]
    if not pos or not neg:
        return None
    wins = 0.0
    for sp in pos:
        for sn in neg:
            if sp > sn:
                wins += 1.0
            elif sp == sn:
                wins += 0.5
    return wins / (len(pos) * len(neg))


def _mean_or_none(values):
    if any(v is None for v in values):
        # A metric is undefined for all orderings or for none (it depends on n_rel / idcg only).
        assert all(v is None for v in values)
        return None
    return math.fsum(values) / len(values)


def query_metrics(score, rel, k_list, gain="exponential", ties="stable"):
    """Every metric of one query, before the ``empty`` rule: name -> float, or ``None``.

    Names: ``dcg@K``, ``idcg@K``, ``ndcg@K``, ``precision@K``, ``recall@K``, ``hit_rate@K``,
    ``map@K`` for each ``K`` in ``k_list``, plus ``mrr`` and ``auc_per_query``.
    """
    _check_option("gain", gain, GAINS)
    _check_option("ties", ties, TIES)
    k_list = _check_k_list(k_list)
    score, rel = _query_arrays(score, rel)
    idcg_by_k = {k: idcg(rel, k, gain) for k in k_list}
    per_ordering = [
        metrics_of_ordering([rel[i] for i in order], k_list, gain, idcg_by_k)
        for order in orderings(score, ties)
    ]
    out = {name: _mean_or_none([m[name] for m in per_ordering]) for name in per_ordering[0]}
    for k in k_list:
        out[f"idcg@{k}"] = idcg_by_k[k]
    out["auc_per_query"] = auc_per_query(score, rel)
    return out


# ----------------------------------------------------------------------------------------------
# aggregation
# ----------------------------------------------------------------------------------------------


def metric_names(metrics, k_list):
    """Expand metric names: a base name of a cutoff metric gives ``name@K`` for each ``K``.

    ``"ndcg@5"`` (a name with its cutoff) and ``"mrr"`` / ``"auc_per_query"`` pass as they are.
    """
    k_list = _check_k_list(k_list)
    names = []
    for m in metrics:
        if m in CUTOFF_METRICS:
            names.extend(f"{m}@{k}" for k in k_list)
        elif m in PLAIN_METRICS:
            names.append(m)
        elif "@" in m and m.split("@", 1)[0] in CUTOFF_METRICS:
            base, k = m.split("@", 1)
            if not k.isdigit() or int(k) < 1:
                raise ValueError(f"bad cutoff in metric name {m!r}")
            names.append(f"{base}@{int(k)}")
        else:
            raise ValueError(f"unknown metric {m!r}")
    return list(dict.fromkeys(names))


def _cutoffs(names):
    return sorted({int(n.split("@")[1]) for n in names if "@" in n})


def _weighted_mean(pairs):
    """``sum(w * v) / sum(w)`` over (weight, value) pairs; ``None`` if none or weights sum to 0."""
    total = math.fsum(w for w, _ in pairs)
    if not pairs or total == 0:
        return None
    return math.fsum(w * v for w, v in pairs) / total


def aggregate(
    queries,
    metrics=ALL_METRICS,
    k_list=(10,),
    gain="exponential",
    ties="stable",
    empty="skip",
    weights=None,
):
    """Aggregate over queries: ``queries`` is a sequence of ``(score, rel)`` pairs.

    ``metrics``: names as in :func:`metric_names` (expanded over ``k_list``). ``weights``: one
    weight per query (default all 1). Returns metric name -> weighted mean or ``None``, plus
    ``n_queries``, ``n_skipped``, ``n_items``.
    """
    _check_option("gain", gain, GAINS)
    _check_option("ties", ties, TIES)
    _check_option("empty", empty, EMPTY)
    names = metric_names(metrics, k_list)
    queries = list(queries)
    if weights is None:
        weights = [1.0] * len(queries)
    weights = [float(w) for w in weights]
    if len(weights) != len(queries):
        raise ValueError(f"{len(weights)} weights for {len(queries)} queries")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ValueError("a query weight is negative or not finite")

    cutoffs = _cutoffs(names)
    pairs = {name: [] for name in names}
    n_skipped = 0
    n_items = 0
    for (score, rel), w in zip(queries, weights, strict=True):
        score, rel = _query_arrays(score, rel)
        n_items += len(score)
        values = query_metrics(score, rel, cutoffs, gain, ties)
        has_relevant = any(r > 0 for r in rel)
        if not has_relevant and empty == "skip":
            n_skipped += 1
        for name in names:
            if name == "auc_per_query":
                value = values[name]  # None unless both classes are present
            elif not has_relevant:
                value = None if empty == "skip" else 0.0
            else:
                value = values[name]
            if value is not None:
                pairs[name].append((w, value))

    out = {name: _weighted_mean(pairs[name]) for name in names}
    out["n_queries"] = len(queries) - n_skipped
    out["n_skipped"] = n_skipped
    out["n_items"] = n_items
    return out


def group_rows(query):
    """Query key -> the row indices of that query, in row order; keys by first appearance."""
    keys = np.asarray(query).tolist()
    groups = {}
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    return groups


def reference(
    query,
    score,
    rel,
    k=(10,),
    metrics=ALL_METRICS,
    gain="exponential",
    ties="stable",
    empty="skip",
    weight=None,
):
    """Ranking metrics from long-format arrays (one row per item); see the module docstring.

    ``weight``: optional per-row weights, constant within a query (``ValueError`` otherwise).
    Returns metric name -> value (float or ``None``) plus ``n_queries``, ``n_skipped``,
    ``n_items``.
    """
    score = np.asarray(score, dtype=np.float64)
    rel = np.asarray(rel, dtype=np.float64)
    n_rows = len(np.asarray(query))
    if not (len(score) == len(rel) == n_rows):
        raise ValueError("query, score and rel differ in length")
    if weight is not None:
        weight = np.asarray(weight, dtype=np.float64)
        if len(weight) != n_rows:
            raise ValueError("weight differs in length from query")
    queries = []
    weights = []
    for key, rows in group_rows(query).items():
        queries.append((score[rows], rel[rows]))
        if weight is not None:
            w = weight[rows]
            if np.any(w != w[0]):
                raise ValueError(f"weight is not constant within query {key!r}")
            weights.append(float(w[0]))
    return aggregate(
        queries,
        metrics=metrics,
        k_list=k,
        gain=gain,
        ties=ties,
        empty=empty,
        weights=None if weight is None else weights,
    )
