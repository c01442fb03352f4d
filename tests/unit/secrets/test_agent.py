"""The in-guest secrets agent, run for real (sys.executable) against a temporary root over loopback.

Tests run as root, so owners and modes are the real ones; the ready signal is a real sd_notify
datagram on a socket the test binds; the timeout path runs the agent until it gives up.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tdxstore.errors import SecretError
from tdxstore.secrets import AGENT_FILE, SecretEntry, manifest_json, push, push_tcp

ENTRIES = (
    SecretEntry("API_KEY", "/etc/app/api-key", owner="app"),
    SecretEntry("TLS_CERT", "/etc/ssl/app.pem", owner="root", group="ssl", mode=0o440),
    SecretEntry("TOKEN", "/run/secrets/TOKEN"),
)
VALUES = {"API_KEY": b"k3y-\x00-bytes\n", "TLS_CERT": b"-----BEGIN CERTIFICATE-----\nxyz\n", "TOKEN": b"t0ken"}


@dataclass
class Agent:
    proc: subprocess.Popen[bytes]
    port: int
    root: Path
    notify: socket.socket

    def ready_signal(self, wait: float) -> bytes | None:
        self.notify.settimeout(wait)
        try:
            return self.notify.recv(4096)
        except TimeoutError:
            return None

    def session(self) -> tuple[socket.socket, object, object]:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return sock, sock.makefile("rb"), sock.makefile("wb")


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1234:1235::/var/lib/app:/usr/sbin/nologin\n")
    (root / "etc/group").write_text("root:x:0:\napp:x:1235:\nssl:x:1300:\n")
    return root


def start(tmp_path: Path, *extra: str, timeout: float = 60) -> Agent:
    root = make_root(tmp_path)
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(manifest_json(ENTRIES, "vsock"))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    env = {"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": str(tmp_path / "notify")}
    proc = subprocess.Popen([sys.executable, str(AGENT_FILE), "--manifest", str(manifest), "--root", str(root),
                             "--listen", "tcp:127.0.0.1:0", "--timeout", str(timeout), *extra],
                            stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    first = proc.stderr.readline().decode()
    assert "listening on tcp:127.0.0.1:" in first, first
    port = int(first.split("127.0.0.1:")[1].split(",")[0])
    return Agent(proc, port, root, notify)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    a = start(tmp_path)
    yield a
    if a.proc.poll() is None:
        a.proc.kill()
    a.proc.wait()
    a.notify.close()


def raw(agent: Agent, records: list[tuple[str, bytes]]) -> bytes:
    """Speak the protocol by hand (the client would refuse undeclared names before sending)."""
    with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as sock:
        f = sock.makefile("rwb")
        f.write(b"TDXSECRETS 1\n")
        f.flush()
        assert f.readline().startswith(b"MANIFEST ")
        for name, value in records:
            f.write(f"SECRET {name} {len(value)}\n".encode() + value)
        f.write(b"END\n")
        f.flush()
        return bytes(f.readline())


def test_modes_owners_and_ready_only_when_complete(agent: Agent) -> None:
    first = push_tcp("127.0.0.1", agent.port, {"API_KEY": VALUES["API_KEY"]})
    assert first.accepted == ("API_KEY",) and first.missing == ("TLS_CERT", "TOKEN")
    assert agent.ready_signal(0.5) is None and agent.proc.poll() is None
    key = agent.root / "etc/app/api-key"
    st = key.stat()
    assert key.read_bytes() == VALUES["API_KEY"]
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o400, 1234, 1235)

    rest = push_tcp("127.0.0.1", agent.port, {"TLS_CERT": VALUES["TLS_CERT"], "TOKEN": VALUES["TOKEN"]})
    assert rest.accepted == ("TLS_CERT", "TOKEN") and rest.missing == ()
    signal = agent.ready_signal(10)
    assert signal is not None and b"READY=1" in signal
    assert agent.proc.wait(10) == 0
    cert = (agent.root / "etc/ssl/app.pem").stat()
    assert (cert.st_mode & 0o7777, cert.st_uid, cert.st_gid) == (0o440, 0, 1300)
    token = (agent.root / "run/secrets/TOKEN").stat()
    assert (token.st_mode & 0o7777, token.st_uid, token.st_gid) == (0o400, 0, 0)
    assert not [p for p in agent.root.rglob("*tdx-tmp*")]
    assert agent.proc.stderr is not None
    log = agent.proc.stderr.read()
    assert b"all 3 secrets present" in log
    for value in VALUES.values():
        assert value not in log


def test_undeclared_name_refused_and_nothing_written(agent: Agent) -> None:
    reply = raw(agent, [("API_KEY", b"v"), ("BOGUS", b"x")])
    assert reply.startswith(b"ERR undeclared ") and b"BOGUS" in reply
    assert not (agent.root / "etc/app/api-key").exists()
    with pytest.raises(SecretError) as e:
        push_tcp("127.0.0.1", agent.port, {"API_KEY": b"v", "OTHER": b"x"})
    assert e.value.code == "undeclared-secret" and "OTHER" in e.value.message
    assert not (agent.root / "etc/app/api-key").exists()


def test_empty_value_and_protocol_errors_refused(agent: Agent) -> None:
    assert raw(agent, [("TOKEN", b"")]).startswith(b"ERR empty-value ")
    assert raw(agent, [("TOKEN", b"a"), ("TOKEN", b"b")]).startswith(b"ERR duplicate ")
    with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as sock:
        sock.sendall(b"HELLO\n")
        assert sock.makefile("rb").readline().startswith(b"ERR protocol ")
    assert not (agent.root / "run/secrets/TOKEN").exists()
    assert agent.proc.poll() is None


def test_second_delivery_refused(agent: Agent) -> None:
    push_tcp("127.0.0.1", agent.port, {"TOKEN": b"first"})
    with pytest.raises(SecretError) as e:
        push_tcp("127.0.0.1", agent.port, {"TOKEN": b"second"})
    assert e.value.code == "agent-already-delivered" and "second" not in str(e.value)
    assert (agent.root / "run/secrets/TOKEN").read_bytes() == b"first"


def test_unknown_owner_refused_before_any_write(tmp_path: Path) -> None:
    a = start(tmp_path)
    try:
        (a.root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")  # user "app" gone
        reply = raw(a, [("API_KEY", b"v"), ("TOKEN", b"t")])
        assert reply.startswith(b"ERR unknown-account ") and b"app" in reply
        assert not (a.root / "run/secrets/TOKEN").exists()
    finally:
        a.proc.kill()
        a.proc.wait()


def test_writes_are_atomic(tmp_path: Path) -> None:
    a = start(tmp_path, "--redeliver")
    big = {b"A" * (1 << 20), b"B" * (1 << 20)}
    path = a.root / "run/secrets/TOKEN"
    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            seen.append(len(data))
            assert data in big, f"partial read of {len(data)} bytes"

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(20):
            push_tcp("127.0.0.1", a.port, {"TOKEN": sorted(big)[i % 2]})
    finally:
        stop.set()
        t.join()
        a.proc.kill()
        a.proc.wait()
    assert seen and set(seen) == {1 << 20}


def test_timeout_gives_a_clear_message_and_no_ready(tmp_path: Path) -> None:
    a = start(tmp_path, timeout=0.5)
    push_tcp("127.0.0.1", a.port, {"TOKEN": b"t"})
    assert a.proc.wait(20) == 1
    assert a.ready_signal(0.2) is None
    assert a.proc.stderr is not None
    log = a.proc.stderr.read().decode()
    assert "timed out after 0.5 s waiting for secrets; still missing: API_KEY, TLS_CERT" in log
    assert "secrets-ready.target will not be reached" in log


def test_stdio_session_for_ssh(tmp_path: Path) -> None:
    """The ssh channel runs the same protocol on stdin/stdout (a forced command)."""
    root = make_root(tmp_path)
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(manifest_json(ENTRIES, "ssh"))
    proc = subprocess.Popen([sys.executable, str(AGENT_FILE), "--manifest", str(manifest), "--root", str(root),
                             "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={"PATH": "/usr/bin"})
    assert proc.stdin is not None and proc.stdout is not None
    result = push(proc.stdout, proc.stdin, dict(VALUES))
    proc.stdin.close()
    assert proc.wait(10) == 0 and result.missing == ()
    assert "delivery ssh" in manifest.read_text()
    assert (root / "etc/app/api-key").read_bytes() == VALUES["API_KEY"]
    assert os.stat(root / "etc/app/api-key").st_uid == 1234


# What the agent may import: Debian's python3-minimal (libpython3.11-minimal, and modules built into
# /usr/bin/python3.11 such as _socket, select, math, array). json, argparse's gettext and typing's
# _typing are in libpython3.11-stdlib, which a secrets image does not install.
MINIMAL = {"__future__", "_abc", "_codecs", "_collections", "_collections_abc", "_frozen_importlib_external",
           "_functools", "_io", "_operator", "_signal", "_socket", "_stat", "_weakrefset", "abc", "array", "binascii",
           "codecs", "collections", "collections.abc", "encodings", "encodings.aliases", "encodings.utf_8",
           "enum", "errno", "functools", "genericpath", "io", "itertools", "keyword", "marshal", "math",
           "operator", "os", "posix", "posixpath", "reprlib", "select", "selectors", "socket", "stat",
           "threading", "time", "types", "zipimport"}


def test_agent_imports_only_what_python3_minimal_ships(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.txt"
    manifest.write_bytes(manifest_json(ENTRIES, "vsock"))
    proc = subprocess.run([sys.executable, "-S", "-X", "importtime", str(AGENT_FILE), "--manifest", str(manifest),
                           "--root", str(make_root(tmp_path)), "--listen", "tcp:127.0.0.1:0", "--timeout", "0.1"],
                          capture_output=True, text=True, env={"PATH": "/usr/bin"}, timeout=30)
    assert proc.returncode == 1 and "timed out" in proc.stderr
    imported = {line.split("|")[2].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    imported -= {"package", "imported package"}
    assert imported and imported <= MINIMAL, sorted(imported - MINIMAL)


def run_script_agent(tmp_path: Path, script: str) -> tuple[int, str, bytes | None, Path]:
    """`--script`: the agent runs the fetch script once (through its #! line) and applies its output."""
    root = make_root(tmp_path)
    manifest = tmp_path / "manifest.txt"
    manifest.write_bytes(manifest_json(ENTRIES, "script"))
    path = tmp_path / "fetch-secrets"
    path.write_text(script)  # mode 0644, as the image ships it
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify"))
        notify.settimeout(0.2)
        proc = subprocess.run([sys.executable, str(AGENT_FILE), "--manifest", str(manifest), "--root", str(root),
                               "--script", str(path)], capture_output=True, text=True, timeout=30,
                              env={"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": str(tmp_path / "notify")})
        try:
            ready: bytes | None = notify.recv(4096)
        except TimeoutError:
            ready = None
    assert proc.stdout == ""
    return proc.returncode, proc.stderr, ready, root


def test_script_delivery_writes_every_secret_and_signals_ready(tmp_path: Path) -> None:
    import base64

    cert = base64.b64encode(VALUES["TLS_CERT"]).decode()
    rc, log, ready, root = run_script_agent(
        tmp_path, f"#!/bin/sh\n# fetch from somewhere\necho 'API_KEY=k3y'\necho 'TLS_CERT:base64={cert}'\n"
                  "echo TOKEN=t0ken\necho fetched >&2\n")
    assert rc == 0 and ready is not None and b"READY=1" in ready, log
    assert (root / "etc/app/api-key").read_bytes() == b"k3y" and os.stat(root / "etc/app/api-key").st_uid == 1234
    assert (root / "etc/ssl/app.pem").read_bytes() == VALUES["TLS_CERT"]
    assert os.stat(root / "etc/ssl/app.pem").st_mode & 0o7777 == 0o440
    assert "all 3 secrets present" in log and "k3y" not in log and "t0ken" not in log


@pytest.mark.parametrize(("script", "expect"), [
    ("#!/bin/sh\necho API_KEY=a\necho OTHER=b\necho TOKEN=t\necho TLS_CERT=c\n",
     "undeclared: not declared by the image: OTHER; nothing was written"),
    ("#!/bin/sh\necho API_KEY=a\n", "the fetch script gave no value for TLS_CERT, TOKEN"),
    ("#!/bin/sh\necho API_KEY=s3cr3t\nexit 3\n", "exited with status 3"),
    ("echo API_KEY=s3cr3t\necho 'not a line'\n", "fetch script output line 2: expected NAME=value"),
    ("#!/bin/sh\necho API_KEY=\necho TLS_CERT=c\necho TOKEN=t\n", "empty-value: empty value for API_KEY"),
])
def test_script_delivery_refusals(tmp_path: Path, script: str, expect: str) -> None:
    rc, log, ready, root = run_script_agent(tmp_path, script)
    assert rc == 1 and ready is None and expect in log, log
    assert "secrets-ready.target will not be reached" in log and "s3cr3t" not in log
    if "gave no value" not in expect:
        assert not (root / "etc/app").exists()
