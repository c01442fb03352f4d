"""The pinned TD firmware: Debian trixie's `ovmf` package as a store path (L3).

The unified `OVMF.fd` (it carries the TDVF metadata MRTD is computed from) comes from one .deb fetched
by SHA-256 from the host's Debian mirror (a fixed-output derivation) and unpacked by
`builtin:unpack-deb`. Nothing here reads a firmware file from the host: the host's `ovmf` may differ.
"""

from __future__ import annotations

from pathlib import Path

from tdxstore.builders.fetch import default_name, fetchurl_derivation
from tdxstore.errors import ImageError
from tdxstore.image.deb import unpack_derivation
from tdxstore.image.mkosi_mirror import host_mirrors
from tdxstore.store.derivation import Derivation
from tdxstore.store.path import StorePath
from tdxstore.store.realise import Options, realise
from tdxstore.store.store import Store

#: Debian trixie's ovmf (edk2 2025.02): file in the pool, sha256 of the .deb.
OVMF_DEB = ("ovmf_2025.02-8+deb13u1_all.deb", "78e0d54df11fc77406cb7a0bc9a39e5bca6d1cbe06556b91d9a73491c52decdf")
OVMF_VERSION = "2025.02-8+deb13u1"
POOL_DIR = "pool/main/e/edk2"
FIRMWARE_DIR = "usr/share/ovmf"
#: The unified image (code + variables, TDVF metadata) inside the firmware store path.
FIRMWARE_FILE = f"{FIRMWARE_DIR}/OVMF.fd"
NAME = f"ovmf-{OVMF_VERSION.replace('~', '_')}"


def firmware_derivation() -> Derivation:
    """The store derivation of the pinned firmware tree (`usr/share/ovmf/...` of the .deb)."""
    file, sha = OVMF_DEB
    deb = fetchurl_derivation(f"{host_mirrors().debian}/{POOL_DIR}/{file}", sha, default_name(file))
    return unpack_derivation(NAME, deb, [FIRMWARE_DIR])


def firmware_label() -> str:
    """What the pinned firmware is, for manifests: `ovmf 2025.02-8+deb13u1 (Debian trixie)`."""
    return f"ovmf {OVMF_VERSION} (Debian trixie)"


def firmware_file(store: Store, path: StorePath) -> Path:
    """The `OVMF.fd` inside a realised firmware store path (ImageError if it is not one)."""
    f = store.real_path(path) / FIRMWARE_FILE
    if not f.is_file():
        raise ImageError(f"{path.logical} holds no {FIRMWARE_FILE}", hint="pass the firmware store path "
                         "printed by `tdx measure` (the pinned Debian ovmf)", code="firmware-missing")
    return f


def realise_firmware(store: Store, options: Options | None = None) -> tuple[StorePath, Path]:
    """Make the pinned firmware valid (fetch and unpack on first use); (store path, its OVMF.fd)."""
    drv = firmware_derivation()
    if not store.is_valid(drv.out):
        realise(store, [drv], options or Options())
    return drv.out, firmware_file(store, drv.out)
