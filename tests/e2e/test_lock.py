"""`tdx lock` and `tdx build --frozen` against a real PEP 503 index and git daemon on 127.0.0.1.

The index serves wheels this test builds (two versions of a module). Proves: versions follow the
specifiers (pip's resolver), `--update NAME` moves only NAME, a tampered wheel fails `--frozen`
with an integrity error, a frozen build needs neither the index nor the fetch server, the TDXfile
sees the locked module and not one installed in the environment, git and local modules are pinned
by tree hash (same content under two commits: same integrity), and bad input fails once, clearly.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdxstore.store.tree import tree_hash
from tests.debrepo import ArchiveServer, TestKey, bookworm_archive, fake_debian_env
from tests.fetchserver import FetchServer, GitDaemon, git, write_tree
from tests.wheelindex import SimpleIndex, make_wheel

REPO = Path(__file__).resolve().parents[2]
TDXFILE = """from tdx import Image
import tdx_demo
image = Image("locked", base="debian/bookworm")
image.file("/etc/demo-version", content=tdx_demo.VERSION)
"""


@pytest.fixture(scope="module")
def debian_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A small signed bookworm archive on 127.0.0.1: `tdx lock` also pins the image's Debian packages."""
    key = TestKey(tmp_path_factory.mktemp("gnupg"))
    srv = ArchiveServer(bookworm_archive(tmp_path_factory.mktemp("debian"), key).root)
    try:
        yield fake_debian_env(srv, key)
    finally:
        srv.stop()
        key.close()


@pytest.fixture(autouse=True)
def fake_debian(debian_server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in debian_server.items():
        monkeypatch.setenv(k, v)


def demo_wheel(directory: Path, version: str, name: str = "tdx-demo", requires: tuple[str, ...] = ()) -> Path:
    pkg = name.replace("-", "_")
    return make_wheel(directory, name, version, {f"{pkg}/__init__.py": f"VERSION = {version!r}\n"},
                      requires=("tdx-vm-sdk", *requires))


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SimpleIndex]:
    wheels = tmp_path / "wheels"
    demo_wheel(wheels, "1.0.0")
    demo_wheel(wheels, "2.0.0")
    demo_wheel(wheels, "1.0.0", "tdx-other")
    srv = SimpleIndex(wheels)
    try:
        yield srv
    finally:
        srv.stop()


def project(root: Path, deps: list[str], index_url: str | None = None, tdxfile: str = TDXFILE,
            files: dict[str, str | bytes] | None = None) -> Path:
    tool = f'\n[tool.tdx]\nindex-url = "{index_url}"\n' if index_url else ""
    quoted = ", ".join(f'"{d}"' for d in deps)
    write_tree(root, {"pyproject.toml": f'[project]\nname = "img"\nversion = "1"\ndependencies = [{quoted}]\n{tool}',
                      "TDXfile": tdxfile, **(files or {})})
    return root


def tdx(home: Path, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TDX_INDEX_URL"}
    env.update({"TDX_HOME": str(home), **(extra_env or {})})
    return subprocess.run([sys.executable, "-m", "tdxstore.cli.app", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def one_error(r: subprocess.CompletedProcess[str], user_traceback: bool = False) -> str:
    """The one rendered error; a traceback only when it is the user's (frames of the TDXfile, not tdx's)."""
    assert r.returncode != 0, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and ("Traceback" not in r.stderr or user_traceback), r.stderr
    assert "tdxstore/" not in r.stderr, r.stderr
    return r.stderr


def modules(proj: Path) -> dict[str, dict[str, str]]:
    doc = tomllib.loads((proj / "tdx.lock").read_text())
    return {m["name"]: m for m in doc.get("module", [])}


def emitted_version(home: Path, proj: Path, out: Path, *flags: str) -> str:
    ok(tdx(home, "build", str(proj), "--emit-mkosi", str(out), *flags))
    return (out / "mkosi.extra" / "etc" / "demo-version").read_text()


def test_lock_follows_specifiers_and_staleness(tmp_path: Path, index: SimpleIndex) -> None:
    home = tmp_path / "home"
    proj = project(tmp_path / "p", ["tdx-vm-sdk", "tdx-demo<2"], index.url)
    out = ok(tdx(home, "lock", "-p", str(proj)))
    assert "+ module tdx-demo 1.0.0" in out
    demo = modules(proj)["tdx-demo"]
    wheel = index.directory / "tdx_demo-1.0.0-py3-none-any.whl"
    assert demo["integrity"] == "sha256:" + hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert demo["url"].endswith("/files/tdx_demo-1.0.0-py3-none-any.whl") and demo["source"] == "pypi"
    assert "tdx-vm-sdk" not in modules(proj)  # the running SDK is never locked
    first = (proj / "tdx.lock").read_bytes()
    assert ok(tdx(home, "lock", "-p", str(proj))) == "" and (proj / "tdx.lock").read_bytes() == first

    project(proj, ["tdx-vm-sdk", "tdx-demo>=2"], index.url)
    err = one_error(tdx(home, "build", str(proj), "--emit-mkosi", str(tmp_path / "o")))
    assert "stale" in err and "'tdx-demo>=2' is new" in err and "tdx lock" in err
    dry = ok(tdx(home, "lock", "--dry-run", "-p", str(proj)))
    assert "~ module tdx-demo: 1.0.0 -> 2.0.0" in dry
    assert (proj / "tdx.lock").read_bytes() == first  # dry run: nothing written
    ok(tdx(home, "lock", "-p", str(proj)))
    assert modules(proj)["tdx-demo"]["version"] == "2.0.0"
    project(proj, ["tdx-vm-sdk", "tdx-demo~=1.0"], index.url)
    ok(tdx(home, "lock", "-p", str(proj)))
    assert modules(proj)["tdx-demo"]["version"] == "1.0.0"
    project(proj, ["tdx-vm-sdk", "tdx-demo>=1.5,<3"], index.url)
    ok(tdx(home, "lock", "-p", str(proj)))
    assert modules(proj)["tdx-demo"]["version"] == "2.0.0"


def test_update_moves_only_the_named_module(tmp_path: Path, index: SimpleIndex) -> None:
    home = tmp_path / "home"
    (index.directory / "tdx_demo-2.0.0-py3-none-any.whl").unlink()
    proj = project(tmp_path / "p", ["tdx-demo>=1", "tdx-other>=1"], index.url)
    ok(tdx(home, "lock", "-p", str(proj)))
    assert {n: m["version"] for n, m in modules(proj).items()} == {"tdx-demo": "1.0.0", "tdx-other": "1.0.0"}
    demo_wheel(index.directory, "2.0.0")
    demo_wheel(index.directory, "1.1.0", "tdx-other")
    ok(tdx(home, "lock", "-p", str(proj)))  # locked entries are not touched
    assert {n: m["version"] for n, m in modules(proj).items()} == {"tdx-demo": "1.0.0", "tdx-other": "1.0.0"}
    ok(tdx(home, "lock", "--update", "tdx-other", "-p", str(proj)))
    assert {n: m["version"] for n, m in modules(proj).items()} == {"tdx-demo": "1.0.0", "tdx-other": "1.1.0"}
    ok(tdx(home, "lock", "--update", "-p", str(proj)))
    assert {n: m["version"] for n, m in modules(proj).items()} == {"tdx-demo": "2.0.0", "tdx-other": "1.1.0"}
    assert "no such module" in one_error(tdx(home, "lock", "--update", "tdx-nope", "-p", str(proj)))


def test_evaluation_uses_the_locked_module_not_the_installed_one(tmp_path: Path, index: SimpleIndex) -> None:
    site = tmp_path / "site"  # a different tdx-demo importable from the environment that runs tdx
    write_tree(site, {"tdx_demo/__init__.py": "VERSION = '9.9.9-installed'\n",
                      "tdx_demo-9.9.9.dist-info/METADATA": "Metadata-Version: 2.1\nName: tdx-demo\nVersion: 9.9.9\n"})
    env = {"PYTHONPATH": str(site)}
    probe = subprocess.run([sys.executable, "-c", "import tdx_demo; print(tdx_demo.VERSION)"],
                           env={**os.environ, **env}, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "9.9.9-installed"
    home = tmp_path / "home"
    proj = project(tmp_path / "p", ["tdx-demo==1.0.0"], index.url)
    ok(tdx(home, "build", str(proj), "--emit-mkosi", str(tmp_path / "o"), extra_env=env))  # locks first
    assert (proj / "tdx.lock").is_file()
    assert (tmp_path / "o" / "mkosi.extra" / "etc" / "demo-version").read_text() == "1.0.0"


def test_frozen_without_network_and_tampered_wheel(tmp_path: Path, index: SimpleIndex) -> None:
    files = FetchServer().start()
    try:
        files.files["blob.txt"] = b"fetched content\n"
        digest = hashlib.sha256(b"fetched content\n").hexdigest()
        tdxfile = TDXFILE + (f"from tdx import fetch\nblob = fetch({files.url('file/blob.txt')!r}, "
                             f"sha256={digest!r})\nimage.file('/etc/blob', src=blob)\n")
        home = tmp_path / "home"
        proj = project(tmp_path / "p", ["tdx-demo<2"], index.url, tdxfile=tdxfile)
        assert "missing" in one_error(tdx(home, "build", str(proj), "--frozen", "--emit-mkosi", str(tmp_path / "x")))
        ok(tdx(home, "lock", "-p", str(proj)))
        fetches = tomllib.loads((proj / "tdx.lock").read_text())["fetch"]
        assert [(f["url"], f["integrity"]) for f in fetches] == [(files.url("file/blob.txt"), f"sha256:{digest}")]
        assert fetches[0]["resolved_at"].endswith("Z")
    finally:
        files.stop()
    index.stop()  # no index, no file server: the lock and the store are enough
    assert emitted_version(home, proj, tmp_path / "o1", "--frozen") == "1.0.0"
    assert (tmp_path / "o1" / "mkosi.extra" / "etc" / "blob").read_bytes() == b"fetched content\n"

    # A fetch the lock does not pin is refused before any download.
    (proj / "TDXfile").write_text(tdxfile + "fetch('http://127.0.0.1:9/other', sha256='" + "a" * 64 + "')\n")
    err = one_error(tdx(home, "build", str(proj), "--frozen", "--emit-mkosi", str(tmp_path / "o2")), True)
    assert "is not in tdx.lock" in err and "TDXfile\", line 8" in err

    # Same wheel name, other bytes, fetched by a store that does not have it yet: integrity error.
    (proj / "TDXfile").write_text(TDXFILE)
    wheel = index.directory / "tdx_demo-1.0.0-py3-none-any.whl"
    make_wheel(tmp_path / "evil", "tdx-demo", "1.0.0", {"tdx_demo/__init__.py": "VERSION = 'evil'\n"})
    wheel.write_bytes((tmp_path / "evil" / wheel.name).read_bytes())
    again = SimpleIndex(index.directory)
    try:
        lock = (proj / "tdx.lock").read_text().replace(index.url.rsplit("/", 1)[0], again.url.rsplit("/", 1)[0])
        (proj / "tdx.lock").write_text(lock)
        err = one_error(tdx(tmp_path / "fresh", "build", str(proj), "--frozen", "--emit-mkosi", str(tmp_path / "o3")))
        assert "tdx-demo 1.0.0 does not match tdx.lock" in err and "tdx lock --update tdx-demo" in err
        assert not (tmp_path / "o3").exists()
    finally:
        again.stop()


def test_credentials_never_recorded(tmp_path: Path, index: SimpleIndex) -> None:
    home = tmp_path / "home"
    secret_url = index.url.replace("http://", "http://user:s3cr3t-pw@")
    proj = project(tmp_path / "p", ["tdx-demo<2"])
    r = tdx(home, "lock", "-p", str(proj), extra_env={"TDX_INDEX_URL": secret_url})
    ok(r)
    assert "s3cr3t-pw" not in (proj / "tdx.lock").read_text() + r.stdout + r.stderr
    ok(tdx(tmp_path / "fresh", "build", str(proj), "--emit-mkosi", str(tmp_path / "o"),
           extra_env={"TDX_INDEX_URL": secret_url}))
    (index.directory / "tdx_demo-1.0.0-py3-none-any.whl").unlink()  # a failing download names no password
    r = tdx(tmp_path / "fresh2", "build", str(proj), "--emit-mkosi", str(tmp_path / "o2"),
            extra_env={"TDX_INDEX_URL": secret_url})
    assert "cannot download module tdx-demo" in one_error(r) and "s3cr3t-pw" not in r.stdout + r.stderr
    for home_dir in (home, tmp_path / "fresh", tmp_path / "fresh2"):
        for path in home_dir.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert b"s3cr3t-pw" not in path.read_bytes(), path


def _module_repo(root: Path, bare: Path, history: int) -> str:
    work = root / f"work-{bare.name}"
    work.mkdir(parents=True)
    git(work, "init", "-q")
    for i in range(history):
        write_tree(work, {"pyproject.toml": '[project]\nname = "tdx-gitmod"\nversion = "0.7.0"\n',
                          "tdx_gitmod/__init__.py": f"VERSION = 'git'\nSTEP = {i}\n"})
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", f"step {i} of {bare.name}")
    write_tree(work, {"tdx_gitmod/__init__.py": "VERSION = 'git'\n"})
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "final")
    git(work, "tag", "v1")
    git(root, "clone", "-q", "--bare", str(work), str(bare))
    return git(work, "rev-parse", "HEAD")


def test_git_and_local_modules(tmp_path: Path) -> None:
    srv = tmp_path / "srv"
    srv.mkdir()
    a_commit = _module_repo(tmp_path, srv / "a.git", 1)
    b_commit = _module_repo(tmp_path, srv / "b.git", 3)
    assert a_commit != b_commit
    daemon = GitDaemon(srv)
    try:
        home = tmp_path / "home"
        local = {"modules/loc/pyproject.toml": '[project]\nname = "tdx-loc"\nversion = "0.3.0"\n',
                 "modules/loc/tdx_loc/__init__.py": "NAME = 'loc'\n"}
        tdxfile = ("from tdx import Image\nimport tdx_gitmod, tdx_loc\nimage = Image('g', base='debian/bookworm')\n"
                   "image.file('/etc/demo-version', content=tdx_gitmod.VERSION + tdx_loc.NAME)\n")
        integrity = {}
        for repo, commit in (("a.git", a_commit), ("b.git", b_commit)):
            proj = project(tmp_path / f"p-{repo}", [f"tdx-gitmod @ git+{daemon.url(repo)}@v1",
                                                    "tdx-loc @ file:./modules/loc"], tdxfile=tdxfile, files=local)
            ok(tdx(home, "lock", "-p", str(proj)))
            m = modules(proj)
            assert m["tdx-gitmod"]["resolved_rev"] == commit and m["tdx-gitmod"]["version"] == "0.7.0"
            assert m["tdx-loc"] == {"name": "tdx-loc", "version": "0.3.0", "source": "local",
                                    "path": "./modules/loc", "integrity": tree_hash(proj / "modules" / "loc")}
            integrity[repo] = m["tdx-gitmod"]["integrity"]
        assert integrity["a.git"] == integrity["b.git"]  # same tree, two histories
    finally:
        daemon.stop()
    assert emitted_version(home, proj, tmp_path / "o", "--frozen") == "gitloc"  # the daemon is gone
    (proj / "modules" / "loc" / "tdx_loc" / "__init__.py").write_text("NAME = 'changed'\n")
    err = one_error(tdx(home, "build", str(proj), "--frozen", "--emit-mkosi", str(tmp_path / "o2")))
    assert "local module tdx-loc" in err and "changed since tdx.lock" in err


@pytest.mark.parametrize(("deps", "pyproject", "code_text"), [
    (["tdx-does-not-exist>=1"], None, "is not on the index"),
    (["tdx-needs-old", "tdx-needs-new"], None, "conflicting requirements"),
    (["tdx-demo @ file:./modules/nowhere"], None, "does not exist"),
    (["tdx-demo @ git+GIT@v9"], None, "does not exist"),
    (["tdx-demo @ git+GIT@" + "0123456789" * 4], None, "is not reachable"),
    ([], '[tool.tdx]\nindex-url = "x"\n', "has no [project] table"),
    (["tdx-demo >= = 1"], None, "is not a valid requirement"),
])
def test_bad_input(tmp_path: Path, index: SimpleIndex, deps: list[str], pyproject: str | None,
                   code_text: str) -> None:
    demo_wheel(index.directory, "1.0.0", "tdx-needs-old", requires=("tdx-demo<2",))
    demo_wheel(index.directory, "1.0.0", "tdx-needs-new", requires=("tdx-demo>=2",))
    daemon = None
    if any("GIT" in d for d in deps):
        srv = tmp_path / "srv"
        srv.mkdir()
        _module_repo(tmp_path, srv / "m.git", 1)
        daemon = GitDaemon(srv)
        deps = [d.replace("GIT", daemon.url("m.git")) for d in deps]
    try:
        proj = project(tmp_path / "p", deps, index.url)
        if pyproject is not None:
            (proj / "pyproject.toml").write_text(pyproject)
        err = one_error(tdx(tmp_path / "home", "lock", "-p", str(proj)))
        assert code_text in err
        if "conflicting" in code_text:
            assert "tdx-needs-old" in err and "tdx-needs-new" in err  # pip's explanation is shown
        assert not (proj / "tdx.lock").exists()
    finally:
        if daemon is not None:
            daemon.stop()


def test_malformed_lock_names_line_and_key(tmp_path: Path, index: SimpleIndex) -> None:
    proj = project(tmp_path / "p", ["tdx-demo<2"], index.url)
    ok(tdx(tmp_path / "home", "lock", "-p", str(proj)))
    text = (proj / "tdx.lock").read_text()
    line = text[:text.index('version = "1.0.0"')].count("\n") + 1
    (proj / "tdx.lock").write_text(text.replace('version = "1.0.0"', "version = 1.0"))
    for args in (("lock", "-p", str(proj)), ("build", str(proj), "--frozen", "--emit-mkosi", str(tmp_path / "o"))):
        err = one_error(tdx(tmp_path / "home", *args))
        assert f"line {line}, key 'version'" in err


@pytest.mark.parametrize(("example", "rendered"), [("monitoring", "etc/prometheus/prometheus.yml"),
                                                 ("module-class", "etc/tdx-redis/redis.conf")])
def test_example_project_lock_is_current(tmp_path: Path, example: str, rendered: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("TDX_DEBIAN_MIRROR", "TDX_DEBIAN_SECURITY_MIRROR", "TDX_DEBIAN_KEYRING"):
        monkeypatch.delenv(k, raising=False)  # the committed lock pins Debian's own files
    directory = REPO / "examples" / example
    before = (directory / "tdx.lock").read_bytes()
    assert ok(tdx(tmp_path / "home", "lock", "--dry-run", "-p", str(directory))) == ""  # committed lock is current
    ok(tdx(tmp_path / "home", "build", str(directory), "--frozen", "--emit-mkosi", str(tmp_path / "o")))
    assert (tmp_path / "o" / "mkosi.extra" / rendered).is_file()
    assert (directory / "tdx.lock").read_bytes() == before


def test_module_package_at_modules_root(tmp_path: Path) -> None:
    # The layout a new user tried: modules/ itself is the module project (pyproject.toml + tdx_fbx/).
    proj = project(tmp_path / "p", ["tdx-vm-sdk", "tdx-fbx @ file:./modules"],
                   tdxfile="from tdx import Image\nfrom tdx_fbx import apply\n"
                           "image = Image('fbx', base='debian/bookworm')\napply(image)\n",
                   files={"modules/pyproject.toml": '[project]\nname = "tdx-fbx"\nversion = "0.1.0"\n',
                          "modules/tdx_fbx/__init__.py":
                              "def apply(image):\n    image.file('/etc/demo-version', content='fbx')\n"})
    assert emitted_version(tmp_path / "home", proj, tmp_path / "o") == "fbx"  # locks first, then builds
    assert modules(proj)["tdx-fbx"]["path"] == "./modules"


def test_project_without_pyproject_locks_its_fetches(tmp_path: Path) -> None:
    files = FetchServer().start()
    try:
        files.files["blob.txt"] = b"blob\n"
        digest = hashlib.sha256(b"blob\n").hexdigest()
        tdxfile = ("from tdx import Image, fetch\nimage = Image('plain', base='debian/bookworm')\n"
                   f"image.file('/etc/demo-version', src=fetch({files.url('file/blob.txt')!r}, sha256={digest!r}))\n")
        proj = tmp_path / "p"
        write_tree(proj, {"TDXfile": tdxfile})
        home = tmp_path / "home"
        assert "neither" in one_error(tdx(home, "build", str(proj), "--frozen", "--emit-mkosi", str(tmp_path / "x")))
        ok(tdx(home, "build", str(proj), "--emit-mkosi", str(tmp_path / "o0")))
        assert not (proj / "tdx.lock").exists()  # no pyproject.toml, no lock: built as before, nothing written
        ok(tdx(home, "lock", "-p", str(proj)))
        doc = tomllib.loads((proj / "tdx.lock").read_text())
        assert "module" not in doc and doc["fetch"][0]["integrity"] == f"sha256:{digest}"
    finally:
        files.stop()
    assert emitted_version(home, proj, tmp_path / "o", "--frozen") == "blob\n"
