#!/usr/bin/env bash
# Bring docker-compose.yml up from the locally built images and push one
# build through the whole suite: register a git repository the builds and
# agent containers clone from a bind mount (file transport), send a signed
# generic webhook, wait for the build to succeed, then take everything down
# (volumes too). Needs a running Docker engine and docker-compose (or
# `docker compose`); .ci/run calls it when an engine starts. Every wait is
# bounded; the script fails on the first thing that does not work.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
log() { printf '[compose-smoke %3ds] %s\n' "$(($(date +%s) - started))" "$*"; }

if command -v docker-compose >/dev/null; then compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then compose=(docker compose)
else echo "neither docker-compose nor docker compose" >&2; exit 1; fi
project=${SHIPLOOP_SMOKE_PROJECT:-shiploop-smoke}
cache=${SHIPLOOP_IMAGE_CACHE:-/var/cache/shiploop-images}
export SHIPLOOP_IMAGE_CACHE=$cache
# Clones come from a bind-mounted directory, so builds and agents allow file.
export SHIPLOOP_ALLOWED_TRANSPORTS=https,ssh,git,file
# Ports are published on a loopback address of their own, so a shiploop
# running on the host with its defaults (127.0.0.1:8080, 9090, 2003...) does
# not keep the suite from starting.
addr=${SHIPLOOP_SMOKE_ADDRESS:-127.0.77.1}
export SHIPLOOP_PUBLISH_ADDRESS=$addr
secret=smoke-$RANDOM$RANDOM

log "building the images"
timeout 1800 bash scripts/images.sh
cli="$cache/bin/shiploop"

work=$(mktemp -d)
override="$work/compose.smoke.yml"
dcc=("${compose[@]}" -p "$project" -f docker-compose.yml -f "$override")
dc() { "${dcc[@]}" "$@"; }
cleanup() {
  rc=$?
  if [ "$rc" -ne 0 ]; then
    log "failed ($rc); container states and logs:"
    dc ps || true
    dc logs --no-color --tail=80 || true
  fi
  timeout 180 "${dcc[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$work"
  log "done ($rc)"
}
trap cleanup EXIT

# The repository: one commit with a pipeline, owned by the containers' uid.
repo="$work/git/smoke"
mkdir -p "$repo"
git -C "$repo" init -q -b main
mkdir -p "$repo/src"
echo v1 >"$repo/src/app.txt"
cat >"$repo/.shiploop.yml" <<'YML'
steps:
  - name: compile
    commands:
      - test -f src/app.txt
      - git --version
      - hg --version
  - name: unit
    depends_on: [compile]
    commands:
      - echo unit tests pass
YML
git -C "$repo" add -A
git -C "$repo" -c user.name=smoke -c user.email=smoke@example.com commit -q -m smoke
sha=$(git -C "$repo" rev-parse HEAD)
chown -R 10001:10001 "$work/git"
cat >"$override" <<YML
services:
  builds:
    volumes: ["$work/git:/srv/git:ro"]
  agent-1:
    volumes: ["$work/git:/srv/git:ro"]
  agent-2:
    volumes: ["$work/git:/srv/git:ro"]
YML

log "docker compose up"
timeout 300 "${dcc[@]}" up -d

# NATS is the version the code embeds.
want=$(awk '$1 == "github.com/nats-io/nats-server/v2" {print $2}' pkg/go.mod)
got=$(timeout 30 "${dcc[@]}" exec -T nats nats-server --version)
[ "$got" = "nats-server: $want" ] || { log "NATS runs $got, want $want"; exit 1; }

log "waiting for the builds service"
ok=
for _ in $(seq 1 90); do
  if timeout 10 "$cli" repo add smoke --clone-url /srv/git/smoke --secret "$secret" --server "$addr:9090" >/dev/null 2>&1; then ok=1; break; fi
  sleep 2
done
[ -n "$ok" ] || { log "builds never accepted the repository"; exit 1; }

log "checking that every container runs (no restarts)"
want_n=$(dc config --services | wc -l)
for i in $(seq 1 30); do
  states=$(docker inspect -f '{{.Name}} {{.State.Running}} {{.RestartCount}}' $(dc ps -q) || true)
  n_ok=$(printf '%s\n' "$states" | awk '$2 == "true" && $3 == 0' | wc -l)
  [ "$n_ok" -eq "$want_n" ] && break
  [ "$i" -eq 30 ] && { log "$n_ok of $want_n containers run without restarting:"; printf '%s\n' "$states"; exit 1; }
  sleep 2
done

log "pushing $sha"
body=$(printf '{"repository":"smoke","ref":"refs/heads/main","commit":"%s"}' "$sha")
sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)
delivered=
for _ in $(seq 1 10); do
  code=$(curl -s -o "$work/hook.out" -w '%{http_code}' --max-time 10 -X POST \
    -H 'Content-Type: application/json' -H "X-Shiploop-Signature: sha256=$sig" \
    --data-binary "$body" "http://$addr:8080/hooks/generic" || true)
  case "$code" in 2??) delivered=1; break ;; esac
  log "webhook answered $code: $(cat "$work/hook.out" 2>/dev/null)"
  sleep 3
done
[ -n "$delivered" ] || exit 1

log "waiting for smoke#1"
status=
for _ in $(seq 1 150); do
  out=$(timeout 10 "$cli" builds get 'smoke#1' --json --server "$addr:9090" 2>/dev/null || true)
  status=$(printf '%s' "$out" | grep -o '"status":"BUILD_STATUS_[A-Z]*"' | head -n1 | cut -d'"' -f4 || true)
  case "$status" in
    BUILD_STATUS_SUCCESS) break ;;
    BUILD_STATUS_FAILURE|BUILD_STATUS_ERROR|BUILD_STATUS_CANCELED|BUILD_STATUS_SKIPPED)
      log "smoke#1 ended $status"; printf '%s\n' "$out"
      timeout 30 "$cli" logs 'smoke#1' --server "$addr:9090" || true
      exit 1 ;;
  esac
  sleep 2
done
[ "$status" = BUILD_STATUS_SUCCESS ] || { log "smoke#1 did not finish (last status: ${status:-none})"; exit 1; }
log "smoke#1 succeeded through the compose suite"
