"""The pinned Debian packages an image build uses, as derivations (L4): mkosi, systemd-stub, firmware.

Each is a fixed-output fetch of one .deb by SHA-256 from the declared mirror, unpacked by
`builtin:unpack-deb`; the output paths depend on the pins only, never on the mirror's URL. Nothing
here reads a file from the host: the host's mkosi, stub or ovmf may differ from the pins.
"""

from __future__ import annotations

from pathlib import Path

from tdxstore.debian.mirror import declared_mirrors
from tdxstore.debian.pins import (
    FIRMWARE_DIR,
    FIRMWARE_FILE,
    MKOSI_DEB,
    MKOSI_PYTHON_DIR,
    MKOSI_VERSION,
    OVMF_DEB,
    OVMF_VERSION,
    STUB_DEB,
    STUB_DIR,
    STUB_VERSION,
    PinnedDeb,
)
from tdxstore.errors import ImageError
from tdxstore.store.builtins import fetchurl_derivation, unpack_derivation
from tdxstore.store.derivation import Derivation
from tdxstore.store.path import StorePath
from tdxstore.store.realise import Options, realise
from tdxstore.store.store import Store

__all__ = ["FIRMWARE_FILE", "firmware_derivation", "firmware_file", "mkosi_derivation", "mkosi_python_dir",
           "realise_firmware", "stub_derivation"]


def _unpacked(name: str, pin: PinnedDeb, mirror: str, prefixes: list[str]) -> Derivation:
    return unpack_derivation(name, fetchurl_derivation(pin.url(mirror), pin.sha256, pin.store_name), prefixes)


def mkosi_derivation(mirror: str, pin: PinnedDeb = MKOSI_DEB) -> Derivation:
    """mkosi 25.3's Python tree (`usr/lib/python3/dist-packages`) out of its Debian package."""
    return _unpacked(f"mkosi-{MKOSI_VERSION if pin == MKOSI_DEB else pin.upstream}", pin, mirror, [MKOSI_PYTHON_DIR])


def mkosi_python_dir(store: Store, mkosi: StorePath) -> Path:
    """The directory to put on PYTHONPATH to run `python3 -m mkosi` from a realised mkosi path."""
    return store.real_path(mkosi) / MKOSI_PYTHON_DIR


def stub_derivation(mirror: str, pin: PinnedDeb = STUB_DEB) -> Derivation:
    """The pinned systemd-stub (laid over a bootable image's own)."""
    return _unpacked(f"systemd-stub-{STUB_VERSION if pin == STUB_DEB else pin.upstream}", pin, mirror, [STUB_DIR])


def firmware_derivation(mirror: str | None = None, pin: PinnedDeb = OVMF_DEB) -> Derivation:
    """The store derivation of the pinned firmware tree (`usr/share/ovmf/...` of the .deb).

    `mirror` defaults to the declared one (`$TDX_DEBIAN_MIRROR` or Debian's); the output path is the same.
    """
    version = OVMF_VERSION if pin == OVMF_DEB else pin.version
    return _unpacked(f"ovmf-{version.replace('~', '_')}", pin, mirror or declared_mirrors().debian, [FIRMWARE_DIR])


def firmware_file(store: Store, path: StorePath) -> Path:
    """The `OVMF.fd` inside a realised firmware store path (ImageError if it is not one)."""
    f = store.real_path(path) / FIRMWARE_FILE
    if not f.is_file():
        raise ImageError(f"{path.logical} holds no {FIRMWARE_FILE}", hint="pass the firmware store path "
                         "printed by `tdx measure` (the pinned Debian ovmf)", code="firmware-missing")
    return f


def realise_firmware(store: Store, mirror: str | None = None,
                     options: Options | None = None) -> tuple[StorePath, Path]:
    """Make the pinned firmware valid (fetch and unpack on first use); (store path, its OVMF.fd)."""
    drv = firmware_derivation(mirror)
    if not store.is_valid(drv.out):
        realise(store, [drv], options or Options())
    return drv.out, firmware_file(store, drv.out)
