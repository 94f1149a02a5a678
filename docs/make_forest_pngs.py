"""Draw docs/slices.png and docs/comparison.png: the forest plots of assay.plot on demo data.

slices.png: ROC-AUC per slice of the demo churn model (weak for country=NG and device=tablet).
comparison.png: the paired ROC-AUC difference of the demo's two churn models per slice (the
candidate broke for channel=partner). Needs matplotlib (``pip install "assay[plot]"``).

    python docs/make_forest_pngs.py [--rows 100000] [--out-dir docs]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import assay
from assay import plot
from assay.demo import make_comparison_data, make_data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent)
    args = parser.parse_args(argv)

    rep = assay.evaluate(make_data(args.rows, seed=0), label="churned", score="p_churn",
                         slices=["country", "device"], bootstrap=500, seed=0)
    cmp = assay.compare(make_comparison_data(args.rows, seed=0), label="churned",
                        scores={"prod": "p_old", "cand": "p_new"},
                        slices=["channel", "country", "gender"], bootstrap=500, seed=0)
    figures = {
        "slices.png": plot.slices(rep, "roc_auc", title="ROC-AUC by slice (worst on top)"),
        "comparison.png": plot.comparison(
            cmp, "roc_auc", title="Candidate vs production: ROC-AUC by slice"),
    }
    for name, fig in figures.items():
        out = args.out_dir / name
        fig.savefig(out, dpi=100)
        print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
