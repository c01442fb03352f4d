"""An image project's `pyproject.toml` (L3): its declared modules, sorted by where they come from.

`[project].dependencies` are PEP 508 requirements: a name with a version specifier is resolved from
the index, `name @ git+URL@ref` from git, `name @ file:./path` from the project itself. The SDK
(`tdx-vm-sdk`) is the running tdx: it is checked against its specifier, never resolved or locked.
The staleness hash covers the declarations only (no host facts such as an index URL from the
environment), so two machines agree on whether a lock is current. Index credentials never leave here.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from tdxstore.errors import LockfileError

PYPROJECT = "pyproject.toml"
SDK_NAME = "tdx-vm-sdk"
DEFAULT_INDEX = "https://pypi.org/simple"


class Origin(StrEnum):
    INDEX = "index"
    GIT = "git"
    LOCAL = "local"


@dataclass(frozen=True, slots=True)
class Declared:
    """One declared module: its canonical name, the requirement as written (normalised), and its origin."""

    name: str
    requirement: str
    origin: Origin
    location: str | None = None  # git: repository URL; local: the path as written
    ref: str | None = None  # git: tag or commit after the last '@'

    def __post_init__(self) -> None:
        if self.name != canonicalize_name(self.name):
            raise LockfileError(f"module name {self.name!r} is not canonical", code="pyproject-invalid")
        if self.origin is not Origin.INDEX and not self.location:
            raise LockfileError(f"{self.requirement!r} has no location", code="pyproject-invalid")


@dataclass(frozen=True, slots=True)
class Project:
    """The parts of an image project's pyproject.toml that locking reads."""

    directory: Path
    name: str
    declared: tuple[Declared, ...]
    sdk: str | None  # the tdx-vm-sdk requirement, if declared
    index_url: str | None  # [tool.tdx] index-url

    @property
    def requires(self) -> tuple[str, ...]:
        reqs = [d.requirement for d in self.declared] + ([self.sdk] if self.sdk else [])
        return tuple(sorted(reqs))

    @property
    def requires_hash(self) -> str:
        body = json.dumps({"requires": list(self.requires)}, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(body.encode()).hexdigest()

    def find(self, name: str) -> Declared | None:
        return next((d for d in self.declared if d.name == canonicalize_name(name)), None)


def _invalid(path: Path, message: str, hint: str) -> LockfileError:
    return LockfileError(f"{path}: {message}", hint=hint, code="pyproject-invalid")


def read_project(directory: Path, *, required: bool = True) -> Project:
    """Read `directory/pyproject.toml`; LockfileError "pyproject-invalid" names what is wrong.

    Without `required`, a directory with no pyproject.toml is a project that declares no modules
    (its tdx.lock then pins only the TDXfile's fetches and the sections other code adds).
    """
    path = Path(directory) / PYPROJECT
    if not required and not path.exists():
        return Project(Path(directory), Path(directory).name or "image", (), None, None)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise LockfileError(f"no {PYPROJECT} in {str(directory)!r}", code="pyproject-missing",
                            hint="an image project declares its modules in pyproject.toml [project].dependencies"
                            ) from e
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise _invalid(path, f"cannot be read: {e}", "fix the TOML syntax") from e
    project = doc.get("project")
    if not isinstance(project, dict):
        raise _invalid(path, "has no [project] table", 'add [project] with name = "…" and dependencies = [...]')
    name = project.get("name")
    if not isinstance(name, str) or not name:
        raise _invalid(path, "[project] has no name", 'add name = "my-image" under [project]')
    deps = project.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise _invalid(path, "[project].dependencies is not a list of strings", 'write dependencies = ["tdx-x>=1"]')
    tool = doc.get("tool", {}).get("tdx", {}) if isinstance(doc.get("tool"), dict) else {}
    index_url = tool.get("index-url") if isinstance(tool, dict) else None
    if index_url is not None and not isinstance(index_url, str):
        raise _invalid(path, "[tool.tdx] index-url is not a string", 'write index-url = "https://…/simple"')
    declared: list[Declared] = []
    sdk = None
    for text in deps:
        item = parse_declaration(text, path)
        if item is None:
            continue
        if item.name == SDK_NAME:
            sdk = item.requirement
        elif any(d.name == item.name for d in declared):
            raise _invalid(path, f"{item.name!r} is declared twice", "merge the two requirements into one")
        else:
            declared.append(item)
    return Project(Path(directory), name, tuple(declared), sdk, index_url)


def parse_declaration(text: str, where: Path | str) -> Declared | None:
    """One dependency string; None when its environment marker excludes it on this interpreter."""
    try:
        req = Requirement(text)
    except InvalidRequirement as e:
        raise LockfileError(f"{where}: {text!r} is not a valid requirement: {e}", code="pyproject-invalid",
                            hint="use PEP 508 syntax: name>=1.0, name @ git+https://…@tag, name @ file:./dir") from e
    if req.marker is not None and not req.marker.evaluate():
        return None
    name = canonicalize_name(req.name)
    normal = str(req)
    if req.url is None:
        return Declared(name, normal, Origin.INDEX)
    if req.url.startswith("git+"):
        url = req.url.removeprefix("git+")
        head, sep, ref = url.rpartition("@")
        if not sep or "/" in ref or not ref or "://" not in head:
            raise LockfileError(f"{where}: {text!r} does not pin a tag or commit", code="pyproject-invalid",
                                hint=f"write {req.name} @ git+https://host/repo@v1.0.0")
        return Declared(name, normal, Origin.GIT, location=head, ref=ref)
    if req.url.startswith("file:"):
        rel = req.url.removeprefix("file:").removeprefix("//")
        if rel.startswith("/"):
            raise LockfileError(f"{where}: {text!r} names an absolute path", code="pyproject-invalid",
                                hint=f"write a path relative to the project: {req.name} @ file:./modules/x")
        return Declared(name, normal, Origin.LOCAL, location=rel)
    raise LockfileError(f"{where}: {text!r} is a direct URL tdx cannot lock", code="pyproject-invalid",
                        hint="use an index requirement, git+https://…@tag, or file:./path")


def check_sdk(requirement: str | None) -> str:
    """The running SDK's version; LockfileError "sdk-version" when it does not satisfy `requirement`."""
    try:
        version = metadata.version(SDK_NAME)
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        version = "0"
    if requirement is not None:
        spec = Requirement(requirement).specifier
        if spec and not spec.contains(version, prereleases=True):
            raise LockfileError(f"the project needs {requirement!r} but this tdx is {SDK_NAME} {version}",
                                hint=f"install a matching {SDK_NAME}, or relax the requirement",
                                code="sdk-version")
    return version


def redact(url: str) -> str:
    """`url` without user:password@ (what may be recorded or logged)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
