"""What a benchmark run measures: the figures (unit, reference setup of the ratio) and the setups, one
line each (how it is started and signed in, its extra options, which figures it gets). Pure data.

Adding a setup is one line in SETUP_LIST. A setup of ours that needs an option this oidcproxy does
not have yet (`requires`) stays listed: the run reports it with a note instead of figures.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FIGURES", "REDIS_URL", "SETUPS", "SETUP_LIST", "Setup"]

# figure -> (unit, reference setup for its ratio in the table)
FIGURES: dict[str, tuple[str, str]] = {
    "small_rps": ("req/s", "nginx-proxy"),
    "small_p50_ms": ("ms", "nginx-proxy"),
    "small_p99_ms": ("ms", "nginx-proxy"),
    "mb_mib_s": ("MiB/s", "nginx-proxy"),
    "large_rps": ("req/s", "apache-client-cookie"),
    "xl_rps": ("req/s", "apache-client-cookie"),
    "ws_msgs_s": ("msg/s", "nginx-proxy"),
    "auth_rps": ("req/s", "oauth2-proxy"),
    "logins_s": ("logins/s", "apache-client-cookie"),
    "peak_rss_mib_per_worker": ("MiB", "apache-client-cookie"),
    "idle_ws_rss_mib": ("MiB", "nginx-proxy"),
    # Forked workers share pages with their parent: the sum of VmRSS counts those pages once per
    # process, the sum of PSS (proportional set size) counts each page once in all.
    "idle_ws_pss_mib": ("MiB", "nginx-proxy"),
    # Growth of the largest worker's VmRSS over `--rss-requests` small GETs, after the repetitions.
    "rss_growth_pct": ("%", "oidcproxy"),
}

# In a setup's options, replaced by the URL of the Redis the run starts (only when a setup uses it).
REDIS_URL = "{redis}"


@dataclass(frozen=True, slots=True)
class Setup:
    name: str
    kind: str  # "upstream" | "nginx" | "apache" | "oauth2-proxy" | "oidcproxy"
    figures: tuple[str, ...]
    options: tuple[str, ...] = ()  # Apache: its OIDCSessionType; the others: command-line options
    requires: str = ""  # an option `python -m oidcproxy --help` must list, else: skipped, with a note
    what: str = ""  # shown in the notes when it is skipped


_PROXY = ("small_rps", "small_p50_ms", "small_p99_ms", "mb_mib_s")
_AUTH = ("large_rps", "xl_rps", "logins_s", "peak_rss_mib_per_worker")
_PEER = (*_PROXY, *_AUTH, "ws_msgs_s", "auth_rps")
_OURS_ALSO = ("large_rps", "xl_rps", "auth_rps")
_O2P_REDIS = ("--session-store-type=redis", f"--redis-connection-url={REDIS_URL}")

SETUP_LIST: tuple[Setup, ...] = (
    Setup("upstream", "upstream", _PROXY),
    Setup("nginx-proxy", "nginx", (*_PROXY, "ws_msgs_s")),
    Setup("apache-client-cookie", "apache", (*_PROXY, *_AUTH), ("client-cookie",)),
    Setup("apache-server-cache", "apache", (*_PROXY, *_AUTH), ("server-cache",)),
    Setup("oauth2-proxy", "oauth2-proxy", _PEER),
    Setup("oauth2-proxy-redis", "oauth2-proxy", _PEER, _O2P_REDIS),
    Setup(
        "oidcproxy",
        "oidcproxy",
        (*_PEER, "idle_ws_rss_mib", "idle_ws_pss_mib", "rss_growth_pct"),
    ),
    Setup("oidcproxy-nolog", "oidcproxy", (*_PROXY, *_OURS_ALSO), ("--request-logging=false",)),
    # TODO(issue 12, Redis mode): measured as soon as `oidcproxy --help` lists --session-store-type;
    # the option names are oauth2-proxy's (session_store_type, redis_connection_url); adjust them
    # here if the option lands under other names.
    Setup(
        "oidcproxy-redis",
        "oidcproxy",
        (*_PROXY, *_OURS_ALSO, "logins_s"),
        _O2P_REDIS,
        requires="--session-store-type",
        what="Redis mode (issue 12)",
    ),
    # JSON logging (issue 14): its cost against logging off is a target (targets.py).
    Setup(
        "oidcproxy-json",
        "oidcproxy",
        (*_PROXY, *_OURS_ALSO),
        ("--log-format=json",),
        requires="--log-format",
        what="JSON logging (issue 14)",
    ),
)
SETUPS: dict[str, tuple[str, ...]] = {s.name: s.figures for s in SETUP_LIST}
