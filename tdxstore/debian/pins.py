"""The Debian packages tdx pins (L1, data): each a pool file and its SHA-256, fetched from the mirror.

A pin names no mirror: `url(mirror)` joins the declared mirror (`tdxstore.debian.mirror`) and the
pool path. The fetched file's store path depends only on the SHA-256 and the file name, so moving
to another mirror changes no output path. `DEFAULT_PINS` seeds a new `tdx.lock` (`[debian.pinned]`);
a build with a lock uses the lock's pins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tdxstore.errors import ImageError

_SHA256 = re.compile(r"[0-9a-f]{64}")
_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9+\-._?=]")


@dataclass(frozen=True, slots=True)
class PinnedDeb:
    """One .deb of the Debian archive: `pool/<component>/<prefix>/<source>/` + file, and its SHA-256."""

    pool: str
    file: str
    sha256: str

    def __post_init__(self) -> None:
        if not self.pool.startswith("pool/") or self.pool.endswith("/") or not self.file.endswith(".deb"):
            raise ImageError(f"bad pinned package {self.pool}/{self.file}", code="bad-pin")
        if not _SHA256.fullmatch(self.sha256):
            raise ImageError(f"bad SHA-256 {self.sha256!r} for {self.file}", code="bad-pin")

    def url(self, mirror: str) -> str:
        return f"{mirror.rstrip('/')}/{self.pool}/{self.file}"

    @property
    def version(self) -> str:
        """The Debian version in the file name (`mkosi_25.3-7_all.deb` -> `25.3-7`)."""
        return self.file.split("_")[1] if self.file.count("_") == 2 else self.file.removesuffix(".deb")

    @property
    def upstream(self) -> str:
        """The version without epoch and Debian revision (`257.13-1~deb13u1` -> `257.13`)."""
        return self.version.split(":")[-1].rsplit("-", 1)[0]

    @property
    def store_name(self) -> str:
        """The file name with the characters store names do not allow (`~`, `:`) as `_`."""
        return _NOT_IN_NAMES.sub("_", self.file)


# mkosi 25.3 (Debian trixie/main, observed 2026-11-25): a different mkosi gives a different image.
MKOSI_VERSION = "25.3"
MKOSI_DEB = PinnedDeb("pool/main/m/mkosi", "mkosi_25.3-7_all.deb",
                      "ef56c81324fd47d65490e944ec4697bb3f6fb21326d0d071bfc2fb5ba5383252")
MKOSI_PYTHON_DIR = "usr/lib/python3/dist-packages"  # what `python3 -m mkosi` needs on PYTHONPATH

# systemd-stub >= 256 measures the UKI into RTMR2; bookworm ships 252 (TPM only). The stub is pinned
# with the image: trixie's systemd-boot-efi, laid over the image's own.
STUB_VERSION = "257.13"
STUB_DEB = PinnedDeb("pool/main/s/systemd", "systemd-boot-efi_257.13-1~deb13u1_amd64.deb",
                     "390ecdcef9bbb753f51bb6d8f696bdae2f1dbedde7239c49ccb2512f137a8933")
STUB_DIR = "usr/lib/systemd/boot/efi"

# The TD firmware: trixie's ovmf (edk2 2025.02); its unified OVMF.fd carries the TDVF metadata.
OVMF_VERSION = "2025.02-8+deb13u1"
OVMF_DEB = PinnedDeb("pool/main/e/edk2", "ovmf_2025.02-8+deb13u1_all.deb",
                     "78e0d54df11fc77406cb7a0bc9a39e5bca6d1cbe06556b91d9a73491c52decdf")
FIRMWARE_DIR = "usr/share/ovmf"
FIRMWARE_FILE = f"{FIRMWARE_DIR}/OVMF.fd"
FIRMWARE_LABEL = f"ovmf {OVMF_VERSION} (Debian trixie)"


@dataclass(frozen=True, slots=True)
class Pins:
    """The pinned tools of an image build, by their Debian package names."""

    mkosi: PinnedDeb
    stub: PinnedDeb  # systemd-boot-efi
    ovmf: PinnedDeb

    def by_package(self) -> dict[str, PinnedDeb]:
        return {"mkosi": self.mkosi, "systemd-boot-efi": self.stub, "ovmf": self.ovmf}


DEFAULT_PINS = Pins(MKOSI_DEB, STUB_DEB, OVMF_DEB)
PINNED_PACKAGES = tuple(DEFAULT_PINS.by_package())
