"""Corrected gates, regression discovery, disparity summaries and the Spark/Ray entry points as a
new user drives them wrong: a gate asked with the wrong types, huge or negative sizes, a NaN
margin, an unknown correction; a model named like a column of the comparison; a regression
search with one model, three, the same column twice, an error column, NaN reference scores,
a reference model that is everywhere identical; a disparity of a spec or metric the report
lacks, of a criterion whose rates it lacks, of groups that all vanish; a distributed call with
something that is not a DataFrame, a spec that resamples without row ids, absurd fan-in and CPU
counts; corrupt state bytes reaching a merge task. (The engines themselves start in
tests/test_distributed.py: a JVM per adversarial case would cost more than the case.)"""

from __future__ import annotations

from typing import Any

import numpy as np
from _harness import case


def _cmp(**kw: Any) -> Any:
    import assay

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    p = np.clip(0.4 * y + 0.6 * rng.random(600), 0, 1)
    q = np.clip(p + rng.normal(0, 0.05, 600), 0, 1)
    data = {"y": y, "p": p, "q": q, "g": rng.integers(0, 4, 600)}
    return assay.compare(data, label="y", scores={"old": "p", "new": "q"}, slices=["g"],
                         metrics=["accuracy", "roc_auc"], bootstrap=30, **kw)


@case(expect="typed", words=["correction must be one of"])
def gate_correction_none() -> None:
    _cmp().assert_not_worse("roc_auc", correction=None)


@case(expect="typed", words=["metric must be a metric name or a list"])
def gate_metric_list_with_a_number() -> None:
    _cmp().assert_not_worse(["roc_auc", 3])


@case(expect="typed", words=["min_slice_size"])
def gate_min_slice_size_negative() -> None:
    _cmp().assert_not_worse("roc_auc", min_slice_size=-5)


@case(expect="typed", words=["min_slice_size"])
def gate_min_slice_size_beyond_u64() -> None:
    _cmp().assert_not_worse("roc_auc", min_slice_size=10**30)


@case(expect="typed", words=["margin"])
def gate_margin_nan() -> None:
    _cmp().assert_not_worse("roc_auc", margin=float("nan"))


@case(expect="typed", words=["correction must be one of"])
def compare_unknown_correction() -> None:
    _cmp(correction="bonferroni")


@case(expect="typed", words=["correction must be one of"])
def with_correction_unknown() -> None:
    _cmp().with_correction("sidak")


@case(expect="typed", words=["also a column", "rename"])
def compare_model_named_like_a_hidden_column() -> None:
    import assay

    assay.compare({"y": [0, 1, 1, 0], "p": [0.1, 0.9, 0.8, 0.3], "q": [0.2, 0.7, 0.6, 0.4]},
                  label="y", scores={"old": "p", "_delta_replicates": "q"}, bootstrap=10)


@case(expect="ok")
def gate_of_a_metric_undefined_everywhere_lists_it() -> None:
    import assay

    # One class only: roc_auc is undefined in every slice; the gate says so, row by row.
    cmp = assay.compare({"y": [1] * 40, "p": np.linspace(0.1, 0.9, 40),
                         "q": np.linspace(0.2, 0.8, 40)}, label="y",
                        scores={"old": "p", "new": "q"}, metrics=["roc_auc"], bootstrap=20)
    gate = cmp.assert_not_worse("roc_auc")
    assert set(gate["status"].to_list()) == {"skipped: undefined"}, gate


def _pair(n: int = 400) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, n)
    p = np.clip(0.4 * y + 0.6 * rng.random(n), 0, 1)
    return {"y": y, "p": p, "q": np.clip(p + rng.normal(0, 0.1, n), 0, 1),
            "g": rng.choice(["a", "b", "c"], n), "h": rng.choice(["x", "y"], n)}


@case(expect="typed", words=["two models", "got 3"])
def regressions_three_models() -> None:
    import assay

    d = _pair()
    d["r"] = d["p"]
    assay.discover_regressions(d, label="y", scores=["p", "q", "r"], features=["g"])


@case(expect="typed", words=["at least two models"])
def regressions_one_model() -> None:
    import assay

    assay.discover_regressions(_pair(), label="y", scores={"only": "p"}, features=["g"])


@case(expect="typed", words=["both models read the column"])
def regressions_same_column_twice() -> None:
    import assay

    assay.discover_regressions(_pair(), label="y", scores={"a": "p", "b": "p"}, features=["g"])


@case(expect="typed", words=["error must be one of"])
def regressions_error_column() -> None:
    import assay

    assay.discover_regressions(_pair(), label="y", scores=["p", "q"], features=["g"],
                               error="h")


@case(expect="typed", words=['column "p"', "row 7"])
def regressions_nan_reference_score() -> None:
    import assay

    d = _pair()
    d["p"][7] = np.nan
    assay.discover_regressions(d, label="y", scores=["p", "q"], features=["g"])


@case(expect="typed", words=["ci must be", r"\(0, 1\)"])
def regressions_ci_one() -> None:
    import assay

    assay.discover_regressions(_pair(), label="y", scores=["p", "q"], features=["g"], ci=1.0)


@case(expect="ok")
def regressions_identical_models_find_nothing() -> None:
    import assay

    # Two columns with the same values: every difference is 0, no slice is worse.
    d = _pair()
    d["q"] = d["p"].copy()
    found = assay.discover_regressions(d, label="y", scores=["p", "q"], features=["g", "h"])
    assert found.height == 0, found


@case(expect="typed", words=["not a slice spec", "'g'"])
def disparity_of_an_unknown_spec() -> None:
    _cmp().reports["new"].disparity("accuracy", spec="country")


@case(expect="typed", words=["equalized_odds", "fpr"])
def disparity_criterion_without_its_rates() -> None:
    _cmp().reports["new"].disparity("equalized_odds", spec="g")


@case(expect="typed", words=["min_size"])
def disparity_min_size_negative() -> None:
    _cmp().reports["new"].disparity("accuracy", spec="g", min_size=-1)


@case(expect="ok")
def disparity_every_group_too_small() -> None:
    d = _cmp().reports["new"].disparity("accuracy", spec="g", min_size=10**6)
    assert d.groups.height == 0 and d.excluded.height == 4, d
    assert d.table["value"].is_null().all() and d.table["note"].is_not_null().all(), d


@case(expect="typed", words=["pyspark.sql.DataFrame"])
def spark_given_a_dict() -> None:
    import assay
    from assay import spark as aspark

    aspark.evaluate({"y": [0, 1], "p": [0.2, 0.8]}, assay.Spec(label="y", score="p"))


@case(expect="typed", words=["ray.data.Dataset"])
def ray_given_a_list() -> None:
    import assay
    from assay import ray as aray

    aray.evaluate([{"y": 0, "p": 0.2}], assay.Spec(label="y", score="p"))


@case(expect="typed", words=["row_id=", "xxhash64"])
def spark_bootstrap_without_row_id() -> None:
    import assay
    from assay import spark as aspark

    aspark.evaluate(None, assay.Spec(label="y", score="p", bootstrap=100))


@case(expect="typed", words=["takes an assay.Spec"])
def ray_spec_as_a_dict() -> None:
    from assay import ray as aray

    aray.accumulate(None, {"label": "y", "score": "p"})


@case(expect="typed", words=["fan_in"])
def spark_fan_in_huge() -> None:
    import assay
    from assay import spark as aspark

    aspark.accumulate(None, assay.Spec(label="y", score="p"), fan_in=10**12)


@case(expect="typed", words=["num_cpus"])
def ray_num_cpus_a_string() -> None:
    import assay
    from assay import ray as aray

    aray.accumulate(None, assay.Spec(label="y", score="p"), num_cpus="2")


@case(expect="typed", words=["not a valid partial state", "checksum"])
def distributed_corrupt_state_reaching_a_merge_task() -> None:
    import pyarrow as pa

    import assay
    from assay import _distributed as d

    good = assay.Spec(label="y", score="p").accumulate({"y": [0, 1], "p": [0.2, 0.8]})
    blob = bytearray(good.to_bytes())
    blob[len(blob) // 2] ^= 0xFF
    records = pa.Table.from_batches([d.state_record(3, bytes(blob)),
                                     d.state_record(4, good.to_bytes())])
    merged = d.merge_records(records)  # the merge task: a typed error record, not a crash
    d.finish(merged.to_pylist(), assay.Spec(label="y", score="p"), lambda: None,
             "raised in partition {part}")
