"""The module content hash of spec §8.3 and source trees for builds (L3): the files git sees, hashed in order.

Files are listed by git itself so `.gitignore` means exactly what git says it means: inside a git
work tree, `git ls-files --cached --others --exclude-standard` of that repository; elsewhere the
same command against an empty throw-away repository whose work tree is the directory. Per file:
sha256(relpath UTF-8 + NUL + contents) as lower-case hex; the result is sha256 of those hex digests
concatenated in byte order of the paths. A symlink's "contents" is its target, as in git.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from tdxstore.errors import CommandError, LockfileError
from tdxstore.fetch.git import git_env
from tdxstore.sandbox import process


def _git(args: list[str], cwd: Path, home: Path) -> bytes:
    argv = ["git", "-c", "safe.directory=*", "-c", "core.quotePath=false", *args]
    return process.run(argv, env=git_env(home), cwd=cwd, what="git").stdout


def module_files(directory: Path, *, standalone: bool = False) -> list[str]:
    """Relative POSIX paths of the module's files as git sees them, sorted by their UTF-8 bytes.

    `standalone` ignores any repository around `directory` (a checkout in a temporary directory
    that may lie below some work tree, e.g. a store kept in an ignored `.tdx/`).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise LockfileError(f"module directory {str(directory)!r} does not exist",
                            hint="check the path (relative to the image project)", code="local-module-missing")
    if process.which("git") is None:
        raise LockfileError("git is not installed; it lists a module's files (.gitignore rules)",
                            hint="install git (apt-get install git)", code="git-missing")
    with tempfile.TemporaryDirectory(prefix="tdx-tree-") as tmp_s:
        tmp = Path(tmp_s)
        try:
            inside = not standalone and _git(["rev-parse", "--is-inside-work-tree"], directory,
                                             tmp).strip() == b"true"
        except CommandError:
            inside = False
        try:
            if inside:
                out = _git(["ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
                           directory, tmp)
            else:
                _git(["init", "--quiet", "--bare", str(tmp / "index.git")], tmp, tmp)
                out = _git([f"--git-dir={tmp / 'index.git'}", f"--work-tree={directory}", "ls-files", "-z",
                            "--others", "--exclude-standard"], directory, tmp)
        except CommandError as e:
            raise LockfileError(f"cannot list the files of {str(directory)!r} with git", detail=e.detail,
                                code="module-list-failed") from e
    names = {n.decode("utf-8", "surrogateescape") for n in out.split(b"\0") if n}
    # --cached lists deleted-but-tracked files and submodules (directories): hash what is really there.
    files = [n for n in names if not n.endswith("/") and (os.path.islink(directory / n) or
                                                          (directory / n).is_file())]
    return sorted(files, key=lambda n: n.encode("utf-8", "surrogateescape"))


def file_digest(directory: Path, relpath: str) -> str:
    """sha256(relpath + "\\0" + contents) as hex; a symlink contributes its target."""
    path = directory / relpath
    h = hashlib.sha256(relpath.encode("utf-8", "surrogateescape") + b"\0")
    if path.is_symlink():
        h.update(os.fsencode(os.readlink(path)))
    else:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def tree_hash(directory: Path, *, standalone: bool = False) -> str:
    """`sha256:<hex>`: the §8.3 integrity of a module directory."""
    directory = Path(directory)
    total = hashlib.sha256()
    for rel in module_files(directory, standalone=standalone):
        total.update(file_digest(directory, rel).encode("ascii"))
    return "sha256:" + total.hexdigest()


def copy_module_tree(directory: Path, dest: Path, *, standalone: bool = False) -> str:
    """Copy exactly the hashed files of `directory` into `dest` (new); return their tree hash."""
    directory = Path(directory)
    dest.mkdir(parents=True)
    total = hashlib.sha256()
    for rel in module_files(directory, standalone=standalone):
        src, target = directory / rel, dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        total.update(file_digest(directory, rel).encode("ascii"))
        if src.is_symlink():
            os.symlink(os.readlink(src), target)
        else:
            shutil.copy2(src, target)
    return "sha256:" + total.hexdigest()
