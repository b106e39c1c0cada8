"""Secrets never shown: passwords in URIs, keys and tokens masked before text reaches output, logs or errors."""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@host -> scheme://user:***@host
_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<secret>[^@\s/]+)(?=@)")
# key=value pairs whose key names a secret (password=, token=, secret_access_key=, ...)
_KEY_VALUE = re.compile(r"(?i)(?P<head>\b[\w-]*(?:password|passwd|secret|token|access[_-]?key)[\w-]*\s*[=:]\s*['\"]?)"
                        r"(?P<secret>[^\s'\",&;]+)")


def mask_uri(uri: str) -> str:
    """``uri`` with the password of its user-info replaced by ``***``."""
    return _URI_PASSWORD.sub(lambda m: m["head"] + MASK, uri)


def mask(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with URI passwords, ``key=value`` secrets and each literal in ``secrets`` (if non-empty) masked."""
    out = _KEY_VALUE.sub(lambda m: m["head"] + MASK, mask_uri(text))
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, MASK)
    return out
