"""THE process runner: the only module that spawns processes (ruff bans `subprocess` elsewhere).

argv lists only (never `shell=True`); the environment is built from an allow-list plus what the
caller passes, never inherited wholesale; failures raise `CommandError` whose detail holds a
copy-pasteable command line and the tail of stderr.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tdxstore.errors import CommandError

log = logging.getLogger(__name__)

# For callers of popen(), which may not import subprocess themselves.
PIPE = subprocess.PIPE
TimeoutExpired = subprocess.TimeoutExpired

# Variables a host tool may legitimately need from the caller's environment.
HOST_ENV_ALLOW = (
    "PATH", "LANG", "LC_ALL", "TERM", "TZ", "HOME", "USER", "LOGNAME", "TMPDIR",
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO",
)

Arg = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class Completed:
    """The result of a finished process."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes


def host_env(extra: Mapping[str, str] | None = None, allow: Sequence[str] = HOST_ENV_ALLOW) -> dict[str, str]:
    """The allow-listed part of this process's environment, plus `extra`."""
    env = {k: os.environ[k] for k in allow if k in os.environ}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    if extra:
        env.update(extra)
    return env


def command_line(argv: Sequence[Arg]) -> str:
    """A copy-pasteable rendering of argv."""
    return shlex.join(os.fspath(a) for a in argv)


def tail(data: bytes | str, lines: int = 25) -> str:
    """The last `lines` lines of some output, decoded leniently."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def which(name: str, path: str | None = None) -> str | None:
    """Where `name` is on PATH (or `path`), or None."""
    return shutil.which(name, path=path)


def run(
    argv: Sequence[Arg],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    input: bytes | None = None,
    check: bool = True,
    capture: bool = True,
    stdout: IO[bytes] | int | None = None,
    stderr: IO[bytes] | int | None = None,
    timeout: float | None = None,
    what: str | None = None,
) -> Completed:
    """Run argv to completion. `env=None` means `host_env()`; pass a dict for a fully explicit one.

    With `check`, a non-zero exit raises CommandError naming `what` (default: the program).
    """
    args = [os.fspath(a) for a in argv]
    log.debug("run: %s", command_line(args))
    out = stdout if stdout is not None else (subprocess.PIPE if capture else None)
    err = stderr if stderr is not None else (subprocess.PIPE if capture else None)
    try:
        proc = subprocess.run(
            args, env=dict(env) if env is not None else host_env(), cwd=cwd, input=input,
            stdout=out, stderr=err, timeout=timeout, check=False,
        )
    except FileNotFoundError as e:
        raise _not_found(args[0]) from e
    except subprocess.TimeoutExpired as e:
        raise CommandError(
            f"{what or args[0]} did not finish within {timeout} s",
            detail=command_line(args), code="command-timeout",
        ) from e
    result = Completed(tuple(args), proc.returncode, proc.stdout or b"", proc.stderr or b"")
    if check and proc.returncode != 0:
        raise CommandError(
            f"{what or os.path.basename(args[0])} exited with status {proc.returncode}",
            detail=f"command: {command_line(args)}\n{tail(result.stderr or result.stdout)}",
        )
    return result


def popen(
    argv: Sequence[Arg],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: IO[bytes] | int | None = subprocess.DEVNULL,
    stdout: IO[bytes] | int | None = subprocess.PIPE,
    stderr: IO[bytes] | int | None = subprocess.STDOUT,
    pass_fds: Sequence[int] = (),
    start_new_session: bool = False,
    executable: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start argv without waiting (for streaming logs, timeouts, sandboxes).

    `executable`, when given, is the program run; argv[0] is then only the name it sees.
    """
    args = [os.fspath(a) for a in argv]
    log.debug("spawn: %s", command_line(args))
    try:
        return subprocess.Popen(
            args, env=dict(env) if env is not None else host_env(), cwd=cwd, stdin=stdin,
            stdout=stdout, stderr=stderr, pass_fds=tuple(pass_fds), start_new_session=start_new_session,
            executable=executable,
        )
    except FileNotFoundError as e:
        raise _not_found(executable or args[0]) from e


def _not_found(program: str) -> CommandError:
    return CommandError(f"cannot run {program!r}: program not found",
                        hint=f"install the package that provides {os.path.basename(program)!r}",
                        code="command-not-found")
