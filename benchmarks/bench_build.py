"""`tdx build` of examples/minimal: full builds, a no-op build and an incremental rebuild, in one run.

Everything runs the real CLI (`sys.executable -m tdxstore.cli.app build`) in a subprocess against ONE fresh
TDX_HOME (a temporary directory unless --home is given), so the first row is a cold build: empty
package cache, no mkosi tools tree. The table says what was warm for each row. Goals (issue 5): no-op
under 1 s; an incremental rebuild after changing one file at most 25 % of the full build. A second table
gives the UKI's size and its time to service (QEMU start to the service's console line, TCG, 1 GiB) for
the default slim image against `slim=False` built in the same run; `--size-and-boot` runs only that part.
Usage: .venv/bin/python benchmarks/bench_build.py [--home DIR] [--keep] [--size-and-boot]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tdxstore._fs import remove_tree
from tdxstore.image import qemu
from tdxstore.measure.footprint import uki_footprint
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


def unslim_copy(dest: Path) -> Path:
    """A copy of examples/minimal built with `slim=False` (docs, translations, hwdb, every module)."""
    shutil.copytree(MINIMAL, dest)
    tdxfile = dest / "TDXfile"
    text = tdxfile.read_text()
    decl = 'Image("minimal", base="debian/bookworm")'
    if decl not in text:
        sys.exit(f"{MINIMAL / 'TDXfile'} no longer contains {decl}; update the benchmark")
    tdxfile.write_text(text.replace(decl, 'Image("minimal", base="debian/bookworm", slim=False)'))
    return dest


def size_and_boot(home: Path, work: Path) -> list[tuple[str, int, int, float, float]]:
    """Rows: (image, UKI bytes, initrd file bytes, seconds from QEMU start to the service's line, build s)."""
    rows = []
    for label, tdxfile in (("slim=False", unslim_copy(work / "unslim")), ("slim (default)", MINIMAL)):
        out = work / f"out-{label.split()[0]}"
        build_s = timed_build(home, tdxfile, out, "uki").seconds
        uki = out / "minimal" / "image.efi"
        fp = uki_footprint(uki.read_bytes(), directories=1)
        start = time.monotonic()
        qemu.boot(uki, memory_mb=1024, timeout=600, expect=b"hello-tdx: started")
        rows.append((label, fp.total, fp.initrd_size or 0, time.monotonic() - start, build_s))
        manifest = json.loads((out / "minimal" / "measurements.json").read_text())
        print(f"{label}: RTMR2 {manifest['measurements']['RTMR2'][:16]}…", file=sys.stderr)
    return rows


def size_table(rows: list[tuple[str, int, int, float, float]]) -> str:
    head = f"{'image (examples/minimal, uki)':30} {'UKI MB':>7} {'ratio':>6} {'initrd files MB':>16} " \
           f"{'to service s':>13} {'ratio':>6}"
    lines = [head, "-" * len(head)]
    base_size, base_boot = rows[0][1], rows[0][3]
    for label, size, files, boot, _build in rows:
        lines.append(f"{label:30} {size / 1e6:7.1f} {size / base_size:6.2f} {files / 1e6:16.1f} "
                     f"{boot:13.1f} {boot / base_boot:6.2f}")
    lines.append("ratio: to slim=False; to service: QEMU start (TCG, 1 GiB, 1 vCPU) to 'hello-tdx: started'")
    return "\n".join(lines)


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
    ap.add_argument("--size-and-boot", action="store_true", help="only the size and time-to-service table")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tdx-bench-build-", dir="/var/tmp"))
    home = args.home or work / "home"
    try:
        print(f"TDX_HOME={home}", file=sys.stderr)
        if not args.size_and_boot:
            print(table(measure(home, work)))
        print(size_table(size_and_boot(home, work)))
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            remove_tree(work)


if __name__ == "__main__":
    main()
