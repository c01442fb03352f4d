"""Build.script(): a recorded value object, validated on construction."""

from __future__ import annotations

import pytest

from tdx import Build
from tdxstore.errors import BuildError


def test_script_build_records_fields() -> None:
    b = Build.script(name="my-tool", src="./tools/my-tool/", build_script="make release",
                     artifacts={"build/my-tool": "/usr/local/bin/my-tool"},
                     build_deps=["cmake", "libfoo-dev"])
    assert (b.name, b.src, b.build_script, b.output) == ("my-tool", "./tools/my-tool/", "make release", None)
    assert b.artifacts == (("build/my-tool", "/usr/local/bin/my-tool"),)
    assert b.build_deps == ("cmake", "libfoo-dev")
    c = Build.script(name="my-app", src="./app/", build_script="go build -o $DESTDIR/usr/local/bin/my-app .",
                     output="/usr/local/bin/my-app")
    assert c.output == "/usr/local/bin/my-app" and c == Build.script(
        name="my-app", src="./app/", build_script="go build -o $DESTDIR/usr/local/bin/my-app .",
        output="/usr/local/bin/my-app")


@pytest.mark.parametrize("kwargs", [
    {"name": ".hidden"}, {"name": "a b"}, {"src": ""}, {"build_script": "  "},
    {"artifacts": {"/abs": "/usr/bin/x"}}, {"artifacts": {"../x": "/usr/bin/x"}}, {"artifacts": {"x": "rel"}},
    {"build_deps": ["Not A Package"]}, {"output": "relative"}, {"output": None, "artifacts": None},
])
def test_script_build_rejects(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"name": "t", "src": ".", "build_script": "make", "output": "/opt/t"}
    args.update(kwargs)
    with pytest.raises(BuildError) as e:
        Build.script(**args)  # type: ignore[arg-type]
    assert e.value.code == "invalid-build"
