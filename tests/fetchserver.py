"""Real servers on 127.0.0.1 for the fetch tests: an HTTP server with misbehaving routes, and git daemon.

HTTP routes (GET):
  /file/<name>            the bytes registered under <name>
  /redirect/<n>/<name>    302 chain of n hops ending at /file/<name>
  /slow/<name>            like /file, after a 1 s pause (to overlap concurrent clients)
  /flaky/<k>/<name>       503 for the first k requests of that path, then the file
  /stall/<name>           headers and half the body, then silence until the server stops
  /truncated/<name>       Content-Length of the full body, half the body, then close
  /big/<mib>              <mib> MiB generated on the fly (see big_digest)
  /silent                 never answers (until the server stops)
  /endless                200 without Content-Length, zeros until the client hangs up
  /trickle                200 without Content-Length, one byte every 50 ms
  anything else           404
Every request's path is counted in `server.hits`.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

MIB = 1 << 20


def big_block(i: int) -> bytes:
    return i.to_bytes(8, "big") * (MIB // 8)


def big_digest(mib: int) -> str:
    h = hashlib.sha256()
    for i in range(mib):
        h.update(big_block(i))
    return h.hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FetchServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        srv = self.server
        with srv.lock:
            srv.hits[self.path] += 1
            count = srv.hits[self.path]
        parts = self.path.strip("/").split("/")
        kind, rest = parts[0], parts[1:]
        files = srv.files
        if kind == "file" and rest and rest[-1] in files:
            self._send(200, files[rest[-1]])
        elif kind == "redirect" and len(rest) == 2:
            n = int(rest[0])
            self.send_response(302)
            self.send_header("Location", f"/redirect/{n - 1}/{rest[1]}" if n > 1 else f"/file/{rest[1]}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif kind == "slow" and rest and rest[-1] in files:
            time.sleep(1.0)
            self._send(200, files[rest[-1]])
        elif kind == "flaky" and len(rest) == 2 and rest[1] in files:
            if count <= int(rest[0]):
                self._send(503, b"try again")
            else:
                self._send(200, files[rest[1]])
        elif kind == "stall" and rest and rest[-1] in files:
            body = files[rest[-1]]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            srv.stop_event.wait(60)
        elif kind == "truncated" and rest and rest[-1] in files:
            body = files[rest[-1]]
            self._send(200, body[: len(body) // 2], length=len(body))
            self.close_connection = True
        elif kind == "big" and rest:
            mib = int(rest[0])
            self.send_response(200)
            self.send_header("Content-Length", str(mib * MIB))
            self.end_headers()
            for i in range(mib):
                self.wfile.write(big_block(i))
        elif kind == "silent":
            srv.stop_event.wait(60)  # accepts the request, never answers
        elif kind == "endless":
            self.send_response(200)  # no Content-Length: the body ends when the connection does
            self.end_headers()
            with contextlib.suppress(OSError):
                while not srv.stop_event.is_set():
                    self.wfile.write(b"\0" * 65536)
        elif kind == "trickle":
            self.send_response(200)
            self.end_headers()
            with contextlib.suppress(OSError):
                while not srv.stop_event.wait(0.05):
                    self.wfile.write(b"x")
                    self.wfile.flush()
        else:
            self._send(404, b"not found")


class FetchServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def url(self, route: str) -> str:
        return f"{self.base}/{route.lstrip('/')}"

    def start(self) -> FetchServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.shutdown()
        self.server_close()
        self._thread.join(10)


def serve() -> Iterator[FetchServer]:
    """Generator for a pytest fixture: a started server, stopped afterwards."""
    srv = FetchServer().start()
    try:
        yield srv
    finally:
        if srv._thread.is_alive():
            srv.stop()


# -- git ------------------------------------------------------------------------------------------

GIT_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
    "LC_ALL": "C",
}


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", "-c", "init.defaultBranch=main", *args], cwd=cwd, env=GIT_ENV,
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def write_tree(root: Path, files: dict[str, str | bytes], executable: tuple[str, ...] = ()) -> None:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
        p.chmod(0o755 if rel in executable else 0o644)


class GitDaemon:
    """`git daemon --export-all` serving the bare repositories under `base` on 127.0.0.1."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["git", "daemon", "--export-all", "--reuseaddr", "--informative-errors",
             f"--base-path={base}", "--listen=127.0.0.1", f"--port={self.port}", str(base)],
            env=GIT_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("git daemon did not start")

    def url(self, repo: str) -> str:
        return f"git://127.0.0.1:{self.port}/{repo}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
