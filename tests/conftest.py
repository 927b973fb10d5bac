"""Settings for the whole suite.

Property tests of pure functions (payload checks, profile translations,
webhook parsers, rank keys) run the examples of a hypothesis profile:
``default`` (100 examples each, as hypothesis's own default) in the everyday
suite, ``thorough`` (2,000 each) when ``HYPOTHESIS_PROFILE=thorough`` is set,
for a longer search before a release. The front-door fuzzers keep their own
counts (``contrib/fuzz`` runs them for as long as asked).
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
