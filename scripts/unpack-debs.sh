#!/usr/bin/env bash
# unpack-debs.sh CACHE MARKER PACKAGE...: download Debian packages and unpack them into CACHE (dpkg-deb -x),
# never installing them. For tools the tests run from a private copy because installing them would change
# this machine: firewalld and docker.io would own its firewall from the next boot. Idempotent: nothing is
# done when CACHE/MARKER exists. Called by scripts/install-system-deps.sh test (as root).
set -euo pipefail
cache=$1 marker=$2
shift 2
[ -e "$cache/$marker" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chown _apt "$tmp" 2>/dev/null || true   # apt downloads as _apt when it can
if ! (cd "$tmp" && apt-get download -q "$@" >/dev/null 2>&1); then
  apt-get update -q >/dev/null || apt-get update
  (cd "$tmp" && apt-get download -q "$@" >/dev/null)
fi
rm -rf "$cache.new"
mkdir -p "$cache.new"
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$cache.new"; done
rm -rf "$cache"
mv "$cache.new" "$cache"
echo "hostguard setup: unpacked $* into $cache (not installed)"
