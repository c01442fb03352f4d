"""Render an `Image` into an mkosi 25.3 configuration directory, as {relative path: bytes}.

Pure: no I/O, no clock, no environment; the same Image always gives the same bytes, with every list
in a fixed order (packages and files sorted, hooks in declaration order). Writing the files (scripts
executable, see `is_executable`) and running mkosi are other steps. Base settings live in
`base_settings()` only, so they can be aligned with the mkosi runner in one place.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

from tdxstore.image.hooks import Hook, Phase
from tdxstore.image.image import UNIT_DIR, Image, OutputFormat
from tdxstore.image.kernel import kernel_package
from tdxstore.image.mkosi_config import DEFAULT_SEED, SLIM_PACKAGE
from tdxstore.image.service import unit_text
from tdxstore.image.user import create_lines, group_lines

Settings = dict[str, list[tuple[str, str]]]

BOOT_PACKAGES = ("systemd", "udev", "systemd-boot-efi")
# Each UKI boot is a first boot; systemd-firstboot would wait for a key on the console.
BOOT_CMDLINE = ("systemd.firstboot=off",)
NON_REPRODUCIBLE_FILES = ("/var/log/alternatives.log", "/var/cache/ldconfig/aux-cache")
SECTION_ORDER = ("Distribution", "Output", "Content", "Build")
EXTRA = "mkosi.extra"
PRESET = "usr/lib/systemd/system-preset/10-tdx.preset"
SCRIPT_DIRS = tuple(f"mkosi.{p.value}.d/" for p in Phase)


def base_settings(image: Image, fmt: OutputFormat, *, source_date_epoch: int, seed: str) -> Settings:
    """Settings every image gets, before the image's own content (keep in line with the mkosi runner)."""
    content = [("WithDocs", "no"), ("SourceDateEpoch", str(source_date_epoch))]
    content += [("RemoveFiles", f) for f in NON_REPRODUCIBLE_FILES]
    if fmt.bootable:
        content.append(("Bootable", "yes"))
    return {
        "Distribution": [("Distribution", image.distribution), ("Release", image.release)],
        "Output": [("Format", fmt.value), ("ImageId", image.name), ("Seed", seed)],
        "Content": content,
    }


def render(image: Image, *, format: OutputFormat | str | None = None, source_date_epoch: int = 0,
           seed: str = DEFAULT_SEED, extra_trees: Sequence[str] = (), settings: Settings | None = None
           ) -> dict[str, bytes]:
    """The configuration directory of `image` as {relative path: bytes}, sorted by path.

    `settings` replaces `base_settings()` (e.g. the mkosi runner's base configuration); the image's
    packages, kernel command line and `extra_trees` (host paths, in the given order) are added to it.
    """
    fmt = OutputFormat(format) if format is not None else image.format
    conf = settings if settings is not None else base_settings(
        image, fmt, source_date_epoch=source_date_epoch, seed=seed)
    conf = {section: list(entries) for section, entries in conf.items()}
    content = conf.setdefault("Content", [])
    content += [("Packages", p) for p in image_packages(image, fmt)]
    if fmt.bootable:
        content.append(("KernelCommandLine", " ".join(kernel_command_line(image))))
    content += [("ExtraTrees", tree) for tree in extra_trees]
    out: dict[str, bytes] = {"mkosi.conf": conf_text(conf).encode()}
    out.update(extra_tree(image))
    out.update(postinst_scripts(image, source_date_epoch))
    out.update(hook_scripts(image))
    return dict(sorted(out.items()))


def image_packages(image: Image, fmt: OutputFormat) -> list[str]:
    """The image's packages plus what its declarations need (systemd for services, a kernel to boot)."""
    packages = set(image.packages)
    if image.services:
        packages.add("systemd")
    if image.users:
        packages.add("passwd")  # useradd/groupadd for the users postinst (not in Debian's essential set)
    if fmt.bootable:
        packages.update(BOOT_PACKAGES)
        packages.add(kernel_package(image.kernel.package, image.release))
        if image.slim:
            packages.add(SLIM_PACKAGE)
    return sorted(packages)


def kernel_command_line(image: Image) -> tuple[str, ...]:
    """console= first, then the fixed boot words, then the image's additions; duplicates dropped."""
    kernel = image.kernel.snapshot()
    words = list(kernel.command_line()[:1] if kernel.console else ())
    words += [w for w in (*BOOT_CMDLINE, *kernel.cmdline) if w not in words]
    return tuple(words)


def conf_text(settings: Mapping[str, list[tuple[str, str]]]) -> str:
    """INI text in mkosi's format; a key given several times becomes one key with continuation lines."""
    order = [s for s in SECTION_ORDER if s in settings]
    order += sorted(s for s in settings if s not in SECTION_ORDER)
    blocks = []
    for section in order:
        lines = [f"[{section}]"]
        grouped: dict[str, list[str]] = {}
        for key, value in settings[section]:
            grouped.setdefault(key, []).append(value)
        for key, values in grouped.items():
            if len(values) == 1:
                lines.append(f"{key}={values[0]}")
            else:
                lines.append(f"{key}=")
                lines.extend(f"        {v}" for v in values)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def extra_tree(image: Image) -> dict[str, bytes]:
    """Files, templates, unit files and the preset file under `mkosi.extra/`."""
    out = {f"{EXTRA}{entry.dest}": entry.content for entry in image.files}
    for svc in image.services:
        out[f"{EXTRA}{UNIT_DIR}/{svc.unit_file}"] = unit_text(svc).encode()
    if image.services:
        # A preset keeps mkosi's `systemctl preset-all` from undoing the enablement done in postinst.
        lines = [f"{'enable' if s.enable else 'disable'} {s.unit_file}" for s in image.services]
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
    if enabled:
        out["mkosi.postinst.d/30-services.chroot"] = _script(
            "service enablement", [f"systemctl enable {' '.join(q(u) for u in enabled)}"])
    return out


def hook_scripts(image: Image) -> dict[str, bytes]:
    """One `.chroot` script per hook, numbered in declaration order within its phase (from 50)."""
    out: dict[str, bytes] = {}
    counts: dict[Phase, int] = {}
    for hook in image.hooks:
        index = counts[hook.phase] = counts.get(hook.phase, 0) + 1
        name = f"mkosi.{hook.phase.value}.d/50-{hook.phase.value}-{index:03d}.chroot"
        out[name] = _script(_hook_label(hook, image), [hook.command.rstrip("\n")],
                            prepare=hook.phase is Phase.PREPARE)
    return out


def _hook_label(hook: Hook, image: Image) -> str:
    return f"{hook.phase.value} hook from {hook.site.relative_to(image.directory)}"


def is_executable(relative_path: str) -> bool:
    """True for files that must be written executable (mkosi runs the scripts directly)."""
    return relative_path.startswith(SCRIPT_DIRS)
