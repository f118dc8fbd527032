"""The PNG chart of one run: each figure's medians per setup, labelled with the ratio to its reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["draw"]

_SHOWN = ("small_rps", "small_p99_ms", "mb_mib_s", "large_rps", "ws_msgs_s", "auth_rps")


def draw(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.run import FIGURES

    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, figure in zip(axes.flat, _SHOWN, strict=True):
        names = [n for n, d in results["setups"].items() if d["median"].get(figure) is not None]
        values = [results["setups"][n]["median"][figure] for n in names]
        bars = ax.barh(
            names, values, color=["#d62728" if n.startswith("oidcproxy") else "#7f7f7f" for n in names]
        )
        for bar, name in zip(bars, names, strict=True):
            ratio = results["ratios"][name].get(figure)
            label = f"{bar.get_width():,.0f}" + (f"  ({ratio:.2f}x)" if ratio is not None else "")
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + label, va="center", fontsize=8)
        unit, ref = FIGURES[figure]
        ax.set_title(f"{figure} ({unit}); ratio to {ref}", fontsize=9)
        ax.invert_yaxis()
        ax.margins(x=0.35)
    mode = results["mode"]
    fig.suptitle(
        f"oidcproxy bench: {mode['reps']} x {mode['seconds']:g}s, {mode['connections']} connections, "
        f"{results['machine']['cpus']} CPUs, load at start {results['machine']['loadavg_at_start'][0]:.1f}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
