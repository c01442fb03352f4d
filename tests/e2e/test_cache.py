"""Binary caches on file://, on a real HTTP server on 127.0.0.1 (GET/PUT) and on a real S3 API server
on 127.0.0.1 (moto in server mode, `tests/s3server.py`): push from store A,
substitute into an empty store B with signatures enforced; a tampered or untrusted object is not used
and the path is built instead; a stopped server costs one warning per run and the build goes on."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdxstore.errors import UsageError
from tdxstore.store.cache import open_cache, push, substituters_from
from tdxstore.store.derivation import Derivation, derivation
from tdxstore.store.path import StorePath
from tdxstore.store.realise import realise
from tdxstore.store.settings import Settings
from tdxstore.store.signing import SecretKey
from tdxstore.store.store import Store
from tdxstore.store.transfer import record_of
from tests.cacheserver import CacheServer
from tests.s3server import S3Server

pytestmark = pytest.mark.needs_bwrap
REPO = Path(__file__).parents[2]
KEY = SecretKey.generate("test-cache-1")


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    srv = S3Server(tmp_path_factory.mktemp("s3")).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(params=["file", "http", "s3"])
def cache_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    root = tmp_path / "cache-root"
    root.mkdir()
    if request.param == "file":
        yield f"file://{root}"
        return
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        for k, v in s3.env().items():
            monkeypatch.setenv(k, v)
        yield f"s3://{s3.bucket(tmp_path.name.lower().replace('_', '-')[-40:])}/tdx/cache"
        return
    srv = CacheServer(root).start()
    try:
        yield srv.url
    finally:
        srv.stop()


def _chain(root: StorePath) -> tuple[Derivation, Derivation]:
    lib = derivation("lib", "/bin/sh", ["-c", "echo library > $out/lib"], root=root)
    app = derivation("app", "/bin/sh", ["-c", f"echo 'uses {lib.out}' > $out/app"], root=root, inputs=[lib])
    return lib, app


def _built_and_pushed(tmp_path: Path, busybox_tree: Path, url: str) -> tuple[StorePath, Derivation, Derivation]:
    a = Store.open(tmp_path / "a")
    root = a.add_path(busybox_tree, "busybox-root")
    lib, app = _chain(root)
    realise(a, [app])
    with a.db.transaction() as conn:
        for sp in a.closure([app.out]):
            a.db.add_signatures(conn, sp.base_name, [KEY.sign(record_of(a, sp))])
    report = push(a, open_cache(url), [app.out])
    assert report.pushed == 2 and report.present == 0  # app and lib; the root is not in the output closure
    assert push(a, open_cache(url), [app.out]).present == 2
    return root, lib, app


def _fresh(tmp_path: Path, name: str, busybox_tree: Path, url: str, trusted: tuple[str, ...] = ()
           ) -> tuple[Store, list[str]]:
    store = Store.open(tmp_path / name)
    store.add_path(busybox_tree, "busybox-root")
    said: list[str] = []
    keys = tuple(SecretKey.parse(str(KEY)).public if k == "good" else SecretKey.generate(k).public for k in trusted)
    store.substituters = substituters_from(Settings((url,), keys, cache_timeout=2), offline=False,
                                           notify=said.append)
    return store, said


def test_substitute_with_trusted_signature(tmp_path: Path, busybox_tree: Path, cache_url: str) -> None:
    _root, lib, app = _built_and_pushed(tmp_path, busybox_tree, cache_url)
    b, said = _fresh(tmp_path, "b", busybox_tree, cache_url, ("good",))
    result = realise(b, [app])
    assert result.built == []  # nothing built: both came from the cache
    assert b.is_valid(app.out) and b.is_valid(lib.out)
    assert (b.real_path(app.out) / "app").read_text() == f"uses {lib.out}\n"
    assert b.db.signatures(app.out.base_name) and b.query(app.out).references == (lib.out,)
    assert any("substituted" in s for s in said)
    info = open_cache(cache_url).info()
    assert info["StoreDir"] == "/tdx/store"


def test_untrusted_or_tampered_objects_are_not_used(tmp_path: Path, busybox_tree: Path, cache_url: str) -> None:
    _root, _lib, app = _built_and_pushed(tmp_path, busybox_tree, cache_url)
    c, said = _fresh(tmp_path, "c", busybox_tree, cache_url, ("someone-else",))
    assert sorted(d.name for d in realise(c, [app]).built) == ["app", "lib"]
    assert any("no trusted key signed it" in s for s in said)

    assert _tamper_every_nar(tmp_path, cache_url) == 2
    d, said = _fresh(tmp_path, "d", busybox_tree, cache_url, ("good",))
    assert sorted(x.name for x in realise(d, [app]).built) == ["app", "lib"]
    assert any("corrupt" in s or "mismatch" in s or "FileHash" in s for s in said), said
    assert d.db.all_paths().count(app.out.base_name) == 1 and os.listdir(d.tmp) == []


def _flip(data: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) // 2] ^= 0xFF
    return bytes(out)


def _tamper_every_nar(tmp_path: Path, url: str) -> int:
    """Flip one byte in the middle of every NAR object of the cache; how many there were."""
    if url.startswith("s3://"):
        import boto3

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        client = boto3.client("s3")
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/nar/")["Contents"]]
        for key in keys:
            client.put_object(Bucket=bucket, Key=key, Body=_flip(client.get_object(Bucket=bucket, Key=key)["Body"]
                                                                 .read()))
        return len(keys)
    cache_dir = tmp_path / "cache-root" / ("cache" if url.startswith("http") else "")
    objects = list((cache_dir / "nar").iterdir())
    for obj in objects:
        obj.write_bytes(_flip(obj.read_bytes()))
    return len(objects)


@pytest.mark.parametrize("kind", ["http", "s3"])
def test_a_stopped_server_costs_one_warning_then_builds(tmp_path: Path, busybox_tree: Path, kind: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root_dir = tmp_path / "cache-root"
    root_dir.mkdir()
    if kind == "http":
        srv: CacheServer | S3Server = CacheServer(root_dir).start()
        url = srv.url
    else:
        srv = S3Server(root_dir).start()
        for k, v in srv.env().items():
            monkeypatch.setenv(k, v)
        url = f"s3://{srv.bucket('stopped')}/p?endpoint={srv.endpoint}"  # the endpoint in the URL, as Nix's
        monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    try:
        _root, _lib, app = _built_and_pushed(tmp_path, busybox_tree, url)
    finally:
        srv.stop()
    b, said = _fresh(tmp_path, "b", busybox_tree, url, ("good",))
    assert len(realise(b, [app]).built) == 2
    assert len([s for s in said if "unreachable" in s]) == 1, said
    assert any("building instead" in s for s in said)


@pytest.mark.parametrize("url", ["ftp://host/cache", "s4://bucket", "cache.example.org/tdx", "file://relative"])
def test_unknown_scheme_is_one_usage_error(url: str) -> None:
    with pytest.raises(UsageError) as err:
        open_cache(url)
    assert err.value.code == "cache-unknown-scheme"


def test_s3_urls_are_checked(s3_server: S3Server) -> None:
    for bad in ("s3:///no-bucket", "s3://b/p?endpoint=x&colour=red"):
        with pytest.raises(UsageError) as err:
            open_cache(bad)
        assert err.value.code == "cache-url-invalid"


def test_cli_push_then_realise_substitutes_from_the_configured_cache(tmp_path: Path, busybox_tree: Path) -> None:
    root_dir = tmp_path / "cache-root"
    root_dir.mkdir()
    srv = CacheServer(root_dir).start()
    try:
        a, b = tmp_path / "a", tmp_path / "b"
        secret, public = tmp_path / "k.sec", tmp_path / "k.pub"
        config = tmp_path / "config.toml"

        def tdx(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
            env = {**os.environ, "TDX_HOME": str(home), "TDX_CONFIG": str(config)}
            return subprocess.run([sys.executable, "-m", "tdxstore.cli.app", *args], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=300)

        assert tdx(a, "key", "generate", "ci-1", "--secret", str(secret), "--public", str(public)).returncode == 0
        assert oct(secret.stat().st_mode & 0o777) == "0o600"
        root = Store.open(a).add_path(busybox_tree, "busybox-root")
        Store.open(b).add_path(busybox_tree, "busybox-root")
        f = tmp_path / "drv.py"
        f.write_text("from tdx import derivation, StorePath\n"
                     f"root = StorePath.parse('{root}')\n"
                     "default = derivation('hello', '/bin/sh', ['-c', 'echo hello > $out/h'], root=root)\n")
        out = tdx(a, "realise", str(f)).stdout.strip()
        assert tdx(a, "store", "sign", "--key", str(secret), out).returncode == 0
        pushed = tdx(a, "cache", "push", srv.url, out)
        assert pushed.returncode == 0 and "pushed 1 paths" in pushed.stderr, pushed.stderr
        config.write_text(f'substituters = ["{srv.url}"]\ntrusted-public-keys = ["{public.read_text().strip()}"]\n')
        got = tdx(b, "realise", str(f))
        assert got.returncode == 0 and got.stdout.strip() == out, got.stderr
        assert "substituted hello" in got.stderr and "building" not in got.stderr
        assert "StoreDir: /tdx/store" in tdx(b, "cache", "info", srv.url).stdout
        config.write_text('substituters = ["gs://bucket"]\n')
        bad = tdx(b, "realise", str(f))
        assert bad.returncode == 2 and bad.stderr.count("error: ") == 1 and "gs://bucket" in bad.stderr
    finally:
        srv.stop()


def test_cli_cache_push_and_info_on_s3_and_closure_of_a_target(tmp_path: Path, busybox_tree: Path,
                                                                s3_server: S3Server) -> None:
    a = tmp_path / "a"
    config = tmp_path / "config.toml"
    env = {**os.environ, "TDX_HOME": str(a), "TDX_CONFIG": str(config), **s3_server.env()}

    def tdx(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tdxstore.cli.app", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    made = tdx("key", "generate", "ci-3")
    assert made.returncode == 0 and made.stdout.startswith("ci-3:"), made.stderr
    assert (tmp_path / "ci-3.sec").is_file() and (tmp_path / "ci-3.pub").read_text() == made.stdout
    again = tdx("key", "generate", "ci-3")
    assert again.returncode == 2 and "already exists" in again.stderr and again.stderr.count("error: ") == 1
    root = Store.open(a).add_path(busybox_tree, "busybox-root")
    f = tmp_path / "drv.py"
    f.write_text("from tdx import derivation, StorePath\n"
                 f"root = StorePath.parse('{root}')\n"
                 "default = derivation('hello', '/bin/sh', ['-c', 'echo hello > $out/h'], root=root)\n")
    out = tdx("realise", str(f)).stdout.strip()
    url = f"s3://{s3_server.bucket('cli')}/ci"
    pushed = tdx("cache", "push", url, out)
    assert pushed.returncode == 0 and "pushed 1 paths" in pushed.stderr, pushed.stderr
    info = tdx("cache", "info", url)
    assert info.returncode == 0 and "StoreDir: /tdx/store" in info.stdout and "Paths: 1\n" in info.stdout, info
    # --closure: what rebuilds the target (its .drv, the build root, the output), not only the output
    drv = derivation("hello", "/bin/sh", ["-c", "echo hello > $out/h"], root=root)
    assert str(drv.out) == out
    whole = tdx("cache", "push", f"file://{tmp_path}/fc", "--closure", str(drv.drv_path))
    assert whole.returncode == 0 and "pushed 3 paths" in whole.stderr, whole.stderr
    assert "Paths: 3\n" in tdx("cache", "info", f"file://{tmp_path}/fc").stdout
    nothing = tdx("cache", "push", url)
    assert nothing.returncode == 2 and nothing.stderr.count("error: ") == 1 and "nothing to push" in nothing.stderr
