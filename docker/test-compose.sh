#!/usr/bin/env bash
# test-compose.sh: run the compose cluster for real and check it, then remove all of it.
#
#   docker/test-compose.sh                      # from anywhere; needs a Docker engine + compose v2
#
# 1. builds the growsearch image (docker/Dockerfile) and a PostgreSQL image from Debian's
#    packages (docker/Dockerfile.postgres), reusing the build cache;
# 2. starts PostgreSQL, a Ray head and one Ray worker (1 CPU each, so trials land on both) and
#    waits until each is healthy;
# 3. runs the quickstart study from the driver service against PostgreSQL with
#    --address ray-head:6379, checks that the study holds the budget of COMPLETE trials, none
#    left RUNNING, and that trials ran on the head and on the worker (the `node` user attribute);
# 4. runs `growsearch pareto` and starts the dashboard service on the same database, and asks
#    its HTTP API (published on the host's 127.0.0.1) for the study;
# 5. tears everything down, volumes included, and checks that no container, network or volume
#    of its compose project is left. Teardown also runs on failure and on Ctrl-C.
#
# Prints one JSON line of timings at the end (also in $LOG_DIR/timings.json). Any failure ends
# with one line naming what failed and the log to read; exit status 1 (2 for bad settings).
#
# Environment (all optional):
#   DOCKER           docker client (default docker). Builds need BuildKit: the buildx plugin, or
#                    a client older than 23 (e.g. Debian's docker.io) where DOCKER_BUILDKIT=1 is used
#   BASE_IMAGE       base of both images (default: the Dockerfiles' own; without a registry
#                    make one with docker/build-base.sh and set growsearch-base:bookworm)
#   POSTGRES_IMAGE   use this PostgreSQL image instead of building docker/Dockerfile.postgres
#   GROWSEARCH_IMAGE tag of the growsearch image (default growsearch:compose-test)
#   TORCH_INDEX_URL, TORCH_VERSION   build args of docker/Dockerfile (CPU / GPU torch)
#   PIP_CONF         a pip.conf for the build (private index, find-links), given as a BuildKit secret
#   WHEEL_DIRS       colon-separated folders of wheels already on this host: served on 127.0.0.1
#                    during the build and added to pip's find-links (a speed-up, never needed)
#   TRIALS           budget of COMPLETE trials (default 4)
#   LOG_DIR          where logs go (default a new /tmp/growsearch-compose-test.XXXXXX)
#   COMPOSE_PROJECT  compose project name (default growsearch-test-<pid>); must not be in use
#   UP_TIMEOUT       seconds a service may take to become healthy (default 300)
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
DOCKER=${DOCKER:-docker}
project=${COMPOSE_PROJECT:-growsearch-test-$$}
image=${GROWSEARCH_IMAGE:-growsearch:compose-test}
trials=${TRIALS:-4}
up_timeout=${UP_TIMEOUT:-300}
logdir=${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/growsearch-compose-test.XXXXXX")}
mkdir -p "$logdir"
storage=postgresql+psycopg://growsearch@postgres:5432/growsearch

# Messages go to the script's own stderr (fd 3): a trap runs while the interrupted command's
# redirection (e.g. into driver.log) is still in effect.
exec 3>&2
say() { echo "test-compose: $*" >&3; }
# one line naming what failed and the log to read, then teardown (EXIT trap)
fail() { echo "test-compose: FAILED: $1; read $2" >&3; exit 1; }
bad_setting() { echo "test-compose: $*" >&3; exit 2; }

case "$trials" in ''|*[!0-9]*) bad_setting "TRIALS must be a positive whole number (got '$trials')";; esac
[ "$trials" -ge 1 ] || bad_setting "TRIALS must be at least 1"
case "$up_timeout" in ''|*[!0-9]*) bad_setting "UP_TIMEOUT must be seconds (got '$up_timeout')";; esac
case "$project" in *[!a-z0-9_-]*|'') bad_setting "COMPOSE_PROJECT must be lower-case letters, digits, - and _ (got '$project')";; esac

now() { date +%s; }
t_start=$(now)

# --- the engine --------------------------------------------------------------------------------
command -v "$DOCKER" >/dev/null 2>&1 || fail "no docker client ('$DOCKER' not found)" "the Docker installation guide"
command -v python3 >/dev/null 2>&1 || fail "python3 is needed on this host (free ports, the dashboard query)" "the script's header"
if ! "$DOCKER" info >"$logdir/docker-info.log" 2>&1; then
  fail "no Docker engine reachable (\`$DOCKER info\` failed)" "$logdir/docker-info.log"
fi
"$DOCKER" compose version >"$logdir/compose-version.log" 2>&1 \
  || fail "the docker compose v2 plugin is missing" "$logdir/compose-version.log"
if [ -n "$("$DOCKER" ps -aq --filter "label=com.docker.compose.project=$project")" ]; then
  bad_setting "compose project $project already has containers; choose another COMPOSE_PROJECT"
fi

# BuildKit: the buildx plugin, else the classic client's DOCKER_BUILDKIT=1 (clients < 23 only)
if ! "$DOCKER" buildx version >/dev/null 2>&1; then
  major=$("$DOCKER" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
  case "$major" in
    ''|*[!0-9]*) major=0 ;;
  esac
  if [ "$major" -ge 23 ]; then
    "$DOCKER" buildx version >"$logdir/buildx.log" 2>&1 || true
    fail "the images need BuildKit: install the docker buildx plugin, or set DOCKER to a client older than 23 (e.g. Debian's /usr/bin/docker)" "$logdir/buildx.log"
  fi
fi
export DOCKER_BUILDKIT=1

# --- teardown: always ----------------------------------------------------------------------------
envfile="$logdir/compose.env"
compose() { "$DOCKER" compose --project-name "$project" --project-directory "$here" -f "$here/compose.yaml" --env-file "$envfile" "$@"; }
wheel_server_pid=
started=0
leftovers() {
  {
    "$DOCKER" ps -aq --filter "label=com.docker.compose.project=$project"
    "$DOCKER" network ls -q --filter "label=com.docker.compose.project=$project"
    "$DOCKER" volume ls -q --filter "label=com.docker.compose.project=$project"
  } 2>/dev/null
}
teardown() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$wheel_server_pid" ]; then kill "$wheel_server_pid" 2>/dev/null || true; fi
  if [ "$started" = 1 ]; then
    say "tearing down compose project $project (volumes included)"
    for s in postgres ray-head ray-worker dashboard; do
      compose logs --no-color "$s" >"$logdir/$s.log" 2>&1 || true
    done
    compose --profile driver down --volumes --remove-orphans --timeout 20 >"$logdir/down.log" 2>&1 || true
    local left
    left=$(leftovers)
    if [ -n "$left" ]; then
      echo "test-compose: FAILED: containers, networks or volumes of project $project are left: $(echo $left); read $logdir/down.log" >&3
      [ "$rc" = 0 ] && rc=1
    fi
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'say "interrupted"; exit 130' INT TERM

# --- build ---------------------------------------------------------------------------------------
build_args=()
[ -n "${BASE_IMAGE:-}" ] && build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
if [ -n "${BASE_IMAGE:-}" ] && ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  say "base image $BASE_IMAGE is not here: the build will try to pull it (docker/build-base.sh makes one from Debian's packages)"
fi
wheel_args=()
[ -n "${TORCH_INDEX_URL:-}" ] && wheel_args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
[ -n "${TORCH_VERSION:-}" ] && wheel_args+=(--build-arg "TORCH_VERSION=$TORCH_VERSION")

pipconf="$logdir/pip.conf"
: >"$pipconf"
if [ -n "${PIP_CONF:-}" ]; then
  [ -r "$PIP_CONF" ] || bad_setting "PIP_CONF=$PIP_CONF: no such readable file"
  cat "$PIP_CONF" >"$pipconf"
fi
if [ -n "${WHEEL_DIRS:-}" ]; then
  served="$logdir/wheels"
  mkdir -p "$served"
  links=
  i=0
  IFS=: read -r -a dirs <<<"$WHEEL_DIRS"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  for d in "${dirs[@]}"; do
    [ -d "$d" ] || bad_setting "WHEEL_DIRS: $d is not a folder"
    ln -sfn "$d" "$served/$i"
    links="$links http://127.0.0.1:$port/$i/"
    i=$((i + 1))
  done
  python3 -m http.server --bind 127.0.0.1 --directory "$served" "$port" >"$logdir/wheel-server.log" 2>&1 &
  wheel_server_pid=$!
  if grep -q '^\[global\]' "$pipconf"; then
    sed -i "s#^\[global\]#[global]\nfind-links =$links#" "$pipconf"
  else
    printf '[global]\nfind-links =%s\n' "$links" >>"$pipconf"
  fi
fi

pg_image=${POSTGRES_IMAGE:-growsearch-postgres:compose-test}
say "building $image (log: $logdir/build-growsearch.log)"
t0=$(now)
"$DOCKER" build --network host -f "$here/Dockerfile" "${build_args[@]}" "${wheel_args[@]}" \
    --secret "id=pipconf,src=$pipconf" -t "$image" "$root" >"$logdir/build-growsearch.log" 2>&1 \
  || fail "the build of $image failed" "$logdir/build-growsearch.log"
t_build_image=$(( $(now) - t0 ))
t0=$(now)
if [ -z "${POSTGRES_IMAGE:-}" ]; then
  say "building $pg_image from Debian's packages (log: $logdir/build-postgres.log)"
  "$DOCKER" build --network host -f "$here/Dockerfile.postgres" "${build_args[@]}" -t "$pg_image" "$root" \
      >"$logdir/build-postgres.log" 2>&1 \
    || fail "the build of $pg_image failed" "$logdir/build-postgres.log"
fi
t_build_pg=$(( $(now) - t0 ))
if [ -n "$wheel_server_pid" ]; then kill "$wheel_server_pid" 2>/dev/null || true; wheel_server_pid=; fi

# --- start ---------------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
dash_port=$(free_port)
umask 077
cat >"$envfile" <<EOF
POSTGRES_PASSWORD=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
RAY_AUTH_TOKEN=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
GROWSEARCH_IMAGE=$image
POSTGRES_IMAGE=$pg_image
RAY_WORKERS=1
RAY_HEAD_CPUS=1
RAY_WORKER_CPUS=1
OPTUNA_DASHBOARD_PORT=$dash_port
RAY_DASHBOARD_PORT=$(free_port)
EOF
umask 022

# wait until each named service is healthy; else one line naming the first that is not
wait_healthy() {
  local deadline=$(( $(now) + up_timeout )) s cid st pending
  while :; do
    pending=
    for s in "$@"; do
      cid=$(compose ps -q "$s" 2>/dev/null | head -n1)
      st=missing
      [ -n "$cid" ] && st=$("$DOCKER" inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$cid" 2>/dev/null || echo missing)
      if [ "$st" != healthy ]; then pending="$s ($st)"; break; fi
    done
    [ -z "$pending" ] && return 0
    # a container that has stopped (or never started: `up` gave up on it) will not become
    # healthy: say so now, not at the deadline
    case "$st" in created|exited|dead) deadline=0 ;; esac
    if [ "$(now)" -ge "$deadline" ]; then
      s=${pending%% *}
      compose logs --no-color "$s" >"$logdir/$s.log" 2>&1 || true
      fail "service $pending never became healthy (waited up to ${up_timeout}s)" "$logdir/$s.log"
    fi
    sleep 3
  done
}

say "starting postgres, ray-head and one ray-worker (project $project)"
t0=$(now)
started=1
compose up -d --no-build postgres ray-head ray-worker >"$logdir/up.log" 2>&1 || {
  # a service whose health check failed makes `up` give up on its dependants: name it
  wait_healthy postgres ray-head ray-worker
  fail "docker compose up failed" "$logdir/up.log"
}
wait_healthy postgres ray-head ray-worker
t_up=$(( $(now) - t0 ))

# --- the study -----------------------------------------------------------------------------------
say "running the quickstart study ($trials trials) from the driver (log: $logdir/driver.log)"
t0=$(now)
compose run --rm -T driver growsearch run studies/quickstart.yaml --trials "$trials" \
    --storage "$storage" --address ray-head:6379 >"$logdir/driver.log" 2>&1 \
  || fail "the quickstart study failed in the driver" "$logdir/driver.log"
t_study=$(( $(now) - t0 ))

# every Ray node's object store must fit its /dev/shm (else Ray falls back to slow /tmp)
compose logs --no-color ray-head ray-worker >"$logdir/ray-nodes.log" 2>&1 || true
if grep -h "instead of /dev/shm" "$logdir/ray-nodes.log" "$logdir/driver.log" >"$logdir/shm.log"; then
  fail "a Ray node's object store does not fit in /dev/shm (set --object-store-memory below shm_size)" "$logdir/shm.log"
fi

head_host=$("$DOCKER" inspect -f '{{.Config.Hostname}}' "$(compose ps -q ray-head)")
worker_host=$("$DOCKER" inspect -f '{{.Config.Hostname}}' "$(compose ps -q ray-worker | head -n1)")
t0=$(now)
compose run --rm -T -e GROWSEARCH_DRIVER_JOIN=0 -e "EXPECT_TRIALS=$trials" \
    -e "EXPECT_NODES=$head_host $worker_host" driver python - <"$here/check_study.py" \
    >"$logdir/check.log" 2>&1 || fail "the study check failed: $(tail -n1 "$logdir/check.log")" "$logdir/check.log"
compose run --rm -T driver growsearch pareto quickstart >"$logdir/pareto.log" 2>&1 \
  || fail "growsearch pareto failed" "$logdir/pareto.log"
grep -q . "$logdir/pareto.log" || fail "growsearch pareto printed nothing" "$logdir/pareto.log"

# --- the dashboard, from the host ----------------------------------------------------------------
compose up -d --no-build dashboard >>"$logdir/up.log" 2>&1 || true
wait_healthy dashboard
python3 - "$dash_port" >"$logdir/dashboard-api.log" 2>&1 <<'EOF' || fail "the dashboard's API did not list the study" "$logdir/dashboard-api.log"
import json, sys, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/api/studies"
with urllib.request.urlopen(url, timeout=30) as resp:
    studies = json.load(resp)["study_summaries"]
names = [s["study_name"] for s in studies]
print("dashboard lists:", names)
sys.exit(0 if "quickstart" in names else 1)
EOF
t_checks=$(( $(now) - t0 ))

# --- teardown, timed -----------------------------------------------------------------------------
t0=$(now)
trap - EXIT
started=0
for s in postgres ray-head ray-worker dashboard; do
  compose logs --no-color "$s" >"$logdir/$s.log" 2>&1 || true
done
compose --profile driver down --volumes --remove-orphans --timeout 20 >"$logdir/down.log" 2>&1 \
  || fail "docker compose down failed" "$logdir/down.log"
left=$(leftovers)
[ -z "$left" ] || fail "containers, networks or volumes of project $project are left: $(echo $left)" "$logdir/down.log"
t_down=$(( $(now) - t0 ))
trap - INT TERM

nodes=$(tail -n1 "$logdir/check.log")
timings=$(printf '{"build_image_s": %d, "build_postgres_s": %d, "up_s": %d, "study_s": %d, "checks_s": %d, "down_s": %d, "total_s": %d, "trials": %d, "check": %s, "logs": "%s"}' \
  "$t_build_image" "$t_build_pg" "$t_up" "$t_study" "$t_checks" "$t_down" "$(( $(now) - t_start ))" "$trials" "$nodes" "$logdir")
echo "$timings" >"$logdir/timings.json"
echo "$timings"
