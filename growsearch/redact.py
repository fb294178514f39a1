"""Redacting secrets: a database URL is printed, logged or written only through :func:`redact_url`.

Three forms of secret are recognised, in URLs and in free text alike:

- the password in a URL's user-info: ``postgresql+psycopg://user:pw@host/db`` ->
  ``postgresql+psycopg://user:***@host/db``. The password runs up to the *last* ``@`` of the
  whitespace-free token, so an un-encoded ``@`` (``u:p@ss@host``) or ``:`` or ``/`` inside it
  is hidden entirely; over-redacting an odd ``http://h:1/a@b`` is the accepted price;
- ``key=value`` pairs whose key ends in ``password``/``passwd``/``pwd``/``secret``/``token``
  (libpq ``password=...``, query strings, ``PGPASSWORD=...``, ``POSTGRES_PASSWORD=...``),
  including single- or double-quoted values with spaces;
- ``"password": "value"`` / ``password: value`` (JSON, YAML, repr of dicts).

Redaction is idempotent: ``redact_text(redact_text(s)) == redact_text(s)``.
"""

from __future__ import annotations

import logging
import re

MASK = "***"

# scheme://user:password@   (user has no ':' '/' '@'; password is greedy up to the last '@'
# before whitespace, a quote or a bracket that ends the token)
_URL_PASSWORD = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s'\"<>]*):(?P<pw>[^\s'\"<>]*)@"
)

_KEYS = r"[A-Za-z0-9_\-]*(?:password|passwd|pwd|secret|token)"

# key=value (query string, libpq conninfo, environment dumps); value quoted or bare
_KV_PASSWORD = re.compile(
    rf"(?i)(?P<key>\b{_KEYS})(?P<eq>\s*=\s*)(?P<val>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,'\")\]}}]+)"
)

# "key": "value" / 'key': 'value' (JSON, Python reprs) and key: value (YAML)
_COLON_PASSWORD = re.compile(
    rf"(?i)(?P<key>(?P<q>['\"]?)\b{_KEYS}(?P=q))(?P<eq>\s*:\s*)(?P<val>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s,'\"}}\]]+)"
)


def _mask_value(val: str) -> str:
    """Keep the quotes around a quoted value so JSON and YAML stay well-formed."""
    if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
        return f"{val[0]}{MASK}{val[0]}"
    return MASK


def redact_url(url: str | None) -> str:
    """Hide the password of a URL (or of every URL and ``password=`` pair in a string).

    Args:
        url: a storage URL such as ``postgresql+psycopg://u:secret@h:5432/db?sslmode=require``,
            a SQLite URL or path (returned unchanged), or ``None`` (returns ``""``).

    Returns:
        The same text with each password replaced by ``***``:
        ``postgresql+psycopg://u:***@h:5432/db?sslmode=require``.
    """
    if url is None:
        return ""
    s = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", str(url))
    s = _KV_PASSWORD.sub(lambda m: f"{m.group('key')}{m.group('eq')}{_mask_value(m.group('val'))}", s)
    return s


def redact_text(text: str | None) -> str:
    """Redact every secret inside free text: log lines, error messages, reports, exports.

    Besides URL passwords and ``key=value`` pairs this also masks ``"password": "x"`` and
    ``password: x`` (JSON, YAML, dict reprs).
    """
    s = redact_url(text)
    return _COLON_PASSWORD.sub(lambda m: f"{m.group('key')}{m.group('eq')}{_mask_value(m.group('val'))}", s)


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record's final message through :func:`redact_text`.

    Attach it to a handler (``handler.addFilter(RedactingFilter())``) so that third-party
    libraries (SQLAlchemy, Ray, Optuna) cannot log a storage URL with its password.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's own error path
            return True
        red = redact_text(msg)
        if red != msg or record.args:
            record.msg, record.args = red, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Add a :class:`RedactingFilter` to every handler of ``logger`` (default: the root logger).

    Returns:
        The filter that was added (idempotent: an existing one is reused).
    """
    lg = logger or logging.getLogger()
    existing = next((f for h in lg.handlers for f in h.filters if isinstance(f, RedactingFilter)), None)
    flt = existing or RedactingFilter()
    for h in lg.handlers:
        if flt not in h.filters:
            h.addFilter(flt)
    return flt
