"""A real HTTP binary-cache server on 127.0.0.1 for the cache tests: GET and HEAD serve files of a
directory, PUT writes them (atomically, as a WebDAV server with PUT enabled does); `..` is refused.
Every request is counted in `server.hits` by method."""

from __future__ import annotations

import http.server
import os
import threading
from collections import Counter
from pathlib import Path


class _Handler(http.server.BaseHTTPRequestHandler):
    server: CacheServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _target(self) -> Path | None:
        rel = self.path.split("?", 1)[0].lstrip("/")
        if not rel or ".." in rel.split("/"):
            return None
        return self.server.root / rel

    def _reply(self, status: int, body: bytes = b"", head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_GET(self, head: bool = False) -> None:
        with self.server.lock:
            self.server.hits["HEAD" if head else "GET"] += 1
        target = self._target()
        if target is None or not target.is_file():
            self._reply(404, b"not found", head)
            return
        self._reply(200, target.read_bytes(), head)

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_PUT(self) -> None:
        with self.server.lock:
            self.server.hits["PUT"] += 1
        target = self._target()
        if target is None:
            self._reply(403, b"forbidden")
            return
        length = int(self.headers.get("Content-Length", "0"))
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.{threading.get_ident()}.part")
        with open(part, "wb") as f:
            left = length
            while left:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                f.write(chunk)
                left -= len(chunk)
        os.replace(part, target)
        self._reply(201)


class CacheServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/cache"

    def start(self) -> CacheServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)
