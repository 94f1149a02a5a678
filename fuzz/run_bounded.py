"""The bounded fuzz run of CI: ``fuzz_arrow_import.py`` in a child process with an address-space
cap, a fixed seed and a fixed number of runs.

A finding (an exception other than ``assay.AssayError``, a broken invariant, a crash, a
per-input timeout, running out of the memory cap) makes libFuzzer exit non-zero and write the
input under ``fuzz/findings/``; this script then prints the tail of the log and exits non-zero,
so CI fails loudly. Reproduce a finding with ``python fuzz/fuzz_arrow_import.py FILE``.

Usage: ``python fuzz/run_bounded.py [RUNS] [extra libFuzzer flags...]``
(environment: ``FUZZ_RUNS``, ``FUZZ_MEM_GIB``, ``FUZZ_MAX_TIME``).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    args = sys.argv[1:]
    runs = int(args.pop(0)) if args and args[0].isdigit() else int(
        os.environ.get("FUZZ_RUNS", "3000"))
    mem = int(float(os.environ.get("FUZZ_MEM_GIB", "6")) * (1 << 30))
    max_time = os.environ.get("FUZZ_MAX_TIME", "600")
    findings = os.path.join(HERE, "findings")
    os.makedirs(findings, exist_ok=True)
    cmd = [sys.executable, os.path.join(HERE, "fuzz_arrow_import.py"), "-seed=1",
           f"-runs={runs}", f"-max_total_time={max_time}", "-timeout=30",
           "-rss_limit_mb=0", "-print_final_stats=1", f"-artifact_prefix={findings}/", *args]

    def cap() -> None:  # runs in the (single-threaded) forked child before exec
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))

    env = dict(os.environ)
    env.setdefault("ASSAY_ALLOW_DEBUG_BUILD", "1")
    print("+", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, preexec_fn=cap, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, errors="replace")
    dt = time.perf_counter() - t0
    log = p.stdout
    with open(os.path.join(findings, "last-run.log"), "w") as f:
        f.write(log)
    tail = "\n".join(log.splitlines()[-60:])
    if p.returncode != 0:
        print(tail)
        print(f"fuzz: FINDING (exit status {p.returncode}) after {dt:.0f}s; inputs and log in "
              f"{findings}/", flush=True)
        return 1
    stats = [ln for ln in log.splitlines() if ln.startswith(("Done", "stat::number_of_executed"))]
    print("\n".join(stats))
    print(f"fuzz: OK, {runs} runs in {dt:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
