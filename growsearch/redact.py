"""Redacting secrets: a database URL is printed only through :func:`redact_url`."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
_KV_PASSWORD = re.compile(r"(?i)\b(password|passwd|pwd)=([^\s&;]+)")


def redact_url(url: str | None) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``; also ``password=...`` query args."""
    if url is None:
        return ""
    s = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:***@", str(url))
    return _KV_PASSWORD.sub(lambda m: f"{m.group(1)}=***", s)


def redact_text(text: str) -> str:
    """Redact every URL password inside free text (log lines, error messages)."""
    return redact_url(text)
