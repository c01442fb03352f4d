"""`tdx build` of examples/minimal: full builds, a no-op build and an incremental rebuild, in one run.

Everything runs the real CLI (`sys.executable -m tdxstore.cli.app build`) in a subprocess against ONE fresh
TDX_HOME (a temporary directory unless --home is given), so the first row is a cold build: empty
package cache, no mkosi tools tree. The table says what was warm for each row. Goals (issue 5): no-op
under 1 s; an incremental rebuild after changing one file at most 25 % of the full build.
Usage: .venv/bin/python benchmarks/bench_build.py [--home DIR] [--keep]
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

MESSAGE = 'content="hello from a TDX guest\\n"'
CHANGED = 'content="hello from a changed TDX guest\\n"'


def timed_build(home: Path, tdxfile: Path, out: Path, fmt: str) -> Run:
    run = tdx(home, "build", tdxfile, "-o", out, "--format", fmt)
    if run.rc != 0:
        sys.exit(f"build failed:\n{run}")
    return run


def changed_copy(dest: Path) -> Path:
    """A copy of examples/minimal whose /etc/hello-tdx/message has other content."""
    shutil.copytree(MINIMAL, dest)
    tdxfile = dest / "TDXfile"
    text = tdxfile.read_text()
    if MESSAGE not in text:
        sys.exit(f"{MINIMAL / 'TDXfile'} no longer contains {MESSAGE}; update the benchmark")
    tdxfile.write_text(text.replace(MESSAGE, CHANGED))
    return dest


def measure(home: Path, work: Path) -> list[tuple[str, float, float | None, str, str]]:
    """Rows: (what, seconds, full-build time it is compared with, goal, what was warm)."""
    rows: list[tuple[str, float, float | None, str, str]] = []
    full_tar = timed_build(home, MINIMAL, work / "out", "tar").seconds
    rows.append(("full build, tar", full_tar, None, "-", "nothing (empty TDX_HOME)"))
    full_uki = timed_build(home, MINIMAL, work / "out-uki", "uki").seconds
    rows.append(("full build, uki", full_uki, None, "-", "package cache + tools tree of the tar build"))
    noop = timed_build(home, MINIMAL, work / "out", "tar")
    if "up to date" not in noop.stderr:
        sys.exit(f"the second build was not a lookup:\n{noop}")
    rows.append(("no-op build, tar", noop.seconds, full_tar, "< 1 s", "everything (image valid)"))
    noop_uki = timed_build(home, MINIMAL, work / "out-uki", "uki").seconds
    rows.append(("no-op build, uki", noop_uki, full_uki, "< 1 s", "everything (image valid)"))
    copy = changed_copy(work / "changed")
    incr = timed_build(home, copy, work / "out-changed", "tar").seconds
    rows.append(("incremental, tar (1 file changed)", incr, full_tar, "<= 25 %", "caches of both builds"))
    incr_uki = timed_build(home, copy, work / "out-changed-uki", "uki").seconds
    rows.append(("incremental, uki (1 file changed)", incr_uki, full_uki, "<= 25 %", "caches of all builds"))
    return rows


def table(rows: list[tuple[str, float, float | None, str, str]]) -> str:
    head = f"{'what':36} {'seconds':>8} {'ratio':>7}  {'goal':8} warm"
    lines = [head, "-" * len(head)]
    for what, secs, ref, goal, warm in rows:
        ratio = f"{secs / ref:.1%}" if ref else "1"
        lines.append(f"{what:36} {secs:8.2f} {ratio:>7}  {goal:8} {warm}")
    lines.append("ratio: to the full build of the same format (tar: cold; uki: after the tar build, so its "
                 "package cache and tools tree were warm)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--home", type=Path, help="TDX_HOME to use (default: a fresh temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary TDX_HOME")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tdx-bench-build-", dir="/var/tmp"))
    home = args.home or work / "home"
    try:
        print(f"TDX_HOME={home}", file=sys.stderr)
        print(table(measure(home, work)))
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            remove_tree(work)


if __name__ == "__main__":
    main()
