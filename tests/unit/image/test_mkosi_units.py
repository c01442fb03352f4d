"""Unit tests of the pinned-mkosi helpers: mirror discovery, base config, tar sorting, pin checks."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tdxstore.boot import qemu
from tdxstore.debian.mirror import AptMirrors, host_mirrors, parse_deb822, parse_one_line
from tdxstore.errors import HashMismatchError, ImageError
from tdxstore.mkosi.config import ImageFormat, MkosiConfig, base_config, write_config
from tdxstore.mkosi.run import MKOSI_DEB_SHA256, find_artifact, mkosi_argv, verify_deb
from tdxstore.mkosi.tar import sort_tar

MIRRORS = AptMirrors("http://mirror.test/debian", "http://mirror.test/debian-security")


def _etc(tmp_path: Path, sources: str | None = None, one_line: str | None = None) -> Path:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    if sources is not None:
        (etc / "sources.list.d/debian.sources").write_text(sources)
    if one_line is not None:
        (etc / "sources.list").write_text(one_line)
    return etc


DEB822 = """\
Types: deb
# a comment
URIs: http://a.test/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.test/debian
Suites: bookworm

Types: deb
URIs: http://a.test/debian-security
Suites: bookworm-security
Components: main
"""


def test_host_mirrors_from_deb822(tmp_path: Path) -> None:
    m = host_mirrors(env={}, etc=_etc(tmp_path, sources=DEB822))
    assert m == AptMirrors("http://a.test/debian", "http://a.test/debian-security")


def test_host_mirrors_from_one_line_sources(tmp_path: Path) -> None:
    text = "# x\ndeb [arch=amd64 signed-by=/k.gpg] http://b.test/debian bookworm main\n" \
           "deb http://b.test/debian-security bookworm-security main\n"
    assert host_mirrors(env={}, etc=_etc(tmp_path, one_line=text)) == \
        AptMirrors("http://b.test/debian", "http://b.test/debian-security")
    assert parse_one_line("deb-src http://x.test/d bookworm main\n") == []


def test_env_overrides_host(tmp_path: Path) -> None:
    env = {"TDX_DEBIAN_MIRROR": "http://env.test/debian/"}
    assert host_mirrors(env=env, etc=_etc(tmp_path, sources=DEB822)) == AptMirrors("http://env.test/debian")


def test_no_mirror_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as e:
        host_mirrors(env={}, etc=_etc(tmp_path))
    assert e.value.code == "no-mirror"
    assert "TDX_DEBIAN_MIRROR" in (e.value.hint or "")


def test_disabled_stanza_is_skipped() -> None:
    assert parse_deb822("Types: deb\nEnabled: no\nURIs: http://x.test/d\nSuites: bookworm\n") == []


def test_bad_mirror_url() -> None:
    with pytest.raises(ImageError) as e:
        AptMirrors("deb.debian.org/debian")
    assert e.value.code == "bad-mirror"


def test_base_config_uki_settings() -> None:
    cfg = base_config(fmt=ImageFormat.UKI, mirrors=MIRRORS, packages=("curl", "systemd"))
    conf = cfg.conf_text()
    for line in ("Distribution=debian", "Release=bookworm", "Mirror=http://mirror.test/debian",
                 "Format=uki", "SourceDateEpoch=0", "CleanPackageMetadata=yes", "WithDocs=no",
                 "Bootable=yes", "ToolsTree=default", "ToolsTreeRelease=trixie", "RemoveFiles=", "Packages="):
        assert line + "\n" in conf, line
    # A key given several times is written once, its values as continuation lines (the one INI writer).
    for value in ("/var/log/alternatives.log", "/var/cache/ldconfig/aux-cache", "linux-image-cloud-amd64",
                  "systemd-boot-efi"):
        assert f"\n        {value}\n" in conf, value
    assert "console=ttyS0" in conf and "systemd.firstboot=off" in conf
    assert conf.count("        systemd\n") == 1
    assert conf.index("[Distribution]") < conf.index("[Output]") < conf.index("[Content]")
    sources = cfg.files["mkosi.sandbox/etc/apt/sources.list.d/mkosi.sources"].decode()
    assert "Suites: bookworm bookworm-updates bookworm-backports\n" in sources and "bookworm-security" in sources
    assert "debug" not in sources
    tools = cfg.files["mkosi.tools.sandbox/etc/apt/sources.list.d/mkosi.sources"].decode()
    assert "Suites: trixie trixie-updates\n" in tools


def test_slim_is_the_default_for_uki_only() -> None:
    slim = base_config(fmt=ImageFormat.UKI, mirrors=MIRRORS)
    content = slim.settings["Content"]
    for pair in (("RemoveFiles", "/usr/share/doc/*"), ("RemoveFiles", "/usr/share/locale/*"),
                 ("RemoveFiles", "/boot/*"), ("RemoveFiles", "/usr/lib/udev/hwdb.bin"),
                 ("KernelModulesExclude", "^sound/")):
        assert pair in content, pair
    assert "        /usr/share/doc/*\n" in slim.conf_text()  # repeated keys are written as one list
    full = base_config(fmt=ImageFormat.UKI, mirrors=MIRRORS, slim=False)
    tar = base_config(fmt=ImageFormat.TAR, mirrors=MIRRORS)
    for conf in (full.conf_text(), tar.conf_text()):
        assert "/usr/share/doc" not in conf and "KernelModulesExclude" not in conf
    assert set(full.settings["Content"]) < set(content)


def test_slim_image_packages_and_opt_out() -> None:
    from tdx import Image
    from tdxstore.errors import ImageError
    from tdxstore.image.render import image_packages

    assert "usr-is-merged" in image_packages(Image("a"), ImageFormat.UKI)
    assert "usr-is-merged" not in image_packages(Image("a", slim=False), ImageFormat.UKI)
    assert "usr-is-merged" not in image_packages(Image("a"), ImageFormat.TAR)
    with pytest.raises(ImageError):
        Image("a", slim="no")  # type: ignore[arg-type]


def test_base_config_tar_without_tools_tree() -> None:
    conf = base_config(fmt=ImageFormat.TAR, mirrors=MIRRORS, tools_tree=None).conf_text()
    assert "CompressOutput=no\n" in conf and "ToolsTree" not in conf and "Bootable=no\n" in conf


def test_base_config_prebuilt_tools_tree() -> None:
    cfg = base_config(fmt=ImageFormat.UKI, mirrors=MIRRORS, tools_tree="/tdx/store/abc-mkosi-tools")
    assert "ToolsTree=/tdx/store/abc-mkosi-tools\n" in cfg.conf_text()
    assert "ToolsTreeRelease" not in cfg.conf_text()
    assert not any(k.startswith("mkosi.tools.sandbox") for k in cfg.files)


def test_uki_needs_tools_tree() -> None:
    with pytest.raises(ImageError) as e:
        base_config(fmt=ImageFormat.UKI, mirrors=MIRRORS, tools_tree=None)
    assert e.value.code == "uki-needs-tools-tree"


def test_bad_config_values_rejected() -> None:
    with pytest.raises(ImageError) as e:
        MkosiConfig({"Content": [("Packages", "a\nb")]})
    assert e.value.code == "bad-mkosi-config"
    with pytest.raises(ImageError):
        MkosiConfig({}, {"../escape": b""})


def test_write_config_is_deterministic(tmp_path: Path) -> None:
    cfg = base_config(fmt=ImageFormat.DIRECTORY, mirrors=MIRRORS)
    write_config(cfg.rendered(), tmp_path / "a")
    assert (tmp_path / "a/mkosi.conf").read_bytes() == cfg.conf_text().encode()
    assert base_config(fmt=ImageFormat.DIRECTORY, mirrors=MIRRORS).rendered() == cfg.rendered()


def test_mkosi_argv_and_missing_artifact(tmp_path: Path) -> None:
    argv = mkosi_argv(Path("/m"), Path("/c"), Path("/o"), cache_dir=Path("/k"), workspace=None)
    assert argv[:6] == ["/usr/bin/python3", "-m", "mkosi", "-C", "/c", "--output-directory"]
    assert argv[-1] == "build" and "/k/packages" in argv
    with pytest.raises(ImageError) as e:
        find_artifact(tmp_path)
    assert e.value.code == "mkosi-no-output"


def test_verify_deb_mismatch(tmp_path: Path) -> None:
    deb = tmp_path / "mkosi.deb"
    deb.write_bytes(b"not the pinned package")
    with pytest.raises(HashMismatchError) as e:
        verify_deb(deb)
    assert e.value.code == "hash-mismatch" and e.value.expected == MKOSI_DEB_SHA256


def _add(t: tarfile.TarFile, name: str, data: bytes = b"", **kw: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    t.addfile(info, io.BytesIO(data) if data else None)


def _unsorted_tar(path: Path, order: list[str]) -> None:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as t:
        for name in order:
            if name == "./usr/bin/b":
                _add(t, name, b"shared", mode=0o755, mtime=99)
            elif name == "./usr/bin/a":
                _add(t, name, type=tarfile.LNKTYPE, linkname="./usr/bin/b")
            elif name.endswith("/"):
                _add(t, name, type=tarfile.DIRTYPE, mode=0o755)
            else:
                _add(t, name, name.encode(), uid=7, gid=8, uname="u", gname="g", mtime=5)


def test_sort_tar_orders_and_fixes_hardlinks(tmp_path: Path) -> None:
    names = ["./", "./usr/", "./usr/bin/", "./usr/bin/b", "./usr/bin/a", "./etc/", "./etc/z", "./etc/a-b"]
    _unsorted_tar(tmp_path / "one.tar", names)
    _unsorted_tar(tmp_path / "two.tar", [names[0], *reversed(names[1:5]), *names[5:]])
    out1 = sort_tar(tmp_path / "one.tar", tmp_path / "one.sorted.tar")
    out2 = sort_tar(tmp_path / "two.tar", tmp_path / "two.sorted.tar", source_date_epoch=0)
    assert out1.read_bytes() == out2.read_bytes()
    with tarfile.open(out1) as t:
        members = t.getmembers()
        assert [m.name for m in members] == [".", "etc", "etc/a-b", "etc/z", "usr", "usr/bin",
                                              "usr/bin/a", "usr/bin/b"]
        a, b = members[6], members[7]
        assert a.isreg() and t.extractfile(a).read() == b"shared"  # type: ignore[union-attr]
        assert b.islnk() and b.linkname == "usr/bin/a"
        z = t.getmember("etc/z")
        assert (z.uid, z.gid, z.uname, z.mtime) == (7, 8, "u", 0)


def test_sort_tar_rejects_garbage(tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(b"\x28\xb5\x2f\xfd" + b"zstd, not tar" * 100)
    with pytest.raises(ImageError) as e:
        sort_tar(tmp_path / "x.tar", tmp_path / "y.tar")
    assert e.value.code == "bad-tar"


def test_qemu_argv_and_missing_uki(tmp_path: Path) -> None:
    argv = qemu.qemu_argv(Path("/u.efi"), Path("/v.fd"), memory_mb=512)
    assert argv[:5] == ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg"]
    assert "-kernel" in argv and "if=pflash,format=raw,unit=1,file=/v.fd" in argv
    with pytest.raises(ImageError) as e:
        qemu.boot(tmp_path / "missing.efi", expect=b"x")
    assert e.value.code == "boot-missing-file"
