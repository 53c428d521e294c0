"""Run every benchmark (``bench/*.py`` but this one) with no arguments and append each
one's JSON line to ``bench/results.jsonl`` with the benchmark's name, the commit (with
``+dirty`` when the tree has uncommitted changes), the date (UTC) and the machine, so
that figures can be compared across commits (``XDEFECT_BENCH_RESULTS`` names another file).
What ``make bench`` runs.

    .venv/bin/python bench/record.py [NAME ...]     # e.g. detect train; default: all
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO
                              ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    # the results file itself changes as the benchmarks are recorded: it does not count
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                ":(exclude)bench/results.jsonl")
    return head + ("+dirty" if dirty else "")


def main() -> int:
    names = sys.argv[1:] or sorted(p.stem for p in HERE.glob("*.py") if p.stem != "record")
    failed = 0
    for name in names:
        script = HERE / f"{name}.py"
        if not script.is_file():
            print(f"bench/record.py: no benchmark {script}", file=sys.stderr)
            return 2
        print(f"bench/{name}.py ...", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              cwd=REPO, env={**os.environ, "XDEFECT_PROGRESS": "0"})
        lines = proc.stdout.strip().splitlines()
        if proc.returncode or len(lines) != 1:
            print(f"bench/{name}.py failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}",
                  file=sys.stderr)
            failed += 1
            continue
        row = {"bench": name, "commit": commit(),
               "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
               "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                          f"{platform.processor() or platform.system()}",
               "figures": json.loads(lines[0])}
        with open(os.environ.get("XDEFECT_BENCH_RESULTS", HERE / "results.jsonl"), "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(lines[0])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
