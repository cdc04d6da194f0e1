#!/bin/sh
# The sample project's tests: the greeting must mention codefleet.
set -e
out=$(sh greet.sh)
case "$out" in
  *codefleet*) echo "ok 1 - greeting mentions codefleet" ;;
  *) echo "not ok 1 - greeting is '$out'"; exit 1 ;;
esac
