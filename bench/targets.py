"""The targets of issue 17 (and those of issue 7 still tracked), each a ratio of medians taken in one
run, judged met or missed; and their spread over several runs. Pure: works on a run's medians.

A peer with two setups (Apache client-cookie and server-cache, oauth2-proxy with cookie and Redis
sessions) is compared at its best setup for that figure: the highest rate, the lowest p99.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["TARGETS", "Target", "evaluate", "spread"]

Medians = Mapping[str, Mapping[str, float | None]]  # setup -> figure -> median

_APACHE = ("apache-client-cookie", "apache-server-cache")
_O2P = ("oauth2-proxy", "oauth2-proxy-redis")
_MB = 1.048576  # MiB -> MB


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    op: str  # ">=" or "<="
    limit: float
    value: Callable[[Medians], float | None]
    issue: int = 17
    full_only: str = ""  # a figure only meaningful in a full run: the reason a smoke run gives


def _med(m: Medians, setup: str, figure: str) -> float | None:
    return m.get(setup, {}).get(figure)


def _best(m: Medians, setups: Sequence[str], figure: str, lowest: bool = False) -> float | None:
    values = [v for s in setups if (v := _med(m, s, figure)) is not None]
    if not values:
        return None
    return min(values) if lowest else max(values)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _ours_over(peer: Sequence[str], figure: str, lowest: bool = False) -> Callable[[Medians], float | None]:
    return lambda m: _ratio(_med(m, "oidcproxy", figure), _best(m, peer, figure, lowest))


def _between(
    a: str, b: str, fa: str = "small_rps", fb: str = "small_rps"
) -> Callable[[Medians], float | None]:
    return lambda m: _ratio(_med(m, a, fa), _med(m, b, fb))


def _scaled(setup: str, figure: str, factor: float) -> Callable[[Medians], float | None]:
    def value(m: Medians) -> float | None:
        v = _med(m, setup, figure)
        return round(v * factor, 1) if v is not None else None

    return value


TARGETS: tuple[Target, ...] = (
    Target("small GET vs mod_auth_openidc", ">=", 1.5, _ours_over(_APACHE, "small_rps")),
    Target("small GET vs oauth2-proxy", ">=", 1.0, _ours_over(_O2P, "small_rps")),
    Target("small GET p99 vs mod_auth_openidc", "<=", 1.0, _ours_over(_APACHE, "small_p99_ms", lowest=True)),
    Target("small GET p99 vs oauth2-proxy", "<=", 1.0, _ours_over(_O2P, "small_p99_ms", lowest=True)),
    Target("/oauth2/auth vs oauth2-proxy's", ">=", 1.0, _ours_over(_O2P, "auth_rps")),
    Target("Redis mode vs cookie mode", ">=", 0.9, _between("oidcproxy-redis", "oidcproxy")),
    Target("JSON logging on vs logging off", ">=", 0.9, _between("oidcproxy-json", "oidcproxy-nolog")),
    Target("30 KB session vs own small GET", ">=", 0.8, _between("oidcproxy", "oidcproxy", "xl_rps")),
    Target(
        "10,000 idle WebSockets, MB PSS summed",
        "<=",
        200,
        _scaled("oidcproxy", "idle_ws_pss_mib", _MB),
        full_only="idle_websockets",
    ),
    Target(
        "worker RSS growth over 1M requests, %",
        "<=",
        5,
        _scaled("oidcproxy", "rss_growth_pct", 1.0),
        full_only="rss_requests",
    ),
    Target(
        "400-group session vs own small GET", ">=", 0.8, _between("oidcproxy", "oidcproxy", "large_rps"), 7
    ),
    Target("1 MB GET vs mod_auth_openidc", ">=", 1.2, _ours_over(_APACHE, "mb_mib_s"), 7),
    Target("/oauth2/auth vs own small GET", ">=", 1.5, _between("oidcproxy", "oidcproxy", "auth_rps"), 7),
)

# The scale a full run measures at; a smoke run measures less and says so instead of judging.
FULL_SCALE = {"idle_websockets": 10_000, "rss_requests": 1_000_000}


def evaluate(medians: Medians, scale: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """Each target: its value, the limit, and "met", "missed" or why it was not judged."""
    out: dict[str, dict[str, Any]] = {}
    for t in TARGETS:
        value = t.value(medians)
        if value is None:
            status = "not measured"
        elif t.full_only and scale.get(t.full_only, 0) < FULL_SCALE[t.full_only]:
            ran, full = scale.get(t.full_only, 0), FULL_SCALE[t.full_only]
            status = f"not judged: {t.full_only} = {ran:,} (a full run has {full:,})"
        else:
            met = value >= t.limit if t.op == ">=" else value <= t.limit
            status = "met" if met else "missed"
        out[t.name] = {"value": value, "op": t.op, "limit": t.limit, "issue": t.issue, "status": status}
    return out


def spread(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Min / median / max over runs of each target's value and of each ratio in the table."""

    def mmm(values: list[float]) -> dict[str, float] | None:
        if not values:
            return None
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}

    targets = {}
    for t in TARGETS:
        rows = [r["targets"][t.name] for r in runs]
        targets[t.name] = {
            **(mmm([row["value"] for row in rows if row["value"] is not None]) or {}),
            "met_in_runs": sum(row["status"] == "met" for row in rows),
            "runs": len(rows),
        }
    ratios: dict[str, dict[str, Any]] = {}
    for setup in runs[0]["ratios"]:
        for figure in runs[0]["ratios"][setup]:
            values = [v for r in runs if (v := r["ratios"].get(setup, {}).get(figure)) is not None]
            ratios.setdefault(setup, {})[figure] = mmm(values)
    return {"targets": targets, "ratios": ratios}
