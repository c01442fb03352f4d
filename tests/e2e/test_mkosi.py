"""Real mkosi 25.3 builds from a hand-written minimal config: tar contents, reproducibility, UKI boot.

Needs network access to the host's Debian mirror. Caches (unpacked mkosi, packages, tools tree) live
under /var/tmp/tdx-mkosi-cache so repeated runs are fast; the reproducibility test uses empty ones.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import time
from pathlib import Path

import pytest

from tdxstore._fs import remove_tree
from tdxstore.boot import qemu
from tdxstore.debian.mirror import declared_mirrors
from tdxstore.errors import ImageError
from tdxstore.image.pinned import mkosi_derivation, mkosi_python_dir
from tdxstore.mkosi.config import ImageFormat, base_config, write_config
from tdxstore.mkosi.run import DEFAULT_CACHE_ROOT, MKOSI_PYTHON, mkosi_env, obtain_mkosi, run_mkosi
from tdxstore.mkosi.tar import sort_tar
from tdxstore.sandbox import process
from tdxstore.store.realise import realise
from tdxstore.store.store import Store

UNIT = """\
[Unit]
Description=hello from tdx-vm-sdk

[Service]
Type=oneshot
ExecStart=/bin/echo hello-tdx: started
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
"""
POSTINST = """\
#!/bin/sh
set -e
echo "postinst ran for $DISTRIBUTION" > "$BUILDROOT/etc/tdx-postinst"
"""
WANTS = "mkosi.extra/etc/systemd/system/multi-user.target.wants/hello-tdx.service"


@pytest.fixture(scope="module")
def mkosi_dir() -> Path:
    return obtain_mkosi()


def test_pinned_mkosi_in_a_fresh_store(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "tdx")
    drv = mkosi_derivation(declared_mirrors().debian)  # fetch the pinned .deb by hash, unpack its tree
    assert [d.name for d in realise(store, [drv]).built] == ["mkosi_25.3-7_all.deb", "mkosi-25.3"]
    assert store.is_valid(drv.out)
    root = mkosi_python_dir(store, drv.out)
    done = process.run([MKOSI_PYTHON, "-m", "mkosi", "--version"], env=mkosi_env(root, tmp_path))
    assert done.stdout.decode().strip() == "mkosi 25.3"
    assert realise(store, [drv]).built == []  # valid: no second download


def hello_config(dest: Path, fmt: ImageFormat) -> Path:
    """The base config plus hand-written files: an extra file, a unit enabled by symlink, a postinst."""
    cfg = base_config(fmt=fmt, mirrors=declared_mirrors(), packages=("systemd",),
                      tools_tree="default" if fmt is ImageFormat.UKI else None)
    write_config(cfg.rendered(), dest)
    (dest / "mkosi.extra/etc").mkdir(parents=True)
    (dest / "mkosi.extra/etc/hello-tdx.txt").write_text("hello from the extra tree\n")
    (dest / "mkosi.extra/etc/systemd/system").mkdir(parents=True)
    (dest / "mkosi.extra/etc/systemd/system/hello-tdx.service").write_text(UNIT)
    (dest / WANTS).parent.mkdir(parents=True)
    (dest / WANTS).symlink_to("/etc/systemd/system/hello-tdx.service")
    (dest / "mkosi.postinst").write_text(POSTINST)
    os.chmod(dest / "mkosi.postinst", 0o755)
    return dest


def build(mkosi_dir: Path, work: Path, fmt: ImageFormat, cache: Path, phases: list[str] | None = None) -> Path:
    config = hello_config(work / "config", fmt)
    out = run_mkosi(mkosi_dir, config, work / "out", cache_dir=cache, workspace=work / "ws",
                    progress=None if phases is None else phases.append)
    remove_tree(work / "out/tools")  # mkosi's copy of the tools tree (1.5 GB); the cache keeps its own
    if fmt is ImageFormat.TAR:
        return sort_tar(out, work / "rootfs.tar")
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tar_contains_extra_unit_and_postinst(mkosi_dir: Path, tmp_path: Path) -> None:
    phases: list[str] = []
    rootfs = build(mkosi_dir, tmp_path, ImageFormat.TAR, DEFAULT_CACHE_ROOT / "test-tar", phases)
    assert "Installing Debian" in phases and any(p.startswith("Running postinstall script") for p in phases)
    with tarfile.open(rootfs) as t:
        names = t.getnames()
        assert names == sorted(names, key=lambda n: n.split("/"))
        assert t.extractfile("etc/hello-tdx.txt").read() == b"hello from the extra tree\n"  # type: ignore[union-attr]
        assert t.extractfile("etc/systemd/system/hello-tdx.service").read() == UNIT.encode()  # type: ignore[union-attr]
        wants = t.getmember(WANTS.removeprefix("mkosi.extra/"))
        assert wants.issym() and wants.linkname == "/etc/systemd/system/hello-tdx.service"
        assert t.extractfile("etc/tdx-postinst").read() == b"postinst ran for debian\n"  # type: ignore[union-attr]
        assert t.getmember("usr/lib/systemd/systemd").isreg()
        assert max(m.mtime for m in t.getmembers()) == 0  # SourceDateEpoch=0 everywhere
        assert "var/log/alternatives.log" not in names and "var/cache/ldconfig/aux-cache" not in names
    # Re-sorting a sorted archive changes nothing.
    assert sort_tar(rootfs, tmp_path / "again.tar").read_bytes() == rootfs.read_bytes()


def test_mkosi_failure_names_log(mkosi_dir: Path, tmp_path: Path) -> None:
    cfg = base_config(fmt=ImageFormat.TAR, mirrors=declared_mirrors(), tools_tree=None,
                      packages=("tdx-no-such-package-xyz",))
    config = write_config(cfg.rendered(), tmp_path / "config")
    with pytest.raises(ImageError) as e:
        run_mkosi(mkosi_dir, config, tmp_path / "out", cache_dir=DEFAULT_CACHE_ROOT / "test-tar",
                  workspace=tmp_path / "ws")  # not /var/tmp: a failed mkosi leaves its keyring dir there
    assert e.value.code == "package-not-found"
    assert e.value.message.startswith("package 'tdx-no-such-package-xyz' does not exist in the Debian archive")
    assert str(tmp_path / "out/mkosi.log") in (e.value.detail or "")
    assert "tdx-no-such-package-xyz" in (e.value.detail or "")


def test_mkosi_timeout_stops_it(mkosi_dir: Path, tmp_path: Path) -> None:
    config = write_config(base_config(fmt=ImageFormat.TAR, mirrors=declared_mirrors(), tools_tree=None).rendered(),
                          tmp_path / "config")
    started = time.monotonic()
    with pytest.raises(ImageError) as e:
        run_mkosi(mkosi_dir, config, tmp_path / "out", cache_dir=tmp_path / "cache", timeout=3,
                  workspace=tmp_path / "ws")  # a killed mkosi leaves its temporary dirs in the workspace
    assert e.value.code == "mkosi-failed" and "did not finish within 3 s" in e.value.message
    assert time.monotonic() - started < 10


def _tar_diff(a: Path, b: Path) -> list[str]:
    def summary(p: Path) -> dict[str, tuple[object, ...]]:
        with tarfile.open(p) as t:
            return {m.name: (m.mode, m.uid, m.gid, m.mtime, m.linkname,
                             hashlib.sha256(t.extractfile(m).read()).hexdigest() if m.isreg() else "")  # type: ignore[union-attr]
                    for m in t.getmembers()}
    sa, sb = summary(a), summary(b)
    return sorted(n for n in sa.keys() | sb.keys() if sa.get(n) != sb.get(n))


@pytest.mark.slow
def test_two_builds_are_bit_identical(mkosi_dir: Path, tmp_path: Path) -> None:
    tars = [build(mkosi_dir, tmp_path / f"tar{i}", ImageFormat.TAR, tmp_path / f"tcache{i}") for i in (1, 2)]
    assert sha256(tars[0]) == sha256(tars[1]), f"tar members differ: {_tar_diff(*tars)[:30]}"
    started = time.monotonic()
    ukis = [build(mkosi_dir, tmp_path / f"uki{i}", ImageFormat.UKI, tmp_path / f"ucache{i}") for i in (1, 2)]
    print(f"two UKI builds from empty caches: {time.monotonic() - started:.0f} s; "
          f"UKI {ukis[0].stat().st_size} bytes")
    same = sha256(ukis[0]) == sha256(ukis[1])
    for i in (1, 2):  # each empty cache grew to ~3 GB
        remove_tree(tmp_path / f"ucache{i}")
        remove_tree(tmp_path / f"tcache{i}")
    assert same, "UKIs differ (compare their .initrd sections)"


@pytest.mark.slow
def test_uki_boots_to_service(mkosi_dir: Path, tmp_path: Path) -> None:
    uki = build(mkosi_dir, tmp_path, ImageFormat.UKI, DEFAULT_CACHE_ROOT / "test-uki")
    console = qemu.boot(uki, memory_mb=1024, timeout=240, expect=b"hello-tdx: started",
                        console_log=tmp_path / "console.log")
    assert "hello-tdx: started" in console


def test_boot_timeout_carries_console(tmp_path: Path) -> None:
    junk = tmp_path / "junk.efi"
    junk.write_bytes(b"MZ" + b"\0" * 4096)
    with pytest.raises(ImageError) as e:
        qemu.boot(junk, memory_mb=256, timeout=8, expect=b"never printed")
    assert e.value.code in ("boot-timeout", "boot-exited")
    assert "qemu-system-x86_64" in (e.value.detail or "")
