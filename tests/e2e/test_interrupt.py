"""Ctrl-C ends every command within a second: exit 130, the one line `interrupted`, no temporary
files and no process left. SIGINT is sent to the real `tdx` process, as a terminal would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bootstrap.busybox import busybox_available, make_busybox_root
from tdxstore.store.store import Store
from tdxstore.store.verify import verify_store
from tests.fetchserver import FetchServer, serve
from tests.procs import pids_with

REPO = Path(__file__).parents[2]
ZERO = "0" * 64


@pytest.fixture
def server() -> Iterator[FetchServer]:
    yield from serve()


def _interrupt(home: Path, *args: str | Path, ready: Callable[[], bool]) -> tuple[int, str, float]:
    """Start `tdx ARGS`, send SIGINT once `ready()` and 0.5 s more; (exit status, stderr, seconds to exit)."""
    env = {**os.environ, "TDX_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "tdxstore.cli.app", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            # a shell's background job ignores SIGINT; a terminal's foreground job does not
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the command never got going"
        time.sleep(0.01)
    time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"tdx {args} ignored SIGINT for 10 s") from None
    return proc.returncode, err.decode(), time.monotonic() - sent


def _tmp_entries(home: Path) -> list[str]:
    return sorted(os.listdir(home / "tmp"))


def _busy(home: Path) -> Callable[[], bool]:
    """Ready once the command has made a temporary directory (a download or a build is under way)."""
    return lambda: (home / "tmp").is_dir() and bool(_tmp_entries(home))


@pytest.mark.parametrize("route", ["silent", "trickle", "endless"])
def test_sigint_ends_a_fetch_within_a_second(tmp_path: Path, server: FetchServer, route: str) -> None:
    home = tmp_path / "home"
    rc, err, took = _interrupt(home, "fetch", server.url(route), "--sha256", ZERO, "--name", "x",
                               ready=_busy(home))
    assert (rc, err) == (130, "interrupted\n") and took < 2.0, (rc, err, took)
    assert _tmp_entries(home) == []
    store = Store.open(home)
    assert [p for p in store.db.all_paths() if not p.endswith(".drv")] == []  # only the fetch's .drv
    assert verify_store(store).ok and verify_store(store).garbage == ()
    store.close()


def test_sigint_ends_fetch_hash_within_a_second(tmp_path: Path, server: FetchServer) -> None:
    home = tmp_path / "home"
    rc, err, took = _interrupt(home, "fetch", "--hash", server.url("silent"), ready=_busy(home))
    assert (rc, err) == (130, "interrupted\n") and took < 2.0, (rc, err, took)
    assert _tmp_entries(home) == []


def test_sigint_during_evaluation_prints_one_line(tmp_path: Path) -> None:
    for name, command in (("slow.py", "realise"), ("TDXfile", "build")):
        started = tmp_path / f"{name}.started"
        user_file = tmp_path / name
        user_file.write_text(f"import time\nopen({str(started)!r}, 'w').close()\ntime.sleep(30)\n")
        rc, err, took = _interrupt(tmp_path / "home", command, user_file, ready=started.exists)
        # `tdx build` first says what it is doing ("evaluating …"); the interruption is one line more
        assert rc == 130 and err.endswith("\ninterrupted\n" if command == "build" else "interrupted\n"), err
        assert err.count("interrupted") == 1 and "Traceback" not in err and took < 2.0, (command, err, took)


@pytest.mark.needs_bwrap
@pytest.mark.skipif(not busybox_available(), reason="busybox-static not installed")
def test_sigint_ends_a_sandboxed_build_and_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = Store.open(home)
    root = store.add_path(make_busybox_root(tmp_path / "bb"), "busybox-root")
    store.close()
    marker = f"sleeper-{os.getpid()}"
    expr = tmp_path / "sleeper.py"
    expr.write_text("from tdxstore.store.derivation import derivation\nfrom tdxstore.store.path import StorePath\n"
                    f"default = derivation('sleeper', '/bin/sh', ['-c', 'mkdir $out; sleep 60 # {marker}'], "
                    f"root=StorePath.parse({root.logical!r}))\n")
    rc, err, took = _interrupt(home, "realise", expr, ready=lambda: bool(pids_with(marker)))
    assert (rc, err.splitlines()[-1]) == (130, "interrupted") and took < 2.0, (rc, err, took)
    assert err.count("interrupted") == 1
    assert _tmp_entries(home) == []
    deadline = time.monotonic() + 2
    while pids_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pids_with(marker) == []


