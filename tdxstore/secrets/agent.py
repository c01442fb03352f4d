#!/usr/bin/python3
"""The in-guest secrets agent: receives values over a socket and writes them where the manifest says.

Shipped verbatim into the image (stdlib only, no tdxstore import); it never logs, echoes or stores a
value anywhere but its declared destination. A delivery is all-or-nothing: every name is checked
against the manifest before any file is written; each file is written atomically (temp file in the
same directory, fsync, rename) with its declared owner and mode; READY=1 reaches systemd only when
every declared secret is present. Wire protocol: see `docs/secrets.md` (same stream over TCP, Unix
socket, vsock, or ssh stdin/stdout).
"""

from __future__ import annotations

import binascii
import os
import socket
import sys
import threading
import time

TYPE_CHECKING = False  # typing pulls _typing from libpython3-stdlib; mypy reads the block anyway
if TYPE_CHECKING:
    from typing import BinaryIO

PROTOCOL = b"TDXSECRETS 1"
MAX_VALUE = 1 << 20  # 1 MiB: keys and certificates, not data sets
MAX_SECRETS = 256


class Refused(Exception):
    """A delivery the agent does not accept; `code` is sent back to the sender, never a value."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def load_manifest(path: str) -> dict[str, dict[str, str]]:
    """`tdx-secrets 1` then `delivery METHOD` then one tab-separated `secret` line per declaration.

    A line format, not JSON: Debian's json module is in libpython3-stdlib, and the image carries only
    python3-minimal.
    """
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if not lines or lines[0] != "tdx-secrets 1":
        raise SystemExit(f"tdx-secrets-agent: {path} is not a version 1 secrets manifest")
    out: dict[str, dict[str, str]] = {}
    for line in lines[1:]:
        fields = line.split("\t")
        if fields[0] != "secret":
            continue
        if len(fields) != 6:
            raise SystemExit(f"tdx-secrets-agent: {path}: malformed line {line!r}")
        _, name, dest, owner, group, mode = fields
        if not dest.startswith("/") or any(p in ("", ".", "..") for p in dest.split("/")[1:]) or "\0" in dest:
            raise SystemExit(f"tdx-secrets-agent: manifest destination {dest!r} of {name} is not a plain "
                             "absolute path")
        out[name] = {"dest": dest, "owner": owner, "group": group, "mode": mode}
    return out


def _table(root: str, table: str, name: str) -> list[str] | None:
    """The fields of `name`'s line in `root`'s /etc/passwd or /etc/group (the image's, not the caller's)."""
    try:
        with open(os.path.join(root, "etc", table), encoding="utf-8") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) > 3 and fields[0] == name:
                    return fields
    except FileNotFoundError:
        pass
    return None


def owner_ids(root: str, owner: str, group: str | None) -> tuple[int, int]:
    """uid of `owner`; gid of `group`, or of the owner's primary group when no group is declared."""
    user = _table(root, "passwd", owner)
    if user is None and owner != "root":
        raise Refused("unknown-account", f"user {owner!r} does not exist in {root.rstrip('/')}/etc/passwd")
    uid, primary = (int(user[2]), int(user[3])) if user else (0, 0)
    if group is None:
        return uid, primary
    fields = _table(root, "group", group)
    if fields is None and group != "root":
        raise Refused("unknown-account", f"group {group!r} does not exist in {root.rstrip('/')}/etc/group")
    return uid, int(fields[2]) if fields else 0


def destination(root: str, dest: str) -> str:
    return os.path.join(root, dest.lstrip("/")) if root != "/" else dest


def present(root: str, manifest: dict[str, dict[str, str]]) -> set[str]:
    return {n for n, e in manifest.items() if os.path.isfile(destination(root, e["dest"]))}


def write_secret(root: str, entry: dict[str, str], value: bytes) -> None:
    """Temp file in the destination's directory, chown/chmod before any byte, fsync, rename, fsync dir."""
    path = destination(root, entry["dest"])
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    uid, gid = owner_ids(root, entry["owner"], entry["group"] or None)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tdx-tmp-{os.getpid()}")
    # O_EXCL|O_NOFOLLOW: a planted file or symlink at the temp name is refused, never followed.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, int(entry["mode"], 8))
        view = memoryview(value)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _line(stream: BinaryIO) -> bytes:
    line = stream.readline(4096)
    if not line.endswith(b"\n"):
        raise Refused("protocol", "connection closed or line too long")
    return line[:-1]


def read_delivery(stream: BinaryIO) -> dict[str, bytes]:
    """`SECRET <name> <length>\\n<bytes>` records until `END`; structure only, no manifest check yet."""
    values: dict[str, bytes] = {}
    while True:
        words = _line(stream).split(b" ")
        if words == [b"END"]:
            return values
        if len(words) != 3 or words[0] != b"SECRET" or not words[2].isdigit():
            raise Refused("protocol", "expected 'SECRET <name> <length>' or 'END'")
        name, length = words[1].decode("ascii", "replace"), int(words[2])
        if length > MAX_VALUE or len(values) >= MAX_SECRETS:
            raise Refused("too-large", f"secret {name} is larger than {MAX_VALUE} bytes or too many secrets")
        data = stream.read(length)
        if len(data) != length:
            raise Refused("protocol", f"connection closed inside secret {name}")
        if name in values:
            raise Refused("duplicate", f"secret {name} is sent twice")
        values[name] = data


def check(values: dict[str, bytes], manifest: dict[str, dict[str, str]], have: set[str],
          redeliver: bool, root: str) -> None:
    undeclared = sorted(set(values) - set(manifest))
    if undeclared:
        raise Refused("undeclared", f"not declared by the image: {', '.join(undeclared)}")
    empty = sorted(n for n, v in values.items() if not v)
    if empty:
        raise Refused("empty-value", f"empty value for {', '.join(empty)}")
    again = sorted(set(values) & have)
    if again and not redeliver:
        raise Refused("already-delivered", f"already delivered: {', '.join(again)}")
    for name in values:  # accounts resolved before the first write: a delivery lands whole or not at all
        owner_ids(root, manifest[name]["owner"], manifest[name]["group"] or None)


def session(rfile: BinaryIO, wfile: BinaryIO, root: str, manifest: dict[str, dict[str, str]],
            redeliver: bool = False) -> bool:
    """One delivery; replies `OK <json>` or `ERR <code> <message>`; True when all secrets are present."""
    def reply(text: str) -> None:
        wfile.write(text.encode() + b"\n")
        wfile.flush()

    try:
        if _line(rfile) != PROTOCOL:
            raise Refused("protocol", f"expected {PROTOCOL.decode()!r}")
        have = present(root, manifest)
        reply(f"MANIFEST declared={','.join(sorted(manifest))} present={','.join(sorted(have))}")
        values = read_delivery(rfile)
        check(values, manifest, have, redeliver, root)
        for name in sorted(values):
            write_secret(root, manifest[name], values[name])
    except Refused as e:
        reply(f"ERR {e.code} {e.message}")
        return False
    have = present(root, manifest)
    reply(f"OK accepted={','.join(sorted(values))} missing={','.join(sorted(set(manifest) - have))}")
    return have == set(manifest)


def notify_ready() -> None:
    """sd_notify(READY=1) over $NOTIFY_SOCKET (a datagram socket; '@' means the abstract namespace)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(address)
        s.sendall(b"READY=1\nSTATUS=all secrets present\n")


def listener(spec: str) -> socket.socket:
    kind, _, where = spec.partition(":")
    if kind == "tcp":
        host, _, port = where.rpartition(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    elif kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(where):
            os.unlink(where)
        sock.bind(where)
        os.chmod(where, 0o600)
    elif kind == "vsock":
        sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        sock.bind((socket.VMADDR_CID_ANY, int(where)))
    else:
        raise SystemExit(f"tdx-secrets-agent: --listen {spec!r}: expected tcp:HOST:PORT, unix:PATH or vsock:PORT")
    sock.listen(4)
    return sock


def serve(sock: socket.socket, root: str, manifest: dict[str, dict[str, str]], timeout: float,
          redeliver: bool) -> int:
    deadline = time.monotonic() + timeout
    complete = present(root, manifest) == set(manifest)
    while not complete:
        left = deadline - time.monotonic()
        if left <= 0:
            missing = sorted(set(manifest) - present(root, manifest))
            sys.stderr.write(f"tdx-secrets-agent: timed out after {timeout:g} s waiting for secrets; still "
                             f"missing: {', '.join(missing)}; secrets-ready.target will not be reached\n")
            return 1
        sock.settimeout(left)
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        # The file objects hold the socket open past `with conn` (socket._io_refs): close them too, or a
        # refused sender (an ssh relay) never sees the end of the connection.
        with conn:
            conn.settimeout(30)
            rfile, wfile = conn.makefile("rb"), conn.makefile("wb")
            try:
                complete = session(rfile, wfile, root, manifest, redeliver)
            except OSError as e:
                sys.stderr.write(f"tdx-secrets-agent: connection dropped: {e.strerror or e}\n")
            finally:
                rfile.close()
                try:  # noqa: SIM105 (contextlib is not in python3-minimal's import budget)
                    wfile.close()
                except OSError:
                    pass
    sys.stderr.write(f"tdx-secrets-agent: all {len(manifest)} secrets present\n")
    notify_ready()
    return 0


def parse_script_output(data: bytes) -> dict[str, bytes]:
    """`NAME=value` or `NAME:base64=DATA` lines (blank and `#` lines skipped); errors name a line, never a value."""
    values: dict[str, bytes] = {}
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip() or line.startswith(b"#"):
            continue
        key, sep, value = line.partition(b"=")
        name, _, encoding = key.decode("ascii", "replace").partition(":")
        if not sep or encoding not in ("", "base64") or not name.isidentifier() or not name.isascii():
            raise Refused("protocol", f"fetch script output line {number}: expected NAME=value or NAME:base64=DATA")
        if encoding:
            try:
                value = binascii.a2b_base64(value)
            except binascii.Error:
                raise Refused("protocol", f"fetch script output line {number}: {name}'s base64 is malformed") from None
        if name in values:
            raise Refused("duplicate", f"secret {name} is given twice by the fetch script")
        values[name] = value
    return values


def script_argv(path: str) -> list[str]:
    """What the kernel would run for `path`: its `#!` interpreter (one optional argument), else /bin/sh.

    The script is shipped as a plain file (mode 0644), so it is not exec'd directly.
    """
    with open(path, "rb") as f:
        first = f.readline(256)
    if first.startswith(b"#!"):
        words = first[2:].decode("utf-8", "replace").strip().split(None, 1)
        if words:
            return [*words, path]
    return ["/bin/sh", path]


def run_script(path: str) -> bytes:
    """Run the fetch script with stdin on /dev/null and collect its stdout (its stderr goes to the journal)."""
    argv = script_argv(path)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only exec or _exit, never return into the agent
        try:
            os.close(r)
            os.dup2(w, 1)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.close(w)
    chunks, total = [], 0
    with open(r, "rb", buffering=0) as out:
        while chunk := out.read(65536):
            total += len(chunk)
            if total > 2 * MAX_VALUE:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise Refused("too-large", f"the fetch script wrote more than {2 * MAX_VALUE} bytes")
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise Refused("script-failed", f"the fetch script {path} exited with status "
                                       f"{os.waitstatus_to_exitcode(status)}")
    return b"".join(chunks)


def fetch(path: str, root: str, manifest: dict[str, dict[str, str]], redeliver: bool) -> int:
    """`script` delivery: run the image's fetch script once; its output obeys the rules of a delivery."""
    try:
        values = parse_script_output(run_script(path))
        check(values, manifest, present(root, manifest), redeliver, root)
        for name in sorted(values):
            write_secret(root, manifest[name], values[name])
    except Refused as e:
        sys.stderr.write(f"tdx-secrets-agent: {e.code}: {e.message}; nothing was written; "
                         "secrets-ready.target will not be reached\n")
        return 1
    missing = sorted(set(manifest) - present(root, manifest))
    if missing:
        sys.stderr.write(f"tdx-secrets-agent: the fetch script gave no value for {', '.join(missing)}; "
                         "secrets-ready.target will not be reached\n")
        return 1
    sys.stderr.write(f"tdx-secrets-agent: all {len(manifest)} secrets present\n")
    notify_ready()
    return 0


def relay(spec: str) -> int:
    """ssh forced command: carry stdin/stdout to the listening agent's Unix socket, byte for byte."""
    kind, _, where = spec.partition(":")
    if kind != "unix":
        raise SystemExit(f"tdx-secrets-agent: --relay {spec!r}: expected unix:PATH")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(where)
        except OSError:
            # The agent exits once every secret is present (or on its timeout): say so in the protocol,
            # so the sender reports a refusal instead of a broken session.
            os.write(1, b"ERR not-listening no secrets agent is listening: every declared secret was "
                        b"delivered already, or the agent timed out waiting\n")
            return 1

        def upstream() -> None:
            while chunk := os.read(0, 65536):
                sock.sendall(chunk)
            sock.shutdown(socket.SHUT_WR)

        threading.Thread(target=upstream, daemon=True).start()
        while chunk := sock.recv(65536):
            os.write(1, chunk)
    return 0


USAGE = """usage: tdx-secrets-agent [--manifest PATH] [--root DIR] [--timeout SECONDS] [--redeliver]
                         (--listen tcp:HOST:PORT|unix:PATH|vsock:PORT | --stdio | --relay unix:PATH
                          | --script PATH)"""
_VALUED = ("--manifest", "--root", "--listen", "--relay", "--timeout", "--script")
_MODES = ("--listen", "--stdio", "--relay", "--script")


def parse_args(argv: list[str]) -> dict[str, str]:
    """A hand parser: argparse imports gettext, which Debian ships outside python3-minimal."""
    args = {"--manifest": "/usr/lib/tdx-secrets/manifest.txt", "--root": "/", "--timeout": "600"}
    words = iter(argv)
    for word in words:
        if word in _VALUED:
            value = next(words, None)
            if value is None:
                raise SystemExit(f"tdx-secrets-agent: {word} needs a value\n{USAGE}")
            args[word] = value
        elif word in ("--stdio", "--redeliver"):
            args[word] = "yes"
        else:
            raise SystemExit(f"tdx-secrets-agent: unknown argument {word!r}\n{USAGE}")
    if sum(k in args for k in _MODES) != 1:
        raise SystemExit(f"tdx-secrets-agent: give exactly one of {', '.join(_MODES)}\n{USAGE}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if "--relay" in args:
        return relay(args["--relay"])
    manifest = load_manifest(args["--manifest"])
    root, redeliver = args["--root"], "--redeliver" in args
    if "--stdio" in args:
        return 0 if session(sys.stdin.buffer, sys.stdout.buffer, root, manifest, redeliver) else 1
    if "--script" in args:
        return fetch(args["--script"], root, manifest, redeliver)
    timeout = float(args["--timeout"])
    with listener(args["--listen"]) as sock:
        name = sock.getsockname()
        shown = f"{name[0]}:{name[1]}" if isinstance(name, tuple) else name
        sys.stderr.write(f"tdx-secrets-agent: listening on {args['--listen'].partition(':')[0]}:{shown}, "
                         f"waiting for {len(manifest)} secrets\n")
        sys.stderr.flush()
        return serve(sock, root, manifest, timeout, redeliver)


if __name__ == "__main__":
    sys.exit(main())
