"""A small admin web page (HTML, JS, CSS from a package) behind a key, for /settings and the ingest's /admin.

The page and its assets hold no data: everything shown comes from a JSON API
with the same credentials. A browser cannot add a Bearer header to a page
load, so a missing credential answers 401 with a Basic challenge (any user
name, the key as the password), which the browser then also sends with the
page's API calls. A wrong or insufficient key is the API's 403.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web

from lightspeed_common.errors import Unauthorized

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
SHARED_ASSETS = "lightspeed_common.http.web"
CONTENT_TYPES = {"html": "text/html", "js": "text/javascript", "css": "text/css"}


@functools.cache
def _asset(package: str, name: str) -> bytes:
    return resources.files(package).joinpath(name).read_bytes()


def sign_in(realm: str, key_name: str) -> Callable[[], web.Response]:
    """The 401 a page answers without credentials: a Basic challenge the browser prompts for."""
    text = (
        "<!doctype html><title>Sign in</title><h1>Sign in required</h1>"
        f"<p>Open this page with {key_name}: any user name, the key as the password.</p>"
    )
    headers = {**SECURITY_HEADERS, "WWW-Authenticate": f'Basic realm="{realm}", charset="UTF-8"'}

    def challenge() -> web.Response:
        return web.Response(status=401, text=text, content_type="text/html", headers=headers)

    return challenge


def static_page(
    package: str,
    page: str,
    challenge: Callable[[], web.Response],
    check: Callable[[web.Request], None] | None,
    more: tuple[str, ...] = (),
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler serving `<page>.html` at the route's root and `<page>.js`/`<page>.css` (and the files named
    in `more`) as `{asset}`, all from `package`, with the shared `page.js`/`page.css` (from
    `lightspeed_common.http.web`) beside them.

    `check(request)` raises Unauthorized (answered with `challenge()`) or another ApiError; None when
    the route checks the caller before the handler runs.
    """
    assets = {
        "": (package, f"{page}.html"),
        f"{page}.js": (package, f"{page}.js"),
        f"{page}.css": (package, f"{page}.css"),
        **{name: (package, name) for name in more},
        **{name: (SHARED_ASSETS, name) for name in ("page.js", "page.css")},
    }

    async def handler(request: web.Request) -> web.Response:
        asset = assets.get(request.match_info.get("asset", ""))
        if asset is None:
            raise web.HTTPNotFound
        try:
            if check is not None:
                check(request)
        except Unauthorized:
            return challenge()
        body = await asyncio.to_thread(_asset, *asset)
        content_type = CONTENT_TYPES[asset[1].rsplit(".", 1)[1]]
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=SECURITY_HEADERS)

    return handler
