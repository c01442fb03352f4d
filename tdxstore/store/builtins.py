"""The store's builtin builders, in one table (L3): what a `builtin:*` derivation runs, in this process.

`BUILTINS` is the only list of them; `build.py` reads it and nothing registers into it, so any
store (and `tdx realise X.drv`) can build every derivation a TDXfile produces. Each entry maps the
derivation's environment (logical store paths) to host paths and calls a lower-layer library
(`fetch`, `debian`, `mkosi`); constructors of builtin derivations live here too. Fixed-output
builtins may use the network; the others get only their inputs. None of them registers a path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tdxstore.debian.deb import unpack
from tdxstore.debian.pins import FIRMWARE_FILE, FIRMWARE_LABEL, MKOSI_PYTHON_DIR
from tdxstore.errors import BuildError
from tdxstore.fetch.download import url_file_name
from tdxstore.store._refscan import Beside, ByteChunk
from tdxstore.store.derivation import Derivation, FixedOutput, derivation
from tdxstore.store.nar import FlatNar, NarDigest, hash_path
from tdxstore.store.normalise import normalise_tree
from tdxstore.store.path import MAX_NAME_LEN, STORE_DIR
from tdxstore.store.store import Store

if TYPE_CHECKING:
    from tdxstore.fetch.download import Limits
    from tdxstore.store.build import Options

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
    """Download tee: the NAR digest of the single file being downloaded, when its length is known.

    The NAR hash runs in a worker while the download thread writes and hashes the flat digest (both
    release the GIL), at most two chunks behind (the download's chunks are fresh, never refilled).
    `finish` returns the digest; `close` always joins the worker.
    """

    __slots__ = ("_beside", "flat")

    def __init__(self) -> None:
        self.flat: FlatNar | None = None
        self._beside: Beside[ByteChunk] | None = None

    def start(self, total: int | None) -> None:
        self.close()  # a retried attempt starts over
        self.flat = FlatNar(total) if total is not None else None
        if self.flat is not None:
            self._beside = Beside(self.flat.update, "nar-hash")

    def update(self, chunk: bytes) -> None:
        if self._beside is not None:
            self._beside.put(chunk)
            self._beside.settle(2)

    def finish(self) -> NarDigest | None:
        if self.flat is None or self._beside is None:
            return None
        self._beside.settle(0)
        return self.flat.finish()

    def close(self) -> None:
        if self._beside is not None:
            self._beside.close()
            self._beside = None


#: (store, derivation, output path to create, log stream, options) -> what it hashed on the way, if anything
Handler = Callable[[Store, Derivation, Path, IO[bytes], "Options"], "Hashed | None"]


@dataclass(frozen=True, slots=True)
class Builtin:
    """One builtin builder: its handler and whether it must be a fixed-output derivation."""

    handler: Handler
    fixed_output: bool
    why: str  # why it does not run in bubblewrap (docs/architecture.md shows the table)
    network: bool | Callable[[Derivation], bool] = False  # downloads while it runs: refused by `--offline`

    def downloads(self, drv: Derivation) -> bool:
        return self.network(drv) if callable(self.network) else self.network


def _mkosi_downloads(drv: Derivation) -> bool:
    """mkosi downloads packages unless a locked repository is an input (then it runs offline): the
    image's, or for the tools tree the repository of `[debian.tools]`."""
    return not drv.env_dict().get("repo")


def _fetchurl(store: Store, drv: Derivation, out: Path, log: IO[bytes], options: Options) -> Hashed | None:
    """The download is hashed as it arrives; that hash is returned for realise to check and register."""
    from tdxstore.fetch.download import DEFAULT_RETRIES, DEFAULT_TIMEOUT, download

    env = dict(drv.env)
    assert drv.fixed is not None
    log.write(f"{drv.builder} {env['url']}\n".encode())
    expected = None if drv.fixed.recursive else drv.fixed.sha256
    tee = _NarOfDownload()
    try:
        got = download(env["url"], out, expected_sha256=expected, progress=options.download_progress,
                       timeout=options.fetch_timeout or DEFAULT_TIMEOUT,
                       retries=DEFAULT_RETRIES if options.fetch_retries is None else options.fetch_retries,
                       limits=_limits(options), tee=tee)
        nar = tee.finish()
    finally:
        tee.close()
    log.write(f"downloaded sha256:{got}\n".encode())
    normalise_tree(out)  # metadata only: 0444, mtime 1 (a download is never executable)
    if nar is None:  # no announced length: realise hashes the file once itself
        return None
    return Hashed(nar.hex if drv.fixed.recursive else got, nar)


def _limits(options: Options) -> Limits:
    from tdxstore.fetch.download import DEFAULT_LIMITS, Limits

    return Limits(max_size=options.fetch_max_size or DEFAULT_LIMITS.max_size,
                  deadline=options.fetch_deadline or DEFAULT_LIMITS.deadline)


def _fetchgit(store: Store, drv: Derivation, out: Path, log: IO[bytes], options: Options) -> Hashed:
    """The checkout is normalised and hashed once, for the resolution record, the check and registration."""
    from tdxstore.fetch.git import GIT_RESOLUTIONS, fetch_git_tree, remember_commit

    env = dict(drv.env)
    log.write(f"{drv.builder} {env['url']}\n".encode())
    commit = fetch_git_tree(env["url"], out, tag=env.get("tag") or None, rev=env.get("rev") or None,
                            submodules=env.get("submodules") == "1")
    log.write(f"checked out {commit}\n".encode())
    normalise_tree(out)
    nar = hash_path(out)
    remember_commit(store.home / GIT_RESOLUTIONS, env["url"], env.get("tag"), nar.hex, commit)
    return Hashed(nar.hex, nar)


def _unpack_deb(store: Store, drv: Derivation, out: Path, log: IO[bytes], options: Options) -> Hashed | None:
    env = dict(drv.env)
    out.mkdir()
    for rel in unpack(store.real_path(store.parse(env["deb"])), out, env["paths"].split()):
        log.write(f"{rel}\n".encode())
    return None


def _mkosi(store: Store, drv: Derivation, out: Path, log: IO[bytes], options: Options) -> Hashed | None:
    from tdxstore.debian.mirror import declared_mirrors
    from tdxstore.disk.gpt import make_disk
    from tdxstore.disk.manifest import DISK_FILE, UKI_FILE, write_manifest
    from tdxstore.mkosi.build import TOOLS, Run, assemble
    from tdxstore.mkosi.config import ImageFormat

    env = dict(drv.env)

    def real(key: str) -> Path:
        return store.real_path(store.parse(env[key]))

    firmware = None
    if env.get("firmware"):  # a bootable image: its GPT disk and measurement manifest
        firmware = real("firmware") / FIRMWARE_FILE
        if not firmware.is_file():
            raise BuildError(f"{env['firmware']} holds no {FIRMWARE_FILE}", code="firmware-missing",
                             hint="the image derivation's firmware input must be the pinned Debian ovmf")
    run = Run(mkosi=real("mkosi") / MKOSI_PYTHON_DIR, config=real("config"),
              fmt=None if env["format"] == TOOLS else ImageFormat(env["format"]),
              tools_tree=real("tools") if env.get("tools") else None,
              extra_trees=[store.real_path(store.parse(b)) for b in env.get("builds", "").split()],
              store_root=store.root if env.get("sources") else None, store_target=STORE_DIR.lstrip("/"),
              local_mirror=real("repo") if env.get("repo") else None, offline=bool(env.get("repo")),
              tools_mirrors=declared_mirrors() if env["format"] == TOOLS and not env.get("repo") else None)
    out.mkdir()
    with store.temp_dir("mkosi") as work:
        assemble(run, out, work=work, cache_root=store.home / "cache" / "mkosi", log=log,
                 log_name=f"tdx log {drv.drv_path}")
        if firmware is not None:
            make_disk(out / UKI_FILE, out / DISK_FILE, work)
            write_manifest(out, firmware, env["firmware"], FIRMWARE_LABEL)
    return None


BUILTINS: dict[str, Builtin] = {
    "builtin:fetchurl": Builtin(_fetchurl, True, "fixed output: network allowed, hash checked",
                                   network=True),
    "builtin:fetchgit": Builtin(_fetchgit, True, "fixed output: network allowed, NAR hash checked; "
                                                  "git itself runs in bwrap", network=True),
    "builtin:unpack-deb": Builtin(_unpack_deb, False, "pure Python over a pinned .deb; no root file "
                                                      "system is needed"),
    "builtin:mkosi": Builtin(_mkosi, False, "mkosi needs root-like privileges and its own sandbox; with a "
                                            "locked package set it installs from its repository, offline",
                             network=_mkosi_downloads),
}


def run_builtin(store: Store, drv: Derivation, out: Path, log: IO[bytes], options: Options) -> Hashed | None:
    """Build `drv` (a `builtin:*` derivation) into the not yet existing `out`."""
    entry = BUILTINS.get(drv.builder)
    if entry is None:
        raise BuildError(f"derivation {drv.name!r} names the unknown builtin builder {drv.builder!r}",
                         hint=f"known builtins: {', '.join(sorted(BUILTINS))}", code="builtin-unavailable")
    if entry.fixed_output != (drv.fixed is not None):
        kind = "a fixed-output" if entry.fixed_output else "an input-addressed"
        raise BuildError(f"{drv.builder} builds only {kind} derivation, and {drv.name!r} is not one",
                         code="builtin-misused")
    return entry.handler(store, drv, out, log, options)


# -- constructors of builtin derivations ------------------------------------------------------------

_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9+\-._?=]+")


def default_name(url: str, fallback: str = "download") -> str:
    """A store path name from the last URL segment: invalid characters become '_'."""
    base = url_file_name(url) if "://" in url else url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    name = _BAD_NAME_CHARS.sub("_", base).lstrip(".")[:MAX_NAME_LEN]
    return name or fallback


def default_git_name(url: str) -> str:
    """`<repository>` from `.../<repository>(.git)`, or "source"."""
    base = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    base = base.removesuffix(".git")
    return _BAD_NAME_CHARS.sub("_", base).lstrip(".")[:MAX_NAME_LEN] or "source"


def fetchurl_derivation(url: str, hex_digest: str, name: str) -> Derivation:
    """The fixed-output derivation of a flat download: its path depends on (hash, name) only."""
    return derivation(name, "builtin:fetchurl", env={"url": url}, fixed=FixedOutput(hex_digest))


def fetchgit_derivation(url: str, tag: str | None, rev: str | None, hex_digest: str, name: str,
                        submodules: bool = False) -> Derivation:
    """The fixed-output derivation of a git checkout (tree without .git, NAR SHA-256)."""
    env = {"url": url, "tag": tag or "", "rev": rev or "", "submodules": "1" if submodules else ""}
    return derivation(name, "builtin:fetchgit", env={k: v for k, v in env.items() if v},
                      fixed=FixedOutput(hex_digest, recursive=True))


def unpack_derivation(name: str, deb: Derivation, prefixes: list[str]) -> Derivation:
    """The files of a fetched .deb below `prefixes` (relative paths), as one store path."""
    return derivation(name, "builtin:unpack-deb", env={"deb": deb.out.logical, "paths": " ".join(prefixes)},
                      inputs=[deb])
