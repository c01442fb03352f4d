"""`tdx module hash` (§8.3) against an independent computation written from the spec's four steps.

The tree has ignored files (a root and a nested .gitignore), nested directories, non-ASCII names and a
symlink; it is hashed outside any repository and inside a git work tree (committed and untracked
files), and the same content under two different commits gives the same integrity.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tdxstore.errors import LockfileError
from tdxstore.store.tree import copy_module_tree, module_files, tree_hash
from tests.fetchserver import git, write_tree

REPO = Path(__file__).parents[3]
FILES: dict[str, str | bytes] = {
    "pyproject.toml": '[project]\nname = "tdx-demo"\nversion = "1.0"\n',
    "tdx_demo/__init__.py": "def apply(image):\n    pass\n",
    "tdx_demo/data/données/é.conf": "é=1\n",
    "tdx_demo/data/z/deep/deeper/x.bin": bytes(range(256)),
    "tdx_demo/__pycache__/x.cpython-311.pyc": b"\x00junk",
    "build/lib/tdx_demo/__init__.py": "stale copy\n",
    "notes.log": "ignored by *.log\n",
    "tdx_demo/data/z/.gitignore": "*.tmp\n",
    "tdx_demo/data/z/scratch.tmp": "ignored by the nested .gitignore\n",
    ".gitignore": "__pycache__/\nbuild/\n*.log\n",
}
KEPT = ["pyproject.toml", "tdx_demo/__init__.py", "tdx_demo/data/données/é.conf",
        "tdx_demo/data/z/deep/deeper/x.bin", "tdx_demo/data/z/.gitignore", ".gitignore", "link"]


def make_tree(root: Path) -> Path:
    write_tree(root, FILES)
    os.symlink("tdx_demo/__init__.py", root / "link")
    return root


def independent_hash(root: Path, kept: list[str]) -> str:
    # 1. the files (the test states which ones .gitignore keeps); 2. sorted by name (UTF-8 bytes);
    # 3. sha256(relative path + NUL + contents) each, as hex; 4. sha256 of the concatenation.
    names = sorted(kept, key=lambda n: n.encode())
    digests = []
    for n in names:
        p = root / n
        body = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
        digests.append(hashlib.sha256(n.encode() + b"\0" + body).hexdigest())
    return "sha256:" + hashlib.sha256("".join(digests).encode()).hexdigest()


def test_outside_git(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "mod")
    assert module_files(root) == sorted(KEPT, key=lambda n: n.encode())
    assert tree_hash(root) == independent_hash(root, KEPT)


def test_inside_git_work_tree_tracked_and_untracked(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    root = make_tree(repo / "modules" / "demo")
    write_tree(repo, {"README": "outside the module\n"})
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one")
    write_tree(root, {"tdx_demo/new.py": "x = 1\n"})  # untracked, not ignored: counted
    (root / "tdx_demo" / "data" / "z" / "deep" / "deeper" / "x.bin").unlink()  # tracked, deleted: not counted
    kept = [k for k in KEPT if not k.endswith("x.bin")] + ["tdx_demo/new.py"]
    assert tree_hash(root) == independent_hash(root, kept)


def test_same_content_two_commits_same_hash(tmp_path: Path) -> None:
    a, b = make_tree(tmp_path / "a"), make_tree(tmp_path / "b")
    for i, r in enumerate((a, b)):
        git(r, "init", "-q")
        git(r, "add", "-A")
        git(r, "-c", f"user.name=u{i}", "commit", "-q", "-m", f"history {i}")
    assert git(a, "rev-parse", "HEAD") != git(b, "rev-parse", "HEAD")
    assert tree_hash(a) == tree_hash(b) == tree_hash(make_tree(tmp_path / "c"))


def test_copy_keeps_only_hashed_files(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "mod")
    digest = copy_module_tree(root, tmp_path / "copy")
    assert digest == tree_hash(root) == tree_hash(tmp_path / "copy")
    assert not (tmp_path / "copy" / "notes.log").exists()


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(LockfileError) as info:
        tree_hash(tmp_path / "nope")
    assert info.value.code == "local-module-missing"


def test_cli_prints_the_hash(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "mod")
    r = subprocess.run([sys.executable, "-m", "tdxstore.cli.app", "module", "hash", str(root)], cwd=REPO,
                       capture_output=True, text=True, env={**os.environ, "TDX_HOME": str(tmp_path / "h")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == independent_hash(root, KEPT)


def test_standalone_ignores_an_enclosing_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_tree(repo, {".gitignore": ".tdx/\n"})
    git(repo, "init", "-q")
    root = make_tree(repo / ".tdx" / "tmp" / "checkout")  # e.g. a checkout below a store in an ignored dir
    assert module_files(root) == []  # as the enclosing repository sees it: all ignored
    assert tree_hash(root, standalone=True) == independent_hash(root, KEPT)
