"""The cost of ``fingerprint="content"`` (the content hash computed in the pass).

Times ``assay.evaluate`` on the same in-memory table with ``fingerprint="schema"`` (no hash)
and ``"content"``, alternating, best of ``--repeat`` each, for a 100-slice job with the default
metrics and for a one-metric job (whose pass is cheapest, so the hash weighs most)::

    python benches/bench_fingerprint.py            # 10M rows: int8 label, float64 score,
                                                   # a 100-value dictionary slice column
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa

import assay


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.rows
    y = (rng.random(n) < 0.1).astype(np.int8)
    p = np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1)
    seg = pa.array(rng.integers(0, 100, n).astype(str)).dictionary_encode()
    table = pa.table({"y": y, "p": p, "seg": seg})

    def run(fingerprint: str, **kw: object) -> float:
        t = time.perf_counter()
        assay.evaluate(table, label="y", score="p", fingerprint=fingerprint, **kw)
        return time.perf_counter() - t

    print(f"{n:,} rows (int8 label, float64 score, dictionary slice column), "
          f"best of {args.repeat}")
    print(f"{'job':34s} {'schema s':>9s} {'content s':>10s} {'extra s':>8s} {'ratio':>6s}")
    for name, kw in (("15 metrics x 100 slices", {"slices": ["seg"]}),
                     ("accuracy only, overall", {"metrics": ["accuracy"]})):
        run("schema", **kw)
        run("content", **kw)
        plain, hashed = [], []
        for _ in range(args.repeat):
            plain.append(run("schema", **kw))
            hashed.append(run("content", **kw))
        a, b = min(plain), min(hashed)
        print(f"{name:34s} {a:9.3f} {b:10.3f} {b - a:8.3f} {b / a:6.2f}")


if __name__ == "__main__":
    main()
