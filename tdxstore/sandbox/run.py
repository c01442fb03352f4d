"""Run a `SandboxSpec` under bubblewrap (or, explicitly, unsandboxed) and stream its log.

Spawns only through `tdxstore.sandbox.process.popen`, in a new session so the whole process group
can be killed; bwrap's `--die-with-parent` plus its PID namespace take everything inside down
with it. Never leaves a process behind, never prints: output goes to the caller's `log` stream.
A missing or unusable bwrap raises `SandboxError` code `sandbox-unavailable`; there is no fallback.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

from tdxstore.errors import CommandError, SandboxError
from tdxstore.sandbox import process
from tdxstore.sandbox.bwrap import NETWORK_HOST_FILES, bwrap_argv, etc_files, sandbox_env
from tdxstore.sandbox.spec import STORE_DIR, SandboxSpec

#: Mount points a root file system must contain, because it is bound read-only at `/`
#: (bwrap cannot create them). Directories end with "/".
ROOT_MOUNT_POINTS = ("build/", "dev/", "etc/", "etc/group", "etc/hosts", "etc/passwd", "proc/",
                     "tdx/store/", "tmp/")
#: Extra mount points for network (fixed-output) builds, when the host has the file.
NETWORK_MOUNT_POINTS = ("etc/resolv.conf", "etc/ssl/certs/")

_TAIL_BYTES = 8192
#: The fd on which bwrap reads its options (`--args`); fixed, since builds can see the number.
ARGS_FD = 200
_ARGS_LOCK = threading.Lock()
_bwrap_path: str | None = None


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """How a sandboxed (or supervised) run ended. `reason` is None for a normal exit (any status), else
    one of "timeout", "silent" (max_silent exceeded), "stopped" (the caller's `on_output` said so),
    "builder-not-found", "sandbox-failed"."""

    returncode: int
    reason: str | None
    duration: float
    command: str
    tail: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.reason is None


def add_mount_points(root: Path, network: bool = True) -> None:
    """Create the mount points a root file system needs (empty dirs and files) if missing.

    For whoever assembles a root file system before it becomes an immutable store path.
    """
    for entry in ROOT_MOUNT_POINTS + (NETWORK_MOUNT_POINTS if network else ()):
        path = root / entry.rstrip("/")
        if os.path.lexists(path):
            continue
        if entry.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()


def check_spec_paths(spec: SandboxSpec) -> None:
    """Fail clearly, before spawning, when the root lacks a mount point or a mount source is absent."""
    if not spec.root.is_dir():
        raise SandboxError(f"sandbox root {str(spec.root)!r} is not a directory",
                           hint="realise the root file system's store path first",
                           code="sandbox-root-missing")
    if not spec.usr_only:  # a usr_only root is bwrap's own tmpfs: bwrap makes the mount points there
        _check_mount_points(spec)
    for m in spec.mounts:
        if not m.source.exists():
            raise SandboxError(f"mount source {str(m.source)!r} for {m.target!r} does not exist",
                               hint="realise the input path (or create the build directory) first",
                               code="sandbox-mount-missing")


def _check_mount_points(spec: SandboxSpec) -> None:
    """The read-only root must hold every mount point already: bwrap cannot create them in it."""
    needed = list(ROOT_MOUNT_POINTS)
    if spec.network:
        needed += [p for p, h in zip(NETWORK_MOUNT_POINTS, NETWORK_HOST_FILES, strict=True)
                   if os.path.exists(h)]
    for m in spec.mounts:
        if not PurePosixPath(m.target).is_relative_to(STORE_DIR):
            needed.append(m.target.lstrip("/") + ("/" if m.source.is_dir() else ""))
    missing = [p for p in needed if not os.path.lexists(_physical_without(spec, p))]
    if missing:
        raise SandboxError(
            f"root file system {str(spec.root)!r} lacks the mount points "
            + ", ".join("/" + p for p in missing),
            hint="create them when assembling the root (tdxstore.sandbox.add_mount_points)",
            code="sandbox-root-incomplete",
        )


def _physical_without(spec: SandboxSpec, entry: str) -> Path:
    """Host location of a mount point, resolved through the mounts other than the one placed there."""
    target = "/" + entry.rstrip("/")
    others = tuple(m for m in spec.mounts if m.target != target)
    covering = [m for m in others if PurePosixPath(target).is_relative_to(m.target)]
    if covering:
        inner = covering[-1]
        return inner.source / PurePosixPath(target).relative_to(inner.target)
    return spec.root / entry.rstrip("/")


def check_bwrap() -> str:
    """The path of a working bwrap (found on PATH and able to build a user-namespace sandbox).

    A success is cached for the life of the process; a failure is re-checked on the next call.
    """
    global _bwrap_path
    if _bwrap_path is not None:
        return _bwrap_path
    path = process.which("bwrap")
    if path is None:
        raise SandboxError("bubblewrap (bwrap) is not installed; builds need it for their sandbox",
                           hint="apt-get install bubblewrap", code="sandbox-unavailable")
    probe = [path, "--unshare-all", "--unshare-user", "--die-with-parent", "--uid", "1000", "--gid", "100",
             "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "true"]
    try:
        done = process.run(probe, check=False, timeout=30, what="bwrap probe")
    except CommandError as e:
        raise SandboxError(f"bubblewrap at {path!r} could not be started: {e.message}",
                           hint="apt-get install --reinstall bubblewrap", code="sandbox-unavailable") from e
    if done.returncode != 0:
        raise SandboxError(
            f"bubblewrap at {path!r} cannot create a sandbox (exit status {done.returncode})",
            hint="apt-get install bubblewrap, and allow unprivileged user namespaces (sysctl "
                 "kernel.unprivileged_userns_clone=1, kernel.apparmor_restrict_unprivileged_userns=0)",
            detail=f"command: {process.command_line(probe)}\n{process.tail(done.stderr)}",
            code="sandbox-unavailable",
        )
    _bwrap_path = path
    return path


@contextlib.contextmanager
def bwrap_command(spec: SandboxSpec, bwrap: str) -> Iterator[list[str]]:
    """The checked bwrap argv of `spec`, valid while the block runs (its synthesized /etc files live
    in a temporary directory until then)."""
    check_spec_paths(spec)
    with tempfile.TemporaryDirectory(prefix="tdx-sandbox-etc-") as tmp:
        etc_dir = Path(tmp)
        for name, text in etc_files(spec).items():
            (etc_dir / name).write_text(text, encoding="utf-8")
        yield bwrap_argv(spec, etc_dir, bwrap=bwrap)


def run_sandboxed(spec: SandboxSpec, log: BinaryIO | IO[bytes], *, bwrap: str | None = None) -> SandboxResult:
    """Run `spec` inside bubblewrap, streaming stdout+stderr into `log`; enforce its time limits."""
    bwrap = bwrap or check_bwrap()
    with bwrap_command(spec, bwrap) as argv:
        # bwrap itself gets only PATH-free minimal env; --clearenv sets the build's. Its arguments
        # go through `--args FD`: bwrap's own command line is the sandbox's /proc/1/cmdline, which a
        # build can read, and must not show host paths (TDX_HOME, this temporary directory).
        # bwrap takes only options from the file: the command stays on the command line, and it holds
        # only sandbox paths (the derivation's builder and arguments).
        split = len(argv) - len(spec.argv) - 1
        assert argv[split] == "--"
        options = b"".join(os.fsencode(a) + b"\0" for a in argv[1:split])
        result = _supervise(["bwrap", "--args", str(ARGS_FD), *argv[split:]], {}, None, spec, log,
                            executable=bwrap, args_data=options, shown=argv)
    if result.returncode != 0 and result.reason is None:
        result = _classify_bwrap_failure(result)
    return result


def run_unsandboxed(spec: SandboxSpec, log: BinaryIO | IO[bytes]) -> SandboxResult:
    """Developer escape hatch (`--no-sandbox`): run argv on the host with the build environment.

    No isolation at all: sandbox paths in argv, cwd and environment values are rewritten to their
    host locations (innermost mount first), so outputs are impure and must be marked so.
    """
    check_spec_paths(spec)
    rewrite = _host_rewriter(spec)
    env = {k: rewrite(v) for k, v in sandbox_env(spec).items()}
    env["PATH"] = env["PATH"] + ":" + process.host_env()["PATH"]
    argv = [rewrite(a) for a in spec.argv]
    cwd = spec.physical(spec.cwd)
    return _supervise(argv, env, cwd, spec, log)


def _host_rewriter(spec: SandboxSpec) -> Callable[[str], str]:
    pairs = sorted(((m.target, str(m.source)) for m in spec.mounts), key=lambda p: -len(p[0]))

    def rewrite(value: str) -> str:
        for target, source in pairs:
            value = value.replace(target, source)
        return value

    return rewrite


def _classify_bwrap_failure(result: SandboxResult) -> SandboxResult:
    """bwrap reports its own failures as `bwrap: ...` on stderr with status 1."""
    last = result.tail.rstrip("\n").splitlines()[-1:] if result.tail else []
    if not last or not last[0].startswith("bwrap: "):
        return result
    reason = "builder-not-found" if last[0].startswith("bwrap: execvp ") else "sandbox-failed"
    return SandboxResult(result.returncode, reason, result.duration, result.command, result.tail)


def _spawn(argv: list[str], env: dict[str, str], cwd: Path | None, executable: str | None,
           args_data: bytes | None) -> Any:
    """popen in a new session; `args_data` is handed to the child as fd ARGS_FD (bwrap's `--args`).

    The number is fixed, not whatever fd is free, because it is part of bwrap's command line and so
    of what a build reads at /proc/1/cmdline. The lock keeps two builder threads from sharing it.
    """
    if args_data is None:
        return process.popen(argv, env=env, cwd=cwd, start_new_session=True, executable=executable)
    with _ARGS_LOCK:
        fd = os.memfd_create("bwrap-args", os.MFD_CLOEXEC)
        try:
            os.write(fd, args_data)
            os.lseek(fd, 0, os.SEEK_SET)
            try:
                os.fstat(ARGS_FD)
                raise SandboxError(f"file descriptor {ARGS_FD} is in use; bwrap's arguments need it",
                                   hint="close file descriptors before building", code="sandbox-error")
            except OSError:
                pass  # free, as expected
            os.dup2(fd, ARGS_FD, inheritable=False)
            try:
                return process.popen(argv, env=env, cwd=cwd, start_new_session=True, executable=executable,
                                     pass_fds=(ARGS_FD,))
            finally:
                os.close(ARGS_FD)
        finally:
            os.close(fd)


def _supervise(argv: list[str], env: dict[str, str], cwd: Path | None, spec: SandboxSpec,
               log: BinaryIO | IO[bytes], *, executable: str | None = None, args_data: bytes | None = None,
               shown: list[str] | None = None) -> SandboxResult:
    return supervise(argv, env=env, cwd=cwd, log=log, timeout=spec.timeout, max_silent=spec.max_silent,
                     executable=executable, args_data=args_data, shown=shown)


#: Called with each chunk of output; True stops the process (reason "stopped").
OnOutput = Callable[[bytes], bool]


def supervise(argv: list[str], *, env: dict[str, str], cwd: Path | None, log: BinaryIO | IO[bytes],
              timeout: float | None = None, max_silent: float | None = None,
              on_output: OnOutput | None = None, executable: str | None = None,
              args_data: bytes | None = None, shown: list[str] | None = None) -> SandboxResult:
    """THE process supervisor: run argv in its own session, copy its output to `log`, enforce the limits.

    Whatever ends it (exit, `timeout`, `max_silent`, `on_output` returning True), the whole session
    is killed before returning, so no helper it started (apt, dpkg, QEMU's threads) outlives it.
    `args_data` is passed as bwrap's `--args` file descriptor; `shown` is the command reported on failure.
    """
    start = time.monotonic()
    proc = _spawn(argv, env, cwd, executable, args_data)
    assert proc.stdout is not None
    tail = bytearray()
    try:
        reason = _pump(proc, log, tail, timeout, max_silent, start, on_output)
        if reason is None:
            reason = _wait_until(proc, None if timeout is None else start + timeout)
    finally:
        # The leader has exited but is not reaped yet (waitid WNOWAIT), so its process group id
        # cannot have been reused: killing the group catches stragglers that kept running.
        _kill_group(proc)
        proc.wait()
        proc.stdout.close()
    code = proc.returncode
    return SandboxResult(code, reason, time.monotonic() - start, process.command_line(shown or argv),
                         process.tail(bytes(tail)))


def _pump(proc: Any, log: BinaryIO | IO[bytes], tail: bytearray, timeout: float | None,
          max_silent: float | None, start: float, on_output: OnOutput | None = None) -> str | None:
    """Copy output to `log` until EOF; kill the group and say why if a limit is hit."""
    fd = proc.stdout.fileno()
    last = start
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            limits = []
            if timeout is not None:
                limits.append((start + timeout - now, "timeout"))
            if max_silent is not None:
                limits.append((last + max_silent - now, "silent"))
            wait, why = min(limits) if limits else (None, None)
            if wait is not None and wait <= 0:
                _kill_group(proc)
                return why
            # Wake up now and then: an unsandboxed builder may exit while a child holds the pipe.
            if not sel.select(min(wait, 0.5) if wait is not None else 0.5):
                if _exited(proc.pid):
                    _drain(fd, log, tail)
                    return None
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            log.write(chunk)
            tail += chunk
            del tail[:-_TAIL_BYTES]
            last = time.monotonic()
            if on_output is not None and on_output(chunk):
                _kill_group(proc)
                return "stopped"


def _drain(fd: int, log: BinaryIO | IO[bytes], tail: bytearray) -> None:
    """Copy what is already buffered in the pipe without blocking on a straggler."""
    os.set_blocking(fd, False)
    try:
        while chunk := os.read(fd, 65536):
            log.write(chunk)
            tail += chunk
    except BlockingIOError:
        pass
    del tail[:-_TAIL_BYTES]


def _exited(pid: int) -> bool:
    """Whether the leader has exited, without reaping it (so its pid stays reserved)."""
    flags = os.WEXITED | os.WNOWAIT | os.WNOHANG
    return os.waitid(os.P_PID, pid, flags) is not None


def _wait_until(proc: Any, deadline: float | None) -> str | None:
    """Wait (unreaped) for the leader after its output closed, up to the wall-clock deadline."""
    if deadline is None:
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        return None
    delay = 0.0005
    while not _exited(proc.pid):
        if time.monotonic() >= deadline:
            _kill_group(proc)
            return "timeout"
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return None


def _kill_group(proc: Any) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
