"""The one error hierarchy of tdx-vm-sdk (L0, stdlib only).

Library code raises these and never prints or exits; the CLI renders them once
(`error: <message>`, `hint: <hint>`, then the detail) and maps the class to an exit code.
Every error has a stable kebab-case `code` that tests assert on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterator


class TdxError(Exception):
    """Base class: a one-sentence `message`, the next step in `hint`, a longer `detail`."""

    code = "tdx-error"
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, detail: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        parts = [self.message]
        if self.hint:
            parts.append(self.hint)
        return "\n".join(parts)


class UsageError(TdxError):
    """The user asked for something malformed (bad argument, bad hash syntax, bad URL)."""

    code = "usage"
    exit_code = 2


class StorePathError(TdxError):
    """A string is not a valid store path, or a name is not a valid store path name."""

    code = "invalid-store-path"


class StoreError(TdxError):
    """The store itself: missing or invalid path, database, permissions, locks."""

    code = "store-error"


class NoSpaceError(StoreError):
    """The file system holding the store (or a download) is full."""

    code = "no-space"


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


def _is_full_disk(e: OSError) -> bool:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # shutil.copytree gathers its failures into shutil.Error, one (src, dst, str(OSError)) per file
    if isinstance(e, shutil.Error) and e.args and isinstance(e.args[0], list):
        marks = (f"[Errno {errno.ENOSPC}]", f"[Errno {errno.EDQUOT}]")
        return any(isinstance(t, tuple) and any(m in str(t[-1]) for m in marks) for t in e.args[0])
    return False


@contextlib.contextmanager
def full_disk_is_an_error(where: os.PathLike[str] | str, what: str,
                          needed: Callable[[], int | None]) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT inside the block into one NoSpaceError naming `where` and the space needed.

    `needed` is called only on failure (sizing a tree costs a walk); None means "unknown". The
    caller's own cleanup (temporary directories) still runs as the error propagates.
    """
    try:
        yield
    except OSError as e:
        if not _is_full_disk(e):
            raise
        try:
            st = os.statvfs(where)
            free = f", {_size(st.f_bavail * st.f_frsize)} free"
        except OSError:
            free = ""
        size = needed()
        need = f"needs {_size(size)}" if size is not None else "needs more space than is left"
        raise NoSpaceError(f"no space left on the device holding {os.fspath(where)!r}: {what} {need}{free}",
                           hint="free some space (`tdx store gc` removes unreachable paths) or set TDX_HOME "
                                "to a larger file system", code="no-space") from e


class NarError(TdxError):
    """A NAR stream is malformed or hostile, or a tree cannot be serialised."""

    code = "nar-malformed"


class DerivationError(TdxError):
    """A derivation is malformed, has a cycle, references an invalid path or an unknown output."""

    code = "derivation-invalid"


class SandboxError(TdxError):
    """The sandbox cannot be set up (bwrap missing, unusable, bad specification)."""

    code = "sandbox-error"


class BuildError(TdxError):
    """A builder ran and failed, timed out, or produced a wrong output."""

    code = "build-failed"


class FetchError(TdxError):
    """A download or git fetch failed, or its content did not match the declared hash."""

    code = "fetch-failed"


class HashMismatchError(FetchError):
    """Content differs from the hash declared in advance (fetch or fixed-output derivation)."""

    code = "hash-mismatch"

    def __init__(self, what: str, expected: str, got: str) -> None:
        super().__init__(
            f"hash mismatch for {what}\n  Expected: {expected}\n  Got:      {got}",
            hint="The remote content has changed. Verify the new content and update the hash.",
            code="hash-mismatch",
        )
        self.what = what
        self.expected = expected
        self.got = got


class ImageError(TdxError):
    """An Image definition is invalid or conflicting, or the image build failed."""

    code = "image-error"


class ConflictError(ImageError):
    """Two calls claim the same thing (file destination, user, service, port)."""

    code = "conflict"


class MeasureError(TdxError):
    """TDX measurements cannot be predicted from the given inputs."""

    code = "measure-error"


class LockfileError(TdxError):
    """tdx.lock is missing, stale, malformed or does not match."""

    code = "lockfile-error"


class CommandError(TdxError):
    """An external command (git, mkosi, apt-get, bwrap …) exited non-zero or could not start."""

    code = "command-failed"


class ModuleError(TdxError):
    """A module directory is not a valid module (no package, no apply(), import fails, bad name)."""

    code = "module-invalid"


class PackageError(TdxError):
    """Debian packages: an index that fails verification, a package or version not to be had, a bad lock entry."""

    code = "package-error"


class SecretError(TdxError):
    """Secrets delivery: a malformed secrets file, an undeclared or empty secret, a refusing or silent agent.

    Its message and detail name secrets, never their values.
    """

    code = "secret-error"


class DiffError(TdxError):
    """Two artifacts cannot be compared (not an image, unreadable, a malformed archive), or a check failed."""

    code = "diff-error"
    exit_code = 2  # as diff(1): 1 means "the images differ", 2 means trouble


class DifferenceError(DiffError):
    """Two builds that should be identical are not (`tdx build --check`): exit 1, as diff(1) for "differ"."""

    code = "check-differs"
    exit_code = 1


class TransferError(TdxError):
    """Moving paths between stores: a malformed, truncated or lying bundle or cache object, a signature
    that is missing or does not verify, a key file that is not a key, an unreachable cache, an offline
    build that would need the network."""

    code = "transfer-error"
