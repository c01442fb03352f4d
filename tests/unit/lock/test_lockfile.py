"""tdx.lock codec: the golden file round-trips byte for byte; malformed files name the line and the key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tdxstore.errors import LockfileError
from tdxstore.lock import FetchEntry, Lockfile, ModuleEntry, ModuleSource, dump_lock, parse_lock, read_lock

GOLDEN = Path(__file__).parents[2] / "data" / "lock" / "tdx.lock"
H = "sha256:" + "0" * 63


def sample() -> Lockfile:
    return Lockfile(
        requires_hash=H + "1",
        requires=("tdx-nethermind>=1.30", "tdx-hardening @ git+https://github.com/org/tdx-hardening@v1.0.0",
                  "tdx-my-prover @ file:./modules/my-prover"),
        modules=(
            ModuleEntry("tdx-nethermind", "1.30.0", ModuleSource.PYPI, H + "2",
                        url="https://files.example/tdx_nethermind-1.30.0-py3-none-any.whl"),
            ModuleEntry("tdx-my-prover", "0.1.0", ModuleSource.LOCAL, H + "3", path="./modules/my-prover"),
            ModuleEntry("tdx-hardening", "1.0.0", ModuleSource.GIT, H + "4", git="https://github.com/org/tdx-hardening",
                        tag="v1.0.0", resolved_rev="8f3a2b1c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a"),
        ),
        fetches=(
            FetchEntry("https://go.dev/dl/go1.22.5.linux-amd64.tar.gz", H + "5", "2026-02-22T10:30:00Z"),
            FetchEntry("https://github.com/org/src", H + "6", "2026-02-22T10:31:00Z", kind="fetch_git",
                       rev="8f3a2b1c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a", tag="v2"),
        ),
    )


def test_golden_file() -> None:
    assert dump_lock(sample()) == GOLDEN.read_text()
    assert read_lock(GOLDEN) == sample()


def test_order_does_not_matter() -> None:
    s = sample()
    shuffled = Lockfile(s.requires_hash, tuple(reversed(s.requires)), tuple(reversed(s.modules)),
                        tuple(reversed(s.fetches)))
    assert dump_lock(shuffled) == dump_lock(s)


def test_unknown_keys_warn_and_sections_survive(caplog: pytest.LogCaptureFixture) -> None:
    text = GOLDEN.read_text().replace('version = "1.30.0"\n', 'version = "1.30.0"\nyanked = false\n')
    text = text.replace("requires = [", 'future = "x"\nrequires = [', 1) + '\n[[package]]\nname = "bash"\n'
    with caplog.at_level(logging.WARNING):
        lock = parse_lock(text)
    assert "'yanked'" in caplog.text and "'future'" in caplog.text and "'package'" in caplog.text
    assert lock.modules == sample().modules
    assert lock.extra == {"future": "x", "package": [{"name": "bash"}]}
    again = parse_lock(dump_lock(lock))
    assert again.extra == lock.extra


def _error(text: str) -> LockfileError:
    with pytest.raises(LockfileError) as info:
        parse_lock(text)
    return info.value


def _line(text: str, needle: str, after: str = "") -> int:
    start = text.index(after) if after else 0
    return text[:text.index(needle, start)].count("\n") + 1


@pytest.mark.parametrize(("old", "new", "key", "after"), [
    ('version = "1.0.0"', 'version = 1', "version", "tdx-hardening"),
    ('source = "local"', 'source = "npm"', "source", ""),
    (f'integrity = "{H}3"', 'integrity = "md5:abc"', "integrity", "tdx-my-prover"),
    ('resolved_rev = "8f3a', 'resolved_rev = "XYZ', "resolved_rev", ""),
    ('path = "./modules/my-prover"', 'path = "/abs/my-prover"', "path", ""),
    ('resolved_at = "2026-02-22T10:31:00Z"', 'resolved_at = "yesterday"', "resolved_at", "github.com/org/src"),
])
def test_malformed_entry_names_line_and_key(old: str, new: str, key: str, after: str) -> None:
    text = GOLDEN.read_text().replace(old, new)
    err = _error(text)
    assert err.code == "lock-malformed"
    anchor = new.split(" =")[0] + " = " + new.split(" = ")[1][:3]
    assert f"line {_line(text, anchor, after)}, key {key!r}" in err.message, err.message


def test_missing_key_and_bad_toml_and_version() -> None:
    text = GOLDEN.read_text()
    err = _error(text.replace(f'integrity = "{H}2"\n', ""))
    assert err.code == "lock-malformed" and "has no integrity" in err.message
    err = _error(text.replace("[[fetch]]", "[[fetch]", 1))
    assert err.code == "lock-malformed" and "line" in err.message
    assert "newer" in _error(text.replace("version = 1\n", "version = 2\n")).message
    assert _error(text.replace("version = 1\n", "")).code == "lock-malformed"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LockfileError) as info:
        read_lock(tmp_path / "tdx.lock")
    assert info.value.code == "lock-missing"


def test_entries_validate() -> None:
    with pytest.raises(LockfileError):
        ModuleEntry("tdx-x", "1", ModuleSource.PYPI, H + "1", url="https://u:p@h/x.whl")
    with pytest.raises(LockfileError):
        ModuleEntry("tdx-x", "1", ModuleSource.PYPI, H + "1", path="./x")
    with pytest.raises(LockfileError):
        ModuleEntry("Tdx_X", "1", ModuleSource.LOCAL, H + "1", path="./x")
    with pytest.raises(LockfileError):
        Lockfile(H + "1", modules=(ModuleEntry("a", "1", ModuleSource.LOCAL, H + "1", path="./a"),) * 2)
