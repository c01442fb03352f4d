"""Module tooling (L3): find a module's import root and package, validate its API, scaffold a new one.

A module is an importable package that exposes `apply(image, ...)` or a class whose `apply(self,
image, ...)` takes the image (spec §3). Validation imports the package from the module directory
only (placed first on sys.path, removed afterwards with every module imported from there); the
scaffold writes new files and never overwrites any.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tdxstore.errors import ModuleError, TdxError

_DIST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def import_root(directory: Path) -> Path:
    """Where the module's packages live: `src/` (src layout) when it holds a package, else the directory."""
    src = directory / "src"
    if src.is_dir() and any((p / "__init__.py").is_file() for p in src.iterdir() if p.is_dir()):
        return src
    return directory


def project_table(directory: Path) -> dict[str, object]:
    """`[project]` of the module's pyproject.toml ({} when there is none)."""
    path = directory / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ModuleError(f"cannot read {str(path)!r}: {e}", hint="fix the TOML", code="module-invalid") from e
    project = doc.get("project", {})
    return project if isinstance(project, dict) else {}


def package_names(directory: Path) -> list[str]:
    """Top-level packages of the module, the one named after the distribution first."""
    root = import_root(directory)
    found = sorted(p.name for p in root.iterdir()
                   if p.is_dir() and (p / "__init__.py").is_file() and p.name.isidentifier()
                   and p.name not in ("tests", "test")) if root.is_dir() else []
    name = project_table(directory).get("name")
    preferred = re.sub(r"[-.]+", "_", name).lower() if isinstance(name, str) else None
    return sorted(found, key=lambda n: (n != preferred, n))


@dataclass(frozen=True, slots=True)
class ModuleReport:
    """What `tdx module validate` found."""

    directory: Path
    package: str
    version: str | None
    functions: tuple[str, ...]  # module-level callables named apply taking the image first
    classes: tuple[str, ...]  # classes with apply(self, image, ...)

    def __post_init__(self) -> None:
        if not (self.functions or self.classes):
            raise ModuleError(f"package {self.package!r} exposes no apply(image, ...) and no class with "
                              "apply(self, image)", code="module-no-apply",
                              hint="define `def apply(image, ...)` in its __init__.py (spec §3)")


def _takes_image(func: object, bound: bool) -> bool:
    try:
        params = list(inspect.signature(func).parameters.values())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    return len(positional) >= (2 if bound else 1)


def validate(directory: Path) -> ModuleReport:
    """Import the module's package from `directory` and report its apply() entry points."""
    directory = Path(directory).resolve()
    if not directory.is_dir():
        raise ModuleError(f"module directory {str(directory)!r} does not exist", code="module-invalid")
    names = package_names(directory)
    if not names:
        raise ModuleError(f"{str(directory)!r} holds no Python package (a directory with __init__.py)",
                          hint="run `tdx module new NAME` for the expected layout", code="module-invalid")
    root = import_root(directory)
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    sys.path.insert(0, str(root))
    try:
        try:
            mod = importlib.import_module(names[0])
        except TdxError:
            raise
        except Exception as e:
            raise ModuleError(f"importing {names[0]!r} from {str(root)!r} raised {type(e).__name__}: {e}",
                              hint="fix the module (run its tests)", code="module-import-failed") from e
        functions, classes = [], []
        for attr, value in sorted(vars(mod).items()):
            if attr == "apply" and callable(value) and not inspect.isclass(value) and _takes_image(value, False):
                functions.append(attr)
            elif inspect.isclass(value) and getattr(value, "__module__", "").split(".")[0] == names[0]:
                method = getattr(value, "apply", None)
                if inspect.isfunction(method) and _takes_image(method, True):
                    classes.append(attr)
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            del sys.modules[name]
    version = project_table(directory).get("version")
    return ModuleReport(directory, names[0], version if isinstance(version, str) else None,
                        tuple(functions), tuple(classes))


def scaffold(name: str, parent: Path) -> Path:
    """Write a new module project `parent/<name>/` (pyproject, package, data dir, a test); return it."""
    if not _DIST_RE.fullmatch(name):
        raise ModuleError(f"{name!r} is not a valid distribution name", hint="use letters, digits and '-'",
                          code="module-bad-name")
    package = re.sub(r"[-.]+", "_", name).lower()
    if not package.isidentifier():
        raise ModuleError(f"{name!r} does not give a valid package name ({package!r})",
                          hint="start the name with a letter", code="module-bad-name")
    dest = parent / name
    if dest.exists():
        raise ModuleError(f"{str(dest)!r} already exists", hint="choose another name or directory",
                          code="module-exists")
    files = {
        "pyproject.toml": _PYPROJECT.format(name=name, package=package),
        f"{package}/__init__.py": _INIT.format(name=name, package=package),
        f"{package}/data/motd": f"This image includes the {name} module.\n",
        f"tests/test_{package}.py": _TEST.format(package=package),
        ".gitignore": "__pycache__/\n*.egg-info/\nbuild/\ndist/\n",
    }
    for rel, text in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return dest


_PYPROJECT = '''[project]
name = "{name}"
version = "0.1.0"
description = "A tdx-vm-sdk module"
requires-python = ">=3.11"
dependencies = ["tdx-vm-sdk"]

[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[tool.setuptools.packages.find]
include = ["{package}*"]

[tool.setuptools.package-data]
{package} = ["data/*"]

[tool.pytest.ini_options]
pythonpath = ["."]
'''

_INIT = '''"""The {name} module: apply(image) adds what it provides to an Image."""

from importlib.resources import files

from tdx import Image


def apply(image: Image, motd: bool = True) -> None:
    """Install the module into `image`."""
    if motd:
        image.file("/etc/motd", src=str(files("{package}").joinpath("data", "motd")))
'''

_TEST = '''"""Apply the module to an Image and check what it added."""

from tdx import Image
from {package} import apply


def test_apply_adds_the_motd() -> None:
    image = Image("test", base="debian/bookworm")
    apply(image)
    assert [f.dest for f in image.files] == ["/etc/motd"]
'''
