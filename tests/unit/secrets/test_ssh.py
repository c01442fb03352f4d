"""The ssh channel against a real OpenSSH server on 127.0.0.1: the host key checked before any value, the
forced command relaying to a real listening agent (sys.executable) in a temporary root.

sshd is configured as the image configures it (one HostKey, the authorized keys with `restrict,command=`
to the relay); it runs as root, as in the guest (the tests run as root).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tdxstore.errors import SecretError
from tdxstore.secrets import AGENT_FILE, SecretEntry, fingerprint, fingerprint_from_console, manifest_json, push_ssh
from tdxstore.secrets.ssh import parse_fingerprint

SSHD = Path("/usr/sbin/sshd")
ENTRIES = (SecretEntry("API_KEY", "/etc/app/api-key"), SecretEntry("TOKEN", "/run/secrets/TOKEN", mode=0o440))
VALUES = {"API_KEY": b"ssh-delivered-\x01-value\n", "TOKEN": b"t0k3n"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sshd and the agent's chown need root (CAP_SETUID)")


@dataclass
class Guest:
    port: int
    root: Path
    host_fp: str
    identity: Path
    stranger: Path
    agent: subprocess.Popen[bytes]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def guest(tmp_path: Path) -> Iterator[Guest]:
    if not SSHD.exists():
        pytest.skip("openssh-server is not installed")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    manifest = tmp_path / "manifest.txt"
    manifest.write_bytes(manifest_json(ENTRIES, "ssh"))
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen([sys.executable, str(AGENT_FILE), "--manifest", str(manifest), "--root", str(root),
                              "--listen", f"unix:{sock}", "--timeout", "120"], stderr=subprocess.PIPE)
    assert agent.stderr is not None and b"listening on unix" in agent.stderr.readline()
    host_key, identity, stranger = (keygen(tmp_path / n) for n in ("host_key", "client", "stranger"))
    relay = f"{sys.executable} {AGENT_FILE} --relay unix:{sock}"
    keys = tmp_path / "authorized_keys"
    keys.write_text(f'restrict,command="{relay}" {(tmp_path / "client.pub").read_text().strip()}\n')
    port = free_port()
    config = tmp_path / "sshd_config"
    config.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {keys}\n"
                      f"PidFile {tmp_path}/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
                      "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    sshd = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    fp = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{host_key}.pub"], capture_output=True,
                        text=True, check=True).stdout.split()[1]
    yield Guest(port, root, fp, identity, stranger, agent)
    for p in (sshd, agent):
        p.kill()
        p.wait()


def test_fingerprint_matches_ssh_keygen(guest: Guest, tmp_path: Path) -> None:
    assert fingerprint((tmp_path / "host_key.pub").read_text()) == guest.host_fp
    assert parse_fingerprint(f" {guest.host_fp}\n") == guest.host_fp


def test_push_over_ssh_writes_through_the_forced_relay(guest: Guest) -> None:
    result = push_ssh("127.0.0.1", guest.port, dict(VALUES), guest.host_fp, identity=guest.identity)
    assert result.accepted == ("API_KEY", "TOKEN") and result.missing == ()
    assert (guest.root / "etc/app/api-key").read_bytes() == VALUES["API_KEY"]
    assert os.stat(guest.root / "run/secrets/TOKEN").st_mode & 0o7777 == 0o440
    assert guest.agent.wait(20) == 0  # every secret present: the agent signalled ready and exited


def test_wrong_fingerprint_refused_before_any_value(guest: Guest) -> None:
    wrong = "SHA256:" + "A" * 43
    with pytest.raises(SecretError) as e:
        push_ssh("127.0.0.1", guest.port, dict(VALUES), wrong, identity=guest.identity)
    assert e.value.code == "host-key-mismatch" and guest.host_fp in e.value.message
    assert not (guest.root / "etc/app").exists() and guest.agent.poll() is None


def test_key_not_authorized_fails_in_ssh_words(guest: Guest) -> None:
    with pytest.raises(SecretError) as e:
        push_ssh("127.0.0.1", guest.port, dict(VALUES), guest.host_fp, identity=guest.stranger)
    assert e.value.code == "ssh-failed" and "Permission denied" in (e.value.detail or "")
    assert not (guest.root / "etc/app").exists()


def test_undeclared_name_refused_on_the_manifest_line(guest: Guest) -> None:
    with pytest.raises(SecretError) as e:
        push_ssh("127.0.0.1", guest.port, {"OTHER": b"x", **VALUES}, guest.host_fp, identity=guest.identity)
    assert e.value.code == "undeclared-secret" and "OTHER" in e.value.message
    assert not (guest.root / "etc/app").exists()


def test_no_server_answers() -> None:
    with pytest.raises(SecretError) as e:
        push_ssh("127.0.0.1", free_port(), dict(VALUES), "SHA256:" + "B" * 43)
    assert e.value.code == "host-unreachable"


def test_fingerprint_from_a_console_log(tmp_path: Path) -> None:
    fp = "SHA256:" + "x" * 42 + "Q"
    log = tmp_path / "console.log"
    log.write_bytes(b"[  OK  ] Started foo\r\n\x1b[0mtdx-ssh-host-key: SHA256:old" + b"o" * 40 + b" ED25519\r\n"
                    + f"tdx-ssh-host-key: {fp} ED25519\r\n".encode() + b"login:\r\n")
    assert fingerprint_from_console(log) == fp
    log.write_bytes(b"no marker here\n")
    with pytest.raises(SecretError) as e:
        fingerprint_from_console(log)
    assert e.value.code == "no-fingerprint"
    with pytest.raises(SecretError) as e:
        parse_fingerprint("MD5:aa:bb")
    assert e.value.code == "bad-fingerprint"


def test_a_second_push_after_the_agent_finished_is_a_refusal(guest: Guest) -> None:
    push_ssh("127.0.0.1", guest.port, dict(VALUES), guest.host_fp, identity=guest.identity)
    assert guest.agent.wait(20) == 0
    with pytest.raises(SecretError) as e:
        push_ssh("127.0.0.1", guest.port, dict(VALUES), guest.host_fp, identity=guest.identity)
    assert e.value.code == "agent-not-listening" and "delivered already" in e.value.message
