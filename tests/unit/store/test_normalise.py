"""normalise_tree: canonical modes and times, no setuid/setgid/sticky, special files refused."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from tdxstore._fs import remove_tree
from tdxstore.errors import NarError
from tdxstore.store import nar
from tdxstore.store.normalise import CANONICAL_TIME, make_tree_writable, normalise_tree


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def build(root: Path) -> None:
    root.mkdir()
    for name, m in [("plain", 0o644), ("rw-only", 0o600), ("user-exec", 0o700), ("group-exec", 0o654),
                    ("other-exec", 0o601), ("setuid", 0o4755), ("setgid", 0o2644), ("writable", 0o666)]:
        (root / name).write_bytes(name.encode())
        (root / name).chmod(m)
    (root / "sticky").mkdir()
    (root / "sticky").chmod(0o1777)
    (root / "sgid-dir" / "inner").mkdir(parents=True)
    (root / "sgid-dir").chmod(0o2775)
    (root / "sgid-dir" / "inner" / "f").write_bytes(b"f")
    (root / "closed").mkdir()
    (root / "closed" / "f").write_bytes(b"x")
    (root / "closed").chmod(0o000)
    os.symlink("plain", root / "link")
    os.symlink("/nonexistent/target", root / "dangling")


EXPECTED = {
    "plain": 0o444, "rw-only": 0o444, "user-exec": 0o555, "group-exec": 0o555, "other-exec": 0o555,
    "setuid": 0o555, "setgid": 0o444, "writable": 0o444, "sticky": 0o555, "sgid-dir": 0o555,
    "sgid-dir/inner": 0o555, "sgid-dir/inner/f": 0o444, "closed": 0o555, "closed/f": 0o444, ".": 0o555,
}


def test_modes_and_times(tmp_path: Path) -> None:
    root = tmp_path / "out"
    build(root)
    # Listed first: reading a directory afterwards would itself bump its atime (relatime).
    everything = [os.path.join(d, n) for d, dirs, files in os.walk(root) for n in [".", *dirs, *files]]
    normalise_tree(root)
    assert len(everything) == 21  # directories appear twice: as an entry and as "."
    for p in everything:
        st = os.lstat(p)
        assert st.st_mtime == CANONICAL_TIME and st.st_atime == CANONICAL_TIME, p
    for rel, want in EXPECTED.items():
        assert mode(root / rel) == want, rel
    assert os.readlink(root / "dangling") == "/nonexistent/target"  # not followed, not touched
    assert os.readlink(root / "link") == "plain"
    make_tree_writable(root)
    remove_tree(root)
    assert not root.exists()


def test_idempotent_and_hash_stable(tmp_path: Path) -> None:
    root = tmp_path / "out"
    build(root)
    normalise_tree(root)
    first = nar.hash_path(root)
    normalise_tree(root)
    assert nar.hash_path(root) == first
    assert mode(root / "plain") == 0o444


def test_single_file_and_symlink_roots(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    f.chmod(0o4711)
    normalise_tree(f)
    assert mode(f) == 0o555 and f.stat().st_mtime == CANONICAL_TIME
    link = tmp_path / "l"
    os.symlink("f-does-not-matter", link)
    normalise_tree(link)
    assert os.lstat(link).st_mtime == CANONICAL_TIME


@pytest.mark.parametrize("kind", ["fifo", "socket"])
def test_special_files_refused_with_their_name(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "out"
    (root / "sub").mkdir(parents=True)
    special = root / "sub" / "special-thing"
    if kind == "fifo":
        os.mkfifo(special)
    else:
        # Bound by a relative name: a socket's address is limited to 108 bytes, a deep TMPDIR is longer.
        monkeypatch.chdir(special.parent)
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(special.name)
        sock.close()
    with pytest.raises(NarError) as err:
        normalise_tree(root)
    assert err.value.code == "nar-unsupported-file"
    assert str(special) in err.value.message and kind in err.value.message
    make_tree_writable(root)
    remove_tree(root)


def test_make_tree_writable_reaches_closed_directories(tmp_path: Path) -> None:
    root = tmp_path / "out"
    (root / "a" / "b").mkdir(parents=True)
    for p in (root / "a" / "b", root / "a", root):
        p.chmod(0o000 if p != root else 0o555)
    make_tree_writable(root)
    assert all(mode(p) & 0o700 == 0o700 for p in (root, root / "a", root / "a" / "b"))
