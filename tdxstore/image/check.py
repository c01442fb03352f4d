"""`tdx build --check`: build an image a second time, independently, and compare it with the one in the store.

The second build runs in a fresh temporary store under `$TDX_HOME/tmp/` that shares only content-addressed
inputs with the main store (fixed-output paths copied and re-hashed, Debian .debs hard-linked into its
package cache; apt verifies them again), with another -j, TZ and build directory, later in time. It never
changes the first build: only the main store's check record is written. The temporary store is removed
unless `keep`. Like Nix's `--check`, an image that was never built cannot be checked (an error).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tdxstore._fs import remove_tree
from tdxstore.diff import ImageDiff, diff_images
from tdxstore.errors import DiffError, StoreError
from tdxstore.image import pipeline
from tdxstore.image.record import CheckRecord, read_build, write_check
from tdxstore.store.nar import copy_and_hash
from tdxstore.store.path import StorePath
from tdxstore.store.realise import Options
from tdxstore.store.store import Store

Phase = Callable[[str], None]
CHECK_TZ = ("Pacific/Kiritimati", "America/St_Johns")  # UTC+14 and UTC-3:30: far from UTC and from each other
PACKAGE_CACHE = Path("cache/mkosi/packages/cache/apt/archives")
NOT_VARIED = (
    "clock: not shifted (no libfaketime); the second build only runs later, and the build pins "
    "SOURCE_DATE_EPOCH",
    "TZ inside mkosi and the sandboxes: both fix TZ=UTC, so the second TZ reaches only tdx's own steps",
    "user, hostname, kernel and CPU: the same machine and user build both",
)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome: the image, the comparison, what was varied and shared, timings, a kept second store."""

    image: StorePath
    diff: ImageDiff
    varied: tuple[str, ...]
    not_varied: tuple[str, ...]
    shared_paths: int
    shared_debs: int
    seconds: float
    first_seconds: float | None
    kept: Path | None

    @property
    def reproduced(self) -> bool:
        return self.diff.identical


@contextmanager
def _environment(tz: str) -> Iterator[None]:
    """TZ for the second build's own steps (restored afterwards)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = tz
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


def _fixed_closure(store: Store, image: StorePath) -> list[StorePath]:
    """The content-addressed paths of the image's closure, references first (their own closure is fixed)."""
    infos = {sp: store.query(sp) for sp in store.closure([image]) if sp != image}
    fixed = {sp for sp, i in infos.items() if (i.ca or "").startswith("fixed:")}
    fixed = {sp for sp in fixed if set(infos[sp].references) - {sp} <= fixed}
    order: list[StorePath] = []

    def visit(sp: StorePath) -> None:
        if sp in order:
            return
        for ref in sorted(infos[sp].references):
            if ref != sp:
                visit(ref)
        order.append(sp)

    for sp in sorted(fixed):
        visit(sp)
    return order


def share_fixed(store: Store, second: Store, paths: Sequence[StorePath]) -> int:
    """Copy `paths` into `second`, each re-hashed and compared with the main store's NAR hash."""
    for sp in paths:
        info = store.query(sp)
        with second.temp_dir("share") as tmp, second.path_locks([sp]):
            staged = tmp / "out"
            digest = copy_and_hash(store.real_path(sp), staged)
            if f"sha256:{digest.sha256.hex()}" != info.nar_hash:
                raise StoreError(f"{sp} in the store does not match its recorded NAR hash",
                                 hint="run `tdx store verify`", code="hash-mismatch")
            second.install(staged, sp, references=info.references, ca=info.ca, digest=digest)
    return len(paths)


def share_debs(store: Store, second: Store) -> int:
    """Hard-link the Debian packages mkosi downloaded into the second store's package cache."""
    src, dest = store.home / PACKAGE_CACHE, second.home / PACKAGE_CACHE
    if not src.is_dir():
        return 0
    dest.mkdir(parents=True, exist_ok=True)
    n = 0
    for deb in sorted(src.glob("*.deb")):
        try:
            os.link(deb, dest / deb.name)
        except OSError:
            continue  # a cross-device cache: the second build downloads it instead
        n += 1
    return n


def check(store: Store, tdxfile: Path, *, fmt: str | None = None, jobs: int | None = None, keep: bool = False,
          phase: Phase = lambda _m: None, import_paths: Sequence[Path] = (),
          hooks: Callable[[Store], pipeline.Hooks] = lambda _s: {}) -> CheckResult:
    """Rebuild the image of `tdxfile` independently and compare; records the outcome in the main store.

    `hooks` gives, for each of the two stores, how typed builds and the locked package set enter
    evaluation (the CLI composes them), so both builds evaluate the TDXfile the same way.
    """
    p = pipeline.image_derivation(store, pipeline.evaluate(tdxfile, fmt, store, import_paths=import_paths,
                                                           **hooks(store)))
    assert p.derivation is not None
    image = p.derivation.out
    if not store.is_valid(image):
        raise DiffError(f"{image} (the image of {str(tdxfile)!r}) was never built, so there is nothing to check",
                        hint=f"build it first: `tdx build {tdxfile}`; --check then rebuilds it and compares",
                        code="check-not-built")
    first = read_build(store, image)
    first_jobs = first.jobs if first else 1
    second_jobs = jobs if jobs is not None else (2 if first_jobs == 1 else 1)
    tz = CHECK_TZ[1] if os.environ.get("TZ") == CHECK_TZ[0] else CHECK_TZ[0]
    store.tmp.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="check-", dir=store.tmp))
    started = time.monotonic()
    kept = None
    second = None
    try:
        second = Store.open(home)
        shared = share_fixed(store, second, _fixed_closure(store, image))
        debs = share_debs(store, second)
        phase(f"checking {image.base_name}: second build in {home} (-j {second_jobs}, TZ={tz}; "
              f"{shared} fixed-output path(s) and {debs} .deb(s) shared)")
        with _environment(tz):
            _plan, again, _ran = pipeline.build(second, tdxfile, fmt=fmt, options=Options(jobs=second_jobs),
                                                phase=phase, import_paths=import_paths, **hooks(second))
        if again != image:
            raise DiffError(f"the second evaluation gave {again}, not {image}: the TDXfile does not evaluate "
                            f"to the same derivation twice", hint="look for host facts (time, environment, "
                            "random names) in the TDXfile", code="check-evaluation-differs")
        phase("comparing the two builds")
        diff = diff_images(store.real_path(image), second.real_path(again), "first build", "second build",
                           deep=True)
        seconds = time.monotonic() - started
        varied = (
            f"store and build directory: {store.home} -> {home}",
            f"parallel jobs: -j {first_jobs}{'' if first else ' (assumed: not recorded)'} -> -j {second_jobs}",
            f"TZ: {first.tz if first else os.environ.get('TZ', 'unset')} -> {tz}",
            f"time: {int(time.time()) - (first.built_at if first else store.query(image).registration_time)} s "
            "after the first build",
            "caches: none shared (a fresh mkosi tools tree and incremental cache)",
        )
        record = CheckRecord(str(image), int(time.time()), diff.identical, round(seconds, 1), varied, NOT_VARIED,
                             tuple(diff.report.artifacts()))
        write_check(store, image, record)
        if keep:
            kept = home
        return CheckResult(image, diff, varied, NOT_VARIED, shared, debs, seconds,
                           first.seconds if first else None, kept)
    finally:
        if second is not None:
            second.close()
        if kept is None:
            remove_tree(home)
