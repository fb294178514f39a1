"""Storage input and creation: malformed URLs refused with the password redacted, and a new
database created safely by several drivers starting at the same instant."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from growsearch.errors import ConfigError
from growsearch.search.storage import normalize_url, open_storage

ROOT = Path(__file__).resolve().parents[1]
SECRET = "S3cretPW"
DRIVERS = 4
ROUNDS = 8


def _race_worker(urls: list[str], barrier: mp.synchronize.Barrier, results: mp.Queue) -> None:  # type: ignore[name-defined]
    """Open each URL (a new database every round) at the same instant as the other workers and
    create the same study in it, like ``growsearch run`` does."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for url in urls:
        barrier.wait()
        try:
            st = open_storage(url, heartbeat=False)
            optuna.create_study(study_name="race", storage=st, directions=["minimize"], load_if_exists=True)
            st.engine.dispose()
            results.put("ok")
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            results.put(f"{type(exc).__name__}: {exc}")


def _race(urls: list[str]) -> list[str]:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(DRIVERS)
    results = ctx.Queue()
    procs = [ctx.Process(target=_race_worker, args=(urls, barrier, results)) for _ in range(DRIVERS)]
    for p in procs:
        p.start()
    out = [results.get(timeout=300) for _ in range(DRIVERS * len(urls))]
    for p in procs:
        p.join(timeout=60)
    return out


def test_simultaneous_first_drivers_on_new_sqlite_all_succeed(tmp_path: Path) -> None:
    """Before the fix one of two drivers died with ``UNIQUE constraint failed:
    alembic_version.version_num`` in most rounds."""
    urls = [f"sqlite:///{tmp_path}/r{i}/study.db" for i in range(ROUNDS)]
    out = _race(urls)
    assert [r for r in out if r != "ok"] == []


@pytest.mark.skipif(not os.environ.get("GROWSEARCH_TEST_POSTGRES_URL"), reason="GROWSEARCH_TEST_POSTGRES_URL not set (.ci/run starts a server)")
def test_simultaneous_first_drivers_on_new_postgres_schema_all_succeed() -> None:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    base = make_url(os.environ["GROWSEARCH_TEST_POSTGRES_URL"])
    engine = sa.create_engine(base)
    schemas = [f"race_{uuid.uuid4().hex[:10]}" for _ in range(ROUNDS)]
    with engine.begin() as conn:
        for s in schemas:
            conn.execute(sa.text(f"CREATE SCHEMA {s}"))
    try:
        urls = [base.update_query_dict({"options": f"-csearch_path={s}"}).render_as_string(hide_password=False) for s in schemas]
        out = _race(urls)
        assert [r for r in out if r != "ok"] == []
    finally:
        with engine.begin() as conn:
            for s in schemas:
                conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {s} CASCADE"))
        engine.dispose()


# --- malformed URLs ---------------------------------------------------------------------------

MALFORMED = [
    # (storage text, what the message names)
    (f"postgresql:/user:{SECRET}@host:1/db", "postgresql"),     # one slash
    (f"postgres:user:{SECRET}@host/db", "postgres URL"),         # no slashes
    (f"user:{SECRET}@host/db", "URL"),                           # no scheme
    (f"user:{SECRET}@host:5432/db", "URL"),
    (f"postgresql://user:{SECRET}@host:notaport/db", "postgresql"),
    (f"sqlite://user:{SECRET}@host/x.db", "sqlite"),
    ("/tmp/x@host/study.db", "URL"),                              # a path with "@"
]


@pytest.mark.parametrize(("url", "named"), MALFORMED)
def test_malformed_url_is_refused_naming_it_redacted(url: str, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        normalize_url(url)
    msg = str(info.value)
    assert SECRET not in msg and named in msg, msg


@pytest.mark.parametrize("url", ["sqlite:///runs/x/study.db", "sqlite:////tmp/a:b@c/study.db", "runs/x/study.db",
                                 "/tmp/study.db", f"postgresql://u:{SECRET}@h:5432/db", "postgresql://h/db"])
def test_well_formed_storage_is_accepted(url: str) -> None:
    out = normalize_url(url)
    assert out.startswith(("sqlite:///", "postgresql+psycopg://"))


def _cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "growsearch", *argv], check=False, capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**os.environ, "GROWSEARCH_STORAGE": "", "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("url", [f"postgresql:/user:{SECRET}@host:1/db", f"user:{SECRET}@host/db"])
@pytest.mark.parametrize("cmd", ["run", "list", "show", "pareto", "export", "dashboard"])
def test_every_command_refuses_a_malformed_url(cmd: str, url: str, tmp_path: Path) -> None:
    """Through the real CLI: exit 2, one line, the password never printed, no file or folder
    named after the URL created, no training started."""
    study = str(ROOT / "studies" / "quickstart.yaml")
    argv = {
        "run": ["run", study, "--storage", url],
        "list": ["list", "--storage", url],
        "show": ["show", "x", "--storage", url],
        "pareto": ["pareto", "x", "--storage", url],
        "export": ["export", "x", "-o", str(tmp_path / "e.yaml"), "--storage", url],
        "dashboard": ["dashboard", "x", "--storage", url, "--port", "0"],
    }[cmd]
    proc = _cli(argv, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("growsearch: error: storage "), proc.stderr
    assert SECRET not in proc.stderr and "***" in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("text", "expected"), [
    (f"postgresql:/user:{SECRET}@host:1/db", "postgresql:/user:***@host:1/db"),
    (f"user:{SECRET}@host/db", "user:***@host/db"),
    (f"postgres:u:{SECRET}@h/db", "postgres:u:***@h/db"),
    ("/tmp/a@b/study.db", "/tmp/a@b/study.db"),
    ("results/x:y@z.db", "results/x:y@z.db"),
])
def test_redact_a_malformed_url(text: str, expected: str) -> None:
    from growsearch.redact import redact_url

    assert redact_url(text) == expected
    assert redact_url(expected) == expected
