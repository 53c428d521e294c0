"""Run every fold of a leave-series-out experiment of ``fcn_detector.py``, then pool them.

One command instead of one ``--fold I`` run per fold and a ``--pool`` run: the folds are
spread over ``--workers`` processes (one per core: each fold trains for a wall-time budget,
so run nothing else beside them), each fold's output goes to ``LOGS/NAME-foldI.log``, and
the pooled figures to ``runs/fcn_loso_NAME<suffix>.json`` (what ``results_tables.py``
reads). A fold whose model was saved before is not trained again (``fcn_detector.py``
reloads it), so a run cut short continues where it stopped::

    .venv/bin/python experiments/fcn_loso.py --name fcn-bg-s2 --workers 2 -- \\
        --seed 2 --real --minutes 14 --threads 1 --a-min-grid 4 16 48 120 \\
        --backgrounds ../shared/data/gdxray-unannotated

Everything after ``--`` is passed to every fold and to the pooling run (``--kfold`` and
``--name`` are set here).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_fold(name: str, kfold: int, fold: int, rest: list[str], logs: Path) -> int:
    """One fold of ``fcn_detector.py`` (its output in ``logs``); its exit status."""
    log = logs / f"{name}-fold{fold}.log"
    cmd = [sys.executable, str(HERE / "fcn_detector.py"), "--name", name, "--kfold",
           str(kfold), "--fold", str(fold), *rest]
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT,
                            env={**os.environ, "XDEFECT_PROGRESS": "0"}).returncode
    print(f"fold {fold}: exit {rc} after {(time.perf_counter() - t0) / 60:.1f} min ({log})",
          flush=True)
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="the run's name (fcn_detector.py --name)")
    ap.add_argument("--kfold", type=int, default=5)
    ap.add_argument("--folds", type=int, nargs="+", default=None,
                    help="only these folds (default: all)")
    ap.add_argument("--workers", type=int, default=2, help="folds run at once")
    ap.add_argument("--logs", type=Path, default=Path("runs/logs"))
    ap.add_argument("rest", nargs=argparse.REMAINDER,
                    help="-- then fcn_detector.py's other arguments")
    a = ap.parse_args()
    rest = a.rest[1:] if a.rest[:1] == ["--"] else a.rest
    if {"--kfold", "--fold", "--name", "--pool"} & set(rest):
        ap.error("--kfold, --fold, --name and --pool are set by fcn_loso.py")
    if a.workers < 1 or a.kfold < 2:
        ap.error("--workers must be >= 1 and --kfold >= 2")
    folds = a.folds if a.folds is not None else list(range(a.kfold))
    if any(not 0 <= f < a.kfold for f in folds):
        ap.error(f"--folds must lie in 0..{a.kfold - 1}")
    a.logs.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(a.workers) as ex:
        codes = list(ex.map(lambda f: run_fold(a.name, a.kfold, f, rest, a.logs), folds))
    failed = [f for f, rc in zip(folds, codes, strict=True) if rc]
    if failed:
        print(f"folds {failed} failed: see their logs; pooling the others", file=sys.stderr)
    pooled = subprocess.run([sys.executable, str(HERE / "fcn_detector.py"), "--name", a.name,
                             "--kfold", str(a.kfold), "--pool", *rest])
    return 1 if failed or pooled.returncode else 0


if __name__ == "__main__":
    raise SystemExit(main())
