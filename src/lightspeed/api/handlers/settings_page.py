"""/settings: a plain HTML page over the JSON API; the route's guard lets only callers allowed
`view_settings` in, and asks a browser without credentials to sign in (Basic, the key as the password)."""

from __future__ import annotations

from lightspeed_common.http.pages import sign_in, static_page

challenge = sign_in("lightspeed", "an admin API key")
settings_page = static_page("lightspeed.web", "settings", challenge, None)
