"""structlog set-up: called once from main(), never at import.

JSON lines when stdout is not a terminal (journald indexes them; the `level`
key maps to a syslog priority prefix), a readable console on a terminal.
stdlib loggers (aiohttp, sentence-transformers) go through the same processors.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

_SYSLOG_PRIORITY = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}


def _journald_priority(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    event["priority"] = _SYSLOG_PRIORITY.get(str(event.get("level", "info")), 6)
    return event


def configure_logging(level: str = "info", fmt: Literal["auto", "json", "console"] = "auto") -> None:
    """Route structlog and stdlib logging to stdout in one format."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if use_json:
        shared.append(_journald_priority)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would print query strings (?user_id=...): we log our own line.
    logging.getLogger("aiohttp.access").disabled = True
