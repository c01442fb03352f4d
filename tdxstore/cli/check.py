"""`tdx build --check` and the build record (L5): run the check, print one line or the report; note builds.

Kept apart from `cli/image.py` so the build command gains only its options and a call. Prints; the
library (`image/check.py`, `image/record.py`) decides. A differing check exits non-zero through the guard.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tdxstore.errors import DifferenceError
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store

if TYPE_CHECKING:  # the image pipeline (requests, the fetchers) is imported by the check itself, not by path-info
    from tdxstore.image.pipeline import Hooks


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_check(store: Store, tdxfile: Path, *, fmt: str | None, jobs: int | None, keep: bool, as_json: bool,
              import_paths: Sequence[Path], hooks: Callable[[Store], Hooks] = lambda _s: {}) -> None:
    """Rebuild independently and compare; one line when identical, else the report and a DiffError."""
    from tdxstore.image.check import check

    started = time.monotonic()
    with store.gc_guard():
        result = check(store, tdxfile, fmt=fmt, jobs=jobs, keep=keep, phase=_say, import_paths=import_paths,
                       hooks=hooks)
    first = f"; first build {result.first_seconds:.0f} s" if result.first_seconds is not None else ""
    timing = (f"check {time.monotonic() - started:.0f} s, of which second build and comparison "
              f"{result.seconds:.0f} s{first}")
    if as_json:
        print(json.dumps({"path": str(result.image), "reproduced": result.reproduced,
                          "seconds": round(result.seconds, 1),
                          "first_seconds": result.first_seconds, "varied": list(result.varied),
                          "not_varied": list(result.not_varied), "shared_paths": result.shared_paths,
                          "shared_debs": result.shared_debs, "kept": str(result.kept) if result.kept else None,
                          "diff": result.diff.to_json()}, indent=2))
    elif not result.reproduced:
        print(result.diff.render(), end="")
    if not as_json:
        for line in result.varied:
            _say(f"varied: {line}")
        for line in result.not_varied:
            _say(f"not varied: {line}")
    if result.kept is not None:
        _say(f"kept the second build's store at {result.kept} (TDX_HOME={result.kept} tdx store ls)")
    if result.reproduced:
        if not as_json:
            print(f"reproduced: {result.image} (second build identical in every artifact; {timing})")
        return
    raise DifferenceError(f"the second build of {result.image} differs in "
                          f"{', '.join(result.diff.report.artifacts())}",
                          hint="the report above names each difference; `--check --keep` keeps the second build")


def record_build(store: Store, tdxfile: Path, image: StorePath, *, ran: bool, started: float, jobs: int) -> None:
    """Record how a build ran; say in one line when it moved a measurement since the TDXfile's last build."""
    from tdxstore.image.record import BuildRecord, note_build, write_build

    if ran:
        write_build(store, image, BuildRecord(str(image), os.fspath(tdxfile.resolve()), int(time.time()),
                                              round(time.monotonic() - started, 1), jobs,
                                              os.environ.get("TZ", "unset"), os.fspath(store.tmp)))
    line = note_build(store, tdxfile, image)
    if line:
        _say(line)


def check_lines(store: Store, sp: StorePath) -> list[str]:
    """What `tdx store path-info` shows of a path's check record."""
    from tdxstore.image.record import read_check

    rec = read_check(store, sp)
    if rec is None:
        return []
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rec.checked_at))
    lines = [f"  checked:       {'reproduced' if rec.reproduced else 'NOT reproduced'} at {when} ({rec.seconds:.0f} s)"]
    lines += [f"    varied: {v}" for v in rec.varied]
    lines += [f"    differing: {d}" for d in rec.differing]
    return lines


def check_json(store: Store, sp: StorePath) -> dict[str, object] | None:
    from dataclasses import asdict

    from tdxstore.image.record import read_check

    rec = read_check(store, sp)
    return asdict(rec) if rec else None
