"""JSON from outside, parsed so that every way it can be wrong is one exception."""

from __future__ import annotations

import json
from typing import Any


def parse_json(data: bytes | str) -> Any:
    """`json.loads`, where nesting too deep for Python's parser is a ValueError like any other bad JSON.

    The C scanner raises RecursionError past about a thousand levels (`[[[[...`);
    uncaught, one such body was a 500, and one such record retried forever.
    """
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
