"""What is running: oidcproxy's version, Python, aiohttp, and which optional speedups are on.

`oidcproxy version` and `oidcproxy --version` print it. Reads module metadata only; imports nothing
from oidcproxy but the version.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
from dataclasses import dataclass

from oidcproxy import __version__

__all__ = ["Speedup", "VersionInfo", "version_info"]


@dataclass(frozen=True, slots=True)
class Speedup:
    """One optional fast path: whether it is on, its version, and what it does or how to get it."""

    name: str
    on: bool
    version: str
    note: str


@dataclass(frozen=True, slots=True)
class VersionInfo:
    oidcproxy: str
    python: str
    aiohttp: str
    speedups: tuple[Speedup, ...]

    def text(self) -> str:
        lines = [f"oidcproxy {self.oidcproxy}", f"Python {self.python}", f"aiohttp {self.aiohttp}"]
        for s in self.speedups:
            state = f"on ({s.version})" if s.on else "off"
            lines.append(f"{s.name}: {state}, {s.note}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        return {
            "oidcproxy": self.oidcproxy,
            "python": self.python,
            "aiohttp": self.aiohttp,
            "speedups": {s.name: {"on": s.on, "version": s.version, "note": s.note} for s in self.speedups},
        }


def version_info() -> VersionInfo:
    python = f"{platform.python_version()} ({platform.python_implementation()})"
    return VersionInfo(__version__, python, _version("aiohttp"), (_uvloop(), _httptools(), _aiohttp_c()))


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _uvloop() -> Speedup:
    # workers.new_event_loop picks uvloop whenever it imports.
    if _importable("uvloop"):
        return Speedup("uvloop", True, _version("uvloop"), "the event loop")
    return Speedup("uvloop", False, "", "install it with: pip install 'oidcproxy[speed]'")


def _httptools() -> Speedup:
    if _importable("httptools"):
        return Speedup("llhttp (httptools)", True, _version("httptools"), "parses upstream responses")
    return Speedup("llhttp (httptools)", False, "", "reinstall oidcproxy: httptools is a dependency")


def _aiohttp_c() -> Speedup:
    from aiohttp import http_parser

    compiled = http_parser.HttpRequestParser is not http_parser.HttpRequestParserPy  # public names
    note = "parses incoming requests" if compiled else "pure Python (AIOHTTP_NO_EXTENSIONS set, or no wheel)"
    return Speedup("llhttp (aiohttp C parser)", compiled, _version("aiohttp") if compiled else "", note)
