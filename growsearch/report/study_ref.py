"""Resolving the ``STUDY`` argument of the report commands.

``STUDY`` is either a study name (with ``--storage URL`` or ``$GROWSEARCH_STORAGE``) or a
path to a study YAML, whose ``name`` and ``storage`` come from
:func:`growsearch.search.study.load_study_config` (storage default
``sqlite:///<outputs>/study.db``).

A study that does not exist raises :class:`~growsearch.errors.ConfigError` naming the
studies the storage holds (exit 2). URLs are only shown through ``redact_url``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from growsearch.errors import ConfigError
from growsearch.redact import redact_url
from growsearch.search.storage import STORAGE_ENV, load_study, normalize_url, open_storage, sqlite_path

_YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class StudyRef:
    """A resolved study.

    Attributes:
        name: the Optuna study name.
        url: the storage URL (may hold a password: print only ``redacted_url``).
        outputs: the study's output folder when known from its YAML, else ``None``.
    """

    name: str
    url: str
    outputs: Path | None = None

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)

    def storage(self) -> optuna.storages.RDBStorage:
        """Open the storage (see :func:`growsearch.search.storage.open_storage`).

        Raises:
            ConfigError: a SQLite file that does not exist (reports never create one).
        """
        check_exists(self.url)
        return open_storage(self.url, heartbeat=False)

    def load(self) -> optuna.Study:
        """Load the study.

        Raises:
            ConfigError: the storage cannot be opened or has no study of this name (the
                message lists the studies it does have).
        """
        return load_study(self.name, self.storage())


def _looks_like_yaml(arg: str) -> bool:
    return arg.endswith(_YAML_SUFFIXES) or os.sep in arg and Path(arg).is_file()


def _from_study_config(path: Path) -> tuple[str, str, Path | None]:
    """Name, storage URL (explicit or the study's default) and outputs of a study YAML.

    Only these keys are read (:func:`growsearch.search.study.study_location`): a report
    never builds a backbone, so it imports neither torch nor Ray.

    Raises:
        ConfigError: the study YAML is invalid (see ``growsearch.search.study``).
    """
    from growsearch.search.study import study_location

    name, storage, outputs = study_location(path)
    return name, storage or "sqlite:///" + str(outputs / "study.db"), outputs


def resolve_study(study: str, storage: str | None = None) -> StudyRef:
    """Turn a ``STUDY`` argument (+ optional ``--storage``) into a :class:`StudyRef`.

    The storage is, in order: ``storage``, ``$GROWSEARCH_STORAGE``, the YAML's ``storage``
    or its default ``sqlite:///<outputs>/study.db`` (YAML only).

    Raises:
        ConfigError: the YAML is missing/invalid, or a bare name comes without a storage.
    """
    if _looks_like_yaml(study):
        path = Path(study)
        if not path.is_file():
            raise ConfigError(f"{path}: study file not found")
        name, yaml_storage, outputs = _from_study_config(path)
        url = storage or os.environ.get(STORAGE_ENV) or yaml_storage
        return StudyRef(name=name, url=url, outputs=outputs)
    from growsearch.search.study import validate_study_name

    validate_study_name(study, "STUDY")
    given = storage or os.environ.get(STORAGE_ENV)
    if not given:
        raise ConfigError(
            f"study {study!r}: no storage given; pass --storage URL, set ${STORAGE_ENV}, or give the study YAML path"
        )
    return StudyRef(name=study, url=given)


def check_exists(url: str) -> None:
    """Refuse a SQLite URL or ``.db`` path whose file is missing (instead of creating it).

    Raises:
        ConfigError: the file does not exist.
    """
    path = sqlite_path(normalize_url(url))
    if path is not None and not path.is_file():
        raise ConfigError(f"storage {redact_url(url)}: database file {path} does not exist")


def list_study_names(url: str) -> list[str]:
    """Names of the studies in the storage at ``url``."""
    check_exists(url)
    st = open_storage(url, heartbeat=False)
    return optuna.get_all_study_names(st)


def storage_option(f: Any) -> Any:
    """The ``--storage URL`` click option shared by the report commands."""
    import click

    return click.option(
        "--storage",
        "storage",
        default=None,
        metavar="URL",
        help=f"Storage URL (sqlite:///runs/x/study.db, postgresql://...); default ${STORAGE_ENV} or the study YAML's storage.",
    )(f)
