"""The sending side of secrets delivery (L2): one session of the agent's line protocol over a stream.

The stream is a TCP connection today; a Unix socket, vsock or an ssh child's stdin/stdout carry the
same bytes. Names are checked against the agent's manifest before any value is sent; values are
written to the stream only, never to a log, an error or an argv.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import BinaryIO

from tdxstore.errors import SecretError

PROTOCOL = b"TDXSECRETS 1"
DEFAULT_PORT = 7979


@dataclass(frozen=True, slots=True)
class PushResult:
    """What the agent reports after a delivery: names accepted now and declared names still missing."""

    accepted: tuple[str, ...]
    missing: tuple[str, ...]


def parse_host(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """`HOST`, `HOST:PORT` or `[V6]:PORT`."""
    host, port = text, str(default_port)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or port
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SecretError(f"--host {text!r} is not HOST or HOST:PORT", hint="e.g. --host 127.0.0.1:7979",
                          code="usage")
    return host, int(port)


def connect_tcp(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise SecretError(f"no secrets agent answers at {host}:{port} ({e.strerror or type(e).__name__})",
                          hint="is the VM up and the port forwarded? `tdx run --port` forwards it on 127.0.0.1",
                          code="host-unreachable") from None


def refuse_undeclared(values: dict[str, bytes], declared: set[str], where: str) -> None:
    undeclared = sorted(set(values) - declared)
    if undeclared:
        raise SecretError(f"{where} does not declare {', '.join(undeclared)}; nothing was sent",
                          hint=f"declared: {', '.join(sorted(declared)) or 'none'}", code="undeclared-secret")


def _reply(rfile: BinaryIO, expect: bytes) -> str:
    try:
        line = rfile.readline(1 << 16)
    except OSError as e:
        raise SecretError(f"the secrets agent closed the connection ({e.strerror or type(e).__name__})",
                          code="agent-protocol") from None
    if line.startswith(b"ERR "):
        code, _, message = line[4:].decode("utf-8", "replace").strip().partition(" ")
        raise SecretError(f"the secrets agent refused the delivery: {message}", code=f"agent-{code}",
                          hint="nothing was written on the VM")
    if not line.startswith(expect + b" ") or not line.endswith(b"\n"):
        raise SecretError("the secrets agent answered outside its protocol", code="agent-protocol",
                          detail=line[:200].decode("utf-8", "replace"))
    return line[len(expect) + 1:].decode()


def _fields(text: str) -> dict[str, tuple[str, ...]]:
    """`key=A,B key2=` -> {key: (A, B), key2: ()}."""
    out = {}
    for word in text.strip().split(" "):
        key, _, names = word.partition("=")
        out[key] = tuple(n for n in names.split(",") if n)
    return out


def push(rfile: BinaryIO, wfile: BinaryIO, values: dict[str, bytes]) -> PushResult:
    """Handshake, check names against the agent's manifest, send every value, read the verdict."""
    wfile.write(PROTOCOL + b"\n")
    wfile.flush()
    info = _fields(_reply(rfile, b"MANIFEST"))
    refuse_undeclared(values, set(info["declared"]), "the image's manifest")
    for name in sorted(values):
        wfile.write(f"SECRET {name} {len(values[name])}\n".encode() + values[name])
    wfile.write(b"END\n")
    wfile.flush()
    verdict = _fields(_reply(rfile, b"OK"))
    return PushResult(verdict["accepted"], verdict["missing"])


def push_tcp(host: str, port: int, values: dict[str, bytes], timeout: float = 30.0) -> PushResult:
    with connect_tcp(host, port, timeout) as sock, sock.makefile("rb") as rfile, sock.makefile("wb") as wfile:
        return push(rfile, wfile, values)


def push_vsock(cid: int, port: int, values: dict[str, bytes], timeout: float = 30.0) -> PushResult:
    """The same session over AF_VSOCK (not exercised on the development machine: no vhost-vsock)."""
    try:
        sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect((cid, port))
    except OSError as e:
        raise SecretError(f"no secrets agent answers on vsock CID {cid} port {port} "
                          f"({e.strerror or type(e).__name__})", code="host-unreachable",
                          hint="is the VM up with a vhost-vsock device of that CID?") from None
    with sock, sock.makefile("rb") as rfile, sock.makefile("wb") as wfile:
        return push(rfile, wfile, values)
