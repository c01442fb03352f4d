"""The one mkosi 25.3 configuration of tdx: base settings, the output formats, the INI writer (L2).

`base_config()` is pure: settings (section -> [(key, value)]) plus extra files (the apt sources of
the sandbox and tools-tree sandbox trees). `conf_text()` is the only INI writer and `write_config()`
the only place a configuration directory is written (scripts executable). The mirror is an
argument (`tdxstore.debian.mirror.declared_mirrors`), never read here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from tdxstore.debian.mirror import AptMirrors
from tdxstore.errors import ImageError

DEFAULT_SEED = "7d8e4d1a-2b53-4c5e-9a61-3f0c2e6b7a10"  # any fixed UUID; it seeds partition/FS UUIDs
DEFAULT_RELEASE = "bookworm"
TOOLS_RELEASE = "trixie"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SANDBOX_DIR = "mkosi.sandbox"
TOOLS_SANDBOX_DIR = "mkosi.tools.sandbox"
LOCKED_TOOLS_OUTPUT = "mkosi.tools"  # the Output= of mkosi 25.3's builtin mkosi-tools configuration
SOURCES_FILE = "etc/apt/sources.list.d/mkosi.sources"  # mkosi 25.3 keeps this exact file if present
UKI_PACKAGES = ("systemd", "udev", "systemd-boot-efi", "linux-image-cloud-amd64")
UKI_CMDLINE = ("console=ttyS0", "systemd.firstboot=off", "panic=-1")
# Measured to differ between two otherwise identical builds (FINDINGS.md), or logs/caches of the build.
NON_REPRODUCIBLE_FILES = (
    "/var/log/alternatives.log",
    "/var/log/dpkg.log",
    "/var/log/apt",
    "/var/cache/ldconfig/aux-cache",
    "/var/cache/debconf/*-old",
    "/etc/passwd-",
    "/etc/group-",
    "/etc/shadow-",
    "/etc/gshadow-",
)

# Slim bootable images (the default; `Image(..., slim=False)` keeps everything). The whole OS of a UKI is
# its initrd, unpacked into guest memory at every boot: what no TD guest reads costs size, RAM and boot time.
# mkosi installs Debian's essential set first, and apt satisfies init-system-helpers' "usrmerge | usr-is-merged"
# with usrmerge, which pulls in perl (~50 MB in the initrd): usr-is-merged is installed, then those purged.
SLIM_PACKAGE = "usr-is-merged"
SLIM_REMOVE_PACKAGES = ("usrmerge", "perl", "perl-modules-5.36", "libperl5.36")
SLIM_REMOVE_FILES = (
    "/boot/*",                 # second and third copies of the kernel: the UKI carries it in .linux
    "/usr/lib/modules/*/vmlinuz",
    "/usr/share/doc/*",        # WithDocs=no still keeps every copyright file
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",     # message translations; the C.UTF-8 locale (/usr/lib/locale) stays
    "/usr/share/lintian/*",
    "/usr/lib/udev/hwdb.bin",  # the hardware database names physical devices; a TD has only virtio ones
    "/usr/lib/udev/hwdb.d/*",
)
# Kernel modules for hardware and hosts a TD guest cannot have: physical NICs, GPUs, sound, USB, InfiniBand,
# nested KVM. mkosi's KernelModulesExclude= regexes match paths below /usr/lib/modules/<kver>/kernel/ and keep
# the dependencies of what stays. Kept: virtio, vsock, the TDX guest driver, file systems, netfilter, bridges.
SLIM_KERNEL_MODULES_EXCLUDE = (
    "^arch/x86/kvm/",
    "^sound/",
    "^drivers/(net/(ethernet|wireless|wwan|usb|can)|infiniband|comedi|gpu|media|usb|input|hid|"
    "thermal|isdn|bluetooth|staging|iio|mmc|ata|target|nvme/target|md/dm-vdo|block/drbd)/",
    "^net/(bluetooth|wireless|mac80211|tipc|sctp|smc|rds|can)/",
)

# What mkosi 25.3's builtin `mkosi-tools` configuration installs for Debian trixie on x86-64 (its
# resources/mkosi-tools/mkosi.conf and the Debian matches of its mkosi.conf.d/), in apt's spelling:
# the request `tdx lock` resolves for the tools tree. apt installs `?exact-name(x)` only where x exists.
TOOLS_PACKAGES = (
    "acl", "attr", "bash", "ca-certificates", "coreutils", "cpio", "curl", "diffutils", "dosfstools",
    "e2fsprogs", "findutils", "grep", "jq", "keyutils", "kmod", "less", "mtools", "nano", "opensc", "openssl",
    "sed", "socat", "strace", "swtpm", "systemd", "tar", "util-linux", "xfsprogs", "zstd",
    "?exact-name(distribution-gpg-keys)", "?exact-name(grub-pc-bin)", "?exact-name(kali-archive-keyring)",
    "?exact-name(virtiofsd)", "apt", "archlinux-keyring", "btrfs-progs", "createrepo-c",
    "debian-archive-keyring", "dnf", "erofs-utils", "git-core", "grub-common", "libarchive-tools",
    "libcryptsetup12", "libseccomp2", "libtss2-dev", "libnss-resolve", "libnss-myhostname", "makepkg",
    "openssh-client", "ovmf", "pacman-package-manager", "policycoreutils", "python3-cryptography",
    "python3-pefile", "qemu-efi-aarch64", "qemu-system", "reprepro", "sbsigntool", "squashfs-tools",
    "swtpm-tools", "systemd-container", "systemd-coredump", "systemd-journal-remote", "uidmap", "xz-utils",
    "zypper", "linux-perf", "pkcs11-provider", "python3-virt-firmware", "systemd-boot", "systemd-repart",
    "systemd-ukify", "ubuntu-keyring",
)

SECTION_ORDER = ("Distribution", "Output", "Content", "Build")
# mkosi runs every file of these directories as a script, so they are written executable.
SCRIPT_DIRS = ("mkosi.prepare.d/", "mkosi.build.d/", "mkosi.postinst.d/", "mkosi.finalize.d/")

Settings = dict[str, list[tuple[str, str]]]


class ImageFormat(StrEnum):
    """The output formats an image can be built as (the value is mkosi's `Format=`)."""

    TAR = "tar"
    DIRECTORY = "directory"
    UKI = "uki"
    DISK = "disk"

    @property
    def bootable(self) -> bool:
        return self in (ImageFormat.UKI, ImageFormat.DISK)


@dataclass(frozen=True, slots=True)
class MkosiConfig:
    """mkosi settings in section order, and extra files (relative path -> bytes) of the config dir."""

    settings: dict[str, list[tuple[str, str]]]
    files: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rel in self.files:
            if rel.startswith("/") or ".." in Path(rel).parts or rel == "mkosi.conf":
                raise ImageError(f"bad mkosi config file name {rel!r}", code="bad-mkosi-config")
        for section, items in self.settings.items():
            for key, value in items:
                if "\n" in value or "=" in key or not key:
                    raise ImageError(f"bad mkosi setting [{section}] {key}={value!r}",
                                     code="bad-mkosi-config")

    def conf_text(self) -> str:
        return conf_text(self.settings)

    def rendered(self) -> dict[str, bytes]:
        """Every file of the config dir, mkosi.conf included, sorted by path."""
        out = {"mkosi.conf": self.conf_text().encode(), **self.files}
        return dict(sorted(out.items()))


def conf_text(settings: Mapping[str, Sequence[tuple[str, str]]]) -> str:
    """INI text in mkosi's format: known sections first in a fixed order, keys in first-seen order;
    a key given several times becomes one key with continuation lines."""
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


def is_executable(relative_path: str) -> bool:
    """True for files that must be written executable (mkosi runs the scripts directly)."""
    return relative_path.startswith(SCRIPT_DIRS)


def apt_sources(mirrors: AptMirrors, release: str, *, updates: bool = True, security: bool = True,
                backports: bool = False) -> str:
    """A deb822 sources file with only the wanted suites (no debug archive, unlike mkosi's default).

    With `backports`, `<release>-backports` is listed too: apt pins it low, so nothing comes from it
    unless a package is asked for as `name/<release>-backports` (a TDX-capable kernel for bookworm).
    """
    suites = [release] + ([f"{release}-updates"] if updates else []) + ([f"{release}-backports"] if backports else [])
    stanzas = [_stanza(mirrors.debian, suites)]
    if security and mirrors.security:
        stanzas.append(_stanza(mirrors.security, [f"{release}-security"]))
    return "\n".join(stanzas)


def _stanza(uri: str, suites: list[str]) -> str:
    return (f"Types: deb\nURIs: {uri}\nSuites: {' '.join(suites)}\nComponents: main\n"
            f"Signed-By: {KEYRING}\n")


def base_config(
    *,
    fmt: ImageFormat,
    mirrors: AptMirrors,
    release: str = DEFAULT_RELEASE,
    packages: tuple[str, ...] = (),
    tools_tree: str | None = "default",
    seed: str = DEFAULT_SEED,
    source_date_epoch: int = 0,
    kernel_cmdline: tuple[str, ...] = UKI_CMDLINE,
    output: str = "image",
    slim: bool = True,
    locked: bool = False,
) -> MkosiConfig:
    """The base configuration of a reproducible Debian image.

    `tools_tree`: "default" builds mkosi's tools tree from trixie (needed for `uki`: systemd-ukify,
    bootctl and repart newer than bookworm's), a path uses a prebuilt one, None uses the host's tools.
    `slim` (uki only): no docs, man pages, translations, hwdb, kernel copies or modules for absent hardware.
    `locked`: the packages come from a local repository of a locked set (`LocalMirror=`, a per-run
    drop-in): no mirror and no apt sources are written, so no URL of the host's choice reaches the image.
    """
    fmt = ImageFormat(fmt)
    if fmt is ImageFormat.UKI and tools_tree is None:
        raise ImageError("a uki image needs a tools tree (ukify is not in Debian 12)",
                         hint='pass tools_tree="default" or the path of a prebuilt tools tree',
                         code="uki-needs-tools-tree")
    all_packages = tuple(dict.fromkeys((*UKI_PACKAGES, *packages) if fmt is ImageFormat.UKI else packages))
    content: list[tuple[str, str]] = [("Packages", p) for p in all_packages]
    content += [
        ("WithDocs", "no"),
        ("CleanPackageMetadata", "yes"),
        ("SourceDateEpoch", str(source_date_epoch)),
        *[("RemoveFiles", f) for f in NON_REPRODUCIBLE_FILES],
    ]
    if fmt is ImageFormat.UKI:
        content += [("Bootable", "yes"), ("KernelCommandLine", " ".join(kernel_cmdline))]
        if slim:
            content += [("RemovePackages", p) for p in SLIM_REMOVE_PACKAGES]
            content += [("RemoveFiles", f) for f in SLIM_REMOVE_FILES]
            content += [("KernelModulesExclude", r) for r in SLIM_KERNEL_MODULES_EXCLUDE]
    else:  # with a kernel installed, Bootable=auto would try to install systemd-boot into a tar
        content += [("Bootable", "no")]
    mirror = [] if locked else [("Mirror", mirrors.debian)]
    settings: dict[str, list[tuple[str, str]]] = {
        "Distribution": [("Distribution", "debian"), ("Release", release), *mirror, ("Architecture", "x86-64")],
        "Output": [("Format", fmt.value), ("Output", output), ("Seed", seed)]
        + ([("CompressOutput", "no")] if fmt is ImageFormat.TAR else []),
        "Content": content,
        "Build": [] if locked else [("SandboxTrees", SANDBOX_DIR)],
    }
    files = {} if locked else {f"{SANDBOX_DIR}/{SOURCES_FILE}": apt_sources(mirrors, release, backports=True).encode()}
    if tools_tree is not None:
        settings["Build"] += _tools_tree_settings(tools_tree, mirrors)
        if tools_tree == "default":
            files[f"{TOOLS_SANDBOX_DIR}/{SOURCES_FILE}"] = apt_sources(mirrors, TOOLS_RELEASE).encode()
    return MkosiConfig(settings, files)


def _tools_tree_settings(tools_tree: str, mirrors: AptMirrors) -> list[tuple[str, str]]:
    if tools_tree != "default":
        return [("ToolsTree", tools_tree)]
    return [
        ("ToolsTree", "default"),
        ("ToolsTreeDistribution", "debian"),
        ("ToolsTreeRelease", TOOLS_RELEASE),
        ("ToolsTreeMirror", mirrors.debian),
        ("ToolsTreeSandboxTrees", TOOLS_SANDBOX_DIR),
        # The tools tree is cached in the cache directory and reused while its settings are unchanged.
        ("Incremental", "yes"),
    ]


def locked_tools_settings(seed: str = DEFAULT_SEED) -> Settings:
    """mkosi's tools tree built as an image of its own, from a locked set (`LocalMirror=`, a drop-in).

    The builtin `mkosi-tools` configuration (what `ToolsTree=default` builds, whose packages are
    `TOOLS_PACKAGES`) included into an image of its own: a directory named `LOCKED_TOOLS_OUTPUT`
    (its own `Output=`). `ToolsTree=default` cannot be used, because mkosi 25.3 gives the default
    tools tree no local mirror. Like the default one it is built with the host's tools (no tools
    tree of its own), and with a fixed seed and epoch.
    """
    return {
        "Distribution": [("Distribution", "debian"), ("Release", TOOLS_RELEASE), ("Architecture", "x86-64")],
        "Output": [("Seed", seed)],
        "Content": [("SourceDateEpoch", "0"), *[("RemoveFiles", f) for f in NON_REPRODUCIBLE_FILES]],
        "Include": [("Include", "mkosi-tools")],
    }


def write_config(files: Mapping[str, bytes], dest: Path) -> Path:
    """Write a configuration directory ({relative path: bytes}) under `dest` (created); returns `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)  # a scratch directory (added to the store next): no fsync per file
        target.chmod(0o755 if is_executable(rel) else 0o644)
    os.chmod(dest, 0o755)
    return dest
