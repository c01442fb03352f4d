"""Running one derivation's builder: sandbox set-up, builtin fetchers, logs (L2).

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
from typing import IO, TYPE_CHECKING

import zstandard

from tdxstore._fs import remove_tree
from tdxstore.errors import BuildError, TdxError
from tdxstore.sandbox import BUILD_DIR, Mount, SandboxSpec, run_sandboxed, run_unsandboxed
from tdxstore.store.derivation import Derivation
from tdxstore.store.nar import FlatNar, NarDigest, hash_path
from tdxstore.store.normalise import normalise_tree
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store

if TYPE_CHECKING:
    from tdxstore.store.realise import Options



@dataclass(frozen=True, slots=True)
class Hashed:
    """What a builtin learnt while writing its (normalised) output, so realise need not read it again.

    `sha256` is the hex digest a fixed output is checked against (flat: the file's bytes; recursive:
    its NAR), `nar` the NAR digest the store registers.
    """

    sha256: str
    nar: NarDigest

    def __post_init__(self) -> None:
        if len(self.sha256) != 64:
            raise BuildError(f"invalid SHA-256 hex digest {self.sha256!r}", code="internal-error")


class _NarOfDownload:
    """Download tee: the NAR digest of the single file being downloaded, when its length is known."""

    __slots__ = ("flat",)

    def __init__(self) -> None:
        self.flat: FlatNar | None = None

    def start(self, total: int | None) -> None:
        self.flat = FlatNar(total) if total is not None else None

    def update(self, chunk: bytes) -> None:
        if self.flat is not None:
            self.flat.update(chunk)


#: install(staged outputs, what the builder already hashed or None).
Install = Callable[[dict[str, Path], Hashed | None], None]
#: A host builtin: (store, derivation, output directory to fill, log stream) -> None.
Builtin = Callable[[Store, Derivation, Path, IO[bytes]], None]
_HOST_BUILTINS: dict[str, Builtin] = {}


def register_builtin(name: str, handler: Builtin) -> None:
    """Let a higher layer (e.g. `image` for `builtin:mkosi`) provide a host builtin builder."""
    _HOST_BUILTINS[name] = handler


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
        if drv.builder in _HOST_BUILTINS or (drv.builder.startswith("builtin:") and drv.fixed is None):
            _run_host_builtin(store, drv, staged["out"])
        elif drv.builder.startswith("builtin:"):
            hashed = _run_builtin(store, drv, options, staged["out"])
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


def _run_builtin(store: Store, drv: Derivation, options: Options, out: Path) -> Hashed | None:
    """Fixed-output builtins run in this process (network allowed); realise verifies their hash.

    The output is normalised and hashed in the pass that writes it (a download is hashed as it
    arrives), and that hash is returned for realise to check and register: no second read.
    """
    from tdxstore.fetch.download import DEFAULT_RETRIES, DEFAULT_TIMEOUT, download
    from tdxstore.fetch.git import GIT_RESOLUTIONS, fetch_git_tree, remember_commit

    env = dict(drv.env)
    assert drv.fixed is not None
    with _log_writer(store, drv) as log:
        log.write(f"{drv.builder} {env.get('url', '')}\n".encode())
        if drv.builder == "builtin:fetchurl":
            expected = None if drv.fixed.recursive else drv.fixed.sha256
            tee = _NarOfDownload()
            got = download(env["url"], out, expected_sha256=expected, progress=options.download_progress,
                           timeout=options.fetch_timeout or DEFAULT_TIMEOUT,
                           retries=DEFAULT_RETRIES if options.fetch_retries is None else options.fetch_retries,
                           tee=tee)
            log.write(f"downloaded sha256:{got}\n".encode())
            normalise_tree(out)  # metadata only: 0444, mtime 1 (a download is never executable)
            if tee.flat is None:  # no announced length: realise hashes the file once itself
                return None
            nar = tee.flat.finish()
            return Hashed(nar.hex if drv.fixed.recursive else got, nar)
        commit = fetch_git_tree(env["url"], out, tag=env.get("tag") or None, rev=env.get("rev") or None,
                                submodules=env.get("submodules") == "1")
        log.write(f"checked out {commit}\n".encode())
        normalise_tree(out)
        nar = hash_path(out)
        remember_commit(store.home / GIT_RESOLUTIONS, env["url"], env.get("tag"), nar.hex, commit)
        return Hashed(nar.hex, nar)


def _run_host_builtin(store: Store, drv: Derivation, out: Path) -> None:
    handler = _HOST_BUILTINS.get(drv.builder)
    if handler is None:
        raise BuildError(f"no handler is registered for {drv.builder} (derivation {drv.name!r})",
                         hint="import the module that provides it (for builtin:mkosi: tdxstore.image.pipeline)",
                         code="builtin-unavailable")
    out.mkdir()
    with _log_writer(store, drv) as log:
        handler(store, drv, out, log)


def _spec(store: Store, drv: Derivation, options: Options, tmp: Path, staged: dict[str, Path]) -> SandboxSpec:
    from tdxstore.store.realise import input_closure

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


