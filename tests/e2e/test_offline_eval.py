"""`--offline` reaches evaluation and the lock step: `fetch()`/`fetch_git()` while a TDXfile (or a
derivation file) is evaluated and `tdx lock --offline` start no download — real servers on 127.0.0.1
count every request and see none — and everything the store lacks is listed in one offline-missing
error before anything runs; with everything in the store, the same commands succeed offline."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tdxstore.builders.fetch import fetch
from tdxstore.store.store import Store
from tests.e2e.test_lock import TDXFILE, debian_server, fake_debian, index, ok, one_error, project, tdx
from tests.fetchserver import FetchServer
from tests.wheelindex import SimpleIndex

__all__ = ["debian_server", "fake_debian", "index"]  # fixtures: the lock tests' index and Debian archive
A, B = b"first source\n", b"second source\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fetches_while_evaluating_are_one_list_and_no_request(tmp_path: Path, busybox_tree: Path) -> None:
    files = FetchServer().start()
    try:
        files.files["a.txt"], files.files["b.txt"] = A, B
        home = tmp_path / "home"
        root = Store.open(home).add_path(busybox_tree, "busybox-root")
        url_a, url_b, url_git = files.url("file/a.txt"), files.url("file/b.txt"), "git://127.0.0.1:9/none.git"
        f = tmp_path / "pkg.py"
        f.write_text("from tdx import StorePath, derivation, fetch, fetch_git\n"
                     f"a = fetch({url_a!r}, sha256={_sha(A)!r})\n"
                     f"b = fetch({url_b!r}, sha256={_sha(B)!r})\n"
                     f"g = fetch_git({url_git!r}, tag='v1', sha256={'0' * 64!r})\n"
                     f"root = StorePath.parse({root.logical!r})\n"
                     "default = derivation('pkg', '/bin/sh', ['-c', f'cat {a} {b} > $out/x'], root=root)\n")
        err = one_error(tdx(home, "realise", "--offline", str(f)))
        assert "--offline: 3 thing(s) would need the network" in err, err
        assert url_a in err and url_b in err and url_git in err and "-a.txt" in err
        assert not files.hits  # not one request

        store = Store.open(home)  # a is fetched (online), b and the git tree are still missing
        fetch(url_a, sha256=_sha(A), store=store)
        store.close()
        assert sum(files.hits.values()) == 1
        err = one_error(tdx(home, "realise", "--offline", str(f)))
        assert "--offline: 2 thing(s)" in err and url_a not in err and url_b in err and url_git in err, err
        assert sum(files.hits.values()) == 1
    finally:
        files.stop()


def test_lock_offline_lists_what_is_missing_and_works_from_the_store(tmp_path: Path, index: SimpleIndex) -> None:
    files = FetchServer().start()
    try:
        files.files["blob.txt"] = A
        url = files.url("file/blob.txt")
        tdxfile = (f"from tdx import Image, fetch\nblob = fetch({url!r}, sha256={_sha(A)!r})\n"
                   + TDXFILE.replace("from tdx import Image\n", "") + "image.file('/etc/blob', src=blob)\n")
        proj = project(tmp_path / "p", ["tdx-demo<2"], index.url, tdxfile=tdxfile)
        a, b = tmp_path / "a", tmp_path / "b"

        err = one_error(tdx(a, "lock", "--offline", "-p", str(proj)))  # no lock: resolving needs the index
        assert "--offline: 1 thing(s)" in err and f"the package index {index.url}" in err and "tdx-demo<2" in err
        assert not index.hits and not files.hits and not (proj / "tdx.lock").exists()

        ok(tdx(a, "lock", "-p", str(proj)))  # online: the wheel and the fetch enter store A
        lock = (proj / "tdx.lock").read_bytes()
        index.hits.clear()
        files.hits.clear()

        err = one_error(tdx(b, "lock", "--offline", "-p", str(proj)), user_traceback=True)  # empty store B
        assert "--offline: 2 thing(s)" in err and "module tdx-demo 1.0.0" in err and url in err, err
        assert "the run stopped on" in err  # the TDXfile imports the module the store lacks
        assert not index.hits and not files.hits and (proj / "tdx.lock").read_bytes() == lock

        again = tdx(a, "lock", "--offline", "-p", str(proj))  # store A holds it all
        assert again.returncode == 0 and "is up to date" in again.stderr, again.stderr
        assert not index.hits and not files.hits and (proj / "tdx.lock").read_bytes() == lock
    finally:
        files.stop()
