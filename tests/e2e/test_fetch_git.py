"""fetch_git()/hash_of_git() and `tdx fetch --git` against `git daemon` on 127.0.0.1.

Proves: tags, annotated tags and full commit ids give the same tree (no `.git`, exec bits kept);
the hash is the NAR SHA-256 (checked against nix-hash) and independent of history; a cached path
needs no network; wrong hash, missing tag/commit and bad input fail with their codes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tdxstore.builders.fetch import fetch_git, hash_of_git
from tdxstore.errors import FetchError, HashMismatchError, UsageError
from tdxstore.fetch import record as rec
from tdxstore.store.store import Store
from tests.fetchserver import GitDaemon, free_port, git, write_tree

REPO = Path(__file__).resolve().parents[2]
TREE = {"README": "hello\n", "src/main.sh": "#!/bin/sh\necho hi\n", "doc/deep/x.txt": "x\n"}


@dataclass
class Repos:
    daemon: GitDaemon
    base: Path
    a_commit: str  # tip of a.git, tagged v1 and v1-ann
    a_first: str  # an older commit of a.git
    b_commit: str  # tip of b.git: same tree as a_commit, other history


def _make_repo(work: Path, bare: Path, history: list[dict[str, str]], tags: list[list[str]]) -> list[str]:
    work.mkdir(parents=True)
    git(work, "init", "-q")
    commits = []
    for i, files in enumerate(history):
        write_tree(work, files, executable=("src/main.sh",))
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", f"commit {i} of {bare.name}")
        commits.append(git(work, "rev-parse", "HEAD"))
    for t in tags:
        git(work, "tag", *t)
    git(work.parent, "clone", "-q", "--bare", str(work), str(bare))
    return commits


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repos]:
    root = tmp_path_factory.mktemp("git")
    base = root / "srv"
    base.mkdir()
    a = _make_repo(root / "work-a", base / "a.git", [{"README": "v0\n", "old.txt": "gone\n"}, TREE],
                   [["v1"], ["-a", "v1-ann", "-m", "annotated"]])
    git(root / "work-a", "rm", "-q", "old.txt")
    git(root / "work-a", "commit", "-q", "-m", "drop old.txt")  # so the tree at v1 still has old.txt
    git(root / "work-a", "push", "-q", str(base / "a.git"), "main")
    b = _make_repo(root / "work-b", base / "b.git", [{**TREE, "old.txt": "gone\n"}], [["v1"]])
    daemon = GitDaemon(base)
    lib = _make_repo(root / "work-lib", base / "lib.git", [{"lib.txt": "library\n"}], [])
    work_s = root / "work-s"
    work_s.mkdir()
    git(work_s, "init", "-q")
    write_tree(work_s, {"top.txt": "top\n"})
    git(work_s, "-c", "protocol.allow=always", "submodule", "add", "-q", daemon.url("lib.git"), "lib")
    git(work_s, "add", "-A")
    git(work_s, "commit", "-q", "-m", "with submodule")
    git(work_s, "tag", "s1")
    git(root, "clone", "-q", "--bare", str(work_s), str(base / "s.git"))
    assert lib
    try:
        yield Repos(daemon, base, a[1], a[0], b[0])
    finally:
        daemon.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    st = Store.open(tmp_path / "tdx")
    yield st
    st.close()


def test_tag_annotated_tag_and_rev(repos: Repos, store: Store) -> None:
    url = repos.daemon.url("a.git")
    digest, commit = hash_of_git(url, tag="v1", store=store)
    assert commit == repos.a_commit
    rec.clear()
    # Another name, so not a cache hit: the annotated tag is fetched and peeled to the commit.
    path = fetch_git(url, tag="v1-ann", sha256=digest, name="ann", store=store)
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) == \
        ["README", "doc/deep/x.txt", "old.txt", "src/main.sh"]
    assert os.access(path / "src/main.sh", os.X_OK) and not os.access(path / "README", os.X_OK)
    assert not (path / ".git").exists()
    assert fetch_git(url, rev=repos.a_commit, sha256=digest, name="ann", store=store) == path
    cached = fetch_git(url, tag="v1", sha256=digest, store=store)  # cache hit: commit remembered
    assert cached != path and cached.name.endswith("-a")
    first, second, third = rec.recorded()
    assert (first.kind, first.rev, first.tag) == ("fetch_git", repos.a_commit, "v1-ann")
    assert first.integrity == digest
    assert (second.rev, second.tag) == (repos.a_commit, None)
    assert (third.rev, third.tag) == (repos.a_commit, "v1")


def test_older_commit_by_rev(repos: Repos, store: Store) -> None:
    digest, commit = hash_of_git(repos.daemon.url("a.git"), rev=repos.a_first, store=store)
    assert commit == repos.a_first
    path = fetch_git(repos.daemon.url("a.git"), rev=repos.a_first, sha256=digest, store=store)
    assert (path / "README").read_text() == "v0\n"


@pytest.mark.needs_nix
def test_hash_is_nar_sha256_like_nix(repos: Repos, store: Store, tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    archive = subprocess.run(["git", "--git-dir", str(repos.base / "a.git"), "archive", "v1"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(export)], input=archive, check=True)
    nix = subprocess.run(["nix-hash", "--type", "sha256", str(export)], check=True,
                         capture_output=True, text=True).stdout.strip()
    assert hash_of_git(repos.daemon.url("a.git"), tag="v1", store=store)[0] == f"sha256:{nix}"


def test_same_tree_two_histories_same_hash(repos: Repos, store: Store) -> None:
    a_hash, a_commit = hash_of_git(repos.daemon.url("a.git"), tag="v1", store=store)
    b_hash, b_commit = hash_of_git(repos.daemon.url("b.git"), tag="v1", store=store)
    assert a_commit != b_commit
    assert a_hash == b_hash


def test_cached_path_needs_no_network(repos: Repos, store: Store) -> None:
    digest, _ = hash_of_git(repos.daemon.url("a.git"), tag="v1", store=store)
    path = fetch_git(repos.daemon.url("a.git"), tag="v1", sha256=digest, store=store)
    dead = f"git://127.0.0.1:{free_port()}/a.git"  # nothing listens there
    assert fetch_git(dead, tag="v1", sha256=digest, store=store) == path


def test_wrong_hash_is_a_mismatch(repos: Repos, store: Store) -> None:
    url = repos.daemon.url("a.git")
    digest, _ = hash_of_git(url, tag="v1", store=store)
    before = sorted(store.db.all_paths())
    wrong = "sha256:" + "0" * 64
    with pytest.raises(HashMismatchError) as info:
        fetch_git(url, tag="v1", sha256=wrong, name="other", store=store)
    assert str(info.value) == (
        f"hash mismatch for {url}\n  Expected: {wrong}\n  Got:      {digest}\n"
        "The remote content has changed. Verify the new content and update the hash.")
    assert sorted(p for p in store.db.all_paths() if not p.endswith(".drv")) == before


def test_submodules(repos: Repos, store: Store) -> None:
    url = repos.daemon.url("s.git")
    with_digest, _ = hash_of_git(url, tag="s1", submodules=True, name="s-full", store=store)
    without_digest, _ = hash_of_git(url, tag="s1", store=store)
    assert with_digest != without_digest
    full = fetch_git(url, tag="s1", sha256=with_digest, submodules=True, name="s-full", store=store)
    assert (full / "lib" / "lib.txt").read_text() == "library\n"
    assert not (full / "lib" / ".git").exists() and not (full / ".git").exists()
    bare = fetch_git(url, tag="s1", sha256=without_digest, store=store)
    assert list((bare / "lib").iterdir()) == []


@pytest.mark.parametrize(("ref", "code"), [
    ({"tag": "v9-does-not-exist"}, "git-ref-not-found"),
    ({"rev": "1" * 40}, "git-ref-not-found"),
])
def test_missing_ref(repos: Repos, store: Store, ref: dict[str, str], code: str) -> None:
    with pytest.raises(FetchError) as info:
        hash_of_git(repos.daemon.url("a.git"), store=store, **ref)
    assert info.value.code == code
    assert (ref.get("tag") or ref["rev"]) in info.value.message


H = "sha256:" + "a" * 64


@pytest.mark.parametrize(("url", "kwargs", "code"), [
    ("git://h/r.git", {"tag": "v1", "rev": "a" * 40, "sha256": H}, "bad-git-ref"),
    ("git://h/r.git", {"sha256": H}, "bad-git-ref"),
    ("git://h/r.git", {"rev": "abc123", "sha256": H}, "bad-git-ref"),
    ("git://h/r.git", {"tag": "bad tag", "sha256": H}, "bad-git-ref"),
    ("git://h/r.git", {"tag": "v1", "sha256": "nothex"}, "bad-hash"),
    ("git://h/r.git", {"tag": "v1"}, "missing-hash"),
    ("ext::sh -c touch% /tmp/pwned", {"tag": "v1", "sha256": H}, "bad-url"),
    ("ftp://h/r.git", {"tag": "v1", "sha256": H}, "bad-url"),
    ("not a url", {"tag": "v1", "sha256": H}, "bad-url"),
    ("relative/path", {"tag": "v1", "sha256": H}, "bad-url"),
])
def test_bad_input(url: str, kwargs: dict[str, str], code: str, store: Store) -> None:
    with pytest.raises(UsageError) as info:
        fetch_git(url, store=store, **kwargs)  # type: ignore[arg-type]
    assert info.value.code == code


def _tdx(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tdxstore.cli.app", *args], cwd=REPO, text=True,
                          capture_output=True, env={**os.environ, "TDX_HOME": str(home)}, timeout=120)


def test_cli_git_hash_then_prefetch(repos: Repos, tmp_path: Path) -> None:
    url = repos.daemon.url("a.git")
    out = _tdx(tmp_path / "tdx", "fetch", "--hash", "--git", url, "--tag", "v1")
    assert out.returncode == 0, out.stderr
    digest = out.stdout.strip()
    assert digest.startswith("sha256:") and repos.a_commit in out.stderr
    out = _tdx(tmp_path / "tdx", "fetch", "--git", url, "--rev", repos.a_commit, "--sha256", digest)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("/tdx/store/") and out.stdout.strip().endswith("-a")


@pytest.mark.parametrize(("args", "fragment"), [
    (["--tag", "v1", "--rev", "a" * 40], "both tag= and rev="),
    (["--tag", "nope"], "tag 'nope' does not exist"),
    ([], "needs tag= or rev="),
])
def test_cli_git_bad_input(repos: Repos, tmp_path: Path, args: list[str], fragment: str) -> None:
    out = _tdx(tmp_path / "tdx", "fetch", "--hash", "--git", repos.daemon.url("a.git"), *args)
    assert out.returncode != 0
    assert out.stdout == ""
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], out.stderr
