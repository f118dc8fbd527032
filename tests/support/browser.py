"""Real Chromium for the browser tests: selenium over Debian's chromium + chromium-driver, axe-core
for accessibility, a screenshot of every page, and servers on a loop in a background thread.

Selenium's calls block, so the servers a test needs (the real proxy app, slow or dead upstreams) run
on their own asyncio loop in a thread (`LoopThread`) and the browser never waits on the test's loop.
The proxy runs in-process so the test can hand it a `ShiftedClock` and move time instead of sleeping.

    with LoopThread() as loop, chrome(shots / "case") as b:
        proxy = ProxyServer.start(loop, clock, upstream=["builtin:whoami"], ...)
        b.go(proxy.url("/x?y=1"))
        b.check("sign-in")   # screenshot + axe, fails on any violation
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from oidcproxy.model import system_clock
from oidcproxy.web.app import build_app
from tests.factories import make_settings

__all__ = [
    "AXE_JS",
    "CHROME_FLAGS",
    "CHROMEDRIVER",
    "CHROMIUM",
    "SCREENSHOTS",
    "Browser",
    "LoopThread",
    "ProxyServer",
    "ShiftedClock",
    "chrome",
    "free_port",
    "serve_app",
]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
AXE_JS = ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
_WAIT_S = 15.0
T = TypeVar("T")


class ShiftedClock:
    """Wall-clock time plus an offset the test moves: tokens from a real provider stay valid while
    the proxy believes a session has expired."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return system_clock() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class LoopThread:
    """An asyncio loop running in a daemon thread; `run(coro)` blocks the caller until it is done."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="browser-test-loop", daemon=True)
        self._thread.start()
        self._cleanups: list[Callable[[], Coroutine[Any, Any, None]]] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def on_close(self, cleanup: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._cleanups.append(cleanup)

    def close(self) -> None:
        for cleanup in reversed(self._cleanups):
            self.run(cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_app(loop: LoopThread, app: web.Application, port: int = 0) -> int:
    """Serve `app` on 127.0.0.1 from the loop thread; stopped when the loop closes. Returns the port."""

    async def start() -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    runner = loop.run(start())
    loop.on_close(runner.cleanup)
    return int(runner.addresses[0][1])


@dataclass(slots=True)
class ProxyServer:
    """The real proxy app (build_app) listening on 127.0.0.1, with an injected clock."""

    port: int
    clock: ShiftedClock

    @classmethod
    def start(cls, loop: LoopThread, clock: ShiftedClock, **settings: Any) -> ProxyServer:
        # The embedded provider's issuer is built from --http-address, so the port is chosen first.
        port = free_port()
        values: dict[str, Any] = {"http_address": f"127.0.0.1:{port}", **settings}
        serve_app(loop, build_app(make_settings(**values), clock=clock), port)
        return cls(port, clock)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.origin + path


@dataclass(slots=True)
class Browser:
    """One Chromium with a fresh profile; every page it passes through can be shot and checked."""

    driver: webdriver.Chrome
    shots: Path
    taken: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.driver.current_url)

    @property
    def title(self) -> str:
        return str(self.driver.title)

    def text(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    def go(self, url: str) -> None:
        self.driver.get(url)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def has(self, css: str) -> bool:
        try:
            self.find(css)
        except NoSuchElementException:
            return False
        return True

    def wait_for(self, what: Callable[[], object], message: str = "") -> None:
        WebDriverWait(self.driver, _WAIT_S).until(lambda _: what(), message)

    def navigate_by(self, action: Callable[[], object]) -> None:
        """Do something that loads a new page (click a link, submit a form) and wait until it has."""
        old = self.find("html")
        action()

        def loaded() -> bool:
            try:
                old.tag_name  # noqa: B018 - raises once the old document is gone
                return False
            except Exception:
                return self.driver.execute_script("return document.readyState") == "complete"

        self.wait_for(loaded, f"no new page after the action on {self.url}")

    def shot(self, label: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{len(self.taken) + 1:02d}-{label}.png"
        self.driver.save_screenshot(str(path))
        self.taken.append(path)
        return path

    def axe_violations(
        self, impacts: tuple[str, ...] = ("minor", "moderate", "serious", "critical")
    ) -> list[Any]:
        """Run axe-core in the page (WCAG 2.x A/AA and best practices); return its violations."""
        if not self.driver.execute_script("return typeof window.axe !== 'undefined'"):
            self.driver.execute_script(AXE_JS.read_text())
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
            " nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary)}))))"
            ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));"
        )
        return [v for v in result if v["impact"] in impacts]

    def check(self, label: str) -> None:
        """Screenshot the page, then fail on any accessibility violation axe finds in it."""
        self.shot(label)
        violations = self.axe_violations()
        assert not violations, f"axe on {label} ({self.url}):\n{json.dumps(violations, indent=1)}"


@contextmanager
def chrome(shots: Path, width: int = 1000, height: int = 760) -> Iterator[Browser]:
    """Headless Chromium with the flags the issue names and its own throw-away profile."""
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    # Service and binary both given: selenium-manager has nothing to download.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_script_timeout(_WAIT_S)
    driver.set_page_load_timeout(30)
    try:
        yield Browser(driver, shots)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
