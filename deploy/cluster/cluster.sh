#!/usr/bin/env bash
# The compose stack with a three-node NATS cluster and two runner hosts (docker-compose.cluster.yml
# over docker-compose.yml), through deploy/stack.sh:
#
#   deploy/cluster/cluster.sh up | down | ps | logs | <any compose command>
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export COMPOSE_FILE="$ROOT/docker-compose.yml:$ROOT/deploy/cluster/docker-compose.cluster.yml"
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-codefleet}
# the offline images carry NATS 2.9 (deploy/offline/offline.env names its config)
if [ -z "${NATS_CLUSTER_CONFIG_FILE:-}" ] && [ -f "$ROOT/deploy/offline/offline.env" ] && [ "${CODEFLEET_USE_OFFLINE_IMAGES:-auto}" != "0" ] &&
  grep -q '^NATS_CONFIG_FILE=nats-2.9.conf' "$ROOT/deploy/offline/offline.env"; then
  export NATS_CLUSTER_CONFIG_FILE=cluster-2.9.conf
fi
if [ "${1:-}" = "up" ]; then mkdir -p "${CODEFLEET_DATA_DIR:-/var/lib/codefleet}/host-b/repo-pool"; fi
if [ "${1:-}" = "down" ]; then
  # the second host's runner first, as stack.sh does with the first
  bash "$ROOT/deploy/stack.sh" stop runner-b >/dev/null 2>&1 || true
fi
exec bash "$ROOT/deploy/stack.sh" "$@"
