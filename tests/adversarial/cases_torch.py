"""The torch path (``assay.torch.Evaluator``) as a new user drives it: arrays that are not
tensors, wrong dtypes and lengths, codes outside the categories, NaN scores (raised at
compute), huge crosses, updates after a sync, and device blocks that do not fit."""

from __future__ import annotations

from typing import Any

import numpy as np
from _harness import case, check


def _at() -> Any:
    import assay.torch as at

    return at


def _spec(**kw: Any) -> Any:
    import assay

    return assay.Spec(label="y", score="p", slices=["g"], metrics=["accuracy", "roc_auc"], **kw)


def _torch() -> Any:
    import torch

    return torch


@case(expect="typed", words=["must be tensors"])
def torch_numpy_arrays_instead_of_tensors() -> None:
    ev = _at().Evaluator(_spec(), categories={"g": 2})
    ev.update(score=np.array([0.2, 0.8]), label=np.array([0, 1]),
              features={"g": np.array([0, 1])})


@case(expect="typed", words=["'g'", "integer tensor"])
def torch_float_codes() -> None:
    torch = _torch()
    ev = _at().Evaluator(_spec(), categories={"g": 2})
    ev.update(score=torch.tensor([0.2, 0.8]), label=torch.tensor([0, 1]),
              features={"g": torch.tensor([0.0, 1.0])})


@case(expect="typed", words=["has shape", "2 rows"])
def torch_length_mismatch() -> None:
    torch = _torch()
    ev = _at().Evaluator(_spec(), categories={"g": 2})
    ev.update(score=torch.tensor([0.2, 0.8]), label=torch.tensor([0, 1, 1]),
              features={"g": torch.tensor([0, 1])})


@case(expect="typed", words=["'g'", "codes must be -1", "first at row 1"])
def torch_code_outside_categories() -> None:
    torch = _torch()
    ev = _at().Evaluator(_spec(), categories={"g": ["a", "b"]})
    ev.update(score=torch.tensor([0.2, 0.8]), label=torch.tensor([0, 1]),
              features={"g": torch.tensor([0, 7])})
    ev.compute()


@case(expect="typed", words=["'p'", "NaN", "nan_policy"])
def torch_nan_score_raised_at_compute() -> None:
    torch = _torch()
    ev = _at().Evaluator(_spec(), categories={"g": 2})
    ev.update(score=torch.tensor([0.2, float("nan")]), label=torch.tensor([0, 1]),
              features={"g": torch.tensor([0, 1])})
    ev.compute()


@case(expect="typed", words=["possible slices", "more than"])
def torch_huge_cross() -> None:
    import assay

    spec = assay.Spec(label="y", score="p", slices=[("a", "b")])
    _at().Evaluator(spec, categories={"a": 5000, "b": 5000})


@case(expect="typed", words=["needs its categories"])
def torch_missing_categories() -> None:
    _at().Evaluator(_spec())


@case(expect="typed", words=["was synced"])
def torch_update_after_sync() -> None:
    torch = _torch()
    ev = _at().Evaluator(_spec(), categories={"g": 2})
    ev._synced = True  # as after sync() under torch.distributed
    ev.update(score=torch.tensor([0.2]), label=torch.tensor([1]),
              features={"g": torch.tensor([0])})


@case(expect="typed", words=["not on the torch path"])
def torch_sketch_refused() -> None:
    import assay

    _at().Evaluator(assay.Spec(label="y", score="p", auc="sketch"))


@case(expect="typed", words=["not a valid device state"])
def torch_device_blocks_that_do_not_fit() -> None:
    import pyarrow as pa

    from assay import _native

    spec = _spec()
    keys = pa.table({"y": pa.array([0], pa.int64()), "p": [0.5], "g": ["a"]})
    block = {"key_rows": np.array([5], np.uint32).tobytes(),
             "n": np.array([1], np.uint64).tobytes(), "counts": np.ones(7).tobytes()}
    _native.state_from_blocks(keys, spec._job.native(None, None), spec._json,
                              [[block, block]], [], 1, 0, None, 0)


@case()
def torch_empty_batches_and_no_rows_state() -> None:
    torch = _torch()
    ev = _at().Evaluator(_spec(), categories={"g": 2})
    empty = torch.zeros(0)
    ev.update(score=empty, label=empty, features={"g": empty.long()})
    check(ev.partial().rows == 0, "an evaluator without rows gives an empty state")
