"""Every `tdx` command on an empty store (a fresh TDX_HOME): a result or one clear error, never a
traceback of ours (an error raised by the user's own Python file shows the user's frames only), and the
store still valid afterwards. A guard test fails when a command has no case here."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.cli.test_help import _commands
from tests.unit.cli.test_store_cli import REPO, one_error, tdx

MISSING = "/tdx/store/00000000000000000000000000000000-missing"
FW = "/usr/share/ovmf/OVMF.fd"

# (command path, argv with {tmp} and {repo}, exit status, what stdout or the one error line contains)
CASES = [
    (("store", "ls"), ["store", "ls"], 0, ""),
    (("store", "add"), ["store", "add", "{tmp}/blob", "--name", "blob"], 0, "-blob"),
    (("store", "path-info"), ["store", "path-info", MISSING], 1, "is not valid in this store"),
    (("store", "dump"), ["store", "dump", MISSING], 1, "is not valid in this store"),
    (("store", "verify"), ["store", "verify"], 0, "checked 0 paths"),
    (("store", "gc"), ["store", "gc"], 0, "deleted 0 paths"),
    (("store", "gc"), ["store", "gc", "--dry-run"], 0, ""),
    (("store", "delete"), ["store", "delete", MISSING], 1, "is not valid in this store"),
    (("store", "roots"), ["store", "roots"], 0, ""),
    (("store", "export"), ["store", "export", MISSING, "-o", "{tmp}/b.tdx"], 1, "is not valid in this store"),
    (("store", "import"), ["store", "import", "{tmp}/blob"], 1, "wrong magic"),
    (("key", "generate"), ["key", "generate", "k-1", "--secret", "{tmp}/k.sec", "--public", "{tmp}/k.pub"], 0,
     "k-1:"),
    (("store", "sign"), ["store", "sign", MISSING, "--key", "{tmp}/blob"], 1, "is not a key"),
    (("cache", "push"), ["cache", "push", "file://{tmp}/cache", MISSING], 1, "is not valid in this store"),
    (("cache", "push"), ["cache", "push", "ftp://host/cache", MISSING], 2, "unknown substituter or cache URL"),
    (("cache", "info"), ["cache", "info", "file://{tmp}/nocache"], 1, "not a binary cache"),
    (("log",), ["log", MISSING], 1, "is not valid in this store"),
    (("show-derivation",), ["show-derivation", MISSING + ".drv"], 1, "is not valid in this store"),
    (("why-depends",), ["why-depends", MISSING, MISSING], 1, "is not valid in this store"),
    (("graph",), ["graph", MISSING + ".drv"], 1, "is not valid in this store"),
    (("graph",), ["graph", "{tmp}/fetch.py", "--dot"], 0, "(source)"),
    (("realise",), ["realise", "{tmp}/fetch.py", "--dry-run"], 0, "x.tar"),
    (("realise",), ["realise", "{tmp}/pathroot.py"], 1, "root PosixPath"),
    (("fetch",), ["fetch", "--hash", "{tmp}/blob"], 0, "sha256:"),
    (("fetch",), ["fetch", "http://127.0.0.1:9/x.tar"], 2, "no sha256"),
    (("build",), ["build", "{repo}/examples/minimal", "--dry-run", "-f", "tar"], 0, "would be built by mkosi"),
    (("build",), ["build", "{repo}/examples/minimal", "--dry-run"], 0, "would be built by mkosi"),
    (("build",), ["build", "{repo}/examples/minimal", "--emit-mkosi", "{tmp}/mkosi"], 0, ""),
    (("build",), ["build", "{tmp}"], 1, "no TDXfile"),
    (("build",), ["build", "{repo}/examples/minimal", "--check"], 2, "was never built, so there is nothing"),
    (("diff",), ["diff", MISSING, MISSING], 2, "is not a valid store path"),
    (("diff",), ["diff", "{tmp}", "{tmp}"], 2, "is not a built image"),
    (("diff",), ["diff", "nosuchrev:{repo}/examples/minimal", MISSING], 2, "at git revision 'nosuchrev'"),
    (("measure",), ["measure", "--firmware", FW], 0, "MRTD"),
    (("measure",), ["measure", MISSING], 2, "is not a valid store path"),
    (("lock",), ["lock", "-p", "{tmp}", "--dry-run"], 0, ""),
    (("module", "hash"), ["module", "hash", "{tmp}"], 0, "sha256:"),
    (("module", "validate"), ["module", "validate", "{tmp}"], 1, "holds no Python package"),
    (("module", "new"), ["module", "new", "tdx-x", "--dir", "{tmp}/new"], 0, "tdx-x"),
    (("secrets", "list"), ["secrets", "list", "{repo}/examples/secrets"], 0, "delivery: ssh"),
    (("secrets", "list"), ["secrets", "list", "{tmp}"], 1, "no TDXfile"),
    (("secrets", "push"), ["secrets", "push", "--host", "127.0.0.1:9", "--key", "{tmp}/blob"], 1,
     "expected NAME=value"),
    (("run",), ["run", "{tmp}/missing.efi"], 1, "no image or TDXfile at"),
    (("run",), ["run", "{tmp}", "--port", "22"], 1, "holds neither a built image"),
]


def test_every_command_has_an_empty_store_case() -> None:
    leaves = {p for p in _commands() if p and not any(q[:len(p)] == p and q != p for q in _commands())}
    assert leaves - {case[0] for case in CASES} == set()


@pytest.mark.parametrize(("path", "argv", "status", "expect"), CASES,
                         ids=[" ".join(c[1][:3]) for c in CASES])
def test_on_an_empty_store(tmp_path: Path, path: tuple[str, ...], argv: list[str], status: int,
                           expect: str) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    (work / "blob").write_text("data\n")
    (work / "fetch.py").write_text(
        "from tdxstore.builders.fetch import fetchurl_derivation\n"
        f"x = fetchurl_derivation('http://127.0.0.1:9/x.tar', '{'0' * 64}', 'x.tar')\n")
    (work / "pathroot.py").write_text(
        "from pathlib import Path\nfrom tdxstore.store.derivation import derivation\n"
        "x = derivation('x', '/bin/sh', ['-c', 'true'], root=Path('/'))\n")
    args = [a.format(tmp=work, repo=REPO) for a in argv]
    r = tdx(home, *args)
    assert r.returncode == status, r.stderr.decode()
    if status == 0:
        assert expect in r.stdout.decode() + r.stderr.decode() and "Traceback" not in r.stderr.decode()
    elif "Traceback" in r.stderr.decode():
        err = r.stderr.decode()
        frames = [line for line in err.splitlines() if line.strip().startswith('File "')]
        assert frames and all(f'File "{work}/' in line for line in frames), err
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and expect in errors[0], err
    else:
        assert expect in one_error(r)
    check = tdx(home, "store", "verify")
    assert check.returncode == 0 and b"0 missing, 0 corrupted" in check.stderr, check.stdout + check.stderr
