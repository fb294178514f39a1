"""The one place that opens an Optuna storage.

``open_storage(url)`` accepts ``sqlite:///path.db`` (parent folders are created), a
PostgreSQL URL (``postgresql+psycopg://user:pw@127.0.0.1/db``; plain ``postgresql://`` is
mapped to the installed psycopg 3 driver), or a bare path ending in ``.db``/``.sqlite``.
URLs are only ever printed through :func:`growsearch.redact.redact_url`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import optuna
from optuna.storages import RDBStorage

from growsearch.errors import ConfigError
from growsearch.redact import redact_url

STORAGE_ENV = "GROWSEARCH_STORAGE"

#: Seconds between trial heartbeats, and after how long a silent RUNNING trial is stale.
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 60


def normalize_url(url: str) -> str:
    """Bare paths become SQLite URLs; ``postgresql://`` uses psycopg 3."""
    url = str(url).strip()
    if "://" not in url:
        return "sqlite:///" + str(Path(url).expanduser().resolve())
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_storage(url: str, *, heartbeat: bool = True) -> RDBStorage:
    """Open (creating if needed) the Optuna RDB storage at ``url``.

    Raises:
        ConfigError: the URL is malformed, the driver is missing or the server is unreachable;
            the message carries the URL with its password redacted.
    """
    url = normalize_url(url)
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
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
    except Exception as exc:  # sqlalchemy errors carry the URL; never print it raw
        msg = redact_url(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise ConfigError(f"storage {redact_url(url)}: cannot open: {msg}") from None


def _rdb_storage(url: str, engine_kwargs: dict, heartbeat: bool) -> RDBStorage:
    """``RDBStorage(url)``; two processes creating a new database's tables at once race
    (``table ... already exists``): the loser retries and finds them."""
    for attempt in range(4):
        try:
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_INTERVAL if heartbeat else None,
                grace_period=GRACE_PERIOD if heartbeat else None,
            )
        except Exception as exc:
            if "already exists" not in str(exc) or attempt == 3:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


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
