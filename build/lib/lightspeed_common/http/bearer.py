"""The key a client presents: `Authorization: Bearer <key>`, or Basic auth's password from a browser."""

from __future__ import annotations

import base64

from aiohttp import web

from lightspeed_common.errors import Unauthorized

NO_CREDENTIALS = "Missing or invalid credentials provided by client"


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
    if not token.strip():
        raise Unauthorized(NO_CREDENTIALS, "No token found in Authorization header")
    return token.strip()


def _basic_password(value: str) -> str:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]
