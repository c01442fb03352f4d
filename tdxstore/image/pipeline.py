"""`tdx build`: TDXfile -> realised builds -> mkosi configuration in the store -> image store path (L3).

Everything mkosi reads comes from the store: the rendered configuration directory (files, templates,
units, user and hook scripts) is one content-addressed store path, the pinned mkosi another, build
outputs are store paths laid over the root as extra trees. The image itself is the output of a
`builtin:mkosi` derivation over those inputs, so an unchanged TDXfile is a lookup (no mkosi run) and
the image's references name every input. mkosi still downloads Debian packages from the configured
mirror while it runs (pinned .deb inputs are the bootstrap milestone).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tdxstore._fs import extract_tar, remove_tree
from tdxstore.builders.fetch import default_name, fetchurl_derivation
from tdxstore.errors import ImageError, TdxError
from tdxstore.image.deb import unpack_derivation
from tdxstore.image.image import Image, OutputFormat
from tdxstore.image.mkosi import mkosi_store_path, obtain_mkosi_in_store, run_mkosi
from tdxstore.image.mkosi_config import TOOLS_RELEASE, TOOLS_SANDBOX_DIR, ImageFormat, base_config
from tdxstore.image.mkosi_mirror import host_mirrors
from tdxstore.image.mkosi_tar import sort_tar
from tdxstore.image.render import conf_text, is_executable, kernel_command_line, render
from tdxstore.image.tdxfile import load_tdxfile
from tdxstore.store.build import register_builtin
from tdxstore.store.derivation import Derivation, derivation
from tdxstore.store.path import StorePath
from tdxstore.store.realise import Options, Plan, instantiate, plan, realise
from tdxstore.store.store import Store

Phase = Callable[[str], None]
# systemd-stub >= 256 measures the UKI into RTMR2; bookworm ships 252 (TPM only). The stub is pinned
# with the image: trixie's systemd-boot-efi, fetched by hash and laid over the image's own.
STUB_DEB = ("systemd-boot-efi_257.13-1~deb13u1_amd64.deb",
            "390ecdcef9bbb753f51bb6d8f696bdae2f1dbedde7239c49ccb2512f137a8933")
STUB_DIR = "usr/lib/systemd/boot/efi"
BUILDS_CONF = "mkosi.conf.d/90-tdx-builds.conf"
TOOLS_CONF = "mkosi.conf.d/80-tdx-tools.conf"
TOOLS = "tools"  # the `format` of the derivation that builds mkosi's tools tree
ARTIFACT = {"tar": "image.tar", "directory": "image.tar", "uki": "image.efi"}
MEASUREMENTS = "measurements.json"


@dataclass(frozen=True, slots=True)
class ImagePlan:
    """An evaluated TDXfile: the image derivation and what it needs."""

    image: Image
    fmt: OutputFormat
    config: dict[str, bytes]  # the rendered mkosi configuration directory
    builds: tuple[Derivation, ...]
    derivation: Derivation | None  # None until the configuration is in the store


def _mkosi_format(fmt: OutputFormat) -> ImageFormat:
    if fmt is OutputFormat.DISK:
        raise ImageError("the 'disk' format is not supported yet",
                         hint="build format 'uki' (the whole OS in one UKI), 'tar' or 'directory'",
                         code="unsupported-format")
    # A directory image is built as a tar in the store (setuid bits and ownership survive, which a
    # normalised store tree would drop) and unpacked at the output location.
    return ImageFormat.TAR if fmt is OutputFormat.DIRECTORY else ImageFormat(fmt.value)


def _build_derivations(image: Image) -> tuple[Derivation, ...]:
    drvs = []
    for b in image.builds:
        if isinstance(b, Derivation):
            drvs.append(b)
            continue
        inner = getattr(b, "derivation", None)
        if isinstance(inner, Derivation):
            drvs.append(inner)
            continue
        raise ImageError(f"image.build({type(b).__name__} {getattr(b, 'name', '?')!r}) cannot be built yet",
                         hint="typed builders and Build.script need the Debian build roots of the builders "
                              "milestone; pass a tdxstore Derivation whose $out is laid over the root",
                         code="builder-unavailable")
    return tuple(drvs)


def render_config(image: Image, fmt: OutputFormat) -> dict[str, bytes]:
    """The mkosi configuration directory of `image` with the pinned base settings (pure but for mirrors)."""
    base = base_config(fmt=_mkosi_format(fmt), mirrors=host_mirrors(), release=image.release,
                       kernel_cmdline=kernel_command_line(image), slim=image.slim)
    # The tools tree is a store path of its own (`tools_derivation`), named at build time.
    settings = {sec: [(k, v) for k, v in entries
                      if k not in ("Packages", "KernelCommandLine") and not k.startswith("ToolsTree")]
                for sec, entries in base.settings.items()}
    files = render(image, format=_mkosi_format(fmt), settings=settings)
    base_files = {k: v for k, v in base.files.items() if not k.startswith(TOOLS_SANDBOX_DIR + "/")}
    return dict(sorted({**files, **base_files}.items()))


def tools_config() -> dict[str, bytes]:
    """The configuration that builds only mkosi's default tools tree (trixie: ukify, repart, …)."""
    base = base_config(fmt=ImageFormat.UKI, mirrors=host_mirrors())
    settings = {"Distribution": base.settings["Distribution"], "Output": [("Format", "none")],
                "Build": base.settings["Build"]}
    return {"mkosi.conf": conf_text(settings).encode(), **base.files}


def tools_derivation(store: Store) -> Derivation:
    """mkosi's tools tree as a store path: built once, shared by every image, bound read-only."""
    with store.temp_dir("mkosi-tools-config") as tmp:
        write_config(tools_config(), tmp / "config")
        config = store.add_path(tmp / "config", "mkosi-tools-config")
    return derivation(f"mkosi-tools-{TOOLS_RELEASE}", "builtin:mkosi",
                      env={"config": config.logical, "mkosi": mkosi_store_path().logical, "format": TOOLS},
                      inputs=[config, mkosi_store_path()])


def boot_inputs(fmt: OutputFormat) -> tuple[Derivation, ...]:
    """What a bootable image needs besides packages: the pinned systemd-stub (laid over the image)."""
    if not fmt.bootable:
        return ()
    file, sha = STUB_DEB
    url = f"{host_mirrors().debian}/pool/main/s/systemd/{file}"
    deb = fetchurl_derivation(url, sha, default_name(file))
    return (unpack_derivation("systemd-stub-257.13", deb, [STUB_DIR]),)


def evaluate(tdxfile: Path, fmt: str | None = None) -> ImagePlan:
    image = load_tdxfile(tdxfile)
    out_fmt = OutputFormat(fmt) if fmt else image.format
    builds = boot_inputs(out_fmt) + _build_derivations(image)
    return ImagePlan(image, out_fmt, render_config(image, out_fmt), builds, None)


def write_config(files: dict[str, bytes], dest: Path) -> None:
    for rel, data in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o755 if is_executable(rel) else 0o644)


def image_derivation(store: Store, p: ImagePlan) -> ImagePlan:
    """Put the configuration into the store and make the image derivation over all inputs."""
    with store.temp_dir("mkosi-config") as tmp:
        write_config(p.config, tmp / "config")
        config = store.add_path(tmp / "config", f"{p.image.name}-mkosi-config")
    mkosi = mkosi_store_path()
    measure = measure_inputs(p.fmt)
    tools = tools_derivation(store)
    env = {"config": config.logical, "mkosi": mkosi.logical, "format": p.fmt.value, "tools": tools.out.logical,
           "builds": " ".join(d.out.logical for d in p.builds), **{k: d.out.logical for k, d in measure.items()}}
    drv = derivation(f"{p.image.name}-{p.fmt.value}", "builtin:mkosi", env=env,
                     inputs=[config, mkosi, tools, *p.builds, *measure.values()])
    return ImagePlan(p.image, p.fmt, p.config, p.builds, drv)


@dataclass(frozen=True, slots=True)
class DryRun:
    image: StorePath
    image_valid: bool
    mkosi_valid: bool
    builds: Plan
    packages: tuple[str, ...]


def dry_run(store: Store, p: ImagePlan) -> DryRun:
    """What `build` would do, without building, downloading or running mkosi."""
    assert p.derivation is not None
    if p.builds:  # a tar or directory image of only packages and files has no builds to instantiate
        instantiate(store, list(p.builds))
    from tdxstore.image.render import image_packages

    return DryRun(p.derivation.out, store.is_valid(p.derivation.out), store.is_valid(mkosi_store_path()),
                  plan(store, list(p.builds)), tuple(image_packages(p.image, OutputFormat(_mkosi_format(p.fmt).value))))


def build(store: Store, tdxfile: Path, *, fmt: str | None = None, options: Options | None = None,
          phase: Phase = lambda _m: None) -> tuple[ImagePlan, StorePath, bool]:
    """Evaluate, realise and assemble; returns (plan, image store path, whether mkosi ran)."""
    options = options or Options()
    phase(f"evaluating {tdxfile}")
    p = evaluate(tdxfile, fmt)
    p = image_derivation(store, p)
    assert p.derivation is not None
    if store.is_valid(p.derivation.out):
        return p, p.derivation.out, False
    if p.builds:
        phase(f"realising {len(p.builds)} build(s)")
        realise(store, list(p.builds), options)
    if not store.is_valid(mkosi_store_path()):
        phase("obtaining the pinned mkosi 25.3 (apt, SHA-256 verified)")
        obtain_mkosi_in_store(store)
    tools = next(d for d in p.derivation.input_drvs if dict(d.env).get("format") == TOOLS)
    if not store.is_valid(tools.out):
        phase(f"building mkosi's tools tree ({TOOLS_RELEASE}; once, then shared by every image)")
        realise(store, [tools], options)
    phase(f"running mkosi ({p.fmt.value}); log: tdx log {p.derivation.drv_path}")
    realise(store, [p.derivation], options)
    return p, p.derivation.out, True


def _mkosi_builtin(store: Store, drv: Derivation, out: Path, log: IO[bytes]) -> None:
    """`builtin:mkosi`: run the pinned mkosi on the stored configuration; fill `out` with the image."""
    env = dict(drv.env)
    config_sp, mkosi_sp = store.parse(env["config"]), store.parse(env["mkosi"])
    fmt = OutputFormat(env["format"]) if env["format"] != TOOLS else None
    with store.temp_dir("mkosi") as work:
        config = work / "config"
        shutil.copytree(store.real_path(config_sp), config, symlinks=True)
        for root, dirs, files in os.walk(config):
            for n in dirs + files:
                p = Path(root) / n
                if not p.is_symlink():
                    p.chmod(p.stat().st_mode | 0o200)
        config.chmod(0o755)
        if "tools" in env:  # a store path, so the stored configuration names no host location
            (config / TOOLS_CONF).parent.mkdir(exist_ok=True)
            (config / TOOLS_CONF).write_text(f"[Build]\nToolsTree={store.real_path(store.parse(env['tools']))}\n")
        builds = [store.real_path(store.parse(b)) for b in env.get("builds", "").split()]
        if builds:
            (config / BUILDS_CONF).parent.mkdir(exist_ok=True)
            (config / BUILDS_CONF).write_text("[Content]\n" + "".join(f"ExtraTrees={b}\n" for b in builds))
        mlog = work / "mkosi.log"
        try:
            caches = store.home / "cache" / "mkosi"
            artifact = run_mkosi(store.real_path(mkosi_sp), config, work / "output",
                                 cache_dir=caches / _cache_key(config), package_cache_dir=caches / "packages",
                                 workspace=work / "ws", log_path=mlog,
                                 force=fmt is None, output_name=TOOLS if fmt is None else "image")
        except TdxError as e:
            # The work directory disappears with this build: point at the kept log instead.
            where = f"tdx log {drv.drv_path}"
            cause = e.hint if e.code != "mkosi-failed" and e.hint else None
            e.hint = f"{cause}; full log: {where}" if cause else f"read the full log: {where}"
            e.detail = (e.detail or "").replace(f"(log: {mlog})", f"(full log: {where})")
            raise
        finally:
            if mlog.exists():
                log.write(mlog.read_bytes())
        if fmt is None:  # the tools tree itself is the output
            out.rmdir()
            os.rename(artifact, out)
        elif fmt is OutputFormat.UKI:
            shutil.copyfile(artifact, out / ARTIFACT["uki"])
            _write_measurements(store, env, out, work)
        else:
            sort_tar(artifact, out / ARTIFACT[fmt.value])
        remove_tree(work / "output")


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


def measure_inputs(fmt: OutputFormat) -> dict[str, Derivation]:
    """What the measurement manifest needs besides the image: the pinned firmware (UKI images only)."""
    from tdxstore.image.firmware import firmware_derivation

    return {"firmware": firmware_derivation()} if fmt is OutputFormat.UKI else {}


def _write_measurements(store: Store, env: dict[str, str], out: Path, work: Path) -> None:
    """`image.disk` (the UKI on a GPT disk) and `measurements.json` over it and the pinned firmware."""
    from tdxstore.image.disk import make_disk
    from tdxstore.image.firmware import firmware_file, firmware_label
    from tdxstore.image.manifest import DISK_FILE, write_manifest

    make_disk(out / ARTIFACT["uki"], out / DISK_FILE, work)
    firmware = store.parse(env["firmware"])
    write_manifest(out, firmware_file(store, firmware), firmware, firmware_label())


def unpack_directory(tar_path: Path, dest: Path) -> Path:
    """Unpack a directory-format image (kept as a sorted tar in the store) at `dest`."""
    if dest.exists():
        remove_tree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(tar_path) as tf:
        extract_tar(tf, dest)
    return dest


register_builtin("builtin:mkosi", _mkosi_builtin)
