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
