"""The container files under docker/: compose cluster, GPU override, KubeRay manifests, the
Dockerfile and its health-check script.

Structure is checked by parsing the real files; the health-check script runs against a real
optuna-dashboard and (slow) a real Ray GCS with token authentication; `docker compose config`
and `docker build` run where a Docker engine / the compose plugin exist, else skip with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
COMPOSE_GPU = DOCKER / "compose.gpu.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
HEALTHCHECK = DOCKER / "healthcheck.py"
KUBERAY = DOCKER / "kuberay"
BIN = Path(sys.executable).parent

#: services that serve something and so need a health check and a restart policy
SERVING = ("postgres", "ray-head", "ray-worker", "dashboard")
#: services whose containers run trials or drive them: they must see the same shared paths
RAY_NODES = ("ray-head", "ray-worker", "driver")


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _volumes(svc: dict[str, Any]) -> dict[str, str]:
    """mount target -> source, for short-syntax volume entries."""
    out = {}
    for v in svc.get("volumes", []):
        parts = str(v).split(":")
        out[parts[1]] = parts[0]
    return out


# --- compose.yaml ------------------------------------------------------------------------------

def test_compose_has_the_cluster_services(services: dict[str, Any]) -> None:
    assert set(SERVING) | {"driver"} <= set(services)


@pytest.mark.parametrize("name", [*SERVING, "driver"])
def test_every_service_has_image_or_build(services: dict[str, Any], name: str) -> None:
    svc = services[name]
    assert svc.get("image") or svc.get("build"), f"{name}: neither image nor build"


@pytest.mark.parametrize("name", SERVING)
def test_serving_services_have_healthcheck_and_restart(services: dict[str, Any], name: str) -> None:
    svc = services[name]
    hc = svc.get("healthcheck")
    assert hc and hc.get("test"), f"{name}: no healthcheck"
    assert not hc.get("disable")
    assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), f"{name}: restart={svc.get('restart')!r}"


def test_healthchecks_use_the_right_probe(services: dict[str, Any]) -> None:
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    for name, role in (("ray-head", "ray-head"), ("ray-worker", "ray-worker"), ("dashboard", "dashboard")):
        test = services[name]["healthcheck"]["test"]
        assert "/usr/local/bin/growsearch-healthcheck" in test and test[-1] == role, (name, test)


def test_postgres_is_not_published_and_data_on_named_volume(compose: dict[str, Any], services: dict[str, Any]) -> None:
    pg = services["postgres"]
    assert "ports" not in pg, "the PostgreSQL port must stay on the internal network"
    assert pg.get("network_mode") != "host"
    src = _volumes(pg).get("/var/lib/postgresql/data")
    assert src and src in compose["volumes"], "postgres data must live on a named volume"


def test_results_and_shared_on_named_volumes_mounted_alike(compose: dict[str, Any], services: dict[str, Any]) -> None:
    """Checkpoints, the prefix cache and the study outputs must resolve to the same path on
    every Ray node and the driver."""
    for target in ("/shared", "/app/runs", "/app/data"):
        sources = {_volumes(services[n]).get(target) for n in RAY_NODES}
        assert len(sources) == 1 and None not in sources, (target, sources)
        assert sources.pop() in compose["volumes"]


def test_published_ports_only_on_loopback(services: dict[str, Any]) -> None:
    published = 0
    for name, svc in services.items():
        for p in svc.get("ports", []):
            published += 1
            host_ip = p.get("host_ip") if isinstance(p, dict) else str(p).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name}: port {p!r} is not bound to 127.0.0.1"
    assert published >= 2  # the Optuna and Ray dashboards
    assert any(str(p).endswith(":8080") for p in services["dashboard"]["ports"])


def test_ray_head_and_workers_form_one_cluster(services: dict[str, Any]) -> None:
    head = services["ray-head"]["command"]
    assert head[:3] == ["ray", "start", "--head"] and "--block" in head
    port = next(a.split("=", 1)[1] for a in head if a.startswith("--port="))
    worker = services["ray-worker"]["command"]
    assert worker[:2] == ["ray", "start"] and "--block" in worker
    assert f"--address=ray-head:{port}" in worker
    assert services["driver"]["environment"]["RAY_ADDRESS"] == f"ray-head:{port}"
    assert "replicas" in services["ray-worker"]["deploy"]


def test_ray_token_auth_on_every_ray_process(services: dict[str, Any]) -> None:
    for n in RAY_NODES:
        env = services[n]["environment"]
        assert env["RAY_AUTH_MODE"] == "token", n
        assert env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?"), n


def test_database_password_only_from_env(services: dict[str, Any]) -> None:
    from growsearch.redact import redact_url

    pg = services["postgres"]
    # PostgreSQL reads the password from a secret file, not from its environment
    assert "POSTGRES_PASSWORD" not in pg["environment"]
    assert pg["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/pg_password"
    assert pg["secrets"] == ["pg_password"]
    assert yaml.safe_load(COMPOSE.read_text())["secrets"]["pg_password"] == {"environment": "POSTGRES_PASSWORD"}
    for n in ("driver", "dashboard"):
        env = services[n]["environment"]
        assert env["PGPASSWORD"].startswith("${POSTGRES_PASSWORD:?"), n
    url = services["driver"]["environment"]["GROWSEARCH_STORAGE"]
    assert url.startswith("postgresql+psycopg://") and redact_url(url) == url, "the URL must carry no password"
    assert services["dashboard"]["environment"]["GROWSEARCH_STORAGE"] == url
    assert "ports" not in services["driver"]


def test_driver_is_opt_in_and_sees_the_studies(services: dict[str, Any]) -> None:
    drv = services["driver"]
    assert drv.get("profiles"), "the driver is run with `docker compose run`, not started by `up`"
    assert _volumes(drv).get("/app/studies") == "../studies"
    assert (COMPOSE.parent / "../studies").resolve() == ROOT / "studies"


def test_gpu_override_reserves_gpus_for_workers() -> None:
    gpu = _load(COMPOSE_GPU)
    worker = gpu["services"]["ray-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert any(a.startswith("--num-gpus=") for a in worker["command"])
    assert "--address=ray-head:6379" in worker["command"]
    assert set(gpu["services"]) == {"ray-worker"}, "CPU-only hosts must not need anything from the override"


# --- secrets -----------------------------------------------------------------------------------

_SECRET_KEY = re.compile(r"(?i)\b[A-Za-z_]*(password|passwd|pwd|token|secret)[A-Za-z_]*[ \t]*[:=][ \t]*(?P<v>[^\s#,}]*)")
_URL_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*:(?P<pw>[^@\s'\"]*)@")


def _docker_files() -> list[Path]:
    return sorted(p for p in DOCKER.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", _docker_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_literal_secret_in_docker_files(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for m in _URL_USERINFO.finditer(text):
        assert m.group("pw").startswith("${"), f"{path.name}: literal password in URL {m.group(0)!r}"
    # key: value pairs outside comments (prose in comments says "Secrets: nothing here ...")
    code = "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in text.splitlines())
    for m in _SECRET_KEY.finditer(code):
        if code[max(0, m.start() - 2) : m.start()] == "${":
            continue  # ${POSTGRES_PASSWORD:?...}: an interpolation, not a value
        if re.match(r"(secretName|secretKeyRef)\b", m.group(0)):
            continue  # the *name* of a Kubernetes Secret
        v = m.group("v").strip("'\"")
        allowed = v == "" or v.startswith(("$", "valueFrom", "/run/secrets/")) or v in ("token", "{name:")
        assert allowed, (
            f"{path.name}: {m.group(0)!r} looks like a literal secret"
        )


def test_env_file_is_ignored_and_example_is_empty() -> None:
    r = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=ROOT)
    assert r.returncode == 0, "docker/.env must be git-ignored"
    for line in (DOCKER / "env.example").read_text().splitlines():
        if re.match(r"^(POSTGRES_PASSWORD|RAY_AUTH_TOKEN)=", line):
            assert line.split("=", 1)[1] == "", line


def test_dockerfile_contract() -> None:
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert froms and all(f == "${BASE_IMAGE}" for f in froms)
    # the base is a build argument whose default stays the official slim image
    assert re.search(r"^ARG BASE_IMAGE=python:\$\{PYTHON_VERSION\}-slim-bookworm$", text, flags=re.M)
    assert re.search(r"^ARG PYTHON_VERSION=3\.11$", text, flags=re.M)
    # no `# syntax=` line: it makes BuildKit pull a frontend image, which needs a registry
    assert not re.search(r"^#\s*syntax=", text, flags=re.M | re.I)
    # pip's configuration for the build comes as a secret, never as a layer or build argument
    for run in re.findall(r"^RUN .*?(?<!\\)$", text, flags=re.M | re.S):
        if "pip install" in run:
            assert "--mount=type=secret,id=pipconf,target=/etc/pip.conf" in run, run[:200]
    assert re.search(r"^ARG TORCH_VERSION=2\.14\.1$", text, flags=re.M)
    assert re.search(r"^ARG TORCHAUDIO_VERSION=2\.11\.\*$", text, flags=re.M)
    assert "[postgres,dashboard]" in text
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    assert re.search(r"^HEALTHCHECK ", text, flags=re.M)
    assert re.search(r"^(CMD|ENTRYPOINT) .*growsearch", text, flags=re.M)
    assert not re.search(r"(?i)^(ARG|ENV)\s+\S*(PASSWORD|TOKEN|SECRET)", text, flags=re.M), "no secrets as ARG/ENV"
    # every build-context file it copies exists and is let through the ignore file
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text()
    for line in re.findall(r"^COPY\s.*$", text, flags=re.M):
        if "--from=" in line:
            continue
        src = [w for w in line.split()[1:] if not w.startswith("--")][0]
        if src != ".":
            assert (ROOT / src).exists(), src
            assert f"!{src}" in ignore, src
    for pat in ("**/.env", "**/*.db"):
        assert pat in ignore


def test_postgres_image_is_a_variable_with_a_debian_recipe(services: dict[str, Any]) -> None:
    """Where the official postgres image cannot be pulled, POSTGRES_IMAGE names one built by
    docker/Dockerfile.postgres from Debian's packages, which takes the same settings."""
    assert services["postgres"]["image"] == "${POSTGRES_IMAGE:-postgres:17-bookworm}"
    assert "build" not in services["postgres"], "a build here would tag the recipe as the official image"
    text = (DOCKER / "Dockerfile.postgres").read_text()
    assert re.findall(r"^FROM\s+(\S+)", text, flags=re.M) == ["${BASE_IMAGE}"]
    assert not re.search(r"^#\s*syntax=", text, flags=re.M | re.I)
    assert re.search(r"apt-get install .*postgresql-\$\{PG_MAJOR\}", text)
    assert re.search(r"^HEALTHCHECK (?:.*\\\n)*.*pg_isready", text, flags=re.M)
    assert "PGDATA=/var/lib/postgresql/data" in text and "VOLUME /var/lib/postgresql/data" in text
    ignore = (DOCKER / "Dockerfile.postgres.dockerignore").read_text().split()
    for src in re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s", text, flags=re.M):
        assert (ROOT / src).exists() and f"!{src}" in ignore, src
    entry = (DOCKER / "postgres-entrypoint.sh").read_text()
    for var in ("POSTGRES_USER", "POSTGRES_PASSWORD_FILE", "POSTGRES_DB", "PGDATA"):
        assert var in entry, var
    assert "setpriv --reuid=postgres" in entry, "the server must not run as root"


def test_dockerfile_pins_match_pyproject() -> None:
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_dep = next(d for d in deps if d.startswith("torch") and not d.startswith("torchaudio"))
    ta_dep = next(d for d in deps if d.startswith("torchaudio"))
    assert "2.14.1" in torch_dep and "2.11.*" in ta_dep
    import ray

    text = DOCKERFILE.read_text()
    assert f"ARG RAY_VERSION={ray.__version__}" in text, "the image's Ray must match the tested one"


# --- KubeRay -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for p in sorted(KUBERAY.glob("*.yaml")):
        for d in yaml.safe_load_all(p.read_text()):
            if d:
                docs[f"{d['kind']}/{d['metadata']['name']}"] = d
    return docs


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_spec["template"]["spec"]["containers"] if "template" in pod_spec else pod_spec["containers"]


def test_raycluster_head_and_gpu_workers(k8s: dict[str, dict[str, Any]]) -> None:
    import ray

    rc = k8s["RayCluster/growsearch"]
    assert rc["apiVersion"] == "ray.io/v1"
    spec = rc["spec"]
    assert spec["rayVersion"] == ray.__version__
    head = spec["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP"
    assert head["rayStartParams"]["num-cpus"] == "0"
    groups = spec["workerGroupSpecs"]
    assert groups
    for g in groups:
        res = _containers(g)[0]["resources"]
        assert res["limits"]["nvidia.com/gpu"] >= 1
        assert g["rayStartParams"]["num-gpus"] == str(res["limits"]["nvidia.com/gpu"])


def test_raycluster_secrets_and_shared_pvc(k8s: dict[str, dict[str, Any]]) -> None:
    from growsearch.redact import redact_url

    rc = k8s["RayCluster/growsearch"]["spec"]
    # Ray token auth through KubeRay (>= 1.6): it injects the token into every Ray container,
    # the autoscaler sidecar and RayJob submitters
    assert rc["authOptions"] == {"mode": "token", "secretName": "growsearch-ray"}
    pvc = k8s["PersistentVolumeClaim/growsearch-shared"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for group in [rc["headGroupSpec"], *rc["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
        assert claims == {"growsearch-shared"}
        c = pod["containers"][0]
        env = {e["name"]: e for e in c["env"]}
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "growsearch-db"
        assert "value" not in env["PGPASSWORD"]
        assert "RAY_AUTH_TOKEN" not in env or "value" not in env["RAY_AUTH_TOKEN"]
        url = env["GROWSEARCH_STORAGE"]["value"]
        assert redact_url(url) == url and url.startswith("postgresql+psycopg://")
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/shared", "/app/runs"} <= mounts


def test_rayjob_and_dashboard_manifests(k8s: dict[str, dict[str, Any]]) -> None:
    job = k8s["RayJob/growsearch-quickstart"]["spec"]
    assert job["clusterSelector"]["ray.io/cluster"] == "growsearch"
    assert "growsearch run " in job["entrypoint"] and "--address auto" in job["entrypoint"]
    sub_env = {e["name"]: e for e in job["submitterPodTemplate"]["spec"]["containers"][0]["env"]}
    assert sub_env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "growsearch-ray", "key": "auth_token"}
    svc = k8s["Service/growsearch-optuna-dashboard"]
    assert svc["spec"]["type"] == "ClusterIP"
    dash = k8s["Deployment/growsearch-optuna-dashboard"]["spec"]["template"]["spec"]["containers"][0]
    assert dash["command"][0] == "optuna-dashboard" and dash["readinessProbe"]["httpGet"]["path"] == "/api/studies"
    assert "valueFrom" in {e["name"]: e for e in dash["env"]}["PGPASSWORD"]


# --- the health-check script, against real services -------------------------------------------

def _healthcheck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    return subprocess.run([sys.executable, str(HEALTHCHECK), *args], capture_output=True, text=True, timeout=120, env=e)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_healthcheck_unknown_role_lists_valid_ones() -> None:
    r = _healthcheck("nonsense")
    assert r.returncode == 1
    assert "'nonsense'" in r.stderr and "ray-head" in r.stderr and "dashboard" in r.stderr


def test_healthcheck_cli_role() -> None:
    r = _healthcheck("cli")
    assert r.returncode == 0, r.stderr


def _compose_dashboard_argv(port: int) -> list[str]:
    """The dashboard service's command from compose.yaml, as compose would run it, on loopback."""
    cmd = yaml.safe_load(COMPOSE.read_text())["services"]["dashboard"]["command"]
    return [c.replace("$$", "$").replace("--host=0.0.0.0", "--host=127.0.0.1").replace("--port=8080", f"--port={port}") for c in cmd]


def _storages(tmp_path: Path) -> list[tuple[str, dict[str, str]]]:
    """(password-less URL, extra env) for a fresh SQLite file and, where configured, PostgreSQL."""
    out = [(f"sqlite:///{tmp_path / 'fresh.db'}", {})]
    pg = os.environ.get("GROWSEARCH_TEST_POSTGRES_URL")
    if pg:
        from sqlalchemy.engine import URL, make_url

        u = make_url(pg)
        bare = URL.create(u.drivername, username=u.username, host=u.host, port=u.port, database=u.database)
        out.append((bare.render_as_string(hide_password=False), {"PGPASSWORD": u.password or ""}))
    return out


def test_compose_dashboard_command_serves_a_fresh_database(tmp_path: Path) -> None:
    """The compose dashboard command (schema first, then optuna-dashboard) on an empty database,
    checked by the health-check script; with $GROWSEARCH_TEST_POSTGRES_URL also on PostgreSQL
    with the password only in $PGPASSWORD, as in the compose cluster."""
    pytest.importorskip("optuna_dashboard")
    for url, extra in _storages(tmp_path):
        port = _free_port()
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "GROWSEARCH_STORAGE": url, **extra}
        assert _healthcheck("dashboard", env={"DASHBOARD_PORT": str(port)}).returncode == 1  # nothing listening
        proc = subprocess.Popen(_compose_dashboard_argv(port), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 90
            while True:
                r = _healthcheck("dashboard", env={"DASHBOARD_PORT": str(port)})
                if r.returncode == 0 or time.monotonic() > deadline or proc.poll() is not None:
                    break
                time.sleep(0.5)
            assert r.returncode == 0, (url, r.stderr)
            assert "dashboard: healthy" in r.stderr
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
        assert "Traceback" not in out, out[-3000:]
        if extra.get("PGPASSWORD"):
            assert extra["PGPASSWORD"] not in out
    assert _healthcheck("dashboard", env={"DASHBOARD_PORT": "80x"}).returncode == 1


@pytest.mark.slow
def test_healthcheck_ray_head_with_token_auth() -> None:
    """A real local Ray GCS with token auth (as in the compose cluster): healthy with the right
    token, unhealthy with a wrong one and once the cluster is gone."""
    import tempfile

    # Ray's socket paths must stay under 107 bytes: a short temp dir, not pytest's tmp_path
    tmp_path = Path(tempfile.mkdtemp(prefix="gsray", dir="/tmp"))
    token = "growsearch-test-" + os.urandom(12).hex()
    script = f"""
import os, subprocess, sys
os.environ["RAY_AUTH_MODE"] = "token"; os.environ["RAY_AUTH_TOKEN"] = {token!r}
import ray
ctx = ray.init(num_cpus=1, include_dashboard=False, _temp_dir={str(tmp_path / 'ray')!r}, configure_logging=False)
gcs = ctx.address_info["gcs_address"]
def hc(tok):
    env = {{**os.environ, "RAY_AUTH_TOKEN": tok, "RAY_HEALTH_ADDRESS": gcs}}
    return subprocess.run([sys.executable, {str(HEALTHCHECK)!r}, "ray-head"], env=env, capture_output=True).returncode
good, bad = hc({token!r}), hc("wrong-" + {token!r})
ray.shutdown()
after = hc({token!r})
print(good, bad, after)
"""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-3:] == ["0", "1", "1"], r.stdout + r.stderr[-2000:]


# --- the driver entrypoint ---------------------------------------------------------------------

DRIVER = DOCKER / "driver-entrypoint.sh"


def _run_driver(tmp_path: Path, argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the entrypoint with a recording `ray` first on PATH; returns its result and the
    argument lists `ray` was called with."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    log = tmp_path / "ray.log"
    (fake / "ray").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (fake / "ray").chmod(0o755)
    full = {"PATH": f"{fake}{os.pathsep}/usr/bin{os.pathsep}/bin", **env}
    r = subprocess.run(["sh", str(DRIVER), *argv], capture_output=True, text=True, env=full, timeout=30)
    calls = log.read_text().splitlines() if log.exists() else []
    return r, calls


def test_driver_joins_the_cluster_before_growsearch_run(tmp_path: Path) -> None:
    r, calls = _run_driver(tmp_path, ["growsearch", "run", "studies/x.yaml"], {"RAY_ADDRESS": "ray-head:6379"})
    # `growsearch` is not on the fake PATH: exec fails after the join, which is what we check
    assert calls == ["start --address=ray-head:6379 --num-cpus=0 --num-gpus=0 --object-store-memory=400000000 --disable-usage-stats"]
    assert "joining the Ray cluster at ray-head:6379" in r.stderr


@pytest.mark.parametrize(
    ("argv", "env", "joins"),
    [
        (["echo", "pareto"], {"RAY_ADDRESS": "ray-head:6379"}, False),             # not a run: no join
        (["echo", "x"], {"RAY_ADDRESS": "ray-head:6379", "GROWSEARCH_DRIVER_JOIN": "1"}, True),
        (["growsearch", "run"], {"RAY_ADDRESS": "ray-head:6379", "GROWSEARCH_DRIVER_JOIN": "0"}, False),
        (["growsearch", "run"], {}, False),                                          # no cluster address
    ],
)
def test_driver_join_rules(tmp_path: Path, argv: list[str], env: dict[str, str], joins: bool) -> None:
    r, calls = _run_driver(tmp_path, argv, env)
    assert bool(calls) == joins, (calls, r.stderr)
    if argv[0] == "echo":
        assert r.returncode == 0 and r.stdout.strip() == argv[1]  # the command itself ran (exec)


def test_compose_driver_uses_the_entrypoint(services: dict[str, Any]) -> None:
    ep = services["driver"]["entrypoint"]
    assert ep[-1] == "/usr/local/bin/growsearch-driver"
    assert "COPY --chmod=0755 docker/driver-entrypoint.sh /usr/local/bin/growsearch-driver" in DOCKERFILE.read_text()


# --- with a Docker engine ----------------------------------------------------------------------

def _compose_available() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client"
    r = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    return None if r.returncode == 0 else "the docker compose plugin is not installed"


def _engine_available() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client"
    r = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    return None if r.returncode == 0 else "no Docker engine reachable (`docker info` failed)"


def test_docker_compose_config() -> None:
    why = _compose_available()
    if why:
        pytest.skip(why)
    env = {**os.environ, "POSTGRES_PASSWORD": "x" * 16, "RAY_AUTH_TOKEN": "y" * 32}
    for files in (["-f", "compose.yaml"], ["-f", "compose.yaml", "-f", "compose.gpu.yaml"]):
        r = subprocess.run(["docker", "compose", *files, "config", "-q"], cwd=DOCKER, capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
    env.pop("POSTGRES_PASSWORD")
    r = subprocess.run(["docker", "compose", "config", "-q"], cwd=DOCKER, capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "POSTGRES_PASSWORD" in r.stderr, "compose must refuse to start without a password"


@pytest.mark.docker
def test_docker_build_image_runs_as_non_root() -> None:
    """Build the image as docker/test-compose.sh does (BuildKit, host network, $BASE_IMAGE if
    set, e.g. the base of docker/build-base.sh) and run growsearch in it as its non-root user."""
    why = _engine_available()
    if why:
        pytest.skip(why)
    docker = os.environ.get("DOCKER", "docker")
    args = ["--build-arg", f"BASE_IMAGE={os.environ['BASE_IMAGE']}"] if os.environ.get("BASE_IMAGE") else []
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    r = subprocess.run([docker, "build", "--network", "host", "-f", "docker/Dockerfile", *args, "-t", "growsearch:compose-test", "."],
                       cwd=ROOT, capture_output=True, text=True, timeout=3600, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    r = subprocess.run([docker, "run", "--rm", "growsearch:compose-test", "growsearch", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "growsearch" in r.stdout
    r = subprocess.run([docker, "run", "--rm", "growsearch:compose-test", "id", "-u"], capture_output=True, text=True)
    assert r.stdout.strip() not in ("", "0")


# --- docker/build-base.sh -----------------------------------------------------------------------

def test_build_base_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    """Whatever is missing (root, debootstrap, an engine, the CA bundle), build-base.sh stops
    before debootstrap with one line and makes nothing."""
    env = {**os.environ, "CA_BUNDLE": str(tmp_path / "no-such-bundle.pem"), "DOCKER": "true", "TMPDIR": str(tmp_path)}
    r = subprocess.run(["sh", str(DOCKER / "build-base.sh")], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("build-base.sh: "), r.stderr
    expected = ("must run as root", "debootstrap is not installed", "no-such-bundle.pem: no such readable file")
    assert any(e in lines[0] for e in expected), lines[0]
    if os.geteuid() == 0 and shutil.which("debootstrap"):
        assert "no-such-bundle.pem" in lines[0]
    assert list(tmp_path.iterdir()) == []
