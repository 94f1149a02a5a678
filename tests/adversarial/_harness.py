"""The adversarial harness: case registry, the child-process runner and the classifier.

Every case is a function registered with :func:`case`. It runs in a child process of its own
(``python _harness.py MODULE CASE_ID``) under an address-space cap (``RLIMIT_AS``, set by the
child itself before anything is imported: ``preexec_fn`` is not safe while the parent runs its
workers in threads) and a wall-clock timeout. The child prints one JSON line with the outcome;
the parent classifies it:

``ok``     the case returned normally (its own reference checks passed);
``typed``  it raised an ``assay.AssayError`` subclass (or ``KeyboardInterrupt`` where the case
           allows it) whose message is non-empty and matches every expected pattern;
``unclear`` a typed error whose message misses an expected word (or is empty);
``crash``  the process died on a signal / abort, or any other exception escaped (PanicException,
           OverflowError, TypeError, pyarrow errors...);
``hang``   the timeout passed;
``wrong``  the case finished but a value differs from its reference, or a metric column holds
           NaN/inf.

A case states what it expects (``ok``, ``typed`` or either); anything else fails its test.
The body of a case signals findings it detects itself by raising :class:`Wrong`,
:class:`Crash` or :class:`Hang` (used by cases that drive a grandchild: CLI, SIGINT, fork), or
:class:`Typed` for a clean, typed failure seen from outside (a CLI's ``assay: error: ...``).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
MARK = "@@ADVERSARIAL@@"
GIB = 1 << 30

# Address-space cap of a child (RLIMIT_AS). The extension, numpy, pyarrow and polars reserve
# ~2 GiB of address space at import (thread stacks, allocator arenas), so 4 GiB leaves room for
# the small inputs of the cases while a huge allocation fails instead of waking the OOM killer.
DEFAULT_MEM_GIB = 4.0
DEFAULT_TIMEOUT_S = 60.0


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    module: str
    func: Callable[[], Any]
    expect: frozenset[str]
    words: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT_S
    mem_gib: float = DEFAULT_MEM_GIB
    interrupt: bool = False
    env: dict[str, str] = field(default_factory=dict)
    doc: str = ""


CASES: dict[str, Case] = {}


def case(
    id: str | None = None,
    *,
    expect: str | Iterable[str] = "ok",
    words: Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT_S,
    mem_gib: float = DEFAULT_MEM_GIB,
    interrupt: bool = False,
    env: dict[str, str] | None = None,
) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Registers a case. ``expect``: "ok", "typed" or both. ``words``: regular expressions
    (case-insensitive) that a typed error's message must all contain."""
    exp = frozenset([expect] if isinstance(expect, str) else expect)
    assert exp and exp <= {"ok", "typed"}, exp

    def deco(fn: Callable[[], Any]) -> Callable[[], Any]:
        cid = id or fn.__name__
        assert cid not in CASES, f"duplicate case id {cid}"
        CASES[cid] = Case(cid, fn.__module__, fn, exp, tuple(words), timeout, mem_gib,
                          interrupt, dict(env or {}), (fn.__doc__ or "").strip())
        return fn

    return deco


def add(id: str, fn: Callable[[], Any], **kw: Any) -> None:
    """Registers a generated case (a closure); the child rebuilds it by importing the module."""
    fn.__module__ = sys._getframe(1).f_globals["__name__"]
    case(id, **kw)(fn)


CASE_MODULES = [
    "cases_types",
    "cases_values",
    "cases_args",
    "cases_streams",
    "cases_files",
    "cases_cli",
    "cases_process",
    "cases_regression",
    "cases_torch",
    "cases_gates",
    "cases_batch",
]


def load_all() -> dict[str, Case]:
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    for m in CASE_MODULES:
        if os.path.exists(os.path.join(HERE, m + ".py")):
            importlib.import_module(m)
    return CASES


# ---------------------------------------------------------------------------------------------
# signals raised by case bodies
# ---------------------------------------------------------------------------------------------


class Finding(Exception):
    status = "?"


class Wrong(Finding):
    status = "wrong"


class Crash(Finding):
    status = "crash"


class Hang(Finding):
    status = "hang"


class Typed(Exception):
    """A clean, typed failure observed from outside the library (a CLI error line)."""


def check(cond: Any, msg: str) -> None:
    if not cond:
        raise Wrong(msg)


# ---------------------------------------------------------------------------------------------
# helpers for case bodies (run in the child)
# ---------------------------------------------------------------------------------------------


def tmpdir() -> str:
    return os.environ.get("ADV_TMP") or tempfile.mkdtemp(prefix="assay-adv-")


def metric_columns(rep: Any) -> list[str]:
    cols = rep.to_arrow().column_names
    out = []
    for m in rep.metrics:
        for c in (m, f"{m}_lo", f"{m}_hi"):
            if c in cols:
                out.append(c)
    return out


def validate(rep: Any) -> Any:
    """Invariants every report must satisfy: no NaN/inf in a metric column, ``n`` of overall
    (``n_items`` of a ranking report, whose ``n`` counts queries) equals the rows read minus
    the rows dropped, a null metric has a note."""
    t = rep.to_arrow()
    for c in metric_columns(rep):
        vals = t.column(c).to_pylist()
        for i, v in enumerate(vals):
            if v is not None and not math.isfinite(v):
                raise Wrong(f"metric column {c!r} holds {v!r} (row {i}, slice "
                            f"{t.column('slice')[i].as_py()!r})")
    if "n_items" in t.column_names and t.num_rows:
        # A ranking report: n counts queries, n_items the rows kept.
        n0 = t.column("n_items")[0].as_py()
        check(n0 == rep.rows - rep.dropped,
              f"overall n_items={n0} but rows={rep.rows} dropped={rep.dropped}")
    elif "n" in t.column_names and t.num_rows:
        n0 = t.column("n")[0].as_py()
        check(n0 == rep.rows - rep.dropped,
              f"overall n={n0} but rows={rep.rows} dropped={rep.dropped}")
    return rep


def evaluate(data: Any, **kw: Any) -> Any:
    """``assay.evaluate`` followed by :func:`validate`."""
    import assay

    return validate(assay.evaluate(data, **kw))


def row(rep: Any, slice: str = "overall") -> dict[str, Any]:
    for r in rep.to_arrow().to_pylist():
        if r["slice"] == slice:
            return r
    raise Wrong(f"slice {slice!r} missing; slices: {rep.to_arrow().column('slice').to_pylist()}")


def close(got: Any, ref: Any, what: str, rtol: float = 1e-9, atol: float = 1e-12) -> None:
    if ref is None or (isinstance(ref, float) and math.isnan(ref)):
        check(got is None, f"{what}: expected null, got {got!r}")
        return
    check(got is not None, f"{what}: expected {ref!r}, got null")
    check(math.isfinite(got) and abs(got - ref) <= atol + rtol * abs(ref),
          f"{what}: got {got!r}, reference {ref!r}")


def same_metrics(rep: Any, ref: Any, what: str = "", rtol: float = 1e-9,
                 atol: float = 1e-12, cols: Iterable[str] | None = None) -> None:
    """Two reports hold the same slices and (to rtol) the same metric values."""
    a = {r["slice"]: r for r in rep.to_arrow().to_pylist()}
    b = {r["slice"]: r for r in ref.to_arrow().to_pylist()}
    check(list(a) == list(b), f"{what}: slices {list(a)} differ from reference {list(b)}")
    for s in b:
        check(a[s].get("n") == b[s].get("n"), f"{what}: n of {s!r} {a[s].get('n')} vs "
                                               f"{b[s].get('n')}")
        for m in cols if cols is not None else ref.metrics:
            close(a[s].get(m), b[s][m], f"{what} slice {s!r} metric {m}", rtol, atol)


def toy(n: int = 200, seed: int = 0, groups: int = 3) -> dict[str, Any]:
    """A small dataset: y (0/1 int64), p (float64 in [0, 1], with ties), w, g (int64), x."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), 2)
    return {"y": y, "p": p, "w": rng.uniform(0.5, 2.0, n), "g": rng.integers(0, groups, n),
            "x": rng.normal(40.0, 12.0, n)}


CLI = ("import sys\n"
       "from assay.cli import main\n"
       "sys.exit(main(sys.argv[1:]))\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u0080-\u009f\u200e\u200f\u202a-\u202e"
                      r"\u2066-\u2069]")


def cli(*argv: str, timeout: float = 60.0, words: Iterable[str] = (),
        forbid: Iterable[str] = ()) -> str:
    """Runs the ``assay`` command line in a grandchild and judges it as a user would.

    Returns stdout on exit status 0; raises :class:`Typed` for a clean ``error:`` line with a
    non-zero status; :class:`Crash` for a traceback or a signal; :class:`Hang` on timeout;
    :class:`Wrong` when stdout holds a raw control character (other than newline/tab)."""
    try:
        p = subprocess.run([sys.executable, "-c", CLI, *argv], capture_output=True,
                           timeout=timeout, env=_child_env(), start_new_session=True)
    except subprocess.TimeoutExpired as e:
        raise Hang(f"assay {' '.join(argv)} still running after {timeout}s") from e
    out = p.stdout.decode("utf-8", "surrogateescape")
    err = p.stderr.decode("utf-8", "surrogateescape")
    if p.returncode < 0:
        raise Crash(f"assay {' '.join(argv)} died on signal {-p.returncode}: {err[-400:]}")
    if "Traceback" in err or "Traceback" in out:
        raise Crash(f"assay {' '.join(argv)} printed a traceback: {err[-600:]}")
    for stream, text in (("stdout", out), ("stderr", err)):
        m = _CONTROL.search(text)
        if m:
            raise Wrong(f"raw control character {m.group()!r} in {stream}: {text[:300]!r}")
    for f in forbid:
        if re.search(f, out):
            raise Wrong(f"stdout matches {f!r}: {out[:400]!r}")
    if p.returncode != 0:
        line = next((ln for ln in err.splitlines() if "error:" in ln), "")
        if not line:
            raise Crash(f"assay {' '.join(argv)} exited {p.returncode} without an error line: "
                        f"{err[-400:]!r}")
        raise Typed(line)
    return out


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ASSAY_ALLOW_DEBUG_BUILD"] = "1"
    env.setdefault("PYTHONFAULTHANDLER", "1")
    return env


# ---------------------------------------------------------------------------------------------
# child side
# ---------------------------------------------------------------------------------------------


def _emit(d: dict[str, Any]) -> None:
    sys.stdout.flush()
    sys.stdout.write("\n" + MARK + json.dumps(d) + "\n")
    sys.stdout.flush()


def _child(module: str, cid: str) -> None:
    import resource

    mem = float(os.environ.get("ADV_MEM_GIB", DEFAULT_MEM_GIB))
    if mem > 0:
        lim = int(mem * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    sys.path.insert(0, HERE)
    importlib.import_module(module)
    c = CASES[cid]
    t0 = time.perf_counter()
    try:
        c.func()
    except Finding as e:
        _emit({"status": e.status, "message": str(e), "type": type(e).__name__})
    except Typed as e:
        _emit({"status": "raised", "assay": True, "type": "Typed", "message": str(e)})
    except BaseException as e:  # noqa: BLE001 - classifying is the point
        try:
            import assay

            is_assay = isinstance(e, assay.AssayError)
        except BaseException:  # noqa: BLE001
            is_assay = False
        cause = e.__cause__ or e.__context__
        _emit({
            "status": "raised",
            "assay": is_assay,
            "interrupt": isinstance(e, KeyboardInterrupt),
            "type": f"{type(e).__module__}.{type(e).__qualname__}",
            "message": str(e),
            "cause": None if cause is None else f"{type(cause).__name__}: {cause}"[:300],
            "traceback": "".join(traceback.format_exception(e))[-1500:],
            "elapsed": time.perf_counter() - t0,
        })
    else:
        _emit({"status": "returned", "elapsed": time.perf_counter() - t0})


# ---------------------------------------------------------------------------------------------
# parent side
# ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    cls: str  # ok / typed / unclear / crash / hang / wrong
    detail: str
    wall: float


def run_case(c: Case) -> Outcome:
    env = _child_env()
    env["ADV_MEM_GIB"] = str(c.mem_gib)
    env.update(c.env)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="assay-adv-") as tmp:
        env["ADV_TMP"] = tmp
        proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "_harness.py"), c.module, c.id],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp,
            start_new_session=True,
        )
        try:
            out_b, err_b = proc.communicate(timeout=c.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out_b, err_b = proc.communicate()
            return Outcome("hang", f"no result after {c.timeout:.0f}s; stderr: "
                                   f"{err_b.decode(errors='replace')[-800:]}",
                           time.perf_counter() - t0)
        finally:
            _kill_group(proc)  # grandchildren left behind
    wall = time.perf_counter() - t0
    out = out_b.decode(errors="replace")
    err = err_b.decode(errors="replace")
    return classify(c, proc.returncode, out, err, wall)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def classify(c: Case, rc: int, out: str, err: str, wall: float) -> Outcome:
    line = next((ln for ln in reversed(out.splitlines()) if ln.startswith(MARK)), None)
    if line is None:
        how = f"signal {-rc} ({_signame(-rc)})" if rc < 0 else f"exit status {rc}"
        return Outcome("crash", f"child died ({how}) without a result; stderr: {_tail(err)}",
                       wall)
    d = json.loads(line[len(MARK):])
    st = d["status"]
    if st == "returned":
        return Outcome("ok", f"returned in {d['elapsed']:.2f}s", wall)
    if st in ("wrong", "crash", "hang"):
        return Outcome(st, d["message"], wall)
    msg = d.get("message") or ""
    desc = f"{d['type']}: {msg}"
    if d.get("interrupt"):
        if c.interrupt:
            return Outcome("typed", desc, wall)
        return Outcome("crash", f"unexpected KeyboardInterrupt: {desc}", wall)
    if not d.get("assay"):
        return Outcome("crash", f"non-assay exception {desc}\n{d.get('traceback', '')}", wall)
    if not msg.strip():
        return Outcome("unclear", f"empty message: {desc}", wall)
    missing = [w for w in c.words if not re.search(w, msg, re.IGNORECASE | re.DOTALL)]
    if missing:
        return Outcome("unclear", f"message lacks {missing}: {desc}", wall)
    return Outcome("typed", desc, wall)


def _tail(err: str) -> str:
    """The useful part of a dead child's stderr: its first lines (the abort message) and the
    Python frames of the faulthandler dump, without the list of extension modules."""
    err = err.split("\nExtension modules:")[0]
    return err if len(err) < 2000 else err[:1000] + "\n...\n" + err[-1000:]


def _signame(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return "?"


if __name__ == "__main__":
    # Run through the importable module, so the case modules and the runner share one registry.
    sys.path.insert(0, HERE)
    import _harness

    _harness._child(sys.argv[1], sys.argv[2])
