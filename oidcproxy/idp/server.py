"""authlib's authorization server, wired to the dev provider's in-memory store, keys and clock.

authlib has no aiohttp integration, so this is the thin adapter: handlers read the whole request
first (`HttpInput`, since authlib is synchronous) and get back a framework-free `Reply`. Grants:
authorization code + PKCE S256 (required for every client) + OpenID Connect, and refresh with
rotation. Imports `idp.config`, `idp.keys`, `idp.store` and `oidcproxy.model` from the project.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import AuthorizationServer, InvalidRequestError, OAuth2Payload
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode, OpenIDToken

from oidcproxy.idp.config import SCOPES, DevUser, IdPClient, IdPConfig
from oidcproxy.idp.keys import KeyRing
from oidcproxy.idp.store import AccessRecord, CodeRecord, RefreshRecord, Store
from oidcproxy.model import Clock

__all__ = ["TOKEN_AUTH_METHODS", "DevAuthorizationServer", "HttpInput", "Reply"]

TOKEN_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class _NoTokenLogs(logging.Filter):
    """authlib's grants log every issued token dict at DEBUG ("Issue token %r to %r"); tokens
    must never reach a log line (DESIGN: secrets), so those records are dropped at the source."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Issue token")


for _name in (
    "authlib.oauth2.rfc6749.grants.authorization_code",
    "authlib.oauth2.rfc6749.grants.refresh_token",
):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _NoTokenLogs) for f in _logger.filters):
        _logger.addFilter(_NoTokenLogs())


@dataclass(frozen=True, slots=True)
class HttpInput:
    """One HTTP request, read completely before authlib sees it.

    `params` are the OAuth parameters (query for GET /authorize, the form otherwise); `form` is
    the POST body, where authlib looks for code, code_verifier, refresh_token and client_secret.
    """

    method: str
    uri: str
    headers: Mapping[str, str] = field(repr=False)
    params: Mapping[str, list[str]] = field(repr=False)
    form: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class Reply:
    """authlib's (status, body, headers) triple; the body is a JSON object or text."""

    status: int
    body: dict[str, Any] | str
    headers: list[tuple[str, str]]


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, params: Mapping[str, list[str]]) -> None:
        self._datalist = defaultdict(list, {k: list(v) for k, v in params.items()})
        self._data = {k: v[0] for k, v in params.items() if v}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, given: HttpInput) -> None:
        super().__init__(method=given.method, uri=given.uri, headers=given.headers)
        self.payload = _Payload(given.params)
        self._form = dict(given.form)
        self._args = {k: v[0] for k, v in given.params.items() if v}

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Client:
    """authlib's ClientMixin over one IdPClient: confidential, code flow and refresh only."""

    def __init__(self, client: IdPClient) -> None:
        self._client = client
        self.client_id = client.client_id

    def __repr__(self) -> str:
        return f"_Client({self.client_id!r})"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # OIDC Core 3.1.2.1: redirect_uri is REQUIRED, never defaulted

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(s for s in scope_to_list(scope or "openid") if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return self._client.accepts_redirect(redirect_uri)

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self._client.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in TOKEN_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


class _RequireS256(CodeChallenge):  # type: ignore[misc]
    """RFC 7636 for every client, S256 only (RFC 9700 2.1.1: plain must not be used)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class _IdTokens:
    """What authlib's OpenIDToken asks of us: key, algorithm, header and the base claims, all
    from our key ring and injected clock (authlib's defaults read time.time())."""

    _server: DevAuthorizationServer

    def resolve_client_private_key(self, client: Any) -> Any:
        return self._server.keys.current.key

    def get_client_algorithm(self, client: Any) -> str:
        return self._server.keys.current.alg

    def get_encode_header(self, client: Any) -> dict[str, str]:
        current = self._server.keys.current
        return {"typ": "JWT", "alg": current.alg, "kid": current.kid}

    def get_compatible_claims(self, request: Any) -> dict[str, Any]:
        server = self._server
        now = int(server.clock())
        origin: CodeRecord | RefreshRecord = request.authorization_code or request.refresh_token
        claims = {
            "iss": server.config.issuer,
            "aud": request.client.client_id,
            "iat": now,
            "exp": now + server.id_token_ttl,
            "auth_time": origin.auth_time,
        }
        if origin.sid:
            claims["sid"] = origin.sid  # OIDC Back-Channel Logout 1.0, section 2.1
        return claims

    def generate_user_info(self, user: DevUser, scope: str) -> dict[str, object]:
        return user.claims()


class _OpenIDCode(_IdTokens, OpenIDCode):  # type: ignore[misc]
    def __init__(self, server: DevAuthorizationServer) -> None:
        super().__init__(require_nonce=False)  # OIDC Core 3.1.2.1: nonce is OPTIONAL for code
        self._server = server

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        server = self._server
        return server.store.nonce_in_use(request.payload.client_id, nonce, server.clock())


class _OpenIDRefresh(_IdTokens, OpenIDToken):  # type: ignore[misc]
    """OIDC Core 12.2: a refresh may return a new ID token (same sub and auth_time, no nonce)."""

    def __init__(self, server: DevAuthorizationServer) -> None:
        self._server = server


class _CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    server: DevAuthorizationServer

    def save_authorization_code(self, code: str, request: Any) -> None:
        now = self.server.clock()
        data = request.payload.data
        self.server.store.codes[code] = CodeRecord(
            code=code,
            client_id=request.client.client_id,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            user=request.user,
            auth_time=int(now),
            expires_at=now + self.server.config.code_ttl,
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            nonce=data.get("nonce"),
            sid=getattr(request, "sid", ""),
        )

    def query_authorization_code(self, code: str, client: _Client) -> CodeRecord | None:
        record = self.server.store.take_code(code, self.server.clock())
        return record if record is not None and record.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        self.server.store.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: CodeRecord) -> DevUser:
        return authorization_code.user


class _RefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    """RFC 6749 6, rotating refresh tokens unless IdPConfig.rotate_refresh_tokens is off."""

    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    server: DevAuthorizationServer

    @property
    def INCLUDE_NEW_REFRESH_TOKEN(self) -> bool:  # authlib reads this name
        return self.server.config.rotate_refresh_tokens

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshRecord | None:
        return self.server.store.refresh.get(refresh_token)

    def authenticate_user(self, refresh_token: RefreshRecord) -> DevUser:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: RefreshRecord) -> None:
        if self.server.config.rotate_refresh_tokens:  # a reused one is then unknown: invalid_grant
            self.server.store.refresh.pop(refresh_token.token, None)


class DevAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """authlib's AuthorizationServer for the dev provider; the lifetimes are test switches."""

    def __init__(self, config: IdPConfig, keys: KeyRing, store: Store) -> None:
        super().__init__(scopes_supported=None)  # unknown scopes are dropped, not refused
        self.config = config
        self.keys = keys
        self.store = store
        self.clock: Clock = config.clock
        self.access_token_ttl = config.access_token_ttl
        self.id_token_ttl = config.id_token_ttl
        generator = BearerTokenGenerator(
            access_token_generator=lambda **_: secrets.token_urlsafe(32),
            refresh_token_generator=lambda **_: secrets.token_urlsafe(36),
            expires_generator=lambda client, grant_type: self.access_token_ttl,
        )
        self.register_token_generator("default", generator)
        self.register_grant(_CodeGrant, [_RequireS256(required=True), _OpenIDCode(self)])
        self.register_grant(_RefreshGrant, [_OpenIDRefresh(self)])

    def query_client(self, client_id: str) -> _Client | None:
        client = self.config.client(client_id)
        return _Client(client) if client is not None else None

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        now = self.clock()
        origin: CodeRecord | RefreshRecord = request.authorization_code or request.refresh_token
        client_id, scope = request.client.client_id, token.get("scope", "")
        self.store.access[token["access_token"]] = AccessRecord(
            client_id=client_id, scope=scope, user=request.user, expires_at=now + token["expires_in"]
        )
        if "refresh_token" in token:
            self.store.refresh[token["refresh_token"]] = RefreshRecord(
                token=token["refresh_token"],
                client_id=client_id,
                scope=scope,
                user=request.user,
                auth_time=origin.auth_time,
                sid=origin.sid,
            )
        self.store.prune(now)

    def create_oauth2_request(self, request: HttpInput | _Request) -> _Request:
        return request if isinstance(request, _Request) else _Request(request)

    def create_json_request(self, request: HttpInput) -> Any:
        raise NotImplementedError("the dev provider has no JSON endpoints served by authlib")

    def handle_response(self, status: int, body: Any, headers: Any) -> Reply:
        return Reply(status=status, body=body, headers=[(str(k), str(v)) for k, v in headers])

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """authlib's hook for framework signals; nothing here listens."""
