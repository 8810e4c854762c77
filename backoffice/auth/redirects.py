"""One safe-redirect helper for every `next` parameter."""
from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit


def is_safe_path(target: str | None) -> bool:
    """True only for a path on this site: no scheme, no host, no tricks that browsers read as a host."""
    if not target or not isinstance(target, str):
        return False
    if any(unicodedata.category(ch) == "Cc" for ch in target):
        return False
    # Browsers treat a backslash as a slash, so `/\evil.example` is a protocol-relative URL.
    normalised = target.replace("\\", "/")
    if not normalised.startswith("/") or normalised.startswith("//"):
        return False
    parts = urlsplit(normalised)
    return not parts.scheme and not parts.netloc


def safe_next(target: str | None, fallback: str) -> str:
    return target if is_safe_path(target) else fallback
