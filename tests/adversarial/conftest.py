"""Runs the adversarial cases' child processes in a small pool, ahead of the tests that wait
for them, so the whole suite takes about (sum of child times) / workers.

``ADV_WORKERS`` sets the pool size (default 2: CI machines have 2 cores). ``ADV_REPORT=path``
writes every outcome as JSON, for triage.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness  # noqa: E402

_SELECTED: list[str] = []
_POOL: ThreadPoolExecutor | None = None
_FUTURES: dict[str, Future[_harness.Outcome]] = {}
_DONE: dict[str, _harness.Outcome] = {}


def pytest_collection_finish(session: Any) -> None:
    # After -k / -m deselection: only the cases that will run are started.
    _SELECTED.clear()
    for it in session.items:
        cs = getattr(it, "callspec", None)
        if cs is not None and "adversarial_case" in cs.params:
            _SELECTED.append(cs.params["adversarial_case"])


@pytest.fixture(scope="session")
def adversarial_outcome() -> Any:
    global _POOL
    cases = _harness.load_all()
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=int(os.environ.get("ADV_WORKERS", "2")))
        # The slowest cases first, so they overlap with the many short ones.
        order = sorted(_SELECTED, key=lambda c: -cases[c].timeout if cases[c].timeout > 60
                       else 0)
        for cid in order:
            _FUTURES[cid] = _POOL.submit(_harness.run_case, cases[cid])

    def get(cid: str) -> _harness.Outcome:
        if cid not in _FUTURES:  # not selected at collection (should not happen)
            _FUTURES[cid] = _POOL.submit(_harness.run_case, cases[cid])  # type: ignore[union-attr]
        out = _FUTURES[cid].result()
        _DONE[cid] = out
        return out

    yield get
    _POOL.shutdown(wait=False, cancel_futures=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _DONE:
        return
    cases = _harness.CASES
    counts = Counter(o.cls for o in _DONE.values())
    bad = {c: o for c, o in _DONE.items() if o.cls not in cases[c].expect}
    terminalreporter.write_sep("-", "adversarial suite")
    terminalreporter.write_line(
        f"{len(_DONE)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + f"; {len(bad)} not as expected")
    for c, o in bad.items():
        first = o.detail.strip().splitlines()[0][:160] if o.detail.strip() else ""
        terminalreporter.write_line(f"  {o.cls:7s} {c}: {first}")
    path = os.environ.get("ADV_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({c: {"class": o.cls, "expect": sorted(cases[c].expect),
                           "wall": round(o.wall, 2), "detail": o.detail}
                       for c, o in _DONE.items()}, f, indent=1)
