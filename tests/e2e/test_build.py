"""`tdx build` end to end: examples/minimal built for real by mkosi (tar and UKI), inspected, booted.

The session fixture builds into a persistent test store, TDX_HOME=${TDX_TEST_STORE:-/var/tmp/tdx-test-store},
so a second run (CI's cache) is a store lookup. Everything runs the CLI in a subprocess; nothing is mocked.
Bad-input tests check the CLI's one `error:` line, the error's code (in-process evaluate) and a clean store.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tdxstore._fs import remove_tree
from tdxstore.boot import qemu
from tdxstore.errors import TdxError
from tdxstore.image import pipeline
from tests.e2e.buildhelp import MINIMAL, REPO, Run, build, diff_pe, diff_tars, sha256, tar_members, tdx

TEST_STORE = Path(os.environ.get("TDX_TEST_STORE", "/var/tmp/tdx-test-store"))
GOLDEN = REPO / "tests" / "data" / "image" / "minimal"
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


@dataclass(frozen=True, slots=True)
class Built:
    home: Path
    out: Path
    tar: Path  # the tar image's store directory
    uki: Path  # the UKI image's store directory


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("build-out")
    _, tar = build(TEST_STORE, MINIMAL, out / "tar", "tar")
    _, uki = build(TEST_STORE, MINIMAL, out / "uki", "uki")
    return Built(TEST_STORE, out, tar, uki)


@pytest.fixture(scope="session")
def members(built: Built) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(built.tar / "image.tar") as tf:
        return {m.name.removeprefix("./").rstrip("/"): m for m in tf.getmembers()}


def read(built: Built, name: str) -> bytes:
    with tarfile.open(built.tar / "image.tar") as tf:
        for m in tf:
            if m.name.removeprefix("./") == name:
                f = tf.extractfile(m)
                assert f is not None, name
                return f.read()
    raise AssertionError(f"{name} not in the archive")


def passwd_entry(built: Built, user: str) -> list[str]:
    for line in read(built, "etc/passwd").decode().splitlines():
        if line.split(":")[0] == user:
            return line.split(":")
    raise AssertionError(f"no {user} in /etc/passwd")


@pytest.mark.slow
def test_service_unit_present_and_enabled(built: Built, members: dict[str, tarfile.TarInfo]) -> None:
    unit = read(built, "etc/systemd/system/hello-tdx.service").decode()
    assert "ExecStart=/usr/local/bin/hello-tdx" in unit and "User=hello" in unit
    assert "StandardOutput=journal+console" in unit
    wants = members["etc/systemd/system/multi-user.target.wants/hello-tdx.service"]
    assert wants.issym() and wants.linkname.endswith("/hello-tdx.service")


@pytest.mark.slow
def test_user_home_shell_and_group(built: Built, members: dict[str, tarfile.TarInfo]) -> None:
    _, _, uid, gid, _, home, shell = passwd_entry(built, "hello")
    assert (home, shell) == ("/var/lib/hello", "/usr/sbin/nologin")
    assert int(uid) < 1000  # system=True
    groups = {line.split(":")[0]: line.split(":")[2] for line in read(built, "etc/group").decode().splitlines()}
    assert groups["hello"] == gid
    home_dir = members["var/lib/hello"]
    assert home_dir.isdir() and (home_dir.uid, home_dir.gid) == (int(uid), int(gid))


@pytest.mark.slow
def test_files_content_mode_owner(built: Built, members: dict[str, tarfile.TarInfo]) -> None:
    uid, gid = (int(x) for x in passwd_entry(built, "hello")[2:4])
    msg = members["etc/hello-tdx/message"]
    assert read(built, "etc/hello-tdx/message") == b"hello from a TDX guest\n"
    assert (msg.mode & 0o7777, msg.uid, msg.gid) == (0o640, uid, gid)
    tool = members["usr/local/bin/hello-tdx"]
    assert read(built, "usr/local/bin/hello-tdx") == (MINIMAL / "hello-tdx.sh").read_bytes()
    assert (tool.mode & 0o7777, tool.uid, tool.gid) == (0o755, 0, 0)


@pytest.mark.slow
def test_postinst_hook_ran(built: Built, members: dict[str, tarfile.TarInfo]) -> None:
    uid = int(passwd_entry(built, "hello")[2])
    assert read(built, "var/lib/hello/postinst-marker") == b"postinst-ran\n"
    assert members["var/lib/hello/postinst-marker"].uid == uid


@pytest.mark.slow
def test_every_mtime_is_the_epoch(members: dict[str, tarfile.TarInfo]) -> None:
    wrong = sorted(n for n, m in members.items() if int(m.mtime) not in (0, EPOCH))
    assert not wrong, f"{len(wrong)} members with other mtimes, e.g. {wrong[:10]}"


@pytest.mark.slow
def test_uki_boots_and_service_starts(built: Built, tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    text = qemu.boot(built.uki / "image.efi", memory_mb=1024, timeout=300, expect=b"hello-tdx: started",
                     console_log=log)
    assert "hello-tdx: started" in text


@pytest.mark.slow
def test_measurements_name_stub_and_kernel(built: Built) -> None:
    chain = json.loads((built.uki / "measurements.json").read_text())["boot_chain"]
    assert chain["stub"].startswith("257."), chain
    assert chain["kernel"].startswith("6.12."), chain


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tar", "uki"])
def test_image_references_its_inputs(built: Built, fmt: str) -> None:
    image = built.tar if fmt == "tar" else built.uki
    run = tdx(built.home, "store", "path-info", "--json", str(image))
    assert run.rc == 0, str(run)
    refs = [r.rsplit("/", 1)[-1] for r in json.loads(run.stdout)[0]["references"]]
    assert any(r.endswith("-minimal-mkosi-config") for r in refs), refs
    assert any("-mkosi-25.3" in r for r in refs), refs
    if fmt == "uki":
        assert any("systemd-stub-257" in r for r in refs), refs


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tar", "uki"])
def test_second_build_is_a_lookup(built: Built, fmt: str) -> None:
    run = tdx(built.home, "build", MINIMAL, "-o", built.out / fmt, "--format", fmt)
    assert run.rc == 0, str(run)
    assert "up to date" in run.stderr, str(run)
    assert run.seconds < 2, f"no-op build took {run.seconds:.2f} s"
    assert (built.out / fmt / "minimal").resolve() == (built.tar if fmt == "tar" else built.uki)
    if fmt == "uki":  # the size report; the initrd's directories only after mkosi ran
        assert re.search(r"^UKI \d+\.\d MB: \.initrd \d+\.\d MB, \.linux ", run.stderr, re.M), run.stderr


@pytest.mark.slow
def test_uki_is_slim(built: Built) -> None:
    from tdxstore.measure.footprint import cpio_sizes, decompress
    from tdxstore.measure.uki import parse_uki

    files = cpio_sizes(decompress(parse_uki((built.uki / "image.efi").read_bytes()).sections[".initrd"]))
    for gone in ("usr/share/doc/", "usr/share/man/", "usr/share/locale/", "usr/share/perl/", "boot/",
                 "usr/lib/udev/hwdb.d/"):
        assert not [f for f in files if f.startswith(gone)], gone
    assert "usr/lib/udev/hwdb.bin" not in files and not [f for f in files if f.endswith("/vmlinuz")]
    assert not [f for f in files if "/kernel/sound/" in f or "/kernel/drivers/gpu/" in f]
    for kept in ("/kernel/drivers/virtio/", "/kernel/net/vmw_vsock/", "/tdx-guest/tdx-guest.ko", "/netfilter/"):
        assert [f for f in files if kept in f], kept


def test_dry_run_on_a_fresh_store(tmp_path: Path) -> None:
    run = tdx(tmp_path / "home", "build", MINIMAL, "--dry-run", "--format", "uki", timeout=300)
    assert run.rc == 0, str(run)
    assert "(would be built by mkosi)" in run.stdout, str(run)
    assert "fetch mkosi 25.3" in run.stdout
    assert any(line.startswith("build ") and "systemd-stub" in line for line in run.stdout.splitlines())
    install = next(line for line in run.stdout.splitlines() if line.startswith("install "))
    assert "systemd" in install.split()
    assert not (tmp_path / "out").exists()


def test_emit_mkosi_matches_the_golden_files(tmp_path: Path) -> None:
    run = tdx(tmp_path / "home", "build", MINIMAL, "--emit-mkosi", tmp_path / "cfg", "--format", "uki")
    assert run.rc == 0, str(run)
    conf = (tmp_path / "cfg" / "mkosi.conf").read_text()
    assert "Format=uki" in conf and "Bootable=yes" in conf and "KernelCommandLine=console=ttyS0" in conf
    # The golden is exactly what `tdx build` renders (render.render_config, default mirror): the
    # emitted directory must equal it file for file, byte for byte.
    env_mirror = os.environ.get("TDX_DEBIAN_MIRROR")
    if env_mirror:
        pytest.skip(f"TDX_DEBIAN_MIRROR={env_mirror} changes the configuration on purpose")
    emitted = {p.relative_to(tmp_path / "cfg").as_posix(): p.read_bytes()
               for p in sorted((tmp_path / "cfg").rglob("*")) if p.is_file()}
    golden = {p.relative_to(GOLDEN).as_posix(): p.read_bytes() for p in sorted(GOLDEN.rglob("*")) if p.is_file()}
    assert emitted == golden


# --- reproducibility ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tar", "uki"])
def test_two_empty_stores_give_identical_images(tmp_path: Path, fmt: str) -> None:
    # One tdx.lock (the image's packages and mkosi's tools tree, each .deb pinned by SHA-256), built
    # with --frozen in two empty stores: every package comes from the locked repositories, offline.
    artifact = "image.tar" if fmt == "tar" else "image.efi"
    proj = tmp_path / "minimal"
    shutil.copytree(MINIMAL, proj)
    assert (locking := tdx(tmp_path / "home-lock", "lock", "-p", proj)).rc == 0, str(locking)
    remove_tree(tmp_path / "home-lock")
    assert {"image", "tools"} <= set(tomllib.loads((proj / "tdx.lock").read_text())["debian"])
    results = []
    for n in ("first", "second-store"):
        run = tdx(tmp_path / f"home-{n}", "build", proj, "--frozen", "-o", tmp_path / f"out-{n}", "--format", fmt)
        assert run.rc == 0, str(run)
        image = (tmp_path / f"out-{n}" / "minimal").resolve()
        kept = tmp_path / f"{n}-{artifact}"
        shutil.copyfile(image / artifact, kept)
        results.append(kept)
        # An empty store with its tools tree is about 4.5 GB: only the artifact outlives its build.
        remove_tree(tmp_path / f"home-{n}")
    a, b = results
    if sha256(a) != sha256(b):
        diff = diff_tars(a, b) if fmt == "tar" else diff_pe(a, b)
        pytest.fail(f"{artifact} differs between two empty stores:\n" + "\n".join(diff))
    if fmt == "tar":
        assert tar_members(a) == tar_members(b)


# --- bad input ---------------------------------------------------------------------------------------

BAD = {
    "syntax": ('from tdx import Image\nimage = Image("x",\n', {}, "tdxfile-error", "syntax error at line 2"),
    "exception": ('from tdx import Image\n\n\ndef configure(image):\n    raise ValueError("boom in user code")\n\n\n'
                  'image = Image("x")\nconfigure(image)\n', {}, "tdxfile-error", "ValueError: boom in user code"),
    "base": ('from tdx import Image\nimage = Image("x", base="debian/sid9")\n', {}, "unknown-base", "debian/sid9"),
    "template": ('from tdx import Image\nimage = Image("x")\n'
                 'image.template("app.conf.j2", "/etc/app.conf", vars={"port": 1})\n',
                 {"app.conf.j2": "port={{ port }}\nhost={{ host }}\n"}, "template-undefined", "'host'"),
    "src": ('from tdx import Image\nimage = Image("x")\nimage.file("/etc/app.conf", src="no-such-file.conf")\n',
            {}, "missing-source", "no-such-file.conf"),
}


def write_tdxfile(directory: Path, text: str, extra: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "TDXfile").write_text(text)
    for name, content in extra.items():
        (directory / name).write_text(content)
    return directory / "TDXfile"


def assert_one_error_and_clean_store(run: Run, home: Path, needle: str) -> None:
    assert run.rc != 0, str(run)
    errors = run.error_lines()
    assert len(errors) == 1 and needle in errors[0], str(run)
    verify = tdx(home, "store", "verify")
    assert verify.rc == 0 and "missing:" not in verify.stdout and "corrupted:" not in verify.stdout, str(verify)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_tdxfile(tmp_path: Path, case: str) -> None:
    text, extra, code, needle = BAD[case]
    tdxfile = write_tdxfile(tmp_path / case, text, extra)
    with pytest.raises(TdxError) as err:
        pipeline.evaluate(tdxfile)
    assert err.value.code == code
    home = tmp_path / "home"
    run = tdx(home, "build", tdxfile, "-o", tmp_path / "out")
    assert_one_error_and_clean_store(run, home, needle)
    frames = [line for line in run.stderr.splitlines() if line.lstrip().startswith('File "')]
    assert not [f for f in frames if "tdxstore" in f], run.stderr
    if case == "exception":
        assert f'File "{tdxfile}", line 5, in configure' in run.stderr


@pytest.mark.slow
def test_missing_package_shows_mkosi_tail_and_log(tmp_path: Path) -> None:
    pkg = "tdx-no-such-package-h7"
    tdxfile = write_tdxfile(tmp_path / "pkg", f'from tdx import Image\nimage = Image("nopkg", format="tar")\n'
                                              f'image.install("{pkg}")\n', {})
    run = tdx(TEST_STORE, "build", tdxfile, "-o", tmp_path / "out")
    # the error line names the cause, the hint the fix, and the log survives the build's temp dir
    assert_one_error_and_clean_store(run, TEST_STORE, f"package {pkg!r} does not exist in the Debian archive")
    assert "tdx log /tdx/store/" in run.stderr, str(run)
    assert "(log: /" not in run.stderr, "the detail must not point at the deleted work directory\n" + str(run)
    log = next(w for w in run.stderr.split() if w.startswith("/tdx/store/") and w.endswith(".drv"))
    shown = tdx(TEST_STORE, "log", log)
    assert shown.rc == 0 and pkg in shown.stdout, str(shown)
