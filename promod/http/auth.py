"""Bearer tokens with scopes for the HTTP API, checked against ``[[http.tokens]]``.

Only the hex SHA-256 of a token is in the config; a presented token is hashed and
compared with every configured digest in constant time. The config is read on each
request, so tokens added or removed by a reload (SIGHUP) apply at once::

    token = authorize(request, app.config.http.tokens, "events:write")   # -> HttpToken
    token_digest, lines = new_token("backend", ["read"])                  # promod token create
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence

from starlette.requests import Request

from promod.config import TOKEN_SCOPES, HttpToken
from promod.http.errors import ApiError

__all__ = ["TOKEN_PREFIX", "authorize", "hash_token", "new_token", "token_config_lines"]

TOKEN_PREFIX = "pmd_"  # noqa: S105 (a marker, not a secret)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="promod"'}


def hash_token(token: str) -> str:
    """The hex SHA-256 stored in the config for ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _find(tokens: Iterable[HttpToken], digest: str) -> HttpToken | None:
    found: HttpToken | None = None
    for candidate in tokens:
        # Compare against every entry: the time taken does not depend on which matched.
        if hmac.compare_digest(candidate.sha256, digest) and found is None:
            found = candidate
    return found


def authorize(request: Request, tokens: Sequence[HttpToken], scope: str) -> HttpToken:
    """The token of ``request`` if it carries ``scope``; ApiError 401/403 otherwise."""
    header = request.headers.get("authorization")
    if header is None:
        raise ApiError(401, "unauthorized", "missing bearer token", headers=_CHALLENGE)
    kind, _, value = header.partition(" ")
    value = value.strip()
    if kind.lower() != "bearer" or not value:
        raise ApiError(
            401, "unauthorized", "expected 'Authorization: Bearer TOKEN'", headers=_CHALLENGE
        )
    token = _find(tokens, hash_token(value))
    if token is None:
        raise ApiError(401, "unauthorized", "unknown token", headers=_CHALLENGE)
    if scope not in token.scopes:
        raise ApiError(
            403,
            "forbidden",
            f"token {token.name!r} lacks the {scope!r} scope",
            {"required_scope": scope},
        )
    return token


def new_token(name: str, scopes: Sequence[str]) -> tuple[str, str]:
    """A fresh random token and its config lines; unknown scopes raise ValueError."""
    unknown = [s for s in scopes if s not in TOKEN_SCOPES]
    if unknown:
        raise ValueError(
            f"unknown scope {unknown[0]!r} (scopes are {', '.join(sorted(TOKEN_SCOPES))})"
        )
    if not scopes:
        raise ValueError("a token needs at least one scope")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_config_lines(name, hash_token(token), scopes)


def token_config_lines(name: str, digest: str, scopes: Sequence[str]) -> str:
    """The ``[[http.tokens]]`` entry for a token (TOML)."""
    quoted = ", ".join(f'"{s}"' for s in dict.fromkeys(scopes))
    return f'[[http.tokens]]\nname = "{name}"\nsha256 = "{digest}"\nscopes = [{quoted}]\n'
