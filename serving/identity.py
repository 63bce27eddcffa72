"""Who is calling: API keys, Open WebUI's signed user token, or nobody (the public group).

A caller becomes a :class:`Principal` with ACL groups (which filter retrieval inside the store
query) and scopes (which routes it may use). Sources of identity, strongest first:

1. ``X-OpenWebUI-User-Jwt``: Open WebUI's HS256 token (claims ``sub``, ``email``, ``name``,
   ``role``, ``iss="open-webui"``, ``exp``), verified with ``auth.openwebui_jwt_secret``. Groups
   come from the ``users`` rules of the access file (by user id or e-mail, e-mail domain, role).
2. ``Authorization: Bearer KEY``: a key listed (as its SHA-256) in the access file; with an access
   file, any other bearer token is 401, never anonymous.
3. Plain ``X-OpenWebUI-User-Id/-Email/-Role`` headers, only with ``auth.trust_openwebui_headers``
   (anyone who reaches the service can forge them).
4. Nobody: the ``public`` group, unless ``auth.required``.

The access file (YAML or JSON, re-read when it changes; one granting nothing is refused)::

    keys:
      - name: ci-bot
        sha256: 9f86d0...        # SHA-256 hex of the key: printf %s "$KEY" | sha256sum
        groups: [eng]            # 'public' is always added
        scopes: [chat, search]   # default: chat, search, embed; 'admin' allows everything
        rate_per_minute: 600     # optional; default limits.rate_per_minute
    users:
      groups: [public]           # every verified user
      scopes: [chat, search, embed]
      by_user: {"alice@lab.org": [hr]}   # user id or e-mail (case-insensitive)
      by_domain: {"lab.org": [staff]}
      by_role: {admin: [hr]}
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml
from fastapi import Request

from rag.config import AuthSettings
from rag.errors import ConfigError, Forbidden, RateLimited, Unauthenticated
from rag.types import PUBLIC_GROUP, Filter
from serving.wire import unencodable

log = logging.getLogger(__name__)

JWT_HEADER = "X-OpenWebUI-User-Jwt"
JWT_ISSUER = "open-webui"
JWT_LEEWAY_S = 30
# Open WebUI's tokens are a few hundred bytes; anything far larger is refused before it is decoded.
MAX_JWT_BYTES = 8192
SCOPES = frozenset({"chat", "search", "embed", "admin"})
DEFAULT_SCOPES = frozenset({"chat", "search", "embed"})
RELOAD_EVERY_S = 2.0


@dataclass(frozen=True)
class Principal:
    """An authenticated (or anonymous) caller."""

    id: str
    kind: str  # "key", "user", "anonymous"
    groups: tuple[str, ...] = (PUBLIC_GROUP,)
    scopes: frozenset[str] = DEFAULT_SCOPES
    rate_per_minute: int | None = None
    name: str = ""  # what the access log shows: a user's e-mail (else id), a key's name

    @property
    def label(self) -> str:
        """The caller as an operator knows it: e-mail, key name, or ``anonymous``."""
        return self.name or self.id

    def allows(self, scope: str | None) -> bool:
        """Whether this caller holds ``scope`` (``admin`` holds every scope)."""
        return scope is None or scope in self.scopes or "admin" in self.scopes


ANONYMOUS = Principal(id="anonymous", kind="anonymous", name="anonymous")
# Plain identity headers Open WebUI forwards when it has no JWT secret (X-OpenWebUI-Chat-Id is sent either way).
PLAIN_USER_HEADERS = ("x-openwebui-user-id", "x-openwebui-user-email")


def hash_key(key: str) -> str:
    """The SHA-256 hex digest under which a key is stored (keys are random tokens, not passwords)."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class UserRules:
    """How a verified user's identity maps onto groups."""

    groups: tuple[str, ...] = (PUBLIC_GROUP,)
    scopes: frozenset[str] = DEFAULT_SCOPES
    by_user: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    by_domain: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    by_role: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def principal(self, user_id: str, email: str, role: str) -> Principal:
        """The principal of a user, with every group a rule gives it."""
        groups = set(self.groups)
        for ident in (user_id.lower(), email.lower()):
            if ident:
                groups.update(self.by_user.get(ident, ()))
        if "@" in email:
            groups.update(self.by_domain.get(email.rsplit("@", 1)[1].lower(), ()))
        groups.update(self.by_role.get(role, ()))
        return Principal(
            id=f"user:{user_id or email}",
            kind="user",
            groups=tuple(sorted(groups)),
            scopes=self.scopes,
            name=email or user_id,
        )


@dataclass(frozen=True)
class Access:
    """The parsed access file."""

    keys: Mapping[str, Principal] = field(default_factory=dict)  # by sha256 hex
    users: UserRules = field(default_factory=UserRules)


def _scopes(value: Any, where: str) -> frozenset[str]:
    scopes = frozenset(value if value is not None else DEFAULT_SCOPES)
    unknown = scopes - SCOPES
    if unknown:
        raise ConfigError(f"{where}: unknown scope(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(SCOPES))}")
    return scopes


def _names(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise ConfigError(f"{where} must be a list of names")
    return tuple(str(v) for v in value)


def _group_map(value: Any, where: str, lower: bool = False) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping of names to group lists")
    return {(str(k).lower() if lower else str(k)): _names(v, f"{where}.{k}") for k, v in value.items()}


def _key(entry: Any, where: str) -> tuple[str, Principal]:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a mapping with 'name' and 'sha256'")
    digest = str(entry.get("sha256", "")).lower().removeprefix("sha256:")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ConfigError(f"{where}: 'sha256' must be the 64-hex-digit SHA-256 of the key")
    if not entry.get("name"):
        raise ConfigError(f"{where}: 'name' is required")
    rate = entry.get("rate_per_minute")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate < 0):
        raise ConfigError(f"{where}: 'rate_per_minute' must be a whole number >= 0")
    groups = {PUBLIC_GROUP, *_names(entry.get("groups"), f"{where}.groups")}
    principal = Principal(
        id=f"key:{entry['name']}",
        kind="key",
        groups=tuple(sorted(groups)),
        scopes=_scopes(entry.get("scopes"), where),
        rate_per_minute=rate,
        name=str(entry["name"]),
    )
    return digest, principal


def parse_access(data: Any, origin: str = "access file") -> Access:
    """Validate an access file's content; one that grants nothing (no keys, no users rules) is refused.

    An emptied or truncated file would otherwise drop every key at once, silently.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: must be a mapping with 'keys' and/or 'users' sections")
    unknown = set(data) - {"keys", "users"}
    if unknown:
        raise ConfigError(f"{origin}: unknown section(s) {', '.join(sorted(unknown))}; known: keys, users")
    entries = data.get("keys") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{origin}: 'keys' must be a list of entries")
    keys: dict[str, Principal] = {}
    for i, entry in enumerate(entries):
        digest, principal = _key(entry, f"{origin}: keys[{i}]")
        if digest in keys:
            raise ConfigError(f"{origin}: keys[{i}] is the same key as {keys[digest].id}")
        keys[digest] = principal
    u = data.get("users") or {}
    if not isinstance(u, dict):
        raise ConfigError(f"{origin}: 'users' must be a mapping of rules")
    if not keys and not u:
        raise ConfigError(
            f"{origin}: lists no keys and no users rules, so it would let nobody in; "
            "refusing it (unset auth.access_file to run without one)"
        )
    users = UserRules(
        groups=_names(u.get("groups", [PUBLIC_GROUP]), f"{origin}: users.groups"),
        scopes=_scopes(u.get("scopes"), f"{origin}: users"),
        # E-mail addresses are matched case-insensitively (Open WebUI keeps them as typed at sign-up).
        by_user=_group_map(u.get("by_user"), f"{origin}: users.by_user", lower=True),
        by_domain=_group_map(u.get("by_domain"), f"{origin}: users.by_domain", lower=True),
        by_role=_group_map(u.get("by_role"), f"{origin}: users.by_role"),
    )
    return Access(keys=keys, users=users)


class AccessFile:
    """The access file, re-read when its modification time changes (key rotation without restart)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._refused_mtime: float | None = None
        self._checked = 0.0
        self._access = Access()
        if path is not None:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            stat = self.path.stat()
            text = self.path.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read the access file {self.path}: {e}") from e
        try:
            if not text.strip():
                data = None  # emptied (or caught mid-write): refused below as granting nothing
            elif self.path.suffix == ".json":
                data = json.loads(text)
            else:
                data = yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as e:
            raise ConfigError(f"the access file {self.path} is not valid YAML/JSON: {e}") from e
        self._access = parse_access({} if data is None else data, str(self.path))
        self._mtime = stat.st_mtime

    @property
    def configured(self) -> bool:
        """Whether an access file is in use (then every bearer token must be one of its keys)."""
        return self.path is not None

    def get(self) -> Access:
        """The current rules (a broken edit keeps the previous rules and is logged once)."""
        if self.path is not None and time.monotonic() - self._checked > RELOAD_EVERY_S:
            with self._lock:
                self._checked = time.monotonic()
                try:
                    mtime = self.path.stat().st_mtime
                    if mtime not in (self._mtime, self._refused_mtime):
                        self._refused_mtime = mtime
                        self._load()
                        log.info("access file %s reloaded", self.path)
                except (OSError, ConfigError) as e:
                    log.error("access file %s not reloaded, keeping the previous rules: %s", self.path, e)
        return self._access


class RateLimiter:
    """Token bucket per principal: ``rate`` requests a minute, bursts of up to ``rate``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # id -> (tokens, last refill)

    def take(self, who: str, rate_per_minute: int) -> None:
        """Spend one token or raise :class:`RateLimited` with the wait until the next one."""
        if rate_per_minute <= 0:
            return
        now = self.clock()
        per_s = rate_per_minute / 60.0
        tokens, last = self._buckets.get(who, (float(rate_per_minute), now))
        tokens = min(float(rate_per_minute), tokens + (now - last) * per_s)
        if tokens < 1.0:
            self._buckets[who] = (tokens, now)
            raise RateLimited(
                f"rate limit of {rate_per_minute} requests per minute exceeded for {who}",
                retry_after_s=(1.0 - tokens) / per_s,
            )
        self._buckets[who] = (tokens - 1.0, now)
        if len(self._buckets) > 100_000:  # forget idle callers rather than grow without bound
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 120}


class Authenticator:
    """Turns request headers into a :class:`Principal` according to the ``auth`` settings."""

    def __init__(self, settings: AuthSettings, default_rate_per_minute: int = 0) -> None:
        self.settings = settings
        self.access = AccessFile(settings.access_file)
        self.secret = settings.openwebui_jwt_secret.get_secret_value() if settings.openwebui_jwt_secret else None
        self.default_rate = default_rate_per_minute
        self.limiter = RateLimiter()
        if self.secret is not None:
            import jwt  # noqa: F401  (fail at start-up, not on the first request)

    def identify(self, headers: Mapping[str, str]) -> Principal:
        """The caller, or :class:`Unauthenticated` for bad or (when required) missing credentials."""
        access = self.access.get()
        key_principal: Principal | None = None
        auth = headers.get("authorization", "")
        # With an access file, a token that is none of its keys is refused, never taken as anonymous.
        if auth and self.access.configured:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("the Authorization header must be 'Bearer <API key>'")
            key_principal = access.keys.get(hash_key(token.strip()))
            if key_principal is None:
                raise Unauthenticated("the API key is not valid")
        user_token = headers.get(JWT_HEADER.lower())
        if user_token:
            if self.secret is None:
                # Open WebUI signs its users, but nothing here can check them: every user would be
                # anonymous without anyone noticing. Refused, naming the setting to fix.
                raise Unauthenticated(NO_SECRET, code="user_token_unverifiable")
            return self._user_from_jwt(user_token, self.secret, access.users)
        if key_principal is not None:
            return key_principal
        if any(headers.get(h) for h in PLAIN_USER_HEADERS):
            if not self.settings.trust_openwebui_headers:
                raise Unauthenticated(UNSIGNED_USER, code="user_headers_untrusted")
            user_id = unquote(headers.get("x-openwebui-user-id", ""))
            email = unquote(headers.get("x-openwebui-user-email", ""))
            return access.users.principal(user_id, email, headers.get("x-openwebui-user-role", ""))
        if self.settings.required:
            raise Unauthenticated("credentials are required: send 'Authorization: Bearer <API key>'")
        return ANONYMOUS

    def _user_from_jwt(self, token: str, secret: str, users: UserRules) -> Principal:
        import jwt

        if len(token) > MAX_JWT_BYTES:
            raise Unauthenticated(f"the Open WebUI user token is longer than {MAX_JWT_BYTES} bytes")
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                issuer=JWT_ISSUER,
                leeway=JWT_LEEWAY_S,
                options={"require": ["exp", "iat", "iss"]},
            )
        except jwt.PyJWTError as e:
            message, code = token_problem(e)
            raise Unauthenticated(message, code=code) from e
        if unencodable(claims) is not None:
            raise Unauthenticated("the Open WebUI user token holds text that is not valid Unicode")
        user_id, email = str(claims.get("sub") or claims.get("id") or ""), str(claims.get("email") or "")
        if not user_id and not email:
            raise Unauthenticated("the Open WebUI user token names no user (no 'sub' or 'email')")
        return users.principal(user_id, email, str(claims.get("role") or ""))

    def limit(self, principal: Principal, client: str) -> None:
        """Apply the caller's rate limit (anonymous callers are counted per client address)."""
        rate = principal.rate_per_minute if principal.rate_per_minute is not None else self.default_rate
        who = principal.id if principal.kind != "anonymous" else f"anonymous@{client or '-'}"
        self.limiter.take(who, rate)


NO_SECRET = (
    "Open WebUI sends a signed user token (X-OpenWebUI-User-Jwt), but this service has no secret to verify it: "
    "the operator must set RAG_AUTH__OPENWEBUI_JWT_SECRET to the value of Open WebUI's "
    "FORWARD_USER_INFO_HEADER_JWT_SECRET"
)
UNSIGNED_USER = (
    "Open WebUI forwards its user as plain X-OpenWebUI-User-* headers, which anyone could forge, and this "
    "service does not trust them: the operator must set FORWARD_USER_INFO_HEADER_JWT_SECRET in Open WebUI to "
    "the value of the service's RAG_AUTH__OPENWEBUI_JWT_SECRET (set one secret on both sides), or, only when "
    "nothing but a trusted proxy reaches the service, RAG_AUTH__TRUST_OPENWEBUI_HEADERS=true"
)
_SAME_SECRET = (
    "the service's RAG_AUTH__OPENWEBUI_JWT_SECRET and Open WebUI's FORWARD_USER_INFO_HEADER_JWT_SECRET must be "
    "the same value"
)


def token_problem(e: Exception) -> tuple[str, str]:
    """What is wrong with an Open WebUI user token, and what the operator must fix (message, error code)."""
    import jwt

    prefix = "the Open WebUI user token"
    if isinstance(e, jwt.InvalidSignatureError):
        return f"{prefix} has a bad signature: {_SAME_SECRET}", "user_token_bad_signature"
    if isinstance(e, jwt.ExpiredSignatureError):
        return (
            f"{prefix} has expired: the clocks of Open WebUI and the service differ by more than {JWT_LEEWAY_S} s, "
            "or Open WebUI's FORWARD_USER_INFO_HEADER_JWT_EXPIRES_SECONDS is too short",
            "user_token_expired",
        )
    if isinstance(e, jwt.InvalidIssuerError):
        return f"{prefix} has the wrong issuer (expected '{JWT_ISSUER}'): it was not made by Open WebUI", (
            "user_token_wrong_issuer"
        )
    if isinstance(e, jwt.ImmatureSignatureError):
        return f"{prefix} is issued in the future: the clocks of Open WebUI and the service differ", (
            "user_token_not_yet_valid"
        )
    if isinstance(e, jwt.MissingRequiredClaimError):
        return f"{prefix} lacks the '{e.claim}' claim", "user_token_invalid"
    if isinstance(e, jwt.InvalidAlgorithmError):
        return f"{prefix} is not signed with HS256: {_SAME_SECRET}", "user_token_invalid"
    return f"{prefix} is not valid ({e})", "user_token_invalid"


def require(scope: str | None) -> Callable[[Request], Awaitable[Principal]]:
    """A route dependency: the authenticated, rate-limited caller holding ``scope``.

    ``None`` (the model list) admits a caller whose Open WebUI identity failed, as anonymous.

    ``async`` although it never awaits: FastAPI would run a plain function in a worker thread.
    """

    async def dependency(request: Request) -> Principal:
        authn: Authenticator = request.app.state.authenticator
        client = request.client.host if request.client else ""
        try:
            principal = authn.identify(request.headers)
        except Unauthenticated as e:
            # The access line carries the reason; the body tells Open WebUI's user what to ask for.
            request.state.auth_error = e.message
            # Open WebUI lists models with the user's token too, and a failed listing only shows its
            # users "Model '' was not found". The model list (names, no documents) is still given, so
            # the chat request that follows gets the 401 whose message Open WebUI shows.
            if scope is not None or not (e.code or "").startswith("user_"):
                raise
            principal = ANONYMOUS
        request.state.principal = principal.label
        request.state.principal_kind = principal.kind
        if not principal.allows(scope):
            raise Forbidden(f"this caller lacks the '{scope}' scope", code="insufficient_scope")
        authn.limit(principal, client)
        return principal

    dependency.__name__ = f"require_{scope or 'caller'}"
    return dependency


def acl_filter(groups: tuple[str, ...]) -> Filter:
    """The retrieval filter that keeps a caller inside its groups."""
    return Filter(groups=groups)
