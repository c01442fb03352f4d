"""End to end (slow): examples/secrets built as a UKI next to its secrets.env, booted with `tdx run` (ssh
forwarded on 127.0.0.1), the values pushed over ssh with the fingerprint read from the console, and the
service that requires secrets-ready.target printing the SHA-256 of one of them. Then the leak proof: each
value and its base64 form is searched in the built image (UKI, its decompressed initrd, the disk), the
whole store, every build log and everything the test captured, and found nowhere.

The image is built into the persistent test store (TDX_TEST_STORE), so a second run is a lookup.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from tests.e2e.buildhelp import REPO, Run, tdx

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TEST_STORE = Path(os.environ.get("TDX_TEST_STORE", "/var/tmp/tdx-test-store"))
EXAMPLE = REPO / "examples" / "secrets"
TEST_KEY = REPO / "tests" / "data" / "secrets" / "deliver-test-key"
# Distinctive values that appear literally nowhere in the repository (they are derived here).
API_KEY = hashlib.sha256(b"tdx e2e api key").hexdigest().encode()
TLS_KEY = b"-----BEGIN PRIVATE KEY-----\n" + base64.b64encode(hashlib.sha512(b"tdx e2e tls").digest()) + \
    b"\n-----END PRIVATE KEY-----\n"
MARKER = "tdx-ssh-host-key:"


def needles() -> list[bytes]:
    out = []
    for value in (API_KEY, TLS_KEY.splitlines()[1]):
        out += [value, base64.b64encode(value)]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(path: Path, text: str, timeout: float, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = path.read_bytes().decode("utf-8", "replace") if path.exists() else ""
        if text in data:
            return data
        assert proc.poll() is None, f"tdx run exited ({proc.returncode}):\n{data[-3000:]}"
        time.sleep(1)
    raise AssertionError(f"{text!r} not on the console within {timeout} s:\n{data[-3000:]}")


def initrd(uki: Path) -> bytes:
    """The UKI's .initrd section, decompressed when it is zstd (what the guest unpacks as its root)."""
    import pefile

    pe = pefile.PE(str(uki), fast_load=True)
    data = next(s.get_data() for s in pe.sections if s.Name.rstrip(b"\0") == b".initrd")
    out = b""
    while data.startswith(b"\x28\xb5\x2f\xfd"):  # concatenated zstd frames
        d = zstandard.ZstdDecompressor().decompressobj()
        out += d.decompress(data)
        data = d.unused_data
    return out + data


def grep_tree(root: Path, patterns: list[bytes]) -> list[str]:
    """Files below `root` holding any pattern (grep -F, in C: the store is gigabytes)."""
    argv = ["grep", "-rlF", "--devices=skip", *(a for p in patterns for a in ("-e", p.decode())), str(root)]
    done = subprocess.run(argv, capture_output=True, check=False)
    assert done.returncode in (0, 1), done.stderr.decode()
    return done.stdout.decode().splitlines()


def logs_with(patterns: list[bytes]) -> list[str]:
    hits = []
    for log in sorted((TEST_STORE / "logs").rglob("*")):
        if log.is_file():
            data = log.read_bytes()
            if log.suffix == ".zst":
                data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
            if any(p in data for p in patterns):
                hits.append(str(log))
    return hits


def test_boot_push_over_ssh_and_nothing_leaks(tmp_path: Path) -> None:
    project = tmp_path / "secrets"
    shutil.copytree(EXAMPLE, project)
    # The values sit next to the TDXfile while it is built: a pipeline that picked up its directory would leak.
    (project / "tls.key").write_bytes(TLS_KEY)
    (project / "secrets.env").write_bytes(b"# e2e\nAPI_KEY=" + API_KEY + b"\nTLS_KEY=@tls.key\n")
    key = tmp_path / "id"
    shutil.copyfile(TEST_KEY, key)
    key.chmod(0o600)
    out = tmp_path / "out"
    build = tdx(TEST_STORE, "build", project, "-o", out, "-f", "uki", timeout=3000)
    assert build.rc == 0, str(build)
    image = (out / "secrets-demo").resolve()

    port, console = free_port(), tmp_path / "console.log"
    env = {**os.environ, "TDX_HOME": str(TEST_STORE), "PYTHONPATH": str(REPO)}
    run_out, run_err = (tmp_path / "run.out").open("wb"), (tmp_path / "run.err").open("wb")
    # The TDXfile, as a user runs it: built first (a lookup here), then booted.
    vm = subprocess.Popen([sys.executable, "-m", "tdxstore.cli.app", "run", str(project), "-o", str(out), "--port",
                           f"{port}:22", "--memory", "1024", "--console-log", str(console)],
                          env=env, stdout=run_out, stderr=run_err)
    pushes: list[Run] = []
    try:
        text = wait_for(console, MARKER, 600, vm)
        fp = text.split(MARKER, 1)[1].split()[0]
        assert "api-key-sha256=" not in text  # the service waits for its secrets

        wrong = tdx(TEST_STORE, "secrets", "push", "--host", f"127.0.0.1:{port}", "--host-key", "SHA256:" + "A" * 43,
                    "-i", key, "--key", project / "secrets.env")
        pushes.append(wrong)
        deadline = time.monotonic() + 180
        while "host-unreachable" in wrong.stderr or "no ssh server answers" in wrong.stderr:
            assert time.monotonic() < deadline, str(wrong)  # sshd starts after the key is made
            time.sleep(2)
            wrong = tdx(TEST_STORE, "secrets", "push", "--host", f"127.0.0.1:{port}", "--host-key",
                        "SHA256:" + "A" * 43, "-i", key, "--key", project / "secrets.env")
            pushes.append(wrong)
        assert wrong.rc == 1 and wrong.error_lines() and "nothing was sent" in wrong.error_lines()[0], str(wrong)
        assert fp in wrong.error_lines()[0]

        push = tdx(TEST_STORE, "secrets", "push", "--host", f"127.0.0.1:{port}", "--host-key-from", console,
                   "-i", key, "--key", project / "secrets.env", "--tdxfile", project)
        pushes.append(push)
        assert push.rc == 0, str(push)
        assert "accepted: API_KEY, TLS_KEY" in push.stdout and "none, all secrets present" in push.stdout

        text = wait_for(console, "api-key-sha256=", 300, vm)
        digest = text.split("api-key-sha256=", 1)[1].split()[0]
        assert digest == hashlib.sha256(API_KEY).hexdigest()
        # The agent's READY=1 reached secrets-ready.target; the service Requires= and is After= it, so it ran
        # only then (systemd prints no status lines once boot is over, so the target itself is not shown).
        assert text.index("tdx-secrets-agent: all 2 secrets present") < text.index("api-key-sha256=")

        again = tdx(TEST_STORE, "secrets", "push", "--host", f"127.0.0.1:{port}", "--host-key", fp, "-i", key,
                    "--key", project / "secrets.env")
        pushes.append(again)
        assert again.rc == 1 and "every declared secret was delivered already" in again.stderr, str(again)
    finally:
        if vm.poll() is None:
            vm.send_signal(signal.SIGINT)  # what Ctrl-C does
        rc = vm.wait(60)
        run_out.close()
        run_err.close()
    run_err_text = (tmp_path / "run.err").read_bytes()
    assert rc == 130 and b"interrupted" in run_err_text and b"up to date: secrets-demo (uki)" in run_err_text
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # QEMU is gone: its forwarded port is free again

    patterns = needles()
    uki = (image / "image.efi").read_bytes()
    for name, data in {"UKI": uki, "initrd": initrd(image / "image.efi"),
                       "disk": (image / "image.disk").read_bytes()}.items():
        assert not [p for p in patterns if p in data], f"a secret is in the image's {name}"
    root = initrd(image / "image.efi")
    assert b"tdx-secrets-agent" in root  # the search does read the root file system
    # no host key from the build (openssh-server's postinst makes them; RemoveFiles= drops them)
    members = subprocess.run(["cpio", "-t", "--quiet"], input=root, capture_output=True, check=True).stdout
    names = members.decode().splitlines()
    assert "etc/ssh/sshd_config" in names and not [n for n in names if n.startswith("etc/ssh/ssh_host_")]
    assert grep_tree(TEST_STORE / "store", patterns) == []
    assert logs_with(patterns) == []
    captured = b"".join([(tmp_path / "run.out").read_bytes(), (tmp_path / "run.err").read_bytes(),
                         console.read_bytes(), build.stdout.encode(), build.stderr.encode(),
                         *(r.stdout.encode() + r.stderr.encode() for r in pushes)])
    assert not [p for p in patterns if p in captured]
    assert grep_tree(tmp_path / "out", patterns) == []
