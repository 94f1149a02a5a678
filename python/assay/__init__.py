"""assay: fast, rigorous offline evaluation of machine-learning models.

>>> import assay
>>> rep = assay.evaluate(df, label="y", score="p", slices=["country"])   # doctest: +SKIP
>>> rep.table                                                              # doctest: +SKIP
"""

from __future__ import annotations

import os as _os
import warnings as _warnings

from . import _native, calibrate, checks, html, noise
from ._baselines import BASELINES, baselines
from ._compare import Comparison, compare
from ._discovery import discover_regressions, discover_slices
from ._disparity import Disparity
from ._ensemble import EnsembleReport, ensemble_report
from ._evaluate import (
    CALIBRATION_METRICS,
    METRICS,
    MULTICLASS_METRICS,
    RANKING_METRICS,
    REGRESSION_METRICS,
    TASKS,
    Bins,
    bins,
    evaluate,
    fbeta,
)
from ._provenance import Provenance
from ._reliability import reliability
from ._saved import diff, load
from ._selective import SelectiveResult, ThresholdChoice, selective, threshold_for, thresholds
from ._simpson import SimpsonResult, simpson
from ._spec import PartialState, Spec, merge
from ._tables import DiscoveryTable, ReliabilityTable
from .errors import (
    AssayError,
    ColumnNotFoundError,
    EmptyInputError,
    InvalidArgumentError,
    InvalidInputError,
    ModelError,
    ModelOutputError,
    NothingFoundWarning,
    RegressionDetected,
    SchemaError,
    StateFormatError,
    StateMismatchError,
)
from .report import Report

__version__: str = _native.__version__

__all__ = [
    "BASELINES",
    "CALIBRATION_METRICS",
    "METRICS",
    "MULTICLASS_METRICS",
    "RANKING_METRICS",
    "REGRESSION_METRICS",
    "TASKS",
    "AssayError",
    "Bins",
    "ColumnNotFoundError",
    "Comparison",
    "EmptyInputError",
    "Disparity",
    "DiscoveryTable",
    "EnsembleReport",
    "InvalidArgumentError",
    "InvalidInputError",
    "ModelError",
    "ModelOutputError",
    "NothingFoundWarning",
    "PartialState",
    "Provenance",
    "RegressionDetected",
    "ReliabilityTable",
    "Report",
    "SchemaError",
    "SelectiveResult",
    "SimpsonResult",
    "Spec",
    "StateFormatError",
    "StateMismatchError",
    "ThresholdChoice",
    "baselines",
    "bins",
    "calibrate",
    "checks",
    "compare",
    "diff",
    "discover_regressions",
    "discover_slices",
    "ensemble_report",
    "evaluate",
    "fbeta",
    "html",
    "load",
    "merge",
    "noise",
    "reliability",
    "selective",
    "simpson",
    "threshold_for",
    "thresholds",
]

if _native.DEBUG_BUILD and not _os.environ.get("ASSAY_ALLOW_DEBUG_BUILD"):
    _warnings.warn(
        "assay's native extension was built without optimizations (debug build); it is much "
        "slower than a release build. Reinstall with `pip install .` (or `maturin develop "
        "--release`) before benchmarking. Set ASSAY_ALLOW_DEBUG_BUILD=1 to silence this.",
        RuntimeWarning,
        stacklevel=2,
    )
