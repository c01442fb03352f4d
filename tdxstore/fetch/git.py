"""Fetch the tree of one git tag or commit into a directory, without `.git` (L2: never imports the store).

Runs the real `git` client through the process runner with a clean environment (no system or user
gitconfig, HOME in a temporary directory, no terminal prompts, only the transport protocols named
below). The result is a plain tree whose content hash does not depend on history; annotated tags are
peeled to their commit. `dest` appears only when the checkout is complete.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path

from tdxstore._fs import atomic_write, remove_tree
from tdxstore.errors import CommandError, FetchError, UsageError
from tdxstore.fetch import offline
from tdxstore.sandbox import process
from tdxstore.sandbox.run import bwrap_command
from tdxstore.sandbox.spec import Mount, SandboxSpec

log = logging.getLogger(__name__)

GIT_SCHEMES = ("http", "https", "git", "ssh", "file")
_SCP_RE = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*")
_REV_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
GIT_TIMEOUT = 3600.0
_NOT_FOUND = ("couldn't find remote ref", "not our ref", "no such remote ref", "unadvertised object",
              "did not find", "invalid refspec")


def check_git_url(url: str) -> None:
    """Validate a repository URL (no I/O); UsageError code "bad-url" when malformed or unsupported."""
    if not isinstance(url, str) or not url or any(c.isspace() or ord(c) < 0x20 for c in url):
        raise UsageError(f"malformed git URL {url!r}: it is empty or contains whitespace",
                         hint="write a URL such as https://github.com/org/repo", code="bad-url")
    if url.startswith("-"):
        raise UsageError(f"malformed git URL {url!r}: it starts with '-'", code="bad-url")
    if "://" in url:
        scheme = url.split("://", 1)[0]
        if scheme not in GIT_SCHEMES:
            raise UsageError(f"unsupported git URL scheme {scheme!r} in {url!r}",
                             hint=f"use one of: {', '.join(s + '://' for s in GIT_SCHEMES)}",
                             code="bad-url")
        rest = url.split("://", 1)[1]
        if scheme != "file" and (not rest or rest.startswith("/")):
            raise UsageError(f"malformed git URL {url!r}: it has no host name", code="bad-url")
        return
    if "::" in url:  # git's remote-helper syntax (ext::, fd::) can run commands: refuse it
        raise UsageError(f"unsupported git URL {url!r}: remote helpers ('<transport>::') are not allowed",
                         code="bad-url")
    if not (_SCP_RE.fullmatch(url) or url.startswith("/")):
        raise UsageError(f"malformed git URL {url!r}: expected scheme://host/path, user@host:path "
                         "or an absolute path", hint="write a URL such as https://github.com/org/repo",
                         code="bad-url")


def check_ref(tag: str | None, rev: str | None) -> None:
    """Exactly one of `tag` and `rev`; `rev` a full commit id; UsageError otherwise."""
    if tag is not None and rev is not None:
        raise UsageError("fetch_git() got both tag= and rev=; give exactly one",
                         hint="pin a commit with rev= (the tag is then redundant)", code="bad-git-ref")
    if tag is None and rev is None:
        raise UsageError("fetch_git() needs tag= or rev= to know what to fetch",
                         hint="pass tag='v1.2.3' or rev='<40-hex commit id>'", code="bad-git-ref")
    if rev is not None and not _REV_RE.fullmatch(rev):
        raise UsageError(f"rev={rev!r} is not a full commit id (40 lower-case hex digits)",
                         hint="use `git rev-parse <ref>` to get the full id", code="bad-git-ref")
    if tag is not None and (not tag or tag.startswith("-") or any(c.isspace() or c in "~^:?*[\\" for c in tag)
                            or ".." in tag or tag.endswith((".lock", "/", "."))):
        raise UsageError(f"tag={tag!r} is not a valid git tag name", code="bad-git-ref")


def git_env(home: Path) -> dict[str, str]:
    """The environment git runs with: no gitconfig, no prompts, C locale, host proxy and CA settings."""
    env = process.host_env({
        "HOME": os.fspath(home),
        "XDG_CONFIG_HOME": os.fspath(home / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_ALLOW_PROTOCOL": ":".join(GIT_SCHEMES),
        "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
        "GIT_HTTP_LOW_SPEED_TIME": "60",
        "LC_ALL": "C",
        "LANG": "C",
    })
    ca = env.get("GIT_SSL_CAINFO") or env.get("REQUESTS_CA_BUNDLE") or env.get("SSL_CERT_FILE")
    if ca:
        env["GIT_SSL_CAINFO"] = ca
    return env


def _git(args: list[str], work: Path, env: dict[str, str], what: str) -> str:
    """Run git in a bubblewrap sandbox: network yes, the host's /usr, the work dir writable, nothing else.

    Writable: the checkout and git's private HOME. A `file://` remote's directory (and its siblings,
    for relative submodule URLs) is bound read-only, named in `TDX_GIT_READABLE`. Without bwrap (a
    developer machine), git runs with the clean environment only.
    """
    argv = ["git", "-c", "advice.detachedHead=false", "-c", "init.defaultBranch=main", *args]
    bwrap = process.which("bwrap")
    if bwrap is None:
        return process.run(argv, env=env, cwd=work, timeout=GIT_TIMEOUT, what=what).stdout.decode().strip()
    writable = {os.path.abspath(p) for p in (work, env.get("HOME", work))}
    readable = {os.path.abspath(r) for r in env.get("TDX_GIT_READABLE", "").split(os.pathsep) if r} - writable
    mounts = [Mount(Path(d), d, writable=True) for d in writable] + [Mount(Path(d), d) for d in readable]
    spec = SandboxSpec(argv=tuple(argv), root=Path("/"), usr_only=True, mounts=tuple(mounts), network=True,
                       env={k: v for k, v in env.items() if k != "TDX_GIT_READABLE"}, cwd=os.path.abspath(work))
    with bwrap_command(spec, bwrap) as sandboxed:
        return process.run(sandboxed, env=env, cwd=work, timeout=GIT_TIMEOUT, what=what).stdout.decode().strip()


def _fetch_ref(url: str, work: Path, env: dict[str, str], tag: str | None, rev: str | None) -> str:
    """Fetch the tag or commit into `work` and return the peeled commit id."""
    if tag is not None:
        try:
            _git(["fetch", "--quiet", "--no-tags", "--depth", "1", "origin",
                  f"+refs/tags/{tag}:refs/tags/{tag}"], work, env, "git fetch")
        except CommandError as e:
            if any(m in (e.detail or "") for m in _NOT_FOUND):
                raise FetchError(f"tag {tag!r} does not exist in {url}", code="git-ref-not-found",
                                 hint=f"list the tags with `git ls-remote --tags {url}`") from e
            raise FetchError(f"git fetch of tag {tag!r} from {url} failed", detail=e.detail,
                             code="git-fetch-failed") from e
        return _git(["rev-parse", "--verify", f"refs/tags/{tag}^{{commit}}"], work, env, "git rev-parse")
    assert rev is not None
    try:
        _git(["fetch", "--quiet", "--no-tags", "--depth", "1", "origin", rev], work, env, "git fetch")
    except CommandError as shallow:
        # Servers without uploadpack.allowReachableSHA1InWant refuse a bare sha: fetch everything.
        log.info("shallow fetch of %s from %s refused (%s); fetching all refs", rev, url, shallow.message)
        try:
            _git(["fetch", "--quiet", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"],
                 work, env, "git fetch")
        except CommandError as e:
            raise FetchError(f"git fetch from {url} failed", detail=e.detail, code="git-fetch-failed") from e
    try:
        return _git(["rev-parse", "--verify", f"{rev}^{{commit}}"], work, env, "git rev-parse")
    except CommandError as e:
        raise FetchError(f"commit {rev} is not reachable from any branch or tag of {url}",
                         code="git-ref-not-found", hint="check the commit id and the repository URL") from e


def _strip_git_dirs(tree: Path) -> None:
    """Remove `.git` (the repository, and the gitfiles of submodules): git never tracks that name."""
    for root, dirs, files in os.walk(tree):
        for name in (*dirs, *files):
            if name == ".git":
                remove_tree(Path(root) / name)
        dirs[:] = [d for d in dirs if d != ".git"]


def _update_submodules(url: str, commit: str, work: Path, env: dict[str, str]) -> None:
    """Check out the submodules at the commits the tree records (shallow first, then in full)."""
    base = ["submodule", "update", "--quiet", "--init", "--recursive"]
    try:
        _git([*base, "--depth", "1"], work, env, "git submodule update")
        return
    except CommandError as shallow:
        log.info("shallow submodule update refused (%s); retrying in full", shallow.message)
    try:
        _git(base, work, env, "git submodule update")
    except CommandError as e:
        raise FetchError(f"fetching the submodules of {url} at {commit} failed", detail=e.detail,
                         code="git-fetch-failed") from e


def fetch_git_tree(url: str, dest: Path, *, tag: str | None = None, rev: str | None = None,
                   submodules: bool = False) -> str:
    """Check out `tag` or `rev` of `url` into `dest` (which must not exist) and return the commit id."""
    check_git_url(url)
    check_ref(tag, rev)
    if not offline.is_local(url):
        offline.refuse(f"git checkout of {url} at {tag or rev}")
    if process.which("git") is None:
        raise FetchError("git is not installed", hint="install git (apt-get install git)", code="git-missing")
    if dest.exists():
        raise FetchError(f"cannot check out into {str(dest)!r}: it already exists", code="fetch-failed")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tdx-git-home-") as home_s, \
            tempfile.TemporaryDirectory(prefix=f".{dest.name}.", dir=dest.parent) as tmp_s:
        env = git_env(Path(home_s))
        if url.startswith("file://"):
            env["TDX_GIT_READABLE"] = os.path.dirname(os.path.abspath(url[len("file://"):].rstrip("/")))
        work = Path(tmp_s) / "tree"
        work.mkdir()
        _git(["init", "--quiet"], work, env, "git init")
        # A remote named origin lets relative submodule URLs (../lib.git) resolve against `url`.
        _git(["remote", "add", "origin", url], work, env, "git remote add")
        commit = _fetch_ref(url, work, env, tag, rev)
        _git(["checkout", "--quiet", "--detach", commit], work, env, "git checkout")
        if submodules:
            _update_submodules(url, commit, work, env)
        _strip_git_dirs(work)
        os.replace(work, dest)
    log.debug("fetched %s at %s -> %s", url, commit, dest)
    return commit


#: Where tag -> commit resolutions of fetched trees are remembered, below the store's home.
GIT_RESOLUTIONS = "fetch-git-v1"


def _resolution_file(directory: Path, hex_digest: str) -> Path:
    return directory / f"{hex_digest}.json"


def remember_commit(directory: Path, url: str, tag: str | None, hex_digest: str, commit: str) -> None:
    """Note which commit `tag` of `url` resolved to for this tree, so a cache hit can still record it."""
    path = _resolution_file(directory, hex_digest)
    try:
        known = json.loads(path.read_text()) if path.exists() else []
    except (OSError, ValueError):
        known = []
    entry = {"url": url, "tag": tag, "rev": commit}
    if entry not in known:
        atomic_write(path, json.dumps([*known, entry], indent=1, sort_keys=True).encode())


def known_commit(directory: Path, url: str, tag: str | None, hex_digest: str) -> str | None:
    """The commit remembered for (url, tag) and this tree, or None (never any network I/O)."""
    try:
        known = json.loads(_resolution_file(directory, hex_digest).read_text())
    except (OSError, ValueError):
        return None
    for e in known if isinstance(known, list) else []:
        if isinstance(e, dict) and e.get("url") == url and e.get("tag") == tag:
            rev = e.get("rev")
            return rev if isinstance(rev, str) else None
    return None
