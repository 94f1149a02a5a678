"""assay.torch under torch.distributed: three gloo processes (CPU), uneven shards, one merge.

Run it as ``python examples/torch_distributed.py``. Each rank feeds its shard of the demo
data as tensors, ``sync()`` merges the ranks (one all_reduce of the fixed-size blocks, one
all_gather of the kept rows of exact ROC-AUC), and every rank then holds the report of all the
rows, equal to ``assay.evaluate`` on the whole table. With NCCL and ``device="cuda"`` the same
code runs on GPUs.
"""

from __future__ import annotations

import os
import sys
import tempfile

import pyarrow as pa
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import assay
import assay.torch as at
from assay.demo import make_data

COUNTRIES = ["BR", "DE", "FR", "IN", "JP", "MX", "NG", "US"]
SPEC = assay.Spec(label="churned", score="p_churn",
                  slices=["country", assay.bins("age", edges=[18, 30, 45, 65])],
                  bootstrap=200, seed=0, row_id="id", metrics=["accuracy", "roc_auc", "ece"])


def tensors(lo: int, hi: int) -> dict[str, torch.Tensor]:
    t = make_data(30_000, seed=0).slice(lo, hi - lo).to_pydict()
    code = {c: i for i, c in enumerate(COUNTRIES)}
    f64 = torch.float64  # torch.tensor of Python floats would round them to float32
    return {"y": torch.tensor(t["churned"]), "p": torch.tensor(t["p_churn"], dtype=f64),
            "country": torch.tensor([code[c] for c in t["country"]]),
            "age": torch.tensor(t["age"], dtype=f64), "id": torch.arange(lo, hi)}


def rank_main(rank: int, world: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world)
    bounds = [0, 4_000, 19_000, 30_000]                   # uneven shards
    b = tensors(bounds[rank], bounds[rank + 1])
    ev = at.Evaluator(SPEC, categories={"country": COUNTRIES})
    for lo in range(0, len(b["y"]), 2048):                 # the eval loop
        sl = slice(lo, lo + 2048)
        ev.update(score=b["p"][sl], label=b["y"][sl], row_id=b["id"][sl],
                  features={"country": b["country"][sl], "age": b["age"][sl]})
    ev.sync()                                              # every rank: all rows
    ev.compute().table.write_parquet(os.path.join(out, f"rank{rank}.parquet"))
    dist.destroy_process_group()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(rank_main, args=(3, os.path.join(tmp, "store"), tmp), nprocs=3, join=True)
        import polars as pl

        got = pl.read_parquet(os.path.join(tmp, "rank0.parquet"))
        table = make_data(30_000, seed=0)
        want = SPEC.evaluate(table.append_column("id", pa.array(range(30_000)))).table
        print(got.select("slice", "n", "roc_auc", "roc_auc_lo", "roc_auc_hi"))
        same = got["n"].to_list() == want["n"].to_list() and all(
            abs(a - b) < 1e-9 for a, b in zip(got["roc_auc_lo"], want["roc_auc_lo"],
                                             strict=True))
        print("equal to assay.evaluate on all rows:", same)
        sys.exit(0 if same else 1)
