"""Secrets never leave growsearch in clear text: redact_url / redact_text, the logging filter,
the storage opener's error messages, and (where the commands exist) the CLI end to end."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from growsearch.errors import ConfigError
from growsearch.redact import RedactingFilter, install_log_redaction, redact_text, redact_url, url_password

SECRET = "S3cretPW"

URL_CASES = [
    # (input, expected)
    ("postgresql+psycopg://growsearch:S3cretPW@postgres:5432/growsearch",
     "postgresql+psycopg://growsearch:***@postgres:5432/growsearch"),
    ("postgresql://user:S3cretPW@127.0.0.1/db", "postgresql://user:***@127.0.0.1/db"),
    ("postgres://user:S3cretPW@h/db", "postgres://user:***@h/db"),
    # URL-encoded special characters stay hidden as a whole
    ("postgresql+psycopg://u:p%40ss%3Aw%2Frd@h/db", "postgresql+psycopg://u:***@h/db"),
    # un-encoded ':' '@' '/' inside the password: hidden up to the last '@'
    ("postgresql://u:pa:ss:wd@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:a/b@h/db", "postgresql://u:***@h/db"),
    # empty user, empty password
    ("redis://:S3cretPW@h:6379/0", "redis://:***@h:6379/0"),
    ("postgresql://u:@h/db", "postgresql://u:***@h/db"),
    # password in the query string
    ("postgresql://u@h/db?password=S3cretPW&sslmode=require",
     "postgresql://u@h/db?password=***&sslmode=require"),
    ("postgresql://h/db?sslmode=require&PASSWORD=S3cretPW", "postgresql://h/db?sslmode=require&PASSWORD=***"),
    # nothing to hide: unchanged
    ("postgresql+psycopg://growsearch@postgres:5432/growsearch",
     "postgresql+psycopg://growsearch@postgres:5432/growsearch"),
    ("postgresql://h:5432/db", "postgresql://h:5432/db"),
    ("sqlite:///results/quickstart.db", "sqlite:///results/quickstart.db"),
    ("sqlite:////tmp/a:b@c/study.db", "sqlite:////tmp/a:b@c/study.db"),
    ("results/study.db", "results/study.db"),
    ("ray://ray-head:10001", "ray://ray-head:10001"),
    ("ray-head:6379", "ray-head:6379"),
    # already redacted: idempotent
    ("postgresql://u:***@h/db", "postgresql://u:***@h/db"),
    # a whole-string URL is parsed like SQLAlchemy: spaces and quotes in the password, '@' in the user
    ("postgresql://u:S3c ret PW@127.0.0.1:1/db", "postgresql://u:***@127.0.0.1:1/db"),
    ("postgresql://u:S3cret\"PW'x@h/db", "postgresql://u:***@h/db"),
    ("postgresql://user@corp:S3cretPW@h/db", "postgresql://user@corp:***@h/db"),
    ("  postgresql://u:S3cretPW@h/db\n", "  postgresql://u:***@h/db\n"),
]


@pytest.mark.parametrize(("url", "expected"), URL_CASES, ids=[c[0] for c in URL_CASES])
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert redact_text(url) == expected
    assert redact_url(redact_url(url)) == expected


@pytest.mark.parametrize(
    ("url", "pw"),
    [("postgresql://u:p%40ss@h/db", "p@ss"), ("postgresql://u:a b@h/db", "a b"), ("postgresql://u@h/db", None),
     ("sqlite:///x.db", None), (None, None), ("postgresql://u:@h/db", None)],
)
def test_url_password(url: str | None, pw: str | None) -> None:
    assert url_password(url) == pw


def test_known_secrets_are_masked_anywhere() -> None:
    """Free text cannot always delimit a password (spaces, quotes); a caller that knows it
    passes it, and every raw or percent-encoded occurrence goes."""
    url = "postgresql://u:S3c ret/PW@h/db"
    msg = f"Could not parse SQLAlchemy URL from string '{url}' (S3c%20ret%2FPW)"
    out = redact_text(msg, secrets=[url_password(url)])
    assert "S3c" not in out and "ret" not in out.replace("string", "")
    assert redact_text("ab and ab", secrets=["ab"]) == "ab and ab", "too short to search for literally"
    assert redact_url("x", secrets=[None, ""]) == "x"


def test_redact_url_none() -> None:
    assert redact_url(None) == ""
    assert redact_text(None) == ""


TEXT_CASES = [
    ("storage postgresql://u:S3cretPW@h/db: cannot open: connection refused",
     "storage postgresql://u:***@h/db: cannot open: connection refused"),
    ("two 'postgresql://a:S3cretPW@h1/x' and \"postgresql://b:S3cretPW@h2/y\"",
     "two 'postgresql://a:***@h1/x' and \"postgresql://b:***@h2/y\""),
    ("(postgresql://u:S3cretPW@h/db)", "(postgresql://u:***@h/db)"),
    # libpq conninfo, quoted or bare
    ("host=h port=5432 password=S3cretPW dbname=x", "host=h port=5432 password=*** dbname=x"),
    ("host=h password='S3c ret PW' dbname=x", "host=h password='***' dbname=x"),
    # environment dumps
    ("PGPASSWORD=S3cretPW POSTGRES_PASSWORD=S3cretPW ray start", "PGPASSWORD=*** POSTGRES_PASSWORD=*** ray start"),
    # JSON, dict reprs, YAML
    ('{"password": "S3cretPW", "host": "h"}', '{"password": "***", "host": "h"}'),
    ("{'db_password': 'S3cretPW'}", "{'db_password': '***'}"),
    ("password: S3cretPW\nhost: h", "password: ***\nhost: h"),
    # nothing to hide
    ("trial 3 finished: dev_eer=0.12 params=1200", "trial 3 finished: dev_eer=0.12 params=1200"),
    ('password authentication failed for user "growsearch"', 'password authentication failed for user "growsearch"'),
]


@pytest.mark.parametrize(("text", "expected"), TEXT_CASES)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected
    assert SECRET not in redact_text(text)
    assert redact_text(redact_text(text)) == expected


_pw_chars = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp"))


@settings(max_examples=200, deadline=None)
@given(user=st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), pw=st.text(_pw_chars, min_size=1, max_size=24))
def test_any_encoded_password_is_hidden(user: str, pw: str) -> None:
    url = f"postgresql+psycopg://{user}:{quote(pw, safe='')}@db.example:5432/growsearch?sslmode=require"
    assert redact_url(url) == f"postgresql+psycopg://{user}:***@db.example:5432/growsearch?sslmode=require"


@settings(max_examples=200, deadline=None)
@given(pw=st.text(st.characters(codec="ascii", exclude_characters="'\"<> \t\r\n\x0b\x0c"), min_size=1, max_size=24))
def test_any_raw_ascii_password_is_hidden(pw: str) -> None:
    """Users paste un-encoded passwords too; they must not leak in part either."""
    pw = "".join(c for c in pw if c.isprintable()) or "x"
    url = f"postgresql://user:{pw}@db.example/growsearch"
    assert redact_url(url) == "postgresql://user:***@db.example/growsearch"


def test_logging_filter_redacts_message_args_and_traceback() -> None:
    logger = logging.getLogger("growsearch.test_redaction")
    logger.propagate = False
    records: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = ListHandler()
    logger.addHandler(handler)
    try:
        flt = install_log_redaction(logger)
        assert install_log_redaction(logger) is flt  # idempotent
        assert isinstance(flt, RedactingFilter)
        logger.warning("opening %s", f"postgresql://u:{SECRET}@h/db")
        try:
            raise RuntimeError(f"connect failed: password={SECRET}")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    text = "\n".join(records)
    assert "postgresql://u:***@h/db" in text
    assert "password=***" in text and "RuntimeError" in text
    assert SECRET not in text


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://growsearch:{SECRET}@127.0.0.1:1/growsearch",          # closed port
        f"postgresql+psycopg://u:{SECRET}@h:notaport/db",                    # malformed port
        f"postgresql+nodriver://u:{SECRET}@h/db",                            # unknown driver
        f"mysql://u:{SECRET}@127.0.0.1:1/db",                                # driver not installed
        f"postgresql://u:{SECRET}@127.0.0.1:1/db?sslmode=bogus",             # bad query option
        "postgresql://u:S3cret PW@127.0.0.1:1/db",                           # space in the password
        'postgresql://u:S3cret"PW@127.0.0.1:1/db',                           # quote in the password
    ],
)
def test_open_storage_error_hides_password(url: str) -> None:
    """Real connection attempts that fail: the error names the URL, never the password."""
    pytest.importorskip("psycopg")
    from growsearch.search.storage import open_storage

    with pytest.raises(ConfigError) as info:
        open_storage(url, heartbeat=False)
    msg = str(info.value)
    assert "S3cret" not in msg, msg
    assert ":***@" in msg


@pytest.mark.skipif(not os.environ.get("GROWSEARCH_TEST_POSTGRES_URL"), reason="GROWSEARCH_TEST_POSTGRES_URL not set (.ci/run starts a server)")
def test_password_from_pgpassword_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compose/KubeRay pattern: a password-less URL plus $PGPASSWORD reaches a real server,
    and a wrong password in the URL is reported without it."""
    import sqlalchemy as sa
    from sqlalchemy.engine import URL, make_url

    from growsearch.search.storage import open_storage

    url = make_url(os.environ["GROWSEARCH_TEST_POSTGRES_URL"])
    assert url.password, "the test server URL should carry a password"
    monkeypatch.setenv("PGPASSWORD", url.password)
    bare = URL.create(url.drivername, username=url.username, host=url.host, port=url.port, database=url.database)
    bare = bare.render_as_string(hide_password=False)
    assert url.password not in bare
    storage = open_storage(bare, heartbeat=False)
    with storage.engine.connect() as conn:  # a session logged in as the URL's user, with $PGPASSWORD's password
        assert conn.execute(sa.text("SELECT current_user")).scalar() == url.username
    storage.engine.dispose()

    monkeypatch.delenv("PGPASSWORD")
    wrong = url.set(password="Wr0ng" + SECRET).render_as_string(hide_password=False)
    with pytest.raises(ConfigError) as info:
        open_storage(wrong, heartbeat=False)
    assert SECRET not in str(info.value) and "Wr0ng" not in str(info.value)


# --- end to end through the CLI -------------------------------------------------------------

_STORAGE_COMMANDS = [
    # (command module, argv after `growsearch`): each must fail to connect, exit non-zero and
    # never print the password. Commands not written yet are skipped.
    ("growsearch.commands.list_studies", ["list", "--storage", f"postgresql://user:{SECRET}@127.0.0.1:1/db"]),
    ("growsearch.commands.show", ["show", "some-study", "--storage", f"postgresql://user:{SECRET}@127.0.0.1:1/db"]),
    ("growsearch.commands.pareto", ["pareto", "some-study", "--storage", f"postgresql://user:{SECRET}@127.0.0.1:1/db"]),
    ("growsearch.commands.export", ["export", "some-study", "-o", "{tmp}/front.yaml", "--storage", f"postgresql://user:{SECRET}@127.0.0.1:1/db"]),
    pytest.param("growsearch.commands.run", ["run", str(Path(__file__).resolve().parents[1] / "studies" / "quickstart.yaml"),
                                             "--storage", f"postgresql://user:{SECRET}@127.0.0.1:1/db"],
                 marks=pytest.mark.slow, id="run"),
]


@pytest.mark.parametrize(("module", "argv"), _STORAGE_COMMANDS)
def test_cli_never_prints_password(module: str, argv: list[str], tmp_path: Path) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} not written yet")
    if argv[0] == "run" and not Path(argv[1]).is_file():
        pytest.skip("studies/quickstart.yaml not written yet")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "growsearch", *argv],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "GROWSEARCH_STORAGE": ""},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert SECRET not in out, out
    assert "Traceback" not in out, out
    assert "user:***@127.0.0.1:1/db" in out, "the command should have tried the storage and named it redacted"


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("GROWSEARCH_TEST_POSTGRES_URL"), reason="GROWSEARCH_TEST_POSTGRES_URL not set (.ci/run starts a server)")
def test_report_commands_never_leak_password_from_a_real_postgres(tmp_path: Path) -> None:
    """A study on a real PostgreSQL, opened with the password in the URL, whose stored config
    also carries that URL (a study YAML with ``storage: postgresql://u:pw@...``): list, show,
    pareto (text, JSON, CSV, HTML) and export succeed, and the password appears in no stdout,
    stderr or written file."""
    import optuna

    url = os.environ["GROWSEARCH_TEST_POSTGRES_URL"]
    from sqlalchemy.engine import make_url

    password = make_url(url).password
    assert password
    name = f"redact-e2e-{os.getpid()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=url, directions=["minimize", "minimize"])
    try:
        study.set_user_attr("objectives", [{"name": "dev_eer", "direction": "minimize"}, {"name": "params", "direction": "minimize"}])
        study.set_user_attr("config", {"name": name, "storage": url, "budget": {"trials": 3}})
        for i in range(3):
            t = study.ask()
            study.tell(t, [0.05 + 0.1 * i, 1000.0 - 100 * i])
        html, exported = tmp_path / "report.html", tmp_path / "front.yaml"
        runs = [
            ["list", "--storage", url],
            ["list", "--json", "--storage", url],
            ["show", name, "--storage", url],
            ["show", name, "--json", "--storage", url],
            ["pareto", name, "--storage", url, "--html", str(html)],
            ["pareto", name, "--json", "--storage", url],
            ["pareto", name, "--csv", "--storage", url],
            ["export", name, "-o", str(exported), "--pick", "all", "--storage", url],
        ]
        for argv in runs:
            if importlib.util.find_spec(f"growsearch.commands.{'list_studies' if argv[0] == 'list' else argv[0]}") is None:
                continue
            proc = subprocess.run([sys.executable, "-m", "growsearch", *argv], capture_output=True, text=True, timeout=120,
                                  env={**os.environ, "GROWSEARCH_STORAGE": ""})
            out = proc.stdout + proc.stderr
            assert proc.returncode == 0, (argv[0], out[-2000:])
            assert password not in out, (argv[0], out[-2000:])
        for f in (html, exported):
            if f.exists():
                assert password not in f.read_text(encoding="utf-8"), f.name
    finally:
        optuna.delete_study(study_name=name, storage=url)


def test_process_wide_log_redaction_covers_later_handlers() -> None:
    """install_log_redaction() with no logger redacts records of loggers and handlers that are
    configured afterwards (in a fresh interpreter, so this test's process is left alone)."""
    script = f"""
import logging, sys
from growsearch.redact import install_log_redaction
assert install_log_redaction() is None and install_log_redaction() is None
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(name)s %(message)s")
logging.getLogger("sqlalchemy.engine").warning("connect %s", "postgresql://u:{SECRET}@h/db")
try:
    raise ValueError("password={SECRET}")
except ValueError:
    logging.getLogger("ray").exception("failed")
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "postgresql://u:***@h/db" in r.stdout and "password=***" in r.stdout and "ValueError" in r.stdout
    assert SECRET not in r.stdout + r.stderr
