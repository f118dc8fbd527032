"""The one SSLContext for https and wss upstreams, built at start from the upstream TLS options.

The system trust store plus each --upstream-ca-file; a client certificate when the upstream asks for
one (mTLS); or no verification at all with --ssl-upstream-insecure-skip-verify. Reads its files once,
at start-up. Imports nothing from oidcproxy.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["UpstreamTls", "describe_tls_failure"]


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """What the upstream TLS options say; `context()` reads the files and builds the SSLContext."""

    ca_files: tuple[str, ...] = ()
    client_cert_file: str = ""
    client_key_file: str = ""
    insecure_skip_verify: bool = False

    @classmethod
    def of(
        cls, ca_files: Iterable[str], client_cert_file: str, client_key_file: str, insecure: bool
    ) -> UpstreamTls:
        return cls(tuple(ca_files), client_cert_file, client_key_file, insecure)

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        for path in self.ca_files:
            context.load_verify_locations(cafile=path)
        if self.client_cert_file:
            context.load_cert_chain(self.client_cert_file, self.client_key_file)
        if self.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def describe_tls_failure(exc: BaseException) -> str:
    """A log line's worth on why a TLS handshake with an upstream failed, with the fix when we know it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or str(exc)
        return f"the upstream's TLS certificate is not trusted ({why}); trust its CA with --upstream-ca-file"
    return f"TLS handshake failed: {exc}"
