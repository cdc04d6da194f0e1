#!/usr/bin/env bash
# The main job in one command: bring the platform up (building offline images when no image
# registry is reachable), submit a sample task against the sample repository, follow it phase by
# phase, and print the pushed branch, commit, diff summary, artifact links and the trace link.
# Exit code 0 only if the task succeeded. With OPENAI_API_KEY set, an `openai` agent does the work
# (model: CODEFLEET_DEMO_MODEL, default gpt-4o-mini) instead of the deterministic script agent.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf '\033[1m[demo]\033[0m %s\n' "$*"; }

command -v docker >/dev/null || { echo "Docker is required: install docker.io (or Docker Engine) and start it" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "no Docker engine answers: start dockerd (or Docker Desktop) first" >&2; exit 2; }
export CODEFLEET_DATA_DIR=${CODEFLEET_DATA_DIR:-$ROOT/.data}
mkdir -p "$CODEFLEET_DATA_DIR"

if [ ! -f deploy/offline/offline.env ]; then
  if timeout 60 docker pull -q "${NATS_IMAGE:-nats:2.11-alpine}" >/dev/null 2>&1; then
    say "an image registry is reachable: using the upstream images"
  else
    say "no image registry reachable: building local stand-in images (a few minutes, once)"
    if [ -z "${CODEFLEET_EXTRA_CA_BUNDLE:-}" ] && [ -r /etc/ssl/certs/ca-certificates.crt ]; then export CODEFLEET_EXTRA_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt; fi
    bash deploy/offline/build-images.sh
  fi
fi
say "starting the stack"
bash deploy/stack.sh up
say "stack is up: registry http://localhost:${REGISTRY_PORT:-8080}, artifacts http://localhost:${ARTIFACT_STORE_PORT:-8081}, Jaeger http://localhost:${JAEGER_UI_PORT:-16686}"
[ -d node_modules/undici ] || { say "installing the CLI's dependencies (npm install, once)"; npm install --no-audit --no-fund >/dev/null; }

# Submit the sample task with the codefleet CLI and follow it live; with an OpenAI key, the
# built-in openai agent does the work instead of the script.
export CODEFLEET_URL=${CODEFLEET_URL:-http://localhost:${REGISTRY_PORT:-8080}}
export CODEFLEET_TOKEN=${CODEFLEET_TOKEN:-$(printf '%s' "${CODEFLEET_API_TOKENS:-codefleet-dev-token}" | cut -d, -f1)}
export CODEFLEET_JAEGER_URL=${CODEFLEET_JAEGER_URL:-http://localhost:${JAEGER_UI_PORT:-16686}}
agent=()
if [ -n "${OPENAI_API_KEY:-}" ]; then agent=(--agent openai --model "${CODEFLEET_DEMO_MODEL:-gpt-4o-mini}"); fi
status=0
node --conditions=source --import tsx services/cli/src/bin.ts submit -f deploy/demo-task.yaml "${agent[@]}" --follow || status=$?
echo
say "stop the stack with: npm run stack:down"
exit "$status"
