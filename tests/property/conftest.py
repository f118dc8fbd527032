"""Hypothesis profiles for the property tests, and a loop thread for servers they talk to.

`ci` (the default) is derandomized and bounded so the whole property suite stays near 60 s;
`fuzz` runs as long as you like (`python -m tests.fuzz`, or HYPOTHESIS_PROFILE=fuzz) and keeps
failing examples in .hypothesis/ so a rerun replays them first.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings

T = TypeVar("T")

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


class Loop:
    """An asyncio loop in a daemon thread: hypothesis drives sync tests, the servers live here."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="property-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()
