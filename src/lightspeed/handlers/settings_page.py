"""/settings: a plain HTML page over the JSON API, protected like the admin API.

The page and its two assets hold no data; everything shown comes from the
admin API with the same credentials. A browser cannot add a Bearer header to
a page load, so a 401 here asks for Basic auth (any user name, the API key as
the password), which the browser then also sends with the page's API calls.
"""

from __future__ import annotations

import asyncio
import functools
from importlib import resources

from aiohttp import web

from lightspeed.auth import require_admin
from lightspeed.errors import Unauthorized
from lightspeed.keys import AUTH

ASSETS = {
    "": ("settings.html", "text/html"),
    "settings.js": ("settings.js", "text/javascript"),
    "settings.css": ("settings.css", "text/css"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_SIGN_IN = (
    "<!doctype html><title>Sign in</title><h1>Sign in required</h1>"
    "<p>Open this page with an admin API key: any user name, the key as the password.</p>"
)


@functools.cache
def _asset(name: str) -> bytes:
    return resources.files("lightspeed.web").joinpath(name).read_bytes()


async def settings_page(request: web.Request) -> web.Response:
    asset = ASSETS.get(request.match_info.get("asset", ""))
    if asset is None:
        raise web.HTTPNotFound
    try:
        require_admin(request.app[AUTH](request))
    except Unauthorized:
        headers = {**SECURITY_HEADERS, "WWW-Authenticate": 'Basic realm="lightspeed", charset="UTF-8"'}
        return web.Response(status=401, text=_SIGN_IN, content_type="text/html", headers=headers)
    file_name, content_type = asset
    return web.Response(
        body=await asyncio.to_thread(_asset, file_name),
        content_type=content_type,
        charset="utf-8",
        headers=SECURITY_HEADERS,
    )
