"""The key a client presents: `Authorization: Bearer <key>`, or Basic auth's password from a browser."""

from __future__ import annotations

import base64

import structlog
from aiohttp import web

from lightspeed_common.errors import Unauthorized

log = structlog.get_logger(__name__)
NO_CREDENTIALS = "Missing or invalid credentials provided by client"


class UnreadableCredentials(Unauthorized):
    """The key holds bytes no key can have (not printable ASCII): a wrong key, 401."""


def bearer_token(request: web.Request) -> str:
    """The API key from `Authorization: Bearer <key>`, or from Basic auth's password.

    Basic is what a browser can send for the /settings page: any user name,
    the key as the password.
    """
    header = request.headers.get("Authorization")
    if not header:
        raise Unauthorized(NO_CREDENTIALS, "No Authorization header found")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "basic":
        token = _basic_password(token)
    elif scheme.lower() != "bearer":
        token = ""
    token = token.strip()
    if not token:
        raise Unauthorized(NO_CREDENTIALS, "No token found in Authorization header")
    # aiohttp hands header bytes over as UTF-8 with surrogate escapes; keys are printable ASCII,
    # and comparing a key with a surrogate in it would raise (a 500) instead of refusing it.
    if not (token.isascii() and token.isprintable()):
        log.warning("authorization_unreadable", reason="the key has bytes that are not printable ASCII")
        raise UnreadableCredentials(NO_CREDENTIALS, "The key in the Authorization header is not printable ASCII")
    return token


def _basic_password(value: str) -> str:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]
