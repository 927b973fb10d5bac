"""Rank keys (property tests): between any two ranks there is another, and
appending keeps keys short."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from switchboard.plugins.pipeline.ranks import between, is_rank


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0), st.booleans()), max_size=60))
def test_a_rank_always_fits_between_its_neighbours(drops: list[tuple[int, bool]]) -> None:
    """Dropping cards anywhere in a column: every new key sorts exactly where it
    was dropped, and every key is a valid rank."""
    column: list[str] = []
    for where, _ in drops:
        i = where % (len(column) + 1)
        low = column[i - 1] if i > 0 else None
        high = column[i] if i < len(column) else None
        key = between(low, high)
        assert is_rank(key)
        assert (low is None or low < key) and (high is None or key < high)
        column.insert(i, key)
    assert column == sorted(column) and len(set(column)) == len(column)


@settings(deadline=None)
@given(st.integers(min_value=1, max_value=3000), st.booleans())
def test_appending_at_either_end_keeps_keys_short(count: int, at_end: bool) -> None:
    key: str | None = None
    for _ in range(count):
        key = between(key, None) if at_end else between(None, key)
    assert key is not None and len(key) <= 5


def test_moving_into_one_gap_grows_one_digit_per_five_moves_or_so() -> None:
    """The price of never renumbering: the pipeline renumbers a stage when a
    key passes storage.REBALANCE_AT (see test_pipeline)."""
    low = between(None, None)
    high = between(low, None)
    for _ in range(300):
        high = between(low, high)
    assert len(high) <= 300 // 4


@pytest.mark.parametrize(("low", "high"), [("a1", "a0"), ("a0", "a0"), ("a10", None),
                                           ("", None), ("!", None), (None, "a")])
def test_what_is_not_an_ordered_pair_of_ranks_is_refused(low: str | None,
                                                        high: str | None) -> None:
    with pytest.raises(ValueError):
        between(low, high)
