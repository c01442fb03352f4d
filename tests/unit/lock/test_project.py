"""pyproject.toml of an image project: declarations by origin, the staleness hash, the SDK, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from tdxstore.errors import LockfileError
from tdxstore.lock.pip import _pins
from tdxstore.lock.project import Origin, check_sdk, read_project, redact


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(text)
    return tmp_path


def test_declarations_by_origin(tmp_path: Path) -> None:
    p = read_project(write(tmp_path, '''[project]
name = "img"
dependencies = ["tdx-vm-sdk>=0", "TDX_Nethermind >= 1.30", "tdx-h @ git+https://h.example/org/h@v1.0.0",
                "tdx-p @ file:./modules/p", "tdx-win; sys_platform == 'win32'"]
[tool.tdx]
index-url = "https://mirror.example/simple"
'''))
    got = {d.name: (d.origin, d.location, d.ref) for d in p.declared}
    assert got == {"tdx-nethermind": (Origin.INDEX, None, None),
                   "tdx-h": (Origin.GIT, "https://h.example/org/h", "v1.0.0"),
                   "tdx-p": (Origin.LOCAL, "./modules/p", None)}
    assert p.sdk == "tdx-vm-sdk>=0" and p.index_url == "https://mirror.example/simple"
    assert p.requires == tuple(sorted(p.requires))


def test_requires_hash_ignores_order_and_spacing(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = read_project(write(tmp_path / "a", '[project]\nname = "i"\ndependencies = ["tdx-a>=1,<2", "tdx-b"]\n'))
    b = read_project(write(tmp_path / "b", '[project]\nname = "i"\ndependencies = ["tdx-b", "tdx-a <2, >=1"]\n'))
    c = read_project(write(tmp_path / "b", '[project]\nname = "i"\ndependencies = ["tdx-b", "tdx-a>=1"]\n'))
    assert a.requires_hash == b.requires_hash != c.requires_hash


@pytest.mark.parametrize(("text", "code"), [
    ('[tool.x]\na = 1\n', "pyproject-invalid"),
    ('[project]\ndependencies = []\n', "pyproject-invalid"),
    ('[project]\nname = "i"\ndependencies = ["tdx-a >= = 1"]\n', "pyproject-invalid"),
    ('[project]\nname = "i"\ndependencies = ["tdx-a @ git+https://h/r"]\n', "pyproject-invalid"),
    ('[project]\nname = "i"\ndependencies = ["tdx-a @ file:///abs/x"]\n', "pyproject-invalid"),
    ('[project]\nname = "i"\ndependencies = ["tdx-a @ https://h/x.whl"]\n', "pyproject-invalid"),
    ('[project]\nname = "i"\ndependencies = ["tdx-a", "TDX_A>=1"]\n', "pyproject-invalid"),
    ('[project\n', "pyproject-invalid"),
])
def test_bad_pyproject(tmp_path: Path, text: str, code: str) -> None:
    with pytest.raises(LockfileError) as info:
        read_project(write(tmp_path, text))
    assert info.value.code == code


def test_missing_pyproject(tmp_path: Path) -> None:
    with pytest.raises(LockfileError) as info:
        read_project(tmp_path)
    assert info.value.code == "pyproject-missing"


def test_sdk_specifier() -> None:
    version = check_sdk("tdx-vm-sdk>=0")
    with pytest.raises(LockfileError) as info:
        check_sdk(f"tdx-vm-sdk>{version}")
    assert info.value.code == "sdk-version"


def test_redact() -> None:
    assert redact("https://user:pw@idx.example:8443/simple") == "https://idx.example:8443/simple"
    assert redact("https://idx.example/simple") == "https://idx.example/simple"


def test_pip_report_parsing() -> None:
    report = {"version": "1", "install": [
        {"metadata": {"name": "TDX_Demo", "version": "1.0.0"},
         "download_info": {"url": "https://u:p@h/files/tdx_demo-1.0.0-py3-none-any.whl",
                           "archive_info": {"hashes": {"sha256": "ab" * 32}}}},
        {"metadata": {"name": "tdx-vm-sdk", "version": "0.1.0"},
         "download_info": {"url": "file:///tmp/sdk.whl", "archive_info": {}}},
        {"metadata": {"name": "plain", "version": "2"}, "download_info": {"url": "https://h/plain-2-py3-none-any.whl",
                                                                         "archive_info": {}}},
    ]}
    pins = _pins(report)
    assert [(p.name, p.version, p.url, p.sha256) for p in pins] == [
        ("plain", "2", "https://h/plain-2-py3-none-any.whl", None),
        ("tdx-demo", "1.0.0", "https://h/files/tdx_demo-1.0.0-py3-none-any.whl", "ab" * 32)]
    with pytest.raises(LockfileError):
        _pins({"install": None})
