"""git, run by fetch_git's builtin, sees only the host's /usr, its work dir and a private HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tdxstore.fetch.git import _git, git_env

pytestmark = pytest.mark.needs_bwrap


def test_git_runs_in_a_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "token").write_text("do-not-read")
    monkeypatch.setenv("TDX_SECRET_TEST_VAR", "leak")
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    env = git_env(home)
    _git(["init", "--quiet"], work, env, "git init")
    probe = (f"!sh -c 'test -e {secret}/token && echo visible || echo hidden; "
             "echo var=${TDX_SECRET_TEST_VAR:-unset}; touch /usr/x 2>/dev/null && echo usr-writable || echo usr-ro; "
             f"touch {work}/ok && echo work-writable'")
    out = _git(["-c", f"alias.probe={probe}", "probe"], work, env, "git probe")
    assert out.splitlines() == ["hidden", "var=unset", "usr-ro", "work-writable"], out
    assert os.path.exists(work / "ok")
