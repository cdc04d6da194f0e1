#!/usr/bin/env bash
# Runs docker-compose.yml with whichever Compose is installed (v2 plugin or Debian's 1.29),
# loading deploy/offline/offline.env when the offline images were built.
#
#   deploy/stack.sh up [service...]     start (builds the service image if needed) and wait until healthy
#   deploy/stack.sh down                stop and remove containers, networks and volumes
#   deploy/stack.sh ps | logs | <any compose command>
#
# COMPOSE_PROJECT_NAME picks the project (default codefleet); tests use their own.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if [ -f deploy/offline/offline.env ] && [ "${CODEFLEET_USE_OFFLINE_IMAGES:-auto}" != "0" ]; then
  set -a
  # shellcheck disable=SC1091
  . deploy/offline/offline.env
  set +a
fi
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-codefleet}
# the runner reaches the Docker socket through the socket's group, not as root
DOCKER_GID=${DOCKER_GID:-$(stat -c %g /var/run/docker.sock 2>/dev/null || echo 0)}
export DOCKER_GID

# Task containers and networks the runner made for this deployment (they carry its label).
remove_task_containers() {
  local label="codefleet.deployment=$COMPOSE_PROJECT_NAME"
  docker ps -aq --filter "label=$label" | xargs -r docker rm -f >/dev/null 2>&1 || true
  docker network ls -q --filter "label=$label" | xargs -r docker network rm >/dev/null 2>&1 || true
}

if docker compose version >/dev/null 2>&1; then
  compose() { docker compose "$@"; }
elif command -v docker-compose >/dev/null 2>&1; then
  compose() { docker-compose "$@"; }
else
  echo "neither 'docker compose' nor 'docker-compose' is installed" >&2
  exit 1
fi

wait_healthy() {
  local deadline=$((SECONDS + ${STACK_TIMEOUT:-300}))
  while [ $SECONDS -lt $deadline ]; do
    local ids unhealthy=0 total=0
    ids=$(compose ps -q)
    for id in $ids; do
      total=$((total + 1))
      local state
      state=$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")
      case "$state" in
        "running healthy" | "running none") ;;
        "exited"* | "dead"*) echo "container $(docker inspect -f '{{.Name}}' "$id") is $state" >&2; compose logs --tail=50 >&2; return 1 ;;
        *) unhealthy=$((unhealthy + 1)) ;;
      esac
    done
    if [ "$total" -gt 0 ] && [ "$unhealthy" -eq 0 ]; then return 0; fi
    sleep 2
  done
  echo "stack not healthy after ${STACK_TIMEOUT:-300} s" >&2
  compose ps >&2
  return 1
}

cmd=${1:-}
shift || true
case "$cmd" in
  up)
    mkdir -p "${CODEFLEET_DATA_DIR:-/var/lib/codefleet}/repo-pool"
    if ! docker image inspect "${CODEFLEET_AGENT_IMAGE:-codefleet/agent:latest}" >/dev/null 2>&1; then
      NODE_IMAGE=${NODE_IMAGE:-node:24-slim} bash images/agent/build.sh
    fi
    compose up -d "$@"
    wait_healthy
    ;;
  down)
    # the runner first, so that it starts no task container while the rest goes
    compose stop runner >/dev/null 2>&1 || true
    remove_task_containers
    compose down -v --remove-orphans "$@"
    remove_task_containers
    # the runner's environment cache (setups' results) goes with the deployment's other volumes
    docker volume ls -q --filter "label=codefleet.deployment=$COMPOSE_PROJECT_NAME" | xargs -r docker volume rm >/dev/null 2>&1 || true
    ;;
  "")
    sed -n '2,10p' "$0"
    ;;
  *)
    compose "$cmd" "$@"
    ;;
esac
