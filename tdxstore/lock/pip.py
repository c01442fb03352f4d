"""Index resolution by pip's own resolver (L3): `pip install --dry-run --ignore-installed --report`.

pip runs as `sys.executable -m pip --isolated` through the one process runner (no user or site pip
configuration, no environment variables beyond the allow-list), wheels only. The running SDK is
offered to pip as a metadata-only wheel of exactly its version (`--find-links` plus a constraint),
so modules may depend on `tdx-vm-sdk` without pip fetching another one. The index URL, which may
carry credentials, goes to pip in a private requirements file, never on the command line.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from tdxstore.errors import LockfileError
from tdxstore.lock.project import SDK_NAME, redact
from tdxstore.sandbox import process

PIP_TIMEOUT = 900.0
_NOT_FOUND = re.compile(r"No matching distribution found for (\S+)")


@dataclass(frozen=True, slots=True)
class Pinned:
    """One distribution pip chose: canonical name, exact version, wheel URL (no credentials), SHA-256 hex."""

    name: str
    version: str
    url: str
    sha256: str | None

    def __post_init__(self) -> None:
        if self.name != canonicalize_name(self.name) or not self.version or not self.url:
            raise LockfileError(f"pip reported an incomplete distribution {self!r}", code="resolver-failed")


def _sdk_wheel(directory: Path, version: str) -> None:
    """A wheel with only the metadata of the running SDK: pip sees it as available, with no dependencies."""
    info = f"tdx_vm_sdk-{version}.dist-info"
    members = {f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {SDK_NAME}\nVersion: {version}\n",
               f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tdx\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    members[f"{info}/RECORD"] = "".join(f"{m},,\n" for m in members) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(directory / f"tdx_vm_sdk-{version}-py3-none-any.whl", "w") as z:
        for name, text in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), text)


def resolve_index(requirements: Sequence[str], constraints: Sequence[str], *, index_url: str,
                  sdk_version: str) -> list[Pinned]:
    """Exact versions, wheel URLs and hashes for `requirements` (and their dependencies), SDK excluded."""
    if not requirements:
        return []
    with tempfile.TemporaryDirectory(prefix="tdx-pip-") as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "sdk").mkdir()
        (tmp / "home").mkdir()
        _sdk_wheel(tmp / "sdk", sdk_version)
        reqs = tmp / "requirements.txt"
        fd = os.open(reqs, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"--index-url {index_url}\n" + "".join(r + "\n" for r in requirements))
        (tmp / "constraints.txt").write_text("".join(c + "\n" for c in [f"{SDK_NAME}=={sdk_version}",
                                                                         *constraints]))
        report = tmp / "report.json"
        argv: list[str | os.PathLike[str]] = [
            sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "--no-input", "install",
            "--dry-run", "--ignore-installed", "--only-binary=:all:", "--no-cache-dir",
            "--progress-bar", "off", "--report", report, "--find-links", tmp / "sdk",
            "-c", tmp / "constraints.txt", "-r", reqs]
        env = process.host_env({"HOME": str(tmp / "home"), "PYTHONNOUSERSITE": "1"})
        r = process.run(argv, env=env, cwd=tmp, check=False, timeout=PIP_TIMEOUT, what="pip")
        if r.returncode != 0:
            raise _pip_error(r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace"),
                             index_url)
        try:
            data = json.loads(report.read_text())
        except (OSError, ValueError) as e:
            raise LockfileError("pip wrote no readable report", detail=str(e), code="resolver-failed") from e
    return _pins(data)


def _pins(data: object) -> list[Pinned]:
    installs = data.get("install") if isinstance(data, dict) else None
    if not isinstance(installs, list):
        raise LockfileError("pip's report has no install list", code="resolver-failed")
    out = []
    for item in installs:
        meta, info = item.get("metadata", {}), item.get("download_info", {})
        name = canonicalize_name(str(meta.get("name", "")))
        if name == SDK_NAME:
            continue
        hashes = info.get("archive_info", {}).get("hashes", {})
        sha = hashes.get("sha256") if isinstance(hashes, dict) else None
        out.append(Pinned(name, str(meta.get("version", "")), redact(str(info.get("url", ""))),
                          sha if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha) else None))
    return sorted(out, key=lambda p: p.name)


def _pip_error(output: str, index_url: str) -> LockfileError:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    detail = "\n".join(lines[-30:])
    missing = _NOT_FOUND.search(output)
    if missing:
        return LockfileError(f"module {missing.group(1)!r} is not on the index {redact(index_url)}",
                             hint="check the name, the version specifier and the index URL (tdx locks wheels only: "
                             "a project with only a source distribution is not found either)",
                             detail=detail, code="module-not-found")
    if "ResolutionImpossible" in output or "conflict" in output.lower():
        return LockfileError("the declared modules have conflicting requirements (pip's explanation below)",
                             hint="relax one of the version specifiers named below", detail=detail,
                             code="resolution-conflict")
    return LockfileError(f"pip could not resolve the modules against {redact(index_url)}", detail=detail,
                         hint="run with --debug to see pip's command line", code="resolver-failed")
