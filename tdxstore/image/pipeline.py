"""`tdx build`: evaluate the TDXfile, derive the image derivation, realise it (L4).

Everything mkosi reads comes from the store: the rendered configuration directory (files, templates,
units, user and hook scripts) is one content-addressed store path, the pinned mkosi another, build
outputs are store paths laid over the root as extra trees. The image itself is the output of a
`builtin:mkosi` derivation over those inputs (run by the store's builtins table), so an unchanged
TDXfile is a lookup and the image's references name every input. With a locked package set (the
caller's `packages` hook), mkosi installs only from that set's repository store path, with the
network cut; without one it still downloads from the declared mirror.
"""

from __future__ import annotations

import dataclasses
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from tdxstore._fs import extract_tar, remove_tree
from tdxstore.debian.mirror import AptMirrors, declared_mirrors
from tdxstore.debian.pins import DEFAULT_PINS, Pins
from tdxstore.errors import ImageError
from tdxstore.image.model.image import Image
from tdxstore.image.pinned import firmware_derivation, mkosi_derivation, stub_derivation
from tdxstore.image.render import image_packages, mkosi_format, render_config, tools_config
from tdxstore.image.secrets import not_implemented
from tdxstore.image.tdxfile import load_tdxfile
from tdxstore.mkosi.build import TOOLS
from tdxstore.mkosi.config import TOOLS_RELEASE, ImageFormat, write_config
from tdxstore.store.derivation import Derivation, derivation
from tdxstore.store.path import StorePath, mentioned_paths
from tdxstore.store.realise import Options, Plan, check_offline, instantiate, plan, realise
from tdxstore.store.store import Store

Phase = Callable[[str], None]
Lower = Callable[[object], Derivation]  # a typed build -> its derivation (on a locked, realised build root)


@dataclass(frozen=True, slots=True)
class LockedRepos:
    """The repositories of a project's locked package sets: the image's, and mkosi's tools tree's
    (None for a lock from before the tools tree was locked: it is then built from the mirror)."""

    image: Derivation
    tools: Derivation | None = None
    pins: Pins = DEFAULT_PINS  # mkosi, systemd-stub and OVMF as the lock pins them (`[debian.pinned]`)


#: Given the evaluated image and its output format, the repositories of its locked package sets
#: (the CLI composes `tdxstore.packages` with the lockfile), or None to let mkosi use the mirror.
PackagesHook = Callable[[Image, ImageFormat], LockedRepos | None]


class Hooks(TypedDict, total=False):
    """What the CLI composes into evaluation for one store: typed builds and the locked package set."""

    lower: Lower | None
    packages: PackagesHook | None
MEASUREMENTS = "measurements.json"


@dataclass(frozen=True, slots=True)
class ImagePlan:
    """An evaluated TDXfile: the image derivation and what it needs."""

    image: Image
    fmt: ImageFormat
    mirrors: AptMirrors  # the declared mirror, read once per build
    config: dict[str, bytes]  # the rendered mkosi configuration directory
    builds: tuple[Derivation, ...]
    derivation: Derivation | None = None  # None until the configuration is in the store
    sources: tuple[StorePath, ...] = ()  # store paths the configuration names (read by hooks)
    repo: Derivation | None = None  # the local repository of the locked package set (mkosi's only source)
    tools_repo: Derivation | None = None  # the same for mkosi's tools tree (`[debian.tools]`)
    pins: Pins = DEFAULT_PINS  # the pinned mkosi, systemd-stub and OVMF (the lock's, or the defaults)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Declarations the TDXfile makes that this build does not carry out yet (said, never dropped)."""
        return not_implemented(self.image)


def _build_derivations(image: Image, lower: Lower | None) -> tuple[Derivation, ...]:
    """Each `image.build(...)` as a derivation: given as one, or a typed build lowered by `lower`.

    `lower` (made by the composing layer, which may lock and realise build roots) turns a builder's
    declaration into its derivation; the image layer never imports builders or packages.
    """
    _check_paths(image)
    drvs = []
    for b in image.builds:
        if isinstance(b, Derivation):
            drvs.append(b)
            continue
        inner = getattr(b, "derivation", None)
        if isinstance(inner, Derivation):
            drvs.append(inner)
            continue
        if lower is not None and hasattr(b, "derivation_on"):
            drvs.append(lower(b))
            continue
        raise ImageError(f"image.build({type(b).__name__} {getattr(b, 'name', '?')!r}) is not a build",
                         hint="pass a builder (Build.script, GoBuild, CBuild, RustBuild) or a Derivation "
                              "whose $out is laid over the root", code="builder-unavailable")
    return tuple(drvs)


def _check_paths(image: Image) -> None:
    """Two builds installing the same image path is one error naming both call sites."""
    claimed: dict[str, tuple[str, str]] = {}  # image path -> (build name, call site)
    for b, site in image.build_sites:
        name = getattr(b, "name", "?")
        for path in getattr(b, "image_paths", ()):
            if path in claimed:
                first, first_site = claimed[path]
                raise ImageError(f"builds {first!r} and {name!r} both install {path!r} into the image",
                                 hint="give one of them another output path",
                                 detail=f"first:  {first_site}\nsecond: {site}", code="build-path-conflict")
            claimed[path] = (name, site)


def tools_derivation(store: Store, mirrors: AptMirrors, repo: Derivation | None = None,
                     pins: Pins = DEFAULT_PINS) -> Derivation:
    """mkosi's tools tree as a store path: built once, shared by every image, bound read-only.

    With `repo` (the repository of the locked `[debian.tools]` set) it is installed from that
    repository only, with the network cut; without, mkosi downloads it from the mirror.
    """
    with store.temp_dir("mkosi-tools-config") as tmp:
        write_config(tools_config(mirrors, locked=repo is not None), tmp / "config")
        config = store.add_path(tmp / "config", "mkosi-tools-config")
    mkosi = mkosi_derivation(mirrors.debian, pins.mkosi)
    env = {"config": config.logical, "mkosi": mkosi.out.logical, "format": TOOLS}
    if repo is not None:
        env["repo"] = repo.out.logical
    return derivation(f"mkosi-tools-{TOOLS_RELEASE}", "builtin:mkosi", env=env,
                      inputs=[config, mkosi, *([repo] if repo is not None else [])])


def boot_inputs(fmt: ImageFormat, mirrors: AptMirrors, pins: Pins = DEFAULT_PINS) -> tuple[Derivation, ...]:
    """What a bootable image needs besides packages: the pinned systemd-stub (laid over the image)."""
    return (stub_derivation(mirrors.debian, pins.stub),) if fmt.bootable else ()


def measure_inputs(fmt: ImageFormat, mirrors: AptMirrors, pins: Pins = DEFAULT_PINS) -> dict[str, Derivation]:
    """What the measurement manifest needs besides the image: the pinned firmware (UKI images only)."""
    return {"firmware": firmware_derivation(mirrors.debian, pins.ovmf)} if fmt is ImageFormat.UKI else {}


def evaluate(tdxfile: Path, fmt: str | None = None, store: Store | None = None,
             mirrors: AptMirrors | None = None, import_paths: Sequence[Path] = (),
             lower: Lower | None = None, packages: PackagesHook | None = None) -> ImagePlan:
    """Run the TDXfile and render its configuration; with `store`, store paths are made logical.

    `import_paths` (the locked modules' store paths) come first on the TDXfile's sys.path; `lower`
    makes the derivations of typed builds (without it only Derivations can be built); `packages`
    gives the repository of the image's locked package set (then no mirror is rendered).
    """
    image = load_tdxfile(tdxfile, import_paths)
    mirrors = mirrors or declared_mirrors()
    out_fmt = ImageFormat(fmt) if fmt else image.format
    repos = packages(image, mkosi_format(out_fmt)) if packages is not None else None
    repo, tools_repo = (repos.image, repos.tools) if repos is not None else (None, None)
    pins = repos.pins if repos is not None else DEFAULT_PINS
    locked = repo is not None
    builds = boot_inputs(out_fmt, mirrors, pins) + _build_derivations(image, lower)
    config = render_config(image, out_fmt, mirrors, locked=locked)
    if store is None:
        return ImagePlan(image, out_fmt, mirrors, config, builds, repo=repo, tools_repo=tools_repo, pins=pins)
    config = {rel: store.logicalise(data) for rel, data in config.items()}
    sources = _mentioned_sources(store, config)
    if sources:
        config = {rel: store.logicalise(data)
                  for rel, data in render_config(image, out_fmt, mirrors, store_view=True, locked=locked).items()}
    return ImagePlan(image, out_fmt, mirrors, config, builds, None, sources, repo, tools_repo, pins)


def _mentioned_sources(store: Store, config: dict[str, bytes]) -> tuple[StorePath, ...]:
    """The store paths a rendered configuration names; each must be valid (e.g. made by fetch())."""
    found: dict[StorePath, str] = {}
    for rel, data in config.items():
        for sp in mentioned_paths(data):
            found.setdefault(sp, rel)
    for sp, rel in sorted(found.items()):
        if not store.is_valid(sp):
            raise ImageError(f"{rel} of the image names {sp.logical}, which is not a valid store path",
                             hint="use the path that fetch()/fetch_git() returned, or build it first",
                             code="unknown-store-path")
    return tuple(sorted(found))


def image_derivation(store: Store, p: ImagePlan) -> ImagePlan:
    """Put the configuration into the store and make the image derivation over all inputs."""
    with store.temp_dir("mkosi-config") as tmp:
        write_config(p.config, tmp / "config")
        config = store.add_path(tmp / "config", f"{p.image.name}-mkosi-config", references=p.sources)
    mkosi = mkosi_derivation(p.mirrors.debian, p.pins.mkosi)
    measure = measure_inputs(p.fmt, p.mirrors, p.pins)
    tools = tools_derivation(store, p.mirrors, p.tools_repo, p.pins)
    env = {"config": config.logical, "mkosi": mkosi.out.logical, "format": p.fmt.value, "tools": tools.out.logical,
           "builds": " ".join(d.out.logical for d in p.builds), **{k: d.out.logical for k, d in measure.items()}}
    if p.sources:
        env["sources"] = " ".join(sp.logical for sp in p.sources)
    if p.repo is not None:
        env["repo"] = p.repo.out.logical
    drv = derivation(f"{p.image.name}-{p.fmt.value}", "builtin:mkosi", env=env,
                     inputs=[config, mkosi, tools, *p.builds, *measure.values(), *p.sources,
                             *([p.repo] if p.repo is not None else [])])
    return dataclasses.replace(p, derivation=drv)


@dataclass(frozen=True, slots=True)
class DryRun:
    image: Derivation
    image_valid: bool
    mkosi_valid: bool
    builds: Plan
    packages: tuple[str, ...]


def dry_run(store: Store, p: ImagePlan) -> DryRun:
    """What `build` would do, without building, downloading or running mkosi.

    The image's .drv and every .drv it needs are written, so each `build` line of the listing (and
    the image itself) can be realised on its own with `tdx realise`.
    """
    assert p.derivation is not None
    instantiate(store, p.derivation)
    needed = plan(store, list(p.derivation.input_drvs))
    return DryRun(p.derivation, store.is_valid(p.derivation.out),
                  store.is_valid(mkosi_derivation(p.mirrors.debian, p.pins.mkosi).out), needed,
                  tuple(image_packages(p.image, mkosi_format(p.fmt))))


def build(store: Store, tdxfile: Path, *, fmt: str | None = None, options: Options | None = None,
          phase: Phase = lambda _m: None, import_paths: Sequence[Path] = (),
          lower: Lower | None = None, packages: PackagesHook | None = None) -> tuple[ImagePlan, StorePath, bool]:
    """Evaluate, derive, realise; returns (plan, image store path, whether mkosi ran)."""
    options = options or Options()
    phase(f"evaluating {tdxfile}")
    p = image_derivation(store, evaluate(tdxfile, fmt, store, import_paths=import_paths, lower=lower,
                                         packages=packages))
    assert p.derivation is not None
    for warning in p.warnings:
        phase(f"warning: {warning}")
    if store.is_valid(p.derivation.out):
        return p, p.derivation.out, False
    if store.offline:  # every download the whole build would need, in one error, before any build
        check_offline(store, plan(store, [p.derivation]).build)
    tools = next(d for d in p.derivation.input_drvs if dict(d.env).get("format") == TOOLS)
    first = [d for d in p.derivation.input_drvs if d is not tools]
    if not all(store.is_valid(d.out) for d in first):
        phase(f"realising {len(first)} input(s): {', '.join(sorted(d.name for d in first))}")
        realise(store, first, options)
    if not store.is_valid(tools.out):
        phase(f"building mkosi's tools tree ({TOOLS_RELEASE}; once, then shared by every image)")
        realise(store, [tools], options)
    phase(f"running mkosi ({p.fmt.value}); log: tdx log {p.derivation.drv_path}")
    realise(store, [p.derivation], options)
    return p, p.derivation.out, True


def unpack_directory(tar_path: Path, dest: Path) -> Path:
    """Unpack a directory-format image (kept as a sorted tar in the store) at `dest`."""
    if dest.exists():
        remove_tree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(tar_path) as tf:
        extract_tar(tf, dest)
    return dest
