"""Ed25519 keys and signatures: Nix's key format (a key nix-store generated parses), the fingerprint,
refusal of keys that are not keys, and `tdx store sign` + `import --require-signature` through the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tdxstore.errors import TransferError
from tdxstore.store.path import StorePath
from tdxstore.store.signing import PublicKey, SecretKey, fingerprint, trusted_by
from tdxstore.store.transfer import PathRecord
from tests.unit.cli.test_store_cli import REPO, one_error, tdx

REC = PathRecord(StorePath.parse("/tdx/store/" + "a" * 32 + "-x"), "sha256:" + "00" * 32, 120,
                 (StorePath.parse("/tdx/store/" + "b" * 32 + "-y"),))


def test_fingerprint_is_nix_shaped() -> None:
    assert fingerprint(REC) == (b"1;/tdx/store/" + b"a" * 32 + b"-x;sha256:" + b"0" * 52 + b";120;/tdx/store/"
                                + b"b" * 32 + b"-y")


def test_sign_verify_and_key_round_trip() -> None:
    key = SecretKey.generate("ci-1")
    assert SecretKey.parse(str(key)) == key and PublicKey.parse(str(key.public)) == key.public
    signed = PathRecord(REC.path, REC.nar_hash, REC.nar_size, REC.references, signatures=(key.sign(REC),))
    assert trusted_by(signed, [key.public])
    assert not trusted_by(signed, [SecretKey.generate("ci-1").public])  # same name, other key
    lying = PathRecord(REC.path, REC.nar_hash, REC.nar_size + 8, REC.references, signatures=signed.signatures)
    assert not trusted_by(lying, [key.public])


@pytest.mark.skipif(shutil.which("nix-store") is None, reason="nix-bin is the oracle for the key format")
def test_a_key_pair_made_by_nix_parses(tmp_path: Path) -> None:
    subprocess.run(["nix-store", "--generate-binary-cache-key", "nix-1", tmp_path / "s", tmp_path / "p"], check=True)
    key = SecretKey.parse((tmp_path / "s").read_text())
    assert str(key.public) == (tmp_path / "p").read_text().strip()


@pytest.mark.parametrize("text", ["", "no-colon", "k:not base64!", "k:" + "QUJD", ":AAAA", "k:" + "A" * 88 + "=="])
def test_a_key_file_that_is_not_a_key(text: str) -> None:
    with pytest.raises(TransferError) as err:
        SecretKey.parse(text)
    assert err.value.code == "key-invalid"


def test_sign_then_import_requires_the_signature(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    (tmp_path / "f").write_text("signed content\n")
    sec, pub = tmp_path / "k.sec", tmp_path / "k.pub"
    assert tdx(a, "key", "generate", "ci-1", "--secret", str(sec), "--public", str(pub)).returncode == 0
    sp = tdx(a, "store", "add", str(tmp_path / "f")).stdout.decode().strip()
    bundle = tmp_path / "unsigned.tdx"
    assert tdx(a, "store", "export", sp, "-o", str(bundle)).returncode == 0
    refused = tdx(b, "store", "import", str(bundle), "--require-signature", str(pub))
    assert refused.returncode == 1 and "carry no signature by a trusted key (ci-1): 1 unsigned" in one_error(refused)
    assert tdx(b, "store", "ls").stdout == b""
    signed = tmp_path / "signed.tdx"
    assert tdx(a, "store", "sign", "--key", str(sec), sp).returncode == 0
    assert tdx(a, "store", "export", sp, "-o", str(signed)).returncode == 0
    ok = tdx(b, "store", "import", str(signed), "--require-signature", pub.read_text().strip())
    assert ok.returncode == 0 and b"signatures checked against 1 key(s)" in ok.stderr
    assert b"signatures:    1" in tdx(b, "store", "path-info", sp).stdout
    other = tmp_path / "o.pub"
    tdx(a, "key", "generate", "ci-2", "--secret", str(tmp_path / "o.sec"), "--public", str(other))
    mismatch = tdx(c, "store", "import", str(signed), "--require-signature", str(other))
    assert mismatch.returncode == 1 and "1 signed by other keys" in one_error(mismatch)
    not_a_key = tdx(c, "store", "import", str(signed), "--require-signature", str(tmp_path / "f"))
    assert not_a_key.returncode == 1 and "is not a key" in one_error(not_a_key)


def test_import_into_a_store_that_is_not_writable(tmp_path: Path) -> None:
    """A TDX_HOME that cannot be created (a file is in the way; root ignores permission bits)."""
    home = tmp_path / "file-in-the-way"
    home.write_text("x")
    (tmp_path / "b.tdx").write_bytes(b"")
    r = tdx(home, "store", "import", str(tmp_path / "b.tdx"))
    msg = one_error(r)
    assert r.returncode == 1 and ("cannot create the store" in msg or "not writable" in msg), msg


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs unshare -m as root")
def test_import_into_a_store_on_a_read_only_mount(tmp_path: Path) -> None:
    """A real read-only store (a read-only bind mount of it in a mount namespace): one clear error, and
    the store as it was."""
    src, home = tmp_path / "src", tmp_path / "home"
    (tmp_path / "f").write_text("payload\n")
    sp = tdx(src, "store", "add", str(tmp_path / "f")).stdout.decode().strip()
    assert tdx(src, "store", "export", sp, "-o", str(tmp_path / "b.tdx")).returncode == 0
    assert tdx(home, "store", "ls").returncode == 0  # an empty, valid store
    script = (f'mount --bind "{home}" "{home}" && mount -o remount,ro,bind "{home}" "{home}" && '
              f'exec "{sys.executable}" -m tdxstore.cli.app store import "{tmp_path / "b.tdx"}"')
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], env={**os.environ, "TDX_HOME": str(home)},
                       capture_output=True, timeout=120, cwd=REPO)
    msg = one_error(r)
    assert r.returncode == 1 and "is not writable" in msg and str(home) in msg, msg
    assert tdx(home, "store", "ls").stdout == b"" and tdx(home, "store", "verify").returncode == 0
