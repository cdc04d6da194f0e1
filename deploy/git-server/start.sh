#!/bin/sh
# A git server for the demo and the end-to-end tests: `git daemon` over git://, push enabled,
# holding a sample repository created on first start from /opt/codefleet/sample.
set -eu
ROOT=${GIT_ROOT:-/srv/git}
mkdir -p "$ROOT"
if [ ! -d "$ROOT/sample.git" ]; then
  work=$(mktemp -d)
  cp -r /opt/codefleet/sample/. "$work/"
  cd "$work"
  git init -q --initial-branch=main
  git -c user.name=codefleet -c user.email=codefleet@localhost add -A
  git -c user.name=codefleet -c user.email=codefleet@localhost commit -q -m "sample project"
  git clone -q --bare "$work" "$ROOT/sample.git"
  git -C "$ROOT/sample.git" config core.logAllRefUpdates always
  rm -rf "$work"
fi
exec git daemon --reuseaddr --export-all --enable=receive-pack --base-path="$ROOT" --listen=0.0.0.0 --port=9418 "$ROOT"
