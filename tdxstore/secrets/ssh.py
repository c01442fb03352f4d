"""The ssh channel of secrets delivery (L2): the guest's host key checked first, then the agent's protocol
over the system OpenSSH client's stdin/stdout.

No trust on first use: the key sshd offers is fetched (ssh-keyscan) and its SHA-256 fingerprint compared
with the one the user passes, or the one the guest printed on its console, before any session; the
session then runs with StrictHostKeyChecking=yes against exactly that key. Values go to ssh's stdin only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, cast

from tdxstore.errors import SecretError
from tdxstore.sandbox import process
from tdxstore.secrets.client import PushResult, push

SSH_PORT = 22
#: What the guest's first-boot unit prints on the serial console, then the fingerprint and the key type.
FINGERPRINT_MARKER = "tdx-ssh-host-key:"
HOST_ALIAS = "tdx-guest"  # known_hosts names the key by this alias, whatever HOST:PORT is used
_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


def parse_fingerprint(text: str) -> str:
    """`SHA256:` and 43 base64 characters (what `ssh-keygen -l -E sha256` prints)."""
    fp = text.strip()
    if not _FINGERPRINT.fullmatch(fp):
        raise SecretError(f"--host-key {text!r} is not an OpenSSH SHA-256 fingerprint",
                          hint="copy it from the VM's console line 'tdx-ssh-host-key: SHA256:…', or pass "
                               "--host-key-from CONSOLE_LOG", code="bad-fingerprint")
    return fp


def fingerprint(key_line: str) -> str:
    """The SHA-256 fingerprint of a public key line `TYPE BASE64 [comment]`."""
    try:
        blob = base64.b64decode(key_line.split()[1], validate=True)
    except (IndexError, binascii.Error):
        raise SecretError("the guest's ssh host key is not a public key line", code="bad-host-key",
                          detail=key_line[:200]) from None
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def fingerprint_from_console(path: Path) -> str:
    """The last fingerprint the guest printed on its serial console (`tdx run --console-log`)."""
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError as e:
        raise SecretError(f"cannot read the console log {str(path)!r} ({e.strerror})", code="console-log") from None
    found = [m.group(0) for line in text.splitlines() if FINGERPRINT_MARKER in line
             for m in [_FINGERPRINT.search(line.split(FINGERPRINT_MARKER, 1)[1])] if m]
    if not found:
        raise SecretError(f"the console log {str(path)!r} shows no ssh host key fingerprint",
                          hint=f"wait for the guest to print '{FINGERPRINT_MARKER} SHA256:…' (first boot makes "
                               "the key), or pass --host-key", code="no-fingerprint")
    return found[-1]


def scan_host_keys(host: str, port: int, timeout: float = 10) -> list[str]:
    """The ed25519 host keys sshd at HOST:PORT offers, as `TYPE BASE64` lines (ssh-keyscan)."""
    done = process.run(["ssh-keyscan", "-T", str(max(1, int(timeout))), "-p", str(port), "-t", "ed25519", host],
                       check=False, timeout=timeout + 5, what="ssh-keyscan")
    keys = []
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        words = line.split()
        if len(words) >= 3 and not line.startswith("#"):
            keys.append(f"{words[1]} {words[2]}")
    if not keys:
        raise SecretError(f"no ssh server answers at {host}:{port}", code="host-unreachable",
                          hint="is the VM up and its port forwarded (`tdx run --port 2222:22`)?",
                          detail=process.tail(done.stderr, 5) or None)
    return keys


def verify_host_key(host: str, port: int, expected: str) -> str:
    """The offered key whose fingerprint is `expected`; SecretError `host-key-mismatch` otherwise."""
    keys = scan_host_keys(host, port)
    for key in keys:
        if fingerprint(key) == expected:
            return key
    raise SecretError(f"the ssh host key at {host}:{port} is {fingerprint(keys[0])}, not {expected}; "
                      "nothing was sent", code="host-key-mismatch",
                      hint="a different machine answers, or the fingerprint is not this boot's: read it again "
                           "from the VM's console")


def ssh_argv(host: str, port: int, known_hosts: Path, user: str, identity: Path | None) -> list[str]:
    """OpenSSH with host-key checking on, against `known_hosts` only; no config file, no prompts, no tty."""
    argv = ["ssh", "-F", "none", "-T", "-p", str(port), "-l", user,
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"HostKeyAlias={HOST_ALIAS}",
            "-o", "HostKeyAlgorithms=ssh-ed25519", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]
    if identity is not None:
        argv += ["-i", os.fspath(identity), "-o", "IdentitiesOnly=yes"]
    return [*argv, host]


def push_ssh(host: str, port: int, values: dict[str, bytes], expected: str, *, user: str = "root",
             identity: Path | None = None, timeout: float = 60) -> PushResult:
    """Verify the host key, then run one delivery through `ssh` (the guest forces the relay to the agent)."""
    key = verify_host_key(host, port, parse_fingerprint(expected))
    env = process.host_env({k: os.environ[k] for k in ("SSH_AUTH_SOCK",) if k in os.environ})
    with tempfile.TemporaryDirectory(prefix="tdx-ssh-") as tmp:
        known = Path(tmp) / "known_hosts"
        known.write_text(f"{HOST_ALIAS} {key}\n")
        proc = process.popen(ssh_argv(host, port, known, user, identity), env=env, stdin=process.PIPE,
                             stderr=process.PIPE)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            result = push(cast(BinaryIO, proc.stdout), cast(BinaryIO, proc.stdin), values)
        except (SecretError, BrokenPipeError) as e:
            failed = _ssh_failure(proc, timeout)
            raise (failed or e) from None
        finally:
            _close(proc, timeout)
    return result


def _close(proc: Any, timeout: float) -> None:
    """End the session: EOF on ssh's stdin (the relay then ends), wait, kill only if it hangs."""
    _eof(proc)
    try:
        proc.wait(timeout)
    except process.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()
    proc.stderr.close()


def _eof(proc: Any) -> None:
    with contextlib.suppress(BrokenPipeError):  # ssh already gone; close() still marks the pipe closed
        proc.stdin.close()


def _ssh_failure(proc: Any, timeout: float) -> SecretError | None:
    """ssh's own failure (authentication, connection), in its words; None when ssh ran and the agent refused."""
    _eof(proc)
    try:
        code = proc.wait(timeout)
    except process.TimeoutExpired:
        return None
    if code != 255:
        return None
    text = process.tail(proc.stderr.read(), 5)
    return SecretError("ssh could not open a session with the guest; nothing was sent", code="ssh-failed",
                       hint="the key you log in with must be in the image: secret_delivery('ssh', "
                            "authorized_keys='./deliver.pub'); pass it with --identity",
                       detail=text or None)
