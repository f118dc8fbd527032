"""TLS on our own listener: the server context, and the certificate reloaded when its files change.

The listening socket keeps one outer SSLContext for its whole life; its SNI callback, which OpenSSL
calls on every ClientHello (with or without a server name), hands the handshake the newest context
built from --tls-cert-file and --tls-key-file. A poller stats the two files every few seconds and
builds a fresh context in a thread when either changed, so a certificate cert-manager rotated is
served to the next connection, while open connections keep theirs: no restart, nothing dropped. A
pair that fails to load (the key written after the certificate) keeps the old one, logged once, and
is tried again at the next poll. Imports nothing from oidcproxy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from dataclasses import dataclass

__all__ = ["ServingTls", "TLS_VERSIONS"]

log = logging.getLogger("oidcproxy.tls")

TLS_VERSIONS = {"TLS1.2": ssl.TLSVersion.TLSv1_2, "TLS1.3": ssl.TLSVersion.TLSv1_3}
_Stamp = tuple[tuple[int, int, int], ...]  # (inode, size, mtime_ns) of each file


@dataclass(frozen=True, slots=True)
class _Files:
    cert: str
    key: str
    min_version: str

    def stamp(self) -> _Stamp:
        return tuple(_stat(path) for path in (self.cert, self.key))

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        context.set_alpn_protocols(["http/1.1"])
        context.load_cert_chain(self.cert, self.key)
        return context


class ServingTls:
    """The listener's context (`context`); `reload()` picks up changed files, `keep_fresh()` polls."""

    def __init__(self, cert_file: str, key_file: str, min_version: str = "TLS1.2", poll_s: float = 2.0):
        self._files = _Files(cert_file, key_file, min_version)
        self._stamp = self._files.stamp()
        self._current = self._files.context()  # start-up: a bad pair fails here, before listening
        self._failed: object = None  # what failed last (a stamp, or a stat error): warned once
        self.poll_s = poll_s
        self.context = self._files.context()
        self.context.sni_callback = self._choose
        self.reloads = 0

    def _choose(self, conn: ssl.SSLObject, server_name: str | None, outer: ssl.SSLContext) -> None:
        current = self._current
        if current is not outer:
            conn.context = current

    def reload(self) -> bool:
        """Build a new context if the files changed since the last load; True when one was swapped in.

        Blocking (stat, file reads, key parsing): `keep_fresh` runs it in a thread.
        """
        try:
            stamp = self._files.stamp()
        except OSError as exc:
            return self._failure(("stat", str(exc)), f"cannot stat the certificate files: {exc}")
        if stamp == self._stamp or stamp == self._failed:
            return False
        try:
            fresh = self._files.context()
        except (OSError, ssl.SSLError) as exc:
            return self._failure(stamp, f"{type(exc).__name__}: {exc}")
        self._current, self._stamp, self._failed = fresh, stamp, None
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self._files.cert)
        return True

    def _failure(self, what: object, why: str) -> bool:
        if what != self._failed:
            log.warning(
                "TLS certificate %s / key %s not reloaded (%s); still serving the previous one, "
                "trying again in %gs",
                self._files.cert,
                self._files.key,
                why,
                self.poll_s,
            )
        self._failed = what
        return False

    async def keep_fresh(self) -> None:
        """Poll the files until cancelled."""
        while True:
            await asyncio.sleep(self.poll_s)
            await asyncio.to_thread(self.reload)


def _stat(path: str) -> tuple[int, int, int]:
    # Kubernetes swaps a Secret's files through a symlink: stat follows it, so the swap shows.
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)
