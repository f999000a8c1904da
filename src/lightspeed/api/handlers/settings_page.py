"""/settings: a plain HTML page over the JSON API, protected like the admin API (see webpage.py)."""

from __future__ import annotations

from aiohttp import web

from lightspeed.api.state import SERVER
from lightspeed.auth import require_admin
from lightspeed_common.http.pages import static_page


def _admin_only(request: web.Request) -> None:
    require_admin(request.app[SERVER].auth(request))


settings_page = static_page("lightspeed.web", "settings", "lightspeed", "an admin API key", _admin_only)
