"""mkosi with a locked package set: the network really is cut, and the repository is its only source.

`offline_argv` is checked against a real HTTP server on 127.0.0.1: reachable from a plain child,
unreachable from one run through it (a new network namespace has only a loopback that is down).
The per-run drop-ins name the repository (`LocalMirror=`) and, for an unlocked tools tree, the mirror;
the stored configuration of a locked image names neither a mirror nor apt sources.
"""

from __future__ import annotations

import http.server
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tdxstore.debian.mirror import AptMirrors
from tdxstore.image.model.image import Image
from tdxstore.image.render import bare_name, render_config, tools_config
from tdxstore.mkosi.build import MIRROR_CONF, Run, _output_name, _write_drop_ins
from tdxstore.mkosi.config import LOCKED_TOOLS_OUTPUT, ImageFormat
from tdxstore.mkosi.run import offline_argv
from tdxstore.sandbox import process

PROBE = """
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=5).read()
except OSError as e:
    print("unreachable", type(e).__name__)
else:
    print("reachable")
"""


@pytest.fixture
def server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


def _probe(argv: list[str]) -> str:
    return process.run(argv, env={"PATH": "/usr/bin:/bin"}, what="network probe", timeout=60).stdout.decode()


def test_offline_argv_cuts_the_network(server: str, tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    plain = [sys.executable, str(tmp_path / "probe.py"), server]
    assert _probe(plain).strip() == "reachable"
    assert _probe(offline_argv(plain)).startswith("unreachable")
    assert offline_argv(["x"])[-2:] == ["--", "x"] and "--net" in offline_argv(["x"])


def test_drop_ins_name_the_repository_and_the_tools_mirror(tmp_path: Path) -> None:
    repo = tmp_path / "store" / "abc-debian-repo-bookworm"
    image_conf = tmp_path / "image"
    image_conf.mkdir()
    _write_drop_ins(Run(Path("/m"), image_conf, ImageFormat.TAR, local_mirror=repo, offline=True), image_conf)
    assert (image_conf / MIRROR_CONF).read_text() == f"[Distribution]\nLocalMirror=file://{repo}\n"
    tools_conf = tmp_path / "tools"
    tools_conf.mkdir()
    mirrors = AptMirrors("http://mirror.example/debian", "http://mirror.example/debian-security")
    _write_drop_ins(Run(Path("/m"), tools_conf, None, tools_mirrors=mirrors), tools_conf)
    assert "ToolsTreeMirror=http://mirror.example/debian" in (tools_conf / MIRROR_CONF).read_text()
    sources = (tools_conf / "mkosi.tools.sandbox/etc/apt/sources.list.d/mkosi.sources").read_text()
    assert "URIs: http://mirror.example/debian\n" in sources and "trixie" in sources
    image_sources = (tools_conf / "mkosi.sandbox/etc/apt/sources.list.d/mkosi.sources").read_text()
    assert "Suites: bookworm" in image_sources and "debug" not in image_sources


def test_locked_configuration_names_no_mirror() -> None:
    image = Image("t", base="debian/bookworm")
    mirrors = AptMirrors("http://mirror.example/debian", "http://mirror.example/debian-security")
    for fmt in (ImageFormat.UKI, ImageFormat.TAR):
        locked = render_config(image, fmt, mirrors, locked=True)
        text = b"".join(locked.values()).decode()
        assert "mirror.example" not in text and "Mirror=" not in text and "SandboxTrees" not in text
        assert not any("mkosi.sources" in rel for rel in locked)
        assert "mirror.example" in b"".join(render_config(image, fmt, mirrors).values()).decode()
    uki = render_config(image, ImageFormat.UKI, mirrors, locked=True)["mkosi.conf"].decode()
    assert "linux-image-cloud-amd64\n" in uki and "bookworm-backports" not in uki
    assert tools_config(mirrors) == tools_config(AptMirrors("http://other.example/debian"))


def test_locked_tools_tree_is_an_offline_image_of_mkosi_tools(tmp_path: Path) -> None:
    # [debian.tools] locked: mkosi-tools included in an image of its own, its repository the only
    # source (a LocalMirror= drop-in, no tools mirror, no sandbox sources), its own Output= collected
    mirrors = AptMirrors("http://mirror.example/debian", "http://mirror.example/debian-security")
    conf = tools_config(mirrors, locked=True)["mkosi.conf"].decode()
    assert "[Include]\nInclude=mkosi-tools\n" in conf and "Release=trixie\n" in conf
    assert "ToolsTree" not in conf and "Mirror" not in conf and "Format=" not in conf
    assert tools_config(mirrors, locked=True) == tools_config(AptMirrors("http://other.example/debian"), locked=True)
    repo = tmp_path / "store" / "abc-debian-repo-trixie"
    run = Run(Path("/m"), tmp_path, None, local_mirror=repo, offline=True)
    _write_drop_ins(run, tmp_path)
    assert (tmp_path / MIRROR_CONF).read_text() == f"[Distribution]\nLocalMirror=file://{repo}\n"
    assert not (tmp_path / "mkosi.tools.sandbox").exists() and not (tmp_path / "mkosi.sandbox").exists()
    assert _output_name(run) == LOCKED_TOOLS_OUTPUT == "mkosi.tools"
    assert _output_name(Run(Path("/m"), tmp_path, None)) == "tools"
    assert _output_name(Run(Path("/m"), tmp_path, ImageFormat.TAR, local_mirror=repo)) == "image"


@pytest.mark.parametrize(("request_", "name"), [
    ("linux-image-cloud-amd64/bookworm-backports", "linux-image-cloud-amd64"),
    ("hello=2.10-3", "hello"), ("libc6:amd64", "libc6"), ("curl", "curl")])
def test_bare_name(request_: str, name: str) -> None:
    assert bare_name(request_) == name


def test_package_missing_from_the_locked_repository_is_one_clear_error(tmp_path: Path) -> None:
    from tdxstore.mkosi.run import _failed

    log = tmp_path / "mkosi.log"
    log.write_bytes(b"Reading package lists...\nE: Unable to locate package curl\n")
    locked = _failed("mkosi exited with status 100", log, locked=True)
    assert locked.code == "package-not-locked" and "'curl'" in locked.message
    assert "locked package set" in locked.message and "tdx lock --update" in (locked.hint or "")
    assert _failed("mkosi exited with status 100", log).code == "package-not-found"
