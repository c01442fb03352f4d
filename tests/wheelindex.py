"""Wheels built by the tests themselves and a PEP 503 simple index serving them on 127.0.0.1.

`make_wheel` writes a pure-Python wheel with zipfile (METADATA, WHEEL, RECORD with hashes), so no
build backend or network is needed. `SimpleIndex` serves `/simple/` (project list), `/simple/<name>/`
(links with `#sha256=` fragments) and `/files/<wheel>`; it reads the directory on every request,
so a test can add or tamper with wheels while it runs. Every request path is counted in `hits`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import re
import threading
import zipfile
from collections import Counter
from pathlib import Path


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(directory: Path, name: str, version: str, files: dict[str, str],
               requires: tuple[str, ...] = ()) -> Path:
    """`<dist>-<version>-py3-none-any.whl` holding `files` (paths relative to site-packages)."""
    dist = re.sub(r"[-_.]+", "_", name).lower()
    info = f"{dist}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + \
        "".join(f"Requires-Dist: {r}\n" for r in requires)
    members = {**files, f"{info}/METADATA": meta,
               f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{p},{_record_hash(c.encode())},{len(c.encode())}\n" for p, c in members.items())
    members[f"{info}/RECORD"] = record + f"{info}/RECORD,,\n"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, c in members.items():
            z.writestr(zipfile.ZipInfo(p, date_time=(2020, 1, 1, 0, 0, 0)), c)
    return path


def _project(wheel: str) -> str:
    return re.sub(r"[-_.]+", "-", wheel.split("-", 1)[0]).lower()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: SimpleIndex

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "text/html") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        srv = self.server
        with srv.lock:
            srv.hits[self.path] += 1
        wheels = sorted(p.name for p in srv.directory.glob("*.whl"))
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if parts == ["simple"]:
            names = sorted({_project(w) for w in wheels})
            body = "".join(f'<a href="/simple/{n}/">{n}</a>\n' for n in names)
            self._send(200, f"<html><body>\n{body}</body></html>\n".encode())
        elif len(parts) == 2 and parts[0] == "simple":
            mine = [w for w in wheels if _project(w) == parts[1]]
            if not mine:
                self._send(404, b"not found")
                return
            links = "".join(
                f'<a href="/files/{html.escape(w)}#sha256={srv.listed_sha256(w)}">{html.escape(w)}</a>\n'
                for w in mine)
            self._send(200, f"<html><body>\n{links}</body></html>\n".encode())
        elif len(parts) == 2 and parts[0] == "files" and parts[1] in wheels:
            self._send(200, (srv.directory / parts[1]).read_bytes(), "application/octet-stream")
        else:
            self._send(404, b"not found")


class SimpleIndex(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.directory = directory
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.pinned: dict[str, str] = {}  # wheel -> sha256 the index advertises (tests tamper behind it)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def listed_sha256(self, wheel: str) -> str:
        return self.pinned.get(wheel) or hashlib.sha256((self.directory / wheel).read_bytes()).hexdigest()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/simple"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)
