"""The public `fetch`, `fetch_git` and `hash_of` (L4): verified external content in the store.

A fetched path is content-addressed: flat (`fetch`) or NAR (`fetch_git`) SHA-256 plus the name,
never the URL, so it equals Nix's fixed-output path. If that path is already valid, no network I/O
happens. Otherwise one process per hash (flock under the store's `locks/`) downloads into the
store's `tmp/`, verifies, then adds; a mismatch raises HashMismatchError and nothing is registered.
`realise_fetch`/`realise_fetch_git` hold that logic for `realise` to call as fixed-output builtins.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from tdxstore._fs import sha256_file
from tdxstore._lock import locked
from tdxstore.errors import FetchError, HashMismatchError, UsageError
from tdxstore.fetch import offline
from tdxstore.fetch.download import (
    DEFAULT_LIMITS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Limits,
    Progress,
    check_url,
    download,
)
from tdxstore.fetch.git import GIT_RESOLUTIONS, check_git_url, check_ref, fetch_git_tree, known_commit, remember_commit
from tdxstore.fetch.hashspec import format_sha256, missing_hash_error, parse_sha256
from tdxstore.fetch.record import FetchKind, check_allowed, record
from tdxstore.store.builtins import default_git_name, default_name, fetchgit_derivation, fetchurl_derivation
from tdxstore.store.derivation import Derivation
from tdxstore.store.path import StorePath, check_name, make_fixed_output_path
from tdxstore.store.realise import Options, realise
from tdxstore.store.store import Store

log = logging.getLogger(__name__)

def _fetch_lock(store: Store, kind: str, hex_digest: str) -> Path:
    # Not the store path's own lock: Store.add_* takes that one itself, and flock is per open file.
    return store.locks / f"fetch-{kind}-{hex_digest}.lock"


def _realise_fixed(store: Store, drv: Derivation, options: Options) -> StorePath:
    if not store.is_valid(drv.out):  # a valid path means no network I/O and no .drv written
        realise(store, [drv], options)
    return drv.out


def realise_fetch(store: Store, url: str, hex_digest: str, name: str, *, progress: Progress | None = None,
                  timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES,
                  limits: Limits = DEFAULT_LIMITS) -> StorePath:
    """Make the flat fixed-output path of (hex_digest, name) valid, downloading `url` if needed."""
    check_url(url)
    check_name(name)
    options = Options(download_progress=progress, fetch_timeout=timeout, fetch_retries=retries,
                      fetch_max_size=limits.max_size, fetch_deadline=limits.deadline)
    return _realise_fixed(store, fetchurl_derivation(url, hex_digest, name), options)


def _realise_git(store: Store, url: str, tag: str | None, rev: str | None, hex_digest: str | None,
                 name: str, submodules: bool) -> tuple[StorePath, str | None, str]:
    """(store path, resolved commit or None if unknown on a cache hit, NAR hex). hex_digest None: no check."""
    check_git_url(url)
    check_ref(tag, rev)
    check_name(name)
    if hex_digest is not None:
        drv = fetchgit_derivation(url, tag, rev, hex_digest, name, submodules)
        try:
            sp = _realise_fixed(store, drv, Options())
        except HashMismatchError as err:
            commit = known_commit(store.home / GIT_RESOLUTIONS, url, tag, err.got.removeprefix("sha256:"))
            if commit:
                err.detail = f"{'tag ' + tag if tag else 'commit'} resolved to commit {commit}"
            raise
        return sp, known_commit(store.home / GIT_RESOLUTIONS, url, tag, hex_digest), hex_digest
    # No hash yet (`tdx fetch --hash --git`): check out, and add the tree as it is; the add hashes it.
    lock_key = hashlib.sha256(f"{url}\0{tag}\0{rev}\0{submodules}".encode()).hexdigest()
    with locked([_fetch_lock(store, "git", lock_key)]), store.temp_dir("fetch-git") as tmp:
        tree = tmp / name
        commit = fetch_git_tree(url, tree, tag=tag, rev=rev, submodules=submodules)
        sp = store.add_path(tree, name=name)
        got = store.query(sp).nar_hash.removeprefix("sha256:")
        remember_commit(store.home / GIT_RESOLUTIONS, url, tag, got, commit)
    if sp != make_fixed_output_path(got, name, recursive=True):
        raise FetchError(f"adding the tree of {url} produced {sp.logical}, not its NAR-hash path",
                         code="store-path-mismatch", hint="this is a bug in tdx; please report it")
    return sp, commit, got


def realise_fetch_git(store: Store, url: str, tag: str | None, rev: str | None, hex_digest: str,
                      name: str, submodules: bool = False) -> StorePath:
    """Make the recursive fixed-output path of (hex_digest, name) valid, checking out `url` if needed."""
    return _realise_git(store, url, tag, rev, hex_digest, name, submodules)[0]


def _offline_path(store: Store, drv: Derivation, call: str, url: str) -> StorePath | None:
    """`--offline`: the path a fetch would make when it is not in the store, noted as missing (so
    evaluation goes on and one error lists every missing fetch); None: fetch as usual."""
    if not offline.enabled() or offline.is_local(url) or store.is_valid(drv.out):
        return None
    offline.note(f"{call} -> {drv.out}")
    return drv.out


def _open(store: Store | None) -> tuple[Store, bool]:
    return (store, False) if store is not None else (Store.open(), True)


def local_url(text: str) -> str:
    """`text` unchanged if it is a URL, else the file:// URL of an existing local regular file."""
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if path.is_dir():
        raise UsageError(f"{text!r} is a directory; fetch stores single files",
                         hint=f"add a directory with `tdx store add {text}`, or learn its hash with "
                              f"`tdx fetch --hash {text}`", code="not-a-file")
    if not path.exists():
        raise UsageError(f"{text!r} is neither an existing file nor a URL",
                         hint="give a path to a file or a URL such as https://host/file", code="bad-url")
    return path.absolute().as_uri()


def fetch(url: str, sha256: str | None = None, *, name: str | None = None, store: Store | None = None,
          progress: Progress | None = None, limits: Limits = DEFAULT_LIMITS) -> Path:
    """Download `url` (or copy a local file), verify it against `sha256`, return its Path in the store."""
    url = local_url(url)
    check_url(url)
    if sha256 is None:
        raise missing_hash_error(url)
    hex_digest = parse_sha256(sha256)
    name = name or default_name(url)
    check_allowed(url, format_sha256(hex_digest), FetchKind.FETCH)
    st, owned = _open(store)
    try:
        sp = _offline_path(st, fetchurl_derivation(url, hex_digest, name), f"fetch({url!r})", url)
        if sp is None:
            sp = realise_fetch(st, url, hex_digest, name, progress=progress, limits=limits)
        record(url, format_sha256(hex_digest), kind=FetchKind.FETCH, name=name)
        return st.real_path(sp)
    finally:
        if owned:
            st.close()


def fetch_git(url: str, *, tag: str | None = None, rev: str | None = None, sha256: str | None = None,
              submodules: bool = False, name: str | None = None, store: Store | None = None) -> Path:
    """Check out `tag` or `rev` of `url` (no `.git`), verify its NAR SHA-256, return its store Path."""
    check_git_url(url)
    check_ref(tag, rev)
    if sha256 is None:
        raise missing_hash_error(url, git=True)
    hex_digest = parse_sha256(sha256)
    name = name or default_git_name(url)
    check_allowed(url, format_sha256(hex_digest), FetchKind.FETCH_GIT)
    st, owned = _open(store)
    try:
        sp = _offline_path(st, fetchgit_derivation(url, tag, rev, hex_digest, name, submodules),
                           f"fetch_git({url!r}, {'tag' if tag else 'rev'}={tag or rev!r})", url)
        commit: str | None = None
        if sp is None:
            sp, commit, _ = _realise_git(st, url, tag, rev, hex_digest, name, submodules)
        record(url, format_sha256(hex_digest), kind=FetchKind.FETCH_GIT, rev=commit or rev, tag=tag,
               name=name)
        return st.real_path(sp)
    finally:
        if owned:
            st.close()


def _hash_local(path: Path) -> str:
    if path.is_dir():
        from tdxstore.store.nar import hash_path

        return hash_path(path).hex
    if not path.is_file():  # /dev/zero, a fifo: no size, maybe no end
        raise UsageError(f"{str(path)!r} is not a regular file or a directory",
                         hint="hash a regular file, a directory or a URL", code="not-a-file")
    return sha256_file(path).hex()


def hash_of(url_or_path: str | Path, *, store: Store | None = None, progress: Progress | None = None,
            limits: Limits = DEFAULT_LIMITS) -> str:
    """`sha256:<hex>` of a URL's bytes, a local file's bytes, or a local directory's NAR.

    A URL is downloaded into the store (as `nix-prefetch-url` does), so a following `fetch()` of it
    with the printed hash does no network I/O.
    """
    text = str(url_or_path)
    if isinstance(url_or_path, Path) or "://" not in text:
        path = Path(text).expanduser()
        if not path.exists():
            raise UsageError(f"{text!r} is neither an existing file nor a URL",
                             hint="give a path to a file or a URL such as https://host/file", code="bad-url")
        return format_sha256(_hash_local(path))
    parts = check_url(text)
    if parts.scheme == "file":
        from urllib.request import url2pathname

        return hash_of(Path(url2pathname(parts.path)))
    name = default_name(text)
    st, owned = _open(store)
    try:
        with st.temp_dir("hash-of") as tmp:
            staged = tmp / name
            got = download(text, staged, expected_sha256=None, progress=progress, limits=limits)
            st.add_flat(staged, name=name)
        return format_sha256(got)
    finally:
        if owned:
            st.close()


def hash_of_git(url: str, *, tag: str | None = None, rev: str | None = None, submodules: bool = False,
                name: str | None = None, store: Store | None = None) -> tuple[str, str]:
    """(`sha256:<hex>` of the tree's NAR, resolved commit) for `fetch_git`; the tree enters the store."""
    st, owned = _open(store)
    try:
        _, commit, got = _realise_git(st, url, tag, rev, None, name or default_git_name(url), submodules)
        assert commit is not None
        return format_sha256(got), commit
    finally:
        if owned:
            st.close()
