"""From a project's declarations to `[[module]]` entries (L3): local trees, git commits, index wheels.

`tdx lock` touches nothing already locked: a git module keeps its commit while its URL and ref are
unchanged, an index module keeps its version (passed to pip as a constraint) while it still satisfies
every declaration; `update` names the modules to re-resolve (empty: all). Local and git modules'
own `[project].dependencies` join the index resolution, so pip explains a conflict between modules.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tdxstore.errors import LockfileError
from tdxstore.fetch import offline
from tdxstore.lock.lockfile import FetchEntry, Lockfile, ModuleEntry, ModuleSource
from tdxstore.lock.materialise import download_wheel, store_name, temporary_checkout, tree_path, wheel_file_name
from tdxstore.lock.pip import resolve_index
from tdxstore.lock.project import DEFAULT_INDEX, SDK_NAME, Declared, Origin, Project, check_sdk, redact
from tdxstore.store.store import Store
from tdxstore.store.tree import tree_hash

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Request:
    """What to (re)resolve: `update` None keeps every locked entry, empty re-resolves all, else these names."""

    project: Project
    index_url: str = DEFAULT_INDEX
    update: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.update:
            unknown = sorted(n for n in self.update if self.project.find(n) is None)
            if unknown:
                raise LockfileError(f"--update {unknown[0]}: the project declares no such module",
                                    hint="declared: " + (", ".join(d.name for d in self.project.declared)
                                                         or "none"), code="unknown-module")

    def keeps(self, name: str) -> bool:
        return self.update is None or (bool(self.update) and canonicalize_name(name) not in self.update)


def _meta(directory: Path) -> tuple[str | None, str | None, list[str]]:
    """(name, version, dependencies) from a module's pyproject.toml (all empty when absent)."""
    try:
        doc = tomllib.loads((directory / "pyproject.toml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, None, []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise LockfileError(f"cannot read {directory / 'pyproject.toml'}: {e}", code="pyproject-invalid") from e
    project = doc.get("project", {})
    project = project if isinstance(project, dict) else {}
    deps = project.get("dependencies", [])
    name, version = project.get("name"), project.get("version")
    return (name if isinstance(name, str) else None, version if isinstance(version, str) else None,
            [d for d in deps if isinstance(d, str)] if isinstance(deps, list) else [])


def _check_name(decl: Declared, found: str | None, where: str) -> None:
    if found is not None and canonicalize_name(found) != decl.name:
        raise LockfileError(f"{decl.requirement!r} points at {where}, which is the project {found!r}",
                            hint=f"write {found} @ …, or point the requirement at the right module",
                            code="module-name-mismatch")


def _local(decl: Declared, project: Project) -> tuple[ModuleEntry, list[str]]:
    assert decl.location is not None
    rel = decl.location if decl.location.startswith(("./", "../")) else f"./{decl.location}"
    directory = project.directory / rel
    if not directory.is_dir():
        raise LockfileError(f"local module {decl.name!r}: {rel} does not exist in {str(project.directory)!r}",
                            hint=f"fix the path in {decl.requirement!r} (relative to pyproject.toml)",
                            code="local-module-missing")
    name, version, deps = _meta(directory)
    _check_name(decl, name, rel)
    entry = ModuleEntry(decl.name, version or "0", ModuleSource.LOCAL, tree_hash(directory), path=rel.rstrip("/"))
    return entry, deps


def _git(decl: Declared, request: Request, old: Lockfile | None, store: Store) -> tuple[ModuleEntry, list[str]]:
    assert decl.location is not None and decl.ref is not None
    kept = old.module(decl.name) if old is not None else None
    if (kept is not None and request.keeps(decl.name) and kept.source is ModuleSource.GIT
            and kept.git == decl.location and kept.tag == decl.ref):
        tree = store.real_path(tree_path(store, kept, request.project.directory))
        return kept, _meta(tree)[2]
    holder, checkout, commit = temporary_checkout(decl.location, decl.ref)
    with holder:
        name, version, deps = _meta(checkout)
        _check_name(decl, name, f"{decl.location}@{decl.ref}")
        entry = ModuleEntry(decl.name, version or decl.ref, ModuleSource.GIT, tree_hash(checkout, standalone=True),
                            git=decl.location, tag=decl.ref, resolved_rev=commit)
    tree_path(store, entry, request.project.directory)  # into the store now: evaluation needs no network
    return entry, deps


def _index_requirements(request: Request, extra: list[str], provided: set[str]) -> list[str]:
    reqs = [d.requirement for d in request.project.declared if d.origin is Origin.INDEX]
    for text in extra:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name == SDK_NAME or name in provided or (req.marker is not None and not req.marker.evaluate()):
            continue
        if req.url is not None:
            raise LockfileError(f"a module depends on {text!r}, a direct URL tdx does not follow",
                                hint="declare that module in the image project's pyproject.toml instead",
                                code="pyproject-invalid")
        reqs.append(str(req))
    return sorted(set(reqs))


def _constraints(request: Request, old: Lockfile | None, reqs: list[str]) -> list[str]:
    """`name==version` for every kept index module that still satisfies every requirement on it."""
    if old is None:
        return []
    parsed = [Requirement(r) for r in reqs]
    out = []
    for m in old.modules:
        if m.source is not ModuleSource.PYPI or not request.keeps(m.name):
            continue
        specs = [r.specifier for r in parsed if canonicalize_name(r.name) == m.name]
        if all(s.contains(m.version, prereleases=True) for s in specs):
            out.append(f"{m.name}=={m.version}")
    return out


def resolve(request: Request, old: Lockfile | None, store: Store) -> Lockfile:
    """The lock for `request.project` (fetch entries and unknown sections carried over from `old`)."""
    project = request.project
    sdk_version = check_sdk(project.sdk)
    entries: list[ModuleEntry] = []
    extra: list[str] = []
    for decl in project.declared:
        if decl.origin is Origin.LOCAL:
            entry, deps = _local(decl, project)
        elif decl.origin is Origin.GIT:
            entry, deps = _git(decl, request, old, store)
        else:
            continue
        entries.append(entry)
        extra += deps
    fetches: tuple[FetchEntry, ...] = old.fetches if old is not None else ()
    carried = dict(old.extra) if old is not None else {}
    if old is not None and _unchanged(request, old, entries):
        # Same declarations, same local and git trees: every index module is locked already, and
        # "locked ones are not touched" means there is nothing to ask pip.
        locked = tuple(m for m in old.modules if m.source is ModuleSource.PYPI)
        return Lockfile(project.requires_hash, project.requires, (*entries, *locked), fetches, carried)
    provided = {e.name for e in entries}
    reqs = _index_requirements(request, extra, provided)
    offline.refuse(f"the package index {redact(request.index_url)} (to resolve: {', '.join(reqs) or 'modules'})")
    pins = resolve_index(reqs, _constraints(request, old, reqs), index_url=request.index_url,
                         sdk_version=sdk_version)
    for pin in pins:
        kept = old.module(pin.name) if old is not None else None
        if (kept is not None and kept.source is ModuleSource.PYPI and kept.version == pin.version
                and request.keeps(pin.name)):
            entries.append(kept)  # locked: not touched (not even its URL)
            continue
        # An index that gives no hash: download once and pin what it served.
        sha = pin.sha256 or _hash_by_download(store, pin.url, request.index_url)
        entries.append(ModuleEntry(pin.name, pin.version, ModuleSource.PYPI, f"sha256:{sha}", url=pin.url))
    return Lockfile(project.requires_hash, project.requires, tuple(entries), fetches, carried)


def _unchanged(request: Request, old: Lockfile, entries: list[ModuleEntry]) -> bool:
    """No --update, the same declarations, and the same local/git entries as `old`."""
    before = sorted((m for m in old.modules if m.source is not ModuleSource.PYPI), key=lambda m: m.name)
    return (request.update is None and old.requires_hash == request.project.requires_hash
            and before == sorted(entries, key=lambda m: m.name))


def _hash_by_download(store: Store, url: str, index_url: str) -> str:
    with store.temp_dir("lock-hash") as tmp:
        staged = tmp / store_name(wheel_file_name(url))
        digest = download_wheel(url, staged, None, index_url)
        store.add_flat(staged)
    return digest
