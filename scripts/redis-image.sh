#!/usr/bin/env bash
# Build the local images the docker backend's tests run, without any
# container registry: shiploop-redis:local ($REDIS_IMAGE), Debian bookworm
# minbase with redis-server and redis-tools, from `debootstrap` against the
# Debian mirror apt uses (DEBIAN_MIRROR overrides), cached as a tarball in
# $SHIPLOOP_IMAGE_CACHE and imported with `docker import`. Steps use it for
# redis-cli, services for redis-server. Needs root, debootstrap and a
# running Docker engine. Idempotent: does nothing when the image exists.
set -euo pipefail
REDIS_IMAGE=${REDIS_IMAGE:-shiploop-redis:local}
cache=${SHIPLOOP_IMAGE_CACHE:-/var/cache/shiploop-images}
docker=${DOCKER:-docker}
suite=bookworm
packages=redis-server,redis-tools
"$docker" image inspect "$REDIS_IMAGE" >/dev/null 2>&1 && exit 0
mirror=${DEBIAN_MIRROR:-$(awk 'tolower($1) == "uris:" { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}
mkdir -p "$cache"
tarball="$cache/rootfs-$suite-redis.tar"
if [ ! -s "$tarball" ]; then
  dir=$(mktemp -d "$cache/redis.XXXXXX")
  trap 'rm -rf "$dir"' EXIT
  for i in 1 2 3; do
    rm -rf "$dir" && mkdir -p "$dir"
    timeout 900 debootstrap --variant=minbase --include="$packages" "$suite" "$dir" "$mirror" && break
    [ "$i" = 3 ] && exit 1
    sleep 10
  done
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
  tar -C "$dir" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
"$docker" import "$tarball" "$REDIS_IMAGE" >/dev/null
echo "built $REDIS_IMAGE from $tarball"
