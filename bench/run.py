"""The benchmark: `python -m bench` (full: 3 repetitions of 10 s) or `python -m bench --smoke` (1 x 2 s).

Starts an upstream nginx (small body, 1 MB file, WebSocket echo), the npm oidc-provider, nginx as a
plain no-auth proxy (the reference), Apache + mod_auth_openidc in client-cookie and server-cache mode
(the peer), and oidcproxy with and without request logging; signs in through each proxy; drives load
with wrk; writes bench/results/<stamp>.json and a PNG chart; prints a table of medians and ratios.
Every figure is taken side by side in one run. Every process started is stopped, each step bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import load
from bench.servers import APACHE_MODULES, Proc, Stack, have, pss_kib, rss_kib
from tests.support.nodeidp import NodeIdP, start_node_idp

__all__ = ["FIGURES", "SETUPS", "main", "run"]

RESULTS = Path(__file__).resolve().parent / "results"

# figure -> (unit, reference setup for its ratio)
FIGURES: dict[str, tuple[str, str]] = {
    "small_rps": ("req/s", "nginx-proxy"),
    "small_p50_ms": ("ms", "nginx-proxy"),
    "small_p99_ms": ("ms", "nginx-proxy"),
    "mb_mib_s": ("MiB/s", "nginx-proxy"),
    "large_rps": ("req/s", "apache-client-cookie"),
    "xl_rps": ("req/s", "apache-client-cookie"),
    "ws_msgs_s": ("msg/s", "nginx-proxy"),
    "auth_rps": ("req/s", "apache-client-cookie"),
    "logins_s": ("logins/s", "apache-client-cookie"),
    "peak_rss_mib_per_worker": ("MiB", "apache-client-cookie"),
    "idle_ws_rss_mib": ("MiB", "nginx-proxy"),
    # Forked workers share pages with their parent: the sum of VmRSS counts those pages once per
    # process, the sum of PSS (proportional set size) counts each page once in all.
    "idle_ws_pss_mib": ("MiB", "nginx-proxy"),
}
_PROXY = ("small_rps", "small_p50_ms", "small_p99_ms", "mb_mib_s")
_AUTH = ("large_rps", "xl_rps", "logins_s", "peak_rss_mib_per_worker")
SETUPS: dict[str, tuple[str, ...]] = {
    "upstream": _PROXY,
    "nginx-proxy": (*_PROXY, "ws_msgs_s"),
    "apache-client-cookie": (*_PROXY, *_AUTH),
    "apache-server-cache": (*_PROXY, *_AUTH),
    "oidcproxy": (*_PROXY, *_AUTH, "ws_msgs_s", "auth_rps", "idle_ws_rss_mib", "idle_ws_pss_mib"),
    "oidcproxy-nolog": (*_PROXY, "large_rps", "xl_rps", "auth_rps"),
}


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--smoke", action="store_true", help="1 repetition of 2 s, few logins and WebSockets")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--groups", type=int, default=400, help="groups of the large-session user (as in #7)")
    p.add_argument("--xl-groups", type=int, default=4000, help="groups of the user whose session is >30 KB")
    p.add_argument("--idle-websockets", type=int, default=10000)
    p.add_argument("--workers", type=int, default=0, help="oidcproxy --workers (0: one per CPU)")
    p.add_argument("--pin", action="store_true", help="wrk on CPU 0, every server on CPU 1 (taskset)")
    p.add_argument("--only", default="", help="comma-separated setups to run (default: all)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.smoke:
        args.reps, args.seconds, args.idle_websockets = 1, 2.0, 100
    return args


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    missing = [b for b in ("nginx", "wrk", "node") if not have(b)]
    if missing:
        print(
            f"bench: missing {', '.join(missing)}; apt-get install nginx-light wrk nodejs npm "
            "apache2 libapache2-mod-auth-openidc",
            file=sys.stderr,
        )
        return 2
    path = run(args)
    print(f"\nresults: {path}\nchart:   {path.with_suffix('.png')}")
    return 0


def run(args: argparse.Namespace) -> Path:
    _raise_fd_limit()
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="oidcproxy-bench-"))
    stack = Stack(root, pin_servers="1" if args.pin else "")
    results: dict[str, Any] = _header(args)
    wanted = [s for s in SETUPS if not args.only or s in args.only.split(",")]
    values: dict[str, dict[str, list[float]]] = {s: {} for s in wanted}
    notes: dict[str, list[str]] = {s: [] for s in wanted}
    idp: NodeIdP | None = None
    try:
        idp = start_node_idp(users=_users(args.groups, args.xl_groups), skip_consent=True, ttl=86400)
        targets = _start(stack, idp, args, wanted, notes)
        cookies = asyncio.run(_sign_in(targets, notes))
        results["session_cookie_bytes"] = {k: {u: len(c) for u, c in v.items()} for k, v in cookies.items()}
        for rep in range(args.reps):
            print(f"-- repetition {rep + 1}/{args.reps}", flush=True)
            for setup in wanted:
                if setup in targets:
                    _measure(
                        setup, targets[setup], cookies.get(setup, {}), args, values[setup], notes[setup], rep
                    )
    finally:
        stack.stop_all()
        if idp is not None:
            idp.close()
        shutil.rmtree(root, ignore_errors=True)
    results["setups"] = {
        s: {
            "figures": {f: values[s].get(f) for f in SETUPS[s]},
            "median": {f: (statistics.median(values[s][f]) if values[s].get(f) else None) for f in SETUPS[s]},
            "notes": notes[s],
        }
        for s in wanted
    }
    results["ratios"] = _ratios(results["setups"])
    results["targets"] = _targets(results["setups"])
    results["wall_s"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"{'smoke-' if args.smoke else ''}{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    from bench.chart import draw

    draw(results, path.with_suffix(".png"))
    return path


def _users(groups: int, xl_groups: int) -> dict[str, dict[str, Any]]:
    return {
        "small": {"email": "small@example.com", "email_verified": True, "groups": ["dev"]},
        "large": {
            "email": "large@example.com",
            "email_verified": True,
            "groups": [f"group-{i:04}" for i in range(groups)],
        },
        "xl": {
            "email": "xl@example.com",
            "email_verified": True,
            "groups": [f"group-{i:04}" for i in range(xl_groups)],
        },
    }


def _start(
    stack: Stack, idp: NodeIdP, args: argparse.Namespace, wanted: list[str], notes: dict[str, list[str]]
) -> dict[str, Proc | tuple[Proc, int]]:
    up = stack.upstream()
    targets: dict[str, Proc | tuple[Proc, int]] = {"upstream": up}
    if "nginx-proxy" in wanted:
        targets["nginx-proxy"] = stack.nginx_proxy(up.port)
    apache = [s for s in wanted if s.startswith("apache")]
    if apache:
        problem = _apache_problem()
        if problem:
            for s in apache:
                notes[s].append(problem)
        else:
            try:
                ports = stack.apache(idp.issuer, idp.client_id, idp.client_secret, up.port)
                for s in apache:
                    targets[s] = (stack.procs[-1], ports[s.removeprefix("apache-")])
            except RuntimeError as exc:
                for s in apache:
                    notes[s].append(f"Apache did not start: {str(exc)[:300]}")
    workers = ["--workers", str(args.workers)] if args.workers else []
    if "oidcproxy" in wanted:
        targets["oidcproxy"] = stack.oidcproxy(
            "oidcproxy", idp.issuer, idp.client_id, idp.client_secret, up.port, *workers
        )
    if "oidcproxy-nolog" in wanted:
        targets["oidcproxy-nolog"] = stack.oidcproxy(
            "oidcproxy-nolog", idp.issuer, idp.client_id, idp.client_secret, up.port, *workers,
            "--request-logging=false",
        )  # fmt: skip
    return targets


def _apache_problem() -> str:
    if not have("apache2"):
        return "apache2 is not installed (apt-get install apache2 libapache2-mod-auth-openidc)"
    if not (APACHE_MODULES / "mod_auth_openidc.so").exists():
        return "mod_auth_openidc is not installed (apt-get install libapache2-mod-auth-openidc)"
    return ""


def _port(target: Proc | tuple[Proc, int]) -> int:
    return target[1] if isinstance(target, tuple) else target.port


async def _sign_in(
    targets: dict[str, Proc | tuple[Proc, int]], notes: dict[str, list[str]]
) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for setup, target in list(targets.items()):
        if not setup.startswith(("apache", "oidcproxy")):
            continue
        kind = "oidcproxy" if setup.startswith("oidcproxy") else "apache"
        base = f"http://127.0.0.1:{_port(target)}"
        out[setup] = {}
        for user in ("small", "large", "xl"):
            try:
                out[setup][user] = await asyncio.wait_for(load.login(base, kind, user), 60)
            except Exception as exc:  # reported in the table, the run goes on
                notes[setup].append(f"sign-in as {user} failed: {type(exc).__name__}: {str(exc)[:300]}")
        if "small" not in out[setup]:
            notes[setup].append("no session: its authenticated figures are missing")
            del targets[setup]
    return out


def _measure(
    setup: str,
    target: Proc | tuple[Proc, int],
    cookies: dict[str, str],
    args: argparse.Namespace,
    values: dict[str, list[float]],
    notes: list[str],
    rep: int,
) -> None:
    base = f"http://127.0.0.1:{_port(target)}"
    proc = target[0] if isinstance(target, tuple) else target
    figures = SETUPS[setup]
    pin = "0" if args.pin else ""

    def hit(path: str, user: str = "small") -> load.WrkResult:
        headers = {"Cookie": cookies[user]} if user in cookies else {}
        result = load.wrk(
            base + path, seconds=args.seconds, connections=args.connections, threads=args.threads,
            headers=headers, pin=pin,
        )  # fmt: skip
        if result.errors and rep == 0:
            notes.append(f"{path} as {user}: {result.errors} errors or non-2xx answers in wrk's run")
        return result

    def add(figure: str, value: float) -> None:
        values.setdefault(figure, []).append(round(value, 3))

    if cookies and not asyncio.run(load.still_signed_in(base, cookies["small"])):
        # wrk does not count redirects as errors: a lost session would measure the sign-in redirect.
        notes.append(f"repetition {rep + 1}: the session was no longer valid; figures skipped")
        return
    small = hit("/small")
    add("small_rps", small.rps)
    add("small_p50_ms", small.p50_ms)
    add("small_p99_ms", small.p99_ms)
    add("mb_mib_s", hit("/big").mib_s)
    for user in ("large", "xl"):
        if f"{user}_rps" not in figures:
            continue
        if user in cookies:
            add(f"{user}_rps", hit("/small", user).rps)
        elif rep == 0:
            notes.append(f"{user} session: no sign-in, no figure")
    if "auth_rps" in figures:
        add("auth_rps", hit("/oauth2/auth").rps)
    if "ws_msgs_s" in figures:
        ws = base.replace("http://", "ws://") + "/ws"
        add("ws_msgs_s", asyncio.run(load.websocket_echo(ws, cookies.get("small", ""), seconds=args.seconds)))
    if "logins_s" in figures:
        kind = "oidcproxy" if setup.startswith("oidcproxy") else "apache"
        try:
            add("logins_s", asyncio.run(load.logins_per_s(base, kind, "small", seconds=args.seconds)))
        except Exception as exc:  # reported, the run goes on
            notes.append(f"logins: {type(exc).__name__}: {str(exc)[:200]}")
    if "idle_ws_rss_mib" in figures and rep == args.reps - 1:
        ws = base.replace("http://", "ws://") + "/ws"

        pss: list[float] = []

        def rss_now() -> float:
            pids = proc.pids()
            pss.append(sum(pss_kib(pid) for pid in pids) / 1024)
            return sum(rss_kib(pid, "VmRSS") for pid in pids) / 1024

        opened, mib = asyncio.run(
            load.idle_websockets(ws, cookies.get("small", ""), args.idle_websockets, rss_now)
        )
        add("idle_ws_rss_mib", mib)
        add("idle_ws_pss_mib", pss[-1])
        notes.append(
            f"idle WebSockets: {opened} of {args.idle_websockets} opened, {mib:.0f} MiB RSS summed, "
            f"{pss[-1]:.0f} MiB PSS summed"
        )
    if "peak_rss_mib_per_worker" in figures:
        pids = proc.pids()
        workers = pids[1:] if len(pids) > 1 else pids
        add("peak_rss_mib_per_worker", max(rss_kib(p) for p in workers) / 1024)


def _ratios(setups: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for name, data in setups.items():
        out[name] = {}
        for figure, value in data["median"].items():
            ref = setups.get(FIGURES[figure][1], {}).get("median", {}).get(figure)
            out[name][figure] = round(value / ref, 3) if value is not None and ref else None
    return out


def _targets(setups: dict[str, Any]) -> dict[str, Any]:
    def med(setup: str, figure: str) -> float | None:
        value: float | None = setups.get(setup, {}).get("median", {}).get(figure)
        return value

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    us, peer = "oidcproxy", "apache-client-cookie"
    return {
        "small_rps_vs_peer (>= 1.5)": ratio(med(us, "small_rps"), med(peer, "small_rps")),
        "small_p99_vs_peer (<= 1.0)": ratio(med(us, "small_p99_ms"), med(peer, "small_p99_ms")),
        "large_vs_own_small (>= 0.8)": ratio(med(us, "large_rps"), med(us, "small_rps")),
        "xl_vs_own_small (>= 0.8)": ratio(med(us, "xl_rps"), med(us, "small_rps")),
        "peer_large_vs_own_small": ratio(med(peer, "large_rps"), med(peer, "small_rps")),
        "mb_vs_peer (>= 1.2)": ratio(med(us, "mb_mib_s"), med(peer, "mb_mib_s")),
        "auth_vs_own_small (>= 1.5)": ratio(med(us, "auth_rps"), med(us, "small_rps")),
        "idle_ws_rss_mib (< 500)": med(us, "idle_ws_rss_mib"),
        "idle_ws_pss_mib (< 500)": med(us, "idle_ws_pss_mib"),
        "small_rps_vs_nginx_proxy": ratio(med(us, "small_rps"), med("nginx-proxy", "small_rps")),
        "nolog_small_rps_vs_logging": ratio(med("oidcproxy-nolog", "small_rps"), med(us, "small_rps")),
    }


def _header(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "mode": {
            "smoke": args.smoke,
            "reps": args.reps,
            "seconds": args.seconds,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "pinned": args.pin,
            "large_session_groups": args.groups,
            "xl_session_groups": args.xl_groups,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_at_start": os.getloadavg(),
        },
    }


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def table(results: dict[str, Any]) -> str:
    """Medians, and in brackets the ratio to the figure's reference setup."""
    figures = list(FIGURES)
    lines = ["| setup | " + " | ".join(f"{f} ({FIGURES[f][0]})" for f in figures) + " |"]
    lines.append("|---" * (len(figures) + 1) + "|")
    for name, data in results["setups"].items():
        cells = []
        for f in figures:
            value = data["median"].get(f)
            ratio = results["ratios"][name].get(f)
            if f not in data["median"]:
                cells.append("")
            elif value is None:
                cells.append("n/a")
            else:
                cells.append(f"{value:,.1f}" + (f" ({ratio:.2f}x)" if ratio is not None else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = [f"- {name}: {n}" for name, data in results["setups"].items() for n in data["notes"]]
    targets = [f"- {k}: {v}" for k, v in results["targets"].items()]
    return "\n".join(["", *lines, "", "targets:", *targets, *(["", "notes:", *notes] if notes else [])])
