"""docker/test-compose.sh: the compose cluster for real (PostgreSQL, a Ray head, one Ray worker,
the driver, the dashboard) and its failure paths.

The end-to-end run and the failures that need an engine are marked ``docker`` (not in the
default suite; `pytest -m docker`) and skip, saying why, where no Docker engine answers. The
failures that need no engine (no client, no engine, bad settings) run everywhere.
Settings for the images (BASE_IMAGE, WHEEL_DIRS, DOCKER ...) pass through the environment;
see docker/README.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docker" / "test-compose.sh"
DOCKER = os.environ.get("DOCKER", "docker")


def _engine() -> str | None:
    """None when a Docker engine answers, else why not."""
    if shutil.which(DOCKER) is None:
        return f"no docker client ({DOCKER!r} not on PATH)"
    try:
        r = subprocess.run([DOCKER, "info"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 60 s"
    if r.returncode != 0:
        return "no Docker engine reachable (`docker info` failed)"
    r = subprocess.run([DOCKER, "compose", "version"], capture_output=True, text=True, timeout=60)
    return None if r.returncode == 0 else "the docker compose v2 plugin is not installed"


@pytest.fixture(scope="module")
def engine() -> None:
    why = _engine()
    if why:
        pytest.skip(why)


def _run(env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT)], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)


def _leftovers(project: str) -> list[str]:
    out = []
    for what in (["ps", "-aq"], ["network", "ls", "-q"], ["volume", "ls", "-q"]):
        r = subprocess.run([DOCKER, *what, "--filter", f"label=com.docker.compose.project={project}"],
                           capture_output=True, text=True, timeout=60)
        out += r.stdout.split()
    return out


def _one_failure_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if "FAILED" in ln]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- failures without an engine ---------------------------------------------------------------

def test_no_docker_client_is_one_line(tmp_path: Path) -> None:
    r = _run({"DOCKER": "growsearch-no-such-docker", "LOG_DIR": str(tmp_path)})
    assert r.returncode == 1
    assert "no docker client" in _one_failure_line(r.stderr)


def test_no_engine_is_one_line_naming_the_log(tmp_path: Path) -> None:
    if shutil.which(DOCKER) is None:
        pytest.skip(f"no docker client ({DOCKER!r}) to point at a missing engine")
    r = _run({"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", "LOG_DIR": str(tmp_path / "logs")})
    assert r.returncode == 1
    line = _one_failure_line(r.stderr)
    assert "no Docker engine reachable" in line
    log = Path(line.rsplit("read ", 1)[1])
    assert log.is_file() and log.parent == tmp_path / "logs"


@pytest.mark.parametrize(("env", "msg"), [({"TRIALS": "four"}, "TRIALS"), ({"TRIALS": "0"}, "TRIALS"),
                                          ({"COMPOSE_PROJECT": "Bad Name"}, "COMPOSE_PROJECT"),
                                          ({"UP_TIMEOUT": "5m"}, "UP_TIMEOUT")])
def test_bad_settings_exit_2(tmp_path: Path, env: dict[str, str], msg: str) -> None:
    r = _run({**env, "LOG_DIR": str(tmp_path)})
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


# --- with an engine ----------------------------------------------------------------------------

@pytest.mark.docker
def test_failed_build_is_one_line_and_leaves_nothing(engine: None, tmp_path: Path) -> None:
    project = f"growsearch-pytest-build-{os.getpid()}"
    r = _run({"BASE_IMAGE": "growsearch-test-no-such-base:none", "COMPOSE_PROJECT": project,
              "LOG_DIR": str(tmp_path), "WHEEL_DIRS": ""})
    assert r.returncode == 1
    line = _one_failure_line(r.stderr)
    assert "the build of" in line and line.endswith(str(tmp_path / "build-growsearch.log"))
    assert _leftovers(project) == []


@pytest.mark.docker
def test_compose_cluster_runs_a_study_on_postgres_and_two_ray_nodes(engine: None, tmp_path: Path) -> None:
    """The whole script: build, PostgreSQL + Ray head + Ray worker healthy, the quickstart study
    from the driver, the budget of COMPLETE trials run on both Ray nodes, pareto, the dashboard's
    API from the host, teardown with nothing left."""
    project = f"growsearch-pytest-{os.getpid()}"
    r = _run({"COMPOSE_PROJECT": project, "LOG_DIR": str(tmp_path), "TRIALS": "4"}, timeout=5400)
    assert r.returncode == 0, r.stderr[-4000:]
    timings = json.loads(r.stdout.strip().splitlines()[-1])
    assert timings["trials"] == 4 and timings["check"]["complete"] == 4
    assert len(timings["check"]["nodes"]) == 2, timings  # the head and the worker each ran trials
    assert "quickstart" in (tmp_path / "dashboard-api.log").read_text()
    assert (tmp_path / "pareto.log").read_text().strip()
    assert _leftovers(project) == []
    # the password never reached a log
    pw = next(ln.split("=", 1)[1] for ln in (tmp_path / "compose.env").read_text().splitlines() if ln.startswith("POSTGRES_PASSWORD="))
    for log in tmp_path.glob("*.log"):
        assert pw not in log.read_text(errors="replace"), log.name


@pytest.mark.docker
def test_never_healthy_service_is_named_and_torn_down(engine: None, tmp_path: Path) -> None:
    """A PostgreSQL image that cannot start (the bare base has no postgres): the script names the
    service and its log at once, and removes what it started."""
    base = os.environ.get("BASE_IMAGE", "growsearch-base:bookworm")
    if subprocess.run([DOCKER, "image", "inspect", base], capture_output=True).returncode != 0:
        pytest.skip(f"needs a local image without PostgreSQL ({base}; set BASE_IMAGE)")
    project = f"growsearch-pytest-sick-{os.getpid()}"
    r = _run({"POSTGRES_IMAGE": base, "COMPOSE_PROJECT": project, "LOG_DIR": str(tmp_path), "UP_TIMEOUT": "120"},
             timeout=5400)
    assert r.returncode == 1
    line = _one_failure_line(r.stderr)
    assert "service postgres" in line and "never became healthy" in line and line.endswith(str(tmp_path / "postgres.log"))
    assert _leftovers(project) == []


@pytest.mark.docker
def test_ctrl_c_tears_everything_down(engine: None, tmp_path: Path) -> None:
    """SIGINT while the study runs: exit 130, and no container, network or volume is left."""
    project = f"growsearch-pytest-int-{os.getpid()}"
    proc = subprocess.Popen(["bash", str(SCRIPT)], env={**os.environ, "COMPOSE_PROJECT": project, "LOG_DIR": str(tmp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 3600
        while not (tmp_path / "driver.log").exists():  # the cluster is up and the study started
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline
            time.sleep(1)
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole foreground group
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted" in err and "tearing down" in err
    assert _leftovers(project) == []
