"""The engine's metric registry is the one list of metrics: names, families, kinds, directions
and definitions; the Python layer derives its lists from it."""

from __future__ import annotations

import assay
from assay import _common, _compare, _native

KINDS = {"binary": {"confusion", "loss", "rank", "calibration"},
         "regression": {"moments", "order"},
         "multiclass": {"confusion", "loss", "rank", "calibration"},
         "ranking": {"order"}}


def test_registry_entries_are_complete_and_unique():
    reg = _native.metric_registry()
    names = [r[0] for r in reg]
    # A name is unique within its family; families share the names of the same quantity
    # (accuracy, log_loss, ...), with the same direction.
    keys = [(r[0], r[1]) for r in reg]
    assert len(keys) == len(set(keys))
    assert names[-8:] == ["f<beta>", "pinball@<q>", "top_k_accuracy@<k>", "ndcg@<k>",
                          "map@<k>", "precision@<k>", "recall@<k>", "hit_rate@<k>"]
    directions: dict[str, object] = {}
    for r in reg:
        assert directions.setdefault(r[0], r[3]) is r[3], r[0]
    for name, family, kind, direction, default, definition in reg:
        assert kind in KINDS[family]
        assert direction in (True, False, None)
        assert isinstance(default, bool)
        assert definition and definition == definition.strip()
        if "<" not in name:
            assert _native.metric_name(name) == name
            assert _native.higher_is_better(name) is direction
    assert [r[0] for r in reg if r[4] and r[1] == "binary"] == _native.default_metrics()
    assert tuple(r[0] for r in reg if r[1] == "regression" and "<" not in r[0]) == \
        assay.REGRESSION_METRICS
    assert tuple(r[0] for r in reg if r[1] == "multiclass" and "<" not in r[0]) == \
        assay.MULTICLASS_METRICS
    assert tuple(r[0] for r in reg if r[1] == "ranking") == assay.RANKING_METRICS
    for name in ("ndcg@7", "map@1", "precision@3", "recall@100", "hit_rate@2"):
        assert _native.metric_name(name) == name and _native.higher_is_better(name) is True
    assert [r[0] for r in reg if r[2] == "calibration" and r[1] == "binary"] == \
        _native.calibration_metrics()


def test_python_lists_come_from_the_registry():
    reg = _native.metric_registry()
    assert set(_common.CONFUSION_METRICS) == {
        "base_rate", "prediction_rate", "accuracy", "balanced_accuracy", "precision", "recall",
        "specificity", "fpr", "fnr", "f1", "mcc"}
    assert _common.LOWER_IS_BETTER == {r[0] for r in reg if r[3] is False}
    assert {"log_loss", "brier", "fpr", "fnr", "ece"} <= _common.LOWER_IS_BETTER
    assert {"base_rate", "oe_ratio", "calibration_slope"} <= _compare._NO_DIRECTION
    assert "roc_auc" not in _common.LOWER_IS_BETTER | _compare._NO_DIRECTION
    assert {"mae", "rmse", "mape", "max_error"} <= _common.LOWER_IS_BETTER
    assert "mean_error" in _compare._NO_DIRECTION
    assert not {"r2", "pearson"} & (_common.LOWER_IS_BETTER | _compare._NO_DIRECTION)

