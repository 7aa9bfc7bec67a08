"""Is a service answering? One plain-HTTP probe (no client library) shared by the stack and tracking."""

from __future__ import annotations

import urllib.error
import urllib.request


def http_ok(url: str, timeout: float = 3.0) -> bool:
    """True when GET `url` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False
