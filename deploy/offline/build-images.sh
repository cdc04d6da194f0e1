#!/usr/bin/env bash
# Builds every image the codefleet stack and its tests use, without an image registry:
# a Debian base from debootstrap, then local stand-ins for node, nats, postgres and jaeger, the
# service image and the agent images on top of it. Work that is already up to date is skipped
# (each image carries a hash of its inputs in the label codefleet.input-hash).
#
#   npm run images:offline                 # or: bash deploy/offline/build-images.sh
#
# Settings (environment):
#   CODEFLEET_EXTRA_CA_BUNDLE  PEM bundle the images must trust (TLS-intercepting or corporate proxy);
#                              default: this host's trust store (/etc/ssl/certs/ca-certificates.crt)
#                              when readable, so a build trusts what the host trusts; "none" for none
#   DEBIAN_MIRROR              default http://deb.debian.org/debian
#   DEBIAN_SUITE               default bookworm
#   CODEFLEET_FORCE_REBUILD=1  rebuild even when inputs did not change
#   CODEFLEET_IMAGES           space-separated subset: base node nats postgres trace-sink services agents egress
#
# It writes deploy/offline/offline.env: the image names that make docker-compose.yml and the tests
# use these stand-ins (deploy/stack.sh and the test harness load it automatically).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${DEBIAN_SUITE:-bookworm}
BASE_IMAGE=codefleet/debian:${SUITE}
NODE_IMAGE=codefleet/node:offline
WANT=${CODEFLEET_IMAGES:-base node nats postgres trace-sink services agents egress}
ENV_FILE=deploy/offline/offline.env

log() { printf '[images] %s\n' "$*" >&2; }
# Package downloads inside the builds go through whatever the host goes through: trust the same CAs.
if [ -z "${CODEFLEET_EXTRA_CA_BUNDLE:-}" ] && [ -r /etc/ssl/certs/ca-certificates.crt ]; then
  export CODEFLEET_EXTRA_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
fi
[ "${CODEFLEET_EXTRA_CA_BUNDLE:-}" = none ] && unset CODEFLEET_EXTRA_CA_BUNDLE
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }
wants() { [[ " $WANT " == *" $1 "* ]]; }

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd)"

# hash of files (contents and names) plus extra strings
input_hash() {
  local extra=$1; shift
  {
    printf '%s\n' "$extra"
    find "$@" -type f ! -path '*/node_modules/*' ! -path '*/dist/*' ! -name '*.tsbuildinfo' -print0 2>/dev/null | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
}

current_hash() { docker image inspect -f '{{ index .Config.Labels "codefleet.input-hash" }}' "$1" 2>/dev/null || true; }

up_to_date() {
  [ "${CODEFLEET_FORCE_REBUILD:-0}" != "1" ] && [ "$(current_hash "$1")" = "$2" ]
}

# build IMAGE HASH CONTEXT DOCKERFILE [docker build args...]
build() {
  local image=$1 hash=$2 context=$3 dockerfile=$4; shift 4
  if up_to_date "$image" "$hash"; then log "$image is up to date"; return; fi
  log "building $image"
  local started=$SECONDS
  docker build -q --label "codefleet.input-hash=$hash" -t "$image" -f "$dockerfile" "$@" "$context" >/dev/null
  log "built $image in $((SECONDS - started)) s"
}

stage_extra_ca() {
  rm -f images/ca/extra-ca.pem
  if [ -n "${CODEFLEET_EXTRA_CA_BUNDLE:-}" ]; then
    [ -r "$CODEFLEET_EXTRA_CA_BUNDLE" ] || die "CODEFLEET_EXTRA_CA_BUNDLE=$CODEFLEET_EXTRA_CA_BUNDLE is not readable"
    cp "$CODEFLEET_EXTRA_CA_BUNDLE" images/ca/extra-ca.pem
  fi
}
ca_hash() { if [ -n "${CODEFLEET_EXTRA_CA_BUNDLE:-}" ]; then sha256sum "$CODEFLEET_EXTRA_CA_BUNDLE" | cut -c1-16; else echo none; fi; }

build_base() {
  local include=ca-certificates,git,openssh-client,wget,procps
  local hash
  hash=$(printf '%s %s %s %s %s' "$SUITE" "$MIRROR" "$include" "$(ca_hash)" v1 | sha256sum | cut -c1-16)
  if up_to_date "$BASE_IMAGE" "$hash"; then log "$BASE_IMAGE is up to date"; return; fi
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  local dir
  dir=$(mktemp -d /tmp/codefleet-rootfs.XXXXXX)
  trap 'rm -rf "$dir"' RETURN
  log "debootstrap $SUITE from $MIRROR (about a minute)"
  local started=$SECONDS
  debootstrap --variant=minbase --include="$include" "$SUITE" "$dir" "$MIRROR" >/tmp/codefleet-debootstrap.log 2>&1 ||
    die "debootstrap failed; see /tmp/codefleet-debootstrap.log"
  if [ -n "${CODEFLEET_EXTRA_CA_BUNDLE:-}" ]; then
    cp "$CODEFLEET_EXTRA_CA_BUNDLE" "$dir/usr/local/share/ca-certificates/codefleet-extra.crt"
    chroot "$dir" update-ca-certificates >/dev/null 2>&1 || cat "$CODEFLEET_EXTRA_CA_BUNDLE" >>"$dir/etc/ssl/certs/ca-certificates.crt"
  fi
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" -c . | docker import \
    --change "LABEL codefleet.input-hash=$hash" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
  log "imported $BASE_IMAGE in $((SECONDS - started)) s"
}

build_node() {
  local node npmdir ctx hash
  node=$(readlink -f "$(command -v node)")
  npmdir=$(npm root -g 2>/dev/null)/npm
  [ -d "$npmdir" ] || die "cannot find the host's npm (looked in $npmdir)"
  hash=$(input_hash "$("$node" --version) $(npm --version 2>/dev/null) $(current_hash "$BASE_IMAGE")" images/node)
  if up_to_date "$NODE_IMAGE" "$hash"; then log "$NODE_IMAGE is up to date"; return; fi
  ctx=$(mktemp -d /tmp/codefleet-node.XXXXXX)
  cp "$node" "$ctx/node"
  cp -r "$npmdir" "$ctx/npm"
  build "$NODE_IMAGE" "$hash" "$ctx" images/node/Dockerfile.offline --build-arg "BASE_IMAGE=$BASE_IMAGE"
  rm -rf "$ctx"
}

stage_extra_ca
wants base && build_base
wants node && build_node
base_hash=$(current_hash "$BASE_IMAGE")
node_hash=$(current_hash "$NODE_IMAGE")
wants nats && build codefleet/nats:offline "$(input_hash "$base_hash" images/nats)" images/nats images/nats/Dockerfile.offline --build-arg "BASE_IMAGE=$BASE_IMAGE"
wants postgres && build codefleet/postgres:offline "$(input_hash "$base_hash" images/postgres)" images/postgres images/postgres/Dockerfile.offline --build-arg "BASE_IMAGE=$BASE_IMAGE"
wants trace-sink && build codefleet/trace-sink:offline "$(input_hash "$node_hash" images/trace-sink)" images/trace-sink images/trace-sink/Dockerfile --build-arg "NODE_IMAGE=$NODE_IMAGE"
wants services && build codefleet/services:latest \
  "$(input_hash "$node_hash $(ca_hash)" package.json package-lock.json tsconfig.base.json tsconfig.json contracts services images/service images/ca)" \
  . images/service/Dockerfile --build-arg "NODE_IMAGE=$NODE_IMAGE"
# the task containers' egress proxy (Debian's squid) is codefleet's own image: built from the same base
wants egress && build codefleet/egress-proxy:latest "$(input_hash "$base_hash" images/egress-proxy)" images/egress-proxy images/egress-proxy/Dockerfile --build-arg "BASE_IMAGE=$BASE_IMAGE"
if wants agents && [ -f images/agent/build.sh ]; then
  NODE_IMAGE=$NODE_IMAGE BASE_IMAGE=$BASE_IMAGE bash images/agent/build.sh
fi

cat >"$ENV_FILE" <<EOF
# Written by deploy/offline/build-images.sh: local stand-ins for the upstream images.
NODE_IMAGE=$NODE_IMAGE
NATS_IMAGE=codefleet/nats:offline
NATS_CONFIG_FILE=nats-2.9.conf
POSTGRES_IMAGE=codefleet/postgres:offline
JAEGER_IMAGE=codefleet/trace-sink:offline
CODEFLEET_IMAGE=codefleet/services:latest
CODEFLEET_AGENT_IMAGE=codefleet/agent:latest
EOF
log "wrote $ENV_FILE"
