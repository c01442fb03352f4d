"""Pinned Debian packages the measurement tests need (firmware, kernel, systemd-stub, ukify, systemd-measure).

Downloaded once with apt's own client through a private configuration (suites trixie + bookworm-backports on
the host's mirror), verified against the sha256 recorded here, extracted and cached under /var/tmp. Also
builds the test UKI (ukify) and a GPT disk with an ESP holding it as EFI/BOOT/BOOTX64.EFI (sfdisk + mtools).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get("TDX_MEASURE_ASSETS", "/var/tmp/tdx-measure-assets"))
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
UNIT_CMDLINE = "console=ttyS0 quiet"

# package -> (version, sha256 of the .deb)
PACKAGES = {
    "ovmf": ("2025.02-8+deb13u1", "78e0d54df11fc77406cb7a0bc9a39e5bca6d1cbe06556b91d9a73491c52decdf"),
    "systemd-boot-efi": (
        "257.13-1~deb13u1",
        "390ecdcef9bbb753f51bb6d8f696bdae2f1dbedde7239c49ccb2512f137a8933",
    ),
    "systemd-ukify": ("257.13-1~deb13u1", "78e1f7921f39d07512d848244b8b3e320e93e77d0b5778c211809e9f3b8b8284"),
    "systemd": ("254.26-1~bpo12+1", "f55abada0c5c0409f7323e3deecb5d837ecfae75a31524133ac41302d41eff54"),
    "libsystemd-shared": (
        "254.26-1~bpo12+1",
        "4b1ab8da02aea748cf3fbd75ec6a2734d92ae4e1f287afb33e2025f971a3058a",
    ),
    "linux-image-6.12.117+deb13-cloud-amd64": (
        "6.12.117-1",
        "e9893e5295d0549b8852611f12a4b8b5f6cc4b8128dcc2086b9847793b904ab7",
    ),
}
BOOKWORM_OVMF_SHA256 = "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773"
TRIXIE_OVMF_SHA256 = "14954040cc754ade0c625ac3470ea46d4c14318b5b1396de4ef77090203d76db"


def _apt_options() -> list[str]:
    root = CACHE / "apt"
    (root / "state/lists/partial").mkdir(parents=True, exist_ok=True)
    (root / "cache/archives/partial").mkdir(parents=True, exist_ok=True)
    sources = root / "sources.list"
    if not sources.exists():
        sources.write_text(
            "".join(
                f"deb [signed-by={KEYRING}] {MIRROR} {suite} main\n"
                for suite in ("trixie", "bookworm-backports")
            )
        )
    return [
        "-o",
        f"Dir::Etc::SourceList={sources}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::State={root}/state",
        "-o",
        f"Dir::Cache={root}/cache",
        "-o",
        "Dir::State::status=/var/lib/dpkg/status",
    ]


def package(name: str) -> Path:
    """The extracted tree of a pinned package (downloaded and verified on first use)."""
    version, sha = PACKAGES[name]
    tree = CACHE / "x" / f"{name}_{version}"
    if tree.is_dir():
        return tree
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = [p for p in debs.glob(f"{name}_*.deb") if hashlib.sha256(p.read_bytes()).hexdigest() == sha]
    if not found:
        opts = _apt_options()
        if not any((CACHE / "apt/state/lists").glob("*Packages*")):
            subprocess.run(["apt-get", *opts, "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", *opts, "download", f"{name}={version}"], cwd=debs, check=True, capture_output=True
        )
        found = [p for p in debs.glob(f"{name}_*.deb") if hashlib.sha256(p.read_bytes()).hexdigest() == sha]
        assert found, f"downloaded {name} {version} does not have sha256 {sha}"
    tmp = tree.with_name(tree.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-x", str(found[0]), str(tmp)], check=True)
    tmp.rename(tree)
    return tree


def trixie_ovmf() -> Path:
    p = package("ovmf") / "usr/share/ovmf/OVMF.fd"
    assert hashlib.sha256(p.read_bytes()).hexdigest() == TRIXIE_OVMF_SHA256
    return p


def kernel() -> Path:
    return next((package("linux-image-6.12.117+deb13-cloud-amd64") / "boot").glob("vmlinuz-*"))


def stub() -> Path:
    return package("systemd-boot-efi") / "usr/lib/systemd/boot/efi/linuxx64.efi.stub"


def systemd_measure() -> tuple[list[str], dict[str, str]]:
    """argv prefix and environment to run bookworm-backports' systemd-measure 254 from the extracted .deb."""
    libdir = package("libsystemd-shared") / "usr/lib/x86_64-linux-gnu/systemd"
    return [str(package("systemd") / "lib/systemd/systemd-measure")], {"LD_LIBRARY_PATH": str(libdir)}


def build_uki(
    out: Path,
    initrd: bytes,
    cmdline: str,
    osrel: str = "ID=tdxtest\nVERSION_ID=1\n",
    stub_path: Path | None = None,
) -> Path:
    """A UKI built by trixie's ukify from the pinned kernel and stub."""
    work = out.parent
    (work / "initrd.img").write_bytes(initrd)
    ukify = package("systemd-ukify") / "usr/bin/ukify"
    # ukify is a Python script needing pefile: run it with this interpreter (the venv, where scripts/setup
    # installs pefile), never with whatever `python3` comes first on PATH.
    subprocess.run(
        [
            sys.executable,  # ukify needs pefile, installed in this interpreter by scripts/setup
            str(ukify),
            "build",
            "--linux",
            str(kernel()),
            "--initrd",
            str(work / "initrd.img"),
            "--cmdline",
            cmdline,
            "--os-release",
            osrel,
            "--stub",
            str(stub_path or stub()),
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


def build_disk(out: Path, uki: Path, size_mib: int = 64) -> Path:
    """A GPT disk image with one FAT ESP (1 MiB offset) holding `uki` as EFI/BOOT/BOOTX64.EFI."""
    esp = out.with_suffix(".esp")
    esp_mib = size_mib - 2
    with open(esp, "wb") as f:
        f.truncate(esp_mib << 20)
    subprocess.run(
        ["mkfs.vfat", "-F", "32", "-i", "12345678", "-n", "ESP", str(esp)], check=True, capture_output=True
    )
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    subprocess.run(["mmd", "-i", str(esp), "::EFI", "::EFI/BOOT"], check=True, env=env)
    subprocess.run(["mcopy", "-i", str(esp), str(uki), "::EFI/BOOT/BOOTX64.EFI"], check=True, env=env)
    with open(out, "wb") as f:
        f.truncate(size_mib << 20)
    table = (
        "label: gpt\nlabel-id: 0B4E1F2A-7C55-4D2E-9A51-1E6A63F0C0DE\n"
        f"start=2048, size={esp_mib * 2048}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, "
        'uuid=6A1F0C2E-3B7D-4E55-8C11-2F9E0D4A7B10, name="ESP"\n'
    )
    subprocess.run(["sfdisk", "-q", str(out)], input=table.encode(), check=True, capture_output=True)
    with open(out, "r+b") as f:
        f.seek(1 << 20)
        f.write(esp.read_bytes())
    esp.unlink()
    return out
