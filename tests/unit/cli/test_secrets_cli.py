"""`tdx secrets list|push` run as a user runs them, against a real agent on 127.0.0.1.

The leak check searches everything the run produced (the command's output, the agent's log, the
TDX_HOME the command used) for each value and its base64 form.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdxstore.image.secrets import entries
from tdxstore.image.tdxfile import load_tdxfile
from tdxstore.secrets import AGENT_FILE, manifest_json

REPO = Path(__file__).parents[3]
EXAMPLE = REPO / "examples" / "secrets"
API_KEY = "sk-live-4f1c9a7e-value-that-must-not-leak"
TLS_KEY = b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"


def tdx(home: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tdxstore.cli.app", *map(str, args)], cwd=REPO, text=True,
                          timeout=120, env={**os.environ, "TDX_HOME": str(home)}, capture_output=True)


def one_error(r: subprocess.CompletedProcess[str]) -> str:
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode == 1 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    return errors[0]


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[int, Path, subprocess.Popen[bytes]]]:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:990:990::/var/lib/app:/usr/sbin/nologin\n")
    (root / "etc/group").write_text("root:x:0:\napp:x:990:\n")
    manifest = tmp_path / "manifest.txt"
    manifest.write_bytes(manifest_json(entries(load_tdxfile(EXAMPLE)), "vsock"))
    proc = subprocess.Popen([sys.executable, str(AGENT_FILE), "--manifest", str(manifest), "--root", str(root),
                             "--listen", "tcp:127.0.0.1:0", "--timeout", "60"], stderr=subprocess.PIPE,
                            env={"PATH": "/usr/bin"})
    assert proc.stderr is not None
    port = int(proc.stderr.readline().decode().split("127.0.0.1:")[1].split(",")[0])
    yield port, root, proc
    proc.kill()
    proc.wait()


def secrets_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "secrets.env"
    path.write_text(text)
    return path


def test_list_table_and_json(tmp_path: Path) -> None:
    table = tdx(tmp_path / "home", "secrets", "list", EXAMPLE)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == "delivery: ssh"
    assert lines[1].split() == ["NAME", "DESTINATION", "OWNER", "MODE", "DESCRIPTION"]
    assert lines[2].split()[:4] == ["API_KEY", "/etc/app/api-key", "app", "0400"]
    assert lines[2].endswith("API key of the monitoring service")
    doc = json.loads(tdx(tmp_path / "home", "secrets", "list", EXAMPLE, "--json").stdout)
    assert doc["delivery"] == "ssh" and [s["name"] for s in doc["secrets"]] == ["API_KEY", "TLS_KEY"]
    assert doc["secrets"][1] == {"name": "TLS_KEY", "dest": "/etc/app/tls.key", "owner": "app", "group": None,
                                 "mode": "0400", "description": "Private key of the HTTPS endpoint"}


def test_push_delivers_reports_and_leaks_nothing(tmp_path: Path,
                                                 agent: tuple[int, Path, subprocess.Popen[bytes]]) -> None:
    port, root, proc = agent
    home = tmp_path / "home"
    (tmp_path / "tls.key").write_bytes(TLS_KEY)
    key = secrets_file(tmp_path, f"# demo\nAPI_KEY={API_KEY}\n")
    first = tdx(home, "secrets", "push", "--host", f"127.0.0.1:{port}", "--key", key, "--tdxfile", EXAMPLE)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["accepted: API_KEY", "missing:  TLS_KEY"]
    key.write_text("TLS_KEY=@tls.key\n")
    second = tdx(home, "secrets", "push", "--host", f"127.0.0.1:{port}", "--key", key)
    assert second.stdout.splitlines() == ["accepted: TLS_KEY", "missing:  none, all secrets present"]
    assert proc.wait(10) == 0
    assert (root / "etc/app/api-key").read_text() == API_KEY and (root / "etc/app/tls.key").read_bytes() == TLS_KEY
    assert (root / "etc/app/tls.key").stat().st_uid == 990

    again = tdx(home, "secrets", "push", "--host", f"127.0.0.1:{port}", "--key", key)
    assert "no secrets agent answers at 127.0.0.1:" in one_error(again)

    assert proc.stderr is not None
    seen = [first.stdout, first.stderr, second.stdout, second.stderr, again.stderr,
            proc.stderr.read().decode("utf-8", "replace")]
    seen += [p.read_bytes().decode("latin-1") for p in home.rglob("*") if p.is_file()] if home.exists() else []
    for value in (API_KEY.encode(), TLS_KEY, b"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"):
        for form in (value.decode(), base64.b64encode(value).decode()):
            assert not any(form in text for text in seen)


@pytest.mark.parametrize(("text", "says"), [
    ("API_KEY=v\nnot a line\n", "secrets.env:2: expected NAME=value or NAME=@file"),
    ("API_KEY=\n", "secrets.env:1: API_KEY has an empty value"),
    ("API_KEY=a\nAPI_KEY=b\n", "secrets.env:2: API_KEY is given twice"),
    ("API_KEY=@missing.pem\n", "secrets.env:1: API_KEY's file"),
    ("API_KEY=v\nBOGUS=x\n", "does not declare BOGUS; nothing was sent"),
])
def test_bad_secrets_files_fail_before_connecting(tmp_path: Path, text: str, says: str) -> None:
    # port 1 on 127.0.0.1 has no listener: each of these must fail before any connection is tried
    r = tdx(tmp_path / "home", "secrets", "push", "--host", "127.0.0.1:1", "--key", secrets_file(tmp_path, text),
            "--tdxfile", EXAMPLE)
    line = one_error(r)
    assert says in line and "no secrets agent" not in r.stderr
    for value in ("=v", "=a", "=b", "=x"):
        assert value not in r.stderr.replace("NAME=value", "")


def test_agent_refuses_an_undeclared_name_without_the_tdxfile(
        tmp_path: Path, agent: tuple[int, Path, subprocess.Popen[bytes]]) -> None:
    port, root, _ = agent
    r = tdx(tmp_path / "home", "secrets", "push", "--host", f"127.0.0.1:{port}", "--key",
            secrets_file(tmp_path, "API_KEY=v1\nOTHER=v2\n"))
    assert "the image's manifest does not declare OTHER; nothing was sent" in one_error(r)
    assert not (root / "etc/app/api-key").exists()


def test_unreachable_host_and_bad_arguments(tmp_path: Path) -> None:
    key = secrets_file(tmp_path, "API_KEY=v\n")
    assert "no secrets agent answers at 127.0.0.1:1" in one_error(
        tdx(tmp_path / "home", "secrets", "push", "--host", "127.0.0.1:1", "--key", key))
    assert "--host 'x:y' is not HOST or HOST:PORT" in one_error(
        tdx(tmp_path / "home", "secrets", "push", "--host", "x:y", "--key", key))
    assert "exactly one of --host" in one_error(tdx(tmp_path / "home", "secrets", "push", "--key", key))


def test_ssh_options_are_checked_before_anything_is_read_or_sent(tmp_path: Path) -> None:
    key = secrets_file(tmp_path, "API_KEY=v\n")
    fp = "SHA256:" + "A" * 43
    push = ("secrets", "push", "--key", key)
    assert "is not an OpenSSH SHA-256 fingerprint" in one_error(
        tdx(tmp_path / "home", *push, "--host", "127.0.0.1:1", "--host-key", "MD5:00"))
    assert "--host-key goes with --host" in one_error(tdx(tmp_path / "home", *push, "--vsock", "3", "--host-key", fp))
    assert "one of --host-key and --host-key-from" in one_error(
        tdx(tmp_path / "home", *push, "--host", "h", "--host-key", fp, "--host-key-from", key))
    assert "shows no ssh host key fingerprint" in one_error(
        tdx(tmp_path / "home", *push, "--host", "127.0.0.1:1", "--host-key-from", key))
    assert "no ssh server answers at 127.0.0.1:1" in one_error(
        tdx(tmp_path / "home", *push, "--host", "127.0.0.1:1", "--host-key", fp))
