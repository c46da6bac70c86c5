"""The sidecars' log lines: one event a line, ``event=... key=value``, values quoted
(JSON) when they hold spaces, quotes, ``=`` or backslashes, so a line parses back."""

from __future__ import annotations

import json


def log_line(event: str, **fields: object) -> str:
    """``event=... key=value ...``: one event a line, values quoted when needed."""
    parts = [f"event={event}"]
    for key, value in fields.items():
        text = "none" if value is None else str(value)
        if not text or any(c.isspace() or c in '"=\\' for c in text):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def log(event: str, **fields: object) -> None:
    print(log_line(event, **fields), flush=True)
