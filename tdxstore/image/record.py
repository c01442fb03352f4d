"""The store's own records of image builds and checks, under `$TDX_HOME/records/` (versioned JSON files).

`builds/<path>.json` says how an image was built (when, how long, -j, TZ, build directory); `last/<key>.json`
names the last image built from each TDXfile, so a rebuild can say in one line which measurement it moved;
`checks/<path>.json` says whether `tdx build --check` reproduced a path and what it varied. Records
are written atomically; they never change a store path or the database, and a missing or unreadable one
is "not recorded", never an error. Nothing secret is written: paths, times and register names only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from tdxstore._fs import atomic_write
from tdxstore.errors import DiffError, TdxError
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store

RECORDS = "records-v1"
MANIFEST = "measurements.json"


@dataclass(frozen=True, slots=True)
class BuildRecord:
    """How one image path was built."""

    path: str
    tdxfile: str
    built_at: int  # seconds since the epoch
    seconds: float
    jobs: int
    tz: str
    build_dir: str

    def __post_init__(self) -> None:
        if self.jobs < 1 or self.seconds < 0:
            raise DiffError(f"invalid build record for {self.path}", code="internal-error")


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """The outcome of one `tdx build --check` of a path."""

    path: str
    checked_at: int
    reproduced: bool
    seconds: float
    varied: tuple[str, ...]  # what the second build had differently
    not_varied: tuple[str, ...]  # what this machine could not vary
    differing: tuple[str, ...] = ()  # the artifacts that differed, when not reproduced


def _dir(store: Store, kind: str) -> Path:
    return store.home / RECORDS / kind


def _tdxfile_key(tdxfile: Path) -> str:
    target = tdxfile / "TDXfile" if tdxfile.is_dir() else tdxfile
    return hashlib.sha256(os.fsencode(target.resolve())).hexdigest()[:32]


def _write(path: Path, data: dict[str, object]) -> None:
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def _read(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_build(store: Store, sp: StorePath, record: BuildRecord) -> None:
    _write(_dir(store, "builds") / f"{sp.base_name}.json", asdict(record))


def read_build(store: Store, sp: StorePath) -> BuildRecord | None:
    data = _read(_dir(store, "builds") / f"{sp.base_name}.json")
    try:
        return BuildRecord(**data) if data else None  # type: ignore[arg-type]
    except (TypeError, DiffError):
        return None


def write_check(store: Store, sp: StorePath, record: CheckRecord) -> None:
    _write(_dir(store, "checks") / f"{sp.base_name}.json", asdict(record))


def read_check(store: Store, sp: StorePath) -> CheckRecord | None:
    data = _read(_dir(store, "checks") / f"{sp.base_name}.json")
    if not data:
        return None
    try:
        lists: dict[str, tuple[str, ...]] = {}
        for k in ("varied", "not_varied", "differing"):
            value = data.get(k) or ()
            lists[k] = tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()
        return CheckRecord(**{**data, **lists})  # type: ignore[arg-type]
    except TypeError:
        return None


def note_build(store: Store, tdxfile: Path, sp: StorePath) -> str | None:
    """Remember `sp` as the last image of `tdxfile`; one line when it moved a measurement since the last."""
    last = _dir(store, "last") / f"{_tdxfile_key(tdxfile)}.json"
    previous = _read(last)
    _write(last, {"tdxfile": os.fspath(tdxfile.resolve()), "path": str(sp)})
    if not previous or previous.get("path") == str(sp):
        return None
    try:
        before = store.parse(str(previous["path"]))
    except TdxError:
        return None  # a record this code does not understand: said nothing, never an error
    ma = _read(store.real_path(before) / MANIFEST) if store.is_valid(before) else None
    mb = _read(store.real_path(sp) / MANIFEST)
    if ma is None or mb is None:
        return None
    from tdxstore.diff import compare_manifests  # the measurement model: `path-info` reads records without it

    try:
        change = compare_manifests(ma, mb)
    except DiffError:
        return None
    return f"since the last build of this TDXfile ({before.hash_part[:8]}): {change.headline()}"
