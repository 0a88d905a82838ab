"""Regressions of two kinds fixed elsewhere in the core but missed in later modules:

* ``AdaptiveTimeout(multiplier=10**400)`` raised a bare ``OverflowError`` instead of a ``ValueError`` naming the
  parameter (the same fault as uvloop #259, fixed in ``_config``);
* ``CompartmentFullError`` lost its PEP 678 notes when pickled (tenacity #182, celery #5626);
* a Hedge that gave up added one more note per call to an exception shared by many calls (ipython #8017).
"""

import asyncio
import pickle

import pytest

import stalwart as sw


def test_adaptive_timeout_huge_multiplier_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="multiplier"):
        sw.AdaptiveTimeout(multiplier=10**400)


def test_compartment_full_error_pickles_with_notes_and_key() -> None:
    exc = sw.CompartmentFullError("users", 2, "alice")
    exc.add_note("context")
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is sw.CompartmentFullError
    assert copy.key == "alice"
    assert copy.max_concurrent == 2
    assert copy.__notes__ == ["context"]


async def test_hedge_keeps_one_note_on_a_shared_exception() -> None:
    shared = ConnectionError("down")

    async def failing() -> None:
        raise shared

    hedge = sw.Hedge(0.0, max_hedged=1, on=ConnectionError)
    for _ in range(5):
        with pytest.raises(ConnectionError):
            await hedge.run(failing)
        await asyncio.sleep(0)
    assert len(getattr(shared, "__notes__", [])) <= 1
