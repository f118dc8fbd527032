"""The benchmark still runs end to end: `python -m bench --smoke` (one repetition of 2 s) writes a results
file with every figure for every setup, and a chart. Never asserts a speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.run import SETUPS

_BOUND_S = 900


def test_smoke_run_writes_every_figure_and_a_chart(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=_BOUND_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = tmp_path.glob("smoke-*.json")
    assert path.with_suffix(".png").stat().st_size > 10_000
    results = json.loads(path.read_text())
    assert set(results["setups"]) == set(SETUPS)
    for name, figures in SETUPS.items():
        setup = results["setups"][name]
        assert set(setup["median"]) == set(figures)
        for figure in figures:
            value = setup["median"][figure]
            # A figure may be missing only where the run says why (the peer cannot hold an XL session).
            assert isinstance(value, float | int) or setup["notes"], (name, figure)
    ours = results["setups"]["oidcproxy"]
    assert all(isinstance(v, float | int) and v > 0 for v in ours["median"].values()), ours
    assert ours["notes"] == [n for n in ours["notes"] if n.startswith("idle WebSockets")]
    assert "| oidcproxy |" in done.stdout
