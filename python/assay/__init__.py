"""assay: fast, rigorous offline evaluation of machine-learning models.

>>> import assay
>>> rep = assay.evaluate(df, label="y", score="p", slices=["country"])   # doctest: +SKIP
>>> rep.table                                                              # doctest: +SKIP
"""

from __future__ import annotations

import os as _os
import warnings as _warnings

from . import _native, calibrate
from ._compare import Comparison, compare
from ._evaluate import CALIBRATION_METRICS, METRICS, Bins, bins, evaluate, fbeta
from ._reliability import reliability
from .errors import (
    AssayError,
    ColumnNotFoundError,
    EmptyInputError,
    InvalidArgumentError,
    InvalidInputError,
    RegressionDetected,
    SchemaError,
)
from .report import Report

__version__: str = _native.__version__

__all__ = [
    "CALIBRATION_METRICS",
    "METRICS",
    "AssayError",
    "Bins",
    "ColumnNotFoundError",
    "Comparison",
    "EmptyInputError",
    "InvalidArgumentError",
    "InvalidInputError",
    "RegressionDetected",
    "Report",
    "SchemaError",
    "bins",
    "calibrate",
    "compare",
    "evaluate",
    "fbeta",
    "reliability",
]

if _native.DEBUG_BUILD and not _os.environ.get("ASSAY_ALLOW_DEBUG_BUILD"):
    _warnings.warn(
        "assay's native extension was built without optimizations (debug build); it is much "
        "slower than a release build. Reinstall with `pip install .` (or `maturin develop "
        "--release`) before benchmarking. Set ASSAY_ALLOW_DEBUG_BUILD=1 to silence this.",
        RuntimeWarning,
        stacklevel=2,
    )
