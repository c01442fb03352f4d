"""The `nar_impl` fixture: a test that takes it runs once with the C restorer and dumper, once with the Python ones."""

from __future__ import annotations

import pytest

from tdxstore.store import nar, narparser


@pytest.fixture(params=["c", "python"])
def nar_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which restorer (`narparser.restore_from`) and dumper (`nar.dump`, `nar.dump_chunks`) this test uses,
    and the processes it starts."""
    if request.param == "python":
        monkeypatch.setenv("TDX_NAR_PYTHON", "1")
    else:
        monkeypatch.delenv("TDX_NAR_PYTHON", raising=False)
        assert narparser._narc is not None, "the C restorer (tdxstore/store/_narc.c) is not built: run scripts/setup"
        assert nar._nardump is not None, "the C dumper (tdxstore/store/_nardump.c) is not built: run scripts/setup"
    assert narparser.implementation() == nar.implementation() == request.param
    return str(request.param)
