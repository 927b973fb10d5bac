"""Settings for the whole suite.

Property tests of pure functions (payload checks, profile translations,
webhook parsers, rank keys) run the examples of a hypothesis profile:
``default`` (100 examples each, as hypothesis's own default) in the everyday
suite, ``thorough`` (2,000 each) when ``HYPOTHESIS_PROFILE=thorough`` is set,
for a longer search before a release. The front-door fuzzers keep their own
counts (``contrib/fuzz`` runs them for as long as asked).
"""

from __future__ import annotations

import gc
import os

import pytest
from hypothesis import settings

settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Make the garbage collector cheap for the rest of the session.

    Every test builds a server (plugins, tables, an HTTP app): tens of
    thousands of objects, many in reference cycles. With the collector's
    defaults, its frequent full passes walk everything the suite has imported
    and collected, about a third of a harness test's CPU time. What exists once
    collection is done lives until the end (``gc.freeze``), and the youngest
    generation is collected every 50,000 allocations instead of 700: garbage
    is still collected, in fewer and cheaper passes.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, *gc.get_threshold()[1:])
