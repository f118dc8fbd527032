"""Options of the process: where it listens, what it protects, how it logs and how many workers serve.

Two concerns of the flat Settings (settings.py): ServerOptions and RuntimeOptions, each checking
its own fields in `problems()`. Imports only config.values.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, field_validator

from oidcproxy.config.values import Duration, StrList, option, split_address

__all__ = ["RuntimeOptions", "ServerOptions"]


class ServerOptions(BaseModel):
    """Where we listen and what we protect."""

    http_address: str = option("127.0.0.1:4180", "address to listen on, host:port")
    https_address: str = option(
        "", "address to serve HTTPS on too, host:port (with --tls-cert-file and --tls-key-file)"
    )
    tls_cert_file: str = option(
        "", "PEM certificate chain served on --https-address; reloaded when the file changes"
    )
    tls_key_file: str = option("", "PEM private key of --tls-cert-file; reloaded when the file changes")
    tls_min_version: Literal["TLS1.2", "TLS1.3"] = option("TLS1.2", "oldest TLS version served")
    upstream: StrList = option(
        help="upstream URL, repeatable; its path is the route prefix it serves "
        "(http://app:8080/api/ gets /api/...); builtin:whoami is the demo upstream",
        default_factory=list,
    )
    upstream_timeout: Duration = option("30s", "time to wait for the upstream's response headers")
    upstream_ca_file: StrList = option(
        help="PEM file of CA certificates trusted for https upstreams, repeatable; default: system store",
        default_factory=list,
    )
    upstream_client_cert_file: str = option(
        "", "PEM client certificate shown to https upstreams that ask for one (mTLS)"
    )
    upstream_client_key_file: str = option("", "PEM private key of --upstream-client-cert-file")
    ssl_upstream_insecure_skip_verify: bool = option(
        False, "do not verify https upstreams' certificates (never in production; logged at start)"
    )
    dev: bool = option(
        False,
        "demo mode: embedded provider, builtin:whoami upstream, insecure cookie, random secret",
    )

    @field_validator("http_address")
    @classmethod
    def _address(cls, value: str) -> str:
        split_address(value)
        return value

    @field_validator("https_address")
    @classmethod
    def _https_address(cls, value: str) -> str:
        if value:
            split_address(value)
        return value

    @field_validator("upstream")
    @classmethod
    def _upstreams(cls, value: list[str]) -> list[str]:
        for url in value:
            if url.startswith("builtin:"):
                if url != "builtin:whoami":
                    raise ValueError(f"{url!r}: the only built-in upstream is builtin:whoami")
                continue
            if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", url):
                raise ValueError(f"{url!r} is not an http(s) URL like http://127.0.0.1:8080/")
        return value

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.upstream:
            out.append("--upstream: missing; name the application to protect, e.g. http://127.0.0.1:8080/")
        out += self._serving_tls_problems()
        out += _pair_problems(
            ("--upstream-client-cert-file", self.upstream_client_cert_file),
            ("--upstream-client-key-file", self.upstream_client_key_file),
        )
        out += _file_problems("--upstream-ca-file", self.upstream_ca_file)
        return out

    def _serving_tls_problems(self) -> list[str]:
        cert, key = ("--tls-cert-file", self.tls_cert_file), ("--tls-key-file", self.tls_key_file)
        if not self.https_address:
            return [
                f"{flag}: serves TLS on --https-address only; set it too, e.g. --https-address=0.0.0.0:4443"
                for flag, value in (cert, key)
                if value
            ]
        missing = [f"{flag}: missing; --https-address needs it" for flag, value in (cert, key) if not value]
        if not missing and self.https_address == self.http_address:
            missing.append("--https-address: must differ from --http-address")
        return missing or _pair_problems(cert, key)


class RuntimeOptions(BaseModel):
    """Logging, metrics, the worker processes and how they stop."""

    log_level: Literal["debug", "info", "warning", "error"] = option("info", "log level")
    log_format: Literal["text", "json"] = option(
        "text", "text, or json: one object a line with request_id, user, client... (README: Logs)"
    )
    request_logging: bool = option(True, "log one line per request (batched, written off the event loop)")
    silence_ping_logging: bool = option(False, "leave /ping and /ready out of the request log")
    exclude_logging_path: StrList = option(
        help="path left out of the request log, repeatable (exact match, e.g. /healthz)",
        default_factory=list,
    )
    workers: int = option(
        0,
        "processes serving --http-address together (SO_REUSEPORT); 0: the container's CPU quota "
        "rounded up, else one per CPU, or 1 with --oidc-type embedded",
    )
    metrics_address: str = option(
        "",
        "address of the Prometheus metrics listener, host:port (GET /metrics, no sign-in); "
        "empty: no metrics. Several workers keep their counts in files under $TMPDIR (default /tmp), "
        "which must be writable",
    )

    @field_validator("metrics_address")
    @classmethod
    def _metrics_address(cls, value: str) -> str:
        if value:
            split_address(value)
        return value

    shutdown_delay: Duration = option(
        "5s",
        "after SIGTERM, /ready answers 503 but new connections are still served this long, so the "
        "ingress can notice before the listener closes (0s with --dev)",
    )
    shutdown_grace: Duration = option(
        "15s", "then requests in flight get this long to finish; open WebSockets are closed with 1001"
    )

    def problems(self) -> list[str]:
        out = []
        if self.workers < 0:
            out.append("--workers: must be 0 (one per CPU) or more")
        out += [
            f"--exclude-logging-path: {path!r} is not a path; write it as /healthz"
            for path in self.exclude_logging_path
            if not path.startswith("/")
        ]
        if self.shutdown_delay < 0 or self.shutdown_grace < 0:
            out.append("--shutdown-delay, --shutdown-grace: must be 0s or more, e.g. 5s and 15s")
        return out


def _pair_problems(cert: tuple[str, str], key: tuple[str, str]) -> list[str]:
    """A certificate and its key: both or neither, both readable files."""
    (cert_flag, cert_path), (key_flag, key_path) = cert, key
    if bool(cert_path) != bool(key_path):
        given, other = (cert_flag, key_flag) if cert_path else (key_flag, cert_flag)
        return [f"{other}: missing; {given} needs it"]
    return _file_problems(cert_flag, [cert_path] if cert_path else []) + _file_problems(
        key_flag, [key_path] if key_path else []
    )


def _file_problems(flag: str, paths: list[str]) -> list[str]:
    return [f"{flag}: {path!r} is not a readable file" for path in paths if not Path(path).is_file()]
