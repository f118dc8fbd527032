"""The benchmark: `python -m bench` (full: 3 repetitions of 10 s) or `python -m bench --smoke` (1 x 1 s).

Starts an upstream nginx (small body, 1 MB file, WebSocket echo), the npm oidc-provider, nginx as a
plain no-auth proxy (the reference), the peers (Apache + mod_auth_openidc in client-cookie and
server-cache mode; oauth2-proxy with cookie and Redis sessions, when scripts/setup.sh could build it),
a Redis, and oidcproxy in each setup of bench/setups.py; signs in through each proxy at the provider;
drives load with wrk; judges the targets (bench/targets.py); writes bench/results/<stamp>.json with
the machine's description and a PNG chart; prints a table of medians, ratios and targets.
Every figure is taken side by side in one run; `--runs N` repeats the whole run and reports the
spread (min / median / max) of each ratio. Every process started is stopped, each step bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import load
from bench.machine import describe
from bench.servers import (
    APACHE_MODULES,
    OAUTH2_PROXY_VERSION,
    Proc,
    Stack,
    have,
    oauth2_proxy_binary,
    pss_kib,
    rss_kib,
)
from bench.setups import FIGURES, REDIS_URL, SETUP_LIST, SETUPS, Setup
from bench.targets import evaluate, spread
from tests.support.nodeidp import NodeIdP, start_node_idp

__all__ = ["FIGURES", "SETUPS", "main", "run_once"]

RESULTS = Path(__file__).resolve().parent / "results"
Target = Proc | tuple[Proc, int]


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--smoke", action="store_true", help="1 repetition of 1 s, few logins and WebSockets")
    p.add_argument("--runs", type=int, default=1, help="whole runs, each with its own processes")
    p.add_argument("--reps", type=int, default=3, help="repetitions in a run; a figure is their median")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--groups", type=int, default=400, help="groups of the large-session user (as in #7)")
    p.add_argument("--xl-groups", type=int, default=4000, help="groups of the user whose session is >30 KB")
    p.add_argument("--idle-websockets", type=int, default=10000)
    p.add_argument("--rss-requests", type=int, default=1_000_000, help="small GETs for the RSS growth figure")
    p.add_argument("--workers", type=int, default=0, help="oidcproxy --workers (0: one per CPU)")
    p.add_argument("--pin", action="store_true", help="wrk on CPU 0, every server on CPU 1 (taskset)")
    p.add_argument("--only", default="", help="comma-separated setups to run (default: all)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.smoke:
        args.runs, args.reps, args.seconds = 1, 1, 1.0
        args.idle_websockets, args.rss_requests = 100, 5000
    return args


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    missing = [b for b in ("nginx", "wrk", "node") if not have(b)]
    if missing:
        print(
            f"bench: missing {', '.join(missing)}; apt-get install nginx-light wrk nodejs npm "
            "apache2 libapache2-mod-auth-openidc redis-server",
            file=sys.stderr,
        )
        return 2
    path = run(args)
    print(f"\nresults: {path}\nchart:   {path.with_suffix('.png')}")
    return 0


def run(args: argparse.Namespace) -> Path:
    """`args.runs` whole runs; one results file: every run, the spread, the median run's tables."""
    _raise_fd_limit()
    started = time.monotonic()
    binary = oauth2_proxy_binary()
    results: dict[str, Any] = _header(args, binary)
    runs = []
    for number in range(args.runs):
        if args.runs > 1:
            print(f"== run {number + 1}/{args.runs}", flush=True)
        runs.append(run_once(args, binary))
    key = "small GET vs mod_auth_openidc"
    order = sorted(range(len(runs)), key=lambda i: runs[i]["targets"][key]["value"] or 0.0)
    middle = order[len(order) // 2]
    results.update(runs[middle])
    results["median_run"] = middle + 1
    results["runs"] = runs
    results["spread"] = spread(runs)
    results["wall_s"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path: Path = args.out / f"{'smoke-' if args.smoke else ''}{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    from bench.chart import draw

    draw(results, path.with_suffix(".png"))
    return path


def run_once(args: argparse.Namespace, binary: Path | None) -> dict[str, Any]:
    """One run: start every wanted setup, sign in, measure `args.reps` times, judge the targets."""
    root = Path(tempfile.mkdtemp(prefix="oidcproxy-bench-"))
    stack = Stack(root, pin_servers="1" if args.pin else "")
    wanted = [s for s in SETUP_LIST if not args.only or s.name in args.only.split(",")]
    values: dict[str, dict[str, list[float]]] = {s.name: {} for s in wanted}
    notes: dict[str, list[str]] = {s.name: [] for s in wanted}
    out: dict[str, Any] = {"loadavg_at_start": list(os.getloadavg())}
    idp: NodeIdP | None = None
    try:
        idp = start_node_idp(users=_users(args.groups, args.xl_groups), skip_consent=True, ttl=86400)
        targets = _start(stack, idp, args, wanted, notes, binary)
        cookies = asyncio.run(_sign_in(targets, {s.name: s for s in wanted}, notes))
        out["session_cookie_bytes"] = {k: {u: len(c) for u, c in v.items()} for k, v in cookies.items()}
        for rep in range(args.reps):
            print(f"-- repetition {rep + 1}/{args.reps}", flush=True)
            for setup in wanted:
                if setup.name in targets:
                    _measure(
                        setup, targets[setup.name], cookies.get(setup.name, {}), args,
                        values[setup.name], notes[setup.name], rep,
                    )  # fmt: skip
    finally:
        stack.stop_all()
        if idp is not None:
            idp.close()
        shutil.rmtree(root, ignore_errors=True)
    out["setups"] = {
        s.name: {
            "figures": {f: values[s.name].get(f) for f in s.figures},
            "median": {
                f: (statistics.median(values[s.name][f]) if values[s.name].get(f) else None)
                for f in s.figures
            },
            "notes": notes[s.name],
        }
        for s in wanted
    }
    out["ratios"] = _ratios(out["setups"])
    medians = {name: data["median"] for name, data in out["setups"].items()}
    scale = {"idle_websockets": args.idle_websockets, "rss_requests": args.rss_requests}
    out["targets"] = evaluate(medians, scale)
    return out


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
    stack: Stack,
    idp: NodeIdP,
    args: argparse.Namespace,
    wanted: list[Setup],
    notes: dict[str, list[str]],
    binary: Path | None,
) -> dict[str, Target]:
    """Start each wanted setup; one that cannot start gets a note saying why, and no figures."""
    up = stack.upstream()
    targets: dict[str, Target] = {"upstream": up}
    client = (idp.issuer, idp.client_id, idp.client_secret)
    skipped = _skipped(wanted, binary)
    for name, why in skipped.items():
        notes[name].append(why)
    runnable = [s for s in wanted if s.name not in skipped]
    redis = ""
    if any(REDIS_URL in o for s in runnable for o in s.options):
        try:
            redis = stack.redis()
        except (OSError, RuntimeError) as exc:
            for s in runnable:
                if any(REDIS_URL in o for o in s.options):
                    notes[s.name].append(f"Redis did not start: {str(exc)[:300]}")
            runnable = [s for s in runnable if not any(REDIS_URL in o for o in s.options)]
    apache = [s for s in runnable if s.kind == "apache"]
    if apache:
        try:
            ports = stack.apache(*client, up.port, [s.options[0] for s in apache])
            for s in apache:
                targets[s.name] = (stack.procs[-1], ports[s.options[0]])
        except RuntimeError as exc:
            for s in apache:
                notes[s.name].append(f"Apache did not start: {str(exc)[:300]}")
    workers = ["--workers", str(args.workers)] if args.workers else []
    for s in runnable:
        options = [o.replace(REDIS_URL, redis) for o in s.options]
        try:
            if s.kind == "nginx":
                targets[s.name] = stack.nginx_proxy(up.port)
            elif s.kind == "oauth2-proxy" and binary is not None:
                targets[s.name] = stack.oauth2_proxy(s.name, binary, *client, up.port, *options)
            elif s.kind == "oidcproxy":
                targets[s.name] = stack.oidcproxy(s.name, *client, up.port, *workers, *options)
        except RuntimeError as exc:
            notes[s.name].append(f"did not start: {str(exc)[:300]}")
    return targets


def _skipped(wanted: list[Setup], binary: Path | None) -> dict[str, str]:
    """Setups this machine or this oidcproxy cannot run, each with the reason and the fix."""
    out = {}
    apache = _apache_problem()
    helped = _oidcproxy_help() if any(s.requires for s in wanted) else ""
    for s in wanted:
        if s.kind == "apache" and apache:
            out[s.name] = apache
        elif s.kind == "oauth2-proxy" and binary is None:
            out[s.name] = (
                f"skipped: no oauth2-proxy binary (scripts/setup.sh builds {OAUTH2_PROXY_VERSION} into "
                ".cache/peers/bin when Go is installed; or set OAUTH2_PROXY=/path/to/oauth2-proxy)"
            )
        elif any(REDIS_URL in o for o in s.options) and not have("redis-server"):
            out[s.name] = "skipped: redis-server is not installed (apt-get install redis-server)"
        elif s.requires and s.requires not in helped:
            out[s.name] = f"skipped: {s.what} is not built yet (`oidcproxy --help` lists no {s.requires})"
    return out


def _oidcproxy_help() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "oidcproxy", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout


def _apache_problem() -> str:
    if not have("apache2"):
        return "apache2 is not installed (apt-get install apache2 libapache2-mod-auth-openidc)"
    if not (APACHE_MODULES / "mod_auth_openidc.so").exists():
        return "mod_auth_openidc is not installed (apt-get install libapache2-mod-auth-openidc)"
    return ""


def _port(target: Target) -> int:
    return target[1] if isinstance(target, tuple) else target.port


async def _sign_in(
    targets: dict[str, Target], setups: dict[str, Setup], notes: dict[str, list[str]]
) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, target in list(targets.items()):
        kind = setups[name].kind if name in setups else "upstream"
        if kind not in ("apache", "oauth2-proxy", "oidcproxy"):
            continue
        base = f"http://127.0.0.1:{_port(target)}"
        out[name] = {}
        for user in ("small", "large", "xl"):
            try:
                out[name][user] = await asyncio.wait_for(load.login(base, kind, user), 60)
            except Exception as exc:  # reported in the table, the run goes on
                notes[name].append(f"sign-in as {user} failed: {type(exc).__name__}: {str(exc)[:300]}")
        if "small" not in out[name]:
            notes[name].append("no session: its authenticated figures are missing")
            del targets[name]
    return out


def _measure(
    setup: Setup,
    target: Target,
    cookies: dict[str, str],
    args: argparse.Namespace,
    values: dict[str, list[float]],
    notes: list[str],
    rep: int,
) -> None:
    base = f"http://127.0.0.1:{_port(target)}"
    proc = target[0] if isinstance(target, tuple) else target
    figures = setup.figures
    pin = "0" if args.pin else ""

    def hit(path: str, user: str = "small", seconds: float = args.seconds) -> load.WrkResult:
        headers = {"Cookie": cookies[user]} if user in cookies else {}
        result = load.wrk(
            base + path, seconds=seconds, connections=args.connections, threads=args.threads,
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
        if len(cookies.get(user, "")) > load.WRK_MAX_HEADERS:
            if rep == 0:
                notes.append(
                    f"{user} session: its {len(cookies[user]):,}-byte Cookie header is more than wrk can "
                    f"send ({load.WRK_MAX_HEADERS:,}); no figure"
                )
        elif user in cookies:
            add(f"{user}_rps", hit("/small", user).rps)
        elif rep == 0:
            notes.append(f"{user} session: no sign-in, no figure")
    if "auth_rps" in figures:
        add("auth_rps", hit("/oauth2/auth").rps)
    if "ws_msgs_s" in figures:
        ws = base.replace("http://", "ws://") + "/ws"
        add("ws_msgs_s", asyncio.run(load.websocket_echo(ws, cookies.get("small", ""), seconds=args.seconds)))
    if "logins_s" in figures:
        try:
            add("logins_s", asyncio.run(load.logins_per_s(base, setup.kind, "small", seconds=args.seconds)))
        except Exception as exc:  # reported, the run goes on
            notes.append(f"logins: {type(exc).__name__}: {str(exc)[:200]}")
    last = rep == args.reps - 1
    if "idle_ws_rss_mib" in figures and last:
        _idle_websockets(base, proc, cookies, args, add, notes)
    if "rss_growth_pct" in figures and last:
        _rss_growth(proc, hit, args, add, notes)
    if "peak_rss_mib_per_worker" in figures:
        add("peak_rss_mib_per_worker", max(rss_kib(p) for p in _workers(proc)) / 1024)


def _workers(proc: Proc) -> list[int]:
    pids = proc.pids()
    return pids[1:] if len(pids) > 1 else pids


def _idle_websockets(
    base: str, proc: Proc, cookies: dict[str, str], args: argparse.Namespace, add: Any, notes: list[str]
) -> None:
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


def _rss_growth(proc: Proc, hit: Any, args: argparse.Namespace, add: Any, notes: list[str]) -> None:
    """The largest worker's VmRSS before and after `args.rss_requests` small GETs, as a growth in %.

    Taken after the repetitions, so caches and pools are warm: a flat figure means no leak per request.
    """

    def now() -> float:
        return max(rss_kib(p, "VmRSS") for p in _workers(proc)) / 1024

    before, done, rounds = now(), 0, 0
    while done < args.rss_requests and rounds < 200:
        done += hit("/small", seconds=args.seconds).requests
        rounds += 1
    after = now()
    add("rss_growth_pct", (after - before) / before * 100 if before else 0.0)
    notes.append(f"RSS growth: largest worker {before:.1f} -> {after:.1f} MiB over {done:,} small GETs")


def _ratios(setups: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for name, data in setups.items():
        out[name] = {}
        for figure, value in data["median"].items():
            ref = setups.get(FIGURES[figure][1], {}).get("median", {}).get(figure)
            out[name][figure] = round(value / ref, 3) if value is not None and ref else None
    return out


def _header(args: argparse.Namespace, binary: Path | None) -> dict[str, Any]:
    return {
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "mode": {
            "smoke": args.smoke,
            "runs": args.runs,
            "reps": args.reps,
            "seconds": args.seconds,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "pinned": args.pin,
            "workers": args.workers or "one per CPU",
            "large_session_groups": args.groups,
            "xl_session_groups": args.xl_groups,
            "idle_websockets": args.idle_websockets,
            "rss_requests": args.rss_requests,
        },
        "machine": describe(binary),
    }


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def table(results: dict[str, Any]) -> str:
    """Medians with the ratio to the figure's reference setup; the targets; the spread over runs."""
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
    runs = results["mode"]["runs"]
    targets = [f"targets (run {results['median_run']} of {runs}, the median one; ratios of medians):"]
    for name, t in results["targets"].items():
        value = "-" if t["value"] is None else f"{t['value']:g}"
        row = f"- [{t['status']}] {name}: {value} (target {t['op']} {t['limit']:g}, issue {t['issue']})"
        s = results["spread"]["targets"][name]
        if runs > 1 and "min" in s:
            row += (
                f"; over {runs} runs min {s['min']:g} / median {s['median']:g} / max {s['max']:g},"
                f" met in {s['met_in_runs']}"
            )
        targets.append(row)
    notes = [f"- {name}: {n}" for name, data in results["setups"].items() for n in data["notes"]]
    return "\n".join(["", *lines, "", *targets, *(["", "notes:", *notes] if notes else [])])
