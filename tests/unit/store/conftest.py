"""The `nar_impl` fixture: a test that takes it runs once with the C restorer and once with the Python parser."""

from __future__ import annotations

import pytest

from tdxstore.store import narparser


@pytest.fixture(params=["c", "python"])
def nar_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which restorer `narparser.restore_from` uses in this test (and in the processes it starts)."""
    if request.param == "python":
        monkeypatch.setenv("TDX_NAR_PYTHON", "1")
    else:
        monkeypatch.delenv("TDX_NAR_PYTHON", raising=False)
        assert narparser._narc is not None, "the C restorer (tdxstore/store/_narc.c) is not built: run scripts/setup"
    assert narparser.implementation() == request.param
    return str(request.param)
