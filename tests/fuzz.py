"""Run the property tests as a fuzzer, as long as you like: `python -m tests.fuzz [N] [pytest args]`.

N examples per property (default 20,000) under hypothesis's `fuzz` profile: random, not derandomized,
and failing examples kept in .hypothesis/ so the next run (also in CI's profile) replays them first.
Run it with PYTHONPATH set to the checkout, e.g. `PYTHONPATH=$PWD python -m tests.fuzz 100000 -k token`.
"""

from __future__ import annotations

import os
import sys

import pytest

__all__ = ["main"]


def main(argv: list[str]) -> int:
    examples = argv[0] if argv and argv[0].isdigit() else "20000"
    rest = argv[1:] if argv and argv[0].isdigit() else argv
    os.environ["HYPOTHESIS_PROFILE"] = "fuzz"
    os.environ["FUZZ_EXAMPLES"] = examples
    here = os.path.dirname(os.path.abspath(__file__))
    return int(pytest.main([os.path.join(here, "property"), "-q", "-p", "no:cacheprovider", *rest]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
