"""`_fs.extract_tar`: never writes outside the destination, strips unsafe mode bits, with or without
Python's extraction filters (Debian 12's python3 3.11.2 has none, so the fallback is what runs there)."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from tdxstore._fs import extract_tar

# The fallback always; Python's own filters too where this interpreter has them.
MODES = ["fallback", *(["native"] if hasattr(tarfile, "data_filter") else [])]


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> tarfile.TarFile:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for info, body in members:
            info.size = len(body) if info.isfile() else 0
            tf.addfile(info, io.BytesIO(body) if info.isfile() else None)
    buf.seek(0)
    return tarfile.open(fileobj=buf, mode="r:")


def _info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    return info


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "fallback":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    return str(request.param)


@pytest.mark.parametrize("data", [False, True])
def test_extracts_files_dirs_and_inner_links(tmp_path: Path, mode: str, data: bool) -> None:
    tf = _tar((_info("d", tarfile.DIRTYPE, 0o755), b""), (_info("d/f", mode=0o4775), b"hello"),
              (_info("d/l", tarfile.SYMTYPE, link="f"), b""))
    extract_tar(tf, tmp_path, data=data)
    assert (tmp_path / "d/l").read_bytes() == b"hello"
    assert stat.S_IMODE((tmp_path / "d/f").stat().st_mode) == 0o755  # setuid and group-write gone


@pytest.mark.parametrize(("info", "data"), [
    (_info("../escape"), False),
    (_info("a/../../escape"), False),
    (_info("l", tarfile.SYMTYPE, link="/etc/passwd"), True),
    (_info("l", tarfile.SYMTYPE, link="../../outside"), True),
    (_info("h", tarfile.LNKTYPE, link="../outside"), True),
    (_info("dev", tarfile.CHRTYPE), True),
    (_info("fifo", tarfile.FIFOTYPE), True),
], ids=["dotdot", "nested-dotdot", "abs-symlink", "escaping-symlink", "escaping-hardlink", "chardev", "fifo"])
def test_refuses_what_would_leave_the_destination(tmp_path: Path, mode: str, info: tarfile.TarInfo,
                                                  data: bool) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(tarfile.TarError):
        extract_tar(_tar((info, b"x")), dest, data=data)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "outside").exists()


def test_a_root_file_system_keeps_its_absolute_symlinks(tmp_path: Path, mode: str) -> None:
    extract_tar(_tar((_info("etc/resolv.conf", tarfile.SYMTYPE, link="/run/resolv.conf"), b"")), tmp_path)
    assert (tmp_path / "etc/resolv.conf").readlink() == Path("/run/resolv.conf")


def test_only_the_chosen_members(tmp_path: Path, mode: str) -> None:
    tf = _tar((_info("a"), b"1"), (_info("b"), b"2"))
    extract_tar(tf, tmp_path, [m for m in tf.getmembers() if m.name == "b"], data=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


# -- atomic_stream: the bundle file, synced behind -----------------------------------------------------

def _syncers() -> int:
    import threading

    return sum(t.name == "sync-behind" for t in threading.enumerate())


def test_atomic_stream_publishes_the_whole_file_synced_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from tdxstore import _fs

    monkeypatch.setattr(_fs, "SYNC_EVERY", 1 << 16)  # the worker syncs many times along the way
    data = os.urandom(1 << 20)
    out = tmp_path / "b.tdx"
    with _fs.atomic_stream(out) as f:
        for i in range(0, len(data), 10_000):
            assert f.write(memoryview(data)[i:i + 10_000]) == len(data[i:i + 10_000])
        assert not out.exists()
    assert out.read_bytes() == data
    assert os.listdir(tmp_path) == ["b.tdx"] and _syncers() == 0


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_stream_leaves_no_file_and_no_worker_on_error(tmp_path: Path, error: type[BaseException]) -> None:
    from tdxstore import _fs

    with pytest.raises(error), _fs.atomic_stream(tmp_path / "b.tdx") as f:
        f.write(b"x" * 1000)
        raise error
    assert list(tmp_path.iterdir()) == [] and _syncers() == 0


def test_a_sync_error_in_the_worker_reaches_the_writer_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fdatasync on a FIFO fails (EINVAL) in the worker; the writer's next write raises it, once."""
    import errno
    import os
    import threading

    from tdxstore import _fs

    monkeypatch.setattr(_fs, "SYNC_EVERY", 1024)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    drained = threading.Event()

    def drain() -> None:
        import select

        while not drained.is_set():
            if select.select([reader], [], [], 0.05)[0]:
                os.read(reader, 1 << 16)

    t = threading.Thread(target=drain)
    t.start()
    try:
        f = _fs._SyncBehind(fifo)
        f.write(b"x" * 2048)  # wakes the worker, whose fdatasync fails
        f._thread.join(timeout=10)
        assert not f._thread.is_alive()
        with pytest.raises(OSError) as e:
            f.write(b"y")
        assert e.value.errno == errno.EINVAL
        assert f.write(b"z") == 1  # raised once
        f.close()
        assert _syncers() == 0
    finally:
        drained.set()
        t.join()
        os.close(reader)



@pytest.mark.parametrize("last", [0, 1], ids=["first-finishes-last", "second-finishes-last"])
def test_two_atomic_streams_to_one_path_at_once_do_not_clobber_each_other(tmp_path: Path, last: int) -> None:
    """Two exports to the same `-o` file at once, their writes interleaved: each writes a partial file
    of its own, the one that finishes last is the file (whole), and no partial file is left."""
    import os

    from tdxstore import _fs

    out = tmp_path / "b.tdx"
    data = [os.urandom(300_000), os.urandom(250_000)]
    streams = [_fs.atomic_stream(out), _fs.atomic_stream(out)]
    files = [s.__enter__() for s in streams]  # the second starts while the first is open
    partials = [p.name for p in tmp_path.iterdir()]
    assert len(partials) == 2 and all(n.startswith(".b.tdx.") and n.endswith(".partial") for n in partials)
    for i in range(0, len(data[0]), 50_000):
        for f, d in zip(files, data, strict=True):
            f.write(d[i:i + 50_000])
    streams[1 - last].__exit__(None, None, None)
    assert out.read_bytes() == data[1 - last]
    streams[last].__exit__(None, None, None)
    assert out.read_bytes() == data[last]
    assert os.listdir(tmp_path) == ["b.tdx"] and _syncers() == 0


def test_atomic_stream_removes_the_partial_file_of_a_killed_run_only(tmp_path: Path) -> None:
    """A writer killed with SIGKILL leaves its partial file; the next call removes it (nobody holds its
    lock), but not the partial file of a writer still running."""
    import os
    import signal
    import subprocess
    import sys

    from tdxstore import _fs

    out = tmp_path / "b.tdx"
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from tdxstore._fs import atomic_stream\n"
         "with atomic_stream(Path(sys.argv[1])) as f:\n f.write(b'x' * 1000); print('ready', flush=True); "
         "time.sleep(60)", str(out)], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        with _fs.atomic_stream(out) as f:  # the child is alive: its partial file stays
            f.write(b"mine")
            assert len([p for p in tmp_path.iterdir() if p.name.endswith(".partial")]) == 2
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    assert out.read_bytes() == b"mine"
    stale = [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert len(stale) == 1  # the killed child's
    (tmp_path / ".b.tdx.partial").write_bytes(b"")  # a name of another shape: not this code's, kept
    with _fs.atomic_stream(out) as f:
        f.write(b"again")
    assert sorted(os.listdir(tmp_path)) == [".b.tdx.partial", "b.tdx"] and out.read_bytes() == b"again"
