"""The session codec: a session as sealed text, versioned, compact, bound to the cookie name.

The session is JSON (positional, short), deflated when that helps, then sealed with the key ring and
the cookie name as associated data, so a cookie cannot be replayed under another name. Any store
keeps what this makes. Imports only model and keys.

Versions: v0 (`j`/`z`) holds twelve fields; v1 (`k`/`y`) adds the provider's `sid` and the sign-in
time. New cookies are v1; v0 cookies still open (with no sid, signed in at their `created_at`).
A session of any provider but "default" (oidc.providers) is wrapped: `p` <provider id> NUL <v1 body>.
So the one-provider case stays v1 byte for byte, and every older cookie opens as provider "default".
"""

from __future__ import annotations

import json
import zlib

from oidcproxy.model import DEFAULT_PROVIDER, Identity, Session, Tokens
from oidcproxy.sessions.keys import KeyRing

__all__ = ["SessionCodec"]

_V0_PLAIN = b"j"
_V0_DEFLATED = b"z"
_V1_PLAIN = b"k"
_V1_DEFLATED = b"y"
_DEFLATED = (_V0_DEFLATED, _V1_DEFLATED)
_PROVIDER = b"p"


class SessionCodec:
    """Session <-> sealed text. `decode` answers None for anything it cannot trust.

    `needs_reseal` says whether a sealed text was sealed by another than the first key (rotation).
    """

    __slots__ = ("_aad", "_keys")

    def __init__(self, keys: KeyRing, cookie_name: str) -> None:
        self._keys = keys
        self._aad = b"oidcproxy-session:" + cookie_name.encode()

    def encode(self, session: Session) -> str:
        ident, tok = session.identity, session.tokens
        fields = [
            ident.subject, ident.email, ident.email_verified, ident.user, ident.preferred_username,
            list(ident.groups), tok.id_token, tok.access_token, tok.refresh_token, tok.expires_at,
            session.created_at, session.expires_at, session.sid, session.signed_in_at,
        ]  # fmt: skip
        raw = json.dumps(fields, separators=(",", ":")).encode()
        packed = zlib.compress(raw, 6)
        body = _V1_DEFLATED + packed if len(packed) < len(raw) else _V1_PLAIN + raw
        if session.provider != DEFAULT_PROVIDER:
            body = _PROVIDER + session.provider.encode() + b"\0" + body
        return self._keys.seal(body, self._aad)

    def needs_reseal(self, sealed: str) -> bool:
        return not self._keys.sealed_by_first(sealed)

    def decode(self, sealed: str) -> Session | None:
        body = self._keys.open(sealed, self._aad)
        if body is None:
            return None
        provider = DEFAULT_PROVIDER
        if body[:1] == _PROVIDER:
            name, _, body = body[1:].partition(b"\0")
            provider = name.decode("ascii", "replace")
        version = body[:1]
        if version not in (_V0_PLAIN, _V0_DEFLATED, _V1_PLAIN, _V1_DEFLATED):
            return None
        try:
            raw = zlib.decompress(body[1:]) if version in _DEFLATED else body[1:]
            fields = json.loads(raw)
            if version in (_V0_PLAIN, _V0_DEFLATED):  # twelve fields, or thirteen with `sid`
                fields = [*fields[:12], fields[12] if len(fields) > 12 else "", 0.0]
            (sub, email, verified, user, pref, groups, idt, at, rt, texp, created, exp, sid, signed_in) = (
                fields
            )
            identity = Identity(sub, email, bool(verified), user, pref, tuple(groups))
            tokens = Tokens(idt, at, rt, float(texp))
            return Session(
                identity, tokens, float(created), float(exp), str(sid), float(signed_in), provider=provider
            )
        except (ValueError, TypeError, zlib.error):
            return None
