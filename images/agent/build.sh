#!/usr/bin/env bash
# Builds the agent images: codefleet/agent (base) and, as asked in CODEFLEET_AGENT_VARIANTS
# ("base opencode claude-code"; default: base), the OpenCode and Claude Code variants.
# NODE_IMAGE picks the base (node:24-slim upstream, codefleet/node:offline offline).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
NODE_IMAGE=${NODE_IMAGE:-node:24-slim}
VARIANTS=${CODEFLEET_AGENT_VARIANTS:-base}
log() { printf '[images] %s\n' "$*" >&2; }
hash_of() { { printf '%s\n' "$1"; sha256sum images/agent/* images/ca/* 2>/dev/null; } | sha256sum | cut -c1-16; }
current() { docker image inspect -f '{{ index .Config.Labels "codefleet.input-hash" }}' "$1" 2>/dev/null || true; }
build() {
  local image=$1 hash=$2 file=$3; shift 3
  if [ "${CODEFLEET_FORCE_REBUILD:-0}" != "1" ] && [ "$(current "$image")" = "$hash" ]; then log "$image is up to date"; return; fi
  log "building $image"
  local t=$SECONDS
  docker build -q --label "codefleet.input-hash=$hash" -t "$image" -f "$file" "$@" images >/dev/null
  log "built $image in $((SECONDS - t)) s"
}
node_hash=$(docker image inspect -f '{{.Id}}' "$NODE_IMAGE" 2>/dev/null || echo "$NODE_IMAGE")
build codefleet/agent:latest "$(hash_of "$node_hash")" images/agent/Dockerfile --build-arg "NODE_IMAGE=$NODE_IMAGE"
base_hash=$(current codefleet/agent:latest)
for v in $VARIANTS; do
  case "$v" in
    base) ;;
    opencode) build codefleet/agent-opencode:latest "$(hash_of "$base_hash opencode")" images/agent/Dockerfile.opencode ;;
    claude-code) build codefleet/agent-claude-code:latest "$(hash_of "$base_hash claude")" images/agent/Dockerfile.claude-code ;;
    *) echo "unknown agent variant '$v'" >&2; exit 1 ;;
  esac
done
