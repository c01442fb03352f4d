"""Real bubblewrap runs in a busybox root: each hermeticity test fails if the sandbox leaks.

Covers network isolation (and its opt-in), invisibility of the host's home, hostname and
environment (and of host paths in /proc/1, bwrap's own process), read-only root and inputs, the
build user, wall-clock and silence limits killing the whole tree, a missing builder, incomplete
roots and a missing or broken bwrap.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bootstrap.busybox import busybox_available, make_busybox_root
from tdxstore.errors import SandboxError
from tdxstore.sandbox import Mount, SandboxResult, SandboxSpec, check_bwrap, run_sandboxed, run_unsandboxed
from tdxstore.sandbox import run as sandbox_run
from tests.procs import pids_with

pytestmark = [
    pytest.mark.needs_bwrap,
    pytest.mark.skipif(not busybox_available(), reason="busybox-static not installed"),
]

INPUT = "/tdx/store/0c9hn1l7y4dqxsxh4m4z0h1ygs5rc1dk-input"
OUT = "/tdx/store/ixq2aqbd0fh3vc1vqfvz8l7p6d9fsm8f-out"


@pytest.fixture(scope="session")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_root(tmp_path_factory.mktemp("rootfs") / "root")


@dataclass
class Box:
    """A build layout: root, an input store path, a build dir and an output dir on the host."""

    root: Path
    input: Path
    build: Path
    out: Path

    def spec(self, script: str, **kw: Any) -> SandboxSpec:
        args: dict[str, Any] = {
            "argv": ("/bin/sh", "-c", script),
            "root": self.root,
            "mounts": (Mount(self.input, INPUT), Mount(self.build, "/build", writable=True),
                       Mount(self.out, OUT, writable=True)),
            "env": {"out": OUT, "input": INPUT},
            "timeout": 60.0,
        }
        args.update(kw)
        return SandboxSpec(**args)

    def run(self, script: str, **kw: Any) -> tuple[SandboxResult, str]:
        log = io.BytesIO()
        result = run_sandboxed(self.spec(script, **kw), log)
        return result, log.getvalue().decode()


@pytest.fixture
def box(root: Path, tmp_path: Path) -> Box:
    inp = tmp_path / "input"
    (inp / "bin").mkdir(parents=True)
    (inp / "data").write_text("input data\n")
    (tmp_path / "build").mkdir()
    (tmp_path / "out").mkdir()
    return Box(root, inp, tmp_path / "build", tmp_path / "out")


@pytest.fixture
def server() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on 127.0.0.1 recording what each connection sends."""
    received: list[bytes] = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                received.append(conn.recv(100))
                conn.sendall(b"pong\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1], received
    stop.set()
    thread.join()
    sock.close()


def _marker() -> str:
    """A `sleep` argument no other process on this shared machine has (another checkout may be running
    this very test at the same moment): over 1000 s, unique to this pid and instant."""
    return f"{1000 + os.getpid() % 9000}.{time.monotonic_ns() % 10**6:06d}"


def _alive_with(marker: str, grace: float = 5.0) -> list[int]:
    """Host pids whose command line contains `marker` (sandboxed processes are visible on the host), after
    letting up to `grace` seconds pass for killed ones to go (the kernel tears them down asynchronously,
    slowly on a loaded machine)."""
    deadline = time.monotonic() + grace
    while (found := pids_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_no_network_unless_the_spec_allows_it(box: Box, server: tuple[int, list[bytes]]) -> None:
    port, received = server
    script = f"echo ping | nc -w 3 127.0.0.1 {port} && echo CONNECTED || echo REFUSED"
    closed, log = box.run(script)
    assert closed.ok and "REFUSED" in log and "pong" not in log
    assert received == []
    opened, log = box.run(script, network=True)
    assert opened.ok and "CONNECTED" in log and "pong" in log
    assert received == [b"ping\n"]


def test_host_home_hostname_and_environment_are_invisible(
        box: Box, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "home-of-host-user"
    home.mkdir()
    (home / "secret").write_text("s3cret\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TDX_LEAK_PROBE", "leaked-value")
    result, log = box.run(f"env; echo HOSTNAME=$(hostname); echo ETC=$(cat /etc/hostname); "
                          f"cat {home}/secret || echo NOHOME; test -e /homeless-shelter || echo NOSHELTER")
    assert result.ok, log
    assert "leaked-value" not in log and "TDX_LEAK_PROBE" not in log and "s3cret" not in log
    assert "HOME=/homeless-shelter\n" in log and "NOHOME" in log and "NOSHELTER" in log
    assert "HOSTNAME=localhost" in log
    assert "ETC=sandbox-root\n" in log  # the root's own file, not the host's
    host_name = socket.gethostname()
    if host_name != "localhost":
        assert f"HOSTNAME={host_name}\n" not in log and f"ETC={host_name}\n" not in log
    names = {line.split("=", 1)[0] for line in log.splitlines() if "=" in line and line[0].isupper()}
    assert names - {"HOSTNAME", "ETC", "PWD", "SHLVL"} == {
        "HOME", "LC_ALL", "PATH", "SOURCE_DATE_EPOCH", "TDX_BUILD_CORES", "TDX_BUILD_TOP", "TDX_STORE",
        "TEMP", "TEMPDIR", "TMP", "TMPDIR", "TZ"}


def test_process_one_shows_no_host_path(box: Box, tmp_path: Path) -> None:
    """/proc/1 inside the sandbox is bwrap's init: its command line and environment name no host path."""
    script = "tr '\\0' '|' < /proc/1/cmdline; echo; echo ENV; tr '\\0' '|' < /proc/1/environ; echo"
    result, log = box.run(script)
    assert result.ok, log
    cmdline, environ = log.split("\nENV\n")
    assert cmdline == f"bwrap|--args|{sandbox_run.ARGS_FD}|--|/bin/sh|-c|{script}|"
    assert environ.strip() == ""
    for host in (str(tmp_path), str(box.root), "tdx-sandbox-etc", os.environ.get("TDX_HOME", str(tmp_path))):
        assert host not in log
    assert "bwrap --unshare-all" in result.command  # the failure detail still has the whole command


def test_writes_only_to_out_build_and_tmp(box: Box) -> None:
    targets = ["/x", "/etc/x", "/bin/x", "/tdx/store/new", "/tdx/x", f"{INPUT}/x", "/proc/x",
               f"{OUT}/ok", "/build/ok", "/tmp/ok"]
    script = "; ".join(f"if echo w > {t} 2>/dev/null; then echo W:{t}; else echo F:{t}; fi" for t in targets)
    result, log = box.run(script)
    assert result.ok, log
    for t in targets[:-3]:
        assert f"F:{t}" in log, f"write to {t} succeeded inside the sandbox"
    for t in targets[-3:]:
        assert f"W:{t}" in log, f"write to {t} failed inside the sandbox"
    assert (box.out / "ok").read_text() == "w\n" and (box.build / "ok").read_text() == "w\n"
    assert not (box.root / "x").exists() and not (box.input / "x").exists()
    assert not (box.root / "tdx" / "store" / "new").exists()


def test_inputs_are_read_only(box: Box) -> None:
    result, log = box.run("rm -f $input/data; chmod 777 $input/data; mkdir $input/bin/y;"
                          " mv $input/data /build/; echo x >> $input/data; cat $input/data")
    assert result.ok, log
    assert log.count("Read-only file system") >= 4
    assert (box.input / "data").read_text() == "input data\n"
    assert oct((box.input / "data").stat().st_mode & 0o777) != oct(0o777)
    assert sorted(p.name for p in box.input.iterdir()) == ["bin", "data"]


@pytest.mark.parametrize(("uid", "gid"), [(1000, 100), (4242, 4343)])
def test_build_user_and_passwd(box: Box, uid: int, gid: int) -> None:
    result, log = box.run("id -u; id -g; id -un; id -gn; grep ^tdxbld: /etc/passwd", uid=uid, gid=gid)
    assert result.ok, log
    assert log.splitlines()[:4] == [str(uid), str(gid), "tdxbld", "tdxbld"]
    assert f"tdxbld:x:{uid}:{gid}:tdx build user:/homeless-shelter:/noshell" in log


def test_timeout_kills_the_build_and_its_children(box: Box) -> None:
    marker = _marker()
    result, log = box.run(f"sleep {marker} & while true; do echo tick; sleep 0.05; done", timeout=1.0)
    assert result.reason == "timeout" and result.returncode != 0
    assert 1.0 <= result.duration < 3.0
    assert "tick" in log
    time.sleep(0.1)
    assert _alive_with(marker) == []


def test_max_silent_kills_a_quiet_build(box: Box) -> None:
    marker = _marker()
    result, log = box.run(f"echo started; sleep {marker}; echo never", max_silent=0.5, timeout=30.0)
    assert result.reason == "silent" and result.returncode != 0
    assert 0.5 <= result.duration < 2.5
    assert log == "started\n" and "never" not in log
    time.sleep(0.1)
    assert _alive_with(marker) == []


def test_background_children_die_with_the_build(box: Box) -> None:
    marker = _marker()
    result, log = box.run(f"sleep {marker} & echo done")
    assert result.ok and log == "done\n"
    assert result.duration < 2.0  # the pipe held by the orphan does not hold up the run
    time.sleep(0.1)
    assert _alive_with(marker) == []


def test_chatty_build_is_not_silent(box: Box) -> None:
    result, log = box.run("for i in $(seq 8); do echo $i; sleep 0.1; done", max_silent=0.5)
    assert result.ok and result.reason is None and log.split() == [str(i) for i in range(1, 9)]


def test_exit_status_and_large_output(box: Box) -> None:
    result, log = box.run("yes 0123456789abcdef | head -c 3000000; echo; exit 3")
    assert result.returncode == 3 and result.reason is None and not result.ok
    assert len(log) == 3000001


def test_missing_builder_is_a_clear_failure(box: Box) -> None:
    spec = box.spec("", argv=("/bin/no-such-builder", "--flag"))
    result = run_sandboxed(spec, io.BytesIO())
    assert result.returncode != 0 and result.reason == "builder-not-found"
    assert "/bin/no-such-builder" in result.tail and "bwrap" in result.command


def test_incomplete_root_and_missing_input_are_refused(box: Box, tmp_path: Path) -> None:
    bare = tmp_path / "bare-root"
    (bare / "bin").mkdir(parents=True)
    with pytest.raises(SandboxError) as info:
        run_sandboxed(box.spec("true", root=bare), io.BytesIO())
    assert info.value.code == "sandbox-root-incomplete" and "/build" in info.value.message
    with pytest.raises(SandboxError) as info:
        run_sandboxed(box.spec("true", mounts=(Mount(tmp_path / "gone", INPUT),
                                                Mount(box.build, "/build", writable=True))), io.BytesIO())
    assert info.value.code == "sandbox-mount-missing"


def test_missing_or_broken_bwrap_is_sandbox_unavailable(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sandbox_run, "_bwrap_path", None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxError) as info:
        check_bwrap()
    assert info.value.code == "sandbox-unavailable" and info.value.hint == "apt-get install bubblewrap"
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(SandboxError) as info:
        check_bwrap()
    assert info.value.code == "sandbox-unavailable" and "No permissions" in (info.value.detail or "")
    monkeypatch.undo()
    monkeypatch.setattr(sandbox_run, "_bwrap_path", None)
    assert os.path.basename(check_bwrap()) == "bwrap"


def test_unsandboxed_run_maps_sandbox_paths_to_the_host(box: Box) -> None:
    log = io.BytesIO()
    result = run_unsandboxed(box.spec("echo built > $out/result; pwd; cat $input/data"), log)
    assert result.ok, log.getvalue()
    assert (box.out / "result").read_text() == "built\n"
    assert log.getvalue().decode().splitlines() == [str(box.build), "input data"]
