#!/bin/sh
# growsearch-driver: run a command in the compose `driver` service.
#
# A Ray driver must run on a Ray node: `ray.init(address="ray-head:6379")` looks for a raylet
# on its own host. So before `growsearch run`, this container joins the cluster as a node
# with no CPUs and no GPUs (trials never land here), then runs the command. The node leaves
# when the container stops. Other commands (pareto, export, show ...) only need the database
# and run directly.
#
#   RAY_ADDRESS             the head's GCS (host:port); unset: never join
#   GROWSEARCH_DRIVER_JOIN  1: always join; 0: never; unset: join for `growsearch run` only
set -eu

join=0
case "${GROWSEARCH_DRIVER_JOIN:-}" in
  1) join=1 ;;
  0) join=0 ;;
  *) if [ "${1:-}" = "growsearch" ] && [ "${2:-}" = "run" ]; then join=1; fi ;;
esac

if [ "$join" = 1 ] && [ -n "${RAY_ADDRESS:-}" ]; then
  echo "growsearch-driver: joining the Ray cluster at $RAY_ADDRESS as a 0-CPU node" >&2
  # the driver's node runs no trials: a small object store that fits the container's /dev/shm
  # (compose gives it 1gb; Ray's default would not fit and fall back to slow /tmp)
  ray start --address="$RAY_ADDRESS" --num-cpus=0 --num-gpus=0 \
    --object-store-memory="${GROWSEARCH_DRIVER_OBJECT_STORE_BYTES:-400000000}" --disable-usage-stats >/dev/null
fi

exec "$@"
