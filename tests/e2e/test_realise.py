"""Realisation end to end: real bwrap builds in a busybox root, chains, determinism, concurrency, errors."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdxstore.errors import BuildError, DerivationError, HashMismatchError
from tdxstore.store.bundle import export_bundle, import_bundle
from tdxstore.store.derivation import FixedOutput, derivation
from tdxstore.store.evaluate import resolve_targets
from tdxstore.store.path import StorePath
from tdxstore.store.realise import Options, instantiate, load_derivation, plan, realise
from tdxstore.store.store import Store
from tests.fetchserver import FetchServer, serve

pytestmark = pytest.mark.needs_bwrap
REPO = Path(__file__).parents[2]


@pytest.fixture
def server() -> Iterator[FetchServer]:
    yield from serve()


def chain(root: StorePath, stage1_msg: str = "one"):  # type: ignore[no-untyped-def]
    s1 = derivation("stage1", "/bin/sh", ["-c", f"mkdir -p $out/bin; printf '#!/bin/sh\\necho {stage1_msg}-$1\\n'"
                                         " > $out/bin/tool; chmod +x $out/bin/tool"], root=root)
    s2 = derivation("stage2", "/bin/sh", ["-c", f"mkdir -p $out/bin; {s1.out}/bin/tool two > $out/msg; "
                                         f"printf '#!/bin/sh\\n{s1.out}/bin/tool \"$@\"\\n' > $out/bin/tool;"
                                         " chmod +x $out/bin/tool"], root=root, inputs=[s1])
    s3 = derivation("stage3", "/bin/sh", ["-c", f"mkdir $out; {s2.out}/bin/tool three > $out/msg"],
                    root=root, inputs=[s2])
    return s1, s2, s3


def test_three_stage_chain_rebuilds_exactly_what_changed(store: Store, root: StorePath) -> None:
    s1, s2, s3 = chain(root)
    r = realise(store, [s3])
    assert [d.name for d in r.built] == ["stage1", "stage2", "stage3"]
    assert (store.real_path(s3.out) / "msg").read_text() == "one-three\n"
    assert store.query(s3.out).references == ()  # it ran stage2's tool, kept no path of it
    assert s1.out in store.query(s2.out).references
    assert realise(store, [s3]).built == []
    _, _, s3b = chain(root, "uno")
    r = realise(store, [s3b])
    assert [d.name for d in r.built] == ["stage1", "stage2", "stage3"]
    assert (store.real_path(s3b.out) / "msg").read_text() == "uno-three\n"


def test_same_derivation_same_output_in_two_stores(tmp_path: Path, busybox_tree: Path) -> None:
    results = []
    for i in range(2):
        s = Store.open(tmp_path / f"home{i}")
        r = s.add_path(busybox_tree, "busybox-root")
        _, _, s3 = chain(r)
        realise(s, [s3])
        results.append((s3.out, s.query(s3.out).nar_hash, s.query(s3.out).references))
        os.utime(busybox_tree)  # a different time between the two builds
    assert results[0] == results[1]


def test_dry_run_plan(store: Store, root: StorePath) -> None:
    s1, _, s3 = chain(root)
    realise(store, [s1])
    instantiate(store, s3)
    p = plan(store, [s3])
    assert [d.name for d in p.build] == ["stage2", "stage3"] and [d.name for d in p.valid] == ["stage1"]


def test_valid_output_needs_none_of_its_inputs(store: Store, root: StorePath, busybox_tree: Path,
                                                tmp_path: Path) -> None:
    """A store holding only stage3's output (imported, outputs only) realises stage3 with nothing to do."""
    s1, s2, s3 = chain(root)
    realise(store, [s3])
    bundle = io.BytesIO()
    export_bundle(store, [s3.out], bundle)
    other = Store.open(tmp_path / "other")
    try:
        assert other.add_path(busybox_tree, "busybox-root") == root  # the TDXfile's own source, added again
        import_bundle(other, io.BytesIO(bundle.getvalue()))
        p = plan(other, [s3])
        assert p.build == () and [d.name for d in p.valid] == ["stage3"]
        assert realise(other, [s3]).built == []
        assert not other.is_valid(s1.out) and not other.is_valid(s2.out)
        other.offline = True  # nothing below a valid output is asked for, not even offline
        assert realise(other, [s3]).built == []
    finally:
        other.close()


def test_parallel_independent_builds(store: Store, root: StorePath) -> None:
    leaves = [derivation(f"leaf{i}", "/bin/sh", ["-c", f"sleep 1; mkdir $out; echo {i} > $out/v"], root=root)
              for i in range(4)]
    top = derivation("top", "/bin/sh", ["-c", "mkdir $out; cat " + " ".join(f"{d.out}/v" for d in leaves)
                                        + " > $out/all"], root=root, inputs=leaves)
    import time

    t = time.monotonic()
    realise(store, [top], Options(jobs=4))
    assert time.monotonic() - t < 3.5  # four 1 s builds overlapped
    assert (store.real_path(top.out) / "all").read_text() == "0\n1\n2\n3\n"


def test_network_only_for_fixed_output(store: Store, root: StorePath, server: FetchServer) -> None:
    server.files["ok"] = b"ok\n"
    url = server.url("file/ok")
    closed = derivation("no-net", "/bin/sh", ["-c", f"wget -q -O $out/x {url}"], root=root)
    with pytest.raises(BuildError) as e:
        realise(store, [closed])
    assert e.value.code == "build-failed" and not store.is_valid(closed.out)
    fod = derivation("net", "/bin/sh", ["-c", f"wget -q -O - {url} > $out/x"], root=root,
                     fixed=FixedOutput(_nar_of_dir_with_x(b"ok\n"), recursive=True))
    realise(store, [fod])
    assert (store.real_path(fod.out) / "x").read_bytes() == b"ok\n"
    assert server.hits["/file/ok"] == 1


def _nar_of_dir_with_x(data: bytes) -> str:
    import tempfile

    from tdxstore.store.nar import hash_path

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "o").mkdir()
        (Path(d) / "o" / "x").write_bytes(data)
        return hash_path(Path(d) / "o").hex


def test_fixed_output_mismatch_message(store: Store, server: FetchServer) -> None:
    server.files["f"] = b"new content"
    wrong = hashlib.sha256(b"old content").hexdigest()
    fetch = derivation("f", "builtin:fetchurl", env={"url": server.url("file/f")}, fixed=FixedOutput(wrong))
    with pytest.raises(HashMismatchError) as e:
        realise(store, [fetch])
    text = str(e.value)
    assert f"hash mismatch for {server.url('file/f')}" in text
    assert f"Expected: sha256:{wrong}" in text
    assert f"Got:      sha256:{hashlib.sha256(b'new content').hexdigest()}" in text
    assert "The remote content has changed. Verify the new content and update the hash." in text
    assert not store.is_valid(fetch.out)


def test_fetch_url_change_rebuilds_nothing_downstream(store: Store, root: StorePath, server: FetchServer) -> None:
    server.files["a"] = server.files["b"] = b"same bytes"
    h = hashlib.sha256(b"same bytes").hexdigest()
    fa = derivation("src", "builtin:fetchurl", env={"url": server.url("file/a")}, fixed=FixedOutput(h))
    fb = derivation("src", "builtin:fetchurl", env={"url": server.url("file/b")}, fixed=FixedOutput(h))
    use_a = derivation("use", "/bin/sh", ["-c", f"mkdir $out; cat {fa.out} > $out/c"], root=root, inputs=[fa])
    use_b = derivation("use", "/bin/sh", ["-c", f"mkdir $out; cat {fb.out} > $out/c"], root=root, inputs=[fb])
    assert fa.drv_path != fb.drv_path and use_a.out == use_b.out
    realise(store, [use_a])
    assert realise(store, [use_b]).built == []
    assert server.hits["/file/b"] == 0


@pytest.mark.parametrize(("script", "kw", "code"), [
    ("exit 3", {}, "build-failed"),
    ("sleep 30", {"timeout": 1}, "build-timeout"),
    ("echo start; sleep 30", {"max_silent": 1}, "build-silent"),
])
def test_failing_builds_leave_nothing_valid(store: Store, root: StorePath, script: str, kw: dict[str, int],
                                            code: str) -> None:
    drv = derivation("bad", "/bin/sh", ["-c", f"echo line-before-failure; mkdir -p $out/x; {script}"], root=root,
                     **kw)
    with pytest.raises(BuildError) as e:
        realise(store, [drv])
    assert e.value.code == code
    assert not store.is_valid(drv.out) and not store.real_path(drv.out).exists()
    assert "full log:" in (e.value.detail or "")
    from tdxstore.store.build import read_log

    assert b"line-before-failure" in read_log(store, drv.drv_path)  # a failed build keeps its log
    if code == "build-failed":
        assert "line-before-failure" in (e.value.detail or "")
    assert list(store.tmp.iterdir()) == []


def test_keep_failed(store: Store, root: StorePath) -> None:
    drv = derivation("bad", "/bin/sh", ["-c", "echo partial > /build/state; exit 1"], root=root)
    with pytest.raises(BuildError) as e:
        realise(store, [drv], Options(keep_failed=True))
    kept = Path((e.value.hint or "").rsplit(": ", 1)[-1])
    assert (kept / "build" / "state").read_text() == "partial\n"


def test_builder_not_found(store: Store, root: StorePath) -> None:
    drv = derivation("nobuilder", "/bin/does-not-exist", [], root=root)
    with pytest.raises(BuildError) as e:
        realise(store, [drv])
    assert e.value.code == "builder-not-found"


def test_input_not_valid(store: Store) -> None:
    ghost = StorePath("0" * 32, "ghost-root")
    drv = derivation("x", "/bin/sh", ["-c", "true"], root=ghost)
    with pytest.raises(DerivationError) as e:
        realise(store, [drv])
    assert e.value.code == "input-not-valid"


def test_unknown_output(store: Store, root: StorePath) -> None:
    drv = derivation("x", "/bin/sh", ["-c", "true"], root=root)
    instantiate(store, drv)
    with pytest.raises(DerivationError) as e:
        resolve_targets(store, f"{drv.drv_path}^dev")
    assert e.value.code == "unknown-output"


def test_cycle_in_drv_files_is_refused(store: Store, root: StorePath) -> None:
    import cbor2

    drv = derivation("loop", "/bin/sh", ["-c", "true"], root=root)
    instantiate(store, drv)
    real = store.real_path(drv.drv_path)
    rec = cbor2.loads(real.read_bytes())
    rec["inputDrvs"] = {drv.drv_path.logical: ["out"]}  # a tampered .drv naming itself
    real.chmod(0o644)
    real.write_bytes(cbor2.dumps(rec, canonical=True))
    with pytest.raises(DerivationError) as e:
        load_derivation(store, drv.drv_path)
    assert e.value.code == "cycle"


def test_four_processes_build_once(tmp_path: Path, busybox_tree: Path, server: FetchServer) -> None:
    """The builder reports each run to a server on 127.0.0.1 (a fixed-output build may connect)."""
    home = tmp_path / "h"
    s = Store.open(home)
    r = s.add_path(busybox_tree, "busybox-root")
    server.files["once"] = b"once\n"
    script = tmp_path / "drv.py"
    script.write_text(
        "from tdxstore.store.derivation import derivation, FixedOutput\n"
        "from tdxstore.store.path import StorePath\n"
        f"default = derivation('counted', '/bin/sh', ['-c', 'sleep 1; wget -q -O - {server.url('slow/once')} "
        f"> $out/x'], root=StorePath.parse('{r}'), fixed=FixedOutput('{_nar_of_dir_with_x(b'once' + bytes([10]))}',"
        " recursive=True))\n")
    env = {**os.environ, "TDX_HOME": str(home)}
    procs = [subprocess.Popen([sys.executable, "-m", "tdxstore.cli.app", "realise", str(script)], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    assert len({o.strip() for o, _ in outs}) == 1
    assert server.hits["/slow/once"] == 1
    assert sum("building counted" in e for _, e in outs) == 1


def test_no_sandbox_outputs_are_marked_impure(store: Store, root: StorePath) -> None:
    drv = derivation("dev", "/bin/sh", ["-c", "echo hi > $out/x"], root=root)
    realise(store, [drv], Options(no_sandbox=True))
    assert store.query(drv.out).impure


def test_realise_cli_dry_run_out_link_and_lookup(tmp_path: Path, busybox_tree: Path) -> None:
    home = tmp_path / "h"
    env = {**os.environ, "TDX_HOME": str(home)}
    r = Store.open(home).add_path(busybox_tree, "busybox-root")
    f = tmp_path / "drv.py"
    f.write_text("from tdx import derivation, StorePath\n"
                 f"root = StorePath.parse('{r}')\n"
                 "a = derivation('a', '/bin/sh', ['-c', 'echo a > $out/a'], root=root)\n"
                 "b = derivation('b', '/bin/sh', ['-c', f'cat {a.out}/a > $out/b'], root=root, inputs=[a])\n")

    def tdx(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tdxstore.cli.app", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)

    dry = tdx("realise", f"{f}:b", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("build ") == 2 and "2 derivations would be built" in dry.stderr
    first = tdx("realise", f"{f}:b", "--out-link", str(tmp_path / "result"))
    assert first.returncode == 0, first.stderr
    assert "building a" in first.stderr and "building b" in first.stderr
    assert (tmp_path / "result" / "b").read_text() == "a\n"
    again = tdx("realise", f"{f}:b")
    assert again.stdout == first.stdout and "nothing to build" in again.stderr
    missing = tdx("realise", f"{f}:nope")
    assert missing.returncode == 1 and "has no attribute 'nope'" in missing.stderr
    show = tdx("show-derivation", f"{f}:b")
    assert '"builder": "/bin/sh"' in show.stdout
