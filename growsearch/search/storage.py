"""The one place that opens an Optuna storage.

``open_storage(url)`` accepts ``sqlite:///path.db`` (parent folders are created), a
PostgreSQL URL (``postgresql+psycopg://user:pw@127.0.0.1/db``; plain ``postgresql://`` is
mapped to the installed psycopg 3 driver), or a plain path (``runs/x/study.db``).
Anything else that looks like a URL or holds credentials (``postgresql:/u:pw@h/db`` with one
slash, ``u:pw@h/db``) is refused by :func:`normalize_url` with the password redacted, never
taken for a SQLite file: a plain path may hold no ``@`` and no ``:`` before its first ``/``.
URLs are only ever printed through :func:`growsearch.redact.redact_url`.

Creating a new database is safe under any number of drivers starting at once: SQLite
creation runs under an exclusive lock on the database's folder, and any RDB retries the
creation when a concurrent creator won the race (``UNIQUE constraint failed``,
``already exists``, ``duplicate key``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.storages import RDBStorage

from growsearch.errors import ConfigError
from growsearch.redact import redact_url

STORAGE_ENV = "GROWSEARCH_STORAGE"

#: Seconds between trial heartbeats, and after how long a silent RUNNING trial is stale.
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 60


_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):")
#: Errors of a creator that lost the race to create a new database's tables / version rows.
_CREATION_RACE = ("already exists", "unique constraint", "duplicate key")
#: Database schemes named in the error for a malformed URL even without a '/' after them.
_DB_SCHEMES = ("postgresql", "postgres", "sqlite", "mysql", "mariadb", "oracle", "mssql")
CREATION_ATTEMPTS = 8


def normalize_url(url: str) -> str:
    """Check a storage URL or path and make it a URL: plain paths become absolute SQLite
    URLs; ``postgresql://`` uses psycopg 3.

    Raises:
        ConfigError: the text looks like a URL or holds credentials but does not parse as a
            storage URL (the message names the scheme; the password is redacted).
    """
    url = str(url).strip()
    shown = redact_url(url)
    if not url:
        raise ConfigError("storage: empty URL; give sqlite:///path/to/study.db, a path, or postgresql://user@host/db")
    if "://" not in url:
        head = url.split("/", 1)[0]
        if "@" in url or ":" in head:
            m = _SCHEME.match(url)
            known = m is not None and m.group("scheme").lower().split("+")[0] in _DB_SCHEMES
            scheme = m.group("scheme") if m and (known or url[m.end():].startswith("/")) else None
            what = f"looks like a {scheme} URL but does not parse" if scheme else "looks like a URL or credentials but has no scheme://"
            raise ConfigError(
                f"storage {shown!r}: {what}; write postgresql://user:password@host:port/db, sqlite:///path/to/study.db "
                "or a plain path (without '@', and without ':' before its first '/')"
            )
        return "sqlite:///" + str(Path(url).expanduser().resolve())
    scheme = url.split("://", 1)[0]
    if scheme.lower().startswith("sqlite"):
        if not url.startswith("sqlite:///") or url == "sqlite:///":
            raise ConfigError(f"storage {shown!r}: a SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db")
        return url
    if not _SCHEME.match(url):
        raise ConfigError(f"storage {shown!r}: not a URL (no scheme before '://')")
    if scheme in ("postgresql", "postgres"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"storage {shown!r}: not a valid {scheme} URL: {redact_url(str(exc).splitlines()[0])}") from None
    return url


def sqlite_path(url: str) -> Path | None:
    """The database file of a (normalized) SQLite URL; ``None`` for other databases or ``:memory:``."""
    if not url.startswith("sqlite:///") or ":memory:" in url:
        return None
    return Path(url[len("sqlite:///") :].split("?", 1)[0])


def open_storage(url: str, *, heartbeat: bool = True) -> RDBStorage:
    """Open (creating if needed) the Optuna RDB storage at ``url``.

    Raises:
        ConfigError: the URL is malformed, the driver is missing or the server is unreachable;
            the message carries the URL with its password redacted.
    """
    url = normalize_url(url)
    path = sqlite_path(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"storage {redact_url(url)}: cannot create {path.parent}: {exc.strerror}") from None
    engine_kwargs: dict = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    try:
        return _rdb_storage(url, engine_kwargs, heartbeat)
    except ModuleNotFoundError as exc:
        hint = " (pip install 'growsearch[postgres]')" if "psycopg" in str(exc) else ""
        raise ConfigError(f"storage {redact_url(url)}: missing database driver: {exc.name}{hint}") from None
    except Exception as exc:  # noqa: BLE001 - sqlalchemy errors carry the URL; never print it raw
        msg = redact_url(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise ConfigError(f"storage {redact_url(url)}: cannot open: {msg}") from None


def _rdb_storage(url: str, engine_kwargs: dict, heartbeat: bool) -> RDBStorage:
    """``RDBStorage(url)``, safe when several processes create a new database at once.

    SQLite: creation runs under an exclusive ``flock`` of the database's folder, so one
    process creates the tables and the version rows and the others find them. Any RDB: a
    creator that loses the race (``UNIQUE constraint failed: alembic_version.version_num``,
    ``table ... already exists``, PostgreSQL's ``duplicate key``) retries and finds them.
    """
    for attempt in range(CREATION_ATTEMPTS):
        try:
            with _creation_lock(url):
                return RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_INTERVAL if heartbeat else None,
                    grace_period=GRACE_PERIOD if heartbeat else None,
                )
        except Exception as exc:
            text = str(exc).lower()
            if not any(k in text for k in _CREATION_RACE) or attempt == CREATION_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _creation_lock(url: str) -> Iterator[None]:
    """An exclusive lock on a SQLite database's folder while the storage is created (a no-op
    for other databases, and where the folder cannot be opened)."""
    path = sqlite_path(url)
    fd = None
    if path is not None:
        try:
            fd = os.open(path.parent, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            if fd is not None:
                os.close(fd)
            fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock


#: Database errors that repeat on every retry (the storage must be fixed first), by a
#: fragment of the driver's message, with what to tell the user.
_FAULTS = (
    ("readonly database", "the database is read-only"),
    ("read-only", "the database is read-only"),
    ("database or disk is full", "the disk is full"),
    ("no space left", "the disk is full"),
    ("disk i/o error", "disk I/O error"),
    ("unable to open database file", "cannot open the database file"),
    ("database disk image is malformed", "the database file is corrupt"),
)


def storage_fault(exc: BaseException) -> str | None:
    """A one-line description of a storage fault behind ``exc`` (read-only database, full
    disk, I/O error), or ``None``. Optuna re-raises such a commit error as
    ``StorageInternalError("... e.g. exceeding max length")``; the cause is read from the
    exception chain instead, and the message is redacted."""
    import errno

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            what = "the disk is full" if e.errno != errno.EROFS else "the file system is read-only"
            return f"{what} ({e.strerror}{': ' + str(e.filename) if e.filename else ''})"
        text = str(getattr(e, "orig", None) or e).splitlines()[0].lower() if str(e) else ""
        for frag, what in _FAULTS:
            if frag in text:
                detail = redact_url(str(getattr(e, "orig", None) or e).splitlines()[0])
                return f"{what} ({detail})"
        e = e.__cause__ or e.__context__
    return None


def storage_url_from(flag: str | None, config_value: str | None, default: str) -> str:
    """Pick the storage URL: command-line flag, then $GROWSEARCH_STORAGE, then the config, then the default."""
    return flag or os.environ.get(STORAGE_ENV) or config_value or default


def load_study(name: str, storage: RDBStorage | str) -> optuna.Study:
    """Load an existing study by name; a missing one lists the studies in the storage.

    Raises:
        ConfigError: no study of that name.
    """
    st = open_storage(storage) if isinstance(storage, str) else storage
    try:
        return optuna.load_study(study_name=name, storage=st)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(st)]
        raise ConfigError(f"no study named {name!r} in this storage; studies: {', '.join(names) or '(none)'}") from None
