"""Stream one URL (http, https, file) to a file, hashing as it goes (L1: never imports the store).

Invariants: the destination either does not change or is replaced by a complete, verified file
(bytes go to a temporary file next to it, renamed only after the length and SHA-256 check); memory
stays flat whatever the size; a fetch is bounded in size (the declared length, else `Limits.max_size`)
and in time (`Limits.deadline` over all attempts, besides the per-pause timeout); transient failures
(timeouts, resets, truncation, 408/429/5xx) are retried with exponential backoff; everything else
raises one FetchError/UsageError/NoSpaceError with a `code`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import stat
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

import requests
import urllib3.exceptions

from tdxstore.errors import FetchError, HashMismatchError, UsageError, full_disk_is_an_error
from tdxstore.fetch import offline
from tdxstore.fetch.hashspec import format_sha256

log = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]
CHUNK = 1 << 20
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.5
DEFAULT_MAX_SIZE = 4 << 30  # bytes, when no length is declared (`tdx fetch --max-size` raises it)
DEFAULT_DEADLINE = 6 * 3600.0  # seconds for a whole fetch, retries included
SCHEMES = ("http", "https", "file")
USER_AGENT = "tdx-vm-sdk-fetch/0.1"


class Tee(Protocol):
    """Sees the downloaded bytes as they are written (e.g. to hash them another way in the same pass)."""

    def start(self, total: int | None) -> None:
        """A (new) attempt begins; `total` is the announced length, None when unknown."""

    def update(self, chunk: bytes) -> None: ...


class _Transient(Exception):
    """Wraps a FetchError that another attempt may not hit."""

    def __init__(self, error: FetchError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of one fetch: bytes when the source declares no length, and wall-clock seconds."""

    max_size: int = DEFAULT_MAX_SIZE
    deadline: float = DEFAULT_DEADLINE

    def __post_init__(self) -> None:
        if self.max_size <= 0 or self.deadline <= 0:
            raise UsageError(f"fetch limits must be positive (max size {self.max_size}, deadline {self.deadline})",
                             code="usage")


@dataclass(slots=True)
class _Budget:
    """What one fetch has used of its Limits (mutable, private to `download`)."""

    limits: Limits
    url: str
    ends: float = field(default=0.0)
    declared: int | None = None  # Content-Length or a local file's size, once known

    def __post_init__(self) -> None:
        self.ends = time.monotonic() + self.limits.deadline

    def left(self) -> float:
        left = self.ends - time.monotonic()
        if left <= 0:
            raise FetchError(f"fetching {self.url} took longer than its deadline of {self.limits.deadline:g} s",
                             hint="retry on a faster connection, or raise the deadline (tdx fetch --deadline)",
                             code="fetch-deadline")
        return left

    def bounded(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """`chunks`, stopped with one error past the size limit or the deadline."""
        done = 0
        limit = self.declared if self.declared is not None else self.limits.max_size
        for chunk in chunks:
            done += len(chunk)
            if done > limit:
                raise FetchError(
                    f"{self.url} is larger than {limit} bytes"
                    + (" (its declared length)" if self.declared is not None else " (the limit for a source "
                       "that declares no length)"),
                    hint="if this size is expected, raise the limit (tdx fetch --max-size)", code="too-large")
            self.left()
            yield chunk


DEFAULT_LIMITS = Limits()


def _bad_url(url: str, why: str) -> UsageError:
    return UsageError(
        f"malformed URL {url!r}: {why}",
        hint="write a full URL such as https://example.org/file.tar.gz or file:///absolute/path",
        code="bad-url",
    )


def check_url(url: str, schemes: tuple[str, ...] = SCHEMES) -> urllib.parse.SplitResult:
    """Validate the syntax of `url` (no I/O); raise UsageError code "bad-url" naming the problem."""
    if not isinstance(url, str) or not url:
        raise _bad_url(str(url), "it is empty or not a string")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise _bad_url(url, "it contains whitespace or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise _bad_url(url, str(e)) from e
    if not parts.scheme or "://" not in url:
        raise _bad_url(url, "it has no scheme (such as https://)")
    if parts.scheme not in schemes:
        raise UsageError(
            f"unsupported URL scheme {parts.scheme!r} in {url!r}",
            hint=f"use one of: {', '.join(s + '://' for s in schemes)}",
            code="bad-url",
        )
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise _bad_url(url, f"a file:// URL cannot name a host ({parts.netloc!r})")
        if not parts.path.startswith("/"):
            raise _bad_url(url, "a file:// URL needs an absolute path (file:///path)")
    elif not parts.hostname:
        raise _bad_url(url, "it has no host name")
    elif port == 0:
        raise _bad_url(url, "port 0 is not a valid port")
    return parts


def url_file_name(url: str) -> str:
    """The last path segment of `url`, percent-decoded ('' when the path ends with '/')."""
    path = urllib.parse.urlsplit(url).path
    return urllib.parse.unquote(path.rsplit("/", 1)[-1])


def _session() -> requests.Session:
    s = requests.Session()
    # trust_env (the default) makes requests honour HTTPS_PROXY/NO_PROXY and REQUESTS_CA_BUNDLE;
    # SSL_CERT_FILE is honoured by the ssl module's default verify paths only, so map it here.
    s.trust_env = True
    ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if ca:
        s.verify = ca
    s.headers["User-Agent"] = USER_AGENT
    # The hash is over the bytes as published: never let a server compress them in transit.
    s.headers["Accept-Encoding"] = "identity"
    return s


def _is_refused(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionRefusedError) or getattr(cur, "errno", None) == errno.ECONNREFUSED:
            return True
        for arg in getattr(cur, "args", ()):
            if isinstance(arg, BaseException) and _is_refused(arg):
                return True
        cur = getattr(cur, "reason", None) or cur.__cause__ or cur.__context__
    return "Connection refused" in str(exc)


def _classify(url: str, exc: Exception, timeout: float) -> FetchError | _Transient:
    """Turn a requests/urllib3 exception into a FetchError, wrapped in _Transient when retryable."""
    if isinstance(exc, requests.exceptions.SSLError):
        return FetchError(f"TLS error talking to {url}: {exc}", code="tls-error",
                          hint="if a private CA signs this server, set REQUESTS_CA_BUNDLE or SSL_CERT_FILE")
    if isinstance(exc, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
        return _Transient(FetchError(
            f"timed out downloading {url}: no data for {timeout:g} s", code="timeout",
            hint="check the network or the proxy (HTTPS_PROXY/NO_PROXY), or retry later"))
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return FetchError(f"too many redirects fetching {url}", code="too-many-redirects")
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                        requests.exceptions.MissingSchema)):
        return FetchError(f"cannot follow {url}: {exc}", code="bad-redirect")
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError)):
        return _Transient(FetchError(
            f"the connection to {url} broke before the body was complete: {exc}", code="truncated",
            hint="the server or a proxy cut the transfer; retry later"))
    if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError)):
        if _is_refused(exc):
            return FetchError(f"connection refused by the server of {url}", code="connection-failed",
                              hint="check the URL's host and port, and that the server is running")
        return _Transient(FetchError(f"cannot connect to the server of {url}: {exc}",
                                     code="connection-failed",
                                     hint="check the network, DNS and HTTPS_PROXY/NO_PROXY"))
    return FetchError(f"downloading {url} failed: {type(exc).__name__}: {exc}", code="fetch-failed")


def _http_status_error(url: str, resp: requests.Response) -> FetchError | _Transient:
    where = url if resp.url == url else f"{url} (redirected to {resp.url})"
    err = FetchError(f"HTTP {resp.status_code} {resp.reason or ''}".rstrip() + f" for {where}",
                     code="http-error", hint="check that the URL is right and still published")
    if resp.status_code in (408, 425, 429) or resp.status_code >= 500:
        return _Transient(err)
    return err


def _copy_stream(chunks: Iterable[bytes], out: BinaryIO, total: int | None,
                 progress: Progress | None, tee: Tee | None = None) -> tuple[str, int]:
    """Write `chunks` to `out`, hashing them (and feeding `tee`); return (hex digest, byte count)."""
    h = hashlib.sha256()
    done = 0
    if tee is not None:
        tee.start(total)
    for chunk in chunks:
        if not chunk:
            continue
        out.write(chunk)
        h.update(chunk)
        if tee is not None:
            tee.update(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return h.hexdigest(), done


def _attempt_http(session: requests.Session, url: str, out: BinaryIO, timeout: float,
                  progress: Progress | None, budget: _Budget, tee: Tee | None) -> str:
    out.seek(0)
    out.truncate()
    wait = min(timeout, budget.left())
    try:
        with session.get(url, stream=True, timeout=(wait, wait), allow_redirects=True) as resp:
            if resp.status_code >= 400:
                raise _http_status_error(url, resp)
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            budget.declared = total
            # read1: whatever has arrived, so a trickling body still meets the deadline check
            chunks = budget.bounded(iter(lambda: resp.raw.read1(CHUNK, decode_content=False), b""))
            digest, done = _copy_stream(chunks, out, total, progress, tee)
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
        # requests' exceptions are OSErrors too; a local OSError (disk full) is not a fetch problem.
        if not isinstance(e, (requests.exceptions.RequestException, urllib3.exceptions.HTTPError,
                              ConnectionError, TimeoutError)):
            raise
        classified = _classify(url, e, timeout)
        raise classified from e
    if total is not None and done != total:
        raise _Transient(FetchError(
            f"truncated download of {url}: received {done} bytes, Content-Length says {total}",
            code="truncated", hint="the server or a proxy cut the transfer; retry later"))
    return digest


def _download_http(url: str, out: BinaryIO, timeout: float, retries: int, backoff: float,
                   progress: Progress | None, budget: _Budget, tee: Tee | None) -> str:
    session = _session()
    try:
        for attempt in range(retries + 1):
            try:
                return _attempt_http(session, url, out, timeout, progress, budget, tee)
            except _Transient as t:
                if attempt == retries:
                    raise t.error from t.__cause__
                delay = min(backoff * (2 ** attempt), budget.left())
                log.info("fetch %s: %s; retrying in %.1f s (%d/%d)", url, t.error.message, delay,
                         attempt + 1, retries)
                time.sleep(delay)
    finally:
        session.close()
    raise AssertionError("unreachable")


def _copy_file_url(url: str, parts: urllib.parse.SplitResult, out: BinaryIO,
                   progress: Progress | None, budget: _Budget, tee: Tee | None) -> str:
    path = Path(urllib.request.url2pathname(parts.path))
    try:
        with path.open("rb") as src:
            st = os.fstat(src.fileno())
            if not stat.S_ISREG(st.st_mode):  # /dev/zero, a fifo: no size, maybe no end
                raise FetchError(f"{url} is not a regular file", code="not-a-file",
                                 hint="fetch regular files only; add directories with `tdx store add`")
            budget.declared = total = st.st_size
            chunks = budget.bounded(iter(lambda: src.read(CHUNK), b""))
            digest, _ = _copy_stream(chunks, out, total, progress, tee)
    except FileNotFoundError as e:
        raise FetchError(f"{url} does not exist (no file {str(path)!r})", code="file-not-found",
                         hint="check the path in the file:// URL") from e
    except IsADirectoryError as e:
        raise FetchError(f"{url} is a directory, not a file", code="file-not-found",
                         hint="fetch() downloads single files; add directories with `tdx store add`") from e
    except PermissionError as e:
        raise FetchError(f"cannot read {str(path)!r}: permission denied", code="file-not-found") from e
    return digest


def download(url: str, dest: Path, *, expected_sha256: str | None, progress: Progress | None = None,
             timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES,
             backoff: float = DEFAULT_BACKOFF, limits: Limits = DEFAULT_LIMITS, tee: Tee | None = None) -> str:
    """Download `url` to `dest` and return the SHA-256 (hex) of its bytes.

    `expected_sha256` (hex) is checked before `dest` appears; on mismatch raise HashMismatchError
    and leave nothing behind. `timeout` bounds the connect time and every pause between bytes;
    `limits` the size (when the source declares none) and the whole fetch's wall-clock time.
    `tee` sees the bytes of every attempt as they are written, so nothing needs to read them again.
    """
    parts = check_url(url)
    if parts.scheme != "file":
        offline.refuse(f"download {url}")
    budget = _Budget(limits, url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with full_disk_is_an_error(dest.parent, f"downloading {url}", lambda: budget.declared):
        return _download_to(url, parts, dest, expected_sha256, progress, timeout, retries, backoff, budget, tee)


def _download_to(url: str, parts: urllib.parse.SplitResult, dest: Path, expected_sha256: str | None,
                 progress: Progress | None, timeout: float, retries: int, backoff: float, budget: _Budget,
                 tee: Tee | None) -> str:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as out:
            if parts.scheme == "file":
                got = _copy_file_url(url, parts, out, progress, budget, tee)
            else:
                got = _download_http(url, out, timeout, retries, backoff, progress, budget, tee)
            if expected_sha256 is not None and got != expected_sha256.lower():
                raise HashMismatchError(url, format_sha256(expected_sha256), format_sha256(got))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    log.debug("fetched %s -> %s (sha256:%s)", url, dest, got)
    return got
