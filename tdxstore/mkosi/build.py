"""The build side of `builtin:mkosi` (L2): one mkosi run over a stored configuration, into `out`.

The store layer resolves every input to a host path and calls `assemble`; nothing here reads the
store database or a derivation. Host locations (tools tree, extra trees, the store for hooks) are
written into a per-run configuration drop-in, never into the stored configuration, so its hash
names no host path. A tar is re-packed sorted; a UKI is copied as it is (its disk and manifest are
`tdxstore.disk`'s job).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tdxstore._fs import remove_tree
from tdxstore._lock import FileLock
from tdxstore.debian.mirror import AptMirrors
from tdxstore.errors import TdxError
from tdxstore.mkosi.config import (
    DEFAULT_RELEASE,
    LOCKED_TOOLS_OUTPUT,
    SANDBOX_DIR,
    SOURCES_FILE,
    TOOLS_RELEASE,
    TOOLS_SANDBOX_DIR,
    ImageFormat,
    apt_sources,
)
from tdxstore.mkosi.run import run_mkosi
from tdxstore.mkosi.tar import sort_tar

TOOLS = "tools"  # the `format` of the derivation that builds mkosi's tools tree
ARTIFACT = {ImageFormat.TAR: "image.tar", ImageFormat.DIRECTORY: "image.tar", ImageFormat.UKI: "image.efi"}
BUILDS_CONF = "mkosi.conf.d/90-tdx-builds.conf"
TOOLS_CONF = "mkosi.conf.d/80-tdx-tools.conf"
KEEP_CACHES = 4  # incremental caches kept per store (one per package set; LRU beyond)
MIRROR_CONF = "mkosi.conf.d/70-tdx-local-mirror.conf"


@dataclass(frozen=True, slots=True)
class Run:
    """One mkosi run: inputs as host paths; `fmt` None builds the tools tree itself."""

    mkosi: Path  # the directory to put on PYTHONPATH
    config: Path  # the stored configuration (read-only; copied before use)
    fmt: ImageFormat | None
    tools_tree: Path | None = None
    extra_trees: Sequence[Path] = ()
    store_root: Path | None = None  # mounted for scripts at /work/src/tdx/store when hooks name store paths
    store_target: str = "tdx/store"
    local_mirror: Path | None = None  # the repository of a locked package set: the only package source
    offline: bool = False  # run mkosi in a network namespace of its own (no interface but a down lo)
    tools_mirrors: AptMirrors | None = None  # building the tools tree: where its packages come from


def assemble(run: Run, out: Path, *, work: Path, cache_root: Path, log: IO[bytes], log_name: str) -> None:
    """Run mkosi for `run` in `work` and fill the (existing, empty) directory `out` with the image.

    `log_name` is how the caller's user reads the log later (`tdx log …`); it replaces the work
    directory's log path in errors, because `work` disappears with the build.
    """
    config = work / "config"
    shutil.copytree(run.config, config, symlinks=True)
    for root, dirs, files in os.walk(config):
        for n in dirs + files:
            p = Path(root) / n
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | 0o200)
    config.chmod(0o755)
    _write_drop_ins(run, config)
    mlog = work / "mkosi.log"
    key = _cache_key(config)
    try:
        with incremental_cache(cache_root, key) as cache_dir:
            artifact = run_mkosi(run.mkosi, config, work / "output", cache_dir=cache_dir,
                                 package_cache_dir=cache_root / "packages", workspace=work / "ws", log_path=mlog,
                                 force=run.fmt is None, output_name=_output_name(run),
                                 offline=run.offline)
    except TdxError as e:
        cause = e.hint if e.code != "mkosi-failed" and e.hint else None
        e.hint = f"{cause}; full log: {log_name}" if cause else f"read the full log: {log_name}"
        e.detail = (e.detail or "").replace(f"(log: {mlog})", f"(full log: {log_name})")
        raise
    finally:
        if mlog.exists():
            log.write(mlog.read_bytes())
    if run.fmt is None:  # the tools tree itself is the output
        out.rmdir()
        os.rename(artifact, out)
    elif run.fmt is ImageFormat.UKI:
        shutil.copyfile(artifact, out / ARTIFACT[run.fmt])
    else:
        sort_tar(artifact, out / ARTIFACT[run.fmt])
    remove_tree(work / "output")


def _output_name(run: Run) -> str:
    if run.fmt is not None:
        return "image"
    return LOCKED_TOOLS_OUTPUT if run.local_mirror is not None else TOOLS  # a locked tools tree: its own image


def _write_drop_ins(run: Run, config: Path) -> None:
    """Host locations for this run only: the tools tree, extra trees, the store for hooks, the repository."""
    if run.tools_tree is not None:
        (config / TOOLS_CONF).parent.mkdir(exist_ok=True)
        (config / TOOLS_CONF).write_text(f"[Build]\nToolsTree={run.tools_tree}\n")
    if run.local_mirror is not None:
        # mkosi 25.3 makes this the only apt source of the image build (bound read-only into its
        # sandbox) and writes it `Trusted: yes`: the repository is a store path generated offline from
        # files checked by SHA-256 against verified indexes (docs/debian.md says why that is enough).
        (config / MIRROR_CONF).parent.mkdir(exist_ok=True)
        (config / MIRROR_CONF).write_text(f"[Distribution]\nLocalMirror=file://{run.local_mirror}\n")
    if run.tools_mirrors is not None:
        # Not part of the stored configuration (see `tdxstore.image.render.tools_config`). Both trees
        # get sources: mkosi syncs the (empty, Format=none) image's metadata too, and its default
        # sources include the debug archive, which is not mirrored.
        for tree, release in ((TOOLS_SANDBOX_DIR, TOOLS_RELEASE), (SANDBOX_DIR, DEFAULT_RELEASE)):
            sources = config / tree / SOURCES_FILE
            sources.parent.mkdir(parents=True, exist_ok=True)
            sources.write_text(apt_sources(run.tools_mirrors, release))
        (config / MIRROR_CONF).parent.mkdir(exist_ok=True)
        (config / MIRROR_CONF).write_text(f"[Build]\nSandboxTrees={SANDBOX_DIR}\n"
                                          f"ToolsTreeMirror={run.tools_mirrors.debian}\n")
    conf = ("[Content]\n" + "".join(f"ExtraTrees={b}\n" for b in run.extra_trees)) if run.extra_trees else ""
    if run.store_root is not None:
        # mkosi mounts BuildSources for every script at /work/src/<target>; the hooks link /tdx/store
        # to it. Ephemeral: an overlay, so a hook cannot write into the store.
        conf += f"[Build]\nBuildSources={run.store_root}:{run.store_target}\nBuildSourcesEphemeral=yes\n"
    if conf:
        (config / BUILDS_CONF).parent.mkdir(exist_ok=True)
        (config / BUILDS_CONF).write_text(conf)


def _cache_key(config: Path) -> str:
    """Which incremental cache a configuration uses.

    mkosi keeps ONE incremental cache per distribution~release~architecture and throws it away when
    the package set differs, so a tar and a uki image (or two images) would evict each other. One
    cache directory per package-affecting setting (distribution, packages, prepare scripts) keeps
    each warm; mkosi still checks its own manifest before reusing one, so a wrong guess only costs time.
    """
    h = hashlib.sha256()
    conf = (config / "mkosi.conf").read_text()
    h.update("\n".join(line for line in conf.splitlines()
                       if not line.startswith(("KernelCommandLine=", "ExtraTrees=", "ImageId="))).encode())
    prepare = config / "mkosi.prepare.d"
    for f in sorted(prepare.iterdir()) if prepare.is_dir() else []:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return f"incremental-{h.hexdigest()[:16]}"


@contextlib.contextmanager
def incremental_cache(cache_root: Path, key: str, *, keep: int = KEEP_CACHES) -> Iterator[Path]:
    """The incremental cache `key`, held (shared lock) while mkosi uses it; the least recently used
    caches beyond the newest `keep` are removed first, so a store that built many images does not keep
    every one's cache (each is 0.3-2 GB). A cache in use by another build is never removed.
    """
    cache_dir = cache_root / key
    lock = FileLock(cache_root / f"{key}.lock")
    lock.acquire(shared=True)  # before mkdir: an eviction of `key` running now finishes first
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        os.utime(cache_dir)  # most recently used: this one
        _evict(cache_root, keep, spare=key)
        yield cache_dir
    finally:
        lock.release()


def _evict(cache_root: Path, keep: int, *, spare: str) -> None:
    caches = sorted((p for p in cache_root.glob("incremental-*") if p.is_dir()),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in caches[keep:]:
        if old.name == spare:
            continue
        lock = FileLock(cache_root / f"{old.name}.lock")
        if not lock.acquire(blocking=False):  # another build is using it
            continue
        try:
            remove_tree(old)
        finally:
            lock.release()
