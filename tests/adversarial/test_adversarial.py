"""The adversarial suite: each case of ``cases_*.py`` in a child process, classified.

See ``_harness.py`` for the classes (ok / typed / unclear / crash / hang / wrong) and
``docs/hardening.md`` for how to add a case.
"""

from __future__ import annotations

import pytest
from _harness import load_all

CASES = load_all()


@pytest.mark.parametrize("adversarial_case", list(CASES))
def test_adversarial(adversarial_case: str, adversarial_outcome) -> None:  # type: ignore[no-untyped-def]
    c = CASES[adversarial_case]
    out = adversarial_outcome(adversarial_case)
    if out.cls not in c.expect:
        pytest.fail(
            f"{adversarial_case}: expected {' or '.join(sorted(c.expect))}, got {out.cls} "
            f"after {out.wall:.1f}s\n{out.detail}",
            pytrace=False,
        )
