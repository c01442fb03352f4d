"""The chain table alone: which stages a request resolves to, and the errors of bad requests or tables."""

from __future__ import annotations

import pytest

from tdxstore.builders.chain import Stage, resolve_chain, version_key
from tdxstore.builders.gosource import GO_STAGES, GoFromSource
from tdxstore.errors import BuildError

TABLE = [s.chain for s in GO_STAGES]


def keys(version: str, bootstrap: str | None = None) -> list[str]:
    return [s.key for s in resolve_chain(TABLE, version, bootstrap, family="Go")]


def test_default_chain_goes_down_to_the_seeds_gccgo() -> None:
    assert keys("1.24.4") == ["gccgo-12", "1.21.13", "1.22.12", "1.24.4"]
    assert keys("1.19.8") == ["gccgo-12", "1.19.8"]
    assert keys("gccgo-12") == ["gccgo-12"]


def test_a_minor_version_names_its_one_release() -> None:
    assert keys("1.22") == keys("1.22.12")


def test_bootstrap_version_picks_the_stage_below_the_requested_one() -> None:
    assert keys("1.21.13", "1.19.8") == ["gccgo-12", "1.19.8", "1.21.13"]
    assert keys("1.24", "1.22") == ["gccgo-12", "1.21.13", "1.22.12", "1.24.4"]


@pytest.mark.parametrize(("version", "bootstrap", "minimum"),
                         [("1.24.4", "1.21.13", "1.22.6"), ("1.22.12", "1.19.8", "1.20.6"),
                          ("1.22.12", "gccgo-12", "1.20.6"), ("1.24.4", "gccgo-12", "1.22.6")])
def test_a_bootstrap_below_the_minimum_names_the_minimum(version: str, bootstrap: str, minimum: str) -> None:
    with pytest.raises(BuildError) as err:
        GoFromSource(version=version, bootstrap_version=bootstrap)
    assert err.value.code == "bootstrap-too-old"
    assert f">= {minimum}" in err.value.message
    assert minimum in (err.value.hint or "")


@pytest.mark.parametrize(("version", "bootstrap"), [("1.23.1", None), ("1.20", None), ("1.24.4", "1.17.13")])
def test_a_version_without_a_chain_entry_is_one_error(version: str, bootstrap: str | None) -> None:
    with pytest.raises(BuildError) as err:
        GoFromSource(version=version, bootstrap_version=bootstrap)
    assert err.value.code == "chain-version-unknown"
    assert "1.22.12" in (err.value.hint or "")  # the versions it can build


def test_a_cycle_in_the_table_is_named() -> None:
    table = [Stage("seed", "1.0"), Stage("2.0", "2.0", "3.0", "1.0"), Stage("3.0", "3.0", "2.0", "1.0")]
    with pytest.raises(BuildError) as err:
        resolve_chain(table, "3.0", None, family="X")
    assert err.value.code == "chain-cycle"
    assert "3.0 -> 2.0 -> 3.0" in err.value.message


def test_a_stage_must_name_both_bootstrap_and_minimum() -> None:
    with pytest.raises(BuildError) as err:
        Stage("2.0", "2.0", "seed")
    assert err.value.code == "chain-invalid"


def test_versions_compare_as_numbers() -> None:
    assert version_key("1.22.6") > version_key("1.9")
    with pytest.raises(BuildError):
        version_key("1.x")
