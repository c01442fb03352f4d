"""`tdx module validate` and `tdx module new`: the examples' modules, a scaffold whose own test passes, bad modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tdxstore.errors import ModuleError
from tdxstore.lock.module import scaffold, validate
from tests.fetchserver import write_tree

REPO = Path(__file__).parents[3]


def tdx(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tdxstore.cli.app", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO), "TDX_HOME": str(cwd / ".h")})


def test_examples_validate() -> None:
    mon = validate(REPO / "examples/monitoring/modules/monitoring")
    assert (mon.package, mon.version, mon.functions, mon.classes) == ("tdx_monitoring", "0.5.0", ("apply",), ())
    redis = validate(REPO / "examples/module-class/modules/redis")
    assert redis.package == "tdx_redis" and "Redis" in redis.classes
    assert "tdx_redis" not in sys.modules  # validation leaves no imported module behind


def test_new_scaffold_validates_and_its_test_passes(tmp_path: Path) -> None:
    r = tdx(tmp_path, "module", "new", "tdx-prover")
    assert r.returncode == 0, r.stderr
    dest = tmp_path / "tdx-prover"
    assert (tmp_path / r.stdout.strip()).resolve() == dest.resolve()
    assert (dest / "tdx_prover" / "data").is_dir() and (dest / "pyproject.toml").is_file()
    v = tdx(tmp_path, "module", "validate", str(dest))
    assert v.returncode == 0, v.stderr
    assert "function:  tdx_prover.apply(image, ...)" in v.stdout and "integrity: sha256:" in v.stdout
    t = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=dest,
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert t.returncode == 0 and "1 passed" in t.stdout, t.stdout + t.stderr
    again = tdx(tmp_path, "module", "new", "tdx-prover")
    assert again.returncode != 0 and "error: " in again.stderr and "already exists" in again.stderr


@pytest.mark.parametrize(("files", "code"), [
    ({"README": "no package\n"}, "module-invalid"),
    ({"tdx_x/__init__.py": "def setup(image):\n    pass\n"}, "module-no-apply"),
    ({"tdx_x/__init__.py": "def apply():\n    pass\n"}, "module-no-apply"),
    ({"tdx_x/__init__.py": "import tdx_does_not_exist\n"}, "module-import-failed"),
    ({"src/tdx_x/__init__.py": "class M:\n    def apply(self):\n        pass\n"}, "module-no-apply"),
])
def test_bad_modules(tmp_path: Path, files: dict[str, str | bytes], code: str) -> None:
    write_tree(tmp_path / "m", files)
    with pytest.raises(ModuleError) as info:
        validate(tmp_path / "m")
    assert info.value.code == code


def test_src_layout_class(tmp_path: Path) -> None:
    write_tree(tmp_path / "m", {"src/tdx_x/__init__.py": "class M:\n    def apply(self, image):\n        pass\n"})
    assert validate(tmp_path / "m").classes == ("M",)


def test_bad_name(tmp_path: Path) -> None:
    with pytest.raises(ModuleError) as info:
        scaffold("-x", tmp_path)
    assert info.value.code == "module-bad-name"
