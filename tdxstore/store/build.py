"""Running one derivation's builder: sandbox set-up, the builtins' table, logs (L3).

This module turns a `Derivation` into a `SandboxSpec` (inputs read-only at their logical paths,
`/build` and the outputs writable, network only for fixed-output builds), runs it, keeps the log
zstd-compressed under `logs/`, and hands the finished output trees to the caller's `install`
callback while the temporary directory still exists. It never registers anything itself.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import zstandard

from tdxstore._fs import remove_tree
from tdxstore.errors import BuildError, TdxError
from tdxstore.sandbox import BUILD_DIR, Mount, SandboxSpec, run_sandboxed, run_unsandboxed
from tdxstore.store.builtins import Hashed, run_builtin
from tdxstore.store.derivation import Derivation
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store

#: install(staged outputs, what the builder already hashed or None).
Install = Callable[[dict[str, Path], Hashed | None], None]


@dataclass(frozen=True, slots=True)
class Options:
    jobs: int = 1
    keep_failed: bool = False
    no_sandbox: bool = False
    timeout: float | None = None  # default wall-clock limit when a derivation sets none
    max_silent: float | None = None
    cores: int = 1
    fetch_timeout: float | None = None  # builtin fetchers: seconds without progress before giving up
    fetch_retries: int | None = None
    fetch_max_size: int | None = None  # builtin fetchers: bytes when no length is declared
    fetch_deadline: float | None = None  # builtin fetchers: seconds for the whole fetch
    download_progress: Callable[[int, int | None], None] | None = None


def input_closure(store: Store, drv: Derivation) -> list[StorePath]:
    """Every store path a build of `drv` may see (its inputs and root, with their references)."""
    starts: list[StorePath] = list(drv.input_srcs)
    for i in drv.input_drvs:
        starts.extend(i.output_paths.values())
    return sorted(store.closure(starts))


def log_file(store: Store, drv: Derivation) -> Path:
    return store.log_path(drv.drv_path)


@contextlib.contextmanager
def _log_writer(store: Store, drv: Derivation) -> Iterator[IO[bytes]]:
    """A zstd-compressed log, published atomically under logs/ when the build ends (either way)."""
    final = log_file(store, drv)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as raw:
            writer: IO[bytes] = zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False)
            try:
                yield writer
            finally:
                writer.close()  # ends the zstd frame
    finally:
        os.replace(tmp, final)  # a failed build's log is the one that matters most


def run_builder(store: Store, drv: Derivation, options: Options, install: Install) -> None:
    """Build `drv` in a fresh temporary directory and pass `{output: tree}` to `install`."""
    tmp = Path(store.tmp) / f"{os.getpid()}-build-{drv.drv_path.hash_part[:8]}-{drv.name}"
    remove_tree(tmp)
    tmp.mkdir(parents=True)
    ok = False
    try:
        staged = {o: tmp / f"out-{o}" for o in drv.outputs}
        hashed: Hashed | None = None
        if drv.builder.startswith("builtin:"):
            with _log_writer(store, drv) as log:
                hashed = run_builtin(store, drv, staged["out"], log, options)
        else:
            _run_sandboxed(store, drv, options, tmp, staged)
        install(staged, hashed)
        ok = True
    except TdxError as e:
        if options.keep_failed:
            e.hint = ((e.hint + "\n") if e.hint else "") + f"the build directory was kept: {tmp}"
        raise
    finally:
        if ok or not options.keep_failed:
            remove_tree(tmp)


def _spec(store: Store, drv: Derivation, options: Options, tmp: Path, staged: dict[str, Path]) -> SandboxSpec:
    root = drv.root_path
    assert root is not None
    build = tmp / "build"
    build.mkdir()
    mounts = [Mount(store.real_path(p), p.logical) for p in input_closure(store, drv)]
    mounts.append(Mount(build, BUILD_DIR, writable=True))
    env = dict(drv.env)
    for o, sp in drv.output_paths.items():
        staged[o].mkdir()
        mounts.append(Mount(staged[o], sp.logical, writable=True))
        env[o] = sp.logical
    return SandboxSpec(
        argv=(drv.builder, *drv.args), root=store.real_path(root), mounts=tuple(mounts), env=env,
        network=drv.fixed is not None, timeout=drv.timeout or options.timeout,
        max_silent=drv.max_silent or options.max_silent, cores=options.cores,
    )


def _run_sandboxed(store: Store, drv: Derivation, options: Options, tmp: Path, staged: dict[str, Path]) -> None:
    spec = _spec(store, drv, options, tmp, staged)
    with _log_writer(store, drv) as log:
        runner = run_unsandboxed if options.no_sandbox else run_sandboxed
        result = runner(spec, log)
    if result.ok:
        return
    where = f"derivation {drv.name!r} ({drv.drv_path})"
    detail = f"{result.tail.rstrip()}\nfull log: {log_file(store, drv)}  (or: tdx log {drv.drv_path})"
    if result.reason == "builder-not-found":
        raise BuildError(f"the builder {drv.builder!r} of {where} was not found in its root file system {root_of(drv)}",
                         hint="use a builder that exists in the root (for example /bin/sh)", detail=detail,
                         code="builder-not-found")
    if result.reason == "timeout":
        raise BuildError(f"{where} did not finish within {spec.timeout:g} s and was killed",
                         hint="raise the derivation's timeout, or make the build faster", detail=detail,
                         code="build-timeout")
    if result.reason == "silent":
        raise BuildError(f"{where} printed nothing for {spec.max_silent:g} s and was killed",
                         hint="raise max_silent, or make the builder report progress", detail=detail,
                         code="build-silent")
    raise BuildError(f"the builder of {where} failed with exit status {result.returncode}",
                     hint=f"read the full log with `tdx log {drv.drv_path}`", detail=detail, code="build-failed")


def root_of(drv: Derivation) -> str:
    return drv.root_path.logical if drv.root_path else "-"


def read_log(store: Store, drv_path: StorePath) -> bytes:
    path = store.log_path(drv_path)
    with open(path, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read()


