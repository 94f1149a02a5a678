"""Draw docs/reliability.png: the reliability diagram of a synthetic model, sliced by segment.

The true probability p of each row is known; the model's score is sigmoid(k * logit(p)) with a
temperature k per segment. k = 1 is calibrated; k > 1 pushes scores toward 0 and 1
(over-confident: the curve is flatter than the diagonal), k < 1 pulls them toward the middle
(under-confident: steeper). Needs matplotlib (``pip install "assay[plot]"``).

    python docs/make_reliability_png.py [--rows 200000] [--out docs/reliability.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

import assay
from assay import plot

# segment -> temperature k of the model's score in that segment
TEMPERATURE = {"web": 1.0, "ios": 0.85, "android": 2.0}


def make_data(n: int, seed: int = 7) -> pl.DataFrame:
    """n rows of (segment, label y, model score p)."""
    rng = np.random.default_rng(seed)
    names = np.array(list(TEMPERATURE))
    ks = np.array(list(TEMPERATURE.values()))
    code = rng.choice(len(names), size=n, p=[0.5, 0.3, 0.2])
    true_logit = rng.normal(-0.8, 1.4, n)
    true_p = 1.0 / (1.0 + np.exp(-true_logit))
    y = (rng.random(n) < true_p).astype(np.int8)
    k = ks[code]
    score = 1.0 / (1.0 + np.exp(-k * true_logit))
    return pl.DataFrame({"segment": names[code], "y": y, "p": score})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("reliability.png"))
    args = parser.parse_args(argv)

    df = make_data(args.rows)
    rel = assay.reliability(df, label="y", score="p", n_bins=10, strategy="uniform",
                            slices=["segment"])
    fig = plot.reliability(rel, title="Reliability by segment (android is over-confident)")
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
