"""Hypothesis profiles for the property tests, and a loop thread for servers they talk to.

`ci` (the default) is derandomized and bounded so the whole property suite stays near 60 s;
`fuzz` runs as long as you like (`python -m tests.fuzz`, or HYPOTHESIS_PROFILE=fuzz) and keeps
failing examples in .hypothesis/ so a rerun replays them first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.support.loop import Loop

_SLOW_SETUP = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile(
    "ci", max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=_SLOW_SETUP
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "20000")),
    deadline=None,
    suppress_health_check=_SLOW_SETUP,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()
