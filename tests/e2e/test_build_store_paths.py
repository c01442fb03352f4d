"""Store paths inside image hooks: a `fetch()`ed tarball unpacked by `image.prepare` and `image.run`.

The TDXfile gets the physical path from `fetch()`; the rendered hooks name the logical
`/tdx/store/<hash>-<name>`, mkosi binds the store there for every hook, and the configuration and the
image record the tarball as a reference. The image path must not depend on `TDX_HOME`.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from tdxstore.errors import TdxError
from tdxstore.image import pipeline
from tdxstore.store.realise import load_derivation
from tdxstore.store.store import Store
from tests.e2e.buildhelp import REPO, tdx

TEST_STORE = Path(os.environ.get("TDX_TEST_STORE", "/var/tmp/tdx-test-store"))
PAYLOAD = b"#!/bin/sh\necho tool from a fetched tarball\n"


def make_project(directory: Path) -> Path:
    """A tool tarball (`bin/tdx-tool`) and a TDXfile that fetches it by file:// URL and unpacks it twice."""
    directory.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("bin/tdx-tool")
        info.size, info.mode, info.mtime = len(PAYLOAD), 0o755, 0
        tf.addfile(info, io.BytesIO(PAYLOAD))
    tarball = directory / "tool.tar.gz"
    tarball.write_bytes(buf.getvalue())
    sha = hashlib.sha256(buf.getvalue()).hexdigest()
    (directory / "TDXfile").write_text(
        "from tdx import Image, fetch\n"
        'image = Image("hooked", format="tar")\n'
        f'tarball = fetch("{tarball.as_uri()}", sha256="{sha}")\n'
        'image.prepare(f"mkdir -p /opt/prepared && tar -C /opt/prepared -xzf {tarball}")\n'
        'image.run(f"tar -C /usr/local -xzf {tarball}")\n'
    )
    return directory / "TDXfile"


def image_line(stdout: str) -> str:
    return next(line.split()[1] for line in stdout.splitlines() if line.startswith("image "))


def listed(stdout: str, word: str) -> list[str]:
    return [line.split()[1] for line in stdout.splitlines() if line.startswith(word + " ")]


def test_realise_builds_each_pinned_input_that_dry_run_lists(tmp_path: Path) -> None:
    """Every `build X.drv` line of a fresh store's dry run is realisable by `tdx realise` alone (the store's
    builtins table, no pipeline import); the mkosi-run ones are realised in the slow test below."""
    home = tmp_path / "home"
    dry = tdx(home, "build", REPO / "examples" / "minimal", "--dry-run", "--format", "uki", timeout=300)
    assert dry.rc == 0, str(dry)
    drvs = listed(dry.stdout, "build")
    (image_drv,) = listed(dry.stdout, "derivation")
    assert image_drv.endswith("-minimal-uki.drv") and image_drv not in drvs
    store = Store.open(home)
    builders = {d: dict(load_derivation(store, store.parse(d)).env).get("format") for d in drvs}
    store.close()
    cheap = [d for d, fmt in builders.items() if fmt is None]  # fetches and unpacks; not mkosi runs
    assert [d for d in builders if d not in cheap] == [d for d in drvs if "mkosi-tools-" in d]
    assert any("-mkosi-25.3.drv" in d for d in cheap) and any("ovmf" in d for d in cheap)
    for drv in cheap:
        run = tdx(home, "realise", drv, timeout=600)
        assert run.rc == 0 and run.stdout.strip().startswith("/tdx/store/"), str(run)
    after = tdx(home, "build", REPO / "examples" / "minimal", "--dry-run", "--format", "uki", timeout=300)
    assert [d for d in listed(after.stdout, "build") if d in cheap] == [], str(after)


def test_hooks_name_the_logical_path_and_the_image_path_ignores_tdx_home(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    tdxfile = make_project(tmp_path / "project")
    runs = [tdx(tmp_path / home, "build", tdxfile, "--dry-run") for home in ("home-a", "somewhere/else/home-b")]
    for run in runs:
        assert run.rc == 0, str(run)
    assert image_line(runs[0].stdout) == image_line(runs[1].stdout), "\n".join(map(str, runs))

    monkeypatch.setenv("TDX_HOME", str(tmp_path / "home-a"))  # where the TDXfile's fetch() puts the tarball
    store = Store.open(tmp_path / "home-a")
    p = pipeline.image_derivation(store, pipeline.evaluate(tdxfile, store=store))
    assert p.derivation is not None
    (fetched,) = p.sources
    assert fetched.name == "tool.tar.gz"
    hooks = {rel: data.decode() for rel, data in p.config.items() if "/50-" in rel}
    assert sorted(hooks) == ["mkosi.postinst.d/50-postinst-001.chroot", "mkosi.prepare.d/50-prepare-001.chroot"]
    for text in hooks.values():
        assert f"-xzf {fetched.logical}" in text and str(store.root) not in text
    config = store.parse(dict(p.derivation.env)["config"])
    assert fetched in store.references(config)
    assert fetched in p.derivation.input_srcs


def test_a_store_path_that_is_not_valid_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDX_HOME", str(tmp_path / "home"))
    (tmp_path / "TDXfile").write_text(
        'from tdx import Image\nimage = Image("x", format="tar")\n'
        'image.run("cat /tdx/store/0123456789abcdfghijklmnpqrsvwxyz-nothing-here")\n')
    store = Store.open(tmp_path / "home")
    with pytest.raises(TdxError) as err:
        pipeline.evaluate(tmp_path / "TDXfile", store=store)
    assert err.value.code == "unknown-store-path"


@pytest.mark.slow
def test_fetched_tarball_unpacked_by_prepare_and_run_hooks(tmp_path: Path) -> None:
    tdxfile = make_project(tmp_path / "project")
    run = tdx(TEST_STORE, "build", tdxfile, "-o", tmp_path / "out", "--format", "tar")
    assert run.rc == 0, str(run)
    image = Path(run.stdout.strip().splitlines()[-1])
    store = Store.open(TEST_STORE)
    try:
        sp = store.parse(image)
        with tarfile.open(store.real_path(sp) / "image.tar") as tf:
            members = {m.name.removeprefix("./"): m for m in tf.getmembers()}
            for name in ("usr/local/bin/tdx-tool", "opt/prepared/bin/tdx-tool"):
                f = tf.extractfile(members[name])
                assert f is not None and f.read() == PAYLOAD, name
        assert not [n for n in members if n == "tdx" or n.startswith("tdx/")], "the /tdx/store link stayed"
        refs = store.references(sp)
        assert [r for r in refs if r.name == "tool.tar.gz"], refs
    finally:
        store.close()


@pytest.mark.slow
def test_realise_of_the_image_drv_runs_mkosi_with_a_finalize_hook(tmp_path: Path) -> None:
    """`tdx realise` of the `.drv` a dry run names builds the image (builtin:mkosi), and a finalize hook
    reads the fetched path too."""
    tdxfile = make_project(tmp_path / "project")
    with tdxfile.open("a") as f:
        f.write('image.finalize(f"test -s {tarball} && tar -tzf {tarball} > /usr/local/share-tool.list")\n')
    dry = tdx(TEST_STORE, "build", tdxfile, "--dry-run")
    assert dry.rc == 0, str(dry)
    (image_drv,) = listed(dry.stdout, "derivation")
    run = tdx(TEST_STORE, "realise", image_drv)
    assert run.rc == 0, str(run)
    out = run.stdout.strip().splitlines()[-1]
    assert out == image_line(dry.stdout), str(run)
    store = Store.open(TEST_STORE)
    try:
        with tarfile.open(store.real_path(store.parse(out)) / "image.tar") as tf:
            f = tf.extractfile("usr/local/share-tool.list")
            assert f is not None and f.read() == b"bin/tdx-tool\n"
    finally:
        store.close()


def test_declared_secrets_reach_the_configuration_and_only_gaps_are_warned(tmp_path: Path) -> None:
    (tmp_path / "TDXfile").write_text(
        'from tdx import Image\nimage = Image("s", format="tar")\n'
        'image.secret("API_KEY", dest="/etc/api-key")\nimage.secret_delivery("vsock")\n')
    run = tdx(tmp_path / "home", "build", tmp_path / "TDXfile", "--dry-run")
    assert run.rc == 0 and "warning:" not in run.stderr, str(run)
    (tmp_path / "TDXfile").write_text(
        'from tdx import Image\nimage = Image("s", format="tar")\nimage.secret("API_KEY", dest="/etc/api-key")\n')
    ssh = tdx(tmp_path / "home", "build", tmp_path / "TDXfile", "--dry-run")
    warnings = [line for line in ssh.stderr.splitlines() if line.startswith("warning: ")]
    assert ssh.rc == 0 and len(warnings) == 1, str(ssh)
    assert "secret delivery 'ssh' (the default)" in warnings[0] and "authorized_keys=" in warnings[0]
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "TDXfile").write_text('from tdx import Image\nimage = Image("p", format="tar")\n')
    quiet = tdx(tmp_path / "home", "build", plain / "TDXfile", "--dry-run")
    assert quiet.rc == 0 and "warning:" not in quiet.stderr, str(quiet)


def test_the_mirror_is_a_declared_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's apt sources never reach the hash: only TDX_DEBIAN_MIRROR (default deb.debian.org) does."""
    from tdxstore.debian.mirror import DEFAULT_MIRROR, DEFAULT_SECURITY_MIRROR, MIRROR_ENV, SECURITY_MIRROR_ENV

    (tmp_path / "TDXfile").write_text('from tdx import Image\nimage = Image("m", format="tar")\n')

    def image_path(env: dict[str, str]) -> str:
        for key in (MIRROR_ENV, SECURITY_MIRROR_ENV):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        run = tdx(tmp_path / "home", "build", tmp_path / "TDXfile", "--dry-run")
        assert run.rc == 0, str(run)
        return image_line(run.stdout)

    default = image_path({})
    assert image_path({MIRROR_ENV: DEFAULT_MIRROR, SECURITY_MIRROR_ENV: DEFAULT_SECURITY_MIRROR}) == default
    assert image_path({MIRROR_ENV: "http://mirror.example.test/debian"}) != default
