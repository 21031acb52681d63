"""The CLI's dataset spellings: each declared name, and only the aliases a declaration lists."""

from __future__ import annotations

import pytest

from kirby_core.datasets import dataset_named, spellings
from kirby_core.errors import InvalidRequest


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("candles", "candles"),
        ("funding_rates", "funding_rates"),
        ("funding", "funding_rates"),
        ("open_interest", "open_interest"),
        ("oi", "open_interest"),
    ],
)
def test_a_name_or_a_declared_alias_means_its_dataset(spelling: str, name: str) -> None:
    assert dataset_named(spelling).name == name


@pytest.mark.parametrize("spelling", ["open-interest", "FUNDING", "num_trades", "trades", ""])
def test_any_other_spelling_is_refused_naming_what_is_allowed(spelling: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        dataset_named(spelling)
    assert str(refused.value) == (
        f"unknown dataset {spelling!r}; expected one of "
        "candles, funding_rates, funding, open_interest, oi"
    )


def test_spellings_list_each_name_then_its_aliases() -> None:
    assert spellings() == ["candles", "funding_rates", "funding", "open_interest", "oi"]
    assert spellings(["open_interest", "candles"]) == ["open_interest", "oi", "candles"]
