"""Helpers shared by the benchmark scripts: the machine's description and RESULTS.md sections.

Imported by the scripts in this folder (run as ``python benches/<script>.py``, which puts this
folder on ``sys.path``). It imports nothing heavy, so a script can still pin the BLAS threads
before it imports numpy.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import time
from pathlib import Path


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The processor's name, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_section(results: Path, begin: str, end: str, text: str) -> None:
    """Replace the section of ``results`` between the ``begin`` and ``end`` markers with
    ``text`` (or append it); the rest of the file is left as it is."""
    old = results.read_text() if results.exists() else ""
    section = f"{begin}\n{text.rstrip()}\n{end}"
    i = old.find(begin)
    j = old.find(end, i) if i >= 0 else -1
    if i >= 0 and j >= 0:
        new = old[:i] + section + old[j + len(end):]
    else:
        if i >= 0:  # an opening marker without its end: the section runs to the end of the file
            old = old[:i]
        new = (old.rstrip("\n") + "\n\n" if old.strip() else "") + section + "\n"
    results.write_text(new)


def publish(text: str, name: str, write: bool) -> None:
    """Print a bench's section, and with ``write`` put it between the ``<!-- name -->``
    markers of RESULTS.md."""
    print(text)
    if write:
        write_section(Path(__file__).resolve().parent / "RESULTS.md", f"<!-- {name} -->",
                      f"<!-- /{name} -->", text)


def best_of(fn, repeat: int, warmup: bool = False):
    """(best wall seconds over ``repeat`` calls of ``fn``, result of the last call), after one
    untimed call when ``warmup``."""
    if warmup:
        fn()
    best = math.inf
    out = None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out
