"""Render an `Image` into an mkosi 25.3 configuration directory, as {relative path: bytes}.

Pure: no I/O, no clock, no environment; the same Image always gives the same bytes, with every list
in a fixed order (packages and files sorted, hooks in declaration order). The base settings come
from `tdxstore.mkosi.config` (the one mkosi configuration); writing the files and running mkosi
are other steps.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from tdxstore.debian.mirror import AptMirrors
from tdxstore.errors import ImageError
from tdxstore.image.model.hooks import Hook, Phase
from tdxstore.image.model.image import UNIT_DIR, Image
from tdxstore.image.model.kernel import kernel_package
from tdxstore.image.model.service import unit_text
from tdxstore.image.model.user import create_lines, group_lines
from tdxstore.image.secrets import READY_TARGET, secrets_config, secrets_packages, secrets_tree
from tdxstore.mkosi.config import (
    SLIM_PACKAGE,
    TOOLS_SANDBOX_DIR,
    ImageFormat,
    Settings,
    base_config,
    conf_text,
    locked_tools_settings,
)
from tdxstore.store.path import STORE_DIR

BOOT_PACKAGES = ("systemd", "udev", "systemd-boot-efi")
# Each UKI boot is a first boot; systemd-firstboot would wait for a key on the console.
BOOT_CMDLINE = ("systemd.firstboot=off",)
EXTRA = "mkosi.extra"
PRESET = "usr/lib/systemd/system-preset/10-tdx.preset"
# Where mkosi mounts the store for scripts (`BuildSources=<store>:tdx/store`, always below /work/src).
STORE_SOURCES = "/work/src" + STORE_DIR


def render(image: Image, settings: Settings, *, format: ImageFormat | str | None = None,
           source_date_epoch: int = 0, extra_trees: Sequence[str] = (),
           store_view: bool = False, locked: bool = False) -> dict[str, bytes]:
    """The configuration directory of `image` as {relative path: bytes}, sorted by path.

    `settings` are the base settings (`tdxstore.mkosi.config.base_config`); the image's name,
    packages, kernel command line and `extra_trees` (host paths, in the given order) are added.
    `store_view`: the hooks name store paths, so each hook makes them readable at /tdx/store.
    `locked`: packages come from the repository of a locked set, which holds one version of each
    name in one suite, so `name/suite` and `name=version` requests are written as the bare name.
    """
    fmt = ImageFormat(format) if format is not None else image.format
    conf = {section: list(entries) for section, entries in settings.items()}
    content = conf.setdefault("Content", [])
    packages = image_packages(image, fmt)
    content += [("Packages", bare_name(p) if locked else p) for p in packages]
    if fmt.bootable:
        content.append(("KernelCommandLine", " ".join(kernel_command_line(image))))
    content += [("ExtraTrees", tree) for tree in extra_trees]
    out: dict[str, bytes] = {"mkosi.conf": conf_text(conf).encode()}
    out.update(extra_tree(image))
    out.update(postinst_scripts(image, source_date_epoch))
    out.update(hook_scripts(image, store_view=store_view))
    out.update(secrets_config(image))
    return dict(sorted(out.items()))


def image_packages(image: Image, fmt: ImageFormat) -> list[str]:
    """The image's packages plus what its declarations need (systemd for services, a kernel to boot)."""
    packages = set(image.packages)
    if image.services or image.secrets:
        packages.add("systemd")
    if image.secrets:
        packages.update(secrets_packages(image))  # the agent is a python3-minimal program; sshd for ssh
    if image.users:
        packages.add("passwd")  # useradd/groupadd for the users postinst (not in Debian's essential set)
    if fmt.bootable:
        packages.update(BOOT_PACKAGES)
        packages.add(kernel_package(image.kernel.package, image.release))
        if image.slim:
            packages.add(SLIM_PACKAGE)
    return sorted(packages)


def bare_name(request: str) -> str:
    """`linux-image-cloud-amd64/bookworm-backports` -> `linux-image-cloud-amd64` (also `=version`, `:arch`)."""
    for sep in ("/", "=", ":"):
        request = request.split(sep, 1)[0]
    return request


def kernel_command_line(image: Image) -> tuple[str, ...]:
    """console= first, then the fixed boot words, then the image's additions; duplicates dropped."""
    kernel = image.kernel.snapshot()
    words = list(kernel.command_line()[:1] if kernel.console else ())
    words += [w for w in (*BOOT_CMDLINE, *kernel.cmdline) if w not in words]
    return tuple(words)


def extra_tree(image: Image) -> dict[str, bytes]:
    """Files, templates, unit files and the preset file under `mkosi.extra/`."""
    out = {f"{EXTRA}{entry.dest}": entry.content for entry in image.files}
    for svc in image.services:
        out[f"{EXTRA}{UNIT_DIR}/{svc.unit_file}"] = unit_text(svc).encode()
    out.update({f"{EXTRA}{path}": data for path, data in secrets_tree(image).items()})
    if image.services or image.secrets:
        # A preset keeps mkosi's `systemctl preset-all` from undoing the enablement done in postinst.
        lines = [f"{'enable' if s.enable else 'disable'} {s.unit_file}" for s in image.services]
        lines += [f"enable {READY_TARGET}"] if image.secrets else []
        out[f"{EXTRA}/{PRESET}"] = ("# Generated by tdx.\n" + "\n".join(lines) + "\n").encode()
    return out


def _script(what: str, body: list[str], *, prepare: bool = False) -> bytes:
    head = ["#!/bin/sh", f"# Generated by tdx: {what}", "set -eu"]
    if prepare:
        # mkosi calls prepare scripts with "final", and again with "build" for the build overlay.
        head.append('[ "${1:-final}" = final ] || exit 0')
    return ("\n".join(head + body) + "\n").encode()


def postinst_scripts(image: Image, source_date_epoch: int) -> dict[str, bytes]:
    """10-users, 20-files (modes and owners), 30-services (enablement), in that order, when needed."""
    q = shlex.quote
    out: dict[str, bytes] = {}
    if image.users:
        needed = sorted({g for u in image.users for g in u.groups} - {u.name for u in image.users})
        body = [f'export SOURCE_DATE_EPOCH="${{SOURCE_DATE_EPOCH:-{source_date_epoch}}}"']
        body += group_lines(needed)
        for user in image.users:
            body += create_lines(user)
        out["mkosi.postinst.d/10-users.chroot"] = _script("users", body)
    if image.files:
        body = []
        for entry in image.files:
            if (entry.owner, entry.group) != ("root", "root"):
                body.append(f"chown {q(entry.owner)}:{q(entry.group)} {q(entry.dest)}")
            body.append(f"chmod {entry.mode:04o} {q(entry.dest)}")
        out["mkosi.postinst.d/20-files.chroot"] = _script("file modes and owners", body)
    enabled = [s.unit_file for s in image.services if s.enable and s.wanted_by]
    enabled += [READY_TARGET] if image.secrets else []  # starts the agent at boot, needed or not
    if enabled:
        out["mkosi.postinst.d/30-services.chroot"] = _script(
            "service enablement", [f"systemctl enable {' '.join(q(u) for u in enabled)}"])
    return out


def hook_scripts(image: Image, *, store_view: bool = False) -> dict[str, bytes]:
    """One `.chroot` script per hook, numbered in declaration order within its phase (from 50).

    With `store_view`, each script first links /tdx/store to the store that mkosi mounts for scripts
    and removes the link when it exits, so the image never keeps it.
    """
    out: dict[str, bytes] = {}
    counts: dict[Phase, int] = {}
    for hook in image.hooks:
        index = counts[hook.phase] = counts.get(hook.phase, 0) + 1
        name = f"mkosi.{hook.phase.value}.d/50-{hook.phase.value}-{index:03d}.chroot"
        body = [*(_STORE_LINK if store_view else ()), hook.command.rstrip("\n")]
        out[name] = _script(_hook_label(hook, image), body, prepare=hook.phase is Phase.PREPARE)
    return out


_STORE_LINK = (
    f"if [ ! -e {STORE_DIR} ]; then",
    f"    mkdir -p {STORE_DIR.rsplit('/', 1)[0]} && ln -s {STORE_SOURCES} {STORE_DIR}",
    f"    trap 'rm -f {STORE_DIR}; rmdir {STORE_DIR.rsplit('/', 1)[0]} 2>/dev/null || :' EXIT",
    "fi",
)


def _hook_label(hook: Hook, image: Image) -> str:
    return f"{hook.phase.value} hook from {hook.site.relative_to(image.directory)}"


def mkosi_format(fmt: ImageFormat) -> ImageFormat:
    if fmt is ImageFormat.DISK:
        raise ImageError("the 'disk' format is not supported yet",
                         hint="build format 'uki' (the whole OS in one UKI), 'tar' or 'directory'",
                         code="unsupported-format")
    # A directory image is built as a tar in the store (setuid bits and ownership survive, which a
    # normalised store tree would drop) and unpacked at the output location.
    return ImageFormat.TAR if fmt is ImageFormat.DIRECTORY else fmt


def render_config(image: Image, fmt: ImageFormat, mirrors: AptMirrors, *,
                  store_view: bool = False, locked: bool = False) -> dict[str, bytes]:
    """The mkosi configuration directory of `image` with the pinned base settings (pure).

    `locked`: the image's packages are a locked set installed from its local repository; the
    configuration then names no mirror (`mirrors` is not read) and no apt sources.
    """
    base = base_config(fmt=mkosi_format(fmt), mirrors=mirrors, release=image.release,
                       kernel_cmdline=kernel_command_line(image), slim=image.slim, locked=locked)
    # The tools tree is a store path of its own (`tools_derivation`), named at build time.
    settings = {sec: [(k, v) for k, v in entries
                      if k not in ("Packages", "KernelCommandLine") and not k.startswith("ToolsTree")]
                for sec, entries in base.settings.items()}
    files = render(image, format=mkosi_format(fmt), settings=settings, store_view=store_view, locked=locked)
    base_files = {k: v for k, v in base.files.items() if not k.startswith(TOOLS_SANDBOX_DIR + "/")}
    return dict(sorted({**files, **base_files}.items()))


def tools_config(mirrors: AptMirrors, *, locked: bool = False) -> dict[str, bytes]:
    """The configuration that builds only mkosi's default tools tree (trixie: ukify, repart, …).

    It names no mirror. `locked`: the tools tree's packages are a locked set (`[debian.tools]`),
    installed from its repository (a per-run `LocalMirror=` drop-in), offline. Otherwise the URL it
    is downloaded from is written by the mkosi builtin for the run only
    (`tdxstore.mkosi.build.Run.tools_mirrors`), as a fetch's URL is, so hosts that differ only in
    their mirror share one tools derivation.
    """
    if locked:
        return {"mkosi.conf": conf_text(locked_tools_settings()).encode()}
    base = base_config(fmt=ImageFormat.UKI, mirrors=mirrors, locked=True)
    build = [(k, v) for k, v in base.settings["Build"] if k != "ToolsTreeMirror"]
    settings = {"Distribution": base.settings["Distribution"], "Output": [("Format", "none")], "Build": build}
    return {"mkosi.conf": conf_text(settings).encode()}
