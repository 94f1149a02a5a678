#!/usr/bin/env python3
"""The HTML report (``assay.html``, ``Report.to_html``): page size, render time, and the time a
real browser takes to open the page and to sort its table (issue 21: "a 1,000-slice report
stays under 2 MB and opens in under a second").

Usage::

    python benches/bench_html.py                          # 100 and 1,000 slices, 5 repeats
    python benches/bench_html.py --slices 1000 --repeats 9
    python benches/bench_html.py --write                   # also write its section of RESULTS.md

For each slice count S, a report like the ``big`` fixture of tests/test_html.py: generated data
(``--rows-per-slice`` x S rows, seed 2: label ``y`` in {0, 1}, score
``p = clip(0.3 y + 0.7 U, 0, 1)``, string column ``g`` with S values), then
``assay.evaluate(..., slices=["g"], bootstrap=--bootstrap)`` with every default metric (building
it is not timed). Then:

- **page bytes**: ``len(render(report).encode("utf-8"))`` (the claim: under 2,000,000);
- **render**: ``assay.html.render(report)``, wall clock, best of ``--repeats`` after an untimed
  warm-up call;
- **load**: the page written to a file (``assay.html.write``) and opened ``--repeats`` times in
  one headless Chromium (Debian's ``chromium``, driven over the DevTools protocol by
  tests/cdp.py, the driver of tests/test_html.py): ``Page.navigate`` to the file, wait for the
  load event, then ``performance.now()`` at the first frame after load (``requestAnimationFrame``
  then ``setTimeout(0)``): the measurement of ``test_browser_opens_a_thousand_slices``, from
  the navigation's start through reading, parsing, style, layout, the script and a paint. Best
  and median, and the first load (a fresh browser's first open of that page) for information;
- **sort**: on each freshly loaded page, a real mouse click (``Input.dispatchMouseEvent``) on
  the ``roc_auc`` header, timed inside the page: from a capture-phase ``click`` listener on
  ``window`` (runs before the header's handler) to a bubble-phase one (runs after it: the rows
  are re-ordered and re-appended), and to the first frame after it (style, layout and paint of
  the re-ordered table). Best and median.

Checks (untimed; a failure prints ``!!! CHECK`` and the exit status is 1): the page has one table
row per report row, no console error, dialog or request but the file itself; after the click
the header says ``aria-sort="ascending"`` and the column's finite values are in ascending order.
No time is asserted. ``--write`` replaces the section between ``<!-- bench_html -->`` and
``<!-- /bench_html -->`` in benches/RESULTS.md (appended if absent).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

# The browser driver is tests/cdp.py (shared with tests/test_html.py): put the tests folder on
# the path, after this script's own folder (benchlib), so `import cdp` finds it.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))

import argparse
import datetime
import json
import math
import platform
import shlex
import statistics
import subprocess
import tempfile
import warnings

import benchlib
import numpy as np
from cdp import Browser, _chromium

import assay
import assay.html
from assay import _native

HERE = Path(__file__).resolve().parent
ROWS = "Array.from(document.querySelectorAll('#slice-table tbody:last-of-type tr'))"
FIRST_FRAME = ("new Promise(r => requestAnimationFrame(() => setTimeout(() => "
               "r(performance.now()), 0)))")
# Timestamps around the header's click handler: a capture listener on window runs before it, a
# bubble listener on window after it; then the first frame after the re-ordered table.
ARM_SORT = """(() => {
  const t = {};
  window.__sorted = new Promise(resolve => {
    window.addEventListener('click', () => { t.start = performance.now(); }, {capture: true, once: true});
    window.addEventListener('click', () => {
      t.handled = performance.now();
      requestAnimationFrame(() => setTimeout(() => { t.frame = performance.now(); resolve(t); }, 0));
    }, {once: true});
  });
  return true;
})()"""


class Checks:
    def __init__(self) -> None:
        self.n = 0
        self.failed: list[str] = []

    def check(self, ok: bool, what: str) -> None:
        self.n += 1
        if not ok:
            self.failed.append(what)
            print(f"!!! CHECK {what}", flush=True)


def make_report(slices: int, rows_per_slice: int, bootstrap: int):
    """The ``big`` fixture of tests/test_html.py, at ``slices`` slices."""
    rng = np.random.default_rng(2)
    n = rows_per_slice * slices
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    g = rng.permutation(np.resize(np.arange(slices), n)).astype(str)
    return assay.evaluate({"y": y, "p": p, "g": g}, label="y", score="p", slices=["g"],
                          bootstrap=bootstrap)


def page_problems(b: Browser, path: Path) -> list[str]:
    """Console errors, dialogs, and requests other than the file itself (tests/test_html.py's
    ``_page_ok``)."""
    own = path.resolve().as_uri()
    return b.errors() + [f"request {u}" for u in b.requests() if u != own]


def measure_browser(b: Browser, path: Path, rows: int, repeats: int, chk: Checks, label: str):
    """(load ms, sort-handler ms, sort-to-frame ms), one of each per fresh load."""
    loads, handled, framed = [], [], []
    for i in range(repeats):
        b.open(path)
        loads.append(b.js(FIRST_FRAME))
        probs = page_problems(b, path)
        chk.check(not probs, f"{label} load {i}: {probs[:3]}")
        got = b.js("document.querySelectorAll('#slice-table tbody tr').length")
        chk.check(got == rows, f"{label} load {i}: {got} table rows, want {rows}")
        headers = b.js("Array.from(document.querySelectorAll('#slice-table thead th'))"
                       ".map(th => th.textContent)")
        col = headers.index("roc_auc")
        b.js(ARM_SORT)
        b.click(f"#slice-table thead th:nth-child({col + 1})")
        t = b.js("window.__sorted")
        handled.append(t["handled"] - t["start"])
        framed.append(t["frame"] - t["start"])
        aria = b.js(f"document.querySelectorAll('#slice-table thead th')[{col}]"
                    ".getAttribute('aria-sort')")
        chk.check(aria == "ascending", f"{label} sort {i}: aria-sort {aria!r}")
        values = b.js(f"{ROWS}.map(r => parseFloat(r.cells[{col}].firstChild.textContent"
                      ".replace(/,/g, '')))")
        finite = [v for v in values if v is not None and not math.isnan(v)]
        chk.check(finite == sorted(finite) and len(finite) > 0.9 * len(values),
                  f"{label} sort {i}: roc_auc column not in ascending order")
        probs = page_problems(b, path)
        chk.check(not probs, f"{label} after the sort {i}: {probs[:3]}")
    return loads, handled, framed


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def chromium_version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", default="100,1000", help="comma list of slice counts")
    ap.add_argument("--repeats", type=int, default=5,
                    help="renders (best kept) and browser loads (best, median) per size")
    ap.add_argument("--rows-per-slice", type=int, default=150,
                    help="generated rows per slice (default 150, as tests/test_html.py)")
    ap.add_argument("--bootstrap", type=int, default=30, help="bootstrap replicates (default 30)")
    ap.add_argument("--no-browser", action="store_true", help="size and render time only")
    ap.add_argument("--write", action="store_true", help="write our section of RESULTS.md")
    args = ap.parse_args(argv)
    try:
        sizes = [int(x) for x in args.slices.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--slices takes a comma list of integers; got {args.slices!r}")
    if not sizes or min(sizes) < 1:
        ap.error("--slices needs at least one positive count")
    repeats = max(1, args.repeats)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=RuntimeWarning)

    cmd = shlex.join(["python", "benches/bench_html.py", *(sys.argv[1:] if argv is None else argv)])
    build = "debug" if getattr(_native, "DEBUG_BUILD", False) else "release"
    machine = f"{benchlib.cpu_model()}, {benchlib.cores()} cores"
    software = (f"Python {platform.python_version()}, assay {getattr(assay, '__version__', '?')} "
                f"({build} build of the native extension; the HTML path is pure Python)")
    exe = "" if args.no_browser else _chromium()
    browser_note = "no browser (--no-browser)" if args.no_browser else "no chromium found"
    if exe:
        try:
            import websocket  # noqa: F401
            browser_note = chromium_version(exe) + " (--headless=new), 1280x900"
        except ImportError:
            exe, browser_note = "", "no websocket-client (pip install websocket-client)"
    load_before = loadavg()
    print(f"command: {cmd}")
    print(f"machine: {machine}; load average before: {load_before}")
    print(f"software: {software}")
    print(f"browser: {browser_note}", flush=True)

    chk = Checks()
    results = []
    browser = Browser(exe) if exe else None
    try:
        with tempfile.TemporaryDirectory(prefix="assay-bench-html-") as tmp:
            for s in sizes:
                label = f"{s:,} slices"
                rep = make_report(s, args.rows_per_slice, args.bootstrap)
                rows = rep.table.height
                render_s, page = benchlib.best_of(lambda rep=rep: assay.html.render(rep), repeats,
                                                  warmup=True)
                size = len(page.encode("utf-8"))
                path = Path(tmp) / f"report-{s}.html"
                assay.html.write(rep, path)
                chk.check(path.read_bytes() == page.encode("utf-8"),
                          f"{label}: the written file differs from render()")
                r = dict(slices=s, rows=rows, n=args.rows_per_slice * s, bytes=size,
                         render=render_s, metrics=len(rep.metrics))
                if browser is not None:
                    loads, handled, framed = measure_browser(browser, path, rows, repeats, chk,
                                                             label)
                    r.update(load=loads, handled=handled, framed=framed)
                results.append(r)
                line = (f"{label}: {rows:,} report rows x {len(rep.metrics)} metrics, "
                        f"{size:,} bytes, render {render_s:.3f} s")
                if browser is not None:
                    line += (f"; load ms {json.dumps([round(x, 1) for x in r['load']])}, "
                             f"sort ms {json.dumps([round(x, 1) for x in r['framed']])}")
                print(line, flush=True)
    finally:
        if browser is not None:
            browser.close()
    load_after = loadavg()
    print(f"load average after: {load_after}", flush=True)

    def med(xs):
        return statistics.median(xs) if xs else None

    now = datetime.datetime.now(datetime.UTC)
    lines = [
        f"## HTML report (issue 21; {now:%Y-%m-%d %H:%M} UTC)",
        "",
        f"Reports like tests/test_html.py's `big` fixture ({args.rows_per_slice} generated rows a "
        f"slice, every default metric, bootstrap={args.bootstrap} intervals); render best of "
        f"{repeats} after a warm-up call; browser: {repeats} loads of the file in one headless "
        "Chromium, time to the first frame after load (`performance.now()`), and on each fresh "
        "page a click on the `roc_auc` header timed in the page until the rows are re-ordered "
        "(handler) and until the next frame.",
        "",
        "| slices | page bytes | < 2 MB | render s | load ms best | load ms median | first load ms "
        "| sort ms (handler) best | sort ms to frame best | sort ms to frame median |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ld, hd, fr = r.get("load"), r.get("handled"), r.get("framed")
        lines.append(
            f"| {r['slices']:,} | {r['bytes']:,} | {'yes' if r['bytes'] < 2_000_000 else 'no'} "
            f"| {r['render']:.3f} | {fmt_ms(min(ld) if ld else None)} | {fmt_ms(med(ld))} "
            f"| {fmt_ms(ld[0] if ld else None)} | {fmt_ms(min(hd) if hd else None)} "
            f"| {fmt_ms(min(fr) if fr else None)} | {fmt_ms(med(fr))} |")
    vline = (f"all {chk.n} checks passed" if not chk.failed
             else f"**FAILED**: {len(chk.failed)} of {chk.n} checks")
    lines += [
        "",
        f"Checks (untimed): {vline} (table rows, no console error or request, the column in "
        "order after the click). No time is asserted anywhere.",
        f"Browser: {browser_note}.",
        f"Machine: {machine}; load average (1, 5, 15 min) {load_before} before, {load_after} "
        f"after; {software}.",
        f"Command: `ASSAY_ALLOW_DEBUG_BUILD=1 {cmd}`" if build == "debug" else f"Command: `{cmd}`",
    ]
    busy = [x for x in (load_before, load_after) if x != "?" and
             float(x.split()[0]) >= 0.5 * benchlib.cores()]
    if busy:
        lines.append(f"The machine was busy (1-minute load average at least half of its "
                     f"{benchlib.cores()} cores): the times are those of a shared machine, not "
                     "of an idle one.")
    lines += [f"- `{m}`" for m in chk.failed[:20]]
    print()
    benchlib.publish("\n".join(lines), "bench_html", args.write)
    return 1 if chk.failed else 0


if __name__ == "__main__":
    sys.exit(main())
