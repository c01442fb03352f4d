"""Golden bwrap command lines for a few specs, the build environment, and spec validation errors.

Regenerate the golden files after an intended change with TDX_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdxstore.errors import SandboxError
from tdxstore.sandbox import Mount, SandboxSpec, bwrap_argv, etc_files, sandbox_env

DATA = Path(__file__).parents[2] / "data" / "sandbox"
ETC = Path("/run/tdx-etc")
ROOT = Path("/var/lib/tdx/store/8a2v0ns0ld9qrm6fcxb8ixg1nwz8qm2m-busybox-root")
INPUT = Path("/var/lib/tdx/store/0c9hn1l7y4dqxsxh4m4z0h1ygs5rc1dk-stage1")
OUT_TMP = Path("/var/lib/tdx/tmp/build-1/out")
BUILD_TMP = Path("/var/lib/tdx/tmp/build-1/build")
OUT = "/tdx/store/ixq2aqbd0fh3vc1vqfvz8l7p6d9fsm8f-stage2"

SPECS: dict[str, SandboxSpec] = {
    "minimal": SandboxSpec(argv=("/bin/true",), root=ROOT),
    "build": SandboxSpec(
        argv=("/bin/sh", "-e", "/tdx/store/0c9hn1l7y4dqxsxh4m4z0h1ygs5rc1dk-stage1/builder.sh"),
        root=ROOT,
        # deliberately unsorted: the argv must not depend on the caller's order
        mounts=(
            Mount(OUT_TMP, OUT, writable=True),
            Mount(BUILD_TMP, "/build", writable=True),
            Mount(INPUT, "/tdx/store/0c9hn1l7y4dqxsxh4m4z0h1ygs5rc1dk-stage1"),
        ),
        env={"out": OUT, "name": "stage2", "SOURCE_DATE_EPOCH": "1700000000", "TMPDIR": "/elsewhere",
             "PATH": "/tdx/store/0c9hn1l7y4dqxsxh4m4z0h1ygs5rc1dk-stage1/bin:/bin"},
        timeout=600, max_silent=60, cores=4,
    ),
    "fixed-output-network": SandboxSpec(
        argv=("/bin/wget", "-O", "/tdx/store/2rbdf0m6q3a5c7b8d4wz0yvxv1a8n2rk-src.tar", "https://example.org/src.tar"),
        root=ROOT,
        mounts=(Mount(Path("/var/lib/tdx/tmp/b2/out"), "/tdx/store/2rbdf0m6q3a5c7b8d4wz0yvxv1a8n2rk-src.tar",
                      writable=True),
                Mount(Path("/var/lib/tdx/tmp/b2/build"), "/build", writable=True)),
        env={"out": "/tdx/store/2rbdf0m6q3a5c7b8d4wz0yvxv1a8n2rk-src.tar"},
        network=True, hostname="fetcher", uid=30001, gid=30000,
    ),
    # git in a fetch: the host's /usr only, its work directory and private HOME writable
    "host-tool": SandboxSpec(
        argv=("git", "fetch", "--quiet", "origin", "v1.0"),
        root=Path("/"), usr_only=True, network=True, cwd="/var/lib/tdx/tmp/git-1/work",
        mounts=(Mount(Path("/var/lib/tdx/tmp/git-1/work"), "/var/lib/tdx/tmp/git-1/work", writable=True),
                Mount(Path("/var/lib/tdx/tmp/git-1/home"), "/var/lib/tdx/tmp/git-1/home", writable=True),
                Mount(Path("/srv/repos/app.git"), "/srv/repos/app.git")),
        env={"HOME": "/var/lib/tdx/tmp/git-1/home", "GIT_TERMINAL_PROMPT": "0"},
    ),
}


def _render(spec: SandboxSpec) -> dict[str, Any]:
    return {"argv": bwrap_argv(spec, ETC, bwrap="/usr/bin/bwrap"), "etc": etc_files(spec)}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_golden_argv(name: str) -> None:
    got = _render(SPECS[name])
    path = DATA / f"{name}.json"
    if os.environ.get("TDX_UPDATE_GOLDEN"):
        path.write_text(json.dumps(got, indent=1) + "\n")
    assert got == json.loads(path.read_text())


def test_argv_is_independent_of_mount_and_env_order() -> None:
    spec = SPECS["build"]
    shuffled = SandboxSpec(argv=spec.argv, root=spec.root, mounts=tuple(reversed(spec.mounts)),
                           env=dict(reversed(spec.env_items)), timeout=600, max_silent=60, cores=4)
    assert shuffled == spec
    assert bwrap_argv(shuffled, ETC) == bwrap_argv(spec, ETC)


def test_network_only_when_asked() -> None:
    assert "--share-net" not in bwrap_argv(SPECS["build"], ETC)
    assert "--share-net" in bwrap_argv(SPECS["fixed-output-network"], ETC)
    argv = bwrap_argv(SPECS["minimal"], ETC)
    assert argv[:2] == ["bwrap", "--unshare-all"]
    assert argv[argv.index("--") + 1:] == ["/bin/true"]


def test_environment_defaults_overrides_and_enforced() -> None:
    env = sandbox_env(SPECS["build"])
    assert env["SOURCE_DATE_EPOCH"] == "1700000000"  # the derivation may set it
    assert env["TMPDIR"] == "/build"  # but not the sandbox layout
    assert env["HOME"] == "/homeless-shelter" and env["TZ"] == "UTC" and env["LC_ALL"] == "C.UTF-8"
    assert env["TDX_BUILD_CORES"] == "4"
    assert sandbox_env(SPECS["minimal"])["SOURCE_DATE_EPOCH"] == "0"
    assert list(env) == sorted(env)


def test_passwd_names_the_build_user() -> None:
    files = etc_files(SPECS["fixed-output-network"])
    assert "tdxbld:x:30001:30000:" in files["passwd"]
    assert "tdxbld:!:30000:" in files["group"]
    assert "127.0.0.1 localhost" in files["hosts"] and "fetcher" in files["hosts"]


def test_physical_maps_through_innermost_mount() -> None:
    spec = SPECS["build"]
    assert spec.physical("/build/src/a.c") == BUILD_TMP / "src" / "a.c"
    assert spec.physical(OUT + "/bin") == OUT_TMP / "bin"
    assert spec.physical("/bin/sh") == ROOT / "bin" / "sh"


def _spec(**kw: Any) -> SandboxSpec:
    args: dict[str, Any] = {"argv": ("/bin/true",), "root": ROOT}
    args.update(kw)
    return SandboxSpec(**args)


BAD_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("empty argv", {"argv": ()}, "is empty"),
    ("empty program", {"argv": ("",)}, "is empty"),
    ("NUL in argv", {"argv": ("/bin/sh", "a\0b")}, "NUL"),
    ("relative root", {"root": Path("root")}, "not an absolute host path"),
    ("relative cwd", {"cwd": "build"}, "not an absolute path"),
    ("duplicate target", {"mounts": (Mount(INPUT, "/build"), Mount(BUILD_TMP, "/build"))},
     "share the target"),
    ("bad hostname", {"hostname": "a b"}, "not a valid host name"),
    ("negative uid", {"uid": -1}, "not a valid id"),
    ("bool gid", {"gid": True}, "not a valid id"),
    ("zero timeout", {"timeout": 0}, "positive number"),
    ("negative max_silent", {"max_silent": -1.0}, "positive number"),
    ("zero cores", {"cores": 0}, "positive integer"),
    ("bad env name", {"env": {"A-B": "x"}}, "not valid"),
    ("env name with =", {"env": {"A=B": "x"}}, "not valid"),
    ("NUL in env value", {"env": {"A": "x\0"}}, "NUL"),
    ("duplicate env", {"env": [("A", "1"), ("A", "2")]}, "twice"),
]


@pytest.mark.parametrize(("label", "kw", "needle"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_is_one_clear_error(label: str, kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(SandboxError) as info:
        _spec(**kw)
    assert info.value.code == "sandbox-spec"
    assert needle in info.value.message


BAD_MOUNTS: list[tuple[str, Path, str, str]] = [
    ("relative target", INPUT, "tdx/store/x", "not an absolute path"),
    ("dotdot target", INPUT, "/tdx/store/../etc", "not normalised"),
    ("dot target", INPUT, "/build/./x", "not normalised"),
    ("trailing slash", INPUT, "/build/", "not normalised"),
    ("double slash", INPUT, "//build", "not normalised"),
    ("root target", INPUT, "/", "reserved"),
    ("store dir itself", INPUT, "/tdx/store", "reserved"),
    ("proc", INPUT, "/proc/self", "reserved"),
    ("passwd", INPUT, "/etc/passwd", "reserved"),
    ("relative source", Path("rel/dir"), "/build", "not an absolute host path"),
]


@pytest.mark.parametrize(("label", "source", "target", "needle"), BAD_MOUNTS, ids=[b[0] for b in BAD_MOUNTS])
def test_bad_mount_is_one_clear_error(label: str, source: Path, target: str, needle: str) -> None:
    with pytest.raises(SandboxError) as info:
        Mount(source, target)
    assert info.value.code == "sandbox-spec"
    assert needle in info.value.message
    assert info.value.hint


_component = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=8).filter(
    lambda c: c not in (".", ".."))


@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(_component, min_size=0, max_size=6, unique=True),
    writable=st.lists(st.booleans(), min_size=6, max_size=6),
    network=st.booleans(),
    env=st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True), st.text(max_size=10).filter(
        lambda v: "\0" not in v), max_size=5),
)
def test_argv_properties(names: list[str], writable: list[bool], network: bool, env: dict[str, str]) -> None:
    mounts = tuple(Mount(Path("/host") / n, f"/tdx/store/{n}", writable=writable[i])
                   for i, n in enumerate(names))
    spec = SandboxSpec(argv=("/bin/sh", "-c", "true"), root=ROOT, mounts=mounts, env=env, network=network)
    argv = bwrap_argv(spec, ETC)
    assert ("--share-net" in argv) == network
    assert argv[argv.index("--") + 1:] == list(spec.argv)
    binds = [argv[i + 2] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind") and
             argv[i + 2].startswith("/tdx/store/")]
    assert binds == sorted(binds, key=lambda t: t.split("/")) and len(binds) == len(names)
    # every store mount lies between the store tmpfs and its read-only remount
    assert argv.index("--tmpfs", argv.index("/tmp") + 1) < min(
        (argv.index(b) for b in binds), default=len(argv)) and argv.index("--remount-ro") > max(
        (argv.index(b) for b in binds), default=0)
    for m in mounts:
        flag = argv[argv.index(m.target) - 2]
        assert flag == ("--bind" if m.writable else "--ro-bind")
    envs = {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "--setenv"}
    assert envs["TMPDIR"] == "/build" and all(envs[k] == v for k, v in env.items()
                                              if k not in ("TMPDIR", "TEMPDIR", "TMP", "TEMP"))
