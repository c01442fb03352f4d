"""`tdx build` of examples/minimal with its Debian packages locked, against the same build unlocked.

Runs the real CLI in subprocesses against ONE TDX_HOME (`--home`, e.g. one where both were built
once; otherwise a temporary one, and the first rows are cold builds). Rows: the locked cold build
(lock + fetch 100-odd .debs + repository + mkosi offline) and the unlocked one, then a no-op build of
each (goal: under 1 s), then `tdx lock` of an up-to-date lock (no index is fetched).
Usage: .venv/bin/python benchmarks/bench_locked.py [--home DIR] [--format tar|uki] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tdxstore._fs import remove_tree
from tests.e2e.buildhelp import MINIMAL, Run, tdx


def must(run: Run) -> Run:
    if run.rc != 0:
        sys.exit(f"failed:\n{run}")
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path)
    ap.add_argument("--format", default="tar")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="tdx-bench-locked-", dir="/var/tmp"))
    work = Path(tempfile.mkdtemp(prefix="tdx-bench-locked-work-"))
    try:
        locked = work / "locked"
        shutil.copytree(MINIMAL, locked)
        plain = work / "plain"
        shutil.copytree(MINIMAL, plain)
        rows: list[tuple[str, float]] = []
        rows.append(("tdx lock (resolve 4 suites)", must(tdx(home, "lock", "-p", locked)).seconds))
        rows.append(("locked build", must(tdx(home, "build", locked, "--frozen", "-f", args.format,
                                               "-o", work / "o1")).seconds))
        rows.append(("unlocked build (baseline)", must(tdx(home, "build", plain, "-f", args.format,
                                                            "-o", work / "o2")).seconds))
        rows.append(("locked no-op build", must(tdx(home, "build", locked, "--frozen", "-f", args.format,
                                                     "-o", work / "o1")).seconds))
        rows.append(("unlocked no-op build (baseline)", must(tdx(home, "build", plain, "-f", args.format,
                                                                  "-o", work / "o2")).seconds))
        rows.append(("tdx lock, lock up to date", must(tdx(home, "lock", "-p", locked)).seconds))
        base = dict(rows)
        ratio = {"locked build": "unlocked build (baseline)",
                 "locked no-op build": "unlocked no-op build (baseline)"}
        print(f"{'step':36} {'seconds':>9} {'ratio':>7}")
        for name, secs in rows:
            r = f"{secs / base[ratio[name]]:.2f}" if name in ratio else ""
            print(f"{name:36} {secs:9.2f} {r:>7}")
    finally:
        remove_tree(work)
        if args.home is None and not args.keep:
            remove_tree(home)


if __name__ == "__main__":
    main()
