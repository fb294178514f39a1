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

When the whole input of :func:`redact_url` is one URL, or one token shaped like a
malformed one (``postgresql:/u:pw@h/db``, ``u:pw@h/db``), it is parsed the way SQLAlchemy
parses it (user up to the first ``:``, password up to the last ``@``), so passwords with
spaces or quotes are hidden too. In free text a password is only found up to whitespace or a
quote; callers that know the secret pass it as ``secrets=`` and every literal occurrence
(raw and percent-encoded) is masked as well.

Redaction is idempotent: ``redact_text(redact_text(s)) == redact_text(s)``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote

MASK = "***"

# scheme://user:password@   (user has no ':' '/' '@'; password is greedy up to the last '@'
# before whitespace, a quote or a bracket that ends the token)
_URL_PASSWORD = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s'\"<>]*):(?P<pw>[^\s'\"<>]*)@"
)

# the whole string is one URL: user has no ':' or '/', the password runs to the last '@'
_WHOLE_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/]*):(?P<pw>.*)@(?P<rest>[^@]*)$", re.S)

# one token that is not a well-formed URL but holds credentials: ``postgresql:/u:pw@h/db``
# (one slash), ``u:pw@h/db`` (no scheme); the password runs to the last '@'
_MALFORMED_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*:/*)?(?P<user>[^:/@\s]*):(?P<pw>\S*)@(?P<rest>[^@\s]*)$")

#: Secrets shorter than this are not masked by literal search (it would garble the text).
MIN_SECRET_LEN = 3

_KEYS = r"[A-Za-z0-9_\-]*(?:password|passwd|pwd|secret|token)"

# key=value (query string, libpq conninfo, environment dumps); value quoted or bare
_KV_PASSWORD = re.compile(
    rf"(?i)(?P<key>\b{_KEYS})(?P<eq>[ \t]*=[ \t]*)(?P<val>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,'\")\]}}]+)"
)

# "key": "value" / 'key': 'value' (JSON, Python reprs) and key: value (YAML)
_COLON_PASSWORD = re.compile(
    rf"(?i)(?P<key>(?P<q>['\"]?)\b{_KEYS}(?P=q))(?P<eq>[ \t]*:[ \t]*)(?P<val>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s,'\"}}\]]+)"
)


def _mask_value(val: str) -> str:
    """Keep the quotes around a quoted value so JSON and YAML stay well-formed."""
    if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
        return f"{val[0]}{MASK}{val[0]}"
    return MASK


def url_password(url: str | None) -> str | None:
    """The password of a single URL (percent-decoded), or ``None`` when it has none.

    >>> url_password("postgresql://u:p%40ss@h/db")
    'p@ss'
    """
    if not url:
        return None
    m = _WHOLE_URL.match(str(url).strip())
    return unquote(m.group("pw")) if m and m.group("pw") else None


def _mask_literals(text: str, secrets: Iterable[str | None]) -> str:
    for sec in secrets:
        if not sec or len(sec) < MIN_SECRET_LEN or sec == MASK:
            continue
        for form in {sec, quote(sec, safe=""), quote(sec)}:
            text = text.replace(form, MASK)
    return text


def redact_url(url: str | None, *, secrets: Iterable[str | None] = ()) -> str:
    """Hide the password of a URL (or of every URL and ``password=`` pair in a string).

    Args:
        url: a storage URL such as ``postgresql+psycopg://u:secret@h:5432/db?sslmode=require``,
            a SQLite URL or path (returned unchanged), or ``None`` (returns ``""``).
        secrets: known secret values to mask wherever they appear (raw or percent-encoded).

    Returns:
        The same text with each password replaced by ``***``:
        ``postgresql+psycopg://u:***@h:5432/db?sslmode=require``.
    """
    if url is None:
        return ""
    s = str(url)
    core = s.strip()
    m = _WHOLE_URL.match(core) if "\n" not in core else None
    if m is None and "://" not in core:
        m = _MALFORMED_URL.match(core)
    if m:  # one URL: mask structurally (not by literal search, which would garble the rest)
        lead = s[: len(s) - len(s.lstrip())]
        trail = s[len(s.rstrip()) :]
        s = f"{lead}{m.group('scheme') or ''}{m.group('user')}:{MASK}@{m.group('rest')}{trail}"
    s = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", s)
    s = _KV_PASSWORD.sub(lambda m: f"{m.group('key')}{m.group('eq')}{_mask_value(m.group('val'))}", s)
    return _mask_literals(s, secrets)


def redact_text(text: str | None, *, secrets: Iterable[str | None] = ()) -> str:
    """Redact every secret inside free text: log lines, error messages, reports, exports.

    Besides URL passwords and ``key=value`` pairs this also masks ``"password": "x"`` and
    ``password: x`` (JSON, YAML, dict reprs), and every literal occurrence of ``secrets``
    (e.g. ``secrets=[url_password(url)]`` for the error message of a connection to ``url``).
    """
    s = redact_url(text, secrets=secrets)
    return _COLON_PASSWORD.sub(lambda m: f"{m.group('key')}{m.group('eq')}{_mask_value(m.group('val'))}", s)


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record's final message through :func:`redact_text`.

    Attach it to a handler (``handler.addFilter(RedactingFilter())``) so that third-party
    libraries (SQLAlchemy, Ray, Optuna) cannot log a storage URL with its password.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: leave it to the handler's own error path
            return True
        red = redact_text(msg)
        if red != msg or record.args:
            record.msg, record.args = red, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


_FACTORY_INSTALLED = False


def install_log_redaction(logger: logging.Logger | None = None) -> RedactingFilter | None:
    """Redact secrets in log output.

    Args:
        logger: add a :class:`RedactingFilter` to every handler this logger has now. ``None``:
            redact every log record of the process as it is created (a log-record factory),
            which also covers handlers and loggers configured later (``logging.basicConfig``,
            SQLAlchemy, Ray, Optuna).

    Returns:
        The filter added to ``logger``'s handlers (an existing one is reused), or ``None`` when
        the process-wide factory was installed (idempotent).
    """
    global _FACTORY_INSTALLED
    if logger is None:
        if not _FACTORY_INSTALLED:
            base = logging.getLogRecordFactory()
            flt = RedactingFilter()

            def factory(*args: object, **kwargs: object) -> logging.LogRecord:
                record = base(*args, **kwargs)
                flt.filter(record)
                return record

            logging.setLogRecordFactory(factory)
            _FACTORY_INSTALLED = True
        return None
    existing = next((f for h in logger.handlers for f in h.filters if isinstance(f, RedactingFilter)), None)
    flt = existing or RedactingFilter()
    for h in logger.handlers:
        if flt not in h.filters:
            h.addFilter(flt)
    return flt
