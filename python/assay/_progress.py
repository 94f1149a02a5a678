"""Progress of a long pass: rows read (of the total, where known), throughput and ETA, on an
interactive stderr or in a Jupyter notebook.

The engine pulls the input batch by batch through the Python side of the stream; the counter
sits there, so progress costs one counter update per batch (never per row). Nothing is shown
before the job has run for ``MIN_SECONDS``, nor more often than every ``INTERVAL`` seconds.
Once the rows are read, the engine computes the metrics (sorts, bootstrap walks, fits), which
can take longer than the read: a ticker thread then shows the time spent computing, until the
call that consumed the stream returns (its :class:`assay._input.StreamGuard` ends the line).

On by default only where someone watches: an interactive terminal on stderr, or a notebook.
``progress=True``/``False`` on a call decides for that call; the environment variable
``ASSAY_PROGRESS=0`` (or ``1``) switches the default off (or on).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from ._args import bool_arg

MIN_SECONDS = 1.0
"""Nothing is drawn before the pass has run this long (seconds)."""
INTERVAL = 0.1
"""The least time between two redraws (seconds)."""
TICK = 0.5
"""How often the line is redrawn while the metrics are computed (seconds)."""

_OFF = ("0", "false", "no", "off")
_ON = ("1", "true", "yes", "on")


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not an IPython session after all
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def enabled(progress: Any) -> bool:
    """Whether a call shows progress: its ``progress=`` argument, else ``ASSAY_PROGRESS``,
    else whether stderr is an interactive terminal or the session a notebook."""
    if progress is not None:
        return bool_arg(progress, "progress")
    env = os.environ.get("ASSAY_PROGRESS", "").strip().lower()
    if env in _OFF:
        return False
    if env in _ON:
        return True
    try:
        tty = sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty or _in_notebook()


def _duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


class Progress:
    """One pass's progress line."""

    def __init__(self, total: int | None, what: str = "rows") -> None:
        self.total = total if total and total > 0 else None
        self.what = what
        self.rows = 0
        self.start = time.perf_counter()
        self.drawn_at = 0.0
        self.drawn = False
        self.notebook = _in_notebook()
        self._handle: Any = None
        self.read_seconds: float | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def line(self, done: bool = False) -> str:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = self.rows / elapsed
        text = f"assay: {self.rows:,}"
        if self.total is not None:
            pct = 100.0 * min(self.rows / self.total, 1.0)
            text += f"/{self.total:,} {self.what} ({pct:3.0f}%)"
        else:
            text += f" {self.what}"
        text += f", {rate:,.0f} {self.what}/s"
        if done:
            text += f", read in {_duration(elapsed)}"
        elif self.total is not None and rate > 0:
            text += f", ETA {_duration(max(self.total - self.rows, 0) / rate)}"
        return text

    def computing_line(self, done: bool = False) -> str:
        """The line once every row is read: the read's totals, and the time spent computing."""
        read = self.read_seconds or 0.0
        rate = self.rows / max(read, 1e-9)
        text = (f"assay: {self.rows:,} {self.what} read in {_duration(read)} "
                f"({rate:,.0f} {self.what}/s)")
        spent = _duration(time.perf_counter() - self.start - read)
        return text + (f", computed in {spent}" if done else f"; computing... {spent}")

    def read_done(self) -> None:
        """Every row is read: the engine computes now. A ticker keeps the line current
        (drawn once the job has run for ``MIN_SECONDS``) until :meth:`finish`."""
        self.read_seconds = time.perf_counter() - self.start
        if self.drawn:
            self._draw(self.computing_line())

        def tick() -> None:
            while not self._stop.wait(TICK):
                if time.perf_counter() - self.start >= MIN_SECONDS:
                    self._draw(self.computing_line())

        ticker = threading.Thread(target=tick, name="assay-progress", daemon=True)
        try:
            ticker.start()
        except RuntimeError:  # (no thread to be had: progress must never break a job)
            return
        self._ticker = ticker

    def finish(self, ok: bool) -> None:
        """The call that consumed the stream returned (``ok``) or failed: stops the ticker,
        and ends the line with the totals, or erases it."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if self.read_seconds is None:  # the stream was not read to its end
            self.close(done=False)
        elif self.drawn:
            if ok:
                self._draw(self.computing_line(done=True), end=True)
            else:
                self.close(done=False)
            self.drawn = False

    def update(self, rows: int) -> None:
        self.rows += rows
        now = time.perf_counter()
        if now - self.start < MIN_SECONDS or now - self.drawn_at < INTERVAL:
            return
        self.drawn_at = now
        self._draw(self.line())

    def close(self, done: bool = True) -> None:
        """Ends the line: with the totals when the pass read everything (``done``), else
        erased (a failed or interrupted pass)."""
        if not self.drawn:
            return
        if done:
            self._draw(self.line(done=True), end=True)
        elif not self.notebook:
            try:
                sys.stderr.write("\r" + " " * 78 + "\r")
                sys.stderr.flush()
            except Exception:  # noqa: BLE001 - progress must never break a job
                pass
        self.drawn = False

    def _draw(self, text: str, end: bool = False) -> None:
        self.drawn = True
        try:
            if self.notebook:
                from IPython.display import display  # type: ignore[import-not-found]

                if self._handle is None:
                    self._handle = display({"text/plain": text}, raw=True, display_id=True)
                else:
                    self._handle.update({"text/plain": text}, raw=True)
                return
            sys.stderr.write("\r" + text.ljust(78) + ("\n" if end else ""))
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - progress must never break a job
            pass
