#!/usr/bin/env bash
# Build the images docker-compose.yml runs, without any container registry:
#
#   shiploop:local           Debian bookworm (minbase) with git, Mercurial,
#                            ca-certificates and ssh, plus the shiploop binary
#                            built from this checkout (uid 10001)
#   shiploop-nats:local      the same root file system running nats-server,
#                            built with `go install` at the version pkg/go.mod
#                            embeds (so split mode runs the NATS it is tested with)
#   shiploop-postgres:local  the same root file system running Debian's
#                            PostgreSQL through scripts/postgres-entrypoint.sh
#
# The root file system comes from `debootstrap --variant=minbase` against the
# Debian mirror apt is configured with (DEBIAN_MIRROR overrides), is cached
# as a tarball in $SHIPLOOP_IMAGE_CACHE and imported once with `docker
# import`; the binaries are copied into a container of it and committed as
# the three images. Names: $SHIPLOOP_IMAGE, $NATS_IMAGE, $POSTGRES_IMAGE
# (the compose file reads the same variables). Needs root, debootstrap, go
# and a running Docker engine. Every network step is bounded and retried.
# The shiploop binary is left in $SHIPLOOP_IMAGE_CACHE/bin for the host's CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

SHIPLOOP_IMAGE=${SHIPLOOP_IMAGE:-shiploop:local}
NATS_IMAGE=${NATS_IMAGE:-shiploop-nats:local}
POSTGRES_IMAGE=${POSTGRES_IMAGE:-shiploop-postgres:local}
cache=${SHIPLOOP_IMAGE_CACHE:-/var/cache/shiploop-images}
suite=bookworm
packages=git,mercurial,ca-certificates,openssh-client,postgresql
docker=${DOCKER:-docker}

retry() {
  local n=$1 i; shift
  for i in $(seq 1 "$n"); do
    "$@" && return 0
    echo "attempt $i of $n failed: $*" >&2
    [ "$i" -lt "$n" ] && sleep 10
  done
  return 1
}

# mirror prints the Debian mirror apt uses for $suite (deb822 .sources or
# one-line sources.list entries).
mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$suite" '
      /^[ \t]*$/ { if (ok && uri != "") { print uri; exit } ok = 0; uri = "" ; next }
      tolower($1) == "uris:"   { uri = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
      END { if (ok && uri != "") print uri }' "$f"
  done | head -n1 | grep . && return
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    sed -E 's/\[[^]]*\]//' | awk -v s="$suite" '$1 == "deb" && $3 == s { print $2; exit }' | grep . && return
  echo "no Debian mirror for $suite in the apt configuration; set DEBIAN_MIRROR" >&2
  return 1
}

mkdir -p "$cache"
key=$(printf '%s %s\n' "$suite" "$packages" | sha256sum | cut -c1-12)
rootfs_tar="$cache/rootfs-$suite-$key.tar"
rootfs_image="shiploop-rootfs:$key"

if ! "$docker" image inspect "$rootfs_image" >/dev/null 2>&1; then
  if [ ! -s "$rootfs_tar" ]; then
    url=$(mirror)
    echo "debootstrap $suite from $url with $packages"
    dir=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$dir"' EXIT
    bootstrap() {
      rm -rf "$dir" && mkdir -p "$dir" &&
        timeout 1200 debootstrap --variant=minbase --include="$packages" "$suite" "$dir" "$url"
    }
    retry 3 bootstrap
    # What the images need on top: the service user, writable data
    # directories (a named volume starts with the image directory's owner),
    # and no apt lists or package cache.
    chroot "$dir" useradd --create-home --uid 10001 --user-group shiploop
    install -d -o 10001 -g 10001 "$dir/var/lib/shiploop" "$dir/var/lib/shiploop-agent" "$dir/data"
    pg=$(chroot "$dir" id -u postgres)
    install -d -m 0700 -o "$pg" -g "$pg" "$dir/var/lib/postgresql/data"
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
    tar -C "$dir" --numeric-owner -cf "$rootfs_tar.tmp" .
    mv "$rootfs_tar.tmp" "$rootfs_tar"
    rm -rf "$dir"
    trap - EXIT
  fi
  "$docker" import "$rootfs_tar" "$rootfs_image"
fi

# The binaries, static so that they do not depend on the image's libc.
bin="$cache/bin"
mkdir -p "$bin"
nats_version=$(awk '$1 == "github.com/nats-io/nats-server/v2" {print $2}' pkg/go.mod)
[ -n "$nats_version" ] || { echo "pkg/go.mod does not require github.com/nats-io/nats-server/v2" >&2; exit 1; }
if [ "$("$bin/nats-server" --version 2>/dev/null)" != "nats-server: $nats_version" ]; then
  retry 3 timeout 900 env CGO_ENABLED=0 GOBIN="$bin" GOWORK=off GOFLAGS=-trimpath \
    go install "github.com/nats-io/nats-server/v2@$nats_version"
fi
# SHIPLOOP_BIN: a shiploop binary already built (static) instead of this checkout's.
if [ -n "${SHIPLOOP_BIN:-}" ]; then
  cp "$SHIPLOOP_BIN" "$bin/shiploop"
else
  retry 3 timeout 900 env CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w" \
    -o "$bin/shiploop" ./cmd/shiploop
fi

ctr=$("$docker" create "$rootfs_image" /bin/true)
trap '"$docker" rm -f "$ctr" >/dev/null' EXIT
"$docker" cp "$bin/shiploop" "$ctr:/usr/local/bin/shiploop"
"$docker" cp "$bin/nats-server" "$ctr:/usr/local/bin/nats-server"
"$docker" cp scripts/postgres-entrypoint.sh "$ctr:/usr/local/bin/shiploop-postgres"
label="org.shiploop.nats-server.version=$nats_version"
"$docker" commit \
  -c 'USER 10001' -c 'WORKDIR /home/shiploop' -c 'ENV HOME=/home/shiploop' \
  -c "LABEL $label" -c 'ENTRYPOINT ["shiploop"]' \
  -c 'CMD ["up", "--http-listen", "0.0.0.0:8080", "--grpc-listen", "0.0.0.0:9090"]' \
  "$ctr" "$SHIPLOOP_IMAGE" >/dev/null
"$docker" commit \
  -c 'USER 10001' -c 'WORKDIR /data' -c "LABEL $label" \
  -c 'ENTRYPOINT ["nats-server"]' -c 'CMD ["-js", "-sd", "/data", "-m", "8222"]' \
  "$ctr" "$NATS_IMAGE" >/dev/null
"$docker" commit \
  -c 'USER postgres' -c 'WORKDIR /var/lib/postgresql' -c 'ENV PGDATA=/var/lib/postgresql/data' \
  -c 'ENTRYPOINT ["shiploop-postgres"]' -c 'CMD []' \
  "$ctr" "$POSTGRES_IMAGE" >/dev/null
echo "built $SHIPLOOP_IMAGE, $NATS_IMAGE (nats-server $nats_version) and $POSTGRES_IMAGE from $rootfs_image"
