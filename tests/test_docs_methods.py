"""The runnable examples in the docstrings of the evaluation methods (baselines, checks, noise,
thresholds and selective prediction, Simpson, ensembles) are tests too."""

from __future__ import annotations

import doctest

import pytest

import assay
import assay._baselines
import assay._ensemble
import assay._selective
import assay._simpson
import assay.checks
import assay.noise

MODULES = [assay._baselines, assay.checks, assay.noise, assay._selective, assay._simpson,
           assay._ensemble]

PUBLIC = [
    assay.baselines, assay.checks.perturbation, assay.checks.invariance,
    assay.checks.directional, assay.noise.gaussian, assay.noise.swap, assay.noise.missing,
    assay.selective, assay.threshold_for, assay.thresholds, assay.simpson,
    assay.ensemble_report,
]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize("func", PUBLIC, ids=lambda f: f.__qualname__)
def test_public_functions_have_numpy_docstrings_with_examples(func):
    doc = func.__doc__
    assert doc and ">>>" in doc, func
    assert "Parameters\n    ----------" in doc, func
    assert "Examples\n    --------" in doc, func


def test_public_names_are_exported():
    for name in ["baselines", "checks", "noise", "selective", "threshold_for", "thresholds",
                 "simpson", "ensemble_report", "ModelError", "ModelOutputError"]:
        assert name in assay.__all__ and hasattr(assay, name), name
    assert issubclass(assay.ModelError, assay.AssayError)
    assert issubclass(assay.ModelOutputError, assay.ModelError)
    assert issubclass(assay.ModelOutputError, ValueError)
