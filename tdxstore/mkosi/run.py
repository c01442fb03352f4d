"""Running the pinned mkosi 25.3 (L2), and a cached copy of it for tests that run mkosi directly.

Never uses the host's mkosi: builds put the pinned .deb's tree in the store; `obtain_mkosi` keeps
an unpacked copy under a cache directory, downloaded with apt's own client from the declared mirror
and verified against the pinned SHA-256. Every process goes through `tdxstore.sandbox.process`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from tdxstore._fs import remove_tree, sha256_file, temporary_directory
from tdxstore.debian.mirror import AptMirrors, declared_mirrors
from tdxstore.debian.pins import MKOSI_DEB, MKOSI_PYTHON_DIR
from tdxstore.errors import CommandError, HashMismatchError, ImageError
from tdxstore.sandbox import process, supervise

# The pin lives in tdxstore.debian.pins; builds take mkosi from the store (tdxstore.image.pinned).
MKOSI_DEB_VERSION = MKOSI_DEB.file.split("_")[1]
MKOSI_DEB_SHA256 = MKOSI_DEB.sha256
MKOSI_SUITE = "trixie"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Where caches (unpacked mkosi, mkosi's incremental and package caches, tools tree) live by default.
DEFAULT_CACHE_ROOT = Path("/var/tmp/tdx-mkosi-cache")
PYTHON_SUBDIR = MKOSI_PYTHON_DIR
_LOG_TAIL_LINES = 30
_PHASE_MARK = "\u2023"  # mkosi prefixes each step with "‣"


def _apt_options(root: Path, sources: Path) -> list[str]:
    """A private apt configuration: nothing of the host's state, cache or sources is read or written."""
    opts = {
        "Dir::State": root / "state",
        "Dir::State::status": root / "state/status",
        "Dir::Cache": root / "cache",
        "Dir::Etc::SourceList": sources,
        "Dir::Etc::SourceParts": root / "sources.list.d",
        "Dir::Etc::Preferences": root / "preferences",
        "Dir::Etc::PreferencesParts": root / "preferences.d",
        "Dir::Etc::Parts": root / "apt.conf.d",
        "Dir::Log": root / "log",
        "APT::Sandbox::User": "root" if os.geteuid() == 0 else "",
        "Acquire::Languages": "none",
    }
    argv: list[str] = []
    for key, value in opts.items():
        if value != "":
            argv += ["-o", f"{key}={os.fspath(value)}"]
    return argv


def _prepare_apt_root(root: Path, mirror: str) -> Path:
    for sub in ("state/lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d",
                "apt.conf.d", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "state/status").touch()
    sources = root / "sources.list"
    sources.write_text(f"deb [signed-by={DEBIAN_KEYRING}] {mirror.rstrip('/')} {MKOSI_SUITE} main\n")
    return sources


def download_mkosi_deb(workdir: Path, *, mirror: str | None = None,
                       env: Mapping[str, str] | None = None) -> Path:
    """Download and verify the pinned mkosi .deb into `workdir`; returns the .deb path."""
    mirrors = AptMirrors(debian=mirror) if mirror else declared_mirrors(env)
    apt_root = workdir / "apt"
    sources = _prepare_apt_root(apt_root, mirrors.debian)
    opts = _apt_options(apt_root, sources)
    run_env = process.host_env({"LC_ALL": "C.UTF-8"})
    try:
        process.run(["apt-get", *opts, "update"], env=run_env, what="apt-get update (trixie for mkosi)",
                    timeout=600)
        dl = workdir / "deb"
        dl.mkdir(exist_ok=True)
        process.run(["apt-get", *opts, "download", f"mkosi={MKOSI_DEB_VERSION}"], env=run_env, cwd=dl,
                    what=f"apt-get download mkosi={MKOSI_DEB_VERSION}", timeout=600)
    except CommandError as e:
        raise ImageError(
            f"cannot download mkosi {MKOSI_DEB_VERSION} from {mirrors.debian} suite {MKOSI_SUITE}",
            hint="check network access to the mirror, or set TDX_DEBIAN_MIRROR to a Debian mirror URL",
            detail=e.detail, code="mkosi-download-failed",
        ) from e
    debs = sorted(dl.glob("mkosi_*.deb"))
    if len(debs) != 1:
        raise ImageError(f"apt-get download left {len(debs)} mkosi .deb files in {dl}, expected one",
                         code="mkosi-download-failed")
    verify_deb(debs[0])
    return debs[0]


def verify_deb(deb: Path, expected: str = MKOSI_DEB_SHA256) -> None:
    """Raise HashMismatchError unless the file's SHA-256 is the pinned one."""
    got = sha256_file(deb).hex()
    if got != expected:
        raise HashMismatchError(f"mkosi .deb {deb}", expected, got)


def unpack_deb(deb: Path, dest: Path) -> Path:
    """`dpkg-deb -x` the .deb into a scratch dir and move its Python tree to `dest`; returns `dest`."""
    with temporary_directory(dest.parent, "mkosi-x-") as tmp:
        process.run(["dpkg-deb", "-x", deb, tmp], what="dpkg-deb -x mkosi")
        pkg = tmp / PYTHON_SUBDIR
        if not (pkg / "mkosi" / "__main__.py").is_file():
            raise ImageError(f"{deb} does not contain {PYTHON_SUBDIR}/mkosi/__main__.py",
                             code="mkosi-bad-package")
        os.rename(pkg, dest)
    return dest


def obtain_mkosi(
    *,
    cache_root: Path = DEFAULT_CACHE_ROOT,
    mirror: str | None = None,
    put_in_store: Callable[[Path], Path] | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """The directory to put on PYTHONPATH to run the pinned `python3 -m mkosi`.

    Without `put_in_store`, the unpacked tree is kept at `<cache_root>/mkosi-<deb version>-<sha prefix>`
    and reused. With it, the tree is unpacked to a scratch dir, handed to the hook (e.g.
    `lambda p: store.real_path(store.add_path(p, name="mkosi-25.3"))`) and the hook's result returned.
    """
    cache_root.mkdir(parents=True, exist_ok=True)
    key = f"mkosi-{MKOSI_DEB_VERSION}-{MKOSI_DEB_SHA256[:16]}"
    final = cache_root / key
    if put_in_store is None and (final / "mkosi" / "__main__.py").is_file():
        return final
    with temporary_directory(cache_root, "mkosi-dl-") as work:
        deb = download_mkosi_deb(work, mirror=mirror, env=env)
        tree = unpack_deb(deb, work / "python")
        if put_in_store is not None:
            return put_in_store(tree)
        if final.exists():
            remove_tree(final)
        os.rename(tree, final)
    return final


def mkosi_env(mkosi_dir: Path, home: Path) -> dict[str, str]:
    """A clean environment for mkosi: fixed PATH and locale, the pinned PYTHONPATH, proxies only."""
    proxies = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
    env = process.host_env(allow=proxies)
    env.update({
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": os.fspath(mkosi_dir),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "TERM": "dumb",
        "HOME": os.fspath(home),
        "SOURCE_DATE_EPOCH": "0",
    })
    return env


#: The interpreter that runs the pinned mkosi: Debian's own (scripts/setup installs it), named by path so
#: that no other python3 earlier on mkosi's PATH (/usr/local/bin, a hand-made install) can stand in.
MKOSI_PYTHON = "/usr/bin/python3"


def mkosi_argv(mkosi_dir: Path, config_dir: Path, output_dir: Path, *, cache_dir: Path | None,
               workspace: Path | None, verb: str = "build", force: bool = False,
               package_cache_dir: Path | None = None) -> list[str]:
    """The argv of one mkosi run (pure; the pinned mkosi is run by Debian's python3, MKOSI_PYTHON)."""
    argv = [MKOSI_PYTHON, "-m", "mkosi", "-C", os.fspath(config_dir),
            "--output-directory", os.fspath(output_dir)]
    if cache_dir is not None:
        argv += ["--cache-directory", os.fspath(cache_dir / "incremental"),
                 "--package-cache-directory", os.fspath(package_cache_dir or cache_dir / "packages")]
    if workspace is not None:
        argv += ["--workspace-directory", os.fspath(workspace)]
    return [*argv, *(["--force"] if force else []), verb]


def offline_argv(argv: list[str]) -> list[str]:
    """`argv` run in a new network namespace: only a loopback device that is down, so no address at
    all (not even 127.0.0.1) is reachable. As root, `unshare --net`; otherwise in a user namespace too."""
    userns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return ["unshare", *userns, "--net", "--", *argv]


def run_mkosi(
    mkosi_dir: Path,
    config_dir: Path,
    output_dir: Path,
    *,
    cache_dir: Path | None = None,
    workspace: Path | None = None,
    log_path: Path | None = None,
    timeout: float = 3600,
    output_name: str = "image",
    progress: Callable[[str], None] | None = None,
    force: bool = False,
    package_cache_dir: Path | None = None,
    offline: bool = False,
) -> Path:
    """Run `mkosi build` on `config_dir`; returns the main artifact (`<output_dir>/image.efi`, …).

    The log goes to `log_path` (default `<output_dir>/mkosi.log`). A failure raises ImageError
    (code "mkosi-failed") whose detail holds the last log lines and the log path. `progress`, if
    given, is called with each phase mkosi announces (its "‣ Installing Debian" lines, without "‣").
    `offline`: mkosi runs with the network cut (`offline_argv`).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    for d in (cache_dir, workspace):
        if d is not None:
            d.mkdir(parents=True, exist_ok=True)
    if cache_dir is not None:
        (cache_dir / "incremental").mkdir(exist_ok=True)
        (package_cache_dir or cache_dir / "packages").mkdir(parents=True, exist_ok=True)
    log = log_path or output_dir / "mkosi.log"
    argv = mkosi_argv(mkosi_dir, config_dir, output_dir, cache_dir=cache_dir, workspace=workspace, force=force,
                      package_cache_dir=package_cache_dir)
    if offline:
        argv = offline_argv(argv)
    started = time.monotonic()
    with log.open("wb") as f:
        f.write(f"$ {process.command_line(argv)}\n".encode())
        f.flush()
        status = _stream(argv, mkosi_env(mkosi_dir, workspace or output_dir), config_dir, f, progress,
                         timeout)
    if status is None:
        raise _failed(f"mkosi build of {config_dir} did not finish within {timeout:.0f} s", log)
    if status != 0:
        raise _failed(f"mkosi exited with status {status} after {time.monotonic() - started:.0f} s", log,
                      locked=offline)
    return find_artifact(output_dir, output_name)


def _stream(argv: list[str], env: dict[str, str], cwd: Path, log: BinaryIO,
            progress: Callable[[str], None] | None, timeout: float) -> int | None:
    """Run mkosi under the sandbox layer's supervisor; report phases; its exit status, or None on timeout."""
    pending = b""

    def phases(chunk: bytes) -> bool:
        nonlocal pending
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            text = line.decode("utf-8", "replace").strip()
            if progress is not None and text.startswith(_PHASE_MARK):
                progress(text.removeprefix(_PHASE_MARK).strip())
        return False

    # Its own session (the supervisor's rule), so a timeout stops mkosi and every helper it started.
    result = supervise(argv, env=env, cwd=cwd, log=log, timeout=timeout, on_output=phases)
    return None if result.reason == "timeout" else result.returncode


# Causes recognised in mkosi's log: (pattern, message template, hint, code).
_CAUSES = (
    (re.compile(rb"E: Unable to locate package (\S+)"), "package {0!r} does not exist in the Debian archive",
     "check the name (apt-cache search NAME) and the image's base release", "package-not-found"),
    (re.compile(rb"E: Package '([^']+)' has no installation candidate"),
     "package {0!r} has no installation candidate in the Debian archive",
     "it exists only as a virtual or removed package: install a real one", "package-not-found"),
    (re.compile(rb"E: Version '([^']+)' for '([^']+)' was not found"),
     "version {0!r} of package {1!r} is not in the Debian archive",
     "the archive keeps only current versions: pick one from apt-cache policy NAME", "package-not-found"),
    (re.compile(rb'"(/work/(?:postinst|prepare|finalize)[^"]*)" returned non-zero exit code (\d+)'),
     "an image hook ({0}) failed with exit status {1}",
     "the lines above show the failing command of your image.run/prepare/finalize hook", "hook-failed"),
)


def _failed(message: str, log: Path, *, locked: bool = False) -> ImageError:
    text = log.read_bytes() if log.exists() else b""
    hint, code = f"read the full log: {log}", "mkosi-failed"
    for pattern, template, cause_hint, cause_code in _CAUSES:
        m = pattern.search(text)
        if m:
            groups = [g.decode("utf-8", "replace") for g in m.groups()]
            message = f"{template.format(*groups)} ({message})"
            hint, code = cause_hint, cause_code
            if locked and cause_code == "package-not-found":
                # apt had only the locked set's repository (offline): the set lacks what mkosi asked for
                message = message.replace("the Debian archive", "the image's locked package set")
                hint, code = "re-lock the image's packages: `tdx lock --update`", "package-not-locked"
            break
    return ImageError(message, hint=hint, detail=f"{process.tail(text, _LOG_TAIL_LINES)}\n(log: {log})",
                      code=code)


def find_artifact(output_dir: Path, output_name: str = "image") -> Path:
    """The main output mkosi wrote: `image.efi` (uki), `image.tar` (tar), `image.raw` (disk) or `image/`."""
    for suffix in (".efi", ".tar", ".raw", ""):
        candidate = output_dir / f"{output_name}{suffix}"
        if candidate.exists():
            return candidate
    found = sorted(p.name for p in output_dir.iterdir())
    raise ImageError(f"mkosi succeeded but wrote no {output_name!r} artifact in {output_dir}",
                     detail="found: " + ", ".join(found), code="mkosi-no-output")

