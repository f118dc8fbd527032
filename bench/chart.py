"""The PNG chart of one run (the median one of several): each figure's medians per setup, labelled with
the ratio to its reference; ours in red, oauth2-proxy in blue, Apache in orange, nginx in grey."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["draw"]

_COLOURS = (("oidcproxy", "#d62728"), ("oauth2-proxy", "#1f77b4"), ("apache", "#ff7f0e"))
_SHOWN = ("small_rps", "small_p99_ms", "mb_mib_s", "large_rps", "ws_msgs_s", "auth_rps")


def _colour(setup: str) -> str:
    for prefix, colour in _COLOURS:
        if setup.startswith(prefix):
            return colour
    return "#7f7f7f"


def draw(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.run import FIGURES

    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, figure in zip(axes.flat, _SHOWN, strict=True):
        names = [n for n, d in results["setups"].items() if d["median"].get(figure) is not None]
        values = [results["setups"][n]["median"][figure] for n in names]
        bars = ax.barh(names, values, color=[_colour(n) for n in names])
        for bar, name in zip(bars, names, strict=True):
            ratio = results["ratios"][name].get(figure)
            label = f"{bar.get_width():,.0f}" + (f"  ({ratio:.2f}x)" if ratio is not None else "")
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + label, va="center", fontsize=8)
        unit, ref = FIGURES[figure]
        ax.set_title(f"{figure} ({unit}); ratio to {ref}", fontsize=9)
        ax.invert_yaxis()
        ax.margins(x=0.35)
    mode, machine = results["mode"], results["machine"]
    run = f"run {results.get('median_run', 1)} of {mode.get('runs', 1)}, "
    fig.suptitle(
        f"oidcproxy bench: {run}{mode['reps']} x {mode['seconds']:g}s, {mode['connections']} connections; "
        f"{machine.get('cpu_model', '')} x {machine['cpus']}, "
        f"load at start {results.get('loadavg_at_start', machine['loadavg_at_start'])[0]:.1f}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
