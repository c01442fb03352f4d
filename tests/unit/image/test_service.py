"""`exec=` reaches the program as written: `%` is escaped in the generated unit unless the service opts
in with `specifiers=True`. Checked against systemd's own parser with `systemd-analyze verify`, which
refuses an ExecStart= whose (specifier-expanded) program does not exist."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tdx import Image
from tdxstore.errors import ImageError
from tdxstore.image.model.service import Service, escape_specifiers, unit_text


def _exec_start(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("ExecStart="))


def test_percent_is_escaped_by_default() -> None:
    image = Image("x")
    image.service("clock", exec="/bin/sh -c 'date +%s; stat -c %U:%a /etc/x'")
    image.service("tmpl", exec="/usr/bin/app --instance %i", specifiers=True)
    by_name = {s.name: s for s in image.services}
    assert _exec_start(unit_text(by_name["clock"])) == "ExecStart=/bin/sh -c 'date +%%s; stat -c %%U:%%a /etc/x'"
    assert _exec_start(unit_text(by_name["tmpl"])) == "ExecStart=/usr/bin/app --instance %i"
    assert escape_specifiers("100%% %") == "100%%%% %%"


def test_list_exec_is_escaped_after_quoting() -> None:
    image = Image("x")
    image.service("a", exec=["/usr/bin/printf", "%s\\n", "50% off"])
    (svc,) = image.services
    assert _exec_start(unit_text(svc)) == "ExecStart=/usr/bin/printf '%%s\\n' '50%% off'"


def test_specifiers_must_be_a_bool() -> None:
    with pytest.raises(ImageError) as e:
        Service(name="a", exec="/a", specifiers="yes")  # type: ignore[arg-type]
    assert e.value.code == "invalid-value"


def _verify(unit_dir: Path, svc: Service) -> subprocess.CompletedProcess[str]:
    unit = unit_dir / svc.unit_file
    unit.write_text(unit_text(svc))
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("program", ["date+%s", "stat-%U:%a", "100%%"])
def test_systemd_runs_the_program_named_as_written(tmp_path: Path, program: str) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    target = bindir / program
    target.write_text("#!/bin/sh\nexit 0\n")
    target.chmod(0o755)
    literal = Service(name="literal", exec=f"{target} +%s", type="oneshot")
    done = _verify(tmp_path, literal)
    assert done.returncode == 0, done.stderr
    # The same text with specifiers on: systemd expands %s/%U/%a/%% and looks for another program.
    expanded = Service(name="expanded", exec=f"{target} +%s", type="oneshot", specifiers=True)
    done = _verify(tmp_path, expanded)
    assert done.returncode != 0 and "is not executable" in done.stderr and program not in done.stderr
