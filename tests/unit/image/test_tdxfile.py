"""load_tdxfile(): evaluation, local modules, relative src=, and user-facing errors (user's traceback)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tdxstore.debian.mirror import declared_mirrors
from tdxstore.errors import ImageError
from tdxstore.image.model.image import Image
from tdxstore.image.render import render_config
from tdxstore.image.tdxfile import load_tdxfile
from tdxstore.mkosi.config import ImageFormat

ROOT = Path(__file__).resolve().parents[3]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("example,name", [("minimal", "minimal"), ("monitoring", "monitoring"),
                                          ("module-class", "cache-node")])
def test_examples_load_and_render(example: str, name: str) -> None:
    image = load_tdxfile(ROOT / "examples" / example)
    assert image.name == name
    out = render_config(image, image.format, declared_mirrors({}))
    assert "mkosi.conf" in out and any(p.startswith("mkosi.extra/etc/systemd/system/") for p in out)


def test_minimal_example_content() -> None:
    image = load_tdxfile(ROOT / "examples" / "minimal" / "TDXfile")
    out = render_config(image, ImageFormat.TAR, declared_mirrors({}))
    assert b'echo "hello-tdx: started"' in out["mkosi.extra/usr/local/bin/hello-tdx"]
    assert b"StandardOutput=journal+console" in out["mkosi.extra/etc/systemd/system/hello-tdx.service"]
    assert [u.name for u in image.users] == ["hello"] and image.hooks


def test_module_class_parts_are_selectable() -> None:
    sys.path.insert(0, str(ROOT / "examples" / "module-class" / "modules" / "redis"))
    try:
        from tdx_redis import Redis  # type: ignore[import-not-found]
        full = Image("full")
        Redis(port=7000).apply(full)
        assert [s.name for s in full.services] == ["tdx-redis"] and full.services[0].ports == (7000,)
        partial = Image("partial")
        Redis().install(partial)
        assert partial.packages == ("redis-server",) and not partial.users and not partial.services
    finally:
        sys.path.remove(str(ROOT / "examples" / "module-class" / "modules" / "redis"))
        sys.modules.pop("tdx_redis", None)


def test_relative_src_and_local_modules(tmp_path: Path) -> None:
    write(tmp_path / "configs" / "app.conf", "a=1\n")
    write(tmp_path / "helper.py", "def dest():\n    return '/etc/from-helper'\n")
    write(tmp_path / "modules" / "mine" / "tdx_mine" / "__init__.py",
          "def apply(image):\n    image.file('/etc/mine', content='m')\n")
    write(tmp_path / "TDXfile", "from tdx import Image\nimport helper\nfrom tdx_mine import apply\n"
          "image = Image('p')\nimage.file(helper.dest(), src='configs/app.conf')\napply(image)\n")
    before = list(sys.path)
    image = load_tdxfile(tmp_path)
    assert [(f.dest, f.content) for f in image.files] == [("/etc/from-helper", b"a=1\n"), ("/etc/mine", b"m")]
    assert image.directory == tmp_path.resolve()
    assert sys.path == before and "tdx_mine" not in sys.modules and "helper" not in sys.modules


def test_single_unnamed_image_is_found(tmp_path: Path) -> None:
    write(tmp_path / "TDXfile", "from tdx import Image\nx = Image('only')\n")
    assert load_tdxfile(tmp_path / "TDXfile").name == "only"


@pytest.mark.parametrize("body,fragment", [
    ("x = 1\n", "does not create an Image"),
    ("from tdx import Image\na = Image('a')\nb = Image('b')\n", "several Images"),
])
def test_no_or_ambiguous_image(tmp_path: Path, body: str, fragment: str) -> None:
    write(tmp_path / "TDXfile", body)
    with pytest.raises(ImageError) as e:
        load_tdxfile(tmp_path)
    assert e.value.code == "tdxfile-error" and fragment in e.value.message


def test_syntax_error(tmp_path: Path) -> None:
    write(tmp_path / "TDXfile", "from tdx import Image\nimage = Image('x'\n")
    with pytest.raises(ImageError) as e:
        load_tdxfile(tmp_path)
    assert e.value.code == "tdxfile-error" and "syntax error" in e.value.message
    assert e.value.detail and "TDXfile" in e.value.detail


def test_exception_shows_only_user_frames(tmp_path: Path) -> None:
    write(tmp_path / "modules" / "m" / "tdx_m" / "__init__.py", "def boom(n):\n    return 1 / n\n")
    write(tmp_path / "TDXfile",
          "from tdx import Image\nfrom tdx_m import boom\nimage = Image('x')\nboom(0)\n")
    with pytest.raises(ImageError) as e:
        load_tdxfile(tmp_path)
    assert e.value.code == "tdxfile-error" and "ZeroDivisionError" in e.value.message
    detail = e.value.detail or ""
    assert 'TDXfile", line 4' in detail and "tdx_m/__init__.py\", line 2" in detail
    assert "tdxstore" not in detail and detail.endswith("ZeroDivisionError: division by zero")


def test_our_errors_keep_their_code_and_get_the_user_traceback(tmp_path: Path) -> None:
    write(tmp_path / "TDXfile", "from tdx import Image\nimage = Image('x')\n"
          "image.file('/etc/a', content='1')\nimage.file('/etc/a', content='2')\n")
    with pytest.raises(ImageError) as e:
        load_tdxfile(tmp_path)
    assert e.value.code == "conflict"
    assert "TDXfile:3" in e.value.message and "TDXfile:4" in e.value.message
    assert e.value.detail and "tdxstore" not in e.value.detail


def test_missing_src_names_the_path(tmp_path: Path) -> None:
    write(tmp_path / "TDXfile",
          "from tdx import Image\nimage = Image('x')\nimage.file('/etc/a', src='nope.conf')\n")
    with pytest.raises(ImageError) as e:
        load_tdxfile(tmp_path)
    assert e.value.code == "missing-source" and "nope.conf" in e.value.message


def test_missing_tdxfile(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as e:
        load_tdxfile(tmp_path)
    assert e.value.code == "tdxfile-not-found"
